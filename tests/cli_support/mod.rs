//! Running the `memlink` binary from the CLI tests: a command, a run that must succeed (its
//! standard output, or the one JSON object it printed) and a run that must fail (its
//! standard error). A failure shows the command line and both streams.

use std::process::{Command, Output};

/// The `memlink` binary built for these tests.
pub fn memlink() -> Command {
    Command::new(env!("CARGO_BIN_EXE_memlink"))
}

/// `out` for a failed assertion: the exit status and both streams.
pub fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"))
}

/// Runs `cmd`, which must succeed; its standard output.
pub fn stdout_of(cmd: &mut Command) -> String {
    let out = run(cmd);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Runs `cmd` (a `--json` run), which must succeed and print one JSON object.
pub fn json_of(cmd: &mut Command) -> serde_json::Value {
    let stdout = stdout_of(cmd);
    serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("{cmd:?}: not one JSON object ({e}):\n{stdout}"))
}

/// Runs `cmd`, which must fail; its standard error.
pub fn stderr_of_failure(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        !out.status.success(),
        "{cmd:?} succeeded, but should have failed:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}
