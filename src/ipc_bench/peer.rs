//! The second process of a ping-pong: forked from the measuring process, it runs the
//! echo side of a transport and exits; its error, if any, comes back through a pipe.

use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use memlink_capability::PeerLiveness;

use super::error::RunError;

/// How long [`Peer::join`] waits for a peer that should be finishing.
const JOIN_GRACE: Duration = Duration::from_secs(20);

/// A forked peer process. Dropping it without [`Peer::join`] kills it.
#[derive(Debug)]
pub(crate) struct Peer {
    pid: libc::pid_t,
    transport: &'static str,
    liveness: PeerLiveness,
    errors: std::fs::File,
    reaped: bool,
}

fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: `fds` is a writable array of two descriptors, as pipe2 requires.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded and returned two fresh descriptors that nothing else owns.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// A pipe's (read end, write end), close-on-exec.
pub(crate) fn pipe_pair() -> std::io::Result<(OwnedFd, OwnedFd)> {
    pipe()
}

/// Forks a peer that closes `close_in_child` (the measuring side's descriptors, so
/// that end-of-file reaches it when the measuring process goes), runs `serve`, and
/// exits; `serve` is dropped unrun in this process, which closes what it captured.
///
/// The caller must be single-threaded (the CLI and criterion benches are), or accept
/// that the child only runs `serve`: after fork only the forking thread exists.
pub(crate) fn spawn_peer(
    transport: &'static str,
    close_in_child: &[RawFd],
    serve: impl FnOnce() -> Result<(), String>,
) -> Result<Peer, RunError> {
    let (err_read, err_write) = pipe().map_err(RunError::Fork)?;
    // SAFETY: getpid has no preconditions.
    let parent = unsafe { libc::getpid() };
    // SAFETY: fork has no memory-safety preconditions; the child below only closes
    // descriptors, runs `serve` on its copy of this address space, reports through the
    // pipe and leaves with _exit (no atexit handlers, no unwinding into the caller).
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(RunError::Fork(std::io::Error::last_os_error()));
    }
    if pid == 0 {
        drop(err_read);
        // SAFETY: prctl(PR_SET_PDEATHSIG) only sets a flag of this process.
        unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
        // SAFETY: getppid has no preconditions.
        if unsafe { libc::getppid() } != parent {
            // The measuring process is already gone.
            // SAFETY: _exit ends this process at once; nothing else runs.
            unsafe { libc::_exit(3) };
        }
        for &fd in close_in_child {
            // SAFETY: `fd` is a descriptor of the measuring side that this copy of the
            // process never uses; the OwnedFd that owns it lives on only in the parent
            // (this process leaves with _exit and never drops it).
            unsafe { libc::close(fd) };
        }
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            super::affinity::pin_peer()?;
            serve()
        }));
        let code = match outcome {
            Ok(Ok(())) => 0,
            Ok(Err(msg)) => {
                let _ = std::fs::File::from(err_write).write_all(msg.as_bytes());
                1
            }
            Err(_) => {
                let _ = std::fs::File::from(err_write).write_all(b"the peer panicked");
                2
            }
        };
        // SAFETY: _exit ends the child without running the parent's destructors or
        // atexit handlers on this copy of its state.
        unsafe { libc::_exit(code) };
    }
    drop(serve);
    drop(err_write);
    let liveness = PeerLiveness::watch(pid).map_err(|e| {
        RunError::setup(transport, format!("watching the peer process failed: {e}"))
    })?;
    Ok(Peer {
        pid,
        transport,
        liveness,
        errors: std::fs::File::from(err_read),
        reaped: false,
    })
}

impl Peer {
    /// Whether the peer still runs.
    pub(crate) fn is_alive(&self) -> bool {
        self.liveness.is_alive()
    }

    /// The error for a peer that stopped: its own message if it left one.
    pub(crate) fn failure(&mut self) -> RunError {
        self.liveness.wait_exit(Some(Duration::from_millis(300)));
        let mut msg = String::new();
        let _ = self.errors.read_to_string(&mut msg);
        if msg.is_empty() {
            RunError::PeerDied {
                transport: self.transport,
            }
        } else {
            RunError::PeerFailed {
                transport: self.transport,
                detail: msg,
            }
        }
    }

    /// Ends a run: on success waits for the peer to finish cleanly; on failure prefers
    /// the peer's own account (a peer that found a corrupt message and left makes this
    /// side's receive fail), else this side's error (the peer is then killed).
    pub(crate) fn finish<T>(mut self, result: Result<T, RunError>) -> Result<T, RunError> {
        match result {
            Ok(value) => self.join().map(|()| value),
            Err(e) => {
                if self.liveness.wait_exit(Some(Duration::from_millis(300))) {
                    self.reap();
                    let failure = self.failure();
                    if matches!(failure, RunError::PeerDied { .. })
                        && !matches!(e, RunError::Transport { .. })
                    {
                        return Err(e);
                    }
                    return Err(failure);
                }
                Err(e)
            }
        }
    }

    /// Waits for the peer to finish and reports how it ended.
    pub(crate) fn join(mut self) -> Result<(), RunError> {
        if !self.liveness.wait_exit(Some(JOIN_GRACE)) {
            return Err(RunError::PeerFailed {
                transport: self.transport,
                detail: format!(
                    "did not finish within {}s after the last message",
                    JOIN_GRACE.as_secs()
                ),
            });
        }
        if self.reap() == Some(0) {
            Ok(())
        } else {
            Err(self.failure())
        }
    }

    fn reap(&mut self) -> Option<i32> {
        let mut status = 0;
        // SAFETY: waitpid on our own child with a valid status pointer.
        let rc = unsafe { libc::waitpid(self.pid, &mut status, 0) };
        self.reaped = true;
        (rc == self.pid && libc::WIFEXITED(status)).then(|| libc::WEXITSTATUS(status))
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if !self.reaped {
            // SAFETY: kill and waitpid on our own, not yet reaped child.
            unsafe {
                libc::kill(self.pid, libc::SIGKILL);
                libc::waitpid(self.pid, std::ptr::null_mut(), 0);
            }
        }
    }
}

/// A one-byte signal from the peer to the measuring process: "my ends are connected".
/// Returns (the peer's half, the measuring half); list
/// [`ReadyWait::fd`] in the peer's `close_in_child`.
pub(crate) fn ready_pair(transport: &'static str) -> Result<(ReadySignal, ReadyWait), RunError> {
    let (read, write) =
        pipe().map_err(|e| RunError::setup(transport, format!("pipe2 failed: {e}")))?;
    Ok((ReadySignal(write), ReadyWait(read)))
}

/// The peer's half of [`ready_pair`].
pub(crate) struct ReadySignal(OwnedFd);

impl ReadySignal {
    /// Signals readiness.
    pub(crate) fn signal(self) -> Result<(), String> {
        std::fs::File::from(self.0)
            .write_all(b"r")
            .map_err(|e| format!("signalling readiness failed: {e}"))
    }
}

/// The measuring process's half of [`ready_pair`].
pub(crate) struct ReadyWait(OwnedFd);

impl ReadyWait {
    /// The descriptor the peer closes.
    pub(crate) fn fd(&self) -> RawFd {
        use std::os::fd::AsRawFd;
        self.0.as_raw_fd()
    }

    /// Waits for the peer's signal; fails with the peer's own error if it died first.
    pub(crate) fn wait(self, peer: &mut Peer) -> Result<(), RunError> {
        let mut b = [0u8; 1];
        match std::fs::File::from(self.0).read_exact(&mut b) {
            Ok(()) => Ok(()),
            Err(_) => Err(peer.failure()),
        }
    }
}
