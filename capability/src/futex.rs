//! Futex wait and wake on a 32-bit word, usable across processes.
//!
//! The word may live in a shared mapping: the calls use the shared (not
//! `FUTEX_PRIVATE_FLAG`) futex operations, so the kernel keys the wait queue by the
//! underlying page and offset and a wake in one process reaches a waiter in another.
//!
//! Under `--cfg memlink_loom` the same functions are a loom model of a futex: a waiter
//! re-checks the word and blocks under one model mutex, a waker takes that mutex before
//! notifying, so a lost wake-up shows up as a loom deadlock. Timeouts are ignored under
//! loom (loom has no time); waits there behave as if no timeout was given.

use std::time::Duration;

use crate::sync::AtomicU32;

/// How a [`wait`] ended. Callers always re-check the word: a wake-up may be spurious.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitOutcome {
    /// Woken by [`wake`]/[`wake_all`], by a signal, or spuriously.
    Woken,
    /// The word did not hold `expected` when the wait started; nothing blocked.
    ValueChanged,
    /// The timeout elapsed.
    TimedOut,
}

#[cfg(not(memlink_loom))]
mod imp {
    use super::*;

    /// Blocks while `word == expected`, for at most `timeout` (none: no limit).
    pub fn wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) -> WaitOutcome {
        let ts = timeout.map(|d| libc::timespec {
            tv_sec: d.as_secs().min(libc::time_t::MAX as u64) as libc::time_t,
            tv_nsec: d.subsec_nanos() as libc::c_long,
        });
        let ts_ptr = ts
            .as_ref()
            .map_or(std::ptr::null(), |t| t as *const libc::timespec);
        // SAFETY: `word` is a live, aligned AtomicU32 for the duration of the call (a
        // borrowed reference); FUTEX_WAIT only reads it; `ts_ptr` is null or points to a
        // timespec on this stack frame that outlives the call.
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
            // EINTR (a signal) and anything unexpected: report a wake-up, callers re-check.
            _ => WaitOutcome::Woken,
        }
    }

    fn wake_n(word: &AtomicU32, count: i32) -> usize {
        // SAFETY: `word` is a live, aligned AtomicU32 (borrowed); FUTEX_WAKE neither reads
        // nor writes it, it only uses its address to find the wait queue.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_futex,
                word.as_ptr(),
                libc::FUTEX_WAKE,
                count,
                std::ptr::null::<libc::timespec>(),
                std::ptr::null::<u32>(),
                0u32,
            )
        };
        if rc < 0 { 0 } else { rc as usize }
    }

    /// Wakes up to `count` waiters blocked on `word`; returns how many were woken.
    pub fn wake(word: &AtomicU32, count: u32) -> usize {
        wake_n(word, count.min(i32::MAX as u32) as i32)
    }

    /// Wakes every waiter blocked on `word`; returns how many were woken.
    pub fn wake_all(word: &AtomicU32) -> usize {
        wake_n(word, i32::MAX)
    }
}

#[cfg(memlink_loom)]
mod imp {
    use super::*;
    use crate::sync::Ordering;
    use loom::sync::{Condvar, Mutex};
    use std::collections::HashMap;

    /// The model's kernel: one lock (the futex hash bucket) and one queue for all words.
    struct FutexTable {
        /// Number of waiters per word address.
        waiters: Mutex<HashMap<usize, usize>>,
        queue: Condvar,
    }

    loom::lazy_static! {
        static ref TABLE: FutexTable = FutexTable {
            waiters: Mutex::new(HashMap::new()),
            queue: Condvar::new(),
        };
    }

    fn key(word: &AtomicU32) -> usize {
        word as *const AtomicU32 as usize
    }

    /// Model of FUTEX_WAIT: re-checks the word under the table lock, then blocks.
    pub fn wait(word: &AtomicU32, expected: u32, _timeout: Option<Duration>) -> WaitOutcome {
        let mut waiters = TABLE.waiters.lock().unwrap();
        if word.load(Ordering::SeqCst) != expected {
            return WaitOutcome::ValueChanged;
        }
        *waiters.entry(key(word)).or_insert(0) += 1;
        let mut waiters = TABLE.queue.wait(waiters).unwrap();
        if let Some(n) = waiters.get_mut(&key(word)) {
            *n = n.saturating_sub(1);
        }
        WaitOutcome::Woken
    }

    /// Model of FUTEX_WAKE: wakes (at least) up to `count` waiters on `word`.
    pub fn wake(word: &AtomicU32, count: u32) -> usize {
        let waiters = TABLE.waiters.lock().unwrap();
        let blocked = waiters.get(&key(word)).copied().unwrap_or(0);
        if blocked > 0 {
            // Waiters on other words wake too; they see a spurious wake-up and re-check.
            TABLE.queue.notify_all();
        }
        blocked.min(count as usize)
    }

    /// Model of FUTEX_WAKE with no limit.
    pub fn wake_all(word: &AtomicU32) -> usize {
        wake(word, u32::MAX)
    }
}

pub use imp::{wait, wake, wake_all};

#[cfg(all(test, not(memlink_loom)))]
mod tests {
    use super::*;
    use crate::sync::Ordering;
    use std::sync::Arc;

    #[test]
    fn wait_on_changed_value_returns_at_once() {
        let w = AtomicU32::new(5);
        assert_eq!(wait(&w, 4, None), WaitOutcome::ValueChanged);
    }

    #[test]
    fn wait_times_out() {
        let w = AtomicU32::new(0);
        assert_eq!(
            wait(&w, 0, Some(Duration::from_millis(5))),
            WaitOutcome::TimedOut
        );
    }

    #[test]
    fn wake_releases_a_waiting_thread() {
        let w = Arc::new(AtomicU32::new(0));
        let w2 = Arc::clone(&w);
        let t = std::thread::spawn(move || {
            while w2.load(Ordering::Acquire) == 0 {
                wait(&w2, 0, None);
            }
            w2.load(Ordering::Acquire)
        });
        w.store(7, Ordering::Release);
        wake_all(&w);
        assert_eq!(t.join().unwrap(), 7);
    }

    #[test]
    fn wake_without_waiters_wakes_nobody() {
        let w = AtomicU32::new(0);
        assert_eq!(wake(&w, 1), 0);
    }
}
