//! The raw floor of a blocking transport: two processes take turns on two futex words
//! of a shared mapping; each message is a store, a FUTEX_WAKE and, on the other side, a
//! return from FUTEX_WAIT (a context switch each way when the waiter is asleep).

use crossbeam_utils::CachePadded;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use memlink_capability::futex;

use super::error::RunError;
use super::pattern::PatternMismatch;
use super::peer::{Peer, spawn_peer};
use super::plan::{Plan, SizeTiming, run_client, run_server};
use super::shared_words::SharedWords;

const NAME: &str = "futex";
/// How long a wait sleeps before it checks that the peer lives.
const CHECK_EVERY: Duration = Duration::from_millis(100);
/// Marks a reply in the 32-bit word.
const REPLY: u32 = 1 << 31;

#[repr(C)]
struct Words {
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

fn check(got: u32, want: u32, seq: u64) -> Result<(), RunError> {
    if got == want {
        Ok(())
    } else {
        Err(RunError::Corrupt {
            transport: NAME,
            mismatch: PatternMismatch {
                seq,
                offset: 0,
                len: 4,
            },
        })
    }
}

/// Runs the plan; every message is the sequence number whatever the plan's sizes
/// (reported as 8 bytes, like the cache-line floor).
pub(crate) fn run(
    plan: &Plan,
    size_done: &mut dyn FnMut(usize),
) -> Result<Vec<SizeTiming>, RunError> {
    let plan = Plan {
        sizes: vec![8],
        ..plan.clone()
    };
    let shared = SharedWords::create(NAME, size_of::<Words>())?;
    // SAFETY: Words is two cache-padded atomics (under a page), valid zero-filled and
    // under access from both processes.
    let words: &Words = unsafe { shared.get() };
    let server_plan = plan.clone();
    let peer = spawn_peer(NAME, &[], || {
        run_server(&server_plan, |m| {
            let got = wait_change(&words.ping, word(m.seq - 1), None)?;
            check(got, word(m.seq), m.seq)?;
            words.pong.store(word(m.seq) | REPLY, Ordering::Release);
            futex::wake(&words.pong, 1);
            Ok(())
        })
        .map_err(|e| e.to_string())
    })?;
    let result = run_client(&plan, size_done, |m| {
        let before = words.pong.load(Ordering::Acquire);
        words.ping.store(word(m.seq), Ordering::Release);
        futex::wake(&words.ping, 1);
        let got = wait_change(&words.pong, before, Some(&peer))?;
        check(got, word(m.seq) | REPLY, m.seq)
    });
    peer.finish(result)
}
