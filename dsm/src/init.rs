//! Cluster bootstrap on one host: pick free loopback ports, start N node processes, collect
//! what each printed, and when one dies, kill the rest and say which one died and how.
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
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::types::NodeId;

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
            LaunchError::Spawn { node, error } => {
                write!(f, "cannot start node {node}: {error}")
            }
            LaunchError::NodeFailed { node, outputs } => {
                let out = outputs.iter().find(|o| o.id == *node);
                match out {
                    Some(o) => write!(
                        f,
                        "node {node} {} (the other nodes were stopped); its last words:\n{}",
                        describe(&o.status),
                        last_lines(&o.stderr, 8)
                    ),
                    None => write!(f, "node {node} failed (the other nodes were stopped)"),
                }
            }
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

/// `count` distinct free ports on 127.0.0.1 (free when asked: another process may take one
/// before the node binds it, which the node then reports).
pub fn free_ports(count: usize) -> io::Result<Vec<SocketAddr>> {
    let listeners = (0..count)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<io::Result<Vec<_>>>()?;
    listeners.iter().map(|l| l.local_addr()).collect()
}

fn reader(mut pipe: impl Read + Send + 'static) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// Starts `nodes` node processes on loopback, each from `command(slot)`, with stdout and stderr
/// captured, and waits for all of them (at most `deadline`). The first node that fails makes
/// the launcher kill the others and return [`LaunchError::NodeFailed`].
pub fn launch(
    nodes: usize,
    deadline: Duration,
    mut command: impl FnMut(&NodeSlot) -> Command,
) -> Result<Vec<NodeOutput>, LaunchError> {
    let peers = free_ports(nodes).map_err(LaunchError::Ports)?;
    let mut children: Vec<Child> = Vec::with_capacity(nodes);
    let mut pipes = Vec::with_capacity(nodes);
    for id in 0..nodes {
        let slot = NodeSlot {
            id: id as NodeId,
            listen: peers[id],
            peers: peers.clone(),
        };
        let spawned = command(&slot)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
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
    // One waiter thread per child reports its exit; the main thread reacts to the first failure.
    let (tx, rx) = mpsc::channel::<(usize, io::Result<ExitStatus>)>();
    let pids: Vec<u32> = children.iter().map(|c| c.id()).collect();
    let waiters: Vec<JoinHandle<()>> = children
        .into_iter()
        .enumerate()
        .map(|(i, mut child)| {
            let tx = tx.clone();
            std::thread::spawn(move || {
                let _ = tx.send((i, child.wait()));
            })
        })
        .collect();
    drop(tx);
    let start = Instant::now();
    let mut statuses: Vec<Option<ExitStatus>> = vec![None; nodes];
    let mut failed: Option<usize> = None;
    let mut timed_out = false;
    let mut done = 0;
    while done < nodes {
        let left = deadline.saturating_sub(start.elapsed());
        match rx.recv_timeout(left) {
            Ok((i, status)) => {
                done += 1;
                let ok = matches!(&status, Ok(s) if s.success());
                statuses[i] = status.ok();
                if !ok && failed.is_none() {
                    failed = Some(i);
                    kill_all(&pids, &statuses);
                }
            }
            Err(_) => {
                timed_out = true;
                kill_all(&pids, &statuses);
                // The waiters reap the killed children and report them.
                while done < nodes {
                    match rx.recv() {
                        Ok((i, status)) => {
                            statuses[i] = status.ok();
                            done += 1;
                        }
                        Err(_) => break,
                    }
                }
            }
        }
    }
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

/// SIGKILLs every node that has not been reaped yet (a reaped pid may be reused, so those are
/// left alone).
fn kill_all(pids: &[u32], statuses: &[Option<ExitStatus>]) {
    for (pid, status) in pids.iter().zip(statuses) {
        if status.is_none() {
            // SAFETY: kill only sends a signal; the pid is our own child, not yet reaped by its
            // waiter thread as far as we know (it is at worst a zombie, still ours).
            unsafe { libc::kill(*pid as libc::pid_t, libc::SIGKILL) };
        }
    }
}
