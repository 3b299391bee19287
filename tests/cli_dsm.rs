//! `memlink dsm`: a local cluster run with --json, bad arguments, and an unreachable peer.

use crate::cli_support::{json_of, memlink};

#[test]
fn dsm_run_json_prints_one_verified_object() {
    for backend in ["sigsegv", "uffd"] {
        let v = json_of(
            memlink()
                .args(["dsm", "run", "--nodes", "2", "--app", "counter", "--json"])
                .args(["--backend", backend]),
        );
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

/// jacobi with rows of a whole page (512 doubles) on 3 nodes, the middle one with two
/// neighbours: with each sweep's edge rows prefetched in one round (the default) and faulted
/// in one at a time (--no-prefetch), with both backends, the grid checks bit for bit.
#[test]
fn dsm_run_jacobi_verifies_with_and_without_prefetch() {
    for backend in ["sigsegv", "uffd"] {
        for prefetch in [true, false] {
            let mut cmd = memlink();
            cmd.args(["dsm", "run", "--nodes", "3", "--app", "jacobi", "--json"])
                .args(["--size", "512", "--iters", "20", "--backend", backend]);
            if !prefetch {
                cmd.arg("--no-prefetch");
            }
            let what = format!("{backend}, prefetch {prefetch}");
            let v = json_of(&mut cmd);
            assert_eq!(v["verified"], true, "{what}: {v}");
            assert!(v["read_faults"].as_u64().unwrap() > 0, "{what}: {v}");
            assert!(v["steady_ms"].as_f64().is_some(), "{what}: {v}");
        }
    }
}

/// `memlink dsm scale` runs 1 node, 2 nodes with prefetch and 2 nodes with faults only in
/// each round, every grid verified, and reports each steady time and the speed-ups; it refuses
/// 1 node to compare with and zero rounds.
#[test]
fn dsm_scale_reports_every_run_and_the_speedups() {
    let v = json_of(
        memlink()
            .args(["dsm", "scale", "--nodes", "2", "--size", "512"])
            .args(["--iters", "4", "--rounds", "2", "--json"]),
    );
    for key in ["one_node_ms", "prefetch_ms", "faults_only_ms"] {
        let runs = v[key].as_array().unwrap_or_else(|| panic!("{key} in {v}"));
        assert_eq!(runs.len(), 2, "{key}: one steady time per round in {v}");
        assert!(
            runs.iter().all(|ms| ms.as_f64().is_some_and(|ms| ms > 0.0)),
            "{v}"
        );
    }
    for key in ["speedup_prefetch", "speedup_faults_only"] {
        assert!(v[key].as_f64().is_some_and(|x| x > 0.0), "{key} in {v}");
    }
    assert_eq!(v["nodes"], 2);
    for bad in [["--nodes", "1"], ["--rounds", "0"]] {
        let out = memlink()
            .args(["dsm", "scale"])
            .args(bad)
            .output()
            .expect("run memlink");
        assert_eq!(out.status.code(), Some(2), "{bad:?} should be refused");
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

/// matmul on 3 nodes with 16 KiB each (4 pages of the 7 it touches) and sort with 32 KiB
/// (8 of 17) and a Δt hold: both verify, and the eviction counters of every node come back.
#[test]
fn dsm_run_under_a_memory_budget_verifies_and_reports_evictions() {
    let v = json_of(memlink().args([
        "dsm",
        "run",
        "--nodes",
        "3",
        "--app",
        "matmul",
        "--memory-budget",
        "16K",
        "--json",
    ]));
    assert_eq!(v["verified"], true, "{v}");
    assert_eq!(v["memory_budget"], 16384, "{v}");
    let nodes = v["evictions"].as_array().expect("evictions per node");
    assert_eq!(nodes.len(), 3, "{v}");
    let total: u64 = nodes
        .iter()
        .flat_map(|n| {
            [
                "dropped_copies",
                "passed_ownership",
                "handed_off",
                "written_back",
            ]
            .map(|k| n[k].as_u64().unwrap())
        })
        .sum();
    assert!(total > 0, "nothing evicted: {v}");
    let out = memlink()
        .args(["dsm", "run", "--nodes", "3", "--app", "sort"])
        .args(["--memory-budget", "32K", "--hold-us", "100"])
        .output()
        .expect("run memlink");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("page replacement (memory budget 32 KiB"),
        "{stdout}"
    );
    assert!(stdout.trim_end().ends_with("verified: true"), "{stdout}");
}

/// wordcount on 3 nodes with 256 KiB each counts a 4 MiB file through the file pager and
/// verifies against a sequential count; what it lacks or does not use is refused by name.
#[test]
fn dsm_run_wordcount_counts_a_file_larger_than_the_budgets() {
    let dir = std::env::temp_dir().join(format!("memlink-cli-wordcount-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("words.txt");
    let mut text = Vec::new();
    let mut i = 0u64;
    while text.len() < 4 << 20 {
        i += 1;
        text.extend_from_slice(format!("word{} ", i * 7919 % 1000).as_bytes());
        if i % 11 == 0 {
            text.push(b'\n');
        }
    }
    std::fs::write(&file, &text).unwrap();
    let v = json_of(
        memlink()
            .args(["dsm", "run", "--nodes", "3", "--app", "wordcount", "--json"])
            .args(["--memory-budget", "256K", "--file"])
            .arg(&file),
    );
    assert_eq!(v["verified"], true, "{v}");
    let dropped: u64 = v["evictions"]
        .as_array()
        .expect("evictions")
        .iter()
        .map(|n| n["dropped_copies"].as_u64().unwrap())
        .sum();
    assert!(
        dropped > 0,
        "4 MiB through 256 KiB budgets dropped no copy: {v}"
    );
    for (args, says) in [
        (
            &["--app", "wordcount", "--memory-budget", "1M"][..],
            "--file",
        ),
        (
            &["--app", "wordcount", "--file", "/etc/hostname"],
            "--memory-budget",
        ),
        (&["--app", "sort", "--file", "/etc/hostname"], "--file"),
    ] {
        let out = memlink().args(["dsm", "run"]).args(args).output().unwrap();
        assert!(!out.status.success(), "{args:?} succeeded");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn bad_arguments_are_refused_with_a_message() {
    for args in [
        &["dsm", "run", "--nodes", "0", "--app", "counter"][..],
        &["dsm", "run", "--app", "qsort"],
        &["dsm", "run", "--app", "sort", "--backend", "kqueue"],
        &["dsm", "run", "--app", "sort", "--memory-budget", "8K"],
        &["dsm", "run", "--app", "sort", "--memory-budget", "3X"],
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
    // Node 0's address refuses connections for the whole test (bound, never listening), and
    // node 1 inherits its listener from here: no port is released and bound again, so no
    // other process can take either meanwhile.
    let (_refuser, dead) = refusing_address();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let me = listener.local_addr().unwrap();
    let peers = format!("{dead},{me}");
    let mut cmd = memlink();
    memlink_dsm::init::pass_listener(&mut cmd, &listener);
    let out = cmd
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

/// An address on 127.0.0.1 that refuses connections for as long as the returned socket lives:
/// a TCP socket bound to a kernel-chosen port that never listens.
fn refusing_address() -> (std::os::fd::OwnedFd, std::net::SocketAddr) {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    // SAFETY: socket has no memory preconditions.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
    // SAFETY: `fd` is a fresh socket that nothing else owns.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: an all-zero sockaddr_in is a valid value; the fields are set below.
    let mut addr: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    addr.sin_family = libc::AF_INET as libc::sa_family_t;
    addr.sin_addr.s_addr = u32::from(std::net::Ipv4Addr::LOCALHOST).to_be();
    let mut len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: `addr` is a live sockaddr_in of `len` bytes.
    let rc = unsafe { libc::bind(owned.as_raw_fd(), (&raw const addr).cast(), len) };
    assert_eq!(rc, 0, "bind: {}", std::io::Error::last_os_error());
    // SAFETY: `addr` and `len` are live out-parameters of the sizes given.
    let rc = unsafe { libc::getsockname(owned.as_raw_fd(), (&raw mut addr).cast(), &mut len) };
    assert_eq!(rc, 0, "getsockname: {}", std::io::Error::last_os_error());
    let port = u16::from_be(addr.sin_port);
    (owned, std::net::SocketAddr::from(([127, 0, 0, 1], port)))
}

/// The capabilities demo on 4 nodes: every step is checked and printed (on stderr), and a
/// write beyond the rights and every access after the revocation are refused.
#[test]
fn dsm_run_capabilities_checks_and_prints_every_step() {
    let out = memlink()
        .args(["dsm", "run", "--nodes", "4", "--app", "capabilities"])
        .output()
        .expect("run memlink");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}{stderr}");
    for step in [
        "node 0: minted the table: ok",
        "node 2: granted node 3 a read-only copy: ok",
        "node 3: a write beyond the rights is refused by the protocol: ok",
        "node 1: every fault after the revocation is refused: ok",
    ] {
        assert!(stderr.contains(step), "{step:?} missing: {stderr}");
    }
    assert!(!stderr.contains("FAILED"), "{stderr}");
    assert!(stdout.trim_end().ends_with("verified: true"), "{stdout}");
}
