//! The `Shareable` marker: which types may live in memory shared between processes.

/// Marks a type whose values may be placed in shared memory and read by another process.
///
/// # Safety
///
/// Implement only for types that are:
/// - `#[repr(C)]` or `#[repr(transparent)]` (or primitive), so every process compiled from
///   this crate agrees on the layout;
/// - valid for every bit pattern a peer could write (no `bool`, no `char`, no enums with
///   invalid discriminants, no references), because another process may store anything;
/// - free of process-local meaning: no raw pointers outside a scheme 1 window, no `Box`,
///   `Vec` or other heap handles, no file descriptors (send those with SCM_RIGHTS instead);
/// - sound under concurrent access from other processes: fields that are written while
///   others read are atomics.
pub unsafe trait Shareable: Sized + 'static {}

macro_rules! shareable {
    ($($t:ty),* $(,)?) => {
        $(
            // SAFETY: a primitive integer or atomic: fixed layout, every bit pattern valid,
            // no pointers or handles inside.
            unsafe impl Shareable for $t {}
        )*
    };
}

shareable!(
    u8, u16, u32, u64, u128, usize, i8, i16, i32, i64, i128, isize, f32, f64
);

shareable!(
    std::sync::atomic::AtomicU8,
    std::sync::atomic::AtomicU16,
    std::sync::atomic::AtomicU32,
    std::sync::atomic::AtomicU64,
    std::sync::atomic::AtomicUsize,
    std::sync::atomic::AtomicI8,
    std::sync::atomic::AtomicI16,
    std::sync::atomic::AtomicI32,
    std::sync::atomic::AtomicI64,
    std::sync::atomic::AtomicIsize,
);

#[cfg(memlink_loom)]
shareable!(
    loom::sync::atomic::AtomicU8,
    loom::sync::atomic::AtomicU16,
    loom::sync::atomic::AtomicU32,
    loom::sync::atomic::AtomicU64,
    loom::sync::atomic::AtomicUsize,
    loom::sync::atomic::AtomicI32,
    loom::sync::atomic::AtomicI64,
);

// SAFETY: an array of shareable elements has no padding between elements and each
// element is itself valid for every bit pattern and free of process-local handles.
unsafe impl<T: Shareable, const N: usize> Shareable for [T; N] {}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_shareable<T: Shareable>() -> usize {
        std::mem::size_of::<T>()
    }

    #[test]
    fn integers_atomics_and_arrays_are_shareable() {
        assert_eq!(assert_shareable::<u64>(), 8);
        assert_eq!(assert_shareable::<std::sync::atomic::AtomicU32>(), 4);
        assert_eq!(assert_shareable::<[[u16; 3]; 2]>(), 12);
    }
}
