//! A node whose kernel refuses a page protection change (as mprotect does past
//! `vm.max_map_count`) cannot keep the region coherent: it fails, its own callers get NodeLost
//! naming it with the reason, and a peer waiting on it gets NodeLost once it is gone, never a
//! hang or a panic.

use crate::node_support;

use std::sync::mpsc::channel;
use std::thread;
use std::time::Duration;

use memlink_dsm::{DsmError, ManagerKind, PAGE_SIZE};
use node_support::cluster;

/// Must-not-hang bound for each wait below.
const DEADLINE: Duration = Duration::from_secs(20);

#[test]
fn a_refused_page_change_fails_the_node_with_its_reason() {
    let mut nodes = cluster(2, 8, ManagerKind::Central);
    let off = 3 * PAGE_SIZE;
    nodes[0].mem.write_u64(&nodes[0].rt, off, 7).unwrap();
    nodes[0].mem.refuse_changes();

    // Node 1 reads page 3: node 0 (manager and owner) must downgrade its copy, and cannot.
    let (read_tx, read_rx) = channel();
    let (rt1, mem1) = (nodes[1].rt.clone(), nodes[1].mem.clone());
    thread::spawn(move || {
        let _ = read_tx.send(mem1.read_u64(&rt1, off));
    });

    // Node 0's own operations fail with its reason (barrier 1 is managed by node 1, which
    // waits in its read, so only the failure ends this wait).
    let (tx, rx) = channel();
    let rt0 = nodes[0].rt.clone();
    thread::spawn(move || {
        let _ = tx.send(rt0.barrier(1));
    });
    match rx.recv_timeout(DEADLINE).expect("node 0's barrier hung") {
        Err(DsmError::NodeLost { node: 0, reason }) => {
            assert!(reason.contains("could not give page 3"), "{reason}");
            assert!(reason.contains("max_map_count"), "{reason}");
        }
        other => panic!("node 0: expected NodeLost of itself, got {other:?}"),
    }

    // Once node 0 is gone, node 1's read ends with NodeLost naming it.
    drop(nodes.remove(0));
    match read_rx.recv_timeout(DEADLINE).expect("node 1's read hung") {
        Err(DsmError::NodeLost { node: 0, .. }) => {}
        other => panic!("node 1: expected NodeLost of node 0, got {other:?}"),
    }
}
