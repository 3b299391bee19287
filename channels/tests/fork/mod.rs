//! Forking helpers shared by the multi-process tests: the child runs one closure and leaves
//! with `_exit` (its exit code says whether its checks held); the parent waits with waitpid, for a bounded time
//! (a pidfd polled with a deadline; a hung child is killed and the test fails).

#![allow(dead_code)] // each test file uses a subset of these helpers

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

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

/// How long [`wait`] waits for a child before it kills it and fails the test.
pub const WAIT_DEADLINE: Duration = Duration::from_secs(120);

/// Waits for `pid` and returns its exit code, or `128 + signal` if a signal killed it. A child
/// still running after [`WAIT_DEADLINE`] is SIGKILLed, reaped, and the test panics.
pub fn wait(pid: libc::pid_t) -> i32 {
    if !ends_within(pid, WAIT_DEADLINE) {
        kill(pid);
        reap(pid);
        panic!("child process {pid} still ran after {WAIT_DEADLINE:?}: killed it (hung child)");
    }
    let status = reap(pid);
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    }
}

/// Whether our child `pid` ends within `deadline` (polled through a pidfd; it is not reaped).
fn ends_within(pid: libc::pid_t, deadline: Duration) -> bool {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    assert!(
        fd >= 0,
        "pidfd_open({pid}): {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: pidfd_open returned a fresh descriptor that nothing else owns.
    let pidfd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let end = Instant::now() + deadline;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        let mut pfd = libc::pollfd {
            fd: pidfd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = left.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: `pfd` is one live pollfd; a pidfd polls readable when its process ends.
        let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
        if rc > 0 {
            return true;
        }
        if rc == 0 || left.is_zero() {
            return false;
        }
        // rc < 0: interrupted by a signal; poll again for what is left.
    }
}

/// Reaps our child `pid` and returns its raw wait status.
fn reap(pid: libc::pid_t) -> i32 {
    let mut status = 0;
    // SAFETY: `status` is a valid out-parameter; `pid` is our child.
    let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(
        rc,
        pid,
        "waitpid({pid}) failed: {}",
        std::io::Error::last_os_error()
    );
    status
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
