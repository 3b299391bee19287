//! memlink's sync and buffered channels carry a fixed-size type `T` (here `[u8; N]`), so
//! the benchmark instantiates them for a fixed set of sizes: the powers of two from 8 B
//! to 16 MiB. [`with_pow2_size!`] turns a run-time size into the const generic.

/// Whether the typed channels are built for `size`.
pub fn is_supported(size: usize) -> bool {
    size.is_power_of_two() && (8..=super::MAX_MESSAGE).contains(&size)
}

/// Calls `$f::<N>($args...)` with `N == $size` (a power of two from 8 to 16 Mi);
/// evaluates `$otherwise` for any other size. `$f` is a function's path (`run_sized`,
/// `T::run_sized`).
macro_rules! with_pow2_size {
    ($size:expr, $otherwise:expr, $($f:ident)::+($($arg:expr),* $(,)?)) => {
        match $size {
            8 => $($f)::+::<8>($($arg),*),
            16 => $($f)::+::<16>($($arg),*),
            32 => $($f)::+::<32>($($arg),*),
            64 => $($f)::+::<64>($($arg),*),
            128 => $($f)::+::<128>($($arg),*),
            256 => $($f)::+::<256>($($arg),*),
            512 => $($f)::+::<512>($($arg),*),
            1024 => $($f)::+::<1024>($($arg),*),
            2048 => $($f)::+::<2048>($($arg),*),
            4096 => $($f)::+::<4096>($($arg),*),
            8192 => $($f)::+::<8192>($($arg),*),
            16384 => $($f)::+::<16384>($($arg),*),
            32768 => $($f)::+::<32768>($($arg),*),
            65536 => $($f)::+::<65536>($($arg),*),
            131072 => $($f)::+::<131072>($($arg),*),
            262144 => $($f)::+::<262144>($($arg),*),
            524288 => $($f)::+::<524288>($($arg),*),
            1048576 => $($f)::+::<1048576>($($arg),*),
            2097152 => $($f)::+::<2097152>($($arg),*),
            4194304 => $($f)::+::<4194304>($($arg),*),
            8388608 => $($f)::+::<8388608>($($arg),*),
            16777216 => $($f)::+::<16777216>($($arg),*),
            _ => $otherwise,
        }
    };
}

pub(crate) use with_pow2_size;
