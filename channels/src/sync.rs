//! The one place where memlink-channels chooses between real and modelled concurrency
//! primitives. Under `--cfg memlink_loom` the atomics, the cell type, spinning and the futex
//! are loom's (the futex is a faithful model: a waiter really blocks, so a lost wake-up shows up
//! as a loom deadlock); otherwise they are std's and the Linux futex system call. The protocol
//! code in [`crate::protocol`] only ever uses what this module exports, so the code that loom
//! checks is the code that runs over shared memory.

#[cfg(not(memlink_loom))]
pub use std::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};

#[cfg(memlink_loom)]
pub use loom::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};

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

/// One step of a busy-wait: a CPU spin hint, or a yield under loom (so models terminate).
#[inline]
pub fn spin_hint() {
    #[cfg(not(memlink_loom))]
    std::hint::spin_loop();
    #[cfg(memlink_loom)]
    loom::thread::yield_now();
}

/// The futex: wait on a 32-bit word while it holds an expected value, and wake its waiters.
pub mod futex {
    use super::AtomicU32;
    use std::time::Duration;

    /// Why [`wait`] returned.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum WaitOutcome {
        /// A waker woke this waiter (or the kernel woke it spuriously).
        Woken,
        /// The word no longer held the expected value when the wait began.
        ValueChanged,
        /// The timeout elapsed.
        TimedOut,
    }

    /// Blocks while `word == expected`, at most `timeout`. The futex is shared (not
    /// `FUTEX_PRIVATE`), so the word may live in memory mapped by several processes.
    #[cfg(not(memlink_loom))]
    pub fn wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) -> WaitOutcome {
        let ts = timeout.map(|t| libc::timespec {
            tv_sec: t.as_secs().min(i64::MAX as u64) as libc::time_t,
            tv_nsec: t.subsec_nanos() as libc::c_long,
        });
        let ts_ptr = ts
            .as_ref()
            .map_or(std::ptr::null(), |t| t as *const libc::timespec);
        // SAFETY: `word` is a live, aligned 32-bit atomic for the whole call; FUTEX_WAIT only
        // reads it, and `ts_ptr` is null or points to `ts`, which outlives the call.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_futex,
                word.as_ptr(),
                libc::FUTEX_WAIT,
                expected,
                ts_ptr,
                std::ptr::null::<u32>(),
                0u32,
            )
        };
        if rc == 0 {
            return WaitOutcome::Woken;
        }
        match std::io::Error::last_os_error().raw_os_error() {
            Some(libc::EAGAIN) => WaitOutcome::ValueChanged,
            Some(libc::ETIMEDOUT) => WaitOutcome::TimedOut,
            _ => WaitOutcome::Woken,
        }
    }

    /// Wakes every waiter blocked on `word`; returns how many were woken.
    #[cfg(not(memlink_loom))]
    pub fn wake_all(word: &AtomicU32) -> usize {
        // SAFETY: `word` is a live, aligned 32-bit atomic; FUTEX_WAKE does not access memory
        // through the pointer, it only uses it as the key of the wait queue.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_futex,
                word.as_ptr(),
                libc::FUTEX_WAKE,
                i32::MAX,
                std::ptr::null::<libc::timespec>(),
                std::ptr::null::<u32>(),
                0u32,
            )
        };
        rc.max(0) as usize
    }

    #[cfg(memlink_loom)]
    loom::lazy_static! {
        static ref FUTEX: (loom::sync::Mutex<()>, loom::sync::Condvar) =
            (loom::sync::Mutex::new(()), loom::sync::Condvar::new());
    }

    /// Loom model of the futex: the comparison and the sleep are atomic with respect to
    /// [`wake_all`] (both hold one lock), so a wake that is sent before the sleep is never
    /// lost and a wake that is never sent leaves the waiter blocked: loom reports a deadlock.
    /// Timeouts are not modelled (the waiter blocks until woken).
    #[cfg(memlink_loom)]
    pub fn wait(word: &AtomicU32, expected: u32, _timeout: Option<Duration>) -> WaitOutcome {
        let (lock, cv) = &*FUTEX;
        let guard = lock.lock().unwrap();
        if word.load(super::Ordering::SeqCst) != expected {
            return WaitOutcome::ValueChanged;
        }
        drop(cv.wait(guard).unwrap());
        WaitOutcome::Woken
    }

    /// Loom model of waking every waiter of a word (it wakes every modelled waiter; callers
    /// re-check their condition, as with a real futex).
    #[cfg(memlink_loom)]
    pub fn wake_all(_word: &AtomicU32) -> usize {
        let (lock, cv) = &*FUTEX;
        let _guard = lock.lock().unwrap();
        cv.notify_all();
        1
    }
}
