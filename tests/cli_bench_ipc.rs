//! `memlink bench ipc` and `memlink demo` as a user runs them: the built binary, real
//! processes, the JSON and plot checked, bad arguments refused with a message.

use std::path::PathBuf;
use std::process::{Command, Output};

fn memlink(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_memlink"))
        .args(args)
        .output()
        .expect("the memlink binary runs")
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("memlink-cli-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

const KEYS: [&str; 8] = [
    "transport",
    "copies",
    "size_bytes",
    "wait",
    "rtt_ns_p50",
    "rtt_ns_p99",
    "msgs_per_s",
    "gbps",
];

#[test]
fn bench_ipc_writes_json_with_exactly_the_documented_keys_and_a_plot() {
    let dir = scratch("json");
    let json = dir.join("r.json");
    let svg = dir.join("r.svg");
    let out = memlink(&[
        "bench",
        "ipc",
        "--sizes",
        "8,4K",
        "--iters",
        "40",
        "--transports",
        "pipe,unix-socket,futex,cache-line",
        "--json",
        json.to_str().unwrap(),
        "--plot",
        svg.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "bench failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let rows = rows.as_array().expect("a JSON array");
    // pipe and socket at two sizes, each floor once at 8 bytes.
    assert_eq!(rows.len(), 6);
    for row in rows {
        let obj = row.as_object().expect("an object per row");
        let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
        keys.sort_unstable();
        let mut want = KEYS.to_vec();
        want.sort_unstable();
        assert_eq!(keys, want);
        let transport = obj["transport"].as_str().unwrap();
        let size = obj["size_bytes"].as_u64().unwrap();
        let p50 = obj["rtt_ns_p50"].as_u64().unwrap();
        let p99 = obj["rtt_ns_p99"].as_u64().unwrap();
        let rate = obj["msgs_per_s"].as_f64().unwrap();
        let gbps = obj["gbps"].as_f64().unwrap();
        assert!(p50 > 0 && p99 >= p50, "{row}");
        assert!(rate > 0.0, "{row}");
        assert!(
            (gbps - rate * size as f64 / 1e9).abs() <= 1e-9 * rate.max(1.0),
            "{row}"
        );
        match transport {
            "pipe" | "unix-socket" => {
                assert!(size == 8 || size == 4096);
                assert_eq!(obj["copies"], 2);
                assert_eq!(obj["wait"], "block");
            }
            "futex" | "cache-line" => {
                assert_eq!(size, 8);
                assert_eq!(obj["copies"], 0);
            }
            other => panic!("unexpected transport {other}"),
        }
    }
    let plot = std::fs::read_to_string(&svg).unwrap();
    assert!(plot.starts_with("<svg"));
    for label in [
        "pipe (2 copies, block)",
        "unix-socket (2 copies, block)",
        "message size",
    ] {
        assert!(plot.contains(label), "the plot lacks {label:?}");
    }
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("rtt p50") && table.contains("4 KiB"));
    std::fs::remove_dir_all(&dir).unwrap();
}

fn assert_refused(args: &[&str], expect: &str) {
    let out = memlink(args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{args:?} was accepted");
    assert!(
        err.contains(expect),
        "{args:?}: stderr {err:?} lacks {expect:?}"
    );
    assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
}

#[test]
fn bad_arguments_exit_non_zero_with_a_clear_message() {
    assert_refused(&["bench", "ipc", "--sizes", "8,4X"], "unknown suffix");
    assert_refused(&["bench", "ipc", "--sizes", "0"], "is zero");
    assert_refused(&["bench", "ipc", "--sizes", "0K"], "is zero");
    assert_refused(
        &["bench", "ipc", "--sizes", "32M"],
        "above the loan slot size",
    );
    assert_refused(&["bench", "ipc", "--sizes", "8,,64"], "empty size");
    assert_refused(&["bench", "ipc", "--sizes", "4"], "below 8 bytes");
    assert_refused(&["bench", "ipc", "--iters", "0"], "--iters");
    assert_refused(&["bench", "ipc", "--iters", "999999999999"], "--iters");
    assert_refused(
        &["bench", "ipc", "--transports", "carrier-pigeon"],
        "unknown transport",
    );
    assert_refused(&["bench", "ipc", "--wait", "sometimes"], "invalid value");
    assert_refused(&["bench", "ipc", "--plot", "out.png"], ".svg");
    assert_refused(&["bench", "ipc", "--pin", "0"], "two different CPU numbers");
    assert_refused(
        &["bench", "ipc", "--pin", "1,1"],
        "two different CPU numbers",
    );
    assert_refused(
        &["bench", "ipc", "--sizes", "100", "--transports", "sync"],
        "powers of two",
    );
}

#[cfg(not(feature = "iceoryx2"))]
#[test]
fn iceoryx2_without_the_feature_says_how_to_get_it() {
    assert_refused(
        &["bench", "ipc", "--transports", "iceoryx2"],
        "--features iceoryx2",
    );
}

#[test]
fn the_demo_runs_real_processes_and_verifies_every_message() {
    let out = memlink(&["demo", "--quick"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed: {}{}",
        stdout,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("verified"), "{stdout}");
    for column in [
        "transport",
        "copies",
        "size",
        "rtt p50",
        "rtt p99",
        "msgs/s",
        "GB/s",
    ] {
        assert!(
            stdout.contains(column),
            "the table lacks {column}: {stdout}"
        );
    }
    for transport in ["loan", "sync", "buffered", "pipe", "unix-socket"] {
        assert!(stdout.contains(transport), "{stdout}");
    }
}

#[test]
fn pin_names_the_cpu_that_cannot_be_used() {
    // CPU 1000 is below CPU_SETSIZE but exists on no machine this runs on.
    let out = memlink(&["bench", "ipc", "--pin", "0,1000", "--iters", "1"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "--pin 0,1000 was accepted");
    assert!(err.contains("CPU 1000"), "{err}");
    assert!(!err.contains("CPU 0 "), "blames CPU 0: {err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn unwritable_json_and_plot_paths_are_refused_before_the_run() {
    let dir = scratch("unwritable");
    let missing = dir.join("no-such-folder");
    for (flag, name) in [("--json", "r.json"), ("--plot", "r.svg")] {
        let path = missing.join(name);
        let path = path.to_str().unwrap();
        let out = memlink(&[
            "bench",
            "ipc",
            "--sizes",
            "8",
            "--iters",
            "20",
            "--transports",
            "pipe",
            flag,
            path,
        ]);
        let err = String::from_utf8_lossy(&out.stderr);
        let table = String::from_utf8_lossy(&out.stdout);
        assert!(!out.status.success(), "{flag} {path} was accepted");
        assert!(err.contains(flag) && err.contains(path), "{err}");
        // Refused up front: nothing was measured, so no table was printed.
        assert!(!table.contains("rtt p50"), "{flag}: ran first: {table}");
    }
    // A writable path is only probed: nothing is left behind when the run is refused
    // later (here by --pin, checked after the paths).
    let json = dir.join("probe.json");
    let out = memlink(&[
        "bench",
        "ipc",
        "--json",
        json.to_str().unwrap(),
        "--pin",
        "0,1000",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--pin"));
    assert!(!json.exists(), "the probe left {}", json.display());
    std::fs::remove_dir_all(&dir).unwrap();
}
