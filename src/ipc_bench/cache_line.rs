//! The raw floor of a spinning transport: two processes bounce an 8-byte sequence number
//! through two cache lines of a shared mapping. No payload, no protocol: the cost of
//! moving a cache line to the other core and back.

use crossbeam_utils::CachePadded;
use std::sync::atomic::{AtomicU64, Ordering};

use super::error::RunError;
use super::pattern::{PatternMismatch, REPLY_BIT};
use super::peer::spawn_peer;
use super::plan::{Plan, SizeTiming, run_client, run_server};
use super::shared_words::SharedWords;
use super::spin_wait::spin_until;

const NAME: &str = "cache-line";

#[repr(C)]
struct Lines {
    ping: CachePadded<AtomicU64>,
    pong: CachePadded<AtomicU64>,
}

fn check(transport: &'static str, got: u64, seq: u64) -> Result<(), RunError> {
    if got == seq {
        Ok(())
    } else {
        Err(RunError::Corrupt {
            transport,
            mismatch: PatternMismatch {
                seq,
                offset: 0,
                len: 8,
            },
        })
    }
}

/// Runs the plan; every message is 8 bytes whatever the plan's sizes.
pub(crate) fn run(
    plan: &Plan,
    size_done: &mut dyn FnMut(usize),
) -> Result<Vec<SizeTiming>, RunError> {
    let plan = Plan {
        sizes: vec![8],
        ..plan.clone()
    };
    let words = SharedWords::create(NAME, size_of::<Lines>())?;
    // SAFETY: Lines is two cache-padded atomics (well under a page, 128-byte aligned at
    // most), valid zero-filled and under access from both processes.
    let lines: &Lines = unsafe { words.get() };
    let server_plan = plan.clone();
    let peer = spawn_peer(NAME, &[], || {
        run_server(&server_plan, |m| {
            let mut got = 0;
            spin_until(NAME, None, || {
                got = lines.ping.load(Ordering::Acquire);
                got != m.seq - 1
            })?;
            check(NAME, got, m.seq)?;
            lines.pong.store(m.seq | REPLY_BIT, Ordering::Release);
            Ok(())
        })
        .map_err(|e| e.to_string())
    })?;
    let result = run_client(&plan, size_done, |m| {
        lines.ping.store(m.seq, Ordering::Release);
        let mut got = 0;
        spin_until(NAME, Some(&peer), || {
            got = lines.pong.load(Ordering::Acquire);
            got != (m.seq - 1) | REPLY_BIT && got != 0
        })?;
        check(NAME, got, m.seq | REPLY_BIT)
    });
    peer.finish(result)
}
