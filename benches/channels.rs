//! memlink-channels' round trips against their raw floors, each pair measured in one run:
//!
//! * `sync_spin_vs_cache_line`: spin SyncChannel, 8-byte messages, vs a raw cross-process
//!   cache-line ping-pong;
//! * `loan_1mib_vs_8b`: LoanChannel round trip with 1 MiB messages vs 8-byte messages;
//! * `block_vs_futex`: Block SyncChannel vs a raw futex ping-pong between two processes;
//! * `buffered_spin`: the two-copy baseline, for reference.
//!
//! `cargo bench --bench channels`. Each benchmark forks one echo process, then criterion times
//! batches of checked round trips (`memlink_channels::pingpong`).

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use criterion::{Criterion, criterion_group, criterion_main};
use memlink_channels::WaitMode;
use memlink_channels::pingpong::{PingPong, PingPongKind};
use std::time::Duration;

fn pair(c: &mut Criterion, group: &str, cases: &[(&str, PingPongKind)]) {
    let mut g = c.benchmark_group(group);
    g.sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for &(name, kind) in cases {
        let mut pp = PingPong::start(kind).unwrap_or_else(|e| panic!("{name}: {e}"));
        g.bench_function(name, |b| {
            b.iter_custom(|n| pp.round_trips(n).unwrap_or_else(|e| panic!("{name}: {e}")))
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
