//! The TCP transport: one connection per pair of nodes (TCP_NODELAY), set up all-to-all at
//! start. Node `i` dials every node `j < i` and accepts every node `j > i`; every connection
//! is admitted by the handshake of [`crate::admission`] (both ends prove the cluster key)
//! before any other frame is read. A [`Gate`] serves the accepting side; it keeps running
//! after start and refuses every further connection, garbage included, at a bounded cost, so
//! a stray client cannot disturb a running node.
//!
//! When a node dies, the survivors must name it, not a survivor that failed because of it and
//! left. So a loss is told to the peers before it is reported here: a reader that sees its
//! peer's connection break first sends every other peer a lost-node notice
//! ([`FrameKind::Lost`]), then delivers the loss; a notice received is passed on the same way
//! (only the first loss is ever told); a send that fails waits (at most
//! [`LOST_REPORT_WAIT`]) for the reader of that peer to report what happened to it; a reader
//! whose peer's connection breaks first waits (at most [`BREAK_BLAME_WAIT`]) for word of a loss
//! by another path, which then came first, before it blames that peer. Every
//! survivor's connection to a survivor that fails thus carries the notice before its end, and
//! a node that failed closes without a Leave. An orderly close sends Leave and then waits (at
//! most [`LINGER`]) until every peer has closed too, so the last messages the peers still send
//! (a confirmation that follows a served fault) meet an open connection, not a reset one.

use std::cell::Cell;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use super::frame::{Frame, FrameKind, HEADER_LEN, Header};
use super::notice::LostNotice;
use super::transport::{EventSource, EventSwitch, SendError, Transport, TransportEvent};
use crate::admission::{AdmitError, ClusterId, ClusterKey, Gate, Handshake, Refusal, dial};
use crate::types::NodeId;

/// The reader's buffer: a batch of page messages (4 KiB each) in one read.
const READ_BUFFER: usize = 64 * 1024;
/// Pause between two connection attempts to a peer that is not up yet.
const RETRY_PAUSE: Duration = Duration::from_millis(20);
/// How long a send that failed waits for the reader of that peer to report the loss (or the
/// notice of the node whose death made the peer leave).
pub const LOST_REPORT_WAIT: Duration = Duration::from_secs(1);
/// How long a reader whose peer's connection broke waits for word of another loss before it
/// blames that peer: a survivor that fails because another node died may close its connections
/// before its notice of that death reaches this node by another path, and the death came first.
pub const BREAK_BLAME_WAIT: Duration = Duration::from_millis(250);
/// How long an orderly close waits for every peer to close its end too.
pub const LINGER: Duration = Duration::from_secs(2);

/// How this node joins the others over TCP.
#[derive(Clone, Debug)]
pub struct TcpConfig {
    /// This node's id (its index in `peers`).
    pub id: NodeId,
    /// Every node's listen address, index = node id.
    pub peers: Vec<SocketAddr>,
    /// A fingerprint of the rest of the cluster configuration; with the peers list it makes
    /// the cluster id, and peers with another id are refused.
    pub cluster_tag: u64,
    /// The cluster key every connection must prove; None admits without proofs (see
    /// [`crate::admission`]).
    pub key: Option<ClusterKey>,
    /// How long to keep trying to reach the peers.
    pub connect_timeout: Duration,
}

impl TcpConfig {
    /// The cluster id: the tag, the node count and the peers list.
    pub fn cluster_id(&self) -> ClusterId {
        let peers = self
            .peers
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join(",");
        ClusterId::derive(&[
            &self.cluster_tag.to_le_bytes(),
            &(self.peers.len() as u64).to_le_bytes(),
            peers.as_bytes(),
        ])
    }

    /// What this node brings to every handshake.
    pub fn handshake(&self) -> Handshake {
        Handshake {
            me: self.id,
            nodes: self.peers.len(),
            cluster: self.cluster_id(),
            key: self.key.clone(),
            code: crate::process::identity::CodeIdentity::here(),
        }
    }
}

/// Why the all-to-all connection at start failed.
#[derive(Debug)]
pub enum ConnectError {
    /// The listen address could not be bound.
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        error: io::Error,
    },
    /// A peer was not reached before the timeout.
    Unreachable {
        /// The peer.
        node: NodeId,
        /// Its address.
        addr: SocketAddr,
        /// The last thing seen while trying.
        reason: String,
    },
    /// A peer refused this node's handshake.
    Rejected {
        /// The peer that refused.
        by: NodeId,
        /// Why it refused.
        reason: Refusal,
    },
    /// What answered at a peer's address failed this node's admission checks (it could not
    /// prove the cluster key, or broke the handshake).
    NotAdmitted {
        /// The peer that was dialled.
        node: NodeId,
        /// Its address.
        addr: SocketAddr,
        /// What failed.
        reason: Refusal,
    },
    /// The configuration cannot work.
    Config(String),
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectError::Bind { addr, error } => {
                write!(f, "cannot listen on {addr}: {error} (is the port in use?)")
            }
            ConnectError::Unreachable { node, addr, reason } => write!(
                f,
                "node {node} at {addr} unreachable before the connect timeout ({reason})"
            ),
            ConnectError::Rejected { by, reason } => write!(f, "rejected by node {by}: {reason}"),
            ConnectError::NotAdmitted { node, addr, reason } => write!(
                f,
                "the node answering at {addr} (node {node}) failed admission: {reason}"
            ),
            ConnectError::Config(what) => write!(f, "bad cluster configuration: {what}"),
        }
    }
}

impl std::error::Error for ConnectError {}

/// A node's connections to all its peers.
pub struct TcpTransport {
    links: Arc<Links>,
    frames: AtomicU64,
    bytes: AtomicU64,
    listen_addr: SocketAddr,
    gate: Gate,
}

/// What the senders and the reader threads of a transport share.
struct Links {
    me: NodeId,
    nodes: usize,
    writers: Vec<Option<Mutex<TcpStream>>>,
    closing: AtomicBool,
    /// The loss told to the peers, once told (see [`Links::announce_lost`]).
    announced: Mutex<Option<NodeId>>,
    /// Signalled when `announced` is set.
    announced_set: Condvar,
    /// Each peer's reader: whether the peer left in order, whether the reader has ended.
    readers: Mutex<Vec<ReaderState>>,
    reader_ended: Condvar,
}

#[derive(Clone, Copy, Default)]
struct ReaderState {
    left: bool,
    ended: bool,
}

thread_local! {
    /// On a reader thread: its transport (the `Links` address) and its peer.
    static READING: Cell<Option<(usize, NodeId)>> = const { Cell::new(None) };
}

impl Links {
    fn readers(&self) -> MutexGuard<'_, Vec<ReaderState>> {
        self.readers.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn closing(&self) -> bool {
        self.closing.load(Ordering::SeqCst)
    }

    /// Tell every peer but `node` (and `told_by`, who told this node) that `node` was lost;
    /// only the first loss is told, and nothing once the transport closes. Best effort: a peer
    /// that cannot be told is lost too.
    fn announce_lost(&self, node: NodeId, reason: &str, told_by: Option<NodeId>) {
        if self.closing() {
            return;
        }
        // Held while the notices go out: a second loss (or a close) waits until they are out,
        // so nothing this node does because of the loss can overtake them.
        let mut told = self.announced.lock().unwrap_or_else(|p| p.into_inner());
        if told.is_some() {
            return;
        }
        *told = Some(node);
        self.announced_set.notify_all();
        let notice = Frame::new(FrameKind::Lost, 0, LostNotice::encode(node, reason));
        for (j, w) in self.writers.iter().enumerate() {
            if j == node as usize || told_by.is_some_and(|t| j == t as usize) {
                continue;
            }
            if let Some(w) = w {
                if let Ok(mut s) = w.lock() {
                    let _ = write_frame(&mut s, &notice);
                }
            }
        }
    }

    /// Whether a loss has been (or, within `limit`, gets) told to the peers by another path.
    fn loss_told_within(&self, limit: Duration) -> bool {
        let told = self.announced.lock().unwrap_or_else(|p| p.into_inner());
        let (told, _) = self
            .announced_set
            .wait_timeout_while(told, limit, |t| t.is_none())
            .unwrap_or_else(|p| p.into_inner());
        told.is_some()
    }

    /// After a send to `peer` failed: wait (bounded) until its reader has said what happened
    /// to it, so the failure the caller reports comes after the loss (or the notice) the reader
    /// delivers; if the reader says nothing in time (or this is that reader), tell the peers
    /// now, unless `peer` left in order.
    fn after_failed_send(self: &Arc<Self>, peer: NodeId, reason: &str) {
        if self.closing() {
            return;
        }
        let me = Arc::as_ptr(self) as usize;
        let own_reader = READING.with(|r| r.get()) == Some((me, peer));
        let state = {
            let readers = self.readers();
            let wait = if own_reader {
                Duration::ZERO
            } else {
                LOST_REPORT_WAIT
            };
            let (readers, _) = self
                .reader_ended
                .wait_timeout_while(readers, wait, |r| {
                    r.get(peer as usize).is_some_and(|s| !s.ended)
                })
                .unwrap_or_else(|p| p.into_inner());
            readers.get(peer as usize).copied().unwrap_or_default()
        };
        if !state.ended && !state.left {
            self.announce_lost(peer, reason, None);
        }
    }

    /// Wait (at most `limit`) until every reader has ended.
    fn await_readers(&self, limit: Duration) {
        let readers = self.readers();
        let _ = self
            .reader_ended
            .wait_timeout_while(readers, limit, |r| r.iter().any(|s| !s.ended));
    }

    fn mark(&self, peer: NodeId, change: impl FnOnce(&mut ReaderState)) {
        if let Some(s) = self.readers().get_mut(peer as usize) {
            change(s);
        }
        self.reader_ended.notify_all();
    }
}

/// Seconds of silence before the kernel probes a peer, between probes, and probes lost before
/// the connection is declared dead: a vanished host is seen within about 5 seconds.
const KEEPALIVE: (libc::c_int, libc::c_int, libc::c_int) = (2, 1, 3);
/// Milliseconds that sent data may stay unacknowledged before the connection fails.
const USER_TIMEOUT_MS: libc::c_int = 5000;

fn set_opt(s: &TcpStream, level: libc::c_int, name: libc::c_int, value: libc::c_int) {
    use std::os::fd::AsRawFd;
    // SAFETY: the fd belongs to `s`, which is open for the whole call; `value` is a live
    // c_int and the length passed is its size.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            level,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

/// Options of every peer connection: no Nagle delay, and keepalive probes plus a user timeout
/// so that a peer whose host vanished (no FIN, no RST) is seen as lost within seconds.
pub(crate) fn tune(s: &TcpStream) {
    let _ = s.set_nodelay(true);
    set_opt(s, libc::SOL_SOCKET, libc::SO_KEEPALIVE, 1);
    set_opt(s, libc::IPPROTO_TCP, libc::TCP_KEEPIDLE, KEEPALIVE.0);
    set_opt(s, libc::IPPROTO_TCP, libc::TCP_KEEPINTVL, KEEPALIVE.1);
    set_opt(s, libc::IPPROTO_TCP, libc::TCP_KEEPCNT, KEEPALIVE.2);
    set_opt(
        s,
        libc::IPPROTO_TCP,
        libc::TCP_USER_TIMEOUT,
        USER_TIMEOUT_MS,
    );
}

/// Read one whole frame (validated header, then payload). The length is checked against
/// the frame limit before the payload is allocated.
pub(crate) fn read_frame(stream: &mut impl Read) -> io::Result<Frame> {
    let mut h = [0u8; HEADER_LEN];
    stream.read_exact(&mut h)?;
    let header = Header::decode(&h)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
    let mut payload = vec![0u8; header.len as usize];
    stream.read_exact(&mut payload)?;
    Ok(Frame::new(header.kind, header.request_id, payload))
}

pub(crate) fn write_frame(stream: &mut TcpStream, frame: &Frame) -> io::Result<usize> {
    let bytes = frame
        .encode()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
    stream.write_all(&bytes)?;
    Ok(bytes.len())
}

impl TcpTransport {
    /// Bind `listen` and connect to every peer; see [`TcpTransport::start_with_listener`].
    pub fn start(
        listen: SocketAddr,
        config: &TcpConfig,
    ) -> Result<(TcpTransport, EventSource), ConnectError> {
        let listener = TcpListener::bind(listen).map_err(|error| ConnectError::Bind {
            addr: listen,
            error,
        })?;
        Self::start_with_listener(listener, config)
    }

    /// Connect to every peer, admitting the ones that dial in on `listener`, retrying until
    /// `connect_timeout`. The error names the first peer that could not be reached, or the
    /// peer that refused this node and why.
    pub fn start_with_listener(
        listener: TcpListener,
        config: &TcpConfig,
    ) -> Result<(TcpTransport, EventSource), ConnectError> {
        let nodes = config.peers.len();
        let me = config.id;
        if me as usize >= nodes || nodes > u16::MAX as usize {
            return Err(ConnectError::Config(format!(
                "node id {me} is not among the {nodes} peers"
            )));
        }
        let listen_addr = listener.local_addr().map_err(|error| ConnectError::Bind {
            addr: config.peers[me as usize],
            error,
        })?;
        let deadline = deadline_after(config.connect_timeout);
        let hs = config.handshake();
        let (gate, accepted_rx) =
            Gate::start(listener, hs.clone(), &format!("memlink-dsm node {me}")).map_err(
                |error| ConnectError::Bind {
                    addr: listen_addr,
                    error,
                },
            )?;

        let mut streams: Vec<Option<TcpStream>> = (0..nodes).map(|_| None).collect();
        for j in 0..me {
            let addr = config.peers[j as usize];
            // On error the gate closes as it is dropped.
            let s = dial_until(&hs, j, addr, deadline)?;
            tune(&s);
            streams[j as usize] = Some(s);
        }
        let mut missing = nodes - 1 - me as usize;
        while missing > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            match accepted_rx.recv_timeout(left) {
                Ok((j, s)) => {
                    if streams[j as usize].is_none() {
                        tune(&s);
                        streams[j as usize] = Some(s);
                        missing -= 1;
                    }
                }
                Err(_) => {
                    let j = (me as usize + 1..nodes)
                        .find(|&j| streams[j].is_none())
                        .unwrap_or(nodes - 1);
                    return Err(ConnectError::Unreachable {
                        node: j as NodeId,
                        addr: config.peers[j],
                        reason: "it did not connect to this node".into(),
                    });
                }
            }
        }

        let switch = Arc::new(EventSwitch::default());
        let mut writers = Vec::with_capacity(nodes);
        let mut readers = Vec::with_capacity(nodes);
        for (j, s) in streams.into_iter().enumerate() {
            match s {
                None => writers.push(None),
                Some(s) => {
                    let reader = s.try_clone().map_err(|error| ConnectError::Bind {
                        addr: listen_addr,
                        error,
                    })?;
                    readers.push((j as NodeId, reader));
                    writers.push(Some(Mutex::new(s)));
                }
            }
        }
        // This node's own slot has no reader: it counts as ended from the start.
        let mut states = vec![ReaderState::default(); nodes];
        states[me as usize].ended = true;
        let links = Arc::new(Links {
            me,
            nodes,
            writers,
            closing: AtomicBool::new(false),
            announced: Mutex::new(None),
            announced_set: Condvar::new(),
            readers: Mutex::new(states),
            reader_ended: Condvar::new(),
        });
        for (peer, reader) in readers {
            spawn_reader(peer, reader, Arc::clone(&switch), Arc::clone(&links));
        }
        Ok((
            TcpTransport {
                links,
                frames: AtomicU64::new(0),
                bytes: AtomicU64::new(0),
                listen_addr,
                gate,
            },
            EventSource::direct(switch),
        ))
    }

    /// The address this node listens on.
    pub fn listen_addr(&self) -> SocketAddr {
        self.listen_addr
    }
}

/// `now + timeout`; a timeout too long for an `Instant` (`Duration::MAX`, or a count of
/// seconds near `u64::MAX` from a command line) waits a century instead of overflowing.
pub(crate) fn deadline_after(timeout: Duration) -> Instant {
    const CENTURY: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
    let now = Instant::now();
    now.checked_add(timeout)
        .or_else(|| now.checked_add(CENTURY))
        .unwrap_or(now)
}

/// Dials node `peer` at `addr` until admitted, retrying while it is not up (or busy) until
/// `deadline`; a refusal ends the tries at once.
fn dial_until(
    hs: &Handshake,
    peer: NodeId,
    addr: SocketAddr,
    deadline: Instant,
) -> Result<TcpStream, ConnectError> {
    let mut last = String::from("no attempt");
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ConnectError::Unreachable {
                node: peer,
                addr,
                reason: last,
            });
        }
        match dial(addr, hs, peer, left) {
            Ok(s) => return Ok(s),
            Err(AdmitError::RefusedBy(reason)) if !reason.is_transient() => {
                return Err(ConnectError::Rejected { by: peer, reason });
            }
            Err(AdmitError::Refused(reason)) => {
                return Err(ConnectError::NotAdmitted {
                    node: peer,
                    addr,
                    reason,
                });
            }
            Err(e) => last = e.to_string(),
        }
        thread::sleep(RETRY_PAUSE.min(deadline.saturating_duration_since(Instant::now())));
    }
}

fn spawn_reader(peer: NodeId, stream: TcpStream, events: Arc<EventSwitch>, links: Arc<Links>) {
    let named = thread::Builder::new().name(format!("dsm-reader-{peer}"));
    let on_failure = (Arc::clone(&events), Arc::clone(&links));
    let spawned = named.spawn(move || {
        READING.with(|r| r.set(Some((Arc::as_ptr(&links) as usize, peer))));
        match read_until_end(peer, &stream, &events, &links) {
            Some(reason) => {
                let _ = stream.shutdown(Shutdown::Both);
                // A loss told by another path within the wait came first (this peer failed
                // because of it): that path reports it, and this break adds nothing.
                if !links.closing() && !links.loss_told_within(BREAK_BLAME_WAIT) {
                    // The peers hear of it before this node can fail because of it.
                    links.announce_lost(peer, &reason, None);
                    events.deliver(TransportEvent::Lost { node: peer, reason });
                }
            }
            // The peer left in order (or this node closes): what this node still sends it
            // (the last messages of a step that ran as it left) goes out until this node
            // closes too; the peer reads them while it waits for that (see `LINGER`).
            None => {
                let _ = stream.shutdown(Shutdown::Read);
            }
        }
        links.mark(peer, |s| s.ended = true);
    });
    if let Err(e) = spawned {
        // Nothing can be read from this peer: the connection is as good as broken.
        let (events, links) = on_failure;
        let reason = format!("cannot start the thread that reads from it: {e}");
        links.announce_lost(peer, &reason, None);
        events.deliver(TransportEvent::Lost { node: peer, reason });
        links.mark(peer, |s| s.ended = true);
    }
}

/// Read and deliver `peer`'s frames until its connection ends; returns why it broke, or None
/// when it ended in order (after a Leave) or this node is closing.
fn read_until_end(
    peer: NodeId,
    stream: &TcpStream,
    events: &EventSwitch,
    links: &Links,
) -> Option<String> {
    let mut left = false;
    // Frames sent as one batch arrive in one read.
    let mut reader = io::BufReader::with_capacity(READ_BUFFER, stream);
    loop {
        match read_frame(&mut reader) {
            Ok(frame) if frame.kind == FrameKind::Leave => {
                left = true;
                links.mark(peer, |s| s.left = true);
                events.deliver(TransportEvent::Left { node: peer });
            }
            Ok(frame) if frame.kind == FrameKind::Hello => {
                return Some("bad frame: a second Hello".into());
            }
            Ok(frame) if frame.kind == FrameKind::Lost => {
                let notice = match LostNotice::decode(&frame.payload, links.nodes) {
                    Ok(n) => n,
                    Err(e) => return Some(format!("bad frame: {e}")),
                };
                if links.closing() {
                    continue;
                }
                let (node, reason) = if notice.node == links.me {
                    let why = notice.reason;
                    (peer, format!("it lost its connection to this node ({why})"))
                } else if notice.node == peer {
                    (peer, notice.reason)
                } else {
                    let why = notice.reason;
                    (notice.node, format!("{why} (reported by node {peer})"))
                };
                // Passed on to the others (not back to the peer that told it).
                links.announce_lost(node, &reason, Some(peer));
                events.deliver(TransportEvent::Lost { node, reason });
            }
            Ok(frame) => events.deliver(TransportEvent::Frame { from: peer, frame }),
            Err(e) => {
                if left || links.closing() {
                    return None;
                }
                return Some(match e.kind() {
                    io::ErrorKind::UnexpectedEof => "connection closed (EOF)".to_string(),
                    io::ErrorKind::InvalidData => format!("bad frame: {e}"),
                    _ => e.to_string(),
                });
            }
        }
    }
}

/// The frame a failed batch hands back: its first.
fn first_of(frames: Vec<Frame>) -> Frame {
    frames
        .into_iter()
        .next()
        .unwrap_or_else(|| Frame::new(FrameKind::OneWay, 0, Vec::new()))
}

impl Transport for TcpTransport {
    fn id(&self) -> NodeId {
        self.links.me
    }

    fn nodes(&self) -> usize {
        self.links.nodes
    }

    fn send(&self, to: NodeId, frame: Frame) -> Result<(), SendError> {
        self.send_all(to, vec![frame])
    }

    fn send_all(&self, to: NodeId, frames: Vec<Frame>) -> Result<(), SendError> {
        let Some(Some(w)) = self.links.writers.get(to as usize) else {
            return Err(SendError {
                to,
                reason: "no such peer".into(),
                frame: first_of(frames),
            });
        };
        let mut bytes = Vec::with_capacity(frames.iter().map(Frame::wire_len).sum());
        for frame in &frames {
            if let Err(e) = frame.encode_into(&mut bytes) {
                return Err(SendError {
                    to,
                    reason: e.to_string(),
                    frame: first_of(frames),
                });
            }
        }
        // Counted before the write, so that a peer's answer can never be seen before the
        // frame it answers is counted; taken back if the write fails.
        let (count, n) = (frames.len() as u64, bytes.len() as u64);
        self.frames.fetch_add(count, Ordering::Relaxed);
        self.bytes.fetch_add(n, Ordering::Relaxed);
        let result = match w.lock() {
            Ok(mut s) => s.write_all(&bytes),
            Err(_) => Err(io::Error::other("writer poisoned")),
        };
        result.map_err(|e| {
            self.frames.fetch_sub(count, Ordering::Relaxed);
            self.bytes.fetch_sub(n, Ordering::Relaxed);
            let reason = e.to_string();
            self.links.after_failed_send(to, &reason);
            SendError {
                to,
                reason,
                frame: first_of(frames),
            }
        })
    }

    fn sent(&self) -> (u64, u64) {
        (
            self.frames.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
        )
    }

    fn close(&self) {
        self.close_with(true);
    }

    fn close_now(&self) {
        self.close_with(false);
    }

    fn announce_lost(&self, node: NodeId, reason: &str) {
        self.links.announce_lost(node, reason, None);
    }
}

impl TcpTransport {
    /// Leave (unless this node failed) and close; with `linger`, wait for the peers to close.
    fn close_with(&self, linger: bool) {
        let links = &self.links;
        if links.closing.swap(true, Ordering::SeqCst) {
            return;
        }
        // A node that told its peers of a loss has failed: it leaves without a Leave (its
        // peers fail too), and does not wait for them.
        let failed = links
            .announced
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some();
        for w in links.writers.iter().flatten() {
            if let Ok(mut s) = w.lock() {
                if !failed {
                    let _ = write_frame(&mut s, &Frame::new(FrameKind::Leave, 0, Vec::new()));
                }
                // Half-close: the peer reads Leave, then EOF; our reader drains until it closes too.
                let _ = s.shutdown(Shutdown::Write);
            }
        }
        self.gate.close();
        if linger && !failed {
            links.await_readers(LINGER);
        }
    }
}

impl Drop for TcpTransport {
    fn drop(&mut self) {
        self.close_now();
    }
}
