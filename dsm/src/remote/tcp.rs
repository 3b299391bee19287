//! The TCP transport: one connection per pair of nodes (TCP_NODELAY), set up all-to-all at
//! start. Node `i` dials every node `j < i` and accepts every node `j > i`; the first frame on a
//! connection is a Hello naming the node and the cluster. The listener keeps running after
//! start and rejects (and logs) every further connection, garbage included, so a stray client
//! cannot disturb a running node.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Sender, channel};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::frame::{Frame, FrameKind, HEADER_LEN, Header};
use super::transport::{EventSource, EventSwitch, SendError, Transport, TransportEvent};
use crate::types::NodeId;

/// How long an accepted connection has to present its Hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(2);
/// The reader's buffer: a batch of page messages (4 KiB each) in one read.
const READ_BUFFER: usize = 64 * 1024;
/// Pause between two connection attempts to a peer that is not up yet.
const RETRY_PAUSE: Duration = Duration::from_millis(20);

/// How this node joins the others over TCP.
#[derive(Clone, Debug)]
pub struct TcpConfig {
    /// This node's id (its index in `peers`).
    pub id: NodeId,
    /// Every node's listen address, index = node id.
    pub peers: Vec<SocketAddr>,
    /// A fingerprint of the cluster configuration; peers with another tag are refused.
    pub cluster_tag: u64,
    /// How long to keep trying to reach the peers.
    pub connect_timeout: Duration,
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
            ConnectError::Config(what) => write!(f, "bad cluster configuration: {what}"),
        }
    }
}

impl std::error::Error for ConnectError {}

/// A node's connections to all its peers.
pub struct TcpTransport {
    id: NodeId,
    nodes: usize,
    writers: Vec<Option<Mutex<TcpStream>>>,
    frames: AtomicU64,
    bytes: AtomicU64,
    closing: Arc<AtomicBool>,
    listen_addr: SocketAddr,
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

fn hello_payload(id: NodeId, nodes: usize, tag: u64) -> Vec<u8> {
    let mut p = Vec::with_capacity(12);
    p.extend_from_slice(&id.to_le_bytes());
    p.extend_from_slice(&(nodes as u16).to_le_bytes());
    p.extend_from_slice(&tag.to_le_bytes());
    p
}

/// Read one whole frame (validated header, then payload).
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

/// Read and check a Hello; returns the peer's id.
fn read_hello(stream: &mut TcpStream, nodes: usize, tag: u64) -> Result<NodeId, String> {
    let f = read_frame(stream).map_err(|e| format!("no valid Hello: {e}"))?;
    if f.kind != FrameKind::Hello || f.payload.len() != 12 {
        return Err(format!("first frame is {:?}, not a Hello", f.kind));
    }
    let p = &f.payload;
    let id = u16::from_le_bytes([p[0], p[1]]);
    let their_nodes = u16::from_le_bytes([p[2], p[3]]) as usize;
    let mut t = [0u8; 8];
    t.copy_from_slice(&p[4..12]);
    let their_tag = u64::from_le_bytes(t);
    if their_nodes != nodes || their_tag != tag {
        return Err(format!(
            "node {id} runs another cluster configuration ({their_nodes} nodes, tag {their_tag:#x}; \
             here {nodes} nodes, tag {tag:#x})"
        ));
    }
    if id as usize >= nodes {
        return Err(format!("node id {id} out of range for {nodes} nodes"));
    }
    Ok(id)
}

/// The greeting that opens every connection between nodes, on the side that dialled: say who
/// this node is, and check that `peer` of the same cluster answered. Every connection between
/// nodes goes through this pair of functions (the rendezvous too), so whatever a cluster
/// checks before admitting a connection is checked on all of them.
pub(crate) fn greet_as_dialer(
    s: &mut TcpStream,
    me: NodeId,
    peer: NodeId,
    nodes: usize,
    tag: u64,
) -> Result<(), String> {
    let hello = Frame::new(FrameKind::Hello, 0, hello_payload(me, nodes, tag));
    write_frame(s, &hello).map_err(|e| e.to_string())?;
    match read_hello(s, nodes, tag)? {
        id if id == peer => Ok(()),
        id => Err(format!("node {id} answered at that address")),
    }
}

/// The greeting on the side that accepted: read who dialled, let `admit` refuse it (an id
/// out of place, one already connected), answer. Returns the dialler's id.
pub(crate) fn greet_as_acceptor(
    s: &mut TcpStream,
    me: NodeId,
    nodes: usize,
    tag: u64,
    admit: impl FnOnce(NodeId) -> Result<(), String>,
) -> Result<NodeId, String> {
    let id = read_hello(s, nodes, tag)?;
    admit(id)?;
    let hello = Frame::new(FrameKind::Hello, 0, hello_payload(me, nodes, tag));
    write_frame(s, &hello).map_err(|e| format!("cannot answer node {id}: {e}"))?;
    Ok(id)
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

    /// Connect to every peer, accepting on `listener`, retrying until `connect_timeout`.
    /// The error names the first peer that could not be reached.
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
        let closing = Arc::new(AtomicBool::new(false));
        let (accepted_tx, accepted_rx) = channel::<(NodeId, TcpStream)>();
        spawn_acceptor(
            listener,
            me,
            nodes,
            config.cluster_tag,
            Arc::clone(&closing),
            accepted_tx,
        );

        let mut streams: Vec<Option<TcpStream>> = (0..nodes).map(|_| None).collect();
        for j in 0..me {
            let addr = config.peers[j as usize];
            let s = dial(me, j, addr, nodes, config.cluster_tag, deadline).inspect_err(|_| {
                wake_acceptor(&closing, listen_addr);
            })?;
            streams[j as usize] = Some(s);
        }
        let mut missing = nodes - 1 - me as usize;
        while missing > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            match accepted_rx.recv_timeout(left) {
                Ok((j, s)) => {
                    if streams[j as usize].is_none() {
                        streams[j as usize] = Some(s);
                        missing -= 1;
                    }
                }
                Err(_) => {
                    wake_acceptor(&closing, listen_addr);
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
        for (j, s) in streams.into_iter().enumerate() {
            match s {
                None => writers.push(None),
                Some(s) => {
                    let reader = s.try_clone().map_err(|error| ConnectError::Bind {
                        addr: listen_addr,
                        error,
                    })?;
                    spawn_reader(
                        j as NodeId,
                        reader,
                        Arc::clone(&switch),
                        Arc::clone(&closing),
                    );
                    writers.push(Some(Mutex::new(s)));
                }
            }
        }
        Ok((
            TcpTransport {
                id: me,
                nodes,
                writers,
                frames: AtomicU64::new(0),
                bytes: AtomicU64::new(0),
                closing,
                listen_addr,
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

fn dial(
    me: NodeId,
    peer: NodeId,
    addr: SocketAddr,
    nodes: usize,
    tag: u64,
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
        match TcpStream::connect_timeout(&addr, left) {
            Ok(mut s) => {
                tune(&s);
                let _ = s.set_read_timeout(Some(left.max(Duration::from_millis(10))));
                match greet_as_dialer(&mut s, me, peer, nodes, tag) {
                    Ok(()) => {
                        let _ = s.set_read_timeout(None);
                        return Ok(s);
                    }
                    Err(e) => last = e,
                }
            }
            Err(e) => last = e.to_string(),
        }
        thread::sleep(RETRY_PAUSE.min(deadline.saturating_duration_since(Instant::now())));
    }
}

fn wake_acceptor(closing: &AtomicBool, listen_addr: SocketAddr) {
    closing.store(true, Ordering::SeqCst);
    let _ = TcpStream::connect_timeout(&listen_addr, Duration::from_millis(200));
}

fn spawn_acceptor(
    listener: TcpListener,
    me: NodeId,
    nodes: usize,
    tag: u64,
    closing: Arc<AtomicBool>,
    accepted: Sender<(NodeId, TcpStream)>,
) {
    let claimed = Arc::new(Mutex::new(vec![false; nodes]));
    thread::spawn(move || {
        for conn in listener.incoming() {
            if closing.load(Ordering::SeqCst) {
                break;
            }
            let Ok(mut s) = conn else { continue };
            let claimed = Arc::clone(&claimed);
            let accepted = accepted.clone();
            thread::spawn(move || {
                let who = s
                    .peer_addr()
                    .map(|a| a.to_string())
                    .unwrap_or_else(|_| "?".into());
                tune(&s);
                let _ = s.set_read_timeout(Some(HELLO_TIMEOUT));
                let checked = greet_as_acceptor(&mut s, me, nodes, tag, |id| {
                    if id <= me {
                        return Err(format!("node {id} must be dialled by this node {me}"));
                    }
                    let mut c = claimed.lock().map_err(|_| "poisoned".to_string())?;
                    if c[id as usize] {
                        return Err(format!("node {id} is already connected"));
                    }
                    c[id as usize] = true;
                    Ok(())
                });
                match checked {
                    Ok(id) => {
                        let _ = s.set_read_timeout(None);
                        let _ = accepted.send((id, s));
                    }
                    Err(reason) => {
                        eprintln!(
                            "memlink-dsm node {me}: rejected connection from {who}: {reason}"
                        );
                        let _ = s.shutdown(Shutdown::Both);
                    }
                }
            });
        }
    });
}

fn spawn_reader(
    peer: NodeId,
    stream: TcpStream,
    events: Arc<EventSwitch>,
    closing: Arc<AtomicBool>,
) {
    let named = thread::Builder::new().name(format!("dsm-reader-{peer}"));
    let on_failure = Arc::clone(&events);
    let spawned = named.spawn(move || {
        let mut left = false;
        // Frames sent as one batch arrive in one read.
        let mut reader = io::BufReader::with_capacity(READ_BUFFER, &stream);
        loop {
            match read_frame(&mut reader) {
                Ok(frame) if frame.kind == FrameKind::Leave => {
                    left = true;
                    events.deliver(TransportEvent::Left { node: peer });
                }
                Ok(frame) if frame.kind == FrameKind::Hello => {
                    let _ = stream.shutdown(Shutdown::Both);
                    if !closing.load(Ordering::SeqCst) {
                        events.deliver(TransportEvent::Lost {
                            node: peer,
                            reason: "bad frame: a second Hello".into(),
                        });
                    }
                    return;
                }
                Ok(frame) => events.deliver(TransportEvent::Frame { from: peer, frame }),
                Err(e) => {
                    let _ = stream.shutdown(Shutdown::Both);
                    if left || closing.load(Ordering::SeqCst) {
                        return;
                    }
                    let reason = match e.kind() {
                        io::ErrorKind::UnexpectedEof => "connection closed (EOF)".to_string(),
                        io::ErrorKind::InvalidData => format!("bad frame: {e}"),
                        _ => e.to_string(),
                    };
                    events.deliver(TransportEvent::Lost { node: peer, reason });
                    return;
                }
            }
        }
    });
    if let Err(e) = spawned {
        // Nothing can be read from this peer: the connection is as good as broken.
        on_failure.deliver(TransportEvent::Lost {
            node: peer,
            reason: format!("cannot start the thread that reads from it: {e}"),
        });
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
        self.id
    }

    fn nodes(&self) -> usize {
        self.nodes
    }

    fn send(&self, to: NodeId, frame: Frame) -> Result<(), SendError> {
        self.send_all(to, vec![frame])
    }

    fn send_all(&self, to: NodeId, frames: Vec<Frame>) -> Result<(), SendError> {
        let Some(Some(w)) = self.writers.get(to as usize) else {
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
            SendError {
                to,
                reason: e.to_string(),
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
        if self.closing.swap(true, Ordering::SeqCst) {
            return;
        }
        for w in self.writers.iter().flatten() {
            if let Ok(mut s) = w.lock() {
                let _ = write_frame(&mut s, &Frame::new(FrameKind::Leave, 0, Vec::new()));
                // Half-close: the peer reads Leave, then EOF; our reader drains until it closes too.
                let _ = s.shutdown(Shutdown::Write);
            }
        }
        let _ = TcpStream::connect_timeout(&self.listen_addr, Duration::from_millis(200));
    }
}

impl Drop for TcpTransport {
    fn drop(&mut self) {
        self.close();
    }
}
