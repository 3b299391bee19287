//! A benchmark whose peer process is killed with SIGKILL mid-run ends with a clear
//! error and a non-zero exit, for a blocking transport (a pipe: end of file), a spinning
//! floor (the cache-line ping-pong: the liveness check in its spin loop) and memlink's
//! loan channel (its own disconnect detection), never a hang.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Must-not-hang bound for each step.
const DEADLINE: Duration = Duration::from_secs(20);

fn children_of(pid: u32) -> Vec<i32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

fn kill_peer_mid_run(transport: &str) {
    let mut bench = Command::new(env!("CARGO_BIN_EXE_memlink"))
        .args(["bench", "ipc", "--sizes", "8", "--iters", "100000000"])
        .args(["--transports", transport])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the memlink binary runs");
    // The peer is the bench process's only child; wait (bounded) until it exists.
    let start = Instant::now();
    let peer = loop {
        if let Some(&p) = children_of(bench.id()).first() {
            break p;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "{transport}: no peer process appeared"
        );
        std::thread::yield_now();
    };
    // SAFETY: kill has no memory-safety preconditions; `peer` is our grandchild.
    assert_eq!(unsafe { libc::kill(peer, libc::SIGKILL) }, 0);
    let start = Instant::now();
    let status = loop {
        if let Some(status) = bench.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > DEADLINE {
            let _ = bench.kill();
            panic!("{transport}: the bench hung after its peer was killed");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut bench.stderr.take().unwrap(), &mut err).unwrap();
    assert!(!status.success(), "{transport}: exit status {status}");
    assert!(
        err.contains("peer process died"),
        "{transport}: stderr {err:?} does not say the peer died"
    );
}

#[test]
fn a_killed_peer_ends_a_pipe_run_with_an_error() {
    kill_peer_mid_run("pipe");
}

#[test]
fn a_killed_peer_ends_a_spinning_floor_with_an_error() {
    kill_peer_mid_run("cache-line");
}

#[test]
fn a_killed_peer_ends_a_loan_channel_run_with_an_error() {
    kill_peer_mid_run("loan");
}
