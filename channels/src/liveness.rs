//! Seeing a peer process die without waiting for it: pidfd.
//!
//! A dead process wakes nobody, so a waiter periodically asks whether its peer still lives.
//! The pidfd is opened once per peer pid; it becomes readable when the process exits (also
//! while it is a zombie that nobody reaped yet), which `kill(pid, 0)` would not tell.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// Watches one peer process through a pidfd.
#[derive(Debug)]
pub struct PeerWatch {
    pid: u32,
    fd: Option<OwnedFd>,
}

impl PeerWatch {
    /// Starts watching `pid`. If the process is already gone the watch reports it dead.
    pub fn new(pid: u32) -> PeerWatch {
        // SAFETY: pidfd_open takes a pid and flags, and returns a new descriptor or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
        let fd = (fd >= 0).then(|| {
            // SAFETY: the kernel just returned this descriptor to us; nothing else owns it.
            unsafe { OwnedFd::from_raw_fd(fd as i32) }
        });
        PeerWatch { pid, fd }
    }

    /// The watched pid.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Whether the watched process is still running (not exited, not a zombie).
    pub fn is_alive(&self) -> bool {
        let Some(fd) = &self.fd else { return false };
        let mut pfd = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: `pfd` is a valid pollfd for the duration of the call; count 1 matches.
        let rc = unsafe { libc::poll(&mut pfd, 1, 0) };
        rc == 0
    }
}

/// Whether process `pid` is running right now (one-off check, for reclaiming resources).
pub fn pid_is_alive(pid: u32) -> bool {
    pid != 0 && PeerWatch::new(pid).is_alive()
}

/// The calling process's pid.
pub fn current_pid() -> u32 {
    std::process::id()
}

/// A cache of the pidfd of the peer an endpoint last looked at, so that a waiting endpoint
/// opens the pidfd once and then only polls it.
#[derive(Debug, Default)]
pub(crate) struct PeerCache {
    watch: Option<PeerWatch>,
}

impl PeerCache {
    /// Whether the process `pid` (the current holder of the peer endpoint) has died.
    /// `0` (no peer yet) is not dead.
    pub(crate) fn is_dead(&mut self, pid: u32) -> bool {
        if pid == 0 {
            return false;
        }
        if self.watch.as_ref().is_none_or(|w| w.pid() != pid) {
            self.watch = Some(PeerWatch::new(pid));
        }
        self.watch.as_ref().is_some_and(|w| !w.is_alive())
    }
}
