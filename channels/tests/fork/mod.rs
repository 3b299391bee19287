//! Forking helpers shared by the multi-process tests, on top of memlink-test-support: the
//! child runs one closure and leaves with `_exit` (its exit code says whether its checks
//! held); the parent waits for a bounded time (a hung child is killed and the test fails).

#![allow(dead_code)] // each test file uses a subset of these helpers

pub use memlink_test_support::fork_child as child;

/// Waits (bounded, see memlink_test_support::DEADLINE) for `pid` and returns its exit code,
/// or `128 + signal` if a signal killed it.
pub fn wait(pid: libc::pid_t) -> i32 {
    match memlink_test_support::wait_child(pid) {
        Ok(code) => code,
        Err(signal) => 128 + signal,
    }
}

/// Sends SIGKILL to our child `pid`.
pub fn kill(pid: libc::pid_t) {
    memlink_test_support::kill9(pid)
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
