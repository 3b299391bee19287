//! The process descriptor (the seeds' PCB) that lives in shared memory: a futex word
//! to block on and be woken through, and the owner's pid so that peers can check it is
//! alive.
//!
//! The wake-up protocol is a one-token parker (as in std's futex thread parker):
//! `EMPTY` → `NOTIFIED` by [`ProcessDescriptor::wake`], consumed by a block; a blocking
//! owner moves `EMPTY` → `PARKED` and sleeps on the word until a waker swaps in
//! `NOTIFIED`. A wake that comes before the block is never lost: the token stays.

use std::time::Duration;

use crate::futex::{self, WaitOutcome};
use crate::shareable::Shareable;
use crate::sync::{AtomicU32, Ordering};

const EMPTY: u32 = 0;
const NOTIFIED: u32 = 1;
const PARKED: u32 = u32::MAX;

/// How a block on a [`ProcessDescriptor`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockOutcome {
    /// Another process (or thread) called [`ProcessDescriptor::wake`].
    Woken,
    /// The timeout elapsed with no wake-up.
    TimedOut,
    /// The peer the block was watching died.
    PeerDied,
}

/// A per-process record in shared memory: a wake-up word and the owner's pid.
/// Exactly one process (the owner) blocks on it; any process may wake it.
#[repr(C, align(64))]
pub struct ProcessDescriptor {
    state: AtomicU32,
    pid: AtomicU32,
}

// SAFETY: repr(C) of two atomics; every bit pattern is a valid state (unknown values are
// treated as EMPTY by the protocol); no pointers or handles.
unsafe impl Shareable for ProcessDescriptor {}

impl Default for ProcessDescriptor {
    fn default() -> Self {
        Self::new(0)
    }
}

impl std::fmt::Debug for ProcessDescriptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessDescriptor")
            .field("pid", &self.pid.load(Ordering::Relaxed))
            .field("state", &self.state.load(Ordering::Relaxed))
            .finish()
    }
}

impl ProcessDescriptor {
    /// A descriptor owned by `pid`, with no pending wake-up.
    pub fn new(pid: u32) -> ProcessDescriptor {
        ProcessDescriptor {
            state: AtomicU32::new(EMPTY),
            pid: AtomicU32::new(pid),
        }
    }

    /// Initialises a descriptor in place (for example in freshly created shared memory)
    /// for `pid`, dropping any pending wake-up.
    pub fn reset(&self, pid: u32) {
        self.pid.store(pid, Ordering::Relaxed);
        self.state.store(EMPTY, Ordering::Release);
    }

    /// The owner's pid.
    pub fn pid(&self) -> u32 {
        self.pid.load(Ordering::Acquire)
    }

    /// Marks the calling process as owner.
    #[cfg(not(memlink_loom))]
    pub fn claim(&self) {
        self.pid.store(std::process::id(), Ordering::Release);
    }

    /// Wakes the owner: its current or next block returns `Woken`. Returns whether a
    /// sleeping owner was found (a wake-up before the block is kept, not lost).
    pub fn wake(&self) -> bool {
        if self.state.swap(NOTIFIED, Ordering::Release) == PARKED {
            futex::wake(&self.state, 1);
            true
        } else {
            false
        }
    }

    /// Consumes a pending wake-up without blocking; true if there was one.
    pub fn try_consume_wake(&self) -> bool {
        self.state
            .compare_exchange(NOTIFIED, EMPTY, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }

    /// The core blocking loop. Sleeps in slices of `slice`; after each slice that passes
    /// with no wake-up, `peer_alive()` is asked, and `deadline_passed()` decides when to
    /// give up. Shared by the real block and the loom models.
    pub fn block_with(
        &self,
        slice: Option<Duration>,
        mut peer_alive: impl FnMut() -> bool,
        mut deadline_passed: impl FnMut() -> bool,
    ) -> BlockOutcome {
        // NOTIFIED -> EMPTY (consume) or EMPTY -> PARKED.
        if self.try_consume_wake() {
            return BlockOutcome::Woken;
        }
        if self
            .state
            .compare_exchange(EMPTY, PARKED, Ordering::Acquire, Ordering::Acquire)
            .is_err()
        {
            // Either a wake arrived in between (consume it), or the word held garbage
            // written by a peer: reset it, report a (spurious) wake, the caller re-checks.
            // A swap, not a store: reading the latest token synchronises with the last
            // waker, so its writes are visible (a plain store lost wake-ups under loom).
            self.state.swap(EMPTY, Ordering::Acquire);
            return BlockOutcome::Woken;
        }
        loop {
            let outcome = futex::wait(&self.state, PARKED, slice);
            if self.try_consume_wake() {
                return BlockOutcome::Woken;
            }
            if outcome == WaitOutcome::TimedOut || slice.is_none() {
                let give_up = if !peer_alive() {
                    Some(BlockOutcome::PeerDied)
                } else if deadline_passed() {
                    Some(BlockOutcome::TimedOut)
                } else {
                    None
                };
                if let Some(out) = give_up {
                    // Leave the parked state; a wake that raced in wins.
                    return match self.state.swap(EMPTY, Ordering::Acquire) {
                        NOTIFIED => BlockOutcome::Woken,
                        _ => out,
                    };
                }
            }
            // Woken with no token (spurious, or a peer wrote garbage into the word): if
            // the word is neither PARKED nor NOTIFIED, restore PARKED and keep waiting.
            let cur = self.state.load(Ordering::Relaxed);
            if cur != PARKED && cur != NOTIFIED {
                let _ =
                    self.state
                        .compare_exchange(cur, PARKED, Ordering::Acquire, Ordering::Relaxed);
            }
        }
    }

    /// Blocks until woken, until `timeout` passes, or until `peer` (if given) dies,
    /// checking the peer every `check_every`.
    #[cfg(not(memlink_loom))]
    pub fn block(
        &self,
        timeout: Option<Duration>,
        peer: Option<&crate::liveness::PeerLiveness>,
        check_every: Duration,
    ) -> BlockOutcome {
        // A timeout too long for an `Instant` is no deadline at all.
        let deadline = timeout.and_then(|t| std::time::Instant::now().checked_add(t));
        let slice = match (peer, timeout) {
            (None, None) => None,
            (None, Some(t)) => Some(t.min(check_every.max(Duration::from_millis(1)))),
            _ => Some(check_every.max(Duration::from_millis(1))),
        };
        self.block_with(
            slice,
            || peer.is_none_or(|p| p.is_alive()),
            || deadline.is_some_and(|d| std::time::Instant::now() >= d),
        )
    }
}

#[cfg(all(test, not(memlink_loom)))]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn wake_before_block_is_kept() {
        let d = ProcessDescriptor::new(1);
        assert!(!d.wake());
        assert_eq!(
            d.block(
                Some(Duration::from_secs(5)),
                None,
                Duration::from_millis(10)
            ),
            BlockOutcome::Woken
        );
    }

    #[test]
    fn block_times_out() {
        let d = ProcessDescriptor::new(1);
        assert_eq!(
            d.block(
                Some(Duration::from_millis(20)),
                None,
                Duration::from_millis(5)
            ),
            BlockOutcome::TimedOut
        );
    }

    #[test]
    fn wake_from_another_thread() {
        let d = Arc::new(ProcessDescriptor::new(1));
        let d2 = Arc::clone(&d);
        let t = std::thread::spawn(move || d2.block(None, None, Duration::from_millis(10)));
        // Wake until the blocked thread has consumed a token.
        while !t.is_finished() {
            d.wake();
            std::thread::yield_now();
        }
        assert_eq!(t.join().unwrap(), BlockOutcome::Woken);
    }

    #[test]
    fn dead_peer_ends_the_block() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let peer = crate::liveness::PeerLiveness::watch(child.id() as i32).unwrap();
        child.kill().unwrap();
        let d = ProcessDescriptor::new(1);
        assert_eq!(
            d.block(None, Some(&peer), Duration::from_millis(5)),
            BlockOutcome::PeerDied
        );
        child.wait().unwrap();
    }
}
