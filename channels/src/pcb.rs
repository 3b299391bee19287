//! The process control block (the seed's PCB): the record a blocked party sleeps on.
//!
//! A `Pcb` lives in shared memory next to the channel it belongs to. Its `wake_word` is the
//! futex word (memlink-capability's futex, through [`crate::sync`], so loom models it): a
//! waiter reads it, re-checks its condition and sleeps while the word is unchanged; a waker
//! changes the condition, bumps the word and, only when someone sleeps, makes the wake system
//! call. `sleepers` lets a waker skip that system call, which keeps busy-waiting channels free
//! of system calls.
//!
//! Why not memlink-capability's `ProcessDescriptor`: a descriptor has exactly one owner that
//! blocks on it and keeps a wake-up token for that owner. A `Pcb` serves several waiters at
//! once (all senders of a port, or every sender process of a buffered channel, sleep on the
//! same block and are all woken by `wake_all`), it wakes without a token (the waited-for
//! condition in the channel is the state, re-checked after every wake), and its owner pid can
//! be claimed over by a process that replaces a dead one.

use crate::sync::{AtomicU32, Ordering, fence, futex};
use crate::wait::WaitMode;
use std::time::Duration;

/// A process (or thread) control block in shared memory: futex word, sleeper count, owner pid.
#[repr(C)]
#[derive(Debug)]
pub struct Pcb {
    wake_word: AtomicU32,
    sleepers: AtomicU32,
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
            sleepers: AtomicU32::new(0),
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
    pub fn notify(&self) {
        self.wake_word.fetch_add(1, Ordering::Release);
        // Dekker with `prepare_sleep`: either we see its sleeper, or it sees our increment.
        fence(Ordering::SeqCst);
        if self.sleepers.load(Ordering::Relaxed) != 0 {
            futex::wake_all(&self.wake_word);
        }
    }

    /// [`Pcb::notify`] for a channel waiting per `mode`: a busy-waiting channel's parties never
    /// sleep, so its hot path skips the wake-up word, the fence and the sleeper check.
    #[inline]
    pub fn notify_for(&self, mode: WaitMode) {
        if mode != WaitMode::Spin {
            self.notify();
        }
    }

    /// First half of a sleep: announces a sleeper and returns the token to sleep on. The caller
    /// must re-check its condition after this and before [`Pcb::sleep`].
    pub(crate) fn prepare_sleep(&self) -> u32 {
        self.sleepers.fetch_add(1, Ordering::Relaxed);
        // Pairs with the fence in `notify` (loom models SeqCst fences, not SeqCst accesses).
        fence(Ordering::SeqCst);
        self.wake_word.load(Ordering::Acquire)
    }

    /// Second half of a sleep: blocks while no [`Pcb::notify`] happened since `token` was taken.
    pub(crate) fn sleep(&self, token: u32, timeout: Option<Duration>) {
        futex::wait(&self.wake_word, token, timeout);
        self.cancel_sleep();
    }

    /// Withdraws a sleeper announced by [`Pcb::prepare_sleep`] without sleeping.
    pub(crate) fn cancel_sleep(&self) {
        self.sleepers.fetch_sub(1, Ordering::Relaxed);
    }
}
