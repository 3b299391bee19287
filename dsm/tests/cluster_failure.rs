//! Failures across node processes: a node killed with SIGKILL mid-run makes the others fail
//! with NodeLost within seconds; garbage sent to a node's port does not hurt the node; a node
//! whose peer never comes up says which one and exits non-zero.

mod support;

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use memlink_dsm::apps::{EXIT_DSM_ERROR, EXIT_NODE_LOST};
use memlink_dsm::cluster::Dsm;
use memlink_dsm::handles::DsmBox;
use memlink_dsm::{Backend, DsmError};
use support::NodeProcess;

/// Increments a shared counter under a lock forever (until the cluster fails).
fn forever(dsm: &Dsm) -> Result<bool, DsmError> {
    if dsm.id() == 0 {
        let counter = DsmBox::new(dsm, 0u64)?;
        dsm.publish(1, counter.offset() as u64);
    }
    dsm.barrier(1)?;
    let counter = DsmBox::<u64>::attach(dsm, dsm.lookup(1) as usize)?;
    println!("ready");
    let _ = std::io::stdout().flush();
    loop {
        dsm.lock(1)?;
        counter.set(counter.get() + 1);
        dsm.unlock(1)?;
    }
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
    support::node_entry(&[("forever", forever), ("after_stdin", after_stdin)]);
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
        // Node 2, or a survivor that already left because of it: either way a lost node.
        assert!(
            stderr.contains("lost node") || stderr.contains("node lost"),
            "node {id}: {stderr}"
        );
    }
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
