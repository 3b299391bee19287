//! How a channel endpoint waits: busy-wait, block on its PCB's futex, or spin then block.

use crate::pcb::Pcb;
use crate::sync::spin_hint;
use std::time::Duration;
#[cfg(not(memlink_loom))]
use std::time::Instant;

/// The waiting policy of a channel, chosen when the channel is created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitMode {
    /// Busy-wait: lowest latency, burns a core while waiting.
    Spin,
    /// Block on the futex of the waiter's process control block: a context switch per wait.
    Block,
    /// Spin this many times, then block.
    Adaptive {
        /// Spins before blocking.
        spins: u32,
    },
}

impl WaitMode {
    /// Adaptive waiting with a spin budget that suits a wake-up on another core.
    pub const ADAPTIVE: WaitMode = WaitMode::Adaptive { spins: 4_000 };

    pub(crate) fn to_word(self) -> u32 {
        match self {
            WaitMode::Spin => 0,
            WaitMode::Block => 1,
            WaitMode::Adaptive { spins } => 2 | (spins.min(u32::MAX >> 2) << 2),
        }
    }

    pub(crate) fn from_word(word: u32) -> WaitMode {
        match word & 3 {
            0 => WaitMode::Spin,
            1 => WaitMode::Block,
            _ => WaitMode::Adaptive { spins: word >> 2 },
        }
    }
}

/// How long an operation may wait.
#[derive(Debug, Clone, Copy)]
pub enum Deadline {
    /// Wait as long as it takes (or until the peer is gone).
    Never,
    /// Do not wait at all (the `try_` operations).
    Now,
    /// Wait until this instant. Under loom time is not modelled and this acts like `Never`.
    #[cfg(not(memlink_loom))]
    At(Instant),
}

impl Deadline {
    /// A deadline `timeout` from now.
    pub fn after(timeout: Duration) -> Deadline {
        #[cfg(not(memlink_loom))]
        {
            match Instant::now().checked_add(timeout) {
                Some(at) => Deadline::At(at),
                None => Deadline::Never,
            }
        }
        #[cfg(memlink_loom)]
        {
            let _ = timeout;
            Deadline::Never
        }
    }

    /// Time left before the deadline, `None` for no limit.
    fn remaining(&self) -> Option<Duration> {
        match self {
            Deadline::Never => None,
            Deadline::Now => Some(Duration::ZERO),
            #[cfg(not(memlink_loom))]
            Deadline::At(at) => Some(at.saturating_duration_since(Instant::now())),
        }
    }
}

/// Why a wait ended without its condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitFailure {
    /// The peer closed its endpoint or died.
    Disconnected,
    /// The deadline passed.
    TimedOut,
}

/// A blocked waiter re-checks its peer's liveness this often, so a peer killed while we sleep
/// is noticed within about this bound even though a dead process wakes nobody.
pub const LIVENESS_PERIOD: Duration = Duration::from_millis(20);

/// Spins between two liveness checks when busy-waiting.
const SPINS_PER_LIVENESS_CHECK: u32 = 1 << 16;

/// Waits on `pcb` until `attempt` succeeds.
///
/// `attempt` tries the operation and returns `Some` when it is done; it may be called many
/// times. `gone(thorough)` says whether the peer is gone: with `thorough == false` it must be
/// cheap (flags in shared memory), with `true` it may ask the kernel (pidfd). Whoever makes an
/// attempt succeed must call [`Pcb::notify`] on `pcb` afterwards.
pub fn wait_for<R>(
    pcb: &Pcb,
    mode: WaitMode,
    deadline: Deadline,
    mut attempt: impl FnMut() -> Option<R>,
    mut gone: impl FnMut(bool) -> bool,
) -> Result<R, WaitFailure> {
    let mut spins: u32 = 0;
    let mut thorough = false;
    loop {
        if let Some(done) = attempt() {
            return Ok(done);
        }
        if gone(thorough) {
            // The peer may have completed our operation just before leaving.
            return attempt().ok_or(WaitFailure::Disconnected);
        }
        thorough = false;
        let remaining = deadline.remaining();
        if remaining == Some(Duration::ZERO) {
            return Err(WaitFailure::TimedOut);
        }
        let spinning = match mode {
            WaitMode::Spin => true,
            WaitMode::Block => false,
            WaitMode::Adaptive { spins: budget } => spins < budget,
        };
        if spinning {
            spins = spins.wrapping_add(1);
            if spins % SPINS_PER_LIVENESS_CHECK == 0 {
                thorough = true;
            }
            spin_hint();
            continue;
        }
        let token = pcb.prepare_sleep();
        if let Some(done) = attempt() {
            return Ok(done);
        }
        if gone(false) {
            continue;
        }
        let slice = remaining.map_or(LIVENESS_PERIOD, |r| r.min(LIVENESS_PERIOD));
        pcb.sleep(token, Some(slice));
        thorough = true;
    }
}

/// Waits on `pcb` until `try_send` takes `value`, as [`wait_for`] does for any attempt.
///
/// `try_send` either takes the value or hands it back (no room yet); when the wait fails
/// (peer gone, deadline passed) the value comes back with the failure, unless a last attempt
/// took it after all.
pub fn wait_to_send<T>(
    pcb: &Pcb,
    mode: WaitMode,
    deadline: Deadline,
    value: T,
    mut try_send: impl FnMut(T) -> Result<(), T>,
    gone: impl FnMut(bool) -> bool,
) -> Result<(), (T, WaitFailure)> {
    let mut value = Some(value);
    let attempt = || match try_send(value.take()?) {
        Ok(()) => Some(()),
        Err(back) => {
            value = Some(back);
            None
        }
    };
    match wait_for(pcb, mode, deadline, attempt, gone) {
        Ok(()) => Ok(()),
        Err(failure) => match value {
            Some(v) => Err((v, failure)),
            None => Ok(()),
        },
    }
}
