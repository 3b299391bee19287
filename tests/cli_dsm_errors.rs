//! `memlink dsm` errors a user can act on: a connect timeout too long to add to a clock is
//! refused (no overflow panic), and a failed node's message is printed once, never after an
//! empty "its last words:".

use std::process::Command;

fn memlink() -> Command {
    Command::new(env!("CARGO_BIN_EXE_memlink"))
}

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
