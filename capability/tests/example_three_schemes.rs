//! Runs the `three_schemes` example (built by `cargo test` with the other targets) and
//! checks that every scheme worked across its two processes.

#![cfg(not(memlink_loom))]

use std::path::PathBuf;
use std::process::Command;

fn example_binary() -> Option<PathBuf> {
    // target/<profile>/deps/<this test> -> target/<profile>/examples/three_schemes, which
    // `cargo build --examples` writes (cargo test alone leaves only hashed copies).
    let exe = std::env::current_exe().ok()?;
    let path = exe
        .parent()?
        .parent()?
        .join("examples")
        .join("three_schemes");
    path.exists().then_some(path)
}

#[test]
fn three_schemes_example_runs() {
    let Some(exe) = example_binary() else {
        panic!(
            "examples/three_schemes is not built; run `cargo build -p memlink-capability --examples` first (scripts/test-all.sh does)"
        );
    };
    let out = Command::new(exe).output().expect("run example");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "example failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("walked the server's pointers: [10, 20, 30, 40, 50]"),
        "{stdout}"
    );
    assert!(stdout.contains("holds 0xc0ffee"), "{stdout}");
    assert!(
        stdout.contains("rights r-g, counter = 42, writable: false"),
        "{stdout}"
    );
    assert!(
        stdout.contains("acquire after revocation: Revoked"),
        "{stdout}"
    );
}
