//! Cluster bootstrap on one host: bind one loopback listener per node, start N node processes
//! (each inherits its own listener), collect what each printed, and when one dies, kill the rest
//! and say which one died and how.
//!
//! The launcher binds every node's listening socket itself and hands it to the node process as
//! an inherited file descriptor named in [`LISTEN_FD_ENV`]; [`crate::NodeRuntime::start`] takes
//! it from there instead of binding the address again. No port is ever picked, released and
//! bound again, so no other process can take a node's port in between.
//!
//! The launcher makes a fresh cluster key for each run, in a private file named to every
//! node in [`crate::admission::KEY_FILE_ENV`] (read with
//! [`crate::admission::Admission::from_env`]) and removed when the run ends.
//!
//! The launcher does not know what a node runs: the caller builds each node's command from
//! its [`NodeSlot`] (the `memlink` CLI runs `memlink dsm node ...`; tests re-run their own
//! binary).
//!
//! ```no_run
//! use std::process::Command;
//! use std::time::Duration;
//! use memlink_dsm::init::launch;
//!
//! let outputs = launch(4, Duration::from_secs(60), |slot| {
//!     let mut cmd = Command::new("memlink");
//!     cmd.args(["dsm", "node", "--id", &slot.id.to_string(), "--listen", &slot.listen.to_string()])
//!         .args(["--peers", &slot.peers_arg(), "--app", "counter"]);
//!     cmd
//! })?;
//! for out in &outputs {
//!     println!("node {}: {}", out.id, out.stdout.trim());
//! }
//! # Ok::<(), memlink_dsm::init::LaunchError>(())
//! ```

use std::fmt;
use std::io::{self, Read};
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::types::NodeId;

mod termination;
pub use termination::signal_name;

/// Where one node of a local cluster listens, and where all of them do.
#[derive(Clone, Debug)]
pub struct NodeSlot {
    /// The node's id.
    pub id: NodeId,
    /// Its listen address.
    pub listen: SocketAddr,
    /// Every node's listen address (index = node id).
    pub peers: Vec<SocketAddr>,
}

impl NodeSlot {
    /// The peers as one comma-separated argument.
    pub fn peers_arg(&self) -> String {
        self.peers
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// What one node process left behind.
#[derive(Clone, Debug)]
pub struct NodeOutput {
    /// The node.
    pub id: NodeId,
    /// How it ended.
    pub status: ExitStatus,
    /// Everything it printed on stdout.
    pub stdout: String,
    /// Everything it printed on stderr.
    pub stderr: String,
}

/// Why a local cluster did not complete.
#[derive(Debug)]
pub enum LaunchError {
    /// No free loopback port could be found.
    Ports(io::Error),
    /// The run's cluster key could not be made.
    Key(crate::admission::KeyError),
    /// A node process could not be started.
    Spawn {
        /// The node.
        node: NodeId,
        /// Why.
        error: io::Error,
    },
    /// A node ended unsuccessfully; the others were killed. Every node's output is kept.
    NodeFailed {
        /// The first node seen to fail.
        node: NodeId,
        /// Every node's output (the killed ones included).
        outputs: Vec<NodeOutput>,
    },
    /// The launcher received SIGINT or SIGTERM: it passed the signal on to every node and
    /// waited for them (a node still running after [`INTERRUPT_GRACE`] was killed). The
    /// caller should end as the signal asked; the `memlink` CLI exits with 128 + `signal`.
    Interrupted {
        /// The signal received (`libc::SIGINT` or `libc::SIGTERM`).
        signal: i32,
        /// Every node's output.
        outputs: Vec<NodeOutput>,
    },
    /// The signal handlers that pass SIGINT and SIGTERM on to the nodes could not be set up.
    Signals(io::Error),
    /// The cluster ran past its deadline; every node was killed.
    TimedOut {
        /// The deadline.
        after: Duration,
        /// Every node's output.
        outputs: Vec<NodeOutput>,
    },
}

fn describe(status: &ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(sig)) => format!("was killed by signal {sig}"),
        _ => "ended".to_string(),
    }
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

impl fmt::Display for LaunchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LaunchError::Ports(e) => write!(f, "no free loopback port for the nodes: {e}"),
            LaunchError::Key(e) => write!(f, "cannot make the cluster key of this run: {e}"),
            LaunchError::Spawn { node, error } => {
                write!(f, "cannot start node {node}: {error}")
            }
            LaunchError::NodeFailed { node, outputs } => {
                let out = outputs.iter().find(|o| o.id == *node);
                match out {
                    Some(o) if o.stderr.trim().is_empty() => write!(
                        f,
                        "node {node} {} (the other nodes were stopped); it printed nothing",
                        describe(&o.status)
                    )?,
                    Some(o) => write!(
                        f,
                        "node {node} {} (the other nodes were stopped); its last words:\n{}",
                        describe(&o.status),
                        last_lines(o.stderr.trim_end(), 8)
                    )?,
                    None => write!(f, "node {node} failed (the other nodes were stopped)")?,
                }
                // The others' words too: the first node to fail is not always the cause.
                for o in outputs.iter().filter(|o| o.id != *node) {
                    if !o.stderr.trim().is_empty() {
                        write!(f, "\nnode {}: {}", o.id, last_lines(o.stderr.trim_end(), 4))?;
                    }
                }
                Ok(())
            }
            LaunchError::Interrupted { signal, outputs } => {
                write!(
                    f,
                    "stopped by {}: the signal was passed on to the {} nodes, which have ended",
                    signal_name(*signal),
                    outputs.len()
                )
            }
            LaunchError::Signals(e) => write!(
                f,
                "cannot catch SIGINT and SIGTERM to pass them on to the nodes: {e}"
            ),
            LaunchError::TimedOut { after, outputs } => {
                write!(
                    f,
                    "the cluster did not finish within {after:?}; every node was killed"
                )?;
                for o in outputs {
                    if !o.stderr.trim().is_empty() {
                        write!(f, "\nnode {}: {}", o.id, last_lines(&o.stderr, 4))?;
                    }
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for LaunchError {}

/// The environment variable that names the file descriptor of a listening socket a node process
/// inherited from its launcher (see [`pass_listener`] and [`take_inherited_listener`]).
pub const LISTEN_FD_ENV: &str = "MEMLINK_DSM_LISTEN_FD";

/// Binds one listener per node on 127.0.0.1 (port chosen by the kernel) and returns each node's
/// slot with its listener. The listeners stay bound until the node processes own them: hand
/// each to its node with [`pass_listener`].
pub fn bind_slots(count: usize) -> io::Result<Vec<(NodeSlot, TcpListener)>> {
    let listeners = (0..count)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<io::Result<Vec<_>>>()?;
    let peers = listeners
        .iter()
        .map(|l| l.local_addr())
        .collect::<io::Result<Vec<_>>>()?;
    Ok(listeners
        .into_iter()
        .enumerate()
        .map(|(id, l)| {
            let slot = NodeSlot {
                id: id as NodeId,
                listen: peers[id],
                peers: peers.clone(),
            };
            (slot, l)
        })
        .collect())
}

/// Makes the process that `cmd` starts inherit `listener` (at the same descriptor number) and
/// names it in [`LISTEN_FD_ENV`]. Only that child inherits it: the descriptor stays
/// close-on-exec in this process, so processes started by other threads do not get it. Keep
/// `listener` open until the child is spawned; drop it afterwards.
pub fn pass_listener(cmd: &mut Command, listener: &TcpListener) {
    let fd = listener.as_raw_fd();
    cmd.env(LISTEN_FD_ENV, fd.to_string());
    // SAFETY: the closure runs in the forked child before exec and only calls fcntl, which is
    // async-signal-safe and allocates nothing (io::Error::last_os_error does not allocate); it
    // changes the child's own descriptor table entry, which the caller keeps open until the
    // spawn has returned.
    unsafe {
        cmd.pre_exec(move || {
            if libc::fcntl(fd, libc::F_SETFD, 0) == -1 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Set once the inherited listener has been taken, so that two owners never close it.
static LISTENER_TAKEN: AtomicBool = AtomicBool::new(false);

/// The listening socket this process was given for `listen`, if any: the one handed over with
/// [`hand_over_listener`], else the descriptor inherited from its launcher and named in
/// [`LISTEN_FD_ENV`], when it is a listening TCP socket bound to exactly
/// `listen` and was not taken before. It is made close-on-exec again.
pub fn take_inherited_listener(listen: SocketAddr) -> Option<TcpListener> {
    if let Some(listener) = take_handed_over(listen) {
        return Some(listener);
    }
    let fd: RawFd = std::env::var(LISTEN_FD_ENV).ok()?.parse().ok()?;
    if fd < 3 || !is_listening_socket(fd) {
        return None;
    }
    // SAFETY: `fd` is an open socket descriptor (checked above); ManuallyDrop never closes it,
    // so this temporary view owns nothing.
    let view = std::mem::ManuallyDrop::new(unsafe { TcpListener::from_raw_fd(fd) });
    if view.local_addr().ok()? != listen {
        return None;
    }
    if LISTENER_TAKEN.swap(true, Ordering::SeqCst) {
        return None;
    }
    // SAFETY: fcntl on an open descriptor of this process only changes its flags.
    unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    Some(std::mem::ManuallyDrop::into_inner(view))
}

/// A listener bound in this process before the node starts (by the rendezvous of
/// [`crate::rendezvous`]), waiting for [`take_inherited_listener`].
static HANDED_OVER: Mutex<Option<TcpListener>> = Mutex::new(None);

/// Keeps `listener` for the node this process starts next: [`crate::NodeRuntime::start`] with
/// `listen` set to the listener's address takes it instead of binding that address again.
pub fn hand_over_listener(listener: TcpListener) {
    *HANDED_OVER.lock().unwrap_or_else(|p| p.into_inner()) = Some(listener);
}

fn take_handed_over(listen: SocketAddr) -> Option<TcpListener> {
    let mut slot = HANDED_OVER.lock().unwrap_or_else(|p| p.into_inner());
    match slot.as_ref().map(TcpListener::local_addr) {
        Some(Ok(addr)) if addr == listen => slot.take(),
        _ => None,
    }
}

/// Whether `fd` is an open socket in the listening state.
fn is_listening_socket(fd: RawFd) -> bool {
    let mut listening: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `listening` and `len` are live out-parameters of the sizes getsockopt expects;
    // a descriptor that is not an open socket makes it fail with EBADF or ENOTSOCK.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ACCEPTCONN,
            (&mut listening as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    rc == 0 && listening != 0
}

fn reader(mut pipe: impl Read + Send + 'static) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// How long nodes that were passed SIGINT or SIGTERM get to end before they are killed.
pub const INTERRUPT_GRACE: Duration = Duration::from_secs(10);

/// What the launcher waits for.
enum Event {
    /// Node `i` has exited (not reaped yet).
    Exited(usize),
    /// The launcher received this signal.
    Signal(libc::c_int),
}

/// Makes the process that `cmd` starts die with its launcher: it gets SIGKILL when the thread
/// that spawns it (the launcher's, which waits for it) ends, and if the launcher died before
/// that was set up (the race between fork and prctl), the child does not start at all.
pub fn die_with_launcher(cmd: &mut Command) {
    // SAFETY: getpid has no preconditions.
    let launcher = unsafe { libc::getpid() };
    // SAFETY: the closure runs in the forked child before exec and only makes the syscalls
    // prctl and getppid, which are async-signal-safe and allocate nothing.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) == -1 {
                return Err(io::Error::last_os_error());
            }
            // The launcher died between fork and prctl: this child was reparented already and
            // the death signal will never come.
            if libc::getppid() != launcher {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
}

/// Starts `nodes` node processes on loopback, each from `command(slot)`, with stdout and stderr
/// captured, and waits for all of them (at most `deadline`). The first node that fails makes
/// the launcher kill the others and return [`LaunchError::NodeFailed`].
///
/// The nodes die with the launcher: each gets SIGKILL if the thread that called `launch`
/// ends, whatever ended it (see [`die_with_launcher`]). While `launch` runs, a SIGINT or
/// SIGTERM sent to this process is passed on to every node; `launch` waits for them and
/// returns [`LaunchError::Interrupted`].
pub fn launch(
    nodes: usize,
    deadline: Duration,
    mut command: impl FnMut(&NodeSlot) -> Command,
) -> Result<Vec<NodeOutput>, LaunchError> {
    let slots = bind_slots(nodes).map_err(LaunchError::Ports)?;
    let (tx, rx) = mpsc::channel::<Event>();
    // Subscribed before the first node starts, so no signal falls between the two.
    let signals = {
        let tx = tx.clone();
        termination::subscribe(move |sig| {
            let _ = tx.send(Event::Signal(sig));
        })
        .map_err(LaunchError::Signals)?
    };
    // Removed when this function returns, after every node has ended.
    let key = crate::admission::TempKeyFile::create().map_err(LaunchError::Key)?;
    let mut children: Vec<Child> = Vec::with_capacity(nodes);
    let mut pipes = Vec::with_capacity(nodes);
    for (id, (slot, listener)) in slots.into_iter().enumerate() {
        let mut cmd = command(&slot);
        cmd.env(crate::admission::KEY_FILE_ENV, key.path());
        pass_listener(&mut cmd, &listener);
        die_with_launcher(&mut cmd);
        let spawned = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        // The node owns its copy now (or never started); ours is closed.
        drop(listener);
        match spawned {
            Ok(mut child) => {
                let out = child.stdout.take().map(reader);
                let err = child.stderr.take().map(reader);
                pipes.push((out, err));
                children.push(child);
            }
            Err(error) => {
                for c in &mut children {
                    let _ = c.kill();
                    let _ = c.wait();
                }
                return Err(LaunchError::Spawn {
                    node: id as NodeId,
                    error,
                });
            }
        }
    }
    // One waiter thread per child reports its exit without reaping it (WNOWAIT); this thread
    // reaps, so a child not reaped yet is still ours and its pid cannot have been reused when
    // kill_all or forward signals it.
    let waiters: Vec<JoinHandle<()>> = children
        .iter()
        .enumerate()
        .map(|(i, child)| {
            let tx = tx.clone();
            let pid = child.id() as libc::id_t;
            std::thread::spawn(move || {
                wait_exited(pid);
                let _ = tx.send(Event::Exited(i));
            })
        })
        .collect();
    drop(tx);
    let start = Instant::now();
    let mut statuses: Vec<Option<ExitStatus>> = vec![None; nodes];
    let mut failed: Option<usize> = None;
    let mut timed_out = false;
    // The signal received, and until when its nodes may take to end.
    let mut interrupted: Option<(libc::c_int, Instant)> = None;
    let mut done = 0;
    while done < nodes {
        let mut left = deadline.saturating_sub(start.elapsed());
        if let Some((_, grace_end)) = interrupted {
            left = left.min(grace_end.saturating_duration_since(Instant::now()));
        }
        match rx.recv_timeout(left) {
            Ok(Event::Exited(i)) => {
                done += 1;
                let status = children[i].wait();
                let ok = matches!(&status, Ok(s) if s.success());
                statuses[i] = status.ok();
                if !ok && failed.is_none() && interrupted.is_none() {
                    failed = Some(i);
                    kill_all(&mut children, &statuses);
                }
            }
            Ok(Event::Signal(sig)) => {
                if interrupted.is_none() {
                    interrupted = Some((sig, Instant::now() + INTERRUPT_GRACE));
                    forward(&children, &statuses, sig);
                } else {
                    // A second signal: no more patience.
                    kill_all(&mut children, &statuses);
                }
            }
            Err(_) => {
                timed_out = interrupted.is_none();
                kill_all(&mut children, &statuses);
                // The waiters see the killed children exit; reap and record them.
                while done < nodes {
                    match rx.recv() {
                        Ok(Event::Exited(i)) => {
                            statuses[i] = children[i].wait().ok();
                            done += 1;
                        }
                        Ok(Event::Signal(_)) => {}
                        Err(_) => break,
                    }
                }
            }
        }
    }
    drop(signals);
    for w in waiters {
        let _ = w.join();
    }
    let outputs: Vec<NodeOutput> = pipes
        .into_iter()
        .zip(statuses)
        .enumerate()
        .map(|(id, ((out, err), status))| NodeOutput {
            id: id as NodeId,
            status: status.unwrap_or_else(|| {
                use std::os::unix::process::ExitStatusExt;
                ExitStatus::from_raw(libc::SIGKILL)
            }),
            stdout: out.and_then(|h| h.join().ok()).unwrap_or_default(),
            stderr: err.and_then(|h| h.join().ok()).unwrap_or_default(),
        })
        .collect();
    if let Some((signal, _)) = interrupted {
        return Err(LaunchError::Interrupted { signal, outputs });
    }
    if timed_out {
        return Err(LaunchError::TimedOut {
            after: deadline,
            outputs,
        });
    }
    match failed {
        Some(i) => Err(LaunchError::NodeFailed {
            node: i as NodeId,
            outputs,
        }),
        None => Ok(outputs),
    }
}

/// Passes `sig` on to every node that has not been reaped yet (still our children, at worst
/// zombies, so the pids are theirs).
fn forward(children: &[Child], statuses: &[Option<ExitStatus>], sig: libc::c_int) {
    for (child, status) in children.iter().zip(statuses) {
        if status.is_none() {
            // SAFETY: kill only sends a signal; the pid is our unreaped child's.
            unsafe { libc::kill(child.id() as libc::pid_t, sig) };
        }
    }
}

/// SIGKILLs every node that has not been reaped yet (only the launcher's own thread reaps, so
/// these pids are still our children, at worst zombies).
fn kill_all(children: &mut [Child], statuses: &[Option<ExitStatus>]) {
    for (child, status) in children.iter_mut().zip(statuses) {
        if status.is_none() {
            let _ = child.kill();
        }
    }
}

/// Blocks until child `pid` has exited, leaving it unreaped (a zombie) for its owner to reap.
fn wait_exited(pid: libc::id_t) {
    loop {
        // SAFETY: an all-zero siginfo_t is a valid value of this plain C struct.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: `info` is a live out-parameter; WNOWAIT leaves the child unreaped.
        let rc =
            unsafe { libc::waitid(libc::P_PID, pid, &mut info, libc::WEXITED | libc::WNOWAIT) };
        if rc == 0 || io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            return;
        }
    }
}
