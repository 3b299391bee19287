//! `memlink dsm pager`: the file pager in its own process, the real binary, serving a
//! `memlink dsm run` cluster over its socket:
//! - a clean run: the nodes start before the pager listens (they wait for it), count the
//!   file's words through it, and leave; the pager then ends by itself, says what it served,
//!   removes its socket, and the file is byte for byte as it was (the region's page 0, which
//!   the nodes write back, is outside the file);
//! - the pager killed (SIGKILL) mid-run, while a node waits for pages from it: a proxy
//!   between the nodes and the pager holds the pager's replies once it has served a few
//!   pages, the pager is killed, and the run fails at once with the pager's error by name
//!   (no hang); a node that sent garbage before was dropped and logged, the others served;
//! - the pager's commands from its stdin (`--commands`) while the nodes run (held mid-run by
//!   the same proxy): `wait 3` sees the three nodes, a bad line is answered with an error, a
//!   `clean_request` reaches every node and comes back with the pages each wrote;
//! - errors a user can act on: a missing file, a socket path in use or not a socket; a stale
//!   socket is replaced; `--help` shows an example.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::cli_support::{memlink, stdout_of};
use memlink_test_support::wait_process;

/// Long enough for any step on a loaded machine; a hang fails the test instead of blocking it.
const DEADLINE: Duration = Duration::from_secs(120);

/// A directory of this test's own (unique per process and name), removed at drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir =
            std::env::temp_dir().join(format!("memlink-cli-pager-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch directory");
        Scratch(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A text of words about `bytes` long, and how many words it has.
fn words(bytes: usize) -> (Vec<u8>, u64) {
    const WORDS: [&str; 6] = ["memory", "object", "pager", "mach", "port", "data"];
    let (mut text, mut count, mut i) = (Vec::with_capacity(bytes + 16), 0, 0u64);
    while text.len() < bytes {
        i = i
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        text.extend_from_slice(WORDS[(i >> 33) as usize % WORDS.len()].as_bytes());
        text.push(if i >> 60 == 0 { b'\n' } else { b' ' });
        count += 1;
    }
    (text, count)
}

/// The lines of `from` as they come.
fn lines_of(from: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(from).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    lines
}

/// A pager process, killed at drop if still running, with its stderr lines as they come
/// (and its stdin and stdout's lines, for `--commands`).
struct PagerProcess {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
    stdin: Option<std::process::ChildStdin>,
    stdout: mpsc::Receiver<String>,
}

impl PagerProcess {
    fn start(file: &Path, socket: &Path) -> PagerProcess {
        Self::start_with(file, socket, &[])
    }

    fn start_with(file: &Path, socket: &Path, args: &[&str]) -> PagerProcess {
        let mut child = memlink()
            .args(["dsm", "pager", "--file"])
            .arg(file)
            .arg("--socket")
            .arg(socket)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start memlink dsm pager");
        PagerProcess {
            lines: lines_of(child.stderr.take().expect("its stderr")),
            stdout: lines_of(child.stdout.take().expect("its stdout")),
            stdin: child.stdin.take(),
            child,
            seen: Vec::new(),
        }
    }

    /// Sends `command` to the pager's stdin (`--commands`).
    fn send(&mut self, command: &str) {
        let stdin = self.stdin.as_mut().expect("its stdin");
        writeln!(stdin, "{command}").expect("write to the pager");
    }

    /// The pager's next stdout line: its answer to a command.
    fn answer(&self) -> String {
        self.stdout
            .recv_timeout(DEADLINE)
            .expect("the pager answers the command")
    }

    /// Waits for a stderr line that contains `what`; the line.
    fn line_with(&mut self, what: &str) -> String {
        if let Some(line) = self.seen.iter().find(|l| l.contains(what)) {
            return line.clone();
        }
        loop {
            let line = self.lines.recv_timeout(DEADLINE).unwrap_or_else(|e| {
                panic!(
                    "the pager never said {what:?} ({e}); it said {:?}",
                    self.seen
                )
            });
            self.seen.push(line.clone());
            if line.contains(what) {
                return line;
            }
        }
    }

    /// Waits for the pager to end by itself; its exit code and every stderr line.
    fn wait(mut self) -> (Option<i32>, String) {
        let status = wait_process(&mut self.child, DEADLINE);
        self.seen.extend(self.lines.try_iter());
        // The reader thread may still hold the last lines: it ends at the pipe's end.
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.seen.push(line);
        }
        (status.and_then(|s| s.code()), self.seen.join("\n"))
    }
}

impl Drop for PagerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wordcount_run(file: &Path, socket: &Path) -> std::process::Command {
    let mut cmd = memlink();
    cmd.args(["dsm", "run", "--nodes", "3", "--app", "wordcount", "--json"])
        .args(["--memory-budget", "64K", "--file"])
        .arg(file)
        .arg("--pager-socket")
        .arg(socket);
    cmd
}

/// The number after `label` in a stats line (`... pages provided 12, ...`).
fn figure(line: &str, label: &str) -> u64 {
    let at = line
        .find(label)
        .unwrap_or_else(|| panic!("{label:?} in {line}"))
        + label.len();
    line[at..]
        .trim_start()
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("a number after {label:?} in {line}"))
}

#[test]
fn a_pager_process_serves_a_cluster_and_ends_when_every_node_has_left() {
    let dir = Scratch::new("clean");
    let (file, socket) = (dir.path("words.txt"), dir.path("pager.sock"));
    let (text, _) = words(1 << 20);
    std::fs::write(&file, &text).unwrap();
    // A stale socket, as a pager that died leaves it: replaced.
    drop(UnixListener::bind(&socket).unwrap());
    // The nodes start first: they wait for the pager to listen.
    let mut run = wordcount_run(&file, &socket)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start memlink dsm run");
    let pager = PagerProcess::start(&file, &socket);
    assert_run_verified(&mut run);
    // The pager ends by itself once every node has left, and says what it served.
    let (code, said) = pager.wait();
    assert_eq!(code, Some(0), "the pager's exit; it said:\n{said}");
    assert!(said.contains("replacing the stale socket"), "{said}");
    let last = said
        .lines()
        .find(|l| l.contains("every node has left"))
        .unwrap_or_else(|| panic!("no final line:\n{said}"));
    let file_pages = text.len().div_ceil(memlink_dsm::PAGE_SIZE) as u64;
    assert_eq!(figure(last, "nodes seen"), 3, "{last}");
    assert!(
        figure(last, "pages provided") >= file_pages,
        "every page of the file served: {last}"
    );
    assert_eq!(figure(last, "failures"), 0, "{last}");
    assert!(!socket.exists(), "the pager removes its socket");
    assert_eq!(std::fs::read(&file).unwrap(), text, "the file changed");
}

/// Waits for `run` (stdout and stderr piped) to end and asserts that it succeeded and printed
/// one JSON object saying `verified: true`.
fn assert_run_verified(run: &mut std::process::Child) {
    let mut out = String::new();
    run.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    let mut err = String::new();
    run.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    let status = wait_process(run, DEADLINE).expect("the run ends");
    assert!(status.success(), "the run failed: {out}\n{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("one JSON object");
    assert_eq!(v["verified"], true, "{v}");
}

/// A wordcount run whose nodes reach the pager at `socket` through a [`proxy`] at `front`,
/// returned once the proxy holds a reply a node waits for (after 64 KiB of pages); send
/// `true` on the sender to let it through, `false` to drop it as a dead pager would.
fn held_run(
    file: &Path,
    socket: &Path,
    front: &Path,
    stdout: Stdio,
) -> (std::process::Child, mpsc::Sender<bool>) {
    let (reached_tx, reached) = mpsc::channel();
    let (release, release_rx) = mpsc::channel();
    let listener = UnixListener::bind(front).unwrap();
    let upstream = socket.to_path_buf();
    std::thread::spawn(move || proxy(listener, upstream, 64 * 1024, reached_tx, release_rx));
    let run = wordcount_run(file, front)
        .stdout(stdout)
        .stderr(Stdio::piped())
        .spawn()
        .expect("start memlink dsm run");
    reached
        .recv_timeout(DEADLINE)
        .expect("the nodes never got 64 KiB of pages from the pager");
    (run, release)
}

/// Stands between the nodes (at `front`) and the pager (at `upstream`), forwarding every
/// connection both ways, until the pager has sent the nodes `gate` bytes: then it holds the
/// reply it is forwarding (a node waits for it), says so on `reached`, and waits on
/// `release`: `true`, it forwards the reply and goes on; `false`, it drops that connection
/// as a dead pager's would end. The other connections end as the pager's do.
fn proxy(
    front: UnixListener,
    upstream: PathBuf,
    gate: usize,
    reached: mpsc::Sender<()>,
    release: mpsc::Receiver<bool>,
) {
    let passed = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let gate_state = std::sync::Arc::new(std::sync::Mutex::new(Some((reached, release))));
    for node in front.incoming() {
        let Ok(node) = node else { return };
        let Ok(pager) = UnixStream::connect(&upstream) else {
            return;
        };
        let (mut node_in, mut pager_out) = (node.try_clone().unwrap(), pager.try_clone().unwrap());
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut node_in, &mut pager_out);
            let _ = pager_out.shutdown(std::net::Shutdown::Write);
        });
        let (passed, gate_state) = (passed.clone(), gate_state.clone());
        let (mut pager_in, mut node_out) = (pager, node);
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = match pager_in.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                if passed.fetch_add(n, std::sync::atomic::Ordering::SeqCst) + n >= gate {
                    if let Some((reached, release)) = gate_state.lock().unwrap().take() {
                        let _ = reached.send(());
                        if release.recv() != Ok(true) {
                            break;
                        }
                    }
                }
                if node_out.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            let _ = node_out.shutdown(std::net::Shutdown::Both);
        });
    }
}

#[test]
fn a_pager_killed_mid_run_fails_the_waiting_faults_by_name_without_a_hang() {
    let dir = Scratch::new("killed");
    let (file, socket, front) = (
        dir.path("words.txt"),
        dir.path("pager.sock"),
        dir.path("front.sock"),
    );
    let (text, _) = words(2 << 20);
    std::fs::write(&file, &text).unwrap();
    let mut pager = PagerProcess::start(&file, &socket);
    pager.line_with("serving");
    // A node speaking garbage is dropped and logged; the pager goes on.
    let mut garbage = UnixStream::connect(&socket).unwrap();
    garbage.write_all(&[0xee; 10]).unwrap();
    garbage
        .set_read_timeout(Some(DEADLINE))
        .expect("a read timeout");
    assert_eq!(garbage.read(&mut [0u8; 1]).unwrap(), 0, "not dropped");
    pager.line_with("dropped a node's connection");
    let (mut run, release) = held_run(&file, &socket, &front, Stdio::null());
    // A node waits for the reply held: the pager dies now.
    pager.child.kill().expect("kill the pager");
    pager.child.wait().expect("reap the pager");
    release.send(false).unwrap();
    let mut err = String::new();
    run.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    let status = wait_process(&mut run, DEADLINE).expect("the run ends: no hang");
    assert!(
        !status.success(),
        "the run succeeded without its pager:\n{err}"
    );
    let name = format!("the pager {:?}", front.display().to_string());
    assert!(
        err.contains(&format!("{name} is gone"))
            || err.contains("could not be read from the pager of node"),
        "the run's error does not name the lost pager:\n{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn the_pager_commands_the_nodes_of_a_run_from_its_stdin() {
    let dir = Scratch::new("commands");
    let (file, socket, front) = (
        dir.path("words.txt"),
        dir.path("pager.sock"),
        dir.path("front.sock"),
    );
    let (text, _) = words(2 << 20);
    std::fs::write(&file, &text).unwrap();
    let mut pager = PagerProcess::start_with(&file, &socket, &["--commands"]);
    pager.line_with("serving");
    let (mut run, release) = held_run(&file, &socket, &front, Stdio::piped());
    // Held mid-run: every node has taken the pager's commands by now (before its app).
    pager.send("wait 3");
    assert_eq!(pager.answer(), "wait 3: 3 nodes take commands");
    pager.send("clean 1 2 3");
    assert!(pager.answer().starts_with("error: "), "a bad line");
    // Node 0 may answer only once its fault has its reply: released right after.
    pager.send("clean 1 100");
    release.send(true).unwrap();
    assert_eq!(
        pager.answer(),
        "clean 1 100: node 0: 0; node 1: 0; node 2: 0; pages 0",
        "a read-only run has no page to write back"
    );
    assert_run_verified(&mut run);
    let (code, said) = pager.wait();
    assert_eq!(code, Some(0), "the pager's exit; it said:\n{said}");
}

#[test]
fn pager_errors_say_what_to_do() {
    let dir = Scratch::new("errors");
    let (file, socket) = (dir.path("words.txt"), dir.path("pager.sock"));
    let fails = |file: &Path, socket: &Path| {
        let out = memlink()
            .args(["dsm", "pager", "--file"])
            .arg(file)
            .arg("--socket")
            .arg(socket)
            .output()
            .expect("run memlink dsm pager");
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        stderr
    };
    let stderr = fails(&dir.path("missing.txt"), &socket);
    assert!(
        stderr.contains("cannot map") && stderr.contains("missing.txt"),
        "{stderr}"
    );
    std::fs::write(&file, b"a few words\n").unwrap();
    let stderr = fails(&file, &file);
    assert!(stderr.contains("is not a socket"), "{stderr}");
    let _serving = UnixListener::bind(&socket).unwrap();
    let stderr = fails(&file, &socket);
    assert!(stderr.contains("serves at --socket"), "{stderr}");
    let out = memlink()
        .args(["dsm", "pager", "--file"])
        .arg(&file)
        .args(["--offset", "100", "--socket"])
        .arg(dir.path("other.sock"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("multiple of the page size"), "{stderr}");
    let help = stdout_of(memlink().args(["dsm", "pager", "--help"]));
    assert!(
        help.contains("Example") && help.contains("--pager-socket"),
        "{help}"
    );
}
