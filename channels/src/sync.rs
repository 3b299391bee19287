//! The one place where memlink-channels chooses between real and modelled concurrency
//! primitives. Under `--cfg memlink_loom` the atomics, the cell type, spinning and the futex
//! are loom's (the futex is a faithful model: a waiter really blocks, so a lost wake-up shows up
//! as a loom deadlock); otherwise they are std's and the Linux futex system call. The protocol
//! code in [`crate::protocol`] only ever uses what this module exports, so the code that loom
//! checks is the code that runs over shared memory.

pub use memlink_capability::sync::{AtomicU32, AtomicU64, Ordering, fence, spin_hint};

/// The futex (shared across processes; a faithful loom model under `memlink_loom`), from
/// memlink-capability.
pub mod futex {
    pub use memlink_capability::futex::{WaitOutcome, wait, wake, wake_all};
}

/// A cell whose contents are accessed through raw pointers inside a closure, so loom can
/// track every access (tokio's pattern). Outside loom it is a plain `UnsafeCell`.
#[cfg(not(memlink_loom))]
#[derive(Debug)]
#[repr(transparent)]
pub struct UnsafeCell<T>(std::cell::UnsafeCell<T>);

#[cfg(not(memlink_loom))]
impl<T> UnsafeCell<T> {
    /// Wraps `value`.
    pub const fn new(value: T) -> Self {
        Self(std::cell::UnsafeCell::new(value))
    }

    /// Runs `f` with a shared pointer to the contents.
    pub fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
        f(self.0.get())
    }

    /// Runs `f` with a mutable pointer to the contents.
    pub fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        f(self.0.get())
    }
}

#[cfg(memlink_loom)]
pub use loom::cell::UnsafeCell;
