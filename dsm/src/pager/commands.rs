//! The pager's commands to the nodes (Mach's data manager → kernel calls:
//! `memory_object_lock_request` in its forms `data_lock`, `flush_request` and
//! `clean_request`, and `memory_object_set_attributes`' `cache`), from a pager in its own
//! process: [`PagerCommands`] on the pager's side, [`crate::node::NodeRuntime::take_pager_commands`]
//! on each node's.
//!
//! Each node opens a second connection to the pager's socket for them, and says first which
//! node it is and how many pages its region has (a hello the server acknowledges); then the
//! pager sends commands and the node answers each, in order:
//!
//! ```text
//! hello:   op 0x10 | node u32 | pages u32 | 0          (node → pager; reply: done, len 0)
//! command: op u8 | first u32 | count u32 | arg u8      (pager → node)
//!          0x11 data_lock (arg: the access 0 none, 1 read, 2 write)
//!          0x12 flush_request, 0x13 clean_request (arg 0)
//!          0x14 cache (first, count 0; arg: 1 keep, 0 release)
//! reply:   status u8 | len u32 | payload               (node → pager)
//!          done: len is the pages the command changed (written, dropped, locked)
//!          error: len bytes of text, at most MAX_ERROR_TEXT
//! ```
//!
//! Trust: both sides check what the other sends. A node takes a command only with a known
//! op, an argument that fits it and a page range inside its region that does not wrap
//! ([`decode_command`]); anything else ends the connection (the pager's commands stop, the
//! node goes on). The pager takes a reply only with a known status and a length that fits
//! it: a count of at most the command's pages, a bounded error text; anything else, an
//! end of stream or no answer within its timeout drops that node's link
//! ([`CommandError`]), the other nodes' links go on.
//!
//! A command is carried out on the node by its own thread, as the node's calls
//! ([`crate::node::NodeRuntime::clean_request`], ...); one that writes pages back calls the
//! pager (`data_write`) meanwhile, so [`PagerCommands`] must not be called from inside the
//! pager's own calls (it would wait for itself until its timeout).

use std::fmt;
use std::io::{self, Read, Write};
use std::ops::Range;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::wire::{
    self, CALL_LEN, Call, MAX_ERROR_TEXT, OP_HELLO, REPLY_DONE, REPLY_ERROR, access_code,
};
use crate::types::{Access, NodeId, PageNo};

const CMD_DATA_LOCK: u8 = 0x11;
const CMD_FLUSH_REQUEST: u8 = 0x12;
const CMD_CLEAN_REQUEST: u8 = 0x13;
const CMD_CACHE: u8 = 0x14;

/// The length of a command (and of a hello) frame.
pub const COMMAND_LEN: usize = CALL_LEN;

/// A pager's command to a node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// `data_lock`: local threads get at most `lock` access to `pages` from now on.
    DataLock {
        /// The pages.
        pages: Range<PageNo>,
        /// The most access they may have.
        lock: Access,
    },
    /// `flush_request`: the node gives `pages` up (dirty ones written back first).
    FlushRequest {
        /// The pages.
        pages: Range<PageNo>,
    },
    /// `clean_request`: the node writes the dirty pages of `pages` back and keeps them.
    CleanRequest {
        /// The pages.
        pages: Range<PageNo>,
    },
    /// `cache`: whether the node may keep pages after the application releases them.
    Cache {
        /// Keep them.
        keep: bool,
    },
}

impl Command {
    /// The command's frame.
    pub fn encode(&self) -> [u8; COMMAND_LEN] {
        let (op, pages, arg) = match self {
            Command::DataLock { pages, lock } => (CMD_DATA_LOCK, pages.clone(), access_code(*lock)),
            Command::FlushRequest { pages } => (CMD_FLUSH_REQUEST, pages.clone(), 0),
            Command::CleanRequest { pages } => (CMD_CLEAN_REQUEST, pages.clone(), 0),
            Command::Cache { keep } => (CMD_CACHE, 0..0, *keep as u8),
        };
        Call {
            op,
            first: pages.start,
            second: pages.end.saturating_sub(pages.start),
            arg,
        }
        .encode()
    }

    /// The most pages the command may report it changed.
    fn pages(&self) -> u32 {
        match self {
            Command::DataLock { pages, .. }
            | Command::FlushRequest { pages }
            | Command::CleanRequest { pages } => pages.end.saturating_sub(pages.start),
            Command::Cache { .. } => 0,
        }
    }
}

/// A command as a person types it (`memlink dsm pager --commands`): `clean FIRST END`,
/// `flush FIRST END`, `lock FIRST END none|read|write` (region pages `FIRST..END`) or
/// `cache on|off`. The error says what was wrong and what is expected.
impl std::str::FromStr for Command {
    type Err = String;

    fn from_str(line: &str) -> Result<Command, String> {
        const EXPECTED: &str = "expected clean FIRST END, flush FIRST END, \
                                lock FIRST END none|read|write or cache on|off";
        let words: Vec<&str> = line.split_whitespace().collect();
        let pages = |first: &str, end: &str| -> Result<Range<PageNo>, String> {
            match (first.parse::<PageNo>(), end.parse::<PageNo>()) {
                (Ok(first), Ok(end)) if first < end => Ok(first..end),
                _ => Err(format!(
                    "{first} {end} are not region pages FIRST END with FIRST < END"
                )),
            }
        };
        match words[..] {
            ["clean", first, end] => Ok(Command::CleanRequest {
                pages: pages(first, end)?,
            }),
            ["flush", first, end] => Ok(Command::FlushRequest {
                pages: pages(first, end)?,
            }),
            ["lock", first, end, lock] => {
                let lock = match lock {
                    "none" => Access::None,
                    "read" => Access::Read,
                    "write" => Access::Write,
                    other => return Err(format!("lock {other}: expected none, read or write")),
                };
                Ok(Command::DataLock {
                    pages: pages(first, end)?,
                    lock,
                })
            }
            ["cache", "on"] => Ok(Command::Cache { keep: true }),
            ["cache", "off"] => Ok(Command::Cache { keep: false }),
            _ => Err(format!("{line:?}: {EXPECTED}")),
        }
    }
}

/// The command in `frame`, for a node whose region has `page_count` pages; why not when
/// the frame breaks the protocol (see the module docs).
pub fn decode_command(frame: &[u8; COMMAND_LEN], page_count: u32) -> Result<Command, String> {
    let Call {
        op,
        first,
        second: count,
        arg,
    } = Call::decode(frame);
    let pages = || -> Result<Range<PageNo>, String> {
        match first.checked_add(count) {
            Some(end) if count > 0 && end <= page_count => Ok(first..end),
            _ => Err(format!(
                "pages {first} + {count} are not a range of the region's {page_count} pages"
            )),
        }
    };
    match (op, arg) {
        (CMD_DATA_LOCK, 0..=2) => Ok(Command::DataLock {
            pages: pages()?,
            lock: [Access::None, Access::Read, Access::Write][arg as usize],
        }),
        (CMD_FLUSH_REQUEST, 0) => Ok(Command::FlushRequest { pages: pages()? }),
        (CMD_CLEAN_REQUEST, 0) => Ok(Command::CleanRequest { pages: pages()? }),
        (CMD_CACHE, 0 | 1) if first == 0 && count == 0 => Ok(Command::Cache { keep: arg == 1 }),
        _ => Err(format!(
            "command {op:#x} with pages {first} + {count} and argument {arg}"
        )),
    }
}

/// A hello frame: node `node` with `pages` pages.
pub(crate) fn hello(node: NodeId, pages: u32) -> [u8; COMMAND_LEN] {
    Call {
        op: OP_HELLO,
        first: u32::from(node),
        second: pages,
        arg: 0,
    }
    .encode()
}

/// A reply frame: `Ok(n)` (n pages changed) or the error's text.
pub(crate) fn reply(result: Result<u32, String>) -> Vec<u8> {
    match result {
        Ok(n) => wire::reply_frame(REPLY_DONE, n, &[]),
        Err(text) => wire::error_reply(&text),
    }
}

/// Why a command did not reach a node, or failed there.
#[derive(Debug)]
pub enum CommandError {
    /// The node's link is gone (it closed, or broke the protocol before): the command was
    /// not carried out there. Its link is dropped.
    Gone {
        /// The node.
        node: NodeId,
        /// What was seen.
        reason: String,
    },
    /// The node did not answer within the timeout; its link is dropped.
    Timeout {
        /// The node.
        node: NodeId,
        /// How long the pager waited.
        after: Duration,
    },
    /// The node carried the command out and it failed there, for the reason it gave.
    Failed {
        /// The node.
        node: NodeId,
        /// What it said.
        what: String,
    },
    /// The node answered against the protocol; its link is dropped.
    BadReply {
        /// The node.
        node: NodeId,
        /// What was wrong.
        what: String,
    },
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CommandError::Gone { node, reason } => {
                write!(f, "node {node} takes no more commands ({reason})")
            }
            CommandError::Timeout { node, after } => {
                write!(f, "node {node} did not answer the command within {after:?}")
            }
            CommandError::Failed { node, what } => {
                write!(f, "the command failed at node {node}: {what}")
            }
            CommandError::BadReply { node, what } => {
                write!(f, "node {node} answered against the protocol: {what}")
            }
        }
    }
}

impl std::error::Error for CommandError {}

/// One node's command connection, at the pager.
struct NodeLink {
    node: NodeId,
    pages: u32,
    stream: UnixStream,
}

/// The nodes' command links at a pager server.
#[derive(Default)]
pub(crate) struct Links {
    nodes: Mutex<Vec<NodeLink>>,
    joined: Condvar,
}

impl Links {
    fn lock(&self) -> MutexGuard<'_, Vec<NodeLink>> {
        self.nodes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A node said hello on `stream` (the hello's `node` and `pages` fields, from the
    /// wire): acknowledge it and keep the link, in place of an older one of the same node.
    pub(crate) fn join(&self, frame: &[u8; COMMAND_LEN], mut stream: UnixStream) {
        let hello = Call::decode(frame);
        let (pages, Ok(node)) = (hello.second, NodeId::try_from(hello.first)) else {
            return;
        };
        if hello.arg != 0 || stream.write_all(&reply(Ok(0))).is_err() {
            return;
        }
        let mut nodes = self.lock();
        nodes.retain(|l| l.node != node);
        nodes.push(NodeLink {
            node,
            pages,
            stream,
        });
        nodes.sort_by_key(|l| l.node);
        self.joined.notify_all();
    }
}

/// The pager's side of its commands to the nodes (see the module docs), from
/// [`super::PagerServer::commands`]: each command goes to every node linked, one after the
/// other, and each node's answer comes back.
#[derive(Clone)]
pub struct PagerCommands {
    links: Arc<Links>,
    timeout: Duration,
}

impl PagerCommands {
    pub(crate) fn new(links: Arc<Links>) -> PagerCommands {
        PagerCommands {
            links,
            timeout: Duration::from_secs(20),
        }
    }

    /// Wait at most `timeout` for each node's answer (20 s unless set).
    pub fn with_timeout(mut self, timeout: Duration) -> PagerCommands {
        self.timeout = timeout;
        self
    }

    /// The nodes linked now.
    pub fn nodes(&self) -> Vec<NodeId> {
        self.links.lock().iter().map(|l| l.node).collect()
    }

    /// Wait until at least `count` nodes are linked, at most `within`; the nodes linked
    /// then.
    pub fn wait_for_nodes(&self, count: usize, within: Duration) -> Vec<NodeId> {
        let end = Instant::now() + within;
        let mut nodes = self.links.lock();
        while nodes.len() < count {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            nodes = self
                .links
                .joined
                .wait_timeout(nodes, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        nodes.iter().map(|l| l.node).collect()
    }

    /// `data_lock` of `pages` to `lock` at every node; each node's answer is the number of
    /// pages it locked.
    pub fn data_lock(
        &self,
        pages: Range<PageNo>,
        lock: Access,
    ) -> Vec<(NodeId, Result<u32, CommandError>)> {
        self.send(&Command::DataLock { pages, lock })
    }

    /// `flush_request` of `pages` at every node; each node's answer is the number of pages
    /// it gave up.
    pub fn flush_request(&self, pages: Range<PageNo>) -> Vec<(NodeId, Result<u32, CommandError>)> {
        self.send(&Command::FlushRequest { pages })
    }

    /// `clean_request` of `pages` at every node; each node's answer is the number of pages
    /// it wrote back.
    pub fn clean_request(&self, pages: Range<PageNo>) -> Vec<(NodeId, Result<u32, CommandError>)> {
        self.send(&Command::CleanRequest { pages })
    }

    /// `cache` at every node: whether it may keep pages after the application releases them.
    pub fn cache(&self, keep: bool) -> Vec<(NodeId, Result<u32, CommandError>)> {
        self.send(&Command::Cache { keep })
    }

    /// Send `cmd` to every node linked, in turn; a node whose link fails is dropped.
    pub fn send(&self, cmd: &Command) -> Vec<(NodeId, Result<u32, CommandError>)> {
        let mut nodes = self.links.lock();
        let mut results = Vec::with_capacity(nodes.len());
        let mut broken = Vec::new();
        for link in nodes.iter_mut() {
            let r = self.command(link, cmd);
            if matches!(
                r,
                Err(CommandError::Gone { .. }
                    | CommandError::Timeout { .. }
                    | CommandError::BadReply { .. })
            ) {
                broken.push(link.node);
            }
            results.push((link.node, r));
        }
        nodes.retain(|l| !broken.contains(&l.node));
        results
    }

    fn command(&self, link: &mut NodeLink, cmd: &Command) -> Result<u32, CommandError> {
        let node = link.node;
        let failure = |e: io::Error| match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => CommandError::Timeout {
                node,
                after: self.timeout,
            },
            _ => CommandError::Gone {
                node,
                reason: e.to_string(),
            },
        };
        let bad = |what: String| CommandError::BadReply { node, what };
        // The node would refuse a range outside its region (and close the link): say so here.
        if let Command::DataLock { pages, .. }
        | Command::FlushRequest { pages }
        | Command::CleanRequest { pages } = cmd
        {
            if pages.is_empty() || pages.end > link.pages {
                return Err(CommandError::Failed {
                    node,
                    what: format!(
                        "pages {pages:?} are not a range of its {} pages",
                        link.pages
                    ),
                });
            }
        }
        let stream = &mut link.stream;
        stream
            .set_read_timeout(Some(self.timeout))
            .and_then(|()| stream.set_write_timeout(Some(self.timeout)))
            .map_err(failure)?;
        stream.write_all(&cmd.encode()).map_err(failure)?;
        let (status, n) = wire::read_reply_header(stream).map_err(failure)?;
        match status {
            REPLY_DONE if n <= cmd.pages() => Ok(n),
            REPLY_ERROR if n <= MAX_ERROR_TEXT => Err(CommandError::Failed {
                node,
                what: wire::read_error_text(stream, n).map_err(failure)?,
            }),
            status => Err(bad(format!(
                "reply status {status} with length {n} to {cmd:?}"
            ))),
        }
    }
}

/// Read one command frame from `stream`; `Ok(None)` at the end of the stream.
pub(crate) fn read_command(stream: &mut impl Read) -> io::Result<Option<[u8; COMMAND_LEN]>> {
    let mut frame = [0u8; COMMAND_LEN];
    match stream.read_exact(&mut frame) {
        Ok(()) => Ok(Some(frame)),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_round_trip_and_bad_frames_are_refused() {
        for cmd in [
            Command::DataLock {
                pages: 3..9,
                lock: Access::Read,
            },
            Command::FlushRequest { pages: 0..16 },
            Command::CleanRequest { pages: 15..16 },
            Command::Cache { keep: false },
            Command::Cache { keep: true },
        ] {
            assert_eq!(decode_command(&cmd.encode(), 16), Ok(cmd));
        }
        let frame = |op: u8, first: u32, second: u32, arg: u8| {
            Call {
                op,
                first,
                second,
                arg,
            }
            .encode()
        };
        for (line, cmd) in [
            (
                "lock 3 9 read",
                Command::DataLock {
                    pages: 3..9,
                    lock: Access::Read,
                },
            ),
            (" clean 15  16", Command::CleanRequest { pages: 15..16 }),
            ("flush 0 16", Command::FlushRequest { pages: 0..16 }),
            ("cache off", Command::Cache { keep: false }),
        ] {
            assert_eq!(line.parse::<Command>(), Ok(cmd), "{line}");
        }
        for bad in [
            "clean 5 5",
            "flush 1",
            "lock 1 2 all",
            "cache maybe",
            "clean -1 4",
            "",
        ] {
            assert!(bad.parse::<Command>().is_err(), "{bad:?}");
        }
        for bad in [
            frame(0x99, 0, 1, 0),                     // unknown op
            frame(CMD_DATA_LOCK, 0, 1, 3),            // unknown access
            frame(CMD_FLUSH_REQUEST, 0, 0, 0),        // no pages
            frame(CMD_CLEAN_REQUEST, 10, 7, 0),       // past the region
            frame(CMD_CLEAN_REQUEST, u32::MAX, 2, 0), // wraps
            frame(CMD_CACHE, 0, 0, 2),                // not a bool
            frame(CMD_CACHE, 1, 0, 1),                // a cache names no pages
            frame(CMD_FLUSH_REQUEST, 0, 1, 1),        // an argument it has none of
            frame(OP_HELLO, 0, 16, 0),                // a hello is the node's
        ] {
            assert!(decode_command(&bad, 16).is_err(), "{bad:?}");
        }
    }
}
