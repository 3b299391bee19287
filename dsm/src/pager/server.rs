//! [`PagerServer`]: a [`Pager`] served to the nodes over a unix-domain socket, the pager's
//! side of [`super::remote`] (the node's calls) and [`super::commands`] (the pager's
//! commands).
//!
//! Trust: a node is not trusted. The server takes a request only with a known op, a length
//! that is a whole number of pages of at most [`MAX_RUN_PAGES`] pages (a `data_write`:
//! exactly one page), a known access and a page range that does not wrap; anything else
//! closes that node's connection (said on stderr and counted in [`ServerStats::dropped`]),
//! and the other nodes go on. The pager is never handed a partial page.

use std::io::{self, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::commands::{Links, PagerCommands};
use super::wire::{
    self, CALL_LEN, Call, MAX_RUN_PAGES, OP_DATA_REQUEST, OP_DATA_UNLOCK, OP_DATA_WRITE, OP_HELLO,
    OP_SYNC, REPLY_DONE, REPLY_LOCK, REPLY_PROVIDED, REPLY_UNAVAILABLE, access_code, access_of,
};
use super::{Pager, PagerError, Supply};
use crate::types::PAGE_SIZE;

/// What a [`PagerServer`] has done so far ([`PagerServer::stats`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServerStats {
    /// Nodes served so far: connections that made a call that keeps to the protocol.
    pub nodes_seen: u64,
    /// Connections open now: nodes' call connections, and connections that have not said
    /// yet what they are (a command link leaves this count once its node said hello).
    pub connections_open: u64,
    /// Pages the pager provided (`data_provided`).
    pub pages_provided: u64,
    /// Pages the pager had no data for (`data_unavailable`: zeros).
    pub pages_unavailable: u64,
    /// Pages written to the pager (`data_write`).
    pub pages_written: u64,
    /// `data_unlock` calls answered.
    pub unlocks: u64,
    /// Calls the pager failed (each answered with its error).
    pub failures: u64,
    /// Connections dropped because the node broke the protocol.
    pub dropped: u64,
}

impl std::fmt::Display for ServerStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "nodes seen {}, connections open {}; pages provided {}, unavailable {}, \
             written {}; unlocks {}; failures {}; connections dropped {}",
            self.nodes_seen,
            self.connections_open,
            self.pages_provided,
            self.pages_unavailable,
            self.pages_written,
            self.unlocks,
            self.failures,
            self.dropped
        )
    }
}

/// The counters of a server, and a wake-up for whoever waits for them to change.
#[derive(Default)]
struct Activity {
    stats: Mutex<ServerStats>,
    changed: Condvar,
}

impl Activity {
    fn lock(&self) -> MutexGuard<'_, ServerStats> {
        self.stats.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn count(&self, f: impl FnOnce(&mut ServerStats)) {
        f(&mut self.lock());
        self.changed.notify_all();
    }
}

/// Serves a [`Pager`] to the nodes that connect (see the module docs): one thread per
/// node's connection, the calls of all of them made on the one pager in turn. The pager's
/// own commands to the nodes go through [`PagerServer::commands`], on the second
/// connection each node opens for them ([`super::commands`]).
pub struct PagerServer<P> {
    pager: Arc<Mutex<P>>,
    links: Arc<Links>,
    activity: Arc<Activity>,
}

impl<P: Pager + 'static> PagerServer<P> {
    /// A server of `pager`.
    pub fn new(pager: P) -> PagerServer<P> {
        PagerServer {
            pager: Arc::new(Mutex::new(pager)),
            links: Arc::default(),
            activity: Arc::default(),
        }
    }

    /// The pager's commands to the nodes that take them (`data_lock`, `flush_request`,
    /// `clean_request`, `cache`; see [`super::commands`]). Call them from outside the
    /// pager's own calls.
    pub fn commands(&self) -> PagerCommands {
        PagerCommands::new(Arc::clone(&self.links))
    }

    /// What the server has done so far.
    pub fn stats(&self) -> ServerStats {
        *self.activity.lock()
    }

    /// Waits at most `within` until the stats differ from `seen`; the stats then.
    pub fn wait_for_change(&self, seen: ServerStats, within: Duration) -> ServerStats {
        let end = Instant::now() + within;
        let mut stats = self.activity.lock();
        while *stats == seen {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            stats = self
                .activity
                .changed
                .wait_timeout(stats, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        *stats
    }

    /// Accept nodes on `listener` and serve each on a thread of its own, until accepting
    /// fails (the listener is closed). A node whose request breaks the protocol loses its
    /// connection (said on stderr); the others go on.
    pub fn serve(&self, listener: UnixListener) -> io::Result<()> {
        loop {
            let (stream, _) = listener.accept()?;
            let pager = Arc::clone(&self.pager);
            let links = Arc::clone(&self.links);
            let activity = Arc::clone(&self.activity);
            std::thread::Builder::new()
                .name("memlink-pager".into())
                .spawn(move || {
                    if let Err(why) = serve_connection(&pager, &links, &activity, stream) {
                        eprintln!("memlink-dsm pager: dropped a node's connection: {why}");
                    }
                })?;
        }
    }
}

/// One node's calls until it goes or breaks the protocol, or its command link's hello (kept
/// until this returns), as [`PagerServer::serve`] takes a connection.
pub(crate) fn serve_node<P: Pager>(pager: &Mutex<P>, stream: UnixStream) {
    let links = Links::default();
    let _ = serve_connection(pager, &links, &Activity::default(), stream);
}

/// A node's connection: its calls, or (a hello first) the link its pager's commands take.
/// `Err`: why the node's connection was dropped (it broke the protocol).
fn serve_connection<P: Pager>(
    pager: &Mutex<P>,
    links: &Links,
    activity: &Activity,
    mut stream: UnixStream,
) -> Result<(), String> {
    // Open from now: a node connected before its first call (it may make none for a
    // while) keeps the pager from counting it as gone.
    activity.count(|s| s.connections_open += 1);
    let mut frame = [0u8; CALL_LEN];
    let ended = if stream.read_exact(&mut frame).is_err() {
        // Gone before its first call (or a probe whether anyone serves here).
        Ok(())
    } else if frame[0] == OP_HELLO {
        links.join(&frame, stream);
        Ok(())
    } else {
        let mut node = NodeSeen {
            activity,
            counted: false,
        };
        serve_calls(pager, &mut node, &mut stream, frame)
    };
    activity.count(|s| {
        s.connections_open -= 1;
        s.dropped += u64::from(ended.is_err());
    });
    ended
}

/// A connection's node, counted in the stats from its first call that keeps to the
/// protocol (a stray connection that sends garbage at once is no node).
struct NodeSeen<'a> {
    activity: &'a Activity,
    counted: bool,
}

impl NodeSeen<'_> {
    /// Counts `f` in the stats, and the node if not yet.
    fn count(&mut self, f: impl FnOnce(&mut ServerStats)) {
        let new = !std::mem::replace(&mut self.counted, true);
        self.activity.count(|s| {
            s.nodes_seen += u64::from(new);
            f(s)
        });
    }
}

/// The calls on `stream` from the one in `frame` on, answered in order, until the node goes
/// (`Ok`) or breaks the protocol (`Err`: what it sent).
fn serve_calls<P: Pager>(
    pager: &Mutex<P>,
    activity: &mut NodeSeen<'_>,
    stream: &mut UnixStream,
    mut frame: [u8; CALL_LEN],
) -> Result<(), String> {
    let mut buf = Vec::new();
    loop {
        let Call {
            op,
            first: page,
            second: len,
            arg,
        } = Call::decode(&frame);
        let access = access_of(u32::from(arg));
        let pages = len / PAGE_SIZE as u32;
        let whole = len % PAGE_SIZE as u32 == 0 && page.checked_add(pages).is_some();
        let reply = match (op, access) {
            (OP_DATA_REQUEST, Some(_)) if whole && (1..=MAX_RUN_PAGES).contains(&pages) => {
                buf.resize(len as usize, 0);
                let r = lock_pager(pager).data_request(page, &mut buf);
                match r {
                    Ok(Supply::DataProvided) => {
                        activity.count(|s| s.pages_provided += u64::from(pages));
                        wire::reply_frame(REPLY_PROVIDED, len, &buf)
                    }
                    Ok(Supply::DataUnavailable) => {
                        activity.count(|s| s.pages_unavailable += u64::from(pages));
                        wire::reply_frame(REPLY_UNAVAILABLE, 0, &[])
                    }
                    Err(e) => failed(activity, &e),
                }
            }
            (OP_DATA_WRITE, Some(_)) if len as usize == PAGE_SIZE => {
                buf.resize(PAGE_SIZE, 0);
                if stream.read_exact(&mut buf).is_err() {
                    // Gone in the middle of its page: nothing was written.
                    return Ok(());
                }
                match lock_pager(pager).data_write(page, &buf) {
                    Ok(()) => {
                        activity.count(|s| s.pages_written += 1);
                        wire::reply_frame(REPLY_DONE, 0, &[])
                    }
                    Err(e) => failed(activity, &e),
                }
            }
            (OP_SYNC, Some(_)) if len == 0 => match lock_pager(pager).sync() {
                Ok(()) => {
                    activity.count(|_| {});
                    wire::reply_frame(REPLY_DONE, 0, &[])
                }
                Err(e) => failed(activity, &e),
            },
            (OP_DATA_UNLOCK, Some(wanted)) if len == 0 => {
                match lock_pager(pager).data_unlock(page, wanted) {
                    Ok(lock) => {
                        activity.count(|s| s.unlocks += 1);
                        wire::reply_frame(REPLY_LOCK, u32::from(access_code(lock)), &[])
                    }
                    Err(e) => failed(activity, &e),
                }
            }
            // A request against the protocol: this node's connection ends.
            _ => {
                return Err(format!(
                    "a request against the protocol: op {op}, page {page}, length {len}, \
                     access {arg}"
                ));
            }
        };
        if stream.write_all(&reply).is_err() {
            return Ok(());
        }
        if stream.read_exact(&mut frame).is_err() {
            return Ok(());
        }
    }
}

/// The error reply of a call the pager failed, counted.
fn failed(activity: &mut NodeSeen<'_>, e: &PagerError) -> Vec<u8> {
    activity.count(|s| s.failures += 1);
    wire::error_reply(&e.to_string())
}

fn lock_pager<P>(pager: &Mutex<P>) -> MutexGuard<'_, P> {
    // A call that panicked left the pager as it was between calls: go on with it.
    pager.lock().unwrap_or_else(|p| p.into_inner())
}
