//! Forking helpers shared by the multi-process tests: the child runs one closure and leaves
//! with `_exit` (its exit code says whether its checks held); the parent waits with waitpid.

#![allow(dead_code)] // each test file uses a subset of these helpers

use std::panic::{AssertUnwindSafe, catch_unwind};

/// Forks; the child runs `work` and exits with its return code (101 if it panicked).
pub fn child(work: impl FnOnce() -> i32) -> libc::pid_t {
    // SAFETY: fork has no preconditions; the child only runs `work` and then `_exit`s, never
    // returning into the test harness.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed: {}", std::io::Error::last_os_error());
    if pid == 0 {
        let code = catch_unwind(AssertUnwindSafe(work)).unwrap_or(101);
        // SAFETY: ends the child without running the parent's atexit handlers or destructors.
        unsafe { libc::_exit(code) };
    }
    pid
}

/// Waits for `pid` and returns its exit code, or `128 + signal` if a signal killed it.
pub fn wait(pid: libc::pid_t) -> i32 {
    let mut status = 0;
    // SAFETY: `status` is a valid out-parameter; `pid` is our child.
    let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(
        rc,
        pid,
        "waitpid failed: {}",
        std::io::Error::last_os_error()
    );
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    }
}

/// Sends SIGKILL to `pid`.
pub fn kill(pid: libc::pid_t) {
    // SAFETY: sending a signal to our own child.
    unsafe { libc::kill(pid, libc::SIGKILL) };
}

/// The calling process kills itself with SIGKILL (no cleanup of any kind runs).
pub fn die() -> ! {
    // SAFETY: sending SIGKILL to ourselves; it cannot be caught, so we never return.
    unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
    unreachable!("SIGKILL did not kill us")
}

/// A pipe used as a one-shot event between parent and child.
pub struct Event {
    read: i32,
    write: i32,
}

impl Event {
    /// A fresh event (create it before forking).
    pub fn new() -> Event {
        let mut fds = [0; 2];
        // SAFETY: `fds` is a valid out-array of two ints.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        Event {
            read: fds[0],
            write: fds[1],
        }
    }

    /// Signals the event.
    pub fn set(&self) {
        // SAFETY: writing one byte from a valid buffer to our pipe.
        let n = unsafe { libc::write(self.write, [1u8].as_ptr().cast(), 1) };
        assert_eq!(n, 1);
    }

    /// Waits for the event (or for every writer to be gone; returns false then).
    pub fn wait(&self) -> bool {
        let mut b = [0u8];
        // SAFETY: reading one byte into a valid buffer from our pipe.
        unsafe { libc::read(self.read, b.as_mut_ptr().cast(), 1) == 1 }
    }
}
