//! The rendezvous at node 0: how the nodes of a cluster started by a launcher (mpirun, srun;
//! see [`crate::launcher_env`]) learn each other's addresses. Every node listens on a port of
//! its own; node 0 listens on the coordinator's port, and every other node dials it there and
//! says where it listens. When all have, node 0 sends each the table of every node's address,
//! and the cluster starts as usual ([`crate::NodeRuntime::start`]), node 0 on the same listener.
//!
//! ```text
//! rank r (r > 0)                                   node 0 (coordinator)
//!   connect, greeting (as node r, rendezvous tag) ->   admits ranks 1..size once each
//!   Join { my address }                           ->   collects size - 1 of them
//!                                                 <-   Table { every node's address }
//!                                                      (or Refused { reason })
//! ```
//! The connection opens with the same greeting as every connection between nodes
//! ([`crate::remote::tcp`]), with the cluster's tag marked as a rendezvous one (a rendezvous
//! connection is never taken for a node's connection, nor the other way round). What a Join
//! or a Table holds comes from the network and is checked: lengths, address families, no
//! port 0, no address twice; anything else ends the rendezvous with an error naming it.
//!
//! A node that listens on an unspecified address (`0.0.0.0`, the default) announces the
//! address its connection to node 0 came from, with its own port; node 0 announces the
//! address the first rank reached it at. So on one network every node dials every other at
//! an address that has just carried traffic.
//!
//! ```no_run
//! use std::time::Duration;
//! use memlink_dsm::{ManagerKind, admission::Admission, launcher_env::LaunchEnv, rendezvous::{self, Bootstrap}};
//! let env = LaunchEnv::from_process()?;               // rank and size from mpirun / srun
//! let config = rendezvous::node_config(&env, &Bootstrap {
//!     coordinator: Some("head-node:7700".into()),
//!     listen: None,
//!     pages: 64,
//!     manager: ManagerKind::Central,
//!     connect_timeout: Duration::from_secs(30),
//!     admission: Admission::from_env()?,              // the key file named by MEMLINK_DSM_KEY_FILE
//! })?;
//! // config.peers holds every node's address; Dsm::join(config, ..) starts the node.
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use crate::admission::{
    Admission, AdmitError, ClusterId, ClusterKey, Handshake, Refusal, admit_accepted, admit_dialled,
};
use crate::launcher_env::LaunchEnv;
use crate::peer_addr::{self, AddrError};
use crate::remote::frame::{Frame, FrameKind};
use crate::remote::tcp::{read_frame, tune, write_frame};
use crate::types::{ManagerKind, NodeConfig, NodeId};

/// The bit that marks a greeting's cluster tag as a rendezvous one.
const RENDEZVOUS_TAG: u64 = 1 << 63;
/// How long an accepted connection has to greet and send its Join.
const JOIN_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause between two attempts to reach a coordinator that is not listening yet.
const RETRY_PAUSE: Duration = Duration::from_millis(50);
/// The first port of the range a Slurm job's coordinator port is drawn from.
pub const SLURM_PORT_BASE: u16 = 20_000;
/// The number of ports in that range.
pub const SLURM_PORT_SPAN: u16 = 10_000;
/// The coordinator port when nothing else names one.
pub const DEFAULT_COORDINATOR_PORT: u16 = 7700;

const JOIN: &[u8; 4] = b"MLRJ";
const TABLE: &[u8; 4] = b"MLRT";
const REFUSED: &[u8; 4] = b"MLRX";
/// Bytes of one encoded address: family, 16 address bytes, port.
const ADDR_LEN: usize = 1 + 16 + 2;
/// The longest reason a Refused carries.
const MAX_REASON: usize = 512;

/// How a node started by a launcher finds the others.
#[derive(Clone, Debug)]
pub struct Bootstrap {
    /// Node 0's rendezvous address, `host:port`. Without it: the first host of the launcher's
    /// host list (Slurm) with a port drawn from the job and step ids.
    pub coordinator: Option<String>,
    /// Where this node listens; None: every address, on the coordinator's port for node 0
    /// and a port the kernel picks for the others.
    pub listen: Option<SocketAddr>,
    /// The region's pages (the same on every node).
    pub pages: u32,
    /// The page manager (the same on every node).
    pub manager: ManagerKind,
    /// How long to wait for the rendezvous, and then for the peers.
    pub connect_timeout: Duration,
    /// Who may join: the rendezvous connections prove the cluster key too.
    pub admission: Admission,
}

/// Why the rendezvous failed.
#[derive(Debug)]
pub enum RendezvousError {
    /// No coordinator address is known.
    NoCoordinator(String),
    /// The coordinator's or this node's address is not usable.
    Address(AddrError),
    /// This node's listener could not be bound.
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        error: io::Error,
    },
    /// Node 0 could not be reached, or did not send the table, before the timeout.
    Coordinator {
        /// Its address.
        addr: SocketAddr,
        /// What was seen.
        reason: String,
    },
    /// Node 0: some ranks did not join before the timeout.
    Missing {
        /// The ranks that did not join.
        ranks: Vec<NodeId>,
        /// Where node 0 waited for them.
        addr: SocketAddr,
        /// How long.
        after: Duration,
    },
    /// A peer sent something the rendezvous does not allow, or node 0 refused this node.
    Refused(String),
}

impl fmt::Display for RendezvousError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RendezvousError::NoCoordinator(why) => write!(
                f,
                "no coordinator address: {why}; give --coordinator host:port (node 0's host)"
            ),
            RendezvousError::Address(e) => write!(f, "{e}"),
            RendezvousError::Listen { addr, error } => {
                write!(f, "cannot listen on {addr}: {error}")?;
                if error.kind() == io::ErrorKind::AddrInUse {
                    write!(
                        f,
                        " (another process uses that port: give --coordinator with another port)"
                    )?;
                } else if error.kind() == io::ErrorKind::AddrNotAvailable {
                    write!(
                        f,
                        " (not an address of this host: is rank 0 on the coordinator's host?)"
                    )?;
                }
                Ok(())
            }
            RendezvousError::Coordinator { addr, reason } => write!(
                f,
                "no address table from node 0 at {addr} before the connect timeout ({reason}): \
                 check that rank 0 runs there and that no firewall blocks the port"
            ),
            RendezvousError::Missing { ranks, addr, after } => write!(
                f,
                "ranks {ranks:?} did not join the rendezvous at {addr} within {after:?}: \
                 check that every rank reaches this host at that port"
            ),
            RendezvousError::Refused(why) => write!(f, "rendezvous refused: {why}"),
        }
    }
}

impl std::error::Error for RendezvousError {}

impl From<AddrError> for RendezvousError {
    fn from(e: AddrError) -> Self {
        RendezvousError::Address(e)
    }
}

/// The coordinator port of a Slurm job step: drawn from the job and step ids, so that two
/// jobs sharing a host do not pick the same one (they may still collide: give `--coordinator`).
pub fn slurm_port(job_id: u64, step_id: u64) -> u16 {
    let mixed = job_id.wrapping_mul(64).wrapping_add(step_id);
    SLURM_PORT_BASE + (mixed % SLURM_PORT_SPAN as u64) as u16
}

/// Node 0's rendezvous address: `coordinator` if given (resolved now), else the launcher's
/// first host with the job's port (Slurm), else an error.
pub fn coordinator_addr(
    env: &LaunchEnv,
    coordinator: Option<&str>,
    var: impl Fn(&str) -> Option<String>,
) -> Result<SocketAddr, RendezvousError> {
    if let Some(given) = coordinator {
        return Ok(peer_addr::resolve(given)?);
    }
    let Some(first) = env.hosts.as_ref().and_then(|h| h.first()) else {
        return Err(RendezvousError::NoCoordinator(format!(
            "{} does not say the job's hosts",
            env.launcher
        )));
    };
    let id = |name: &str| var(name).and_then(|v| v.trim().parse::<u64>().ok());
    let port = match id("SLURM_JOB_ID") {
        Some(job) => slurm_port(job, id("SLURM_STEP_ID").unwrap_or(0)),
        None => DEFAULT_COORDINATOR_PORT,
    };
    Ok(peer_addr::resolve(&format!("{first}:{port}"))?)
}

/// The tag of the greeting on rendezvous connections.
fn rendezvous_tag(pages: u32, manager: ManagerKind) -> u64 {
    crate::node::cluster_tag(pages, manager) | RENDEZVOUS_TAG
}

/// What node `me` of `size` brings to a rendezvous handshake (see [`crate::admission`]).
fn rendezvous_handshake(me: NodeId, size: usize, tag: u64, key: Option<&ClusterKey>) -> Handshake {
    Handshake {
        me,
        nodes: size,
        cluster: ClusterId::derive(&[b"memlink-dsm rendezvous", &tag.to_le_bytes()]),
        key: key.cloned(),
        code: crate::process::identity::CodeIdentity::here(),
    }
}

/// Runs the rendezvous for the node `env` describes and returns its [`NodeConfig`]: its id,
/// every node's address, and a listen address whose listener is bound already and handed
/// over ([`crate::init::hand_over_listener`]) to the node started next in this process.
pub fn node_config(env: &LaunchEnv, b: &Bootstrap) -> Result<NodeConfig, RendezvousError> {
    let coordinator = coordinator_addr(env, b.coordinator.as_deref(), |k| std::env::var(k).ok())?;
    let tag = rendezvous_tag(b.pages, b.manager);
    let unspecified = |port| match coordinator.ip() {
        IpAddr::V4(_) => SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)),
        IpAddr::V6(_) => SocketAddr::from((Ipv6Addr::UNSPECIFIED, port)),
    };
    let deadline = crate::remote::tcp::deadline_after(b.connect_timeout);
    let (listener, peers) = if env.rank == 0 {
        let addr = b.listen.unwrap_or_else(|| unspecified(coordinator.port()));
        let listener = listener_for(addr)?;
        let peers = coordinate(&listener, env.size, tag, b.admission.key(), deadline)?;
        (listener, peers)
    } else {
        let addr = b.listen.unwrap_or_else(|| unspecified(0));
        let listener = listener_for(addr)?;
        let announce = listener
            .local_addr()
            .map_err(|error| RendezvousError::Listen { addr, error })?;
        let peers = join(
            coordinator,
            env.rank,
            env.size,
            tag,
            b.admission.key(),
            announce,
            deadline,
        )?;
        (listener, peers)
    };
    let listen = listener
        .local_addr()
        .map_err(|error| RendezvousError::Listen {
            addr: peers[env.rank as usize],
            error,
        })?;
    crate::init::hand_over_listener(listener);
    Ok(NodeConfig {
        id: env.rank,
        listen,
        peers,
        pages: b.pages,
        manager: b.manager,
        connect_timeout: deadline.saturating_duration_since(Instant::now()),
        admission: b.admission.clone(),
        memory_budget: None,
        hold: crate::config::DEFAULT_HOLD,
    })
}

/// The listener for `addr`: one inherited from a launcher ([`crate::init::LISTEN_FD_ENV`]),
/// else `addr` bound now.
fn listener_for(addr: SocketAddr) -> Result<TcpListener, RendezvousError> {
    match crate::init::take_inherited_listener(addr) {
        Some(listener) => Ok(listener),
        None => TcpListener::bind(addr).map_err(|error| RendezvousError::Listen { addr, error }),
    }
}

/// Node 0's side: accepts on `listener` until every rank `1..size` has joined (or `deadline`),
/// then sends each the table and returns it. `listener` stays open for the node's own use.
pub fn coordinate(
    listener: &TcpListener,
    size: usize,
    tag: u64,
    key: Option<&ClusterKey>,
    deadline: Instant,
) -> Result<Vec<SocketAddr>, RendezvousError> {
    let hs = rendezvous_handshake(0, size, tag, key);
    let here = listener
        .local_addr()
        .map_err(|error| RendezvousError::Listen {
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            error,
        })?;
    let started = Instant::now();
    let mut table: Vec<Option<SocketAddr>> = vec![None; size];
    table[0] = Some(here);
    let mut streams: Vec<Option<TcpStream>> = (0..size).map(|_| None).collect();
    let mut first_seen_at: Option<IpAddr> = None;
    let mut missing = size - 1;
    let claimed = Arc::new(std::sync::Mutex::new(vec![false; size]));
    let in_flight = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = mpsc::channel::<(NodeId, TcpStream, SocketAddr)>();
    let bound = 2 * size + 16;
    while missing > 0 {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            let ranks = (1..size)
                .filter(|&r| streams[r].is_none())
                .map(|r| r as NodeId)
                .collect();
            return Err(RendezvousError::Missing {
                ranks,
                addr: here,
                after: started.elapsed(),
            });
        }
        // Joins that finished first, then new connections (each greeted in a thread of its
        // own, at most `bound` at once, so that a silent connection holds up nobody).
        while let Ok((rank, stream, announced)) = rx.try_recv() {
            let local = stream.local_addr().map(|a| a.ip()).ok();
            first_seen_at = first_seen_at.or(local);
            table[rank as usize] = Some(announced);
            streams[rank as usize] = Some(stream);
            missing -= 1;
        }
        if missing == 0 {
            break;
        }
        if !readable(listener, left.min(Duration::from_millis(100))) {
            continue;
        }
        let Ok((stream, from)) = listener.accept() else {
            continue;
        };
        if in_flight.load(Ordering::SeqCst) >= bound {
            drop(stream);
            continue;
        }
        in_flight.fetch_add(1, Ordering::SeqCst);
        let (tx, claimed, in_flight) = (tx.clone(), Arc::clone(&claimed), Arc::clone(&in_flight));
        let hs = hs.clone();
        thread::spawn(move || {
            if let Some(joined) = admit_join(stream, from, &hs, &claimed) {
                let _ = tx.send(joined);
            }
            in_flight.fetch_sub(1, Ordering::SeqCst);
        });
    }
    // Node 0 is announced at the address the ranks reached it at (when it listens on all).
    if let (true, Some(ip)) = (here.ip().is_unspecified(), first_seen_at) {
        table[0] = Some(SocketAddr::new(ip, here.port()));
    }
    let table: Vec<SocketAddr> = table.into_iter().map(|a| a.unwrap_or(here)).collect();
    let outcome = peer_addr::check_distinct(&table);
    let frame = match &outcome {
        Ok(()) => table_frame(&table),
        Err(e) => refused_frame(&e.to_string()),
    };
    for s in streams.iter_mut().flatten() {
        let _ = write_frame(s, &frame);
    }
    outcome.map_err(|e| RendezvousError::Refused(e.to_string()))?;
    Ok(table)
}

/// Greets one accepted connection and reads its Join; None (the connection closed, with a
/// Refused when it got that far) when it is not a rank of this cluster that joins once.
fn admit_join(
    mut s: TcpStream,
    from: SocketAddr,
    hs: &Handshake,
    claimed: &std::sync::Mutex<Vec<bool>>,
) -> Option<(NodeId, TcpStream, SocketAddr)> {
    tune(&s);
    let _ = s.set_read_timeout(Some(JOIN_TIMEOUT));
    // The handshake refuses rank 0 (the coordinator itself) and ranks out of range.
    let greeted = admit_accepted(&mut s, hs, |rank| {
        let mut c = claimed.lock().unwrap_or_else(|p| p.into_inner());
        if std::mem::replace(&mut c[rank as usize], true) {
            return Err(Refusal::AlreadyConnected(rank));
        }
        Ok(())
    });
    let rank = match greeted {
        Ok(rank) => rank,
        Err(reason) => {
            eprintln!("memlink-dsm rendezvous: refused a connection from {from}: {reason}");
            return None;
        }
    };
    let announced = read_frame(&mut s)
        .map_err(|e| e.to_string())
        .and_then(|f| decode_join(&f.payload));
    let announced = match announced {
        Ok(a) if a.ip().is_unspecified() => SocketAddr::new(from.ip(), a.port()),
        Ok(a) => a,
        Err(reason) => {
            let reason = format!("rank {rank} from {from}: bad Join: {reason}");
            let _ = write_frame(&mut s, &refused_frame(&reason));
            eprintln!("memlink-dsm rendezvous: {reason}");
            // The rank may not join again: its slot stays claimed, and node 0 reports it missing.
            return None;
        }
    };
    let _ = s.set_read_timeout(None);
    Some((rank, s, announced))
}

/// A rank's side: reaches node 0 at `coordinator` (retrying until `deadline`), announces
/// `announce`, and returns the table node 0 sends.
pub fn join(
    coordinator: SocketAddr,
    rank: NodeId,
    size: usize,
    tag: u64,
    key: Option<&ClusterKey>,
    announce: SocketAddr,
    deadline: Instant,
) -> Result<Vec<SocketAddr>, RendezvousError> {
    let hs = rendezvous_handshake(rank, size, tag, key);
    let mut last = String::from("no attempt");
    let fail = |reason| RendezvousError::Coordinator {
        addr: coordinator,
        reason,
    };
    let mut s = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(fail(last));
        }
        match TcpStream::connect_timeout(&coordinator, left) {
            Ok(mut s) => {
                tune(&s);
                let _ = s.set_read_timeout(Some(left.max(Duration::from_millis(10))));
                match admit_dialled(&mut s, &hs, 0) {
                    Ok(()) => break s,
                    Err(AdmitError::RefusedBy(r)) if !r.is_transient() => {
                        return Err(fail(format!("rejected by node 0: {r}")));
                    }
                    Err(e @ AdmitError::Refused(_)) => return Err(fail(e.to_string())),
                    Err(e) => last = e.to_string(),
                }
            }
            Err(e) => last = e.to_string(),
        }
        thread::sleep(RETRY_PAUSE.min(deadline.saturating_duration_since(Instant::now())));
    };
    // Announce the address this connection came from when listening on all of them.
    let announce = match (announce.ip().is_unspecified(), s.local_addr()) {
        (true, Ok(local)) => SocketAddr::new(local.ip(), announce.port()),
        _ => announce,
    };
    let join = Frame::new(FrameKind::OneWay, 0, join_payload(announce));
    write_frame(&mut s, &join).map_err(|e| fail(format!("cannot send the Join: {e}")))?;
    let left = deadline.saturating_duration_since(Instant::now());
    let _ = s.set_read_timeout(Some(left.max(Duration::from_millis(10))));
    let frame = read_frame(&mut s).map_err(|e| {
        fail(match e.kind() {
            io::ErrorKind::UnexpectedEof => {
                "node 0 closed the connection before sending the table (see its error)".into()
            }
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                "not every rank joined in time".into()
            }
            _ => e.to_string(),
        })
    })?;
    let table = decode_table(&frame.payload, size).map_err(RendezvousError::Refused)?;
    Ok(table)
}

/// Whether `listener` has a connection to accept within `wait`.
fn readable(listener: &TcpListener, wait: Duration) -> bool {
    let mut pfd = libc::pollfd {
        fd: listener.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = wait.as_millis().min(i32::MAX as u128) as libc::c_int;
    // SAFETY: `pfd` is one live pollfd for the listener's open descriptor; poll writes only
    // its `revents`.
    let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
    rc > 0 && pfd.revents & libc::POLLIN != 0
}

fn encode_addr(a: SocketAddr, out: &mut Vec<u8>) {
    match a.ip() {
        IpAddr::V4(ip) => {
            out.push(4);
            out.extend_from_slice(&ip.to_ipv6_mapped().octets());
        }
        IpAddr::V6(ip) => {
            out.push(6);
            out.extend_from_slice(&ip.octets());
        }
    }
    out.extend_from_slice(&a.port().to_le_bytes());
}

fn decode_addr(b: &[u8]) -> Result<SocketAddr, String> {
    if b.len() != ADDR_LEN {
        return Err(format!("an address of {} bytes", b.len()));
    }
    let mut octets = [0u8; 16];
    octets.copy_from_slice(&b[1..17]);
    let ip6 = Ipv6Addr::from(octets);
    let ip = match b[0] {
        4 => IpAddr::V4(
            ip6.to_ipv4_mapped()
                .ok_or_else(|| "an IPv4 address not in mapped form".to_string())?,
        ),
        6 => IpAddr::V6(ip6),
        other => return Err(format!("address family {other}")),
    };
    let port = u16::from_le_bytes([b[17], b[18]]);
    if port == 0 {
        return Err(format!("{ip} with port 0"));
    }
    Ok(SocketAddr::new(ip, port))
}

fn join_payload(announce: SocketAddr) -> Vec<u8> {
    let mut p = JOIN.to_vec();
    encode_addr(announce, &mut p);
    p
}

fn decode_join(p: &[u8]) -> Result<SocketAddr, String> {
    match p.split_first_chunk::<4>() {
        Some((magic, rest)) if magic == JOIN => decode_addr(rest),
        _ => Err("not a Join".into()),
    }
}

fn table_frame(table: &[SocketAddr]) -> Frame {
    let mut p = TABLE.to_vec();
    p.extend_from_slice(&(table.len() as u16).to_le_bytes());
    for a in table {
        encode_addr(*a, &mut p);
    }
    Frame::new(FrameKind::OneWay, 0, p)
}

fn refused_frame(reason: &str) -> Frame {
    let mut p = REFUSED.to_vec();
    let mut end = reason.len().min(MAX_REASON);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    p.extend_from_slice(&reason.as_bytes()[..end]);
    Frame::new(FrameKind::OneWay, 0, p)
}

fn decode_table(p: &[u8], size: usize) -> Result<Vec<SocketAddr>, String> {
    let Some((magic, rest)) = p.split_first_chunk::<4>() else {
        return Err("node 0 sent a frame too short to be a table".into());
    };
    if magic == REFUSED {
        return Err(format!(
            "node 0 refused: {}",
            String::from_utf8_lossy(&rest[..rest.len().min(MAX_REASON)])
        ));
    }
    if magic != TABLE {
        return Err("node 0 sent something that is not a table".into());
    }
    let Some((count, entries)) = rest.split_first_chunk::<2>() else {
        return Err("a table without its count".into());
    };
    let count = u16::from_le_bytes(*count) as usize;
    if count != size || entries.len() != count.saturating_mul(ADDR_LEN) {
        return Err(format!(
            "a table of {count} nodes in {} bytes, for a cluster of {size}",
            entries.len()
        ));
    }
    let table = entries
        .chunks_exact(ADDR_LEN)
        .map(decode_addr)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("node 0's table holds {e}"))?;
    peer_addr::check_distinct(&table).map_err(|e| format!("node 0's table: {e}"))?;
    Ok(table)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn tables_and_joins_round_trip() {
        let t = vec![
            addr("10.0.0.1:7700"),
            addr("[fe80::1]:9"),
            addr("10.0.0.2:1"),
        ];
        let f = table_frame(&t);
        assert_eq!(decode_table(&f.payload, 3).unwrap(), t);
        assert_eq!(decode_join(&join_payload(t[1])).unwrap(), t[1]);
        let r = refused_frame(&"é".repeat(400));
        let e = decode_table(&r.payload, 3).unwrap_err();
        assert!(e.starts_with("node 0 refused: é"), "{e}");
    }

    #[test]
    fn malformed_tables_are_refused() {
        let t = vec![addr("10.0.0.1:7700"), addr("10.0.0.2:7700")];
        let good = table_frame(&t).payload;
        assert!(
            decode_table(&good, 3)
                .unwrap_err()
                .contains("for a cluster of 3")
        );
        for cut in 0..good.len() {
            assert!(decode_table(&good[..cut], 2).is_err(), "cut at {cut}");
        }
        let mut bad_family = good.clone();
        bad_family[6] = 9;
        assert!(
            decode_table(&bad_family, 2)
                .unwrap_err()
                .contains("family 9")
        );
        let mut port0 = good.clone();
        port0[6 + 17] = 0;
        port0[6 + 18] = 0;
        assert!(decode_table(&port0, 2).unwrap_err().contains("port 0"));
        let dup = table_frame(&[t[0], t[0]]).payload;
        assert!(decode_table(&dup, 2).unwrap_err().contains("same address"));
        assert!(decode_join(b"MLRJ").is_err());
        assert!(decode_join(b"XXXX").is_err());
    }

    #[test]
    fn slurm_ports_stay_in_their_range_and_differ_by_step() {
        for job in [0, 1, 4_000_000_000, u64::MAX] {
            for step in [0, 1, 63, u64::MAX] {
                let p = slurm_port(job, step);
                assert!((SLURM_PORT_BASE..SLURM_PORT_BASE + SLURM_PORT_SPAN).contains(&p));
            }
        }
        assert_ne!(slurm_port(17, 0), slurm_port(17, 1));
        assert_ne!(slurm_port(17, 0), slurm_port(18, 0));
    }

    /// Three ranks in threads, on loopback: every rank gets the same table, node 0 first at
    /// the coordinator's address, each rank at its own listener.
    #[test]
    fn three_ranks_meet_at_node_0() {
        let coordinator = TcpListener::bind("127.0.0.1:0").unwrap();
        let at = coordinator.local_addr().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        let tag = rendezvous_tag(8, ManagerKind::Central);
        let key = ClusterKey::generate().unwrap();
        let ranks: Vec<_> = (1..3)
            .map(|r| {
                let key = key.clone();
                thread::spawn(move || {
                    let l = TcpListener::bind("127.0.0.1:0").unwrap();
                    let mine = l.local_addr().unwrap();
                    (
                        mine,
                        join(at, r, 3, tag, Some(&key), mine, deadline).unwrap(),
                    )
                })
            })
            .collect();
        let table = coordinate(&coordinator, 3, tag, Some(&key), deadline).unwrap();
        assert_eq!(table[0], at);
        for (r, h) in ranks.into_iter().enumerate() {
            let (mine, got) = h.join().unwrap();
            assert_eq!(got, table);
            assert_eq!(table[r + 1], mine);
        }
    }

    /// A rank of another configuration (another tag) is refused; node 0 waits on and names the
    /// rank that never joined.
    #[test]
    fn a_foreign_rank_is_refused_and_a_missing_one_named() {
        let coordinator = TcpListener::bind("127.0.0.1:0").unwrap();
        let at = coordinator.local_addr().unwrap();
        let deadline = Instant::now() + Duration::from_secs(2);
        let tag = rendezvous_tag(8, ManagerKind::Central);
        let other = rendezvous_tag(9, ManagerKind::Central);
        let foreign =
            thread::spawn(move || join(at, 1, 2, other, None, addr("127.0.0.1:9"), deadline));
        let e = coordinate(&coordinator, 2, tag, None, deadline).unwrap_err();
        assert!(
            matches!(&e, RendezvousError::Missing { ranks, .. } if ranks == &[1]),
            "{e}"
        );
        let e = foreign.join().unwrap().unwrap_err();
        assert!(matches!(e, RendezvousError::Coordinator { .. }), "{e}");
        assert!(e.to_string().contains("rejected by node 0"), "{e}");
    }
}
