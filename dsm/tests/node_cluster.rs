//! Several NodeRuntimes in one process over loopback TCP, with in-memory pages: coherence,
//! locks, barriers, the allocator, statistics, and start-up failures.

use crate::node_support;

use std::io::Write;
use std::net::TcpStream;
use std::thread;
use std::time::Duration;

use memlink_dsm::{Access, DsmError, FaultResolver, ManagerKind, NodeRuntime, PAGE_SIZE};
use node_support::{MemPages, cluster, config, listeners};

#[test]
fn a_write_on_one_node_is_read_on_another_and_copies_are_invalidated() {
    for manager in [
        ManagerKind::Central,
        ManagerKind::Fixed,
        ManagerKind::Dynamic,
    ] {
        let nodes = cluster(4, 8, manager);
        let off = 3 * PAGE_SIZE + 16; // page 3
        nodes[1].mem.write_u64(&nodes[1].rt, off, 41).unwrap();
        assert_eq!(nodes[2].mem.read_u64(&nodes[2].rt, off).unwrap(), 41);
        assert_eq!(nodes[3].mem.read_u64(&nodes[3].rt, off).unwrap(), 41);
        assert_eq!(nodes[0].mem.read_u64(&nodes[0].rt, off).unwrap(), 41);
        // Node 1 (the owner) was downgraded to a read copy by the readers.
        assert_eq!(nodes[1].mem.access(3), Access::Read);
        // A write on node 3 invalidates every other copy.
        nodes[3].mem.write_u64(&nodes[3].rt, off, 42).unwrap();
        for n in [0, 1, 2] {
            assert_eq!(nodes[n].mem.access(3), Access::None, "{manager:?} node {n}");
        }
        assert_eq!(nodes[3].mem.access(3), Access::Write);
        for n in &nodes {
            assert_eq!(n.mem.read_u64(&n.rt, off).unwrap(), 42);
        }
        let s = nodes[2].rt.stats();
        assert!(s.read_faults >= 2 && s.messages > 0 && s.bytes > 0, "{s:?}");
        assert!(nodes[3].rt.stats().write_faults >= 1);
        for n in &nodes {
            assert!(
                n.rt.resolve_fault(8, Access::Read).is_err(),
                "page out of range"
            );
        }
        let hs: Vec<_> = nodes
            .into_iter()
            .map(|n| thread::spawn(move || n.rt.shutdown()))
            .collect();
        hs.into_iter()
            .for_each(|h| h.join().unwrap().expect("orderly shutdown"));
    }
}

#[test]
fn lock_protected_counter_is_exact_on_four_nodes() {
    for manager in [
        ManagerKind::Central,
        ManagerKind::Fixed,
        ManagerKind::Dynamic,
    ] {
        counter(manager);
    }
}

/// Runs the lock-protected counter on 4 nodes; returns (faults, messages) of all nodes.
fn counter(manager: ManagerKind) -> (u64, u64) {
    const ROUNDS: u64 = 50;
    let nodes = cluster(4, 4, manager);
    let counter = PAGE_SIZE + 8; // page 1
    let hs: Vec<_> = nodes
        .into_iter()
        .map(|n| {
            thread::spawn(move || {
                for _ in 0..ROUNDS {
                    n.rt.lock(1).unwrap();
                    let v = n.mem.read_u64(&n.rt, counter).unwrap();
                    n.mem.write_u64(&n.rt, counter, v + 1).unwrap();
                    n.rt.unlock(1).unwrap();
                }
                n.rt.barrier(7).unwrap();
                let total = n.mem.read_u64(&n.rt, counter).unwrap();
                n.rt.barrier(8).unwrap();
                let s = n.rt.stats();
                n.rt.shutdown().expect("orderly shutdown");
                (total, s.read_faults + s.write_faults, s.messages)
            })
        })
        .collect();
    let (mut faults, mut messages) = (0, 0);
    for h in hs {
        let (total, f, m) = h.join().unwrap();
        assert_eq!(total, 4 * ROUNDS);
        faults += f;
        messages += m;
    }
    (faults, messages)
}

/// Messages per fault of each manager on the counter (locks and barriers included).
/// Run by hand: `cargo test -p memlink-dsm --test integration node_cluster -- --ignored --nocapture`
#[test]
#[ignore = "a measurement: run by hand with --ignored --nocapture"]
fn report_messages_per_fault() {
    for manager in [
        ManagerKind::Central,
        ManagerKind::Fixed,
        ManagerKind::Dynamic,
    ] {
        let (faults, messages) = counter(manager);
        println!(
            "{manager}: {faults} faults, {messages} messages, {:.2} messages per fault",
            messages as f64 / faults as f64
        );
    }
}

#[test]
fn barriers_order_phases_across_nodes() {
    // Each node writes its slot in phase 1; after the barrier every node sees all slots.
    let nodes = cluster(3, 3, ManagerKind::Fixed);
    let hs: Vec<_> = nodes
        .into_iter()
        .map(|n| {
            thread::spawn(move || {
                let me = n.rt.id() as usize;
                for round in 1..=3u64 {
                    let slot = me * PAGE_SIZE; // one page per node: no false sharing
                    n.mem
                        .write_u64(&n.rt, slot, round * 10 + me as u64)
                        .unwrap();
                    n.rt.barrier(round as u32).unwrap();
                    for other in 0..3 {
                        let v = n.mem.read_u64(&n.rt, other * PAGE_SIZE).unwrap();
                        assert_eq!(v, round * 10 + other as u64);
                    }
                    n.rt.barrier(100 + round as u32).unwrap();
                }
                n.rt.shutdown().expect("orderly shutdown");
            })
        })
        .collect();
    hs.into_iter().for_each(|h| h.join().unwrap());
}

#[test]
fn allocation_is_served_by_node_zero_for_everyone() {
    let nodes = cluster(3, 4, ManagerKind::Central);
    let a = nodes[1].rt.alloc(100, 8).unwrap();
    let b = nodes[2].rt.alloc(PAGE_SIZE, PAGE_SIZE).unwrap();
    let c = nodes[0].rt.alloc(8, 8).unwrap();
    assert_eq!((a, b, c), (0, PAGE_SIZE, 104));
    assert!(matches!(
        nodes[2].rt.alloc(4 * PAGE_SIZE, 8),
        Err(DsmError::OutOfMemory { requested }) if requested == 4 * PAGE_SIZE
    ));
    nodes[2].rt.free(a).unwrap();
    assert!(matches!(nodes[1].rt.free(a), Err(DsmError::InvalidFree { offset }) if offset == a));
    assert_eq!(
        nodes[1].rt.alloc(50, 8).unwrap(),
        0,
        "first fit reuses the hole"
    );
    assert!(matches!(nodes[1].rt.unlock(9), Err(DsmError::Sync(_))));
    assert!(matches!(nodes[0].rt.unlock(9), Err(DsmError::Sync(_))));
}

#[test]
fn an_unreachable_peer_is_named() {
    let (mut ls, addrs) = listeners(3);
    drop(ls.pop()); // nobody will listen at node 2's address
    let l1 = ls.pop().unwrap();
    let l0 = ls.pop().unwrap();
    let mut c1 = config(1, &addrs, 1, ManagerKind::Central);
    c1.connect_timeout = Duration::from_millis(500);
    let mut c0 = c1.clone();
    c0.id = 0;
    c0.listen = addrs[0];
    let h0 = thread::spawn(move || NodeRuntime::start_with_listener(c0, l0, MemPages::new(1)));
    let r1 = NodeRuntime::start_with_listener(c1, l1, MemPages::new(1));
    // Node 1 dials 0 (fine) and waits for 2 to dial it; node 0 waits for 1 and 2.
    match r1 {
        Err(DsmError::Unreachable { node: 2, addr }) => {
            assert!(addr.contains(&addrs[2].to_string()))
        }
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => panic!("started without node 2"),
    }
    match h0.join().unwrap() {
        Err(DsmError::Unreachable { node: 2, .. }) => {}
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => panic!("started without node 2"),
    }
}

#[test]
fn garbage_sent_to_a_node_port_is_rejected_and_the_node_keeps_serving() {
    let (ls, addrs) = listeners(2);
    let peers = addrs.clone();
    let mut it = ls.into_iter();
    let (l0, l1) = (it.next().unwrap(), it.next().unwrap());
    let m0 = MemPages::new(2);
    let m0c = m0.clone();
    let h = thread::spawn(move || {
        NodeRuntime::start_with_listener(config(0, &peers, 2, ManagerKind::Central), l0, m0c)
            .unwrap()
    });
    let m1 = MemPages::new(2);
    let n1 = NodeRuntime::start_with_listener(
        config(1, &addrs, 2, ManagerKind::Central),
        l1,
        m1.clone(),
    )
    .unwrap();
    let n0 = h.join().unwrap();
    // A stranger sends garbage, a frame with a wrong version, then an oversized length.
    let attacks: [&[u8]; 3] = [
        b"GET / HTTP/1.1\r\n\r\n garbage garbage",
        &[
            b'M', b'L', b'D', b'S', 9, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ],
        &[
            b'M', b'L', b'D', b'S', 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 255, 255, 255, 127, 0, 0,
            0, 0,
        ],
    ];
    for bytes in attacks {
        for addr in &addrs {
            let mut s = TcpStream::connect(addr).unwrap();
            let _ = s.write_all(bytes);
            // The node closes the connection: reading ends with EOF or a reset.
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut buf = [0u8; 64];
            let _ = std::io::Read::read(&mut s, &mut buf);
        }
    }
    // Both nodes still serve each other.
    m1.write_u64(&n1, 8, 7).unwrap();
    assert_eq!(m0.read_u64(&n0, 8).unwrap(), 7);
    m0.write_u64(&n0, PAGE_SIZE, 9).unwrap();
    assert_eq!(m1.read_u64(&n1, PAGE_SIZE).unwrap(), 9);
    n1.lock(3).unwrap();
    n1.unlock(3).unwrap();
}

/// Remote read miss latency (owner = manager = node 0, in-memory pages) against a raw TCP
/// 4 KiB round trip in the same run. Run by hand:
/// `cargo test -p memlink-dsm --release --test integration node_cluster::measure -- --ignored --nocapture`
#[test]
#[ignore = "a measurement: run by hand with --ignored --nocapture"]
fn measure_read_miss() {
    use std::io::Read;
    use std::time::Instant;
    const N: usize = 2000;
    let raw = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let raw_addr = raw.local_addr().unwrap();
    thread::spawn(move || {
        let (mut s, _) = raw.accept().unwrap();
        s.set_nodelay(true).unwrap();
        let mut buf = vec![0u8; PAGE_SIZE];
        while s.read_exact(&mut buf).is_ok() {
            s.write_all(&buf).unwrap();
        }
    });
    let mut c = TcpStream::connect(raw_addr).unwrap();
    c.set_nodelay(true).unwrap();
    let mut buf = vec![1u8; PAGE_SIZE];
    let mut tcp = Vec::new();
    for _ in 0..N {
        let t = Instant::now();
        c.write_all(&buf).unwrap();
        c.read_exact(&mut buf).unwrap();
        tcp.push(t.elapsed());
    }
    for manager in [
        ManagerKind::Central,
        ManagerKind::Fixed,
        ManagerKind::Dynamic,
    ] {
        let nodes = cluster(2, 2, manager);
        let mut miss = Vec::new();
        for i in 0..N as u64 {
            // Node 0 writes (taking the page back and invalidating node 1's copy) ...
            nodes[0].mem.write_u64(&nodes[0].rt, 0, i).unwrap();
            // ... and node 1's read is a remote read miss.
            let t = Instant::now();
            nodes[1].rt.resolve_fault(0, Access::Read).unwrap();
            miss.push(t.elapsed());
            assert_eq!(nodes[1].mem.read_u64(&nodes[1].rt, 0).unwrap(), i);
        }
        tcp.sort();
        miss.sort();
        let (m, t) = (miss[N / 2], tcp[N / 2]);
        println!(
            "{manager}: read miss {:.1} us, raw TCP 4 KiB round trip {:.1} us, ratio {:.2}",
            m.as_secs_f64() * 1e6,
            t.as_secs_f64() * 1e6,
            m.as_secs_f64() / t.as_secs_f64()
        );
    }
}

#[test]
fn nodes_over_the_in_process_transport_and_a_simulated_death() {
    use memlink_dsm::remote::InProcTransport;
    use std::sync::Arc;
    let addrs: Vec<std::net::SocketAddr> = (0..3)
        .map(|i| format!("127.0.0.1:{}", 1000 + i).parse().unwrap())
        .collect();
    let mut transports = Vec::new();
    let mut nodes = Vec::new();
    for (i, (t, events)) in InProcTransport::network_sources(3).into_iter().enumerate() {
        let t = Arc::new(t);
        let mem = MemPages::new(2);
        let cfg = config(i, &addrs, 2, ManagerKind::Dynamic);
        let rt = NodeRuntime::start_on(t.clone(), events, &cfg, mem.clone()).unwrap();
        transports.push(t);
        nodes.push((rt, mem));
    }
    nodes[2].1.write_u64(&nodes[2].0, 64, 99).unwrap();
    assert_eq!(nodes[1].1.read_u64(&nodes[1].0, 64).unwrap(), 99);
    assert_eq!(nodes[0].1.read_u64(&nodes[0].0, 64).unwrap(), 99);
    // Node 2 dies: the others fail with NodeLost naming it.
    transports[2].kill();
    for (rt, _) in &nodes[..2] {
        match rt.barrier(4) {
            Err(DsmError::NodeLost { node: 2, .. }) => {}
            other => panic!("expected the loss of node 2, got {other:?}"),
        }
    }
}
