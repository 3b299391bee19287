//! `memlink dsm`: a local cluster run with --json, bad arguments, and an unreachable peer.

use std::process::Command;

fn memlink() -> Command {
    Command::new(env!("CARGO_BIN_EXE_memlink"))
}

#[test]
fn dsm_run_json_prints_one_verified_object() {
    for backend in ["sigsegv", "uffd"] {
        let out = memlink()
            .args(["dsm", "run", "--nodes", "2", "--app", "counter", "--json"])
            .args(["--backend", backend])
            .output()
            .expect("run memlink");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{backend}: {stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one JSON object");
        for key in [
            "app",
            "nodes",
            "manager",
            "backend",
            "verified",
            "wall_ms",
            "read_faults",
            "write_faults",
            "messages",
            "bytes",
        ] {
            assert!(v.get(key).is_some(), "missing {key} in {v}");
        }
        assert_eq!(v["app"], "counter");
        assert_eq!(v["nodes"], 2);
        assert_eq!(v["backend"], backend);
        assert_eq!(v["verified"], true);
        assert!(v["messages"].as_u64().unwrap() > 0);
        assert!(v["write_faults"].as_u64().unwrap() > 0);
    }
}

#[test]
fn dsm_run_table_ends_with_verified() {
    let out = memlink()
        .args(["dsm", "run", "--nodes", "2", "--app", "matmul"])
        .output()
        .expect("run memlink");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.trim_end().ends_with("verified: true"), "{stdout}");
}

#[test]
fn bad_arguments_are_refused_with_a_message() {
    for args in [
        &["dsm", "run", "--nodes", "0", "--app", "counter"][..],
        &["dsm", "run", "--app", "quicksort"],
        &["dsm", "run", "--app", "sort", "--backend", "kqueue"],
        &[
            "dsm",
            "node",
            "--id",
            "7",
            "--listen",
            "127.0.0.1:1",
            "--peers",
            "127.0.0.1:1",
            "--app",
            "sort",
        ],
        &[
            "dsm",
            "node",
            "--id",
            "0",
            "--listen",
            "nowhere",
            "--peers",
            "127.0.0.1:1",
            "--app",
            "sort",
        ],
    ] {
        let out = memlink().args(args).output().expect("run memlink");
        assert!(!out.status.success(), "{args:?} succeeded");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.trim().is_empty(), "{args:?}: no message");
    }
}

#[test]
fn an_unreachable_peer_is_named() {
    // A port that was free a moment ago: nobody listens on it.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let me = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let peers = format!("{dead},{me}");
    let out = memlink()
        .args([
            "dsm",
            "node",
            "--id",
            "1",
            "--listen",
            &me.to_string(),
            "--peers",
            &peers,
        ])
        .args(["--app", "counter", "--connect-timeout", "1"])
        .output()
        .expect("run memlink");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("node 0") && stderr.contains(&dead.to_string()),
        "{stderr}"
    );
}
