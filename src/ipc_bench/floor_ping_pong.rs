//! What the two raw floors (cache-line and futex) share: the plan cut to 8-byte
//! messages, a pair of atomic words in a shared segment created before the fork, the
//! peer that echoes on them, and the check of a received word.

use super::error::RunError;
use super::pattern::PatternMismatch;
use super::peer::{Peer, spawn_peer};
use super::plan::{Msg, Plan, SizeTiming, run_client, run_server};
use super::shared_words::SharedWords;

/// The words a floor ping-pongs on, laid over the start of a shared segment.
///
/// # Safety
///
/// The type must fit in a page, need at most page alignment, and be valid when
/// zero-filled and under concurrent access from other processes (atomics only).
pub(crate) unsafe trait FloorWords: Sync {}

/// A raw floor: one message each way per round trip, carried by `Words` alone.
pub(crate) trait Floor {
    /// The transport's name, in errors.
    const NAME: &'static str;
    /// The shared words.
    type Words: FloorWords;

    /// The peer's side of message `m`: wait for it, check it, answer it.
    fn echo(words: &Self::Words, m: Msg) -> Result<(), RunError>;

    /// The measuring side's round trip for `m`: send it, wait for the answer (failing
    /// when `peer` dies), check it.
    fn round_trip(words: &Self::Words, peer: &Peer, m: Msg) -> Result<(), RunError>;
}

/// Runs `plan` through floor `F` at 8 bytes, whatever the plan's sizes, over a fresh
/// zero-filled `F::Words` shared with a forked peer.
pub(crate) fn run<F: Floor>(
    plan: &Plan,
    size_done: &mut dyn FnMut(usize),
) -> Result<Vec<SizeTiming>, RunError> {
    let plan = Plan {
        sizes: vec![8],
        ..plan.clone()
    };
    let shared = SharedWords::create(F::NAME, size_of::<F::Words>())?;
    // SAFETY: `F::Words: FloorWords` promises that it fits, needs at most page alignment,
    // and is valid zero-filled and under access from both processes.
    let words: &F::Words = unsafe { shared.get() };
    let peer = spawn_peer(F::NAME, &[], || {
        run_server(&plan, |m| F::echo(words, m)).map_err(|e| e.to_string())
    })?;
    let result = run_client(&plan, size_done, |m| F::round_trip(words, &peer, m));
    peer.finish(result)
}

/// `Ok` when the received word `got` is `want`, else the corrupt-message error for
/// message `seq` (whose length is the word's size).
pub(crate) fn check_word<V: PartialEq>(
    transport: &'static str,
    got: V,
    want: V,
    seq: u64,
) -> Result<(), RunError> {
    if got == want {
        Ok(())
    } else {
        Err(RunError::Corrupt {
            transport,
            mismatch: PatternMismatch {
                seq,
                offset: 0,
                len: size_of::<V>(),
            },
        })
    }
}
