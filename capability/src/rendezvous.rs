//! Rendezvous: unrelated processes find each other through a unix-domain socket path.
//!
//! One process binds a path ([`RendezvousListener::bind`]); others [`connect`] to it and
//! then exchange messages and segment descriptors with
//! [`send_with_fds`](crate::fd_passing::send_with_fds). A path left behind by a process
//! that was killed (nobody accepts on it any more) is reclaimed by the next bind.

use std::fmt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Why binding a rendezvous path failed.
#[derive(Debug)]
pub enum BindError {
    /// A live process is already listening on the path.
    InUse(PathBuf),
    /// The path is longer than a unix socket address allows (107 bytes).
    PathTooLong(PathBuf),
    /// Something other than a socket exists at the path; it was left alone.
    NotASocket(PathBuf),
    /// bind/unlink failed.
    Io(std::io::Error),
}

impl fmt::Display for BindError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BindError::InUse(p) => write!(
                f,
                "{} is in use by a running process; pick another path or stop that process",
                p.display()
            ),
            BindError::PathTooLong(p) => {
                write!(
                    f,
                    "{} is too long for a unix socket (max 107 bytes)",
                    p.display()
                )
            }
            BindError::NotASocket(p) => write!(
                f,
                "{} exists and is not a socket; refusing to delete it",
                p.display()
            ),
            BindError::Io(e) => write!(f, "binding the rendezvous socket failed: {e}"),
        }
    }
}

impl std::error::Error for BindError {}

/// Why connecting to a rendezvous path failed.
#[derive(Debug)]
pub enum ConnectError {
    /// Nobody listens on the path (yet), and the deadline passed.
    NoListener(PathBuf),
    /// connect failed for another reason.
    Io(std::io::Error),
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectError::NoListener(p) => write!(
                f,
                "nobody is listening on {}; start the listening process first",
                p.display()
            ),
            ConnectError::Io(e) => write!(f, "connecting to the rendezvous socket failed: {e}"),
        }
    }
}

impl std::error::Error for ConnectError {}

/// A bound rendezvous path; the path is removed when this is dropped.
#[derive(Debug)]
pub struct RendezvousListener {
    listener: UnixListener,
    path: PathBuf,
}

impl RendezvousListener {
    /// Binds `path`, reclaiming it if a dead process left its socket file behind.
    ///
    /// To tell a stale path from a live one, bind connects to it once: a live listener
    /// sees (and should tolerate) one connection that closes without a message.
    pub fn bind(path: impl AsRef<Path>) -> Result<RendezvousListener, BindError> {
        let path = path.as_ref().to_path_buf();
        if path.as_os_str().len() > 107 {
            return Err(BindError::PathTooLong(path));
        }
        match UnixListener::bind(&path) {
            Ok(listener) => return Ok(RendezvousListener { listener, path }),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {}
            Err(e) => return Err(BindError::Io(e)),
        }
        // Something is at the path. A live listener accepts a connection; a stale socket
        // file refuses it (ECONNREFUSED) and may be removed.
        use std::os::unix::fs::FileTypeExt;
        match std::fs::symlink_metadata(&path) {
            Ok(m) if !m.file_type().is_socket() => return Err(BindError::NotASocket(path)),
            _ => {}
        }
        match UnixStream::connect(&path) {
            Ok(_) => return Err(BindError::InUse(path)),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {}
            Err(e) => return Err(BindError::Io(e)),
        }
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(BindError::Io(e)),
        }
        match UnixListener::bind(&path) {
            Ok(listener) => Ok(RendezvousListener { listener, path }),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => Err(BindError::InUse(path)),
            Err(e) => Err(BindError::Io(e)),
        }
    }

    /// Waits for the next process to connect.
    pub fn accept(&self) -> std::io::Result<UnixStream> {
        self.listener.accept().map(|(s, _)| s)
    }

    /// The bound path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The underlying listener (for non-blocking use or polling).
    pub fn listener(&self) -> &UnixListener {
        &self.listener
    }
}

impl Drop for RendezvousListener {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Connects to a rendezvous path once.
pub fn connect(path: impl AsRef<Path>) -> Result<UnixStream, ConnectError> {
    let path = path.as_ref();
    UnixStream::connect(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
            ConnectError::NoListener(path.to_path_buf())
        }
        _ => ConnectError::Io(e),
    })
}

/// Connects to a rendezvous path, retrying until `timeout` passes while nobody listens
/// yet (for processes started at the same time from a shell).
pub fn connect_within(
    path: impl AsRef<Path>,
    timeout: Duration,
) -> Result<UnixStream, ConnectError> {
    // A timeout too long for an `Instant` means: keep trying.
    let deadline = Instant::now().checked_add(timeout);
    let mut pause = Duration::from_millis(1);
    loop {
        match connect(path.as_ref()) {
            Err(ConnectError::NoListener(p)) => {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    return Err(ConnectError::NoListener(p));
                }
                // Polling pause between connection attempts (not test synchronisation).
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp_path(tag: &str) -> PathBuf {
        std::env::temp_dir().join(format!("memlink-rv-{tag}-{}", std::process::id()))
    }

    #[test]
    fn stale_path_is_reclaimed_and_live_path_is_refused() {
        let path = tmp_path("stale");
        // A listener that goes away without removing its socket file leaves a stale path.
        let stale = UnixListener::bind(&path).unwrap();
        drop(stale);
        assert!(path.exists());
        let live = RendezvousListener::bind(&path).unwrap();
        assert!(matches!(
            RendezvousListener::bind(&path),
            Err(BindError::InUse(_))
        ));
        let c = connect(&path).unwrap();
        let s = live.accept().unwrap();
        drop((c, s));
        drop(live);
        assert!(!path.exists());
        assert!(matches!(connect(&path), Err(ConnectError::NoListener(_))));
    }

    #[test]
    fn regular_file_is_left_alone() {
        let path = tmp_path("file");
        std::fs::write(&path, b"x").unwrap();
        assert!(matches!(
            RendezvousListener::bind(&path),
            Err(BindError::NotASocket(_))
        ));
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn a_timeout_too_long_for_an_instant_keeps_trying_instead_of_panicking() {
        let path = tmp_path("forever");
        let _ = std::fs::remove_file(&path);
        let (bound_tx, bound_rx) = std::sync::mpsc::channel();
        let listener_path = path.clone();
        let listener = std::thread::spawn(move || {
            // Bind once the connecting side has started (it may or may not find nobody first).
            bound_rx.recv().unwrap();
            let l = RendezvousListener::bind(&listener_path).unwrap();
            let _ = l.listener().accept().unwrap();
        });
        let path_for_connect = path.clone();
        let connecting = std::thread::spawn(move || {
            bound_tx.send(()).unwrap();
            connect_within(&path_for_connect, Duration::MAX).map(|_| ())
        });
        assert!(connecting.join().unwrap().is_ok());
        listener.join().unwrap();
    }
}
