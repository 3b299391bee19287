//! Starting helper processes from integration tests: `fork` for children that share the
//! test's setup, and re-executing the test binary for separately started processes.

#![allow(dead_code)]

use std::process::{Child, Command};

/// Forks; the child runs `f` and exits with its return code via `_exit` (a panic is
/// exit code 101).
pub fn fork_child(f: impl FnOnce() -> i32) -> libc::pid_t {
    // SAFETY: fork has no memory preconditions; the child only runs `f` and `_exit`s.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or(101);
        // SAFETY: _exit ends the child without running the parent's destructors.
        unsafe { libc::_exit(code) };
    }
    pid
}

/// Waits for `pid`; returns Ok(exit code) or Err(signal number).
pub fn wait_child(pid: libc::pid_t) -> Result<i32, i32> {
    let mut status = 0;
    // SAFETY: `status` is a valid out-pointer; pid is our child.
    let r = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(r, pid, "waitpid failed");
    if libc::WIFEXITED(status) {
        Ok(libc::WEXITSTATUS(status))
    } else {
        Err(libc::WTERMSIG(status))
    }
}

/// Sends SIGKILL to `pid`.
pub fn kill9(pid: libc::pid_t) {
    // SAFETY: kill has no memory preconditions.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
}

/// The environment variable that tells a re-executed test binary which role to play.
pub const ROLE_ENV: &str = "MEMLINK_TEST_ROLE";

/// Starts this test binary again, running only test `test_name`, with role data in the
/// environment: a separately started process, not a fork.
pub fn spawn_role(test_name: &str, role: &str) -> Child {
    Command::new(std::env::current_exe().expect("test binary path"))
        .args(["--exact", test_name, "--nocapture", "--test-threads=1"])
        .env(ROLE_ENV, role)
        .spawn()
        .expect("spawn test binary")
}

/// The role this process was started with, if any.
pub fn role() -> Option<String> {
    std::env::var(ROLE_ENV).ok()
}

/// A unix socket path unique to this process and tag.
pub fn socket_path(tag: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("memlink-{tag}-{}", std::process::id()))
}

/// Names in /dev/shm right now (empty if it does not exist).
pub fn dev_shm_entries() -> std::collections::BTreeSet<String> {
    std::fs::read_dir("/dev/shm")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}
