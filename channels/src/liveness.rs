//! Seeing a peer process die without waiting for it: pidfd.
//!
//! A dead process wakes nobody, so a waiter periodically asks whether its peer still lives.
//! The pidfd is opened once per peer pid; it reports the process dead once it exits (also
//! while it is a zombie that nobody reaped yet), which `kill(pid, 0)` would not tell.

use memlink_capability::liveness::PeerLiveness;

/// Watches one peer process through memlink-capability's pidfd-backed [`PeerLiveness`]; a
/// process already gone when the watch starts is reported dead.
#[derive(Debug)]
pub struct PeerWatch {
    pid: u32,
    watch: Option<PeerLiveness>,
}

impl PeerWatch {
    /// Starts watching `pid`.
    pub fn new(pid: u32) -> PeerWatch {
        PeerWatch {
            pid,
            watch: PeerLiveness::watch(pid as i32).ok(),
        }
    }

    /// The watched pid.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Whether the watched process is still running (not exited, not a zombie).
    pub fn is_alive(&self) -> bool {
        self.watch.as_ref().is_some_and(PeerLiveness::is_alive)
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
