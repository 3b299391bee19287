//! The mailbox between faulting threads (inside the SIGSEGV handler) and the fault service
//! thread: a fixed array of slots, claimed by compare-and-swap, with futex waits on both sides.
//! Nothing here allocates or locks, so the handler side is async-signal-safe.
//!
//! A slot goes FREE → CLAIMED (by a faulting thread) → POSTED (page and access written) →
//! SERVED or FAILED (by the service thread) → FREE (by the faulting thread, after reading the
//! outcome). `posted` counts posts, so that the service thread can sleep on it without missing one.

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, Ordering};

use super::futex;
use crate::types::{Access, PageNo};

const FREE: u32 = 0;
const CLAIMED: u32 = 1;
const POSTED: u32 = 2;
const SERVED: u32 = 3;
const FAILED: u32 = 4;

/// The number of faults that can be outstanding at once (one per faulting thread).
pub(crate) const SLOTS: usize = 64;

#[derive(Debug, Default)]
struct Slot {
    state: AtomicU32,
    page: AtomicU32,
    access: AtomicU8,
}

/// The mailbox: one per registered region.
#[derive(Debug)]
pub(crate) struct FaultSlots {
    slots: [Slot; SLOTS],
    posted: AtomicU32,
    stopping: AtomicBool,
}

/// What the service thread made of a posted fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The page is now accessible: retry the access.
    Served,
    /// The fault cannot be served (the cluster failed or the node left).
    Failed,
}

impl FaultSlots {
    pub(crate) fn new() -> FaultSlots {
        FaultSlots {
            slots: std::array::from_fn(|_| Slot::default()),
            posted: AtomicU32::new(0),
            stopping: AtomicBool::new(false),
        }
    }

    /// Faulting side: posts (page, access) and sleeps until it is served. Async-signal-safe.
    pub(crate) fn post_and_wait(&self, page: PageNo, access: Access) -> Outcome {
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
                // SAFETY: sched_yield has no inputs and is async-signal-safe.
                None => unsafe {
                    libc::sched_yield();
                },
            }
        };
        slot.page.store(page, Ordering::Relaxed);
        slot.access.store(access as u8, Ordering::Relaxed);
        slot.state.store(POSTED, Ordering::Release);
        self.posted.fetch_add(1, Ordering::Release);
        futex::wake(&self.posted, 1);
        let outcome = loop {
            match slot.state.load(Ordering::Acquire) {
                SERVED => break Outcome::Served,
                FAILED => break Outcome::Failed,
                other => futex::wait(&slot.state, other),
            }
        };
        slot.state.store(FREE, Ordering::Release);
        outcome
    }

    /// Service side: sleeps until a fault is posted or [`stop`](Self::stop) was called, then
    /// serves every posted fault with `serve`. Returns false once stopping.
    pub(crate) fn serve_posted(&self, mut serve: impl FnMut(PageNo, Access) -> Outcome) -> bool {
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
    pub(crate) fn stop(&self) {
        self.stopping.store(true, Ordering::Release);
        self.posted.fetch_add(1, Ordering::Release);
        futex::wake(&self.posted, i32::MAX);
        for slot in &self.slots {
            if slot
                .state
                .compare_exchange(POSTED, FAILED, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                futex::wake(&slot.state, 1);
            }
        }
    }
}
