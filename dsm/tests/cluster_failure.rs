//! Failures across node processes: a node killed with SIGKILL mid-run makes the others fail
//! with NodeLost within seconds, naming the killed node (never a survivor that left because of
//! it, at whatever moment the kill comes); garbage sent to a node's port does not hurt the
//! node; a node whose peer never comes up says which one and exits non-zero.

use crate::support;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use memlink_dsm::apps::{EXIT_DSM_ERROR, EXIT_NODE_LOST};
use memlink_dsm::cluster::Dsm;
use memlink_dsm::handles::DsmBox;
use memlink_dsm::{Backend, DsmError};
use support::NodeProcess;

/// The counter node 0 allocates, once every node has it; then prints `ready`.
fn shared_counter(dsm: &Dsm) -> Result<DsmBox<u64>, DsmError> {
    if dsm.id() == 0 {
        let counter = DsmBox::new(dsm, 0u64)?;
        dsm.publish(1, counter.offset() as u64);
    }
    dsm.barrier(1)?;
    let counter = DsmBox::<u64>::attach(dsm, dsm.lookup(1) as usize)?;
    println!("ready");
    let _ = std::io::stdout().flush();
    Ok(counter)
}

/// Increments a shared counter under a lock forever (until the cluster fails).
fn forever(dsm: &Dsm) -> Result<bool, DsmError> {
    let counter = shared_counter(dsm)?;
    loop {
        dsm.lock(1)?;
        counter.set(counter.get() + 1);
        dsm.unlock(1)?;
    }
}

/// Works the cluster until it fails: lock-protected increments of a counter whose page moves
/// from node to node, and a barrier every few rounds (so nodes also wait for each other).
fn churn(dsm: &Dsm) -> Result<bool, DsmError> {
    let counter = shared_counter(dsm)?;
    for round in 0u32.. {
        dsm.lock(1)?;
        counter.set(counter.get() + 1);
        dsm.unlock(1)?;
        if round % 4 == 3 {
            dsm.barrier(2 + round / 4 % 2)?;
        }
    }
    Ok(true)
}

/// Waits for a line on stdin, then runs the counter app.
fn after_stdin(dsm: &Dsm) -> Result<bool, DsmError> {
    println!("ready");
    let _ = std::io::stdout().flush();
    support::wait_for_stdin_line();
    memlink_dsm::apps::counter::run(dsm)
}

#[test]
fn node_main() {
    support::node_entry(&[
        ("forever", forever),
        ("churn", churn),
        ("after_stdin", after_stdin),
    ]);
}

fn killed_node_fails_the_others(backend: Backend) {
    let nodes: Vec<NodeProcess> = support::slots(3)
        .into_iter()
        .map(|(s, l)| NodeProcess::spawn(&s, l, "forever", backend))
        .collect();
    for n in &nodes {
        n.expect_line("ready");
    }
    let mut nodes = nodes.into_iter();
    let (n0, n1, mut n2) = (
        nodes.next().unwrap(),
        nodes.next().unwrap(),
        nodes.next().unwrap(),
    );
    n2.child.kill().expect("SIGKILL node 2");
    let (status, _) = n2.wait_for(support::DEADLINE);
    assert!(status.is_some(), "node 2 outlived SIGKILL");
    for (id, node) in [(0, n0), (1, n1)] {
        let (status, stderr) = node.wait_for(Duration::from_secs(20));
        let status = status.unwrap_or_else(|| panic!("node {id} hung after node 2 died"));
        assert_eq!(
            status.code(),
            Some(EXIT_NODE_LOST),
            "node {id} ({backend}): {status:?}, stderr: {stderr}"
        );
        assert_eq!(
            lost_nodes_named(&stderr),
            vec![2],
            "node {id} names the node that died: {stderr}"
        );
    }
}

/// Every node a survivor's stderr names as lost ("lost node N"), in order, without repeats.
fn lost_nodes_named(stderr: &str) -> Vec<u32> {
    let mut named = Vec::new();
    for (at, _) in stderr.match_indices("lost node ") {
        let digits: String = stderr[at + "lost node ".len()..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        if let Ok(n) = digits.parse() {
            if !named.contains(&n) {
                named.push(n);
            }
        }
    }
    named
}

/// A small xorshift generator: the kill schedule, reproducible from its seed.
struct Schedule(u64);

impl Schedule {
    fn next(&mut self, below: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % below
    }
}

/// Rounds of a 4-node cluster working (locks, a moving page, barriers); in each, one node
/// picked at random is SIGKILLed at a random moment, and every survivor must fail naming it,
/// never another survivor that left because of the death. The seed is printed
/// (`MEMLINK_KILL_SEED` replays a schedule).
#[test]
fn survivors_name_the_killed_node_whenever_it_dies() {
    const ROUNDS: usize = 30;
    const NODES: usize = 4;
    let seed = std::env::var("MEMLINK_KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
                | 1
        });
    eprintln!("kill schedule seed: {seed} (MEMLINK_KILL_SEED={seed} replays it)");
    let mut schedule = Schedule(seed);
    let (mut checked, mut wrong) = (0usize, Vec::new());
    for round in 0..ROUNDS {
        let victim = schedule.next(NODES as u64) as usize;
        let moment = Duration::from_micros(schedule.next(20_000));
        let backend = [Backend::Sigsegv, Backend::Uffd][round % 2];
        let mut nodes: Vec<Option<NodeProcess>> = support::slots(NODES)
            .into_iter()
            .map(|(s, l)| Some(NodeProcess::spawn(&s, l, "churn", backend)))
            .collect();
        for n in nodes.iter().flatten() {
            n.expect_line("ready");
        }
        // The random moment of the kill: where in the loop of locks, faults and barriers the
        // nodes are when it comes.
        std::thread::sleep(moment);
        let mut dead = nodes[victim].take().expect("the victim");
        dead.child.kill().expect("SIGKILL");
        assert!(
            dead.wait_for(support::DEADLINE).0.is_some(),
            "outlived SIGKILL"
        );
        for (id, node) in nodes.into_iter().enumerate() {
            let Some(node) = node else { continue };
            let (status, stderr) = node.wait_for(Duration::from_secs(20));
            let status = status.unwrap_or_else(|| panic!("node {id} hung after {victim} died"));
            assert_eq!(
                status.code(),
                Some(EXIT_NODE_LOST),
                "round {round}: node {id} ({backend}) after node {victim} died: {stderr}"
            );
            let named = lost_nodes_named(&stderr);
            checked += 1;
            if named != [victim as u32] {
                wrong.push(format!(
                    "round {round} ({backend}, kill after {moment:?}): node {id} named {named:?} \
                     for node {victim}: {}",
                    stderr.trim()
                ));
            }
        }
    }
    eprintln!(
        "{ROUNDS} kills, {checked} survivors' errors checked, {} naming another node",
        wrong.len()
    );
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn a_killed_node_makes_the_others_fail_with_node_lost_sigsegv() {
    killed_node_fails_the_others(Backend::Sigsegv);
}

#[test]
fn a_killed_node_makes_the_others_fail_with_node_lost_uffd() {
    killed_node_fails_the_others(Backend::Uffd);
}

#[test]
fn garbage_frames_on_a_nodes_port_do_not_hurt_it() {
    let (slots, listeners): (Vec<_>, Vec<_>) = support::slots(2).into_iter().unzip();
    let mut nodes: Vec<NodeProcess> = slots
        .iter()
        .zip(listeners)
        .map(|(s, l)| NodeProcess::spawn(s, l, "after_stdin", Backend::Sigsegv))
        .collect();
    for n in &nodes {
        n.expect_line("ready");
    }
    let garbage: [&[u8]; 3] = [
        b"GET / HTTP/1.1\r\nHost: memlink\r\n\r\n",
        &[0xff; 64],
        &[0, 0, 0, 0, 0, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef],
    ];
    for slot in &slots {
        for bytes in garbage {
            if let Ok(mut s) = TcpStream::connect(slot.listen) {
                let _ = s.write_all(bytes);
            }
        }
    }
    for n in &mut nodes {
        n.send_line("go");
    }
    for (id, node) in nodes.into_iter().enumerate() {
        let (status, stderr) = node.wait_for(Duration::from_secs(60));
        let status = status.unwrap_or_else(|| panic!("node {id} hung"));
        assert!(status.success(), "node {id}: {status:?}, stderr: {stderr}");
    }
}

#[test]
fn an_unreachable_peer_is_named_and_the_node_exits_non_zero() {
    // Node 1's address refuses connections (bound, never listening) for the whole test.
    let (_refuser, unreachable) = support::refusing_address();
    let (mut slot, listener) = support::slots(1).pop().expect("one slot");
    slot.peers.push(unreachable);
    let mut cmd = support::node_command(&slot, "counter", Backend::Sigsegv);
    memlink_dsm::init::pass_listener(&mut cmd, &listener);
    cmd.env("MEMLINK_DSM_TEST_CONNECT_MS", "1500");
    let out = support::output_within(&mut cmd, support::DEADLINE);
    drop(listener);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(EXIT_DSM_ERROR), "stderr: {stderr}");
    assert!(
        stderr.contains(&unreachable.to_string()) && stderr.contains("node 1"),
        "the message names the peer: {stderr}"
    );
}
