//! `memlink dsm node --from-env` under the launchers clusters use: Open MPI's `mpirun`
//! (Debian's openmpi-bin) and Slurm's `srun` on a private single-host Slurm cluster that
//! `scripts/slurm-local.sh` starts (slurm-wlm, munge). Three ranks run jacobi and every one
//! verifies its result. No MPI library is linked: the nodes read the launcher's variables and
//! meet at node 0's rendezvous. A launcher that is not installed skips its test with a loud
//! message; `.ci/run` installs both, so CI runs them.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output};

use crate::cli_support::text;

const MEMLINK: &str = env!("CARGO_BIN_EXE_memlink");

fn installed(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn skip(what: &str, why: &str) {
    eprintln!(
        "\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n\
         SKIPPED {what}: {why}\n\
         (install with: apt-get install -y openmpi-bin slurm-wlm munge; .ci/run does)\n\
         !!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n"
    );
}

/// Every rank printed its verified jacobi result.
fn assert_all_verified(out: &Output, ranks: usize) {
    let all = text(out);
    assert!(out.status.success(), "{all}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    for rank in 0..ranks {
        assert!(
            stdout.contains(&format!("node {rank}: jacobi done")),
            "{all}"
        );
    }
    assert_eq!(stdout.matches("verified: true").count(), ranks, "{all}");
}

const JACOBI: [&str; 9] = [
    "dsm",
    "node",
    "--from-env",
    "--app",
    "jacobi",
    "--size",
    "128",
    "--iters",
    "10",
];

/// A fresh cluster key file (`memlink dsm keygen`) in a directory of this test's own,
/// removed on drop: the nodes listen on every address, so they must prove a key.
struct KeyFile(std::path::PathBuf);

impl KeyFile {
    fn new(test: &str) -> KeyFile {
        let dir = std::env::temp_dir().join(format!("memlink-{test}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("cluster.key");
        let _ = std::fs::remove_file(&path);
        let out = Command::new(MEMLINK)
            .args(["dsm", "keygen"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(out.status.success(), "keygen: {}", text(&out));
        KeyFile(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().expect("a UTF-8 temp path")
    }
}

impl Drop for KeyFile {
    fn drop(&mut self) {
        if let Some(dir) = self.0.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

#[test]
fn mpirun_starts_three_nodes_that_verify() {
    if !installed("mpirun") {
        return skip(
            "mpirun_starts_three_nodes_that_verify",
            "mpirun is not installed",
        );
    }
    // mpirun starts every rank with the same arguments, so the coordinator's port is chosen
    // here: one that was free a moment ago. Another process may take it in between; that
    // case is named by node 0 ("another process uses that port") and retried.
    let key = KeyFile::new("mpirun");
    for attempt in 0..3 {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let out = Command::new("mpirun")
            .args(["--allow-run-as-root", "--oversubscribe", "-n", "3"])
            .args(["--mca", "btl", "self,tcp"])
            .arg(MEMLINK)
            .args(JACOBI)
            .args(["--coordinator", &format!("127.0.0.1:{port}")])
            .args(["--key-file", key.path()])
            .output()
            .unwrap();
        if !out.status.success() && text(&out).contains("another process uses that port") {
            eprintln!("attempt {attempt}: port {port} was taken meanwhile; retrying");
            continue;
        }
        return assert_all_verified(&out, 3);
    }
    panic!("three ports in a row were taken before node 0 could bind them");
}

#[test]
fn srun_starts_three_nodes_that_verify() {
    for tool in ["srun", "slurmctld", "slurmd", "munged"] {
        if !installed(tool) {
            return skip(
                "srun_starts_three_nodes_that_verify",
                &format!("{tool} is not installed"),
            );
        }
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return skip("srun_starts_three_nodes_that_verify", "slurmd needs root");
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/slurm-local.sh");
    // No --coordinator: under Slurm node 0 is the step's first host, on a port drawn from
    // the job id (the script starts job ids at a random number).
    let key = KeyFile::new("srun");
    let out = Command::new(script)
        .args(["srun", "-n", "3", MEMLINK])
        .args(JACOBI)
        .args(["--key-file", key.path()])
        .output()
        .unwrap();
    assert_all_verified(&out, 3);
}
