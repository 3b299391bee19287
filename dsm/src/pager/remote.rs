//! A pager in its own process: [`PagerServer`] serves any [`Pager`] over a unix-domain
//! socket, and [`RemotePager`] is the node's side, a [`Pager`] whose calls are messages on
//! that socket (Mach's pagers are reached only through ports, and may run anywhere).
//!
//! One connection per node; each call is one request frame and one reply frame, in order:
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
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::commands::{Links, OP_HELLO, PagerCommands};
use super::{Pager, PagerError, Supply};
use crate::types::{Access, PAGE_SIZE, PageNo};

/// The most pages one `data_request` may ask for (4 MiB; read-ahead asks for at most 1 MiB).
pub const MAX_RUN_PAGES: u32 = 1024;
/// The longest error text a pager may send.
pub const MAX_ERROR_TEXT: u32 = 4096;

const OP_DATA_REQUEST: u8 = 1;
const OP_DATA_WRITE: u8 = 2;
const OP_SYNC: u8 = 3;
const OP_DATA_UNLOCK: u8 = 4;

pub(crate) const REPLY_PROVIDED: u8 = 0;
pub(crate) const REPLY_UNAVAILABLE: u8 = 1;
pub(crate) const REPLY_DONE: u8 = 2;
pub(crate) const REPLY_LOCK: u8 = 3;
pub(crate) const REPLY_ERROR: u8 = 4;

const REQUEST_HEADER: usize = 10;
pub(crate) const REPLY_HEADER: usize = 5;

fn access_code(a: Access) -> u8 {
    match a {
        Access::None => 0,
        Access::Read => 1,
        Access::Write => 2,
    }
}

fn access_of(code: u32) -> Option<Access> {
    match code {
        0 => Some(Access::None),
        1 => Some(Access::Read),
        2 => Some(Access::Write),
        _ => None,
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
        let lost = |e: io::Error| PagerError::Lost {
            pager: name.to_string(),
            reason: format!("cannot connect to {}: {e}", path.display()),
        };
        let stream = UnixStream::connect(path).map_err(lost)?;
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

    /// One call: the request, then the reply's status and length (the payload of a
    /// `data_provided` read into `payload`, whose length it must have). A failure other than
    /// the pager's own error ([`PagerError::Remote`]) ends the connection.
    fn call(
        &mut self,
        op: u8,
        page: PageNo,
        len: u32,
        access: Access,
        data: &[u8],
        payload: &mut [u8],
    ) -> Result<(u8, u32), PagerError> {
        if let Some(e) = &self.broken {
            return Err(e.clone_failure());
        }
        let result = self.exchange(op, page, len, access, data, payload);
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
        op: u8,
        page: PageNo,
        len: u32,
        access: Access,
        data: &[u8],
        payload: &mut [u8],
    ) -> Result<(u8, u32), PagerError> {
        let mut frame = Vec::with_capacity(REQUEST_HEADER + data.len());
        frame.push(op);
        frame.extend_from_slice(&page.to_le_bytes());
        frame.extend_from_slice(&len.to_le_bytes());
        frame.push(access_code(access));
        frame.extend_from_slice(data);
        self.stream
            .write_all(&frame)
            .map_err(|e| self.io_failure(e))?;
        let mut header = [0u8; REPLY_HEADER];
        self.stream
            .read_exact(&mut header)
            .map_err(|e| self.io_failure(e))?;
        let status = header[0];
        let n = u32::from_le_bytes([header[1], header[2], header[3], header[4]]);
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
                let mut text = vec![0u8; n as usize];
                self.stream
                    .read_exact(&mut text)
                    .map_err(|e| self.io_failure(e))?;
                // The pager answered: the connection is in step, only this call failed.
                return Err(PagerError::Remote {
                    pager: self.name.clone(),
                    what: String::from_utf8_lossy(&text).into_owned(),
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
        let (status, _) = self.call(OP_DATA_REQUEST, first, len, Access::None, &[], out)?;
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
        self.call(
            OP_DATA_WRITE,
            page,
            PAGE_SIZE as u32,
            Access::None,
            &full,
            &mut [],
        )
        .map(|_| ())
    }

    fn sync(&mut self) -> Result<(), PagerError> {
        self.call(OP_SYNC, 0, 0, Access::None, &[], &mut [])
            .map(|_| ())
    }

    fn data_unlock(&mut self, page: PageNo, access: Access) -> Result<Access, PagerError> {
        let (_, code) = self.call(OP_DATA_UNLOCK, page, 0, access, &[], &mut [])?;
        Ok(access_of(code).unwrap_or(Access::None))
    }
}

/// Serves a [`Pager`] to the nodes that connect (see the module docs): one thread per
/// node's connection, the calls of all of them made on the one pager in turn. The pager's
/// own commands to the nodes go through [`PagerServer::commands`], on the second
/// connection each node opens for them ([`super::commands`]).
pub struct PagerServer<P> {
    pager: Arc<Mutex<P>>,
    links: Arc<Links>,
}

impl<P: Pager + 'static> PagerServer<P> {
    /// A server of `pager`.
    pub fn new(pager: P) -> PagerServer<P> {
        PagerServer {
            pager: Arc::new(Mutex::new(pager)),
            links: Arc::default(),
        }
    }

    /// The pager's commands to the nodes that take them (`data_lock`, `flush_request`,
    /// `clean_request`, `cache`; see [`super::commands`]). Call them from outside the
    /// pager's own calls.
    pub fn commands(&self) -> PagerCommands {
        PagerCommands::new(Arc::clone(&self.links))
    }

    /// Accept nodes on `listener` and serve each on a thread of its own, until accepting
    /// fails (the listener is closed). A node whose request breaks the protocol loses its
    /// connection; the others go on.
    pub fn serve(&self, listener: UnixListener) -> io::Result<()> {
        loop {
            let (stream, _) = listener.accept()?;
            let pager = Arc::clone(&self.pager);
            let links = Arc::clone(&self.links);
            std::thread::Builder::new()
                .name("memlink-pager".into())
                .spawn(move || serve_connection(&pager, Some(&links), stream))?;
        }
    }
}

/// One node's calls until it goes or breaks the protocol.
pub(crate) fn serve_node<P: Pager>(pager: &Mutex<P>, stream: UnixStream) {
    serve_connection(pager, None, stream)
}

/// A node's connection: its calls, or (a hello first) the link its pager's commands take.
fn serve_connection<P: Pager>(pager: &Mutex<P>, links: Option<&Links>, mut stream: UnixStream) {
    let mut buf = Vec::new();
    let mut first = true;
    loop {
        let mut header = [0u8; REQUEST_HEADER];
        if stream.read_exact(&mut header).is_err() {
            return;
        }
        if std::mem::take(&mut first) && header[0] == OP_HELLO {
            if let Some(links) = links {
                links.join(&header, stream);
            }
            return;
        }
        let op = header[0];
        let page = u32::from_le_bytes([header[1], header[2], header[3], header[4]]);
        let len = u32::from_le_bytes([header[5], header[6], header[7], header[8]]);
        let access = access_of(header[9] as u32);
        let pages = len / PAGE_SIZE as u32;
        let whole = len % PAGE_SIZE as u32 == 0 && page.checked_add(pages).is_some();
        let reply = match (op, access) {
            (OP_DATA_REQUEST, Some(_)) if whole && (1..=MAX_RUN_PAGES).contains(&pages) => {
                buf.resize(len as usize, 0);
                let r = lock_pager(pager).data_request(page, &mut buf);
                match r {
                    Ok(Supply::DataProvided) => frame(REPLY_PROVIDED, len, &buf),
                    Ok(Supply::DataUnavailable) => frame(REPLY_UNAVAILABLE, 0, &[]),
                    Err(e) => error_frame(&e),
                }
            }
            (OP_DATA_WRITE, Some(_)) if len as usize == PAGE_SIZE => {
                buf.resize(PAGE_SIZE, 0);
                if stream.read_exact(&mut buf).is_err() {
                    return;
                }
                match lock_pager(pager).data_write(page, &buf) {
                    Ok(()) => frame(REPLY_DONE, 0, &[]),
                    Err(e) => error_frame(&e),
                }
            }
            (OP_SYNC, Some(_)) if len == 0 => match lock_pager(pager).sync() {
                Ok(()) => frame(REPLY_DONE, 0, &[]),
                Err(e) => error_frame(&e),
            },
            (OP_DATA_UNLOCK, Some(wanted)) if len == 0 => {
                match lock_pager(pager).data_unlock(page, wanted) {
                    Ok(lock) => frame(REPLY_LOCK, access_code(lock) as u32, &[]),
                    Err(e) => error_frame(&e),
                }
            }
            // A request against the protocol: this node's connection ends.
            _ => return,
        };
        if stream.write_all(&reply).is_err() {
            return;
        }
    }
}

fn lock_pager<P>(pager: &Mutex<P>) -> std::sync::MutexGuard<'_, P> {
    // A call that panicked left the pager as it was between calls: go on with it.
    pager.lock().unwrap_or_else(|p| p.into_inner())
}

fn frame(status: u8, len: u32, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(REPLY_HEADER + payload.len());
    f.push(status);
    f.extend_from_slice(&len.to_le_bytes());
    f.extend_from_slice(payload);
    f
}

fn error_frame(e: &PagerError) -> Vec<u8> {
    let mut text = e.to_string().into_bytes();
    text.truncate(MAX_ERROR_TEXT as usize);
    frame(REPLY_ERROR, text.len() as u32, &text)
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn a_reply_against_the_protocol_is_refused() {
        let dir = tempfile_dir::Dir::new();
        let path = dir.0.join("liar.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let mut pager = RemotePager::connect(&path, "liar", Duration::from_secs(10)).unwrap();
        let (mut conn, _) = listener.accept().unwrap();
        std::thread::spawn(move || {
            let mut header = [0u8; REQUEST_HEADER];
            conn.read_exact(&mut header).unwrap();
            // Claims a page and a half for a one-page request.
            let _ = conn.write_all(&frame(REPLY_PROVIDED, (PAGE_SIZE * 3 / 2) as u32, &[]));
        });
        let mut page = vec![0u8; PAGE_SIZE];
        assert!(matches!(
            pager.data_request(0, &mut page),
            Err(PagerError::BadReply { .. })
        ));
        assert!(matches!(pager.sync(), Err(PagerError::Lost { .. })));
    }
}
