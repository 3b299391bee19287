//! A real node process killed with SIGKILL: the nodes left fail with NodeLost, quickly, and
//! never hang.

use crate::node_support;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc::channel;
use std::thread;
use std::time::Duration;

use memlink_dsm::{Access, DsmError, FaultResolver, ManagerKind, NodeRuntime, PAGE_SIZE};
use node_support::{MemPages, config, listeners};

const CHILD_ENV: &str = "MEMLINK_DSM_TEST_CHILD_PEERS";

/// Not a test of its own: the entry point of the child node process that
/// `a_killed_node_process_makes_the_others_fail_with_node_lost` spawns (it re-executes this
/// test binary with the peers in `MEMLINK_DSM_TEST_CHILD_PEERS`). Without the variable it
/// has nothing to do.
#[test]
fn child_node_process_entry() {
    let Ok(peers) = std::env::var(CHILD_ENV) else {
        return;
    };
    let peers: Vec<std::net::SocketAddr> = peers.split(',').map(|a| a.parse().unwrap()).collect();
    // The parent bound node 2's listener and passed it down (no port picked and released,
    // which another process could take); every node has the same peers list.
    let listener = memlink_dsm::init::take_inherited_listener(peers[2]).expect("inherited");
    let mem = MemPages::new(4);
    let cfg = config(2, &peers, 4, ManagerKind::Central);
    let rt = NodeRuntime::start_with_listener(cfg, listener, mem.clone()).unwrap();
    mem.write_u64(&rt, 2 * PAGE_SIZE, 1234).unwrap();
    rt.barrier(1).unwrap();
    // Wait here until killed: at barrier 3, which the other nodes never call. (Not barrier 2:
    // this node manages that one, and had it arrived there, the others' barrier 2 would
    // complete before the kill whenever their requests came first.)
    let _ = rt.barrier(3);
    std::process::exit(3);
}

/// The `child_node_process_entry` test as libtest names it in this binary (its path below
/// the crate).
fn child_node_process_entry_test() -> &'static str {
    let path = concat!(module_path!(), "::child_node_process_entry");
    path.split_once("::").map_or(path, |(_, test)| test)
}

#[test]
fn a_killed_node_process_makes_the_others_fail_with_node_lost() {
    let (mut ls, addrs) = listeners(3);
    let l2 = ls.pop().unwrap(); // the child's (see child_node_process_entry)
    let peers: Vec<String> = addrs.iter().map(|a| a.to_string()).collect();
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        child_node_process_entry_test(),
        "--nocapture",
        "--test-threads=1",
    ])
    .env(CHILD_ENV, peers.join(","))
    .stdout(Stdio::null());
    memlink_dsm::init::pass_listener(&mut cmd, &l2);
    let mut child = cmd.spawn().unwrap();
    drop(l2); // the child owns its copy

    let l1 = ls.pop().unwrap();
    let l0 = ls.pop().unwrap();
    let a1 = addrs.clone();
    let h1 = thread::spawn(move || {
        let mem = MemPages::new(4);
        let rt = NodeRuntime::start_with_listener(
            config(1, &a1, 4, ManagerKind::Central),
            l1,
            mem.clone(),
        )
        .unwrap();
        (rt, mem)
    });
    let m0 = MemPages::new(4);
    let n0 = NodeRuntime::start_with_listener(
        config(0, &addrs, 4, ManagerKind::Central),
        l0,
        m0.clone(),
    )
    .unwrap();
    let (n1, m1) = h1.join().unwrap();
    let n1: Arc<NodeRuntime> = n1;

    // The cluster works across the processes: the child's write is read here.
    let b0 = {
        let n0 = Arc::clone(&n0);
        thread::spawn(move || n0.barrier(1))
    };
    n1.barrier(1).unwrap();
    b0.join().unwrap().unwrap();
    assert_eq!(m1.read_u64(&n1, 2 * PAGE_SIZE).unwrap(), 1234);
    // Node 1 now owns page 3; node 0 will need it later.
    m1.write_u64(&n1, 3 * PAGE_SIZE, 5).unwrap();

    // Both nodes wait at barrier 2 (managed by the child, which never arrives: it waits at
    // barrier 3); then the child is killed.
    let (done_tx, done_rx) = channel();
    for rt in [Arc::clone(&n0), Arc::clone(&n1)] {
        let tx = done_tx.clone();
        thread::spawn(move || {
            let _ = tx.send((rt.id(), rt.barrier(2)));
        });
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    for _ in 0..2 {
        let (id, r) = done_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("a node hung after its peer was killed");
        match r {
            Err(DsmError::NodeLost { node: 2, reason }) => {
                assert!(!reason.is_empty(), "node {id}: {reason}")
            }
            other => panic!("node {id}: expected NodeLost for node 2, got {other:?}"),
        }
    }
    // Later operations fail the same way instead of hanging.
    assert!(matches!(
        n0.resolve_fault(3, Access::Read),
        Err(DsmError::NodeLost { node: 2, .. })
    ));
    assert!(matches!(n1.lock(0), Err(DsmError::NodeLost { .. })));
    assert!(matches!(n0.alloc(8, 8), Err(DsmError::NodeLost { .. })));
}
