//! `memlink dsm bench --json`: a short run per manager (and both backends on one of them)
//! prints one object with every figure positive, and bad arguments are refused.

use std::process::Command;

fn memlink() -> Command {
    Command::new(env!("CARGO_BIN_EXE_memlink"))
}

const FIGURES: [&str; 8] = [
    "read_miss_us",
    "write_miss_us",
    "invalidation_us",
    "lock_free_us",
    "lock_contended_us",
    "barrier_us",
    "tcp_4k_rtt_us",
    "local_fault_us",
];

fn bench(nodes: &str, manager: &str, backend: &str) -> serde_json::Value {
    let out = memlink()
        .args(["dsm", "bench", "--iters", "12", "--json"])
        .args(["--nodes", nodes, "--manager", manager, "--backend", backend])
        .output()
        .expect("run memlink");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{manager}/{backend}: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim()).expect("one JSON object")
}

#[test]
fn dsm_bench_json_has_every_figure_positive() {
    let runs = [
        ("2", "central", "sigsegv"),
        ("3", "fixed", "uffd"),
        ("2", "dynamic", "uffd"),
        ("3", "dynamic", "sigsegv"),
    ];
    for (nodes, manager, backend) in runs {
        let v = bench(nodes, manager, backend);
        for key in FIGURES {
            let us = v[key]
                .as_f64()
                .unwrap_or_else(|| panic!("{key} missing or not a number in {v}"));
            assert!(us > 0.0, "{key} = {us} in {v}");
        }
        assert_eq!(v["manager"], manager);
        assert_eq!(v["backend"], backend);
        assert_eq!(v["nodes"].to_string(), nodes);
        assert_eq!(
            v["invalidated_copies"].as_u64(),
            Some(nodes.parse::<u64>().unwrap() - 1)
        );
    }
}

#[test]
fn dsm_bench_refuses_a_single_node_and_an_unknown_manager() {
    let out = memlink()
        .args(["dsm", "bench", "--nodes", "1"])
        .output()
        .expect("run memlink");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--nodes"));
    let out = memlink()
        .args(["dsm", "bench", "--manager", "ring"])
        .output()
        .expect("run memlink");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("ring"));
}
