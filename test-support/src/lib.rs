//! memlink's test support. Starting helper processes from integration tests: `fork` for children that share the
//! test's setup, and re-executing the test binary for separately started processes.
//!
//! A test that forks runs inside [`isolated`]: the test harness runs tests on several threads,
//! and a fork taken while another thread holds a lock (stdout's, the panic machinery's, an
//! allocator's) leaves the child waiting on it forever. `isolated` re-runs the test alone in a
//! fresh process of this binary, where the only other thread is the harness's main thread,
//! parked until the test ends. Every wait on a child is bounded by [`DEADLINE`].

use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

/// How long a test waits for any child process (or for a peer to connect) before it kills the
/// child and fails: a must-not-hang bound, far above what any of these children needs.
pub const DEADLINE: Duration = Duration::from_secs(120);

/// The environment variable that marks a process started by [`isolated`]: the test it runs.
pub const ISOLATED_ENV: &str = "MEMLINK_TEST_ISOLATED";

/// Runs `body` (a test that forks) in a fresh process of this test binary that runs only the
/// calling test, and fails the calling test if it fails there (its output is shown). Call it
/// as the whole body of a `#[test]` function.
pub fn isolated(body: impl FnOnce()) {
    let test = std::thread::current()
        .name()
        .expect("the test harness names each test's thread after the test")
        .to_string();
    if std::env::var(ISOLATED_ENV).ok().as_deref() == Some(test.as_str()) {
        body();
        return;
    }
    let mut child = Command::new(std::env::current_exe().expect("test binary path"))
        .args(["--exact", &test, "--nocapture", "--test-threads=1", "-q"])
        .env(ISOLATED_ENV, &test)
        .spawn()
        .expect("start the test binary");
    let status = wait_process(&mut child, DEADLINE)
        .unwrap_or_else(|| panic!("{test}: its process ran past {DEADLINE:?} and was killed"));
    assert!(
        status.success(),
        "{test} failed in its own process ({status}); its output is above"
    );
}

/// Waits until `fd` is readable (a listener: a peer is connecting; a pidfd: the process
/// ended), at most `deadline`; false if it did not become readable in time.
pub fn readable_within(fd: BorrowedFd<'_>, deadline: Duration) -> bool {
    let end = Instant::now() + deadline;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        let mut pfd = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = left.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: `pfd` is one live pollfd.
        let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
        if rc > 0 {
            return true;
        }
        if rc == 0 || left.is_zero() {
            return false;
        }
        // rc < 0: EINTR; poll again with what is left.
    }
}

fn pidfd(pid: libc::pid_t) -> OwnedFd {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    assert!(
        fd >= 0,
        "pidfd_open({pid}): {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: pidfd_open returned a fresh descriptor that nothing else owns.
    unsafe { OwnedFd::from_raw_fd(fd as i32) }
}

/// Waits at most `deadline` for `child`; a child still running then is killed and reaped, and
/// None is returned.
pub fn wait_process(child: &mut Child, deadline: Duration) -> Option<ExitStatus> {
    use std::os::fd::AsFd;
    let fd = pidfd(child.id() as libc::pid_t);
    if !readable_within(fd.as_fd(), deadline) {
        let _ = child.kill();
        let _ = child.wait();
        return None;
    }
    Some(child.wait().expect("wait for the child"))
}

/// Waits at most [`DEADLINE`] for `child` and returns what it wrote to its stdout and stderr
/// (empty for a stream that is not piped), read while it runs so that a full pipe never
/// blocks it. Fails the test, naming the child `who`, if it ran past the deadline or failed.
pub fn output_of(mut child: Child, who: &str) -> (String, String) {
    fn read_all(
        pipe: Option<impl std::io::Read + Send + 'static>,
    ) -> std::thread::JoinHandle<String> {
        std::thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_string(&mut text);
            }
            text
        })
    }
    let (out, err) = (read_all(child.stdout.take()), read_all(child.stderr.take()));
    let status = wait_process(&mut child, DEADLINE)
        .unwrap_or_else(|| panic!("{who} ran past {DEADLINE:?} and was killed"));
    let (out, err) = (out.join().unwrap(), err.join().unwrap());
    assert!(status.success(), "{who} failed ({status}): {out}{err}");
    (out, err)
}

/// Forks; the child runs `f` and exits with its return code via `_exit` (a panic is
/// exit code 101). Only from inside [`isolated`] (see the module documentation).
pub fn fork_child(f: impl FnOnce() -> i32) -> libc::pid_t {
    // SAFETY: fork has no memory preconditions; the child only runs `f` and `_exit`s.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or(101);
        // SAFETY: _exit ends the child without running the parent's destructors.
        unsafe { libc::_exit(code) };
    }
    pid
}

/// Waits (at most [`DEADLINE`]) for `pid`; returns Ok(exit code) or Err(signal number). A
/// child still running at the deadline is killed, and the test fails.
pub fn wait_child(pid: libc::pid_t) -> Result<i32, i32> {
    use std::os::fd::AsFd;
    let fd = pidfd(pid);
    let timed_out = !readable_within(fd.as_fd(), DEADLINE);
    if timed_out {
        kill9(pid);
    }
    let mut status = 0;
    // SAFETY: `status` is a valid out-pointer; pid is our child (exited, or SIGKILLed above).
    let r = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(r, pid, "waitpid failed");
    assert!(
        !timed_out,
        "child {pid} still ran after {DEADLINE:?} and was killed"
    );
    if libc::WIFEXITED(status) {
        Ok(libc::WEXITSTATUS(status))
    } else {
        Err(libc::WTERMSIG(status))
    }
}

/// Sends SIGKILL to `pid`.
pub fn kill9(pid: libc::pid_t) {
    // SAFETY: kill has no memory preconditions.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
}

/// The environment variable that tells a re-executed test binary which role to play.
pub const ROLE_ENV: &str = "MEMLINK_TEST_ROLE";

/// Starts this test binary again, running only test `test_name` of the calling test's module,
/// with role data in the environment: a separately started process, not a fork. Call it on
/// the test's own thread (see [`sibling_test`]).
pub fn spawn_role(test_name: &str, role: &str) -> Child {
    Command::new(std::env::current_exe().expect("test binary path"))
        .args([
            "--exact",
            &sibling_test(test_name),
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ROLE_ENV, role)
        .spawn()
        .expect("spawn test binary")
}

/// Test `test_name` of the module of the test running on this thread, as libtest names it in
/// this binary (`module::test_name`, or `test_name` in a binary made of one file): a test
/// binary may hold many test files as modules, and the harness names each test's thread
/// after the test's path.
pub fn sibling_test(test_name: &str) -> String {
    let thread = std::thread::current();
    let running = thread
        .name()
        .expect("called on the test's own thread, which the harness names after the test");
    match running.rsplit_once("::") {
        Some((module, _)) => format!("{module}::{test_name}"),
        None => test_name.to_owned(),
    }
}

/// Fails unless every file of `<crate_dir>/tests/` is a module of the crate's integration test
/// binary (`mod <name>;` in `modules`, the text of its `tests/integration.rs`) or a test
/// binary of its own (`path = "tests/<name>.rs"` in `manifest`, the text of its Cargo.toml).
/// With `autotests = false` cargo no longer finds test files by itself, so a file left out
/// would silently never run. Call it with `env!("CARGO_MANIFEST_DIR")`.
pub fn assert_every_test_file_runs(crate_dir: &str, modules: &str, manifest: &str) {
    let dir = std::path::Path::new(crate_dir).join("tests");
    let mut missing = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let name = entry.expect("a directory entry").file_name();
        let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".rs")) else {
            continue;
        };
        let module = format!("\nmod {stem};\n");
        let binary = format!("path = \"tests/{stem}.rs\"");
        if !modules.contains(&module) && !manifest.contains(&binary) {
            missing.push(stem.to_owned());
        }
    }
    missing.sort();
    assert!(
        missing.is_empty(),
        "{}/{{{}}}.rs: neither a module of tests/integration.rs (add `mod <name>;` there) nor \
         a [[test]] of Cargo.toml",
        dir.display(),
        missing.join(",")
    );
}

/// Defines the test `every_test_file_runs` in a crate's `tests/integration.rs`: it fails
/// unless every file of the crate's `tests/` is a module of that binary or a `[[test]]` of its
/// Cargo.toml (see [`assert_every_test_file_runs`]). A macro, because the file texts must be
/// included where it is invoked.
#[macro_export]
macro_rules! every_test_file_runs {
    () => {
        /// Every file of this crate's `tests/` is a module of this binary or a test binary of
        /// its own (cargo no longer finds them by itself, so a new file left out would
        /// silently never run).
        #[test]
        fn every_test_file_runs() {
            $crate::assert_every_test_file_runs(
                env!("CARGO_MANIFEST_DIR"),
                include_str!("integration.rs"),
                include_str!("../Cargo.toml"),
            );
        }
    };
}

/// The role this process was started with, if any.
pub fn role() -> Option<String> {
    std::env::var(ROLE_ENV).ok()
}

/// A unix socket path unique to this process and tag.
pub fn socket_path(tag: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("memlink-{tag}-{}", std::process::id()))
}

/// Names in /dev/shm right now (empty if it does not exist).
pub fn dev_shm_entries() -> std::collections::BTreeSet<String> {
    std::fs::read_dir("/dev/shm")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Replays a committed fuzz corpus (`<crate_dir>/fuzz/corpus/<target>/`, every file) through
/// `body`, the function the cargo-fuzz target calls, so the stable suite checks every input a
/// nightly campaign kept. A panic names the input file; an empty or missing corpus fails.
/// Returns how many inputs ran. Call it with `env!("CARGO_MANIFEST_DIR")`.
pub fn replay_corpus(crate_dir: &str, target: &str, body: fn(&[u8])) -> usize {
    let dir = std::path::Path::new(crate_dir)
        .join("fuzz/corpus")
        .join(target);
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    paths.sort();
    assert!(
        !paths.is_empty(),
        "no corpus for {target} in {}",
        dir.display()
    );
    for path in &paths {
        let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let outcome = std::panic::catch_unwind(|| body(&data));
        assert!(
            outcome.is_ok(),
            "{target}: the corpus input {} broke an invariant",
            path.display()
        );
    }
    paths.len()
}
