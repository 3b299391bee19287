//! Round trips between two processes: memlink's channels against pipes, a unix socket,
//! iceoryx2 (with `--features iceoryx2`) and the raw floors, at a few sizes.
//!
//! `cargo bench --bench ipc` (add `--features iceoryx2` for the iceoryx2 rows). Each
//! criterion sample forks a peer, warms up with fully checked messages, then times at
//! least [`MIN_ROUND_TRIPS`] checked round trips; the sample's value is its median round
//! trip times criterion's `iters`. The median, not the sum, because a spinning pair on a
//! small shared machine is now and then preempted for a whole time slice, and one such
//! stall would otherwise be the sample.

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use memlink::ipc_bench::{Plan, Transport, Wait, round_trips};

const SIZES: [usize; 3] = [8, 4 << 10, 1 << 20];
/// The fewest round trips one sample times.
const MIN_ROUND_TRIPS: usize = 1000;

fn ipc(c: &mut Criterion) {
    // `cargo test` runs this bench once per case as a smoke test (without `--bench`):
    // a few round trips suffice there.
    let min_round_trips = if std::env::args().any(|a| a == "--bench") {
        MIN_ROUND_TRIPS
    } else {
        20
    };
    let mut group = c.benchmark_group("ipc_round_trip");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    for transport in Transport::ALL.into_iter().filter(|t| t.is_built()) {
        let sizes: &[usize] = if transport.is_floor() {
            &SIZES[..1]
        } else {
            &SIZES
        };
        let wait = Wait::Spin;
        for &size in sizes {
            group.throughput(Throughput::Bytes(2 * size as u64));
            let id = BenchmarkId::new(format!("{transport}/{}", transport.wait_label(wait)), size);
            group.bench_function(id, |b| {
                b.iter_custom(|iters| {
                    let plan = Plan::new(vec![size], (iters as usize).max(min_round_trips));
                    let timings = round_trips(transport, &plan, wait, &mut |_| {})
                        .unwrap_or_else(|e| panic!("{transport} at {size} bytes: {e}"));
                    let mut rtt = timings[0].rtt_ns.clone();
                    rtt.sort_unstable();
                    let median = rtt[rtt.len() / 2];
                    Duration::from_nanos(median * iters)
                });
            });
        }
    }
    group.finish();
}

criterion_group!(benches, ipc);
criterion_main!(benches);
