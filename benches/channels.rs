//! memlink-channels' round trips against their raw floors, each pair measured in one run:
//!
//! * `sync_spin_vs_cache_line`: spin SyncChannel, 8-byte messages, vs a raw cross-process
//!   cache-line ping-pong;
//! * `loan_1mib_vs_8b`: LoanChannel round trip with 1 MiB messages vs 8-byte messages;
//! * `block_vs_futex`: Block SyncChannel vs a raw futex ping-pong between two processes;
//! * `buffered_spin`: the two-copy baseline, for reference.
//!
//! `cargo bench --bench channels`. Each benchmark forks one echo process, then times checked
//! round trips (`memlink_channels::pingpong`) in batches of 200 and reports the fastest batch's
//! time per round trip: on a shared machine a two-process ping-pong is dominated by whoever
//! else gets scheduled on its cores, and the fastest batch is the undisturbed cost. Every case
//! uses the same estimator, so the ratios within a group compare like with like.

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use criterion::{Criterion, criterion_group, criterion_main};
use memlink_channels::WaitMode;
use memlink_channels::pingpong::{PingPong, PingPongKind};
use std::time::Duration;

/// Round trips per timed batch.
const BATCH: u64 = 200;

fn pair(c: &mut Criterion, group: &str, cases: &[(&str, PingPongKind)]) {
    let mut g = c.benchmark_group(group);
    g.sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for &(name, kind) in cases {
        let mut pp = PingPong::start(kind).unwrap_or_else(|e| panic!("{name}: {e}"));
        g.bench_function(name, |b| {
            b.iter_custom(|n| {
                let mut fastest = Duration::MAX;
                let mut done = 0;
                while done < n {
                    let batch = BATCH.min(n - done);
                    let t = pp
                        .round_trips(batch)
                        .unwrap_or_else(|e| panic!("{name}: {e}"));
                    fastest = fastest.min(t / batch as u32);
                    done += batch;
                }
                fastest * n as u32
            })
        });
    }
    g.finish();
}

fn channels(c: &mut Criterion) {
    pair(
        c,
        "sync_spin_vs_cache_line",
        &[
            ("raw_cache_line_8B", PingPongKind::CacheLine),
            ("sync_spin_8B", PingPongKind::Sync(WaitMode::Spin)),
        ],
    );
    pair(
        c,
        "loan_1mib_vs_8b",
        &[
            (
                "loan_spin_8B",
                PingPongKind::Loan {
                    size: 8,
                    mode: WaitMode::Spin,
                },
            ),
            (
                "loan_spin_1MiB",
                PingPongKind::Loan {
                    size: 1 << 20,
                    mode: WaitMode::Spin,
                },
            ),
        ],
    );
    pair(
        c,
        "block_vs_futex",
        &[
            ("raw_futex", PingPongKind::Futex),
            ("sync_block_8B", PingPongKind::Sync(WaitMode::Block)),
        ],
    );
    pair(
        c,
        "buffered_spin",
        &[("buffered_spin_8B", PingPongKind::Buffered(WaitMode::Spin))],
    );
}

criterion_group!(benches, channels);
criterion_main!(benches);
