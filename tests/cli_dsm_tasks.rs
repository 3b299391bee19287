//! `memlink dsm run --app nqueens|quicksort`: the task apps verify against a sequential run on
//! node processes, report per node what their schedulers did (tasks run, migrated in and out,
//! work requests and refusals, hints), and their flags are checked like every app's.

use std::process::Command;

use crate::cli_support::{json_of, memlink};

/// The sum of a task counter over the nodes of a run's JSON.
fn total(v: &serde_json::Value, counter: &str) -> u64 {
    v["tasks"]
        .as_array()
        .unwrap_or_else(|| panic!("no tasks in {v}"))
        .iter()
        .map(|n| {
            n[counter]
                .as_u64()
                .unwrap_or_else(|| panic!("{counter} in {v}"))
        })
        .sum()
}

#[test]
fn nqueens_counts_with_one_task_per_placement_on_every_node_count() {
    for (nodes, hints) in [("1", true), ("2", true), ("2", false)] {
        let mut cmd = memlink();
        cmd.args(["dsm", "run", "--nodes", nodes, "--app", "nqueens", "--json"])
            .args(["--size", "8"]);
        if !hints {
            cmd.arg("--no-hints");
        }
        let v = json_of(&mut cmd);
        assert_eq!(v["verified"], true, "{v}");
        assert_eq!(
            v["tasks"].as_array().unwrap().len(),
            nodes.parse::<usize>().unwrap()
        );
        // 8 x 8: 42 placements of the first two rows, each a task, each run once somewhere.
        assert_eq!(total(&v, "tasks_run"), 42, "{v}");
        assert_eq!(
            total(&v, "migrated_in"),
            total(&v, "migrated_out"),
            "every migration has two ends: {v}"
        );
        assert!(
            total(&v, "requests_refused") <= total(&v, "work_requests"),
            "{v}"
        );
    }
}

#[test]
fn quicksort_sorts_with_tasks_that_spawn_tasks() {
    let v = json_of(
        memlink()
            .args(["dsm", "run", "--nodes", "2", "--app", "quicksort", "--json"])
            .args(["--size", "50000", "--workers", "2"]),
    );
    assert_eq!(v["verified"], true, "{v}");
    // 50000 elements with a cutoff of 4096: at least 2 * 50000 / 4096 tasks beyond the root.
    assert!(total(&v, "tasks_run") >= 13, "{v}");
    // The table form ends with the verdict and shows the tasks table.
    let out = memlink()
        .args([
            "dsm",
            "run",
            "--nodes",
            "1",
            "--app",
            "quicksort",
            "--size",
            "3",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("tasks (all spawned on node 0)"), "{stdout}");
    assert!(stdout.trim_end().ends_with("verified: true"), "{stdout}");
}

#[test]
fn task_flags_are_checked_like_every_apps() {
    for (args, says) in [
        (
            &["--app", "counter", "--workers", "2"][..],
            "counter does not use --workers",
        ),
        (
            &["--app", "jacobi", "--no-hints"],
            "jacobi does not use --no-hints",
        ),
        (
            &["--app", "nqueens", "--iters", "3"],
            "nqueens does not use --iters",
        ),
        (
            &["--app", "quicksort", "--no-prefetch"],
            "quicksort does not use --no-prefetch",
        ),
        (&["--app", "nqueens", "--size", "17"], "1 to 16"),
        (&["--app", "jacobi", "--size", "20000"], "3 to 16384"),
        (&["--app", "nqueens", "--workers", "0"], "--workers"),
    ] {
        let out = memlink()
            .args(["dsm", "run", "--nodes", "1"])
            .args(args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
    // The apps that use them name the task apps.
    let out = memlink()
        .args(["dsm", "run", "--app", "sort", "--workers", "2"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("applies to nqueens, quicksort only"),
        "{stderr}"
    );
}

/// The launcher's nodes re-execute themselves with address-space randomisation off, so they
/// load the code at the same address and say nothing; nodes that keep it on (as
/// MEMLINK_DSM_KEEP_ASLR=1 asks) load it elsewhere, tell each other so in the handshake,
/// name the difference, move no task between them, and still verify.
#[test]
fn nodes_with_randomisation_on_name_the_difference_and_move_no_task() {
    let run = |keep: bool| {
        let mut cmd = memlink();
        cmd.args(["dsm", "run", "--nodes", "2", "--app", "nqueens", "--json"])
            .args(["--size", "8"]);
        if keep {
            cmd.env("MEMLINK_DSM_KEEP_ASLR", "1");
        }
        let out = cmd.output().expect("run memlink");
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(out.status.success(), "keep {keep}: {stdout} {stderr}");
        let v: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one JSON object");
        (v, stderr)
    };
    let (v, stderr) = run(false);
    assert_eq!(v["verified"], true, "{v}");
    assert!(!stderr.contains("another address"), "{stderr}");
    let (v, stderr) = run(true);
    assert_eq!(v["verified"], true, "{v}");
    for (me, peer) in [(0, 1), (1, 0)] {
        assert!(
            stderr.contains(&format!(
                "node {me}: node {peer} loaded the same binary at another address"
            )),
            "{stderr}"
        );
    }
    assert_eq!(
        total(&v, "migrated_in") + total(&v, "migrated_out"),
        0,
        "{v}"
    );
    assert_eq!(total(&v, "tasks_run"), 42, "{v}");
}

/// Two different builds (memlink, and a copy whose GNU build id is changed: what another
/// build would carry) as the two nodes of one cluster: they share pages (the app verifies)
/// and refuse tasks, each naming the other's binary as different.
#[test]
fn nodes_running_different_binaries_share_pages_but_not_tasks() {
    let dir = std::env::temp_dir().join(format!("memlink-cli-identity-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let other = dir.join("memlink-other");
    let mut bytes = std::fs::read(env!("CARGO_BIN_EXE_memlink")).unwrap();
    // The NT_GNU_BUILD_ID note: name size 4, type 3, "GNU\0", then the id.
    let at = bytes
        .windows(16)
        .position(|w| w[..4] == [4, 0, 0, 0] && w[8..] == [3, 0, 0, 0, b'G', b'N', b'U', 0])
        .expect("a build id note");
    bytes[at + 16] ^= 0xff;
    std::fs::write(&other, &bytes).unwrap();
    std::fs::set_permissions(&other, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let ports: Vec<std::net::TcpListener> = (0..2)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let peers: Vec<String> = ports
        .iter()
        .map(|l| l.local_addr().unwrap().to_string())
        .collect();
    drop(ports);
    let node = |exe: &std::path::Path, id: usize| {
        Command::new(exe)
            .args([
                "dsm",
                "node",
                "--id",
                &id.to_string(),
                "--listen",
                &peers[id],
            ])
            .args([
                "--peers",
                &peers.join(","),
                "--app",
                "nqueens",
                "--size",
                "8",
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let children = [
        node(std::path::Path::new(env!("CARGO_BIN_EXE_memlink")), 0),
        node(&other, 1),
    ];
    for (id, child) in children.into_iter().enumerate() {
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "node {id}: {stdout} {stderr}");
        assert!(stdout.contains("verified: true"), "node {id}: {stdout}");
        assert!(
            stdout.contains(&format!("node {id}: node {} runs another binary", 1 - id)),
            "node {id}: {stdout}"
        );
        assert!(
            stdout.contains("migrated in 0, out 0"),
            "node {id}: {stdout}"
        );
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// `memlink dsm scale-tasks` runs its three clusters per round and reports the speed-ups and
/// the work requests refused with hints and without, as ratios from the one run.
#[test]
fn scale_tasks_reports_speedups_and_refusals() {
    let v = json_of(memlink().args([
        "dsm",
        "scale-tasks",
        "--size",
        "9",
        "--rounds",
        "1",
        "--json",
    ]));
    for key in ["speedup_hints", "speedup_no_hints"] {
        assert!(v[key].as_f64().unwrap() > 0.0, "{key}: {v}");
    }
    for hints in ["hints", "no_hints"] {
        let requests = v[format!("requests_{hints}")].as_u64().unwrap();
        let refused = v[format!("refused_{hints}")].as_u64().unwrap();
        assert!(refused <= requests, "{v}");
    }
    assert_eq!(v["one_node_ms"].as_array().unwrap().len(), 1, "{v}");
}
