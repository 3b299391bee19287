//! `memlink dsm` errors a user can act on: a connect timeout too long to add to a clock is
//! refused (no overflow panic), a failed node's message is printed once, never after an
//! empty "its last words:", a flag the app does not use is refused naming the apps it applies
//! to, a run that needs more memory than the machine has is refused up front, and a long run
//! says how long it may take.

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use crate::cli_support::memlink;

#[test]
fn an_endless_connect_timeout_is_refused_not_a_panic() {
    let out = memlink()
        .args(["dsm", "node", "--id", "0", "--listen", "127.0.0.1:0"])
        .args(["--peers", "127.0.0.1:0", "--app", "counter"])
        .args(["--connect-timeout", "18446744073709551615"])
        .output()
        .expect("run memlink");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        stderr.contains("--connect-timeout") && stderr.contains("86400"),
        "{stderr}"
    );
}

/// Every node fails at once with its own message (a region base that does not parse): the
/// launcher names the first failed node and quotes each node's message exactly once.
#[test]
fn a_failed_node_is_quoted_once() {
    let out = memlink()
        .args(["dsm", "run", "--nodes", "2", "--app", "counter"])
        .env("MEMLINK_DSM_BASE", "not-hex")
        .output()
        .expect("run memlink");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert_quoted_once(&stderr, 2);
    assert!(stderr.contains("its last words:\n"), "{stderr}");
    assert!(stderr.contains("MEMLINK_DSM_BASE"), "{stderr}");
}

/// Each node's own message ("memlink dsm node N: ...") appears at most once, at least one
/// does, and "its last words:" is always followed by words.
fn assert_quoted_once(stderr: &str, nodes: u16) {
    let mut quoted = 0;
    for n in 0..nodes {
        let times = stderr.matches(&format!("memlink dsm node {n}:")).count();
        assert!(times <= 1, "node {n} quoted {times} times:\n{stderr}");
        quoted += times;
    }
    assert!(quoted >= 1, "no node quoted:\n{stderr}");
    if let Some((_, after)) = stderr.split_once("its last words:") {
        let words = after.lines().nth(1).unwrap_or("");
        assert!(!words.trim().is_empty(), "empty last words:\n{stderr}");
    }
}

#[test]
fn a_flag_the_app_does_not_use_is_refused() {
    for (app, flag) in [
        ("counter", &["--size", "100"][..]),
        ("matmul", &["--iters", "3"]),
        ("sort", &["--no-prefetch"]),
    ] {
        let out = memlink()
            .args(["dsm", "run", "--nodes", "1", "--app", app])
            .args(flag)
            .output()
            .expect("run memlink");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{app} {flag:?}: {stderr}");
        assert!(
            stderr.contains(&format!("{app} does not use {}", flag[0]))
                && stderr.contains("applies to jacobi"),
            "{stderr}"
        );
    }
    // One node of a multi-host cluster too, before it waits for any peer.
    let out = memlink()
        .args(["dsm", "node", "--id", "0", "--listen", "127.0.0.1:0"])
        .args(["--peers", "127.0.0.1:0,127.0.0.1:1", "--app", "counter"])
        .args(["--iters", "5"])
        .output()
        .expect("run memlink");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("counter does not use --iters"), "{stderr}");
}

/// 64 nodes of jacobi 16384 need about 8 GiB each: far more than any machine running this
/// test has, so the run is refused at once with what it needs and what is available.
#[test]
fn a_run_larger_than_the_memory_is_refused_up_front() {
    let out = memlink()
        .args([
            "dsm", "run", "--nodes", "64", "--app", "jacobi", "--size", "16384",
        ])
        .output()
        .expect("run memlink");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    for words in [
        "needs about 8.0 GiB per node",
        "for 64 nodes",
        "MemAvailable",
        "--size",
    ] {
        assert!(stderr.contains(words), "{words:?} missing: {stderr}");
    }
}

/// A long jacobi run says, before it starts, how long it may take and when it will give up
/// (well past the 120 s of a short run); it is stopped right after saying so.
#[test]
fn a_long_run_says_how_long_to_wait() {
    let mut launcher = memlink()
        .args(["dsm", "run", "--nodes", "2", "--app", "jacobi"])
        .args(["--size", "2048", "--iters", "2000"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start memlink");
    let mut first = String::new();
    let mut stderr = BufReader::new(launcher.stderr.take().expect("stderr"));
    stderr.read_line(&mut first).expect("read stderr");
    // SAFETY: kill only sends a signal, to our own unreaped child.
    unsafe { libc::kill(launcher.id() as libc::pid_t, libc::SIGTERM) };
    let _ = launcher.wait();
    let limit: u64 = first
        .split("giving up after ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|secs| secs.parse().ok())
        .unwrap_or_else(|| panic!("no time limit said: {first}"));
    assert!(limit > 120, "{first}");
    assert!(
        first.contains("jacobi 2048x2048, 2000 sweeps") && first.contains("--timeout"),
        "{first}"
    );
}
