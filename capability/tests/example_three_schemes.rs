//! Runs the `three_schemes` example (built by `cargo test` with the other targets) and
//! checks that every scheme worked across its two processes.

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

/// Runs the example with `args` and returns its stderr, checking it failed.
fn failing_run(args: &[&str]) -> String {
    let exe = example_binary().expect("examples/three_schemes is built");
    let out = Command::new(exe).args(args).output().expect("run example");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{args:?} succeeded: {stderr}");
    stderr
}

#[test]
fn errors_are_printed_for_people_with_the_path_they_concern() {
    // A path longer than a unix socket address: an I/O error that must name the path.
    let long = format!("/tmp/{}.sock", "x".repeat(200));
    for mode in ["connect", "serve"] {
        let stderr = failing_run(&[mode, &long]);
        assert!(stderr.contains(&long), "{mode}: {stderr}");
        assert!(stderr.starts_with("error: "), "{mode}: {stderr}");
        for debug in ["Io(", "NoListener(", "PathTooLong(", "Custom {", "kind:"] {
            assert!(!stderr.contains(debug), "{mode} printed Debug: {stderr}");
        }
    }
    // A folder that does not exist: bind fails with ENOENT, which names no path itself.
    let missing = std::env::temp_dir()
        .join(format!("memlink-no-such-dir-{}", std::process::id()))
        .join("demo.sock");
    let missing = missing.to_str().unwrap();
    let stderr = failing_run(&["serve", missing]);
    assert!(stderr.contains(missing), "{stderr}");
    assert!(!stderr.contains("Io("), "{stderr}");
}
