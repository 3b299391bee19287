//! The raw floor of a spinning transport: two processes bounce an 8-byte sequence number
//! through two cache lines of a shared mapping. No payload, no protocol: the cost of
//! moving a cache line to the other core and back.

use crossbeam_utils::CachePadded;
use std::sync::atomic::{AtomicU64, Ordering};

use super::error::RunError;
use super::floor_ping_pong::{Floor, FloorWords, check_word};
use super::pattern::REPLY_BIT;
use super::peer::Peer;
use super::plan::Msg;
use super::spin_wait::spin_until;

const NAME: &str = "cache-line";

#[repr(C)]
pub(crate) struct Lines {
    ping: CachePadded<AtomicU64>,
    pong: CachePadded<AtomicU64>,
}

// SAFETY: two cache-padded atomics (well under a page, 128-byte aligned at most), valid
// zero-filled and under access from both processes.
unsafe impl FloorWords for Lines {}

/// The cache-line floor; every message is 8 bytes whatever the plan's sizes.
pub(crate) struct CacheLineFloor;

impl Floor for CacheLineFloor {
    const NAME: &'static str = NAME;
    type Words = Lines;

    fn echo(lines: &Lines, m: Msg) -> Result<(), RunError> {
        let mut got = 0;
        spin_until(NAME, None, || {
            got = lines.ping.load(Ordering::Acquire);
            got != m.seq - 1
        })?;
        check_word(NAME, got, m.seq, m.seq)?;
        lines.pong.store(m.seq | REPLY_BIT, Ordering::Release);
        Ok(())
    }

    fn round_trip(lines: &Lines, peer: &Peer, m: Msg) -> Result<(), RunError> {
        lines.ping.store(m.seq, Ordering::Release);
        let mut got = 0;
        spin_until(NAME, Some(peer), || {
            got = lines.pong.load(Ordering::Acquire);
            got != (m.seq - 1) | REPLY_BIT && got != 0
        })?;
        check_word(NAME, got, m.seq | REPLY_BIT, m.seq | REPLY_BIT)
    }
}
