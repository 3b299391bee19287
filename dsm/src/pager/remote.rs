//! A pager in its own process: [`super::PagerServer`] serves any [`Pager`] over a
//! unix-domain socket ([`super::server`]), and [`RemotePager`] is the node's side, a [`Pager`] whose calls are messages on
//! that socket (Mach's pagers are reached only through ports, and may run anywhere).
//!
//! One connection per node; each call is one request frame and one reply frame, in order
//! (the frames of [`super::wire`]):
//!
//! ```text
//! request: op u8 | page u32 | len u32 | access u8 | payload (data_write: len bytes)
//! reply:   status u8 | len u32 | payload (data_provided: the len bytes asked for;
//!          lock: none, len is the access; error: len bytes of text)
//! ```
//!
//! Trust: each side checks what the other sends. The node takes a reply only when its
//! status fits the call and its length is exactly the one asked for (or, for an error text,
//! at most [`MAX_ERROR_TEXT`]); anything else is [`PagerError::BadReply`]. The server takes
//! a request only with a known op, a length that is a whole number of pages of at most
//! [`MAX_RUN_PAGES`] pages (a `data_write`: exactly one page), and a page range that does not
//! wrap; anything else closes that node's connection.
//!
//! Failure: every call waits at most the client's timeout. A pager process that died (EOF,
//! a reset or broken connection) is [`PagerError::Lost`]; one that does not answer in time
//! is [`PagerError::Timeout`]. Either is final for the connection (a late reply would be
//! out of step), so every later call fails the same way. The node fails the faults that
//! wait on the pager with [`crate::DsmError::PagerLost`] or
//! [`crate::DsmError::PagerTimeout`], naming it: never a hang; only those faults fail
//! (see [`crate::pager`]).

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use super::wire::{
    self, CALL_LEN, Call, MAX_ERROR_TEXT, MAX_RUN_PAGES, OP_DATA_REQUEST, OP_DATA_UNLOCK,
    OP_DATA_WRITE, OP_SYNC, REPLY_DONE, REPLY_ERROR, REPLY_LOCK, REPLY_PROVIDED, REPLY_UNAVAILABLE,
    access_code, access_of,
};
use super::{Pager, PagerError, Supply};
use crate::types::{Access, PAGE_SIZE, PageNo};

/// How long a node waits for each answer of a pager in another process unless told.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(20);

/// A request's frame: `op` on `len` bytes of pages from `page`, for `access`.
fn request(op: u8, page: PageNo, len: u32, access: Access) -> Call {
    Call {
        op,
        first: page,
        second: len,
        arg: access_code(access),
    }
}

/// The node's side of a pager in another process (see the module docs).
#[derive(Debug)]
pub struct RemotePager {
    name: String,
    stream: UnixStream,
    timeout: Duration,
    /// The failure that ended the connection, repeated by every later call.
    broken: Option<PagerError>,
}

impl RemotePager {
    /// Connect to the pager `name` serving at `path`; every call waits at most `timeout`
    /// for its reply.
    pub fn connect(path: &Path, name: &str, timeout: Duration) -> Result<RemotePager, PagerError> {
        Self::connect_within(path, name, timeout, Duration::ZERO)
    }

    /// As [`RemotePager::connect`], trying again for at most `within` while nothing serves
    /// at `path` yet (no socket there, or a stale one that refuses): a pager process started
    /// beside the nodes may not listen yet when they start.
    pub fn connect_within(
        path: &Path,
        name: &str,
        timeout: Duration,
        within: Duration,
    ) -> Result<RemotePager, PagerError> {
        let lost = |e: io::Error| PagerError::Lost {
            pager: name.to_string(),
            reason: format!("cannot connect to {}: {e}", path.display()),
        };
        let deadline = Instant::now() + within;
        let stream = loop {
            match UnixStream::connect(path) {
                Ok(stream) => break stream,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
                    ) && Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => return Err(lost(e)),
            }
        };
        Self::from_stream(stream, name, timeout).map_err(lost)
    }

    /// The pager `name` at the other end of `stream` (connected); every call waits at most
    /// `timeout` for its reply.
    pub(crate) fn from_stream(
        stream: UnixStream,
        name: &str,
        timeout: Duration,
    ) -> io::Result<RemotePager> {
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        Ok(RemotePager {
            name: name.to_string(),
            stream,
            timeout,
            broken: None,
        })
    }

    /// The pager's name, as errors give it.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn io_failure(&self, e: io::Error) -> PagerError {
        match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => PagerError::Timeout {
                pager: self.name.clone(),
                after: self.timeout,
            },
            _ => PagerError::Lost {
                pager: self.name.clone(),
                reason: if e.kind() == io::ErrorKind::UnexpectedEof {
                    "its connection closed (EOF)".to_string()
                } else {
                    e.to_string()
                },
            },
        }
    }

    fn bad(&self, what: String) -> PagerError {
        PagerError::BadReply {
            pager: self.name.clone(),
            what,
        }
    }

    /// One call: the request (`data`, a `data_write`'s page, follows its frame), then the
    /// reply's status and length (the payload of a `data_provided` read into `payload`,
    /// whose length it must have). A failure other than the pager's own error
    /// ([`PagerError::Remote`]) ends the connection.
    fn call(
        &mut self,
        request: Call,
        data: &[u8],
        payload: &mut [u8],
    ) -> Result<(u8, u32), PagerError> {
        if let Some(e) = &self.broken {
            return Err(e.clone_failure());
        }
        let result = self.exchange(request, data, payload);
        if let Some(e) = result
            .as_ref()
            .err()
            .filter(|e| !matches!(e, PagerError::Remote { .. }))
        {
            self.broken = Some(e.clone_failure());
        }
        result
    }

    fn exchange(
        &mut self,
        request: Call,
        data: &[u8],
        payload: &mut [u8],
    ) -> Result<(u8, u32), PagerError> {
        let mut frame = Vec::with_capacity(CALL_LEN + data.len());
        frame.extend_from_slice(&request.encode());
        frame.extend_from_slice(data);
        self.stream
            .write_all(&frame)
            .map_err(|e| self.io_failure(e))?;
        let (status, n) =
            wire::read_reply_header(&mut self.stream).map_err(|e| self.io_failure(e))?;
        let op = request.op;
        match status {
            REPLY_PROVIDED if op == OP_DATA_REQUEST => {
                if n as usize != payload.len() {
                    return Err(self.bad(format!(
                        "data_provided of {n} bytes for a request of {}",
                        payload.len()
                    )));
                }
                self.stream
                    .read_exact(payload)
                    .map_err(|e| self.io_failure(e))?;
            }
            REPLY_UNAVAILABLE if op == OP_DATA_REQUEST && n == 0 => {}
            REPLY_DONE if (op == OP_DATA_WRITE || op == OP_SYNC) && n == 0 => {}
            REPLY_LOCK if op == OP_DATA_UNLOCK && access_of(n).is_some() => {}
            REPLY_ERROR if n <= MAX_ERROR_TEXT => {
                let what =
                    wire::read_error_text(&mut self.stream, n).map_err(|e| self.io_failure(e))?;
                // The pager answered: the connection is in step, only this call failed.
                return Err(PagerError::Remote {
                    pager: self.name.clone(),
                    what,
                });
            }
            other => {
                return Err(self.bad(format!(
                    "reply status {other} with length {n} to a call of op {op}"
                )));
            }
        }
        Ok((status, n))
    }
}

impl PagerError {
    /// The same failure again, for the calls after a connection broke.
    fn clone_failure(&self) -> PagerError {
        match self {
            PagerError::Lost { pager, reason } => PagerError::Lost {
                pager: pager.clone(),
                reason: reason.clone(),
            },
            PagerError::Timeout { pager, after } => PagerError::Timeout {
                pager: pager.clone(),
                after: *after,
            },
            PagerError::BadReply { pager, what } => PagerError::Lost {
                pager: pager.clone(),
                reason: format!("the connection is out of step after: {what}"),
            },
            other => PagerError::Lost {
                pager: String::new(),
                reason: other.to_string(),
            },
        }
    }
}

impl Pager for RemotePager {
    fn data_request(&mut self, first: PageNo, out: &mut [u8]) -> Result<Supply, PagerError> {
        let len = u32::try_from(out.len())
            .ok()
            .filter(|&l| l as usize % PAGE_SIZE == 0 && l > 0)
            .filter(|&l| l / PAGE_SIZE as u32 <= MAX_RUN_PAGES)
            .ok_or_else(|| self.bad(format!("a data_request of {} bytes", out.len())))?;
        let (status, _) =
            self.call(request(OP_DATA_REQUEST, first, len, Access::None), &[], out)?;
        Ok(if status == REPLY_PROVIDED {
            Supply::DataProvided
        } else {
            Supply::DataUnavailable
        })
    }

    fn data_write(&mut self, page: PageNo, data: &[u8]) -> Result<(), PagerError> {
        let mut full = [0u8; PAGE_SIZE];
        let n = data.len().min(PAGE_SIZE);
        full[..n].copy_from_slice(&data[..n]);
        let write = request(OP_DATA_WRITE, page, PAGE_SIZE as u32, Access::None);
        self.call(write, &full, &mut []).map(|_| ())
    }

    fn sync(&mut self) -> Result<(), PagerError> {
        self.call(request(OP_SYNC, 0, 0, Access::None), &[], &mut [])
            .map(|_| ())
    }

    fn data_unlock(&mut self, page: PageNo, access: Access) -> Result<Access, PagerError> {
        let (_, code) = self.call(request(OP_DATA_UNLOCK, page, 0, access), &[], &mut [])?;
        Ok(access_of(code).unwrap_or(Access::None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pager::PagerServer;
    use std::os::unix::net::UnixListener;

    /// A pager of 4 pages in memory that locks page 2 read-only and refuses to unlock it.
    struct Memory(Vec<u8>);

    impl Pager for Memory {
        fn data_request(&mut self, first: PageNo, out: &mut [u8]) -> Result<Supply, PagerError> {
            let start = first as usize * PAGE_SIZE;
            if start >= self.0.len() {
                return Ok(Supply::DataUnavailable);
            }
            let n = out.len().min(self.0.len() - start);
            out[..n].copy_from_slice(&self.0[start..start + n]);
            out[n..].fill(0);
            Ok(Supply::DataProvided)
        }
        fn data_write(&mut self, page: PageNo, data: &[u8]) -> Result<(), PagerError> {
            let start = page as usize * PAGE_SIZE;
            if start < self.0.len() {
                self.0[start..start + PAGE_SIZE].copy_from_slice(data);
            }
            Ok(())
        }
        fn sync(&mut self) -> Result<(), PagerError> {
            Ok(())
        }
        fn data_unlock(&mut self, page: PageNo, access: Access) -> Result<Access, PagerError> {
            Ok(if page == 2 { Access::Read } else { access })
        }
    }

    fn served() -> (tempfile_dir::Dir, RemotePager) {
        let dir = tempfile_dir::Dir::new();
        let path = dir.0.join("pager.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let server = PagerServer::new(Memory(vec![7u8; 4 * PAGE_SIZE]));
        std::thread::spawn(move || server.serve(listener));
        let client = RemotePager::connect(&path, "memory", Duration::from_secs(10)).unwrap();
        (dir, client)
    }

    mod tempfile_dir {
        /// A directory of this test's own, removed at drop.
        pub struct Dir(pub std::path::PathBuf);
        impl Dir {
            pub fn new() -> Dir {
                static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
                let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let d = std::env::temp_dir()
                    .join(format!("memlink-remote-pager-{}-{n}", std::process::id()));
                std::fs::create_dir_all(&d).unwrap();
                Dir(d)
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    #[test]
    fn calls_travel_to_the_pager_and_back() {
        let (_dir, mut pager) = served();
        let mut run = vec![0u8; 2 * PAGE_SIZE];
        assert_eq!(
            pager.data_request(1, &mut run).unwrap(),
            Supply::DataProvided
        );
        assert!(run.iter().all(|&b| b == 7));
        pager.data_write(1, &[9u8; PAGE_SIZE]).unwrap();
        pager.sync().unwrap();
        let mut page = vec![0u8; PAGE_SIZE];
        pager.data_request(1, &mut page).unwrap();
        assert!(page.iter().all(|&b| b == 9));
        assert_eq!(
            pager.data_request(8, &mut page).unwrap(),
            Supply::DataUnavailable
        );
        assert_eq!(pager.data_unlock(1, Access::Write).unwrap(), Access::Write);
        assert_eq!(pager.data_unlock(2, Access::Write).unwrap(), Access::Read);
        // A request the protocol does not allow never leaves the node.
        let mut odd = vec![0u8; 100];
        assert!(matches!(
            pager.data_request(0, &mut odd),
            Err(PagerError::BadReply { .. })
        ));
    }

    #[test]
    fn a_request_against_the_protocol_ends_only_that_nodes_connection() {
        let (dir, mut good) = served();
        let path = dir.0.join("pager.sock");
        let request = |op: u8, page: u32, len: u32, access: u8| {
            let mut f = vec![op];
            f.extend_from_slice(&page.to_le_bytes());
            f.extend_from_slice(&len.to_le_bytes());
            f.push(access);
            f
        };
        for bad in [
            request(9, 0, 0, 0),                 // unknown op
            request(OP_DATA_REQUEST, 0, 100, 0), // not whole pages
            request(OP_DATA_REQUEST, 0, 0, 0),   // no pages
            request(
                OP_DATA_REQUEST,
                0,
                (MAX_RUN_PAGES + 1) * PAGE_SIZE as u32,
                0,
            ), // too long
            request(OP_DATA_REQUEST, u32::MAX, PAGE_SIZE as u32 * 2, 0), // wraps
            request(OP_DATA_WRITE, 0, 8, 0),     // not one page
            request(OP_SYNC, 0, 0, 7),           // unknown access
        ] {
            let mut raw = UnixStream::connect(&path).unwrap();
            raw.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            raw.write_all(&bad).unwrap();
            let mut reply = [0u8; 1];
            assert_eq!(raw.read(&mut reply).unwrap(), 0, "{bad:?}: not closed");
        }
        // The other nodes go on.
        let mut page = vec![0u8; PAGE_SIZE];
        assert_eq!(
            good.data_request(0, &mut page).unwrap(),
            Supply::DataProvided
        );
    }

    #[test]
    fn a_pager_that_is_gone_or_silent_fails_the_call_by_name() {
        let dir = tempfile_dir::Dir::new();
        let path = dir.0.join("silent.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let mut pager = RemotePager::connect(&path, "silent", Duration::from_millis(50)).unwrap();
        // Accepted (by the kernel's backlog) but never answered.
        let mut page = vec![0u8; PAGE_SIZE];
        match pager.data_request(0, &mut page) {
            Err(PagerError::Timeout { pager, .. }) => assert_eq!(pager, "silent"),
            other => panic!("{other:?}"),
        }
        // Every later call fails the same way: the connection is out of step.
        assert!(matches!(pager.sync(), Err(PagerError::Timeout { .. })));
        let (conn, _) = listener.accept().unwrap();
        drop(conn);
        let mut other = RemotePager::connect(&path, "gone", Duration::from_secs(10)).unwrap();
        let (conn, _) = listener.accept().unwrap();
        drop(conn);
        match other.data_request(0, &mut page) {
            Err(PagerError::Lost { pager, .. }) => assert_eq!(pager, "gone"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_node_waits_for_a_pager_that_does_not_listen_yet() {
        let dir = tempfile_dir::Dir::new();
        let path = dir.0.join("late.sock");
        // Nothing there: a node that does not wait fails at once, naming the pager.
        match RemotePager::connect(&path, "late", Duration::from_secs(10)) {
            Err(PagerError::Lost { pager, reason }) => {
                assert_eq!(pager, "late");
                assert!(reason.contains("cannot connect"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        // A stale socket (nothing listens), then the pager comes: the node waits for it.
        // The pause only makes the node try while nothing listens; it succeeds whenever the
        // pager comes within its 60 s.
        drop(UnixListener::bind(&path).unwrap());
        let waiting = {
            let path = path.clone();
            std::thread::spawn(move || {
                RemotePager::connect_within(
                    &path,
                    "late",
                    Duration::from_secs(10),
                    Duration::from_secs(60),
                )
            })
        };
        std::thread::sleep(Duration::from_millis(100));
        std::fs::remove_file(&path).unwrap();
        let listener = UnixListener::bind(&path).unwrap();
        let server = PagerServer::new(Memory(vec![5u8; PAGE_SIZE]));
        std::thread::spawn(move || server.serve(listener));
        let mut pager = waiting
            .join()
            .unwrap()
            .expect("the node waited for its pager");
        let mut page = vec![0u8; PAGE_SIZE];
        assert_eq!(
            pager.data_request(0, &mut page).unwrap(),
            Supply::DataProvided
        );
        assert!(page.iter().all(|&b| b == 5));
    }

    #[test]
    fn a_reply_against_the_protocol_is_refused() {
        let dir = tempfile_dir::Dir::new();
        let path = dir.0.join("liar.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let mut pager = RemotePager::connect(&path, "liar", Duration::from_secs(10)).unwrap();
        let (mut conn, _) = listener.accept().unwrap();
        std::thread::spawn(move || {
            let mut header = [0u8; CALL_LEN];
            conn.read_exact(&mut header).unwrap();
            // Claims a page and a half for a one-page request.
            let _ = conn.write_all(&wire::reply_frame(
                REPLY_PROVIDED,
                (PAGE_SIZE * 3 / 2) as u32,
                &[],
            ));
        });
        let mut page = vec![0u8; PAGE_SIZE];
        assert!(matches!(
            pager.data_request(0, &mut page),
            Err(PagerError::BadReply { .. })
        ));
        assert!(matches!(pager.sync(), Err(PagerError::Lost { .. })));
    }
}
