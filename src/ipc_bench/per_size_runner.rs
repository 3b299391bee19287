//! The run loop of the typed channels (sync, buffered): their message type `[u8; N]`
//! fixes the size at compile time, so a plan runs one size at a time, each with its own
//! pair of processes and channels built for that `N`.

use super::Wait;
use super::error::RunError;
use super::fixed_size::with_pow2_size;
use super::plan::{Plan, SizeTiming};

/// What the run at one size gets.
pub(crate) struct OneSize<'a> {
    /// The plan cut to this one size.
    pub(crate) plan: &'a Plan,
    /// How memlink's channels wait.
    pub(crate) wait: Wait,
    /// Told the size when it finishes (for progress).
    pub(crate) size_done: &'a mut (dyn FnMut(usize) + Send),
}

/// A ping-pong compiled per message size.
pub(crate) trait SizedPingPong {
    /// The transport's name, in errors.
    const NAME: &'static str;

    /// Runs `one.plan`, whose only size is `N`, over channels of `[u8; N]`.
    fn run_sized<const N: usize>(one: OneSize<'_>) -> Result<Vec<SizeTiming>, RunError>;
}

/// Runs `plan` through `T`, one size after the other; a size that is not a power of two
/// from 8 B to 16 MiB fails the run.
pub(crate) fn run<T: SizedPingPong>(
    plan: &Plan,
    wait: Wait,
    size_done: &mut (dyn FnMut(usize) + Send),
) -> Result<Vec<SizeTiming>, RunError> {
    let mut out = Vec::new();
    for &size in &plan.sizes {
        let plan = Plan {
            sizes: vec![size],
            ..plan.clone()
        };
        let one = OneSize {
            plan: &plan,
            wait,
            size_done: &mut *size_done,
        };
        let unsupported = Err(RunError::setup(
            T::NAME,
            format!("size {size} is not a power of two from 8 B to 16 MiB"),
        ));
        out.extend(with_pow2_size!(size, unsupported, T::run_sized(one))?);
    }
    Ok(out)
}
