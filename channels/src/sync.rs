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

/// Points where a protocol participant may stop forever, as a process SIGKILLed there does.
///
/// The protocols in [`crate::protocol`] call [`stop_point`] before every access to shared
/// memory and before they return. Outside loom it compiles to nothing. Under loom a model
/// runs a participant's steps through `stop::run_until` (loom builds only), which stops the
/// participant (its thread unwinds without touching shared memory again) at the chosen stop
/// point, so a model can kill a participant at every step in turn and then report it dead.
#[cfg(not(memlink_loom))]
#[inline(always)]
pub fn stop_point() {}

/// See the non-loom [`stop_point`]: under loom, stops the calling participant here if
/// [`stop::run_until`] armed it to stop at this point.
#[cfg(memlink_loom)]
pub fn stop_point() {
    stop::point();
}

/// Stopping a loom model's participant forever at a chosen [`stop_point`] (loom only).
#[cfg(memlink_loom)]
pub mod stop {
    use std::cell::Cell;

    loom::thread_local! {
        /// Stop points this thread may still pass before it stops; `None`: never stops.
        static LEFT: Cell<Option<u32>> = Cell::new(None);
    }

    /// The unwind payload of a stopped participant.
    struct Stopped;

    pub(super) fn point() {
        LEFT.with(|left| match left.get() {
            Some(0) => std::panic::resume_unwind(Box::new(Stopped)),
            Some(n) => left.set(Some(n - 1)),
            None => {}
        });
    }

    /// Runs `body` on the calling loom thread, which stops for good at its `steps`-th stop
    /// point (0: the first): `None` if it stopped there, `Some(result)` if `body` finished
    /// first. Nothing after the stop point runs (`resume_unwind` skips the panic hook), so a
    /// stopped participant leaves shared memory exactly as a process killed there would, as
    /// long as `body` holds nothing whose `Drop` writes shared memory.
    pub fn run_until<R>(steps: u32, body: impl FnOnce() -> R) -> Option<R> {
        LEFT.with(|left| left.set(Some(steps)));
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(body));
        LEFT.with(|left| left.set(None));
        match outcome {
            Ok(result) => Some(result),
            Err(payload) if payload.is::<Stopped>() => None,
            Err(payload) => std::panic::resume_unwind(payload),
        }
    }
}
