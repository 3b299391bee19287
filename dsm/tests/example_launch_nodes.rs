//! The README's example of launching nodes from your own program
//! (`dsm/examples/launch_nodes.rs`) runs: its nodes, started with the launcher's building
//! blocks and configured with the builder, count exactly with a shared `DsmAtomic`.

use std::path::PathBuf;
use std::process::Command;

/// The example's executable, built by cargo for this profile (built here if the test run did
/// not build examples).
fn example() -> PathBuf {
    let me = std::env::current_exe().expect("own path");
    // target/<profile>/deps/<this test> -> target/<profile>/examples/launch_nodes
    let profile_dir = me
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>");
    let exe = profile_dir.join("examples").join("launch_nodes");
    let built = Command::new(env!("CARGO"))
        .args([
            "build",
            "--quiet",
            "-p",
            "memlink-dsm",
            "--example",
            "launch_nodes",
        ])
        .args(if cfg!(debug_assertions) {
            &[][..]
        } else {
            &["--release"][..]
        })
        .env(
            "CARGO_TARGET_DIR",
            profile_dir.parent().expect("target dir"),
        )
        .status()
        .expect("run cargo build");
    assert!(built.success(), "cargo build --example launch_nodes failed");
    assert!(exe.exists(), "{} was not built", exe.display());
    exe
}

#[test]
fn the_launch_nodes_example_counts_exactly() {
    let exe = example();
    for nodes in [1usize, 3] {
        let out = Command::new(&exe)
            .arg(nodes.to_string())
            .output()
            .expect("run launch_nodes");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{nodes} nodes: {stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let want = format!("expected {}", nodes * 1000);
        let counted = stdout
            .lines()
            .filter(|l| l.contains(&format!("counter {}, {want}", nodes * 1000)))
            .count();
        assert_eq!(counted, nodes, "every node counted all: {stdout}");
        assert!(stdout.trim_end().ends_with("verified: true"), "{stdout}");
    }
}
