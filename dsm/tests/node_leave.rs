//! A node that leaves (its runtime dropped: it sends Leave and closes its connections) without
//! taking part in a lock or barrier that others wait in: every such wait ends with NodeLost
//! naming it, the final barrier of shutdown included, never a hang. An orderly shutdown of
//! every node still ends without errors.

use crate::node_support;

use std::sync::mpsc::channel;
use std::thread;
use std::time::Duration;

use memlink_dsm::{DsmError, ManagerKind};
use node_support::cluster;

/// Must-not-hang bound for each wait below.
const DEADLINE: Duration = Duration::from_secs(20);

/// A node's shutdown after the cluster lost a node: its final barrier fails with NodeLost,
/// naming node 2 or, when another node concluded first and left, that node.
fn assert_shutdown_saw_a_loss(what: &str, r: Result<(), DsmError>) {
    match r {
        Err(DsmError::NodeLost { .. }) => {}
        other => panic!("{what}: expected NodeLost, got {other:?}"),
    }
}

fn assert_lost_node_2(what: &str, r: Result<(), DsmError>) {
    match r {
        Err(DsmError::NodeLost { node: 2, .. }) => {}
        other => panic!("{what}: expected NodeLost of node 2, got {other:?}"),
    }
}

#[test]
fn a_barrier_that_a_departed_node_never_reached_fails_with_node_lost() {
    let mut nodes = cluster(3, 1, ManagerKind::Central);
    // Barrier 3 is managed by node 0: node 0 waits locally, node 1 waits in a call to it.
    let (tx, rx) = channel();
    for n in &nodes[..2] {
        let (rt, tx) = (n.rt.clone(), tx.clone());
        thread::spawn(move || {
            let _ = tx.send((rt.id(), rt.barrier(3)));
        });
    }
    // Node 2 leaves without arriving, whether the others arrived before or after its Leave.
    drop(nodes.pop());
    for _ in 0..2 {
        let (id, r) = rx
            .recv_timeout(DEADLINE)
            .expect("a barrier wait hung after a node left");
        assert_lost_node_2(&format!("node {id} barrier"), r);
    }
    // Later operations fail too, and shutdown returns its failed final barrier.
    assert!(nodes[1].rt.barrier(4).is_err());
    for n in nodes {
        let (tx, rx) = channel();
        thread::spawn(move || {
            let _ = tx.send((n.rt.id(), n.rt.shutdown()));
        });
        let (id, r) = rx.recv_timeout(DEADLINE).expect("shutdown hung");
        assert_shutdown_saw_a_loss(&format!("node {id} shutdown"), r);
    }
}

#[test]
fn shutdown_ends_when_a_node_left_without_its_final_barrier() {
    let mut nodes = cluster(3, 1, ManagerKind::Central);
    drop(nodes.pop());
    let (tx, rx) = channel();
    for n in nodes {
        let tx = tx.clone();
        thread::spawn(move || {
            let _ = tx.send((n.rt.id(), n.rt.shutdown()));
        });
    }
    for _ in 0..2 {
        let (id, r) = rx
            .recv_timeout(DEADLINE)
            .expect("shutdown hung in its final barrier after a node left");
        assert_shutdown_saw_a_loss(&format!("node {id} shutdown"), r);
    }
}

#[test]
fn a_lock_held_by_a_departed_node_fails_its_waiters_with_node_lost() {
    let mut nodes = cluster(3, 1, ManagerKind::Central);
    // Lock 3 is managed by node 0; node 2 takes it and leaves without unlocking.
    nodes[2].rt.lock(3).unwrap();
    let (tx, rx) = channel();
    for n in &nodes[..2] {
        let (rt, tx) = (n.rt.clone(), tx.clone());
        thread::spawn(move || {
            let _ = tx.send((rt.id(), rt.lock(3)));
        });
    }
    drop(nodes.pop());
    for _ in 0..2 {
        let (id, r) = rx
            .recv_timeout(DEADLINE)
            .expect("a lock wait hung after its holder left");
        assert_lost_node_2(&format!("node {id} lock"), r);
    }
}

#[test]
fn an_orderly_shutdown_of_every_node_reports_no_loss() {
    for _ in 0..5 {
        let nodes = cluster(3, 1, ManagerKind::Central);
        let (tx, rx) = channel();
        for n in nodes {
            let tx = tx.clone();
            thread::spawn(move || {
                // A barrier all pass, then leave: Leaves arrive while others still finish
                // their final barrier; none of that is a loss.
                let r = n.rt.barrier(5).and(n.rt.shutdown());
                // A node that saw a loss would answer NodeLost here, not ShutDown.
                let after = n.rt.barrier(6);
                let _ = tx.send((
                    n.rt.id(),
                    r.and(match after {
                        Err(DsmError::ShutDown) => Ok(()),
                        other => Err(DsmError::Protocol(format!("after shutdown: {other:?}"))),
                    }),
                ));
            });
        }
        for _ in 0..3 {
            let (id, r) = rx.recv_timeout(DEADLINE).expect("shutdown hung");
            assert!(r.is_ok(), "node {id}: {r:?}");
        }
    }
}
