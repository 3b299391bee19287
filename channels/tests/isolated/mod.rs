//! Runs a test that forks in a process of its own.
//!
//! The test harness runs tests on several threads, and a fork taken while another thread holds
//! a lock (stdout's, the panic machinery's, an allocator's) leaves the child waiting on it
//! forever. [`isolated`] re-runs the calling test alone in a fresh process of this test binary,
//! where the only other thread is the harness's main thread, parked until the test ends; the
//! wait for that process is bounded.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::Command;
use std::time::{Duration, Instant};

/// How long the test's own process may run before it is killed and the test fails.
pub const DEADLINE: Duration = Duration::from_secs(300);

/// The environment variable that marks a process started by [`isolated`]: the test it runs.
const ISOLATED_ENV: &str = "MEMLINK_TEST_ISOLATED";

/// Runs `body` in a fresh process of this test binary that runs only the calling test, and
/// fails the calling test if it fails there (its output is shown). Call it as the whole body
/// of a `#[test]` function.
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
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, child.id() as libc::pid_t, 0) };
    assert!(fd >= 0, "pidfd_open: {}", std::io::Error::last_os_error());
    // SAFETY: pidfd_open returned a fresh descriptor that nothing else owns.
    let pidfd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let end = Instant::now() + DEADLINE;
    let ended = loop {
        let left = end.saturating_duration_since(Instant::now());
        let mut pfd = libc::pollfd {
            fd: pidfd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = left.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: `pfd` is one live pollfd; a pidfd polls readable when its process ends.
        let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
        if rc > 0 {
            break true;
        }
        if rc == 0 || left.is_zero() {
            break false;
        }
    };
    if !ended {
        let _ = child.kill();
        let _ = child.wait();
        panic!("{test}: its process ran past {DEADLINE:?} and was killed");
    }
    let status = child.wait().expect("wait for the test's process");
    assert!(
        status.success(),
        "{test} failed in its own process ({status}); its output is above"
    );
}
