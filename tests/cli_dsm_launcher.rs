//! `memlink dsm run` and its node processes end together: a SIGKILLed launcher leaves no node
//! behind, a SIGTERMed one passes the signal on, waits for its nodes and exits with 143, and a
//! node killed under a running launcher is reported once.
//!
//! Each test starts a cluster with work for hours (jacobi, a million sweeps), finds the node
//! processes among the launcher's children in /proc, holds a pidfd on each (so a pid reused
//! later cannot be mistaken for a node) and waits on those pidfds, with a bound, for the nodes
//! to end.

use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long nodes may take to end once they have to (generous: the machine may be busy).
const BOUND: Duration = Duration::from_secs(30);

/// A node process found under the launcher: its pid, and a pidfd that keeps naming it. A node
/// still running when the test ends (a failed assertion) is killed through the pidfd.
struct NodeProcess(u32, OwnedFd);

impl Drop for NodeProcess {
    fn drop(&mut self) {
        // SAFETY: pidfd_send_signal on our own pidfd; a process that has ended ignores it.
        unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.1.as_raw_fd(),
                libc::SIGKILL,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
    }
}

/// Starts `memlink dsm run` with `nodes` nodes of long work, and returns it with a pidfd for
/// each of its node processes once they all run `memlink dsm node`.
fn start_long_cluster(nodes: usize) -> (Child, Vec<NodeProcess>) {
    let mut launcher = Command::new(env!("CARGO_BIN_EXE_memlink"))
        .args([
            "dsm",
            "run",
            "--nodes",
            &nodes.to_string(),
            "--app",
            "jacobi",
        ])
        .args(["--size", "512", "--iters", "1000000"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start memlink dsm run");
    let started = Instant::now();
    loop {
        let found = node_children(launcher.id());
        if found.len() == nodes {
            let fds = found
                .into_iter()
                .map(|pid| NodeProcess(pid, pidfd(pid)))
                .collect();
            return (launcher, fds);
        }
        if let Ok(Some(status)) = launcher.try_wait() {
            panic!("the launcher ended before its nodes ran: {status}");
        }
        assert!(
            started.elapsed() < BOUND,
            "the nodes did not start within {BOUND:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The children of `pid` that run `memlink dsm node` (forked ones not yet exec'd are skipped).
fn node_children(pid: u32) -> Vec<u32> {
    let mut kids = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return kids;
    };
    for task in tasks.flatten() {
        let list = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        for kid in list
            .split_whitespace()
            .filter_map(|k| k.parse::<u32>().ok())
        {
            let cmdline = std::fs::read(format!("/proc/{kid}/cmdline")).unwrap_or_default();
            let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            if args.windows(2).any(|w| w == [&b"dsm"[..], &b"node"[..]]) {
                kids.push(kid);
            }
        }
    }
    kids
}

fn pidfd(pid: u32) -> OwnedFd {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    assert!(
        fd >= 0,
        "pidfd_open({pid}): {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: the descriptor was just created and nothing else owns it.
    unsafe { OwnedFd::from_raw_fd(fd as i32) }
}

/// Whether the process behind `fd` ends within `bound` (a pidfd polls readable once it has).
fn ends_within(fd: &OwnedFd, bound: Duration) -> bool {
    let deadline = Instant::now() + bound;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut p = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: `p` is one live pollfd.
        let n = unsafe { libc::poll(&mut p, 1, left.as_millis().min(i32::MAX as u128) as i32) };
        if n == 1 {
            return true;
        }
        if n == 0 || left.is_zero() {
            return false;
        }
    }
}

fn stderr_of(launcher: &mut Child) -> String {
    let mut text = String::new();
    if let Some(mut e) = launcher.stderr.take() {
        let _ = e.read_to_string(&mut text);
    }
    text
}

fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: kill only sends a signal; `pid` is a process this test started or holds a
    // pidfd on and has not reaped.
    assert_eq!(unsafe { libc::kill(pid as libc::pid_t, sig) }, 0);
}

#[test]
fn a_killed_launcher_leaves_no_node_behind() {
    let (mut launcher, nodes) = start_long_cluster(2);
    signal(launcher.id(), libc::SIGKILL);
    let _ = launcher.wait();
    for NodeProcess(pid, fd) in &nodes {
        assert!(
            ends_within(fd, BOUND),
            "node process {pid} still runs {BOUND:?} after its launcher was killed"
        );
    }
}

#[test]
fn a_terminated_launcher_stops_its_nodes_and_says_so() {
    let (mut launcher, nodes) = start_long_cluster(2);
    signal(launcher.id(), libc::SIGTERM);
    let launcher_fd = pidfd(launcher.id());
    assert!(
        ends_within(&launcher_fd, BOUND),
        "the launcher still runs {BOUND:?} after SIGTERM"
    );
    let stderr = stderr_of(&mut launcher);
    let status = launcher.wait().expect("reap the launcher");
    assert_eq!(
        status.code(),
        Some(128 + libc::SIGTERM),
        "{status}: {stderr}"
    );
    assert!(stderr.contains("stopped by SIGTERM"), "{stderr}");
    for NodeProcess(pid, fd) in &nodes {
        // The launcher waited for them: they have ended already.
        assert!(
            ends_within(fd, Duration::ZERO),
            "node {pid} outlived its launcher"
        );
    }
}

/// A node killed under its launcher: the launcher ends, names the node, and quotes each
/// node's message at most once, never after an empty "its last words:".
#[test]
fn a_killed_node_is_reported_once() {
    let (mut launcher, nodes) = start_long_cluster(3);
    let victim = nodes
        .iter()
        .find(|NodeProcess(pid, _)| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            args.windows(2).any(|w| w == [&b"--id"[..], &b"1"[..]])
        })
        .expect("node 1 among the children");
    signal(victim.0, libc::SIGKILL);
    let launcher_fd = pidfd(launcher.id());
    assert!(
        ends_within(&launcher_fd, BOUND),
        "the launcher still runs {BOUND:?} after node 1 was killed"
    );
    let stderr = stderr_of(&mut launcher);
    let status = launcher.wait().expect("reap the launcher");
    assert!(!status.success(), "{stderr}");
    assert!(stderr.contains("node 1"), "{stderr}");
    for n in 0..3 {
        let times = stderr.matches(&format!("memlink dsm node {n}:")).count();
        assert!(times <= 1, "node {n} quoted {times} times:\n{stderr}");
    }
    if let Some((_, after)) = stderr.split_once("its last words:") {
        let words = after.lines().nth(1).unwrap_or("");
        assert!(!words.trim().is_empty(), "empty last words:\n{stderr}");
    }
}
