//! The one place where memlink-capability chooses between real and modelled concurrency.
//!
//! Normal builds re-export `std`'s atomics and the real futex; builds with
//! `--cfg memlink_loom` re-export loom's atomics and a loom model of a futex, so the
//! same protocol code (process descriptor, capability guard counts, revocation) runs
//! over a mapped segment and inside loom's model checker. Other memlink crates reuse
//! this module as `memlink_capability::sync` instead of writing their own shim.

#[cfg(not(memlink_loom))]
pub use std::sync::atomic::{
    AtomicBool, AtomicI32, AtomicI64, AtomicU8, AtomicU16, AtomicU32, AtomicU64, AtomicUsize,
    Ordering, fence,
};

#[cfg(memlink_loom)]
pub use loom::sync::atomic::{
    AtomicBool, AtomicI32, AtomicI64, AtomicU8, AtomicU16, AtomicU32, AtomicU64, AtomicUsize,
    Ordering, fence,
};

#[cfg(not(memlink_loom))]
pub use std::cell::UnsafeCell;

#[cfg(not(memlink_loom))]
pub use std::sync::{Arc, Mutex, MutexGuard};

#[cfg(memlink_loom)]
pub use loom::sync::{Arc, Mutex, MutexGuard};

#[cfg(memlink_loom)]
pub use loom::cell::UnsafeCell;

pub use crate::futex::{WaitOutcome, wait, wake, wake_all};

/// One step of a spin loop: a CPU pause hint normally, a yield to loom's scheduler
/// under loom (a spinning thread must let the others run, or the model never ends).
#[inline]
pub fn spin_hint() {
    #[cfg(not(memlink_loom))]
    std::hint::spin_loop();
    #[cfg(memlink_loom)]
    loom::thread::yield_now();
}
