//! The ipc benchmark library driven directly: every transport in this build completes a
//! small checked ping-pong between two processes and reports consistent figures.
//!
//! `measure` forks its peer process, so each test runs in a process of its own (see
//! `isolated`): never a fork of the multithreaded test harness.

use memlink::ipc_bench::{Plan, Transport, Wait, measure};
use memlink_test_support::isolated;

#[test]
fn both_wait_modes_carry_checked_messages_through_the_memlink_channels() {
    isolated(|| {
        let plan = Plan::new(vec![64, 1 << 20], 20);
        for transport in [Transport::Loan, Transport::Sync, Transport::Buffered] {
            for wait in [Wait::Spin, Wait::Block] {
                let rows = measure(transport, &plan, wait, &mut |_| {})
                    .unwrap_or_else(|e| panic!("{transport} {wait}: {e}"));
                assert_eq!(rows.len(), 2);
                assert!(rows.iter().all(|m| m.wait == wait.name()), "{rows:?}");
            }
        }
    });
}

#[test]
fn every_built_transport_completes_a_checked_ping_pong() {
    isolated(|| {
        for transport in Transport::ALL.into_iter().filter(|t| t.is_built()) {
            // 100 bytes: a size that is not a multiple of the 8-byte words, where supported.
            let sizes = [8, 100, 64 << 10]
                .into_iter()
                .filter(|&s| transport.supports_size(s))
                .collect();
            let plan = Plan::new(sizes, 25);
            let mut done = Vec::new();
            let rows = measure(transport, &plan, Wait::Spin, &mut |s| done.push(s))
                .unwrap_or_else(|e| panic!("{transport}: {e}"));
            let sizes: Vec<usize> = rows.iter().map(|m| m.size_bytes).collect();
            if transport.is_floor() {
                assert_eq!(sizes, vec![8], "{transport}");
            } else {
                assert_eq!(sizes, plan.sizes, "{transport}");
            }
            assert_eq!(done, sizes, "{transport}: progress saw every size");
            for m in rows {
                assert_eq!(m.transport, transport.name());
                assert_eq!(m.copies, transport.copies());
                assert!(m.rtt_ns_p50 > 0 && m.rtt_ns_p99 >= m.rtt_ns_p50, "{m:?}");
                assert!(m.msgs_per_s > 0.0, "{m:?}");
            }
        }
    });
}
