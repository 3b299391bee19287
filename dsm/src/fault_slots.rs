//! The mailbox between faulting threads (inside the SIGSEGV handler) and the fault service
//! thread: a fixed array of slots, claimed by compare-and-swap, with futex waits on both sides.
//! Nothing here allocates or locks, so the handler side is async-signal-safe.
//!
//! A slot goes FREE → CLAIMED (by a faulting thread) → POSTED (page and access written) →
//! SERVED, FAILED or DENIED (by the service thread) → FREE (by the faulting thread, after
//! reading the outcome). `posted` counts posts, so that the service thread can sleep on it
//! without missing one.
//!
//! The atomics and the futex come from `memlink_capability::sync`, so under
//! `--cfg memlink_loom` this same code runs in loom's model checker
//! (`loom-tests/tests/dsm_fault_slots.rs`).

use memlink_capability::sync::{self, AtomicBool, AtomicU8, AtomicU32, Ordering};

use crate::types::{Access, PageNo};

mod futex {
    use super::{AtomicU32, sync};

    /// Sleeps while `*word == expected` (async-signal-safe outside loom: one raw syscall).
    pub(super) fn wait(word: &AtomicU32, expected: u32) {
        let _ = sync::wait(word, expected, None);
    }

    /// Wakes up to `count` sleepers on `word`.
    pub(super) fn wake(word: &AtomicU32, count: u32) {
        let _ = sync::wake(word, count);
    }
}

const FREE: u32 = 0;
const CLAIMED: u32 = 1;
const POSTED: u32 = 2;
const SERVED: u32 = 3;
const FAILED: u32 = 4;
const DENIED: u32 = 5;

/// The number of faults that can be outstanding at once in a node (one per faulting thread);
/// more faulting threads wait for a free slot.
pub const SLOTS: usize = 64;

#[derive(Debug)]
struct Slot {
    state: AtomicU32,
    page: AtomicU32,
    access: AtomicU8,
}

/// The mailbox: one per registered region.
#[derive(Debug)]
pub struct FaultSlots {
    slots: Box<[Slot]>,
    posted: AtomicU32,
    stopping: AtomicBool,
}

/// What the service thread made of a posted fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The page is now accessible: retry the access.
    Served,
    /// The fault cannot be served (the cluster failed or the node left).
    Failed,
    /// The protocol refused the access: the thread gets the protection fault.
    Denied,
}

impl FaultSlots {
    /// A mailbox with `slots` slots (at least one).
    pub fn new(slots: usize) -> FaultSlots {
        FaultSlots {
            slots: (0..slots.max(1))
                .map(|_| Slot {
                    state: AtomicU32::new(FREE),
                    page: AtomicU32::new(0),
                    access: AtomicU8::new(0),
                })
                .collect(),
            posted: AtomicU32::new(0),
            stopping: AtomicBool::new(false),
        }
    }

    /// Faulting side: posts (page, access) and sleeps until it is served. Async-signal-safe.
    pub fn post_and_wait(&self, page: PageNo, access: Access) -> Outcome {
        let slot = loop {
            if self.stopping.load(Ordering::Acquire) {
                return Outcome::Failed;
            }
            let free = self.slots.iter().find(|s| {
                s.state
                    .compare_exchange(FREE, CLAIMED, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            });
            match free {
                Some(slot) => break slot,
                // Every slot is taken by another faulting thread: let them go first.
                None => yield_now(),
            }
        };
        slot.page.store(page, Ordering::Relaxed);
        slot.access.store(access as u8, Ordering::Relaxed);
        // SeqCst, paired with stop(): either stop's sweep sees this post, or this thread sees
        // `stopping` below and fails the fault itself; never neither.
        slot.state.store(POSTED, Ordering::SeqCst);
        self.posted.fetch_add(1, Ordering::Release);
        futex::wake(&self.posted, 1);
        if self.stopping.load(Ordering::SeqCst) {
            let _ =
                slot.state
                    .compare_exchange(POSTED, FAILED, Ordering::SeqCst, Ordering::Relaxed);
        }
        let outcome = loop {
            match slot.state.load(Ordering::Acquire) {
                SERVED => break Outcome::Served,
                FAILED => break Outcome::Failed,
                DENIED => break Outcome::Denied,
                other => futex::wait(&slot.state, other),
            }
        };
        slot.state.store(FREE, Ordering::Release);
        outcome
    }

    /// Service side: sleeps until a fault is posted or [`stop`](Self::stop) was called, then
    /// serves every posted fault with `serve`. Returns false once stopping.
    pub fn serve_posted(&self, mut serve: impl FnMut(PageNo, Access) -> Outcome) -> bool {
        let seen = self.posted.load(Ordering::Acquire);
        let mut any = false;
        for slot in &self.slots {
            if slot.state.load(Ordering::Acquire) != POSTED {
                continue;
            }
            any = true;
            let page = slot.page.load(Ordering::Relaxed);
            let access = match slot.access.load(Ordering::Relaxed) {
                2 => Access::Write,
                1 => Access::Read,
                _ => Access::None,
            };
            let outcome = if self.stopping.load(Ordering::Acquire) {
                Outcome::Failed
            } else {
                serve(page, access)
            };
            let state = match outcome {
                Outcome::Served => SERVED,
                Outcome::Failed => FAILED,
                Outcome::Denied => DENIED,
            };
            // A CAS, not a store: stop() may have failed this slot meanwhile.
            if slot
                .state
                .compare_exchange(POSTED, state, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                futex::wake(&slot.state, 1);
            }
        }
        if self.stopping.load(Ordering::Acquire) {
            return false;
        }
        if !any {
            futex::wait(&self.posted, seen);
        }
        true
    }

    /// Makes the service loop end and every waiting or later fault fail.
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.posted.fetch_add(1, Ordering::Release);
        futex::wake(&self.posted, u32::MAX);
        for slot in &self.slots {
            if slot
                .state
                .compare_exchange(POSTED, FAILED, Ordering::SeqCst, Ordering::Relaxed)
                .is_ok()
            {
                futex::wake(&slot.state, 1);
            }
        }
    }
}

/// Lets other threads run (async-signal-safe outside loom: one raw syscall).
fn yield_now() {
    #[cfg(not(memlink_loom))]
    // SAFETY: sched_yield has no inputs and is async-signal-safe.
    unsafe {
        libc::sched_yield();
    }
    #[cfg(memlink_loom)]
    loom::thread::yield_now();
}
