//! Running the `memlink` binary from the CLI tests: a command, a run that must succeed (its
//! standard output, or the one JSON object it printed) and a run that must fail (its
//! standard error). A failure shows the arguments and both streams.

use std::process::{Command, Output};

/// The `memlink` binary built for these tests.
pub fn memlink() -> Command {
    Command::new(env!("CARGO_BIN_EXE_memlink"))
}

fn run(args: &[&str]) -> Output {
    memlink()
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("memlink {}: {e}", args.join(" ")))
}

/// Runs `memlink args`, which must succeed; its standard output.
pub fn stdout_of(args: &[&str]) -> String {
    let out = run(args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "memlink {} failed ({}):\n{stdout}\n{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Runs `memlink args --json`-style commands, which must succeed and print one JSON object.
pub fn json_of(args: &[&str]) -> serde_json::Value {
    let stdout = stdout_of(args);
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "memlink {}: not one JSON object ({e}):\n{stdout}",
            args.join(" ")
        )
    })
}

/// Runs `memlink args`, which must fail; its standard error.
pub fn stderr_of_failure(args: &[&str]) -> String {
    let out = run(args);
    assert!(
        !out.status.success(),
        "memlink {} succeeded, but should have failed:\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}
