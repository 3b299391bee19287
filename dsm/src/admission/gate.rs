//! The admission handshake over TCP: [`dial`] runs the dialling side on a new connection;
//! a [`Gate`] serves the accepting side of every connection a listener accepts and hands
//! over the admitted ones.
//!
//! Cost before admission is bounded: a Gate is one thread that serves every pending
//! handshake with `poll` (no thread per connection), keeps at most [`MAX_PENDING`]
//! connections waiting (a new one pushes out the oldest), gives each [`HANDSHAKE_DEADLINE`]
//! to finish, checks a frame's length against [`MAX_MESSAGE`] before reading its payload
//! into a fixed buffer, and logs refusals through a [`RefusalLog`] (a line per interval).
//!
//! ```no_run
//! use std::net::TcpListener;
//! use std::time::Duration;
//! use memlink_dsm::admission::{ClusterId, ClusterKey, Gate, Handshake, dial};
//! use memlink_dsm::process::identity::CodeIdentity;
//!
//! let key = ClusterKey::generate()?;
//! let cluster = ClusterId::derive(&[b"my rendezvous", &3u16.to_le_bytes()]);
//! let hs = |me| Handshake { me, nodes: 3, cluster, key: Some(key.clone()), code: CodeIdentity::here() };
//! // Node 0 admits nodes 1 and 2 (higher ids dial lower ones) ...
//! let listener = TcpListener::bind("127.0.0.1:0")?;
//! let addr = listener.local_addr()?;
//! let (gate, admitted) = Gate::start(listener, hs(0), "rendezvous")?;
//! // ... node 1 (in another process) dials node 0 ...
//! let stream = dial(addr, &hs(1), 0, Duration::from_secs(10))?;
//! let (who, from_node_1) = admitted.recv()?; // who == 1: proven with the key
//! gate.close();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::thread;
use std::time::{Duration, Instant};

use super::handshake::{
    AcceptStep, Acceptor, DialStep, Dialer, Handshake, MAX_MESSAGE, Refusal, fresh_nonce,
};
use super::log::{LOG_INTERVAL, RefusalLog};
use crate::remote::frame::{Frame, FrameKind, HEADER_LEN, Header};
use crate::types::NodeId;

/// How long a connection has to complete its handshake.
pub const HANDSHAKE_DEADLINE: Duration = Duration::from_secs(3);
/// The most connections a [`Gate`] keeps waiting for their handshake.
pub const MAX_PENDING: usize = 256;
/// The accept queue a Gate asks for (the kernel caps it at net.core.somaxconn).
const LISTEN_BACKLOG: libc::c_int = 1024;
/// The longest a Gate sleeps between two looks at its deadlines and its closing flag.
const TICK: Duration = Duration::from_millis(250);

/// Why a handshake ([`dial`], [`admit_dialled`], [`admit_accepted`]) did not admit a
/// connection.
#[derive(Debug)]
pub enum AdmitError {
    /// The connection failed or broke (nobody listening yet, reset, timeout).
    Io(io::Error),
    /// The other side refused this node, for this reason.
    RefusedBy(Refusal),
    /// This node refused the other side (it failed to prove the key, broke the protocol, or
    /// its id was taken).
    Refused(Refusal),
}

impl AdmitError {
    /// Whether trying again can succeed: the peer was not up, busy or slow.
    pub fn is_transient(&self) -> bool {
        match self {
            AdmitError::Io(_) => true,
            AdmitError::RefusedBy(r) => r.is_transient(),
            AdmitError::Refused(_) => false,
        }
    }
}

impl fmt::Display for AdmitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AdmitError::Io(e) => write!(f, "{e}"),
            AdmitError::RefusedBy(r) => write!(f, "rejected: {r}"),
            AdmitError::Refused(r) => write!(f, "it failed admission here: {r}"),
        }
    }
}

impl std::error::Error for AdmitError {}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

/// Reads one handshake message (a Hello-kind frame of at most [`MAX_MESSAGE`] bytes).
fn read_message(stream: &mut TcpStream) -> io::Result<Vec<u8>> {
    let mut h = [0u8; HEADER_LEN];
    stream.read_exact(&mut h)?;
    let header = Header::decode(&h).map_err(|e| invalid(&e.to_string()))?;
    if header.kind != FrameKind::Hello || header.len as usize > MAX_MESSAGE {
        return Err(invalid("not a handshake message"));
    }
    let mut payload = vec![0u8; header.len as usize];
    stream.read_exact(&mut payload)?;
    Ok(payload)
}

fn message_bytes(msg: Vec<u8>) -> Vec<u8> {
    // A handshake message is at most MAX_MESSAGE bytes: it always fits a frame.
    Frame::new(FrameKind::Hello, 0, msg)
        .encode()
        .unwrap_or_default()
}

/// Reads one handshake message; a malformed one is answered with a Malformed refusal (so the
/// peer learns why) and ends the handshake.
fn read_or_refuse_malformed(stream: &mut TcpStream) -> Result<Vec<u8>, AdmitError> {
    match read_message(stream) {
        Ok(m) => Ok(m),
        Err(e) if e.kind() == io::ErrorKind::InvalidData => {
            let _ = write_message(stream, Refusal::Malformed.encode());
            Err(AdmitError::Refused(Refusal::Malformed))
        }
        Err(e) => Err(AdmitError::Io(e)),
    }
}

fn write_message(stream: &mut TcpStream, msg: Vec<u8>) -> io::Result<()> {
    stream.write_all(&message_bytes(msg))
}

/// Connects to `addr` and runs the dialling side of the handshake as node `hs.me` towards
/// node `target`, all within `timeout` (and at most [`HANDSHAKE_DEADLINE`] for the
/// handshake). Returns the admitted connection (blocking, no timeouts, TCP_NODELAY set).
pub fn dial(
    addr: SocketAddr,
    hs: &Handshake,
    target: NodeId,
    timeout: Duration,
) -> Result<TcpStream, AdmitError> {
    let started = Instant::now();
    let mut stream = TcpStream::connect_timeout(&addr, timeout).map_err(AdmitError::Io)?;
    let left = timeout.saturating_sub(started.elapsed());
    let limit = left.clamp(Duration::from_millis(10), HANDSHAKE_DEADLINE);
    stream.set_nodelay(true).map_err(AdmitError::Io)?;
    stream
        .set_read_timeout(Some(limit))
        .and_then(|_| stream.set_write_timeout(Some(limit)))
        .map_err(AdmitError::Io)?;
    admit_dialled(&mut stream, hs, target)?;
    stream
        .set_read_timeout(None)
        .and_then(|_| stream.set_write_timeout(None))
        .map_err(AdmitError::Io)?;
    Ok(stream)
}

/// Runs the dialling side of the handshake on a connected `stream` (with whatever timeouts
/// it has).
pub fn admit_dialled(
    stream: &mut TcpStream,
    hs: &Handshake,
    target: NodeId,
) -> Result<(), AdmitError> {
    let nonce = fresh_nonce().map_err(|e| AdmitError::Io(io::Error::other(e)))?;
    let (mut dialer, hello) = Dialer::start(hs.clone(), target, nonce);
    write_message(stream, hello).map_err(AdmitError::Io)?;
    loop {
        let msg = read_or_refuse_malformed(stream)?;
        match dialer.on_message(&msg) {
            DialStep::Send(m) => write_message(stream, m).map_err(AdmitError::Io)?,
            DialStep::Admitted => {
                if let Some(code) = dialer.peer_code() {
                    super::peer_codes::record(hs.cluster, target, code);
                }
                return Ok(());
            }
            DialStep::Refuse(r, m) => {
                let _ = write_message(stream, m);
                return Err(AdmitError::Refused(r));
            }
            DialStep::RefusedBy(r) => return Err(AdmitError::RefusedBy(r)),
        }
    }
}

/// Runs the accepting side of the handshake on an accepted `stream` (blocking, with whatever
/// timeouts it has), as node `hs.me`: once the dialler has proven itself, `admit` may still
/// refuse its id (e.g. [`Refusal::AlreadyConnected`]); else it is welcomed. Returns its id.
/// A [`Gate`] does the same for many connections at once on one thread; this is for a
/// caller that serves one connection at a time.
pub fn admit_accepted(
    stream: &mut TcpStream,
    hs: &Handshake,
    admit: impl FnOnce(NodeId) -> Result<(), Refusal>,
) -> Result<NodeId, AdmitError> {
    let nonce = fresh_nonce().map_err(|e| AdmitError::Io(io::Error::other(e)))?;
    let mut acceptor = Acceptor::new(hs.clone(), nonce);
    loop {
        let msg = read_or_refuse_malformed(stream)?;
        match acceptor.on_message(&msg) {
            AcceptStep::Send(m) => write_message(stream, m).map_err(AdmitError::Io)?,
            AcceptStep::Verified(node) => {
                if let Err(r) = admit(node) {
                    let _ = write_message(stream, r.encode());
                    return Err(AdmitError::Refused(r));
                }
                let welcome = acceptor.welcome().unwrap_or_default();
                write_message(stream, welcome).map_err(AdmitError::Io)?;
                if let Some(code) = acceptor.peer_code() {
                    super::peer_codes::record(hs.cluster, node, code);
                }
                return Ok(node);
            }
            AcceptStep::Refuse(r, m) => {
                let _ = write_message(stream, m);
                return Err(AdmitError::Refused(r));
            }
            AcceptStep::RefusedBy(r) => return Err(AdmitError::RefusedBy(r)),
        }
    }
}

/// One connection waiting for its handshake.
struct Pending {
    stream: TcpStream,
    from: SocketAddr,
    deadline: Instant,
    acceptor: Acceptor,
    buf: [u8; HEADER_LEN + MAX_MESSAGE],
    have: usize,
    want: usize,
}

/// What became of a pending connection after it was readable.
enum Progress {
    /// Still waiting for more.
    Waiting,
    /// Done with it: admitted and handed over, or closed.
    Done,
}

/// Serves the accepting side of the handshake for every connection a listener accepts, on
/// one thread; see the module documentation. Admitted connections come out of the receiver
/// [`Gate::start`] returns, each with the proven node id, at most one per id.
pub struct Gate {
    closing: Arc<AtomicBool>,
    addr: SocketAddr,
}

impl Gate {
    /// Starts serving `listener` as node `hs.me`; `name` prefixes its log lines (e.g.
    /// "memlink-dsm node 0").
    pub fn start(
        listener: TcpListener,
        hs: Handshake,
        name: &str,
    ) -> io::Result<(Gate, Receiver<(NodeId, TcpStream)>)> {
        let addr = listener.local_addr()?;
        listener.set_nonblocking(true)?;
        // A deeper accept queue than the standard library's 128, so that a flood does not
        // make a real node's connect wait for SYN retransmissions. Calling listen again on a
        // listening socket only changes its backlog; a failure keeps the old one.
        // SAFETY: the descriptor belongs to `listener`, open for the whole call.
        unsafe { libc::listen(listener.as_raw_fd(), LISTEN_BACKLOG) };
        let closing = Arc::new(AtomicBool::new(false));
        let (tx, rx) = channel();
        let looper = GateLoop {
            listener,
            claimed: vec![false; hs.nodes],
            hs,
            name: name.to_string(),
            pending: VecDeque::new(),
            log: RefusalLog::new(LOG_INTERVAL),
            admitted: tx,
            closing: Arc::clone(&closing),
        };
        thread::Builder::new()
            .name("dsm-gate".into())
            .spawn(move || looper.run())?;
        Ok((Gate { closing, addr }, rx))
    }

    /// The address the gate listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops serving: the listener and every pending connection are closed (within a
    /// fraction of a second).
    pub fn close(&self) {
        if !self.closing.swap(true, Ordering::SeqCst) {
            // Wake the poll at once (it also looks at the flag every TICK).
            let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
        }
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.close();
    }
}

struct GateLoop {
    listener: TcpListener,
    hs: Handshake,
    name: String,
    claimed: Vec<bool>,
    pending: VecDeque<Pending>,
    log: RefusalLog,
    admitted: Sender<(NodeId, TcpStream)>,
    closing: Arc<AtomicBool>,
}

impl GateLoop {
    fn run(mut self) {
        let mut fds: Vec<libc::pollfd> = Vec::with_capacity(MAX_PENDING + 1);
        while !self.closing.load(Ordering::SeqCst) {
            let now = Instant::now();
            self.expire(now);
            if let Some(line) = self.log.tick(now) {
                eprintln!("{}: {line}", self.name);
            }
            let wait = self
                .pending
                .iter()
                .map(|p| p.deadline.saturating_duration_since(now))
                .min()
                .unwrap_or(TICK)
                .min(TICK);
            fds.clear();
            fds.push(libc::pollfd {
                fd: self.listener.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            });
            fds.extend(self.pending.iter().map(|p| libc::pollfd {
                fd: p.stream.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            }));
            let ms = wait.as_millis().clamp(1, i32::MAX as u128) as libc::c_int;
            // SAFETY: `fds` is a live, initialised array of `fds.len()` pollfd structs whose
            // descriptors belong to the listener and the pending streams, all open during
            // the call.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
            if n < 0 {
                if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                eprintln!(
                    "{}: cannot wait for connections: {}; no more peers are admitted",
                    self.name,
                    io::Error::last_os_error()
                );
                return;
            }
            if self.closing.load(Ordering::SeqCst) {
                return;
            }
            // Serve the readable pending connections (back to front, so removals keep the
            // indices of the ones not served yet), then take new ones.
            for i in (0..self.pending.len()).rev() {
                let ready = fds[i + 1].revents;
                if ready != 0 {
                    if let Progress::Done = self.serve(i) {
                        self.pending.remove(i);
                    }
                }
            }
            if fds[0].revents != 0 {
                self.accept_all();
            }
        }
    }

    fn refused(&mut self, from: SocketAddr, why: Refusal) {
        if let Some(line) = self.log.refused(Instant::now(), from, why) {
            eprintln!("{}: {line}", self.name);
        }
    }

    /// Closes the connections whose deadline has passed.
    fn expire(&mut self, now: Instant) {
        while let Some(i) = self.pending.iter().position(|p| p.deadline <= now) {
            if let Some(mut p) = self.pending.remove(i) {
                let _ = p.stream.write(&message_bytes(Refusal::TooSlow.encode()));
                self.refused(p.from, Refusal::TooSlow);
            }
        }
    }

    fn accept_all(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((stream, from)) => {
                    if self.pending.len() >= MAX_PENDING {
                        // The oldest has had the longest to speak; make room for the new one.
                        if let Some(mut old) = self.pending.pop_front() {
                            let _ = old.stream.write(&message_bytes(Refusal::Busy.encode()));
                            self.refused(old.from, Refusal::Busy);
                        }
                    }
                    let Ok(nonce) = fresh_nonce() else {
                        self.refused(from, Refusal::Busy);
                        continue;
                    };
                    if stream.set_nonblocking(true).is_err() {
                        continue;
                    }
                    let _ = stream.set_nodelay(true);
                    self.pending.push_back(Pending {
                        stream,
                        from,
                        deadline: Instant::now() + HANDSHAKE_DEADLINE,
                        acceptor: Acceptor::new(self.hs.clone(), nonce),
                        buf: [0u8; HEADER_LEN + MAX_MESSAGE],
                        have: 0,
                        want: HEADER_LEN,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // Out of descriptors (EMFILE/ENFILE) or a connection reset before it was
                    // accepted: free a slot if we hold many, and wait for the next round.
                    if self.pending.len() > MAX_PENDING / 2 {
                        if let Some(old) = self.pending.pop_front() {
                            self.refused(old.from, Refusal::Busy);
                        }
                    }
                    let _ = e;
                    return;
                }
            }
        }
    }

    /// Reads what pending connection `i` sent and runs its handshake on.
    fn serve(&mut self, i: usize) -> Progress {
        loop {
            let p = &mut self.pending[i];
            let (have, want) = (p.have, p.want);
            match p.stream.read(&mut p.buf[have..want]) {
                Ok(0) => return Progress::Done, // hung up during the handshake
                Ok(n) => p.have += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Progress::Waiting,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return Progress::Done,
            }
            if p.have < p.want {
                continue;
            }
            if p.want == HEADER_LEN {
                let mut h = [0u8; HEADER_LEN];
                h.copy_from_slice(&p.buf[..HEADER_LEN]);
                match Header::decode(&h) {
                    Ok(header)
                        if header.kind == FrameKind::Hello
                            && header.len > 0
                            && header.len as usize <= MAX_MESSAGE =>
                    {
                        p.want = HEADER_LEN + header.len as usize;
                        continue;
                    }
                    _ => return self.refuse(i, Refusal::Malformed),
                }
            }
            let step = p.acceptor.on_message(&p.buf[HEADER_LEN..p.want]);
            p.have = 0;
            p.want = HEADER_LEN;
            match step {
                AcceptStep::Send(m) => {
                    if p.stream.write_all(&message_bytes(m)).is_err() {
                        return Progress::Done;
                    }
                }
                AcceptStep::Verified(node) => return self.admit(i, node),
                AcceptStep::Refuse(r, _) => return self.refuse(i, r),
                AcceptStep::RefusedBy(r) => {
                    let from = p.from;
                    self.refused(from, r);
                    return Progress::Done;
                }
            }
        }
    }

    fn refuse(&mut self, i: usize, why: Refusal) -> Progress {
        let p = &mut self.pending[i];
        let from = p.from;
        let _ = p.stream.write(&message_bytes(why.encode()));
        self.refused(from, why);
        Progress::Done
    }

    fn admit(&mut self, i: usize, node: NodeId) -> Progress {
        if self.claimed[node as usize] {
            return self.refuse(i, Refusal::AlreadyConnected(node));
        }
        let p = &mut self.pending[i];
        let Some(welcome) = p.acceptor.welcome() else {
            return Progress::Done;
        };
        // The stream is handed over in blocking mode; the Welcome is its last handshake
        // message (small: it fits the fresh socket's send buffer).
        if p.stream.write_all(&message_bytes(welcome)).is_err()
            || p.stream.set_nonblocking(false).is_err()
        {
            return Progress::Done;
        }
        let Ok(stream) = p.stream.try_clone() else {
            return Progress::Done;
        };
        self.claimed[node as usize] = true;
        if let Some(code) = p.acceptor.peer_code() {
            super::peer_codes::record(self.hs.cluster, node, code);
        }
        let _ = self.admitted.send((node, stream));
        Progress::Done
    }
}
