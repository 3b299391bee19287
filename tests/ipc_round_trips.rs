//! The ipc benchmark library driven directly: every transport in this build completes a
//! small checked ping-pong between two processes and reports consistent figures.

use memlink::ipc_bench::{Plan, Transport, Wait, measure};

#[test]
fn every_built_transport_completes_a_checked_ping_pong() {
    let plan = Plan::new(vec![8, 100, 64 << 10], 25);
    for transport in Transport::ALL.into_iter().filter(|t| t.is_built()) {
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
}
