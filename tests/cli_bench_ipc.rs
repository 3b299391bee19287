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

/// "2.6 µs" -> 2600 (ns), as the table prints durations.
fn parse_duration_ns(text: &str) -> f64 {
    let (value, unit) = text.trim().split_once(' ').expect("a value and a unit");
    let value: f64 = value.parse().expect("a number");
    value
        * match unit {
            "ns" => 1.0,
            "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            other => panic!("unknown unit {other}"),
        }
}

/// The table's median round trip of `transport` at `size` (as printed, e.g. "64 KiB").
fn table_p50(stdout: &str, transport: &str, size: &str) -> f64 {
    let line = stdout
        .lines()
        .find(|l| {
            let mut words = l.split_whitespace();
            words.next() == Some(transport) && l.contains(&format!(" {size} "))
        })
        .unwrap_or_else(|| panic!("no row for {transport} {size}: {stdout}"));
    // transport, copies, size (2 words), wait, then p50 (2 words).
    let words: Vec<&str> = line.split_whitespace().collect();
    parse_duration_ns(&format!("{} {}", words[5], words[6]))
}

/// Checks that a demo's verdict agrees with the figures it printed: a demo that draws
/// ratios must have printed a steady floor and a loan figure its floor allows, and the
/// ratios must be the table's; a demo that distrusts its figures draws no ratio.
fn assert_demo_is_not_contradicted(stdout: &str) {
    let verdicts: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("verdict: "))
        .collect();
    assert_eq!(verdicts.len(), 1, "one verdict line: {stdout}");
    let ratios = stdout
        .lines()
        .find(|l| l.contains("relative to the loan channel"));
    if verdicts[0].contains("not trustworthy") {
        assert!(
            ratios.is_none(),
            "ratios drawn from distrusted figures: {stdout}"
        );
        return;
    }
    let ratios = ratios.unwrap_or_else(|| panic!("a trusted run draws ratios: {stdout}"));
    let floor = stdout
        .lines()
        .find(|l| l.starts_with("floor ("))
        .unwrap_or_else(|| panic!("no floor line: {stdout}"));
    let (_, figures) = floor.split_once("): ").unwrap();
    let (before, rest) = figures.split_once(" before the run, ").unwrap();
    let after = rest.trim_end_matches(" after it.");
    let (before, after) = (parse_duration_ns(before), parse_duration_ns(after));
    assert!(
        before.max(after) <= 2.0 * before.min(after),
        "ratios drawn though the floor moved: {stdout}"
    );
    let loan = table_p50(stdout, "loan", "64 KiB");
    assert!(
        loan <= 30.0 * before.max(after),
        "ratios drawn though loan is far above its floor: {stdout}"
    );
    for pair in ratios
        .split(": ")
        .nth(1)
        .unwrap()
        .trim_end_matches('.')
        .split(", ")
    {
        let (transport, ratio) = pair.split_once(' ').unwrap();
        let ratio: f64 = ratio.trim_end_matches('x').parse().unwrap();
        let table = table_p50(stdout, transport, "64 KiB") / loan;
        // The table's durations are rounded to 2-3 digits and the ratio to one decimal.
        assert!(
            (ratio - table).abs() <= 0.05 + 0.05 * table,
            "{transport}: printed {ratio}x, the table says {table:.2}x: {stdout}"
        );
    }
}

#[test]
fn two_demos_at_once_draw_no_conclusion_their_own_figures_contradict() {
    // Two demos side by side oversubscribe a small machine, as in the run that printed
    // "buffered 0.0x" from a loan figure of 8 ms.
    let spawn = || {
        Command::new(env!("CARGO_BIN_EXE_memlink"))
            .args(["demo", "--quick"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("the memlink binary runs")
    };
    let (first, second) = (spawn(), spawn());
    for child in [first, second] {
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "demo failed: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains("verified"), "{stdout}");
        assert!(stdout.contains("channels wait by "), "{stdout}");
        assert_demo_is_not_contradicted(&stdout);
    }
}

#[test]
fn a_verdict_that_ignores_its_floor_is_caught() {
    // The check above, shown the kind of output the demo printed before it had a verdict
    // (and a made-up trusted verdict over a contradicted loan figure), refuses it.
    let table = "transport    copies    size  wait    rtt p50    rtt p99\n\
                 loan              0  64 KiB  spin    8.00 ms   9.00 ms\n\
                 buffered          2  64 KiB  spin   100.0 µs  200.0 µs\n";
    let old = format!(
        "{table}at 64 KiB, round trip relative to the loan channel (zero copies): buffered 0.0x.\n"
    );
    assert!(std::panic::catch_unwind(|| assert_demo_is_not_contradicted(&old)).is_err());
    let lying = format!(
        "{table}floor (cache-line ping-pong, spin): 400 ns before the run, 420 ns after it.\n\
         verdict: the floor held and every channel's figures agree with it.\n\
         at 64 KiB, median round trip relative to the loan channel (zero copies): buffered 0.0x.\n"
    );
    assert!(std::panic::catch_unwind(|| assert_demo_is_not_contradicted(&lying)).is_err());
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
