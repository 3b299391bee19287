//! Shared by the multi-process DSM tests: each test binary re-runs itself as the node
//! processes of a local cluster. The parent picks the node body by name and passes the node's
//! place in the cluster in an environment variable; the child's `node_main` test of the
//! parent test's module (a no-op in the parent) joins, runs the body, leaves, prints one line
//! and exits with a status code.
#![allow(dead_code)]

pub mod paged_file;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use memlink_dsm::admission::Admission;
use memlink_dsm::apps::{App, EXIT_DSM_ERROR, EXIT_NODE_LOST, EXIT_NOT_VERIFIED};
use memlink_dsm::cluster::Dsm;
use memlink_dsm::init::{LaunchError, NodeOutput, NodeSlot, launch};
use memlink_dsm::{Backend, DsmError, ManagerKind, NodeConfig};

/// The environment variable that makes a test binary a node:
/// `id|listen|peers|body|backend|manager`.
pub const NODE_ENV: &str = "MEMLINK_DSM_TEST_NODE";

/// Environment variables a test sets for its node processes: the memory budget in bytes and
/// the Δt hold in microseconds (unset: none, and the default hold).
pub const BUDGET_ENV: &str = "MEMLINK_DSM_TEST_BUDGET";
/// See [`BUDGET_ENV`].
pub const HOLD_US_ENV: &str = "MEMLINK_DSM_TEST_HOLD_US";
/// A file every node maps into the region from page 1 with a file pager (set: the nodes
/// join with its store; needs [`BUDGET_ENV`]).
pub const PAGER_FILE_ENV: &str = "MEMLINK_DSM_TEST_PAGER_FILE";
/// A unix socket where a pager process serves (set: the nodes join with a
/// [`memlink_dsm::pager::RemotePager`] store named [`PAGER_NAME`] instead of a file pager).
pub const PAGER_SOCKET_ENV: &str = "MEMLINK_DSM_TEST_PAGER_SOCKET";
/// How long a node waits for each answer of the pager process, in milliseconds (unset: 20 s).
pub const PAGER_TIMEOUT_MS_ENV: &str = "MEMLINK_DSM_TEST_PAGER_TIMEOUT_MS";
/// Region pages `a..b` whose unlock for writing the file pager refuses
/// ([`memlink_dsm::pager::FilePager::refuse_writes`]).
pub const PAGER_REFUSE_WRITES_ENV: &str = "MEMLINK_DSM_TEST_PAGER_REFUSE_WRITES";
/// The name the nodes give the pager process.
pub const PAGER_NAME: &str = "test-pager";
/// The region's pages (unset: [`PAGES`]).
pub const PAGES_ENV: &str = "MEMLINK_DSM_TEST_PAGES";

/// The `data_write` calls this node process made on its pager ([`PAGER_FILE_ENV`]) for the
/// file's pages, printed
/// as `data_writes: N` after a verified run.
pub static DATA_WRITES: AtomicU64 = AtomicU64::new(0);

/// A pager that counts the `data_write` calls made on it for the file's pages in
/// [`DATA_WRITES`]; it answers in place as the pager it wraps does (a file pager's pages
/// read ahead map the file itself).
struct CountingPager<P>(P);

impl<P: memlink_dsm::pager::Pager> memlink_dsm::pager::Pager for CountingPager<P> {
    fn data_request(
        &mut self,
        first: memlink_dsm::PageNo,
        out: &mut [u8],
    ) -> Result<memlink_dsm::pager::Supply, memlink_dsm::pager::PagerError> {
        self.0.data_request(first, out)
    }

    fn data_mapped(&self, first: memlink_dsm::PageNo, len: usize) -> Option<&[u8]> {
        self.0.data_mapped(first, len)
    }

    fn data_mapped_file(
        &self,
        first: memlink_dsm::PageNo,
        len: usize,
    ) -> Option<(std::os::fd::BorrowedFd<'_>, u64)> {
        self.0.data_mapped_file(first, len)
    }

    fn data_write(
        &mut self,
        page: memlink_dsm::PageNo,
        data: &[u8],
    ) -> Result<(), memlink_dsm::pager::PagerError> {
        // Page 0 holds the apps' slots, outside the file (which the pager maps from page 1).
        if page >= 1 {
            DATA_WRITES.fetch_add(1, Ordering::Relaxed);
        }
        self.0.data_write(page, data)
    }

    fn sync(&mut self) -> Result<(), memlink_dsm::pager::PagerError> {
        self.0.sync()
    }

    fn data_unlock(
        &mut self,
        page: memlink_dsm::PageNo,
        access: memlink_dsm::Access,
    ) -> Result<memlink_dsm::Access, memlink_dsm::pager::PagerError> {
        self.0.data_unlock(page, access)
    }
}

/// The store of this node process: a pager process ([`PAGER_SOCKET_ENV`]) or a file pager
/// ([`PAGER_FILE_ENV`]), if either is set.
fn pager_store() -> Option<Box<dyn memlink_dsm::replacement::BackingStore>> {
    use memlink_dsm::pager::{FilePager, PagerStore, RemotePager};
    if let Some(socket) = std::env::var_os(PAGER_SOCKET_ENV) {
        let timeout = std::env::var(PAGER_TIMEOUT_MS_ENV)
            .ok()
            .map_or(20_000, |v| v.parse().expect("timeout"));
        let pager =
            RemotePager::connect(socket.as_ref(), PAGER_NAME, Duration::from_millis(timeout))
                .expect("the pager process");
        return Some(Box::new(PagerStore::new(CountingPager(pager))));
    }
    let path = std::env::var_os(PAGER_FILE_ENV)?;
    let mut pager = FilePager::open(path.as_ref(), 0, None, 1).expect("the pager's file");
    if let Ok(range) = std::env::var(PAGER_REFUSE_WRITES_ENV) {
        let (a, b) = range.split_once("..").expect("a..b");
        pager = pager.refuse_writes(a.parse().expect("a")..b.parse().expect("b"));
    }
    Some(Box::new(PagerStore::new(CountingPager(pager))))
}

/// A node body: runs on a joined node, returns whether its checks passed.
pub type Body = fn(&Dsm) -> Result<bool, DsmError>;

/// How long any test cluster may run before it counts as hung.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// The pages of every test cluster.
pub const PAGES: u32 = memlink_dsm::apps::APP_PAGES;

fn body_of(name: &str, custom: &[(&str, Body)]) -> Option<Body> {
    if let Some((_, b)) = custom.iter().find(|(n, _)| *n == name) {
        return Some(*b);
    }
    match name.parse::<App>().ok()? {
        App::Counter => Some(memlink_dsm::apps::counter::run),
        App::Jacobi => Some(memlink_dsm::apps::jacobi::run),
        App::Matmul => Some(memlink_dsm::apps::matmul::run),
        App::Sort => Some(memlink_dsm::apps::sort::run),
        // These need more pages than PAGES (the file's; a task block per task): tests/cli_*.
        App::Wordcount | App::Nqueens | App::Quicksort => None,
        App::Capabilities => Some(memlink_dsm::apps::capabilities::run),
    }
}

/// The body of the `node_main` test: returns at once in the parent; in a node process it runs
/// the node and exits the process.
pub fn node_entry(custom: &[(&str, Body)]) {
    let Ok(spec) = std::env::var(NODE_ENV) else {
        return;
    };
    let parts: Vec<&str> = spec.split('|').collect();
    let [id, listen, peers, body, backend, manager] = parts[..] else {
        eprintln!("bad {NODE_ENV}: {spec}");
        std::process::exit(EXIT_DSM_ERROR);
    };
    let config = NodeConfig {
        id: id.parse().expect("id"),
        listen: listen.parse().expect("listen"),
        peers: peers
            .split(',')
            .map(|p| p.parse::<SocketAddr>().expect("peer"))
            .collect(),
        pages: std::env::var(PAGES_ENV)
            .ok()
            .map_or(PAGES, |v| v.parse().expect("pages")),
        manager: manager.parse().expect("manager"),
        connect_timeout: Duration::from_millis(
            std::env::var("MEMLINK_DSM_TEST_CONNECT_MS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(20_000),
        ),
        admission: Admission::from_env().expect("the launcher's key"),
        memory_budget: std::env::var(BUDGET_ENV)
            .ok()
            .map(|v| v.parse().expect("budget")),
        hold: std::env::var(HOLD_US_ENV)
            .ok()
            .map_or(memlink_dsm::config::DEFAULT_HOLD, |v| {
                Duration::from_micros(v.parse().expect("hold"))
            }),
    };
    let backend: Backend = backend.parse().expect("backend");
    let body = body_of(body, custom).expect("known body");
    let joined = match pager_store() {
        Some(store) => Dsm::join_with_store(config, backend, store),
        None => Dsm::join(config, backend),
    };
    let code = match joined {
        Err(e) => {
            eprintln!("join failed: {e}");
            if matches!(e, DsmError::NodeLost { .. }) {
                EXIT_NODE_LOST
            } else {
                EXIT_DSM_ERROR
            }
        }
        Ok(dsm) => match body(&dsm).and_then(|ok| dsm.leave().map(|stats| (ok, stats))) {
            Ok((ok, stats)) if ok => {
                let counters: Vec<String> = stats
                    .evictions
                    .named()
                    .iter()
                    .map(|(_, value)| value.to_string())
                    .collect();
                println!("evictions: {}", counters.join(" "));
                println!("data_writes: {}", DATA_WRITES.load(Ordering::Relaxed));
                println!("verified: true");
                0
            }
            Ok(_) => {
                println!("verified: false");
                EXIT_NOT_VERIFIED
            }
            Err(e) => {
                eprintln!("node failed: {e}");
                if matches!(e, DsmError::NodeLost { .. }) {
                    EXIT_NODE_LOST
                } else {
                    EXIT_DSM_ERROR
                }
            }
        },
    };
    let _ = std::io::stdout().flush();
    std::process::exit(code);
}

/// The `node_main` test that a node process of the running test runs: the one of the test's
/// own module, whose bodies it knows (in a binary of several files, a module each, the test
/// names are `module::test`; libtest runs each test on a thread named after it, and node
/// commands are made on that thread).
fn node_main_test() -> String {
    let thread = std::thread::current();
    let test = thread
        .name()
        .expect("a node command is made on the test's own thread, named after the test");
    match test.split_once("::") {
        Some((module, _)) => format!("{module}::node_main"),
        None => "node_main".to_owned(),
    }
}

/// The command that runs this test binary as node `slot` with `body`, under the central
/// manager.
pub fn node_command(slot: &NodeSlot, body: &str, backend: Backend) -> Command {
    node_command_with_manager(slot, body, backend, ManagerKind::Central)
}

/// The command that runs this test binary as node `slot` with `body`, under `manager`.
pub fn node_command_with_manager(
    slot: &NodeSlot,
    body: &str,
    backend: Backend,
    manager: ManagerKind,
) -> Command {
    let mut cmd = Command::new(std::env::current_exe().expect("own path"));
    cmd.args([
        "--exact",
        &node_main_test(),
        "--nocapture",
        "--test-threads=1",
        "-q",
    ])
    .env(
        NODE_ENV,
        format!(
            "{}|{}|{}|{body}|{backend}|{manager}",
            slot.id,
            slot.listen,
            slot.peers_arg()
        ),
    )
    .env("RUST_BACKTRACE", "0");
    cmd
}

/// Runs a local cluster of `nodes` processes with `body`; the outputs when all succeeded.
pub fn run_cluster(
    nodes: usize,
    body: &str,
    backend: Backend,
) -> Result<Vec<NodeOutput>, LaunchError> {
    launch(nodes, DEADLINE, |slot| node_command(slot, body, backend))
}

/// Runs a cluster and asserts that every node verified its result.
pub fn assert_cluster_verifies(nodes: usize, body: &str, backend: Backend) {
    let outputs = launch_verified(
        &format!("{body} on {nodes} nodes ({backend})"),
        nodes,
        |slot| node_command(slot, body, backend),
    );
    assert_eq!(outputs.len(), nodes);
}

/// Launches a local cluster of `nodes` processes that `command` starts, and asserts that it
/// completed and that every node printed `verified: true` (a failure names `what`); returns
/// the nodes' outputs.
pub fn launch_verified(
    what: &str,
    nodes: usize,
    command: impl FnMut(&NodeSlot) -> Command,
) -> Vec<NodeOutput> {
    let outputs = launch(nodes, DEADLINE, command).unwrap_or_else(|e| panic!("{what}: {e}"));
    for out in &outputs {
        assert!(
            out.stdout.contains("verified: true"),
            "{what}: node {} printed {:?}",
            out.id,
            out.stdout
        );
    }
    outputs
}

/// The rest of the first line of `out`'s output that starts with `prefix`; a failure names
/// `what` when there is none.
pub fn line_after<'a>(what: &str, out: &'a NodeOutput, prefix: &str) -> &'a str {
    out.stdout
        .lines()
        .find_map(|l| l.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("{what}: node {} printed no {prefix:?} line", out.id))
}

/// A node process started by hand (for tests that kill or feed nodes).
pub struct NodeProcess {
    pub child: Child,
    pub lines: mpsc::Receiver<String>,
}

impl NodeProcess {
    /// Starts the node, listening on `listener` (bound for `slot`, see [`slots`]), with its
    /// stdin and stdout piped.
    pub fn spawn(
        slot: &NodeSlot,
        listener: TcpListener,
        body: &str,
        backend: Backend,
    ) -> NodeProcess {
        Self::spawn_command(node_command(slot, body, backend), listener)
    }

    /// Starts the node `cmd` runs (made by [`node_command`], perhaps adjusted), listening on
    /// `listener`, with its stdin and stdout piped.
    pub fn spawn_command(mut cmd: Command, listener: TcpListener) -> NodeProcess {
        memlink_dsm::init::pass_listener(&mut cmd, &listener);
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn node");
        drop(listener); // the node owns its copy
        let stdout: ChildStdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        NodeProcess { child, lines }
    }

    /// Waits (bounded) for a line equal to `want` on the node's stdout.
    pub fn expect_line(&self, want: &str) {
        loop {
            match self.lines.recv_timeout(DEADLINE) {
                Ok(line) if line.trim() == want => return,
                Ok(_) => continue,
                Err(e) => panic!("node never printed {want:?}: {e:?}"),
            }
        }
    }

    /// Sends one line on the node's stdin.
    pub fn send_line(&mut self, line: &str) {
        let stdin = self.child.stdin.as_mut().expect("stdin");
        writeln!(stdin, "{line}").expect("write to node");
        stdin.flush().expect("flush");
    }

    /// Waits (bounded by `deadline`) for the node to end; None if it did not (it is killed).
    pub fn wait_for(mut self, deadline: Duration) -> (Option<ExitStatus>, String) {
        let status = wait_within(&mut self.child, deadline);
        let mut text = String::new();
        if let Some(mut stderr) = self.child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
        }
        (status, text)
    }
}

impl Drop for NodeProcess {
    /// A node left running by a failed test is killed and reaped, never orphaned.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Waits at most `deadline` for `child` to end and returns its status; a child still running
/// then is killed (SIGKILL) and reaped, and None is returned. Never blocks past the deadline
/// (plus the moment a SIGKILLed process takes to go).
pub fn wait_within(child: &mut Child, deadline: Duration) -> Option<ExitStatus> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, child.id() as libc::pid_t, 0) };
    assert!(fd >= 0, "pidfd_open: {}", std::io::Error::last_os_error());
    // SAFETY: pidfd_open returned a fresh descriptor that nothing else owns.
    let pidfd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let end = std::time::Instant::now() + deadline;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        let left = end.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        let mut pfd = libc::pollfd {
            fd: pidfd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = left.as_millis().clamp(1, i32::MAX as u128) as i32;
        // SAFETY: `pfd` is one live pollfd; a pidfd polls readable when its process exits.
        unsafe { libc::poll(&mut pfd, 1, ms) };
    }
}

/// Runs `cmd` to completion with its output captured, killing it if it runs past `deadline`.
pub fn output_within(cmd: &mut Command, deadline: Duration) -> std::process::Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let out = child.stdout.take().expect("stdout");
    let err = child.stderr.take().expect("stderr");
    let read = |mut pipe: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            bytes
        })
    };
    let (out, err) = (read(Box::new(out)), read(Box::new(err)));
    let status = wait_within(&mut child, deadline)
        .unwrap_or_else(|| panic!("{cmd:?} ran past {deadline:?} and was killed"));
    std::process::Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    }
}

/// A line the node body waits for on stdin (the test's signal to go on).
pub fn wait_for_stdin_line() -> String {
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    line
}

/// Slots for a cluster of `nodes` on loopback, each with its listener, bound here and held
/// until the node process inherits it (no port is released and bound again).
pub fn slots(nodes: usize) -> Vec<(NodeSlot, TcpListener)> {
    memlink_dsm::init::bind_slots(nodes).expect("bind loopback listeners")
}

/// An address on 127.0.0.1 that refuses connections for as long as the returned socket lives:
/// a TCP socket bound to a kernel-chosen port that never listens, so no other process can take
/// the port meanwhile.
pub fn refusing_address() -> (std::os::fd::OwnedFd, SocketAddr) {
    use std::os::fd::FromRawFd;
    // SAFETY: socket has no memory preconditions.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
    // SAFETY: `fd` is a fresh socket that nothing else owns.
    let owned = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
    // SAFETY: an all-zero sockaddr_in is a valid value; the fields are set below.
    let mut addr: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    addr.sin_family = libc::AF_INET as libc::sa_family_t;
    addr.sin_addr.s_addr = u32::from(std::net::Ipv4Addr::LOCALHOST).to_be();
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: `addr` is a live sockaddr_in of `len` bytes.
    let rc = unsafe { libc::bind(fd, (&raw const addr).cast(), len) };
    assert_eq!(rc, 0, "bind: {}", std::io::Error::last_os_error());
    let mut got_len = len;
    // SAFETY: `addr` and `got_len` are live out-parameters of the sizes given.
    let rc = unsafe { libc::getsockname(fd, (&raw mut addr).cast(), &mut got_len) };
    assert_eq!(rc, 0, "getsockname: {}", std::io::Error::last_os_error());
    let port = u16::from_be(addr.sin_port);
    (owned, SocketAddr::from(([127, 0, 0, 1], port)))
}
