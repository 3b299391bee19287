//! Types that may be placed in shared memory and copied between processes byte for byte.

/// A type whose values may live in memory shared by several processes and be copied between
/// them byte for byte: plain data, `#[repr(C)]` or primitive, with no pointers into one
/// process's private memory, no file descriptors, and no drop glue.
///
/// # Safety
/// Implement it only for `Copy` types whose every bit pattern that a peer may write is valid
/// and whose meaning does not depend on the address space they are read in.
pub unsafe trait Shareable: Copy + Send + 'static {}

macro_rules! shareable {
    ($($t:ty),* $(,)?) => {
        $(
            // SAFETY: a primitive integer or float: plain bytes, any bit pattern valid.
            unsafe impl Shareable for $t {}
        )*
    };
}

shareable!(
    u8, u16, u32, u64, u128, usize, i8, i16, i32, i64, i128, isize, f32, f64
);

// SAFETY: an array of plain-data elements is plain data.
unsafe impl<T: Shareable, const N: usize> Shareable for [T; N] {}

// SAFETY: tuples of plain data up to three fields are plain data (no pointers, Copy).
unsafe impl<A: Shareable, B: Shareable> Shareable for (A, B) {}
// SAFETY: as above.
unsafe impl<A: Shareable, B: Shareable, C: Shareable> Shareable for (A, B, C) {}
