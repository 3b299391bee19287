//! The raw floor of a blocking transport: two processes take turns on two futex words
//! of a shared mapping; each message is a store, a FUTEX_WAKE and, on the other side, a
//! return from FUTEX_WAIT (a context switch each way when the waiter is asleep).

use crossbeam_utils::CachePadded;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use memlink_capability::futex;

use super::error::RunError;
use super::floor_ping_pong::{Floor, FloorWords, check_word};
use super::peer::Peer;
use super::plan::Msg;

const NAME: &str = "futex";
/// How long a wait sleeps before it checks that the peer lives.
const CHECK_EVERY: Duration = Duration::from_millis(100);
/// Marks a reply in the 32-bit word.
const REPLY: u32 = 1 << 31;

#[repr(C)]
pub(crate) struct Words {
    ping: CachePadded<AtomicU32>,
    pong: CachePadded<AtomicU32>,
}

fn word(seq: u64) -> u32 {
    (seq as u32) & !REPLY
}

/// Sleeps on `w` until it leaves `old`; returns the new value.
fn wait_change(w: &AtomicU32, old: u32, peer: Option<&Peer>) -> Result<u32, RunError> {
    loop {
        let v = w.load(Ordering::Acquire);
        if v != old {
            return Ok(v);
        }
        if futex::wait(w, old, Some(CHECK_EVERY)) == futex::WaitOutcome::TimedOut
            && peer.is_some_and(|p| !p.is_alive())
        {
            return Err(RunError::PeerDied { transport: NAME });
        }
    }
}

// SAFETY: two cache-padded atomics (under a page, 128-byte aligned at most), valid
// zero-filled and under access from both processes.
unsafe impl FloorWords for Words {}

/// The futex floor; every message is the sequence number whatever the plan's sizes
/// (reported as 8 bytes, like the cache-line floor).
pub(crate) struct FutexFloor;

impl Floor for FutexFloor {
    const NAME: &'static str = NAME;
    type Words = Words;

    fn echo(words: &Words, m: Msg) -> Result<(), RunError> {
        let got = wait_change(&words.ping, word(m.seq - 1), None)?;
        check_word(NAME, got, word(m.seq), m.seq)?;
        words.pong.store(word(m.seq) | REPLY, Ordering::Release);
        futex::wake(&words.pong, 1);
        Ok(())
    }

    fn round_trip(words: &Words, peer: &Peer, m: Msg) -> Result<(), RunError> {
        let before = words.pong.load(Ordering::Acquire);
        words.ping.store(word(m.seq), Ordering::Release);
        futex::wake(&words.ping, 1);
        let got = wait_change(&words.pong, before, Some(peer))?;
        check_word(NAME, got, word(m.seq) | REPLY, m.seq)
    }
}
