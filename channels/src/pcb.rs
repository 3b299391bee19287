//! The process control block (the seed's PCB): the record a blocked party sleeps on.
//!
//! A `Pcb` lives in shared memory next to the channel it belongs to. Its `wake_word` is the
//! futex word (memlink-capability's futex, through [`crate::sync`], so loom models it): an
//! event count in the upper 31 bits and an *asleep* bit in bit 0.
//!
//! * A waiter takes the count (`Pcb::prepare_sleep`), re-checks its condition, then
//!   `Pcb::sleep` sets the asleep bit with a compare-exchange *on that same count* and only
//!   then calls FUTEX_WAIT. If the count moved meanwhile (a waker came), the compare-exchange
//!   fails and the waiter does not enter the kernel at all.
//! * A waker makes its condition true, then bumps the count and clears the bit in one
//!   compare-exchange ([`Pcb::notify`]); it calls FUTEX_WAKE only if the bit was set, that is
//!   only when a waiter is in, or committed to, FUTEX_WAIT.
//!
//! Both sides change the same word, so its modification order decides: either the waiter's
//! compare-exchange comes first (the waker sees the bit and wakes it) or the waker's comes
//! first (the waiter's fails and it re-checks). No wake-up is lost, and no system call is made
//! for a waiter that never slept, nor by a waiter whose wake-up came before it got to sleep.
//!
//! Why not memlink-capability's `ProcessDescriptor`: a descriptor has exactly one owner that
//! blocks on it and keeps a wake-up token for that owner. A `Pcb` serves several waiters at
//! once (all senders of a port, or every sender process of a buffered channel, sleep on the
//! same block and are all woken by `wake_all`), it wakes without a token (the waited-for
//! condition in the channel is the state, re-checked after every wake), and its owner pid can
//! be claimed over by a process that replaces a dead one.

use crate::sync::{AtomicU32, Ordering, futex};
use crate::wait::WaitMode;
use std::time::Duration;

/// The asleep bit of the wake word; the event count is in the other bits.
const ASLEEP: u32 = 1;
/// One event: the count moves in steps of 2, leaving the asleep bit alone.
const EVENT: u32 = 2;

/// A process (or thread) control block in shared memory: futex word (event count and asleep
/// bit) and owner pid.
#[repr(C)]
#[derive(Debug)]
pub struct Pcb {
    wake_word: AtomicU32,
    pid: AtomicU32,
}

impl Default for Pcb {
    fn default() -> Self {
        Self::new()
    }
}

impl Pcb {
    /// A fresh block with nobody asleep and no owner.
    pub fn new() -> Self {
        Self {
            wake_word: AtomicU32::new(0),
            pid: AtomicU32::new(0),
        }
    }

    /// The pid of the process that owns this block (0: none).
    pub fn pid(&self) -> u32 {
        self.pid.load(Ordering::Acquire)
    }

    /// Records the owner pid.
    pub fn set_pid(&self, pid: u32) {
        self.pid.store(pid, Ordering::Release);
    }

    /// Claims the block for `pid` if it is unowned or owned by `previous` (a dead owner).
    pub fn claim(&self, previous: u32, pid: u32) -> bool {
        self.pid
            .compare_exchange(previous, pid, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Wakes whoever sleeps on this block. Call it after making the waited-for condition true.
    /// Makes the FUTEX_WAKE system call only if a waiter set the asleep bit.
    pub fn notify(&self) {
        let mut cur = self.wake_word.load(Ordering::Relaxed);
        loop {
            // Release: a waiter that takes the new count sees the condition made true before.
            // Acquire: orders our read of the bit after the waiter's announcement.
            match self.wake_word.compare_exchange_weak(
                cur,
                (cur & !ASLEEP).wrapping_add(EVENT),
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(old) => {
                    if old & ASLEEP != 0 {
                        futex::wake_all(&self.wake_word);
                    }
                    return;
                }
                Err(now) => cur = now,
            }
        }
    }

    /// [`Pcb::notify`] for a channel waiting per `mode`: a busy-waiting channel's parties never
    /// sleep, so its hot path skips the wake word entirely.
    #[inline]
    pub fn notify_for(&self, mode: WaitMode) {
        if mode != WaitMode::Spin {
            self.notify();
        }
    }

    /// First half of a sleep: returns the event count to sleep on. The caller must re-check its
    /// condition after this and before [`Pcb::sleep`].
    pub(crate) fn prepare_sleep(&self) -> u32 {
        // Acquire: pairs with `notify`'s release, so a condition made true before the count we
        // read is visible to the re-check.
        self.wake_word.load(Ordering::Acquire) & !ASLEEP
    }

    /// Second half of a sleep: blocks while no [`Pcb::notify`] happened since `token` was
    /// taken. Returns at once, without a system call, if one did.
    pub(crate) fn sleep(&self, token: u32, timeout: Option<Duration>) {
        let asleep = token | ASLEEP;
        let mut cur = self.wake_word.load(Ordering::Relaxed);
        while cur != asleep {
            if cur != token {
                // The count moved: a waker came after our token; re-check, do not sleep.
                return;
            }
            match self.wake_word.compare_exchange_weak(
                token,
                asleep,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(now) => cur = now,
            }
        }
        // The bit is set on our count (by us or by another waiter of this block): any notify
        // from now on sees it and wakes us; one that came in between changed the word, so
        // FUTEX_WAIT returns at once.
        futex::wait(&self.wake_word, asleep, timeout);
    }
}
