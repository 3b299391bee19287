//! `memlink dsm keygen` and the node's key options: a new key file is private and never
//! overwritten, a key file others can read is refused, a node without a key refuses to listen
//! off loopback unless --insecure is given (and then says so).

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Output};

fn memlink() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_memlink"));
    cmd.env_remove("MEMLINK_DSM_KEY_FILE");
    cmd
}

fn run(cmd: &mut Command) -> (Output, String) {
    let out = cmd.output().expect("run memlink");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out, text)
}

/// A fresh directory of this test's own (removed when dropped).
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "memlink-cli-admission-{}-{name}-{:?}",
            std::process::id(),
            std::time::SystemTime::now()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn single_node(listen: &str) -> Command {
    let mut cmd = memlink();
    cmd.args(["dsm", "node", "--id", "0", "--listen", listen])
        .args(["--peers", "127.0.0.1:1", "--app", "counter"]);
    cmd
}

#[test]
fn keygen_writes_a_private_key_once() {
    let dir = TempDir::new("keygen");
    let key = dir.0.join("cluster.key");
    let (out, text) = run(memlink().args(["dsm", "keygen"]).arg(&key));
    assert!(out.status.success(), "{text}");
    assert!(text.contains("--key-file"), "{text}");
    let meta = std::fs::metadata(&key).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(std::fs::read_to_string(&key).unwrap().trim().len(), 64);
    let before = std::fs::read(&key).unwrap();
    let (out, text) = run(memlink().args(["dsm", "keygen"]).arg(&key));
    assert!(
        !out.status.success(),
        "a second keygen overwrote the key: {text}"
    );
    assert_eq!(std::fs::read(&key).unwrap(), before);

    // The key runs a node; the same file readable by others is refused.
    let (out, text) = run(single_node("127.0.0.1:0").arg("--key-file").arg(&key));
    assert!(out.status.success(), "{text}");
    assert!(text.contains("verified: true"), "{text}");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (out, text) = run(single_node("127.0.0.1:0").arg("--key-file").arg(&key));
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("chmod 600"), "{text}");
}

#[test]
fn a_node_without_a_key_refuses_to_listen_off_loopback() {
    let (out, text) = run(&mut single_node("0.0.0.0:0"));
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("not a loopback address") && text.contains("--key-file"),
        "{text}"
    );
    assert!(text.contains("--insecure"), "{text}");
    let (out, text) = run(single_node("0.0.0.0:0").arg("--insecure"));
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("--insecure: no cluster key") && text.contains("verified: true"),
        "{text}"
    );
}

#[test]
fn node_help_says_who_can_join() {
    let (out, text) = run(memlink().args(["dsm", "node", "--help"]));
    assert!(out.status.success(), "{text}");
    for words in [
        "Who can join",
        "--key-file",
        "--insecure",
        "not encrypted",
        "WireGuard",
        "mpirun",
        "srun",
        "within 10 s",
    ] {
        assert!(text.contains(words), "--help lacks {words:?}:\n{text}");
    }
}
