//! Admission across real processes and sockets: a node without the cluster key is rejected
//! and told so, while the real node still joins; an id already connected is refused; a flood
//! of garbage, idle and half-done connections leaves the node's thread count bounded and the
//! cluster's result verified.

use crate::support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use memlink_dsm::admission::handshake::Hello;
use memlink_dsm::admission::{
    AdmitError, ClusterId, ClusterKey, Gate, Handshake, KEY_FILE_ENV, Refusal, TempKeyFile, dial,
};
use memlink_dsm::apps::EXIT_DSM_ERROR;
use memlink_dsm::init::{NodeSlot, bind_slots, pass_listener};
use memlink_dsm::remote::{Frame, FrameKind};
use memlink_dsm::{Backend, ManagerKind};
use memlink_test_support::output_of;
use support::{DEADLINE, node_command, output_within};

/// Not a test of its own: the entry point of the node processes the tests start.
#[test]
fn node_main() {
    support::node_entry(&[]);
}

/// Starts node `slot` running `app` with the key in `key` (None: no key), its output piped.
fn spawn_node(slot: &NodeSlot, listener: Option<&TcpListener>, key: Option<&TempKeyFile>) -> Child {
    let mut cmd = node_command(slot, "counter", Backend::Sigsegv);
    configure(&mut cmd, listener, key);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn node")
}

fn configure(cmd: &mut Command, listener: Option<&TcpListener>, key: Option<&TempKeyFile>) {
    cmd.env_remove(KEY_FILE_ENV);
    if let Some(key) = key {
        cmd.env(KEY_FILE_ENV, key.path());
    }
    if let Some(l) = listener {
        pass_listener(cmd, l);
    }
}

/// An impostor that joins through the public `Dsm::join` as node 1, before the real node 1
/// and with node 0's address, page count and manager, but without the cluster key, is
/// rejected and told why; the real node 1 then joins and the cluster verifies its result.
fn impostor_is_rejected(impostor_key: Option<&TempKeyFile>, want: &str) {
    let key = TempKeyFile::create().unwrap();
    let mut slots = bind_slots(2).unwrap();
    let (slot1, l1) = slots.pop().unwrap();
    let (slot0, l0) = slots.pop().unwrap();
    let node0 = spawn_node(&slot0, Some(&l0), Some(&key));
    drop(l0);

    // The impostor: node 1's id and the same peers list; node 1 is never dialled, so it
    // listens anywhere (the real node 1's listener is still held here).
    let fake = NodeSlot {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..slot1.clone()
    };
    let mut cmd = node_command(&fake, "counter", Backend::Sigsegv);
    configure(&mut cmd, None, impostor_key);
    let out = output_within(&mut cmd, DEADLINE);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(EXIT_DSM_ERROR), "{stderr}");
    assert!(stderr.contains(want), "the impostor's error: {stderr}");
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("verified"),
        "the impostor ran its body"
    );

    let node1 = spawn_node(&slot1, Some(&l1), Some(&key));
    drop(l1);
    let (out1, _) = output_of(node1, "the real node 1");
    let (out0, err0) = output_of(node0, "node 0");
    assert!(out0.contains("verified: true") && out1.contains("verified: true"));
    // Node 0 logged the refusal.
    assert!(err0.contains("refused a connection"), "node 0: {err0}");
}

#[test]
fn an_impostor_with_another_key_is_rejected_and_the_real_node_joins() {
    let other = TempKeyFile::create().unwrap();
    impostor_is_rejected(Some(&other), "rejected by node 0: wrong cluster key");
}

#[test]
fn an_impostor_without_a_key_is_rejected_and_the_real_node_joins() {
    impostor_is_rejected(None, "rejected by node 0: a cluster key is required");
}

fn hs(me: u16, key: &ClusterKey) -> Handshake {
    Handshake {
        me,
        nodes: 3,
        cluster: ClusterId::derive(&[b"admission test"]),
        key: Some(key.clone()),
        code: memlink_dsm::process::identity::CodeIdentity::here(),
    }
}

#[test]
fn an_id_already_connected_is_refused() {
    let key = ClusterKey::generate().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (gate, admitted) = Gate::start(listener, hs(0, &key), "test gate").unwrap();
    let _first = dial(addr, &hs(2, &key), 0, DEADLINE).unwrap();
    let (who, _) = admitted.recv_timeout(DEADLINE).unwrap();
    assert_eq!(who, 2);
    match dial(addr, &hs(2, &key), 0, DEADLINE) {
        Err(AdmitError::RefusedBy(Refusal::AlreadyConnected(2))) => {}
        other => panic!("a second node 2: {other:?}"),
    }
    // The wrong key is refused; node 1 with the key is still admitted afterwards.
    let wrong = ClusterKey::generate().unwrap();
    match dial(addr, &hs(1, &wrong), 0, DEADLINE) {
        Err(e @ AdmitError::RefusedBy(Refusal::WrongKey)) => {
            assert_eq!(e.to_string(), "rejected: wrong cluster key")
        }
        other => panic!("a node with another key: {other:?}"),
    }
    dial(addr, &hs(1, &key), 0, DEADLINE).unwrap();
    assert_eq!(admitted.recv_timeout(DEADLINE).unwrap().0, 1);
    gate.close();
}

/// A dialler that reaches something that cannot prove the key (an impostor listening at a
/// peer's address) refuses it.
#[test]
fn a_listener_without_the_key_is_not_trusted() {
    let key = ClusterKey::generate().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (gate, _admitted) = Gate::start(
        listener,
        hs(0, &ClusterKey::generate().unwrap()),
        "impostor",
    )
    .unwrap();
    // The impostor's gate refuses the real node first (its proof fails there).
    match dial(addr, &hs(1, &key), 0, DEADLINE) {
        Err(AdmitError::RefusedBy(Refusal::WrongKey)) => {}
        other => panic!("{other:?}"),
    }
    gate.close();
}

fn threads_of(pid: u32) -> usize {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

/// Raises this process's descriptor limit to its hard limit (the flood holds many sockets).
fn raise_fd_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a live out-parameter of the type getrlimit expects.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    lim.rlim_cur = lim.rlim_max;
    // SAFETY: `lim` is a live, initialised rlimit.
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) };
    lim.rlim_cur
}

/// The handshake of a cluster of `nodes` run by `memlink_dsm::apps` counter with the test
/// support's settings (what the nodes under test compute from their configuration).
fn handshake_of(me: u16, peers: &[SocketAddr], key: Option<ClusterKey>) -> Handshake {
    let cfg = memlink_dsm::remote::TcpConfig {
        id: me,
        peers: peers.to_vec(),
        cluster_tag: memlink_dsm::node::cluster_tag(support::PAGES, ManagerKind::Central),
        key,
        connect_timeout: DEADLINE,
    };
    cfg.handshake()
}

/// A frame carrying a Hello of node `from` to node 0 that a real node would send first.
fn hello_bytes(hs: &Handshake, from: u16) -> Vec<u8> {
    let hello = Hello {
        from,
        to: 0,
        nodes: hs.nodes as u16,
        keyed: true,
        cluster: hs.cluster,
        nonce: [7; 32],
        code: hs.code,
    };
    Frame::new(FrameKind::Hello, 0, hello.encode())
        .encode()
        .unwrap()
}

#[test]
fn a_flood_of_garbage_and_idle_connections_costs_no_threads_and_the_cluster_verifies() {
    let fd_limit = raise_fd_limit();
    let idle_count = (fd_limit.saturating_sub(200) as usize).min(1500);
    let key = TempKeyFile::create().unwrap();
    let mut slots = bind_slots(3).unwrap();
    let (slot2, l2) = slots.pop().unwrap();
    let (slot1, l1) = slots.pop().unwrap();
    let (slot0, l0) = slots.pop().unwrap();
    let addr0 = slot0.listen;
    let node0 = spawn_node(&slot0, Some(&l0), Some(&key));
    drop(l0);
    let pid = node0.id();
    // Node 0 is up and waiting for its peers when it answers a Hello with a Challenge.
    let hs = handshake_of(1, &slot0.peers, None);
    let hello = hello_bytes(&hs, 1);
    let started = Instant::now();
    loop {
        if let Ok(mut s) = TcpStream::connect(addr0) {
            s.set_read_timeout(Some(DEADLINE)).unwrap();
            s.write_all(&hello).unwrap();
            let mut b = [0u8; 1];
            if s.read(&mut b).unwrap_or(0) == 1 {
                break; // and hang up mid-handshake: that must not matter
            }
        }
        assert!(started.elapsed() < DEADLINE, "node 0 never listened");
        thread::sleep(Duration::from_millis(10));
    }
    let before = threads_of(pid);
    let mut most = before;

    // The flood: idle connections (held open), garbage, Hellos followed by a hang-up, and
    // Hellos left hanging; thousands in all.
    let mut idle = Vec::with_capacity(idle_count);
    for i in 0..3000usize {
        let Ok(mut s) = TcpStream::connect(addr0) else {
            continue;
        };
        match i % 4 {
            0 if idle.len() < idle_count => idle.push(s),
            1 => {
                let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: memlink\r\n\r\n");
            }
            2 => {
                let _ = s.write_all(&hello);
            }
            _ => {
                let _ = s.write_all(&hello);
                if idle.len() < idle_count {
                    idle.push(s);
                }
            }
        }
        if i % 100 == 0 {
            most = most.max(threads_of(pid));
        }
    }
    // An oversized frame: refused from its header, never allocated.
    let mut huge = Frame::new(FrameKind::Hello, 0, vec![]).encode().unwrap();
    huge[16..20].copy_from_slice(&u32::MAX.to_le_bytes());
    if let Ok(mut s) = TcpStream::connect(addr0) {
        let _ = s.write_all(&huge);
    }
    most = most.max(threads_of(pid));

    // The real nodes join while the idle connections are still held open.
    let node1 = spawn_node(&slot1, Some(&l1), Some(&key));
    let node2 = spawn_node(&slot2, Some(&l2), Some(&key));
    drop((l1, l2));
    let (out2, _) = output_of(node2, "node 2");
    let (out1, _) = output_of(node1, "node 1");
    let (out0, err0) = output_of(node0, "node 0");
    drop(idle);
    for out in [&out0, &out1, &out2] {
        assert!(out.contains("verified: true"), "{out}");
    }
    eprintln!(
        "node 0: {before} threads before the flood, at most {most} during it; its log:\n{err0}"
    );
    // No thread per connection: at most the node's own threads (flood or not).
    assert!(
        most <= before + 2,
        "node 0 grew from {before} to {most} threads under the flood"
    );
    // Refusals are summed up, not logged one by one.
    let lines = err0.lines().filter(|l| l.contains("refused")).count();
    assert!(lines <= 20, "{lines} lines of refusals:\n{err0}");
}
