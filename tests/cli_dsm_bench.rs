//! `memlink dsm bench --json`: a short run per manager (and both backends) prints one object
//! with every figure positive, bad arguments are refused; and `memlink dsm run --app jacobi`
//! at a chosen --size and --iters verifies.

use crate::cli_support::{json_of, memlink, stderr_of_failure, stdout_of};

const FIGURES: [&str; 14] = [
    "read_miss_us",
    "write_miss_us",
    "invalidation_us",
    "lock_free_us",
    "lock_contended_us",
    "barrier_us",
    "prefetch_8_pages_us",
    "tcp_4k_rtt_us",
    "local_fault_us",
    "connect_round_trip_us",
    "tcp_connect_us",
    "open_handshake_us",
    "admission_us",
    "admission_compute_us",
];

fn bench(nodes: &str, manager: &str, backend: &str) -> serde_json::Value {
    json_of(memlink().args([
        "dsm",
        "bench",
        "--iters",
        "12",
        "--json",
        "--nodes",
        nodes,
        "--manager",
        manager,
        "--backend",
        backend,
    ]))
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
    assert!(
        stderr_of_failure(memlink().args(["dsm", "bench", "--nodes", "1"])).contains("--nodes")
    );
    assert!(
        stderr_of_failure(memlink().args(["dsm", "bench", "--manager", "ring"])).contains("ring")
    );
}

#[test]
fn dsm_run_jacobi_takes_a_size_and_sweeps_and_verifies() {
    for (nodes, manager) in [("1", "central"), ("2", "dynamic"), ("3", "fixed")] {
        let v = json_of(memlink().args([
            "dsm",
            "run",
            "--app",
            "jacobi",
            "--json",
            "--size",
            "515",
            "--iters",
            "3",
            "--nodes",
            nodes,
            "--manager",
            manager,
        ]));
        assert_eq!(v["verified"], true, "{v}");
        assert!(v["steady_ms"].as_f64().is_some_and(|ms| ms > 0.0), "{v}");
        assert!(v["wall_ms"].as_f64() >= v["steady_ms"].as_f64(), "{v}");
    }
}

/// The table is for people: every figure in µs under a name in words ("write invalidating 1
/// read copy" on 2 nodes), no JSON key and no "us".
#[test]
fn dsm_bench_table_speaks_words_and_micro_seconds() {
    let stdout = stdout_of(memlink().args(["dsm", "bench", "--iters", "12", "--nodes", "2"]));
    for key in FIGURES {
        assert!(
            !stdout.contains(key),
            "raw key {key} in the table:\n{stdout}"
        );
    }
    assert!(!stdout.contains(" us"), "\"us\" in the table:\n{stdout}");
    let rows = stdout.lines().filter(|l| l.ends_with(" µs")).count();
    assert_eq!(rows, FIGURES.len(), "one µs row per figure:\n{stdout}");
    for words in [
        "write invalidating 1 read copy",
        "read miss",
        "raw TCP round trip",
    ] {
        assert!(stdout.contains(words), "{words:?} missing:\n{stdout}");
    }
}

/// `--suite eviction`: every class runs as set up (the prober checks the page written back
/// reads back intact), each figure positive with its ratio to the read miss of the same run;
/// `--suite hold`: six runs (true and false sharing, Δt 0, 100 µs, 1 ms) whose nodes wrote.
#[test]
fn dsm_bench_replacement_suites_report_ratios_to_their_baselines() {
    for manager in ["central", "dynamic"] {
        let v = json_of(memlink().args([
            "dsm",
            "bench",
            "--suite",
            "eviction",
            "--iters",
            "8",
            "--json",
            "--manager",
            manager,
        ]));
        assert_eq!(v["as_meant"], 1.0, "{v}");
        for class in [
            "dropped_copy",
            "passed_ownership",
            "handed_off",
            "written_back",
            "page_in",
        ] {
            assert!(
                v[format!("{class}_us")].as_f64().unwrap() > 0.0,
                "{class}: {v}"
            );
            assert!(
                v[format!("{class}_vs_read_miss")].as_f64().unwrap() > 0.0,
                "{class}: {v}"
            );
        }
    }
    let v = json_of(memlink().args([
        "dsm",
        "bench",
        "--suite",
        "hold",
        "--duration-ms",
        "30",
        "--json",
    ]));
    let runs = v["runs"].as_array().expect("runs");
    assert_eq!(runs.len(), 6, "{v}");
    for r in runs {
        let ops = r["ops_per_s_node0"].as_f64().unwrap() + r["ops_per_s_node1"].as_f64().unwrap();
        assert!(ops > 0.0, "{r}");
    }
    let v = json_of(memlink().args([
        "dsm",
        "bench",
        "--suite",
        "pager",
        "--file-mb",
        "2",
        "--json",
    ]));
    assert!(v["pager_vs_mmap"].as_f64().unwrap() > 0.0, "{v}");
    assert!(
        stderr_of_failure(memlink().args(["dsm", "bench", "--suite", "hold", "--nodes", "3"]))
            .contains("2 nodes")
    );
}
