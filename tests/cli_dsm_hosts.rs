//! `memlink dsm node` with addresses as people and launchers give them: host names in
//! --listen and --peers (resolved once, an unknown host named), spaces after commas, a
//! duplicate peer refused at once, a --listen port in use named; and --from-env with a PMI
//! launcher's variables, the nodes meeting at node 0's rendezvous.

use std::net::TcpListener;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::cli_support::text;
use memlink_dsm::init::{bind_slots, pass_listener};

fn memlink() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_memlink"));
    // The test's own environment may come from a launcher: the nodes must not see it.
    for var in ["OMPI_COMM_WORLD_RANK", "PMI_RANK", "SLURM_PROCID"] {
        cmd.env_remove(var);
    }
    cmd
}

/// Two nodes that name each other `localhost:<port>` (one list written with a space after
/// the comma) run counter to a verified end.
#[test]
fn host_names_and_spaces_in_peers_work() {
    let slots = bind_slots(2).unwrap();
    let peers = slots
        .iter()
        .map(|(s, _)| format!("localhost:{}", s.listen.port()))
        .collect::<Vec<_>>()
        .join(", ");
    let children: Vec<_> = slots
        .iter()
        .map(|(slot, listener)| {
            let mut cmd = memlink();
            cmd.args(["dsm", "node", "--id", &slot.id.to_string()])
                .args(["--listen", &format!("localhost:{}", slot.listen.port())])
                .args(["--peers", &peers, "--app", "counter"]);
            pass_listener(&mut cmd, listener);
            cmd.stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    drop(slots);
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", text(&out));
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("verified: true"),
            "{}",
            text(&out)
        );
    }
}

/// Refused at once, with the reason: an unknown host (named), a duplicate peer (both node
/// ids named, no wait for a timeout), an address without a port.
#[test]
fn bad_peer_lists_are_refused_at_once() {
    for (peers, says) in [
        (
            "127.0.0.1:7700, no-such-host.invalid:7701",
            "cannot resolve host \"no-such-host.invalid\"",
        ),
        (
            "127.0.0.1:7700,localhost:7700",
            "nodes 0 and 1 have the same address 127.0.0.1:7700",
        ),
        ("127.0.0.1:7700,10.0.0.1", "no :port"),
    ] {
        let started = Instant::now();
        let out = memlink()
            .args(["dsm", "node", "--id", "0", "--listen", "127.0.0.1:0"])
            .args([
                "--peers",
                peers,
                "--app",
                "counter",
                "--connect-timeout",
                "60",
            ])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{peers}: {}", text(&out));
        assert!(text(&out).contains(says), "{peers}: {}", text(&out));
        // Refused before any connection attempt: far below the 60 s connect timeout.
        assert!(started.elapsed() < Duration::from_secs(30), "{peers}");
    }
}

/// A --listen port another process holds: the error names the address.
#[test]
fn a_listen_port_in_use_is_named() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let other = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let out = memlink()
        .args(["dsm", "node", "--id", "0", "--listen", &addr.to_string()])
        .args(["--peers", &format!("{addr},{other}"), "--app", "counter"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "{}", text(&out));
    let all = text(&out);
    assert!(all.contains(&format!("cannot listen on {addr}")), "{all}");
    assert!(all.contains("another process uses that port"), "{all}");
}

/// --from-env without a launcher's variables says what is missing; --coordinator without
/// --from-env and --from-env with --peers are refused by the argument parser.
#[test]
fn from_env_needs_a_launcher() {
    let out = memlink()
        .args([
            "dsm",
            "node",
            "--from-env",
            "--coordinator",
            "127.0.0.1:7700",
        ])
        .args(["--app", "counter"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("OMPI_COMM_WORLD_RANK"),
        "{}",
        text(&out)
    );
    let out = memlink()
        .args(["dsm", "node", "--from-env", "--peers", "127.0.0.1:1"])
        .args(["--app", "counter"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let out = memlink()
        .args(["dsm", "node", "--id", "0", "--listen", "127.0.0.1:0"])
        .args(["--peers", "127.0.0.1:1", "--coordinator", "127.0.0.1:1"])
        .args(["--app", "counter"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("--from-env"), "{}", text(&out));
}

/// Three processes with PMI_RANK / PMI_SIZE (as MPICH's mpiexec sets them) and one
/// --coordinator: node 0 listens there (on a listener this test bound and hands it), the
/// others announce kernel-chosen ports, and jacobi verifies on every node.
#[test]
fn pmi_ranks_meet_at_the_coordinator_and_verify() {
    let coordinator = TcpListener::bind("127.0.0.1:0").unwrap();
    let at = coordinator.local_addr().unwrap();
    let children: Vec<_> = (0..3)
        .map(|rank| {
            let mut cmd = memlink();
            cmd.args([
                "dsm",
                "node",
                "--from-env",
                "--coordinator",
                &at.to_string(),
            ])
            .args(["--app", "jacobi", "--size", "64", "--iters", "10"])
            .env("PMI_RANK", rank.to_string())
            .env("PMI_SIZE", "3");
            if rank == 0 {
                cmd.args(["--listen", &at.to_string()]);
                pass_listener(&mut cmd, &coordinator);
            } else {
                cmd.args(["--listen", "127.0.0.1:0"]);
            }
            cmd.stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    drop(coordinator);
    for (rank, child) in children.into_iter().enumerate() {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "rank {rank}: {}", text(&out));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains(&format!("node {rank}: jacobi")),
            "{}",
            text(&out)
        );
        assert!(stdout.contains("verified: true"), "{}", text(&out));
    }
}
