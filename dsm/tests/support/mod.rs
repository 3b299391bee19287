//! Shared by the multi-process DSM tests: each test binary re-runs itself as the node
//! processes of a local cluster. The parent picks the node body by name and passes the node's
//! place in the cluster in an environment variable; the child's `node_main` test (a no-op in
//! the parent) joins, runs the body, leaves, prints one line and exits with a status code.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use memlink_dsm::apps::{App, EXIT_DSM_ERROR, EXIT_NODE_LOST, EXIT_NOT_VERIFIED};
use memlink_dsm::cluster::Dsm;
use memlink_dsm::init::{LaunchError, NodeOutput, NodeSlot, launch};
use memlink_dsm::{Backend, DsmError, ManagerKind, NodeConfig};

/// The environment variable that makes a test binary a node: `id|listen|peers|body|backend`.
pub const NODE_ENV: &str = "MEMLINK_DSM_TEST_NODE";

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
    }
}

/// The body of the `node_main` test: returns at once in the parent; in a node process it runs
/// the node and exits the process.
pub fn node_entry(custom: &[(&str, Body)]) {
    let Ok(spec) = std::env::var(NODE_ENV) else {
        return;
    };
    let parts: Vec<&str> = spec.split('|').collect();
    let [id, listen, peers, body, backend] = parts[..] else {
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
        pages: PAGES,
        manager: ManagerKind::Central,
        connect_timeout: Duration::from_millis(
            std::env::var("MEMLINK_DSM_TEST_CONNECT_MS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(20_000),
        ),
    };
    let backend: Backend = backend.parse().expect("backend");
    let body = body_of(body, custom).expect("known body");
    let code = match Dsm::join(config, backend) {
        Err(e) => {
            eprintln!("join failed: {e}");
            if matches!(e, DsmError::NodeLost { .. }) {
                EXIT_NODE_LOST
            } else {
                EXIT_DSM_ERROR
            }
        }
        Ok(dsm) => match body(&dsm).and_then(|ok| dsm.leave().map(|_| ok)) {
            Ok(true) => {
                println!("verified: true");
                0
            }
            Ok(false) => {
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

/// The command that runs this test binary as node `slot` with `body`.
pub fn node_command(slot: &NodeSlot, body: &str, backend: Backend) -> Command {
    let mut cmd = Command::new(std::env::current_exe().expect("own path"));
    cmd.args([
        "--exact",
        "node_main",
        "--nocapture",
        "--test-threads=1",
        "-q",
    ])
    .env(
        NODE_ENV,
        format!(
            "{}|{}|{}|{body}|{backend}",
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
    match run_cluster(nodes, body, backend) {
        Ok(outputs) => {
            assert_eq!(outputs.len(), nodes);
            for out in outputs {
                assert!(
                    out.stdout.contains("verified: true"),
                    "{body} on {nodes} nodes ({backend}): node {} printed {:?}",
                    out.id,
                    out.stdout
                );
            }
        }
        Err(e) => panic!("{body} on {nodes} nodes ({backend}): {e}"),
    }
}

/// A node process started by hand (for tests that kill or feed nodes).
pub struct NodeProcess {
    pub child: Child,
    pub lines: mpsc::Receiver<String>,
}

impl NodeProcess {
    /// Starts the node with its stdin and stdout piped.
    pub fn spawn(slot: &NodeSlot, body: &str, backend: Backend) -> NodeProcess {
        let mut child = node_command(slot, body, backend)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn node");
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

    /// Waits (bounded by `deadline`) for the node to end; None if it did not.
    pub fn wait_for(mut self, deadline: Duration) -> (Option<ExitStatus>, String) {
        let (tx, rx) = mpsc::channel();
        let mut stderr = self.child.stderr.take().expect("stderr");
        let pid = self.child.id();
        let mut child = self.child;
        std::thread::spawn(move || {
            let status = child.wait();
            let _ = tx.send(status);
        });
        let status = rx.recv_timeout(deadline).ok().and_then(|s| s.ok());
        if status.is_none() {
            // SAFETY: our own child, still running (not reaped): end it so the test ends.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
        }
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
        (status, text)
    }
}

/// A line the node body waits for on stdin (the test's signal to go on).
pub fn wait_for_stdin_line() -> String {
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    line
}

/// Slots for a cluster of `nodes` on free loopback ports.
pub fn slots(nodes: usize) -> Vec<NodeSlot> {
    let peers = memlink_dsm::init::free_ports(nodes).expect("free ports");
    (0..nodes)
        .map(|id| NodeSlot {
            id: id as u16,
            listen: peers[id],
            peers: peers.clone(),
        })
        .collect()
}
