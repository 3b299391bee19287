//! memlink's DSM across three hosts on a real network stack: `scripts/netns-cluster.sh`
//! makes each host a network namespace (veth pairs to a bridge, addresses only inside them)
//! and runs one node per host: every app verified (nodes started --from-env through the
//! rendezvous, and by host name), a host cut off mid-run named by both survivors as lost
//! within the 10 s keepalive bound, and every app verified again over links with 1 ms delay
//! and 1 % loss each way (tc netem, or the user-space link emulator on kernels without it).
//! Skips with a loud message only when it cannot make namespaces (not root, no iproute2).

use std::path::{Path, PathBuf};
use std::process::Command;

/// target/<profile>/examples/link_emulator, built now if it is not yet.
fn link_emulator() -> PathBuf {
    let exe = std::env::current_exe().expect("own path");
    // target/<profile>/deps/<this test> -> target/<profile>/examples/link_emulator
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>");
    let emulator = profile_dir.join("examples/link_emulator");
    if !emulator.exists() {
        let mut build = Command::new(env!("CARGO"));
        build.args([
            "build",
            "-p",
            "memlink-test-support",
            "--example",
            "link_emulator",
        ]);
        if profile_dir.ends_with("release") {
            build.arg("--release");
        }
        let status = build.status().expect("run cargo");
        assert!(status.success(), "cannot build the link emulator");
    }
    emulator
}

#[test]
fn three_hosts_verify_survive_a_cut_link_and_a_lossy_one() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/netns-cluster.sh");
    let out = Command::new(&script)
        .arg(env!("CARGO_BIN_EXE_memlink"))
        .arg("test")
        .arg(link_emulator())
        .output()
        .expect("run scripts/netns-cluster.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.code() == Some(77) {
        eprintln!(
            "\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n\
             SKIPPED three_hosts_verify_survive_a_cut_link_and_a_lossy_one: {}\
             !!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n",
            stderr
        );
        return;
    }
    assert!(out.status.success(), "{stdout}\n{stderr}");
    print!("{stdout}");
    for phase in ["plain", "slow"] {
        for app in ["counter", "jacobi", "matmul", "sort"] {
            let line = format!("{phase}-{app}: verified on 3 hosts");
            assert!(stdout.contains(&line), "missing {line:?}:\n{stdout}");
        }
    }
    assert!(stdout.contains("names: verified on 3 hosts"), "{stdout}");
    // Both survivors report the cut host's node, node 2, within the bound.
    for node in 0..2 {
        let cut = format!("cut: node {node} reported lost node 2 within");
        assert!(stdout.contains(&cut), "missing {cut:?}:\n{stdout}");
    }
}
