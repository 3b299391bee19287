//! Process-private futex wait and wake on an `AtomicU32`: raw syscalls, async-signal-safe.

use std::sync::atomic::AtomicU32;

/// Sleeps while `*word == expected` (returns at once otherwise, or on a spurious wake-up).
pub(crate) fn wait(word: &AtomicU32, expected: u32) {
    // SAFETY: FUTEX_WAIT_PRIVATE reads the live, aligned u32 behind `word` and sleeps; it
    // writes nothing. A null timeout means no deadline.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
            expected,
            std::ptr::null::<libc::timespec>(),
        );
    }
}

/// Wakes up to `count` threads sleeping on `word`.
pub(crate) fn wake(word: &AtomicU32, count: i32) {
    // SAFETY: FUTEX_WAKE_PRIVATE only uses the address of the live word as a key.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
            count,
        );
    }
}
