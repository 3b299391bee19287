//! Peer liveness through a pidfd: learn that a process died without waiting on it.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::time::Duration;

/// A watch on another process (not necessarily a child) through a pidfd.
#[derive(Debug)]
pub struct PeerLiveness {
    pid: i32,
    pidfd: OwnedFd,
}

impl PeerLiveness {
    /// Starts watching `pid`. Fails with ESRCH if no such process exists now.
    pub fn watch(pid: i32) -> std::io::Result<PeerLiveness> {
        if pid <= 0 {
            return Err(std::io::Error::from_raw_os_error(libc::EINVAL));
        }
        // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
        let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0u32) };
        if raw < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let raw = raw as i32;
        // pidfds are created close-on-exec by the kernel.
        // SAFETY: pidfd_open returned a fresh descriptor that nothing else owns.
        let pidfd = unsafe { OwnedFd::from_raw_fd(raw) };
        Ok(PeerLiveness { pid, pidfd })
    }

    /// The watched pid.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Whether the process is still running (a zombie counts as dead). Never blocks.
    pub fn is_alive(&self) -> bool {
        !self.poll_exited(Some(Duration::ZERO))
    }

    /// Waits up to `timeout` (none: forever) for the process to exit; true if it has.
    pub fn wait_exit(&self, timeout: Option<Duration>) -> bool {
        self.poll_exited(timeout)
    }

    fn poll_exited(&self, timeout: Option<Duration>) -> bool {
        let ms: libc::c_int = match timeout {
            None => -1,
            Some(d) => d.as_millis().min(libc::c_int::MAX as u128) as libc::c_int,
        };
        let mut pfd = libc::pollfd {
            fd: self.pidfd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        loop {
            // SAFETY: `pfd` is one valid pollfd on this stack frame.
            let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
            if rc < 0 {
                if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                // A pidfd that cannot be polled means we cannot see the peer: treat as dead
                // rather than letting a waiter hang forever.
                return true;
            }
            return rc > 0 && pfd.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0;
        }
    }
}

impl AsFd for PeerLiveness {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.pidfd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sees_a_child_exit() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let watch = PeerLiveness::watch(child.id() as i32).unwrap();
        assert!(watch.is_alive());
        child.kill().unwrap();
        assert!(watch.wait_exit(Some(Duration::from_secs(10))));
        assert!(!watch.is_alive());
        child.wait().unwrap();
    }

    #[test]
    fn self_is_alive_and_bad_pid_is_error() {
        assert!(
            PeerLiveness::watch(std::process::id() as i32)
                .unwrap()
                .is_alive()
        );
        assert!(PeerLiveness::watch(0).is_err());
    }
}
