//! Two-process ping-pong building blocks: a forked echo process and a timed loop of round
//! trips, for each channel kind and for the raw floors they are compared with (a cache line
//! bounced between two cores, a futex word bounced between two sleeping processes).
//!
//! Used by `benches/channels.rs` and by the CLI's demo and IPC benchmark.
//!
//! ```no_run
//! use memlink_channels::pingpong::{PingPong, PingPongKind};
//! use memlink_channels::WaitMode;
//! let mut raw = PingPong::start(PingPongKind::CacheLine).unwrap();
//! let mut sync = PingPong::start(PingPongKind::Sync(WaitMode::Spin)).unwrap();
//! let (a, b) = (raw.round_trips(100_000).unwrap(), sync.round_trips(100_000).unwrap());
//! println!("sync spin / raw cache line = {:.2}", b.as_secs_f64() / a.as_secs_f64());
//! ```

use crate::region::Region;
use crate::sync::futex;
use crate::{BufferedChannel, LoanChannel, SyncChannel, WaitMode};
use crossbeam_utils::CachePadded;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Which transport a ping-pong bounces its message through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PingPongKind {
    /// Raw floor for spinning: an 8-byte counter in two cache lines, no protocol.
    CacheLine,
    /// Raw floor for blocking: two futex words, each side sleeps until woken.
    Futex,
    /// [`SyncChannel`] with 8-byte messages (one copy each way).
    Sync(WaitMode),
    /// [`LoanChannel`] with messages of `size` bytes built in place (header and last byte
    /// written and checked: the transport cost, not a memset).
    Loan {
        /// Message (and slot) size in bytes.
        size: usize,
        /// Waiting mode of both channels.
        mode: WaitMode,
    },
    /// [`BufferedChannel`] with 8-byte messages (two copies each way).
    Buffered(WaitMode),
}

/// Why a ping-pong could not start or run.
#[derive(Debug)]
pub enum PingPongError {
    /// Setting up the region or channels failed.
    Setup(String),
    /// fork failed.
    Fork(std::io::Error),
    /// The echo process stopped answering (died, or a channel disconnected).
    PeerLost,
    /// A message came back changed.
    Corrupt {
        /// What was sent.
        sent: u64,
        /// What came back.
        got: u64,
    },
}

impl fmt::Display for PingPongError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PingPongError::Setup(e) => write!(f, "ping-pong setup failed: {e}"),
            PingPongError::Fork(e) => write!(f, "cannot fork the echo process: {e}"),
            PingPongError::PeerLost => write!(f, "the echo process stopped answering"),
            PingPongError::Corrupt { sent, got } => {
                write!(f, "message corrupted in flight: sent {sent}, got {got}")
            }
        }
    }
}

impl std::error::Error for PingPongError {}

const STOP: u64 = u64::MAX;

#[repr(C)]
struct RawWords {
    ping: CachePadded<AtomicU64>,
    pong: CachePadded<AtomicU64>,
    req: CachePadded<AtomicU32>,
    resp: CachePadded<AtomicU32>,
}

enum Ends {
    Raw(*const RawWords),
    Sync {
        tx: crate::SyncSender<u64>,
        rx: crate::SyncReceiver<u64>,
        out: crate::SharedVar<u64>,
        into: crate::SharedVar<u64>,
    },
    Loan {
        tx: crate::LoanSender,
        rx: crate::LoanReceiver,
        size: usize,
    },
    Buffered {
        tx: crate::BufferedSender<u64>,
        rx: crate::BufferedReceiver<u64>,
    },
}

/// Connects one side's channel ends (run in that side's process, after the fork).
type MakeEnds = Box<dyn FnOnce() -> Result<Ends, PingPongError>>;

/// A running ping-pong: this process and a forked echo process.
pub struct PingPong {
    kind: PingPongKind,
    ends: Ends,
    child: libc::pid_t,
    seq: u64,
    _region: Arc<Region>,
}

impl fmt::Debug for PingPong {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PingPong")
            .field("kind", &self.kind)
            .field("child", &self.child)
            .finish()
    }
}

fn setup<E: fmt::Display>(e: E) -> PingPongError {
    PingPongError::Setup(e.to_string())
}

fn raw(words: *const RawWords) -> &'static RawWords {
    // SAFETY: `words` points into the ping-pong's region, which both processes keep mapped for
    // as long as they run the ping-pong (the parent holds it in `PingPong`, the child until
    // `_exit`).
    unsafe { &*words }
}

/// Writes the sequence number in the first 8 bytes and its low byte in the last byte.
fn put_header(buf: &mut [u8], seq: u64) {
    buf[..8].copy_from_slice(&seq.to_ne_bytes());
    if buf.len() > 8 {
        buf[buf.len() - 1] = seq as u8;
    }
}

/// Reads back what `put_header` wrote, `None` if the two ends disagree.
fn header(buf: &[u8]) -> Option<u64> {
    let seq = u64::from_ne_bytes(buf.get(..8)?.try_into().ok()?);
    (buf.len() <= 8 || buf[buf.len() - 1] == seq as u8).then_some(seq)
}

impl PingPong {
    /// Sets up the transport and forks the echo process.
    pub fn start(kind: PingPongKind) -> Result<PingPong, PingPongError> {
        let slot = match kind {
            PingPongKind::Loan { size, .. } => size.max(8),
            _ => 64,
        };
        let region =
            Arc::new(Region::create("memlink-pingpong", 4 * slot + (1 << 20)).map_err(setup)?);
        // Each side's ends: `mine` for the parent (a -> b), the child's made after fork.
        let (parent_ends, child_ends): (MakeEnds, MakeEnds) = match kind {
            PingPongKind::CacheLine | PingPongKind::Futex => {
                let words = region
                    .alloc_bytes(size_of::<RawWords>(), 128)
                    .map_err(setup)?
                    .cast::<RawWords>();
                // SAFETY: fresh, aligned space for one RawWords in the mapped region.
                unsafe {
                    words.write(RawWords {
                        ping: CachePadded::new(AtomicU64::new(0)),
                        pong: CachePadded::new(AtomicU64::new(0)),
                        req: CachePadded::new(AtomicU32::new(0)),
                        resp: CachePadded::new(AtomicU32::new(0)),
                    })
                };
                let w = words as usize;
                (
                    Box::new(move || Ok(Ends::Raw(w as *const RawWords))),
                    Box::new(move || Ok(Ends::Raw(w as *const RawWords))),
                )
            }
            PingPongKind::Sync(mode) => {
                let a = SyncChannel::<u64>::create(&region, mode).map_err(setup)?;
                let b = SyncChannel::<u64>::create(&region, mode).map_err(setup)?;
                let (r1, r2) = (Arc::clone(&region), Arc::clone(&region));
                let (a2, b2) = (a.clone(), b.clone());
                (
                    Box::new(move || {
                        Ok(Ends::Sync {
                            tx: a.sender().map_err(setup)?,
                            rx: b.receiver().map_err(setup)?,
                            out: r1.alloc(0u64).map_err(setup)?,
                            into: r1.alloc(0u64).map_err(setup)?,
                        })
                    }),
                    Box::new(move || {
                        Ok(Ends::Sync {
                            tx: b2.sender().map_err(setup)?,
                            rx: a2.receiver().map_err(setup)?,
                            out: r2.alloc(0u64).map_err(setup)?,
                            into: r2.alloc(0u64).map_err(setup)?,
                        })
                    }),
                )
            }
            PingPongKind::Loan { size, mode } => {
                let a = LoanChannel::create(&region, 2, slot, mode).map_err(setup)?;
                let b = LoanChannel::create(&region, 2, slot, mode).map_err(setup)?;
                let (a2, b2) = (a.clone(), b.clone());
                let size = size.max(8);
                (
                    Box::new(move || {
                        Ok(Ends::Loan {
                            tx: a.sender().map_err(setup)?,
                            rx: b.receiver().map_err(setup)?,
                            size,
                        })
                    }),
                    Box::new(move || {
                        Ok(Ends::Loan {
                            tx: b2.sender().map_err(setup)?,
                            rx: a2.receiver().map_err(setup)?,
                            size,
                        })
                    }),
                )
            }
            PingPongKind::Buffered(mode) => {
                let a = BufferedChannel::<u64>::create(&region, 4, mode).map_err(setup)?;
                let b = BufferedChannel::<u64>::create(&region, 4, mode).map_err(setup)?;
                let (a2, b2) = (a.clone(), b.clone());
                (
                    Box::new(move || {
                        Ok(Ends::Buffered {
                            tx: a.sender().map_err(setup)?,
                            rx: b.receiver().map_err(setup)?,
                        })
                    }),
                    Box::new(move || {
                        Ok(Ends::Buffered {
                            tx: b2.sender().map_err(setup)?,
                            rx: a2.receiver().map_err(setup)?,
                        })
                    }),
                )
            }
        };
        let ready = region.alloc_bytes(4, 4).map_err(setup)?.cast::<AtomicU32>();
        // SAFETY: fresh aligned space for one AtomicU32 in the mapped region.
        unsafe { ready.write(AtomicU32::new(0)) };
        // SAFETY: the child only runs `echo` (which touches the region and the channels) and
        // then `_exit`s; it never returns into the caller.
        let child = unsafe { libc::fork() };
        if child < 0 {
            return Err(PingPongError::Fork(std::io::Error::last_os_error()));
        }
        if child == 0 {
            let code = match child_ends() {
                Ok(ends) => {
                    // SAFETY: `ready` is the AtomicU32 placed above, in the mapped region.
                    let ready = unsafe { &*ready };
                    ready.store(1, Ordering::Release);
                    futex::wake_all(ready);
                    echo(kind, ends)
                }
                Err(_) => 2,
            };
            // SAFETY: leaves the echo process without running the parent's destructors.
            unsafe { libc::_exit(code) };
        }
        drop(child_ends);
        let ends = parent_ends()?;
        // SAFETY: as above.
        let ready = unsafe { &*ready };
        // Wait until the child has connected its ends (it marks `ready` and wakes us).
        while ready.load(Ordering::Acquire) == 0 {
            futex::wait(ready, 0, Some(Duration::from_millis(50)));
        }
        Ok(PingPong {
            kind,
            ends,
            child,
            seq: 0,
            _region: region,
        })
    }

    /// The transport.
    pub fn kind(&self) -> PingPongKind {
        self.kind
    }

    /// Runs `n` round trips and returns the time they took.
    pub fn round_trips(&mut self, n: u64) -> Result<Duration, PingPongError> {
        let start = Instant::now();
        for _ in 0..n {
            self.seq += 1;
            let sent = self.seq;
            let got = self.one(sent)?;
            if got != sent {
                return Err(PingPongError::Corrupt { sent, got });
            }
        }
        Ok(start.elapsed())
    }

    fn one(&mut self, seq: u64) -> Result<u64, PingPongError> {
        match &mut self.ends {
            Ends::Raw(w) => {
                let w = raw(*w);
                if self.kind == PingPongKind::CacheLine {
                    w.ping.store(seq, Ordering::Release);
                    let mut spins = 0u32;
                    loop {
                        let v = w.pong.load(Ordering::Acquire);
                        if v == seq {
                            return Ok(v);
                        }
                        spins = spins.wrapping_add(1);
                        if spins == 0 && !alive(self.child) {
                            return Err(PingPongError::PeerLost);
                        }
                        std::hint::spin_loop();
                    }
                }
                w.req.store(seq as u32, Ordering::Release);
                futex::wake_all(&w.req);
                loop {
                    let v = w.resp.load(Ordering::Acquire);
                    if v == seq as u32 {
                        return Ok(seq);
                    }
                    if futex::wait(&w.resp, v, Some(Duration::from_millis(100)))
                        == futex::WaitOutcome::TimedOut
                        && !alive(self.child)
                    {
                        return Err(PingPongError::PeerLost);
                    }
                }
            }
            Ends::Sync { tx, rx, out, into } => {
                **out = seq;
                tx.send(out).map_err(|_| PingPongError::PeerLost)?;
                rx.recv(into).map_err(|_| PingPongError::PeerLost)?;
                Ok(**into)
            }
            Ends::Loan { tx, rx, size } => {
                let mut loan = tx.loan().map_err(|_| PingPongError::PeerLost)?;
                put_header(&mut loan.as_mut_slice()[..*size], seq);
                loan.send(*size).map_err(|_| PingPongError::PeerLost)?;
                let sample = rx.recv().map_err(|_| PingPongError::PeerLost)?;
                header(&sample).ok_or(PingPongError::Corrupt { sent: seq, got: 0 })
            }
            Ends::Buffered { tx, rx } => {
                tx.send(seq).map_err(|_| PingPongError::PeerLost)?;
                rx.recv().map_err(|_| PingPongError::PeerLost)
            }
        }
    }

    fn stop(&mut self) {
        match &mut self.ends {
            Ends::Raw(w) => {
                let w = raw(*w);
                w.ping.store(STOP, Ordering::Release);
                w.req.store(STOP as u32, Ordering::Release);
                futex::wake_all(&w.req);
            }
            Ends::Sync { tx, out, .. } => {
                **out = STOP;
                let _ = tx.send_timeout(out, Duration::from_secs(1));
            }
            Ends::Loan { tx, size, .. } => {
                if let Ok(mut loan) = tx.loan_timeout(Duration::from_secs(1)) {
                    put_header(&mut loan.as_mut_slice()[..*size], STOP);
                    let _ = loan.send(*size);
                }
            }
            Ends::Buffered { tx, .. } => {
                let _ = tx.send_timeout(STOP, Duration::from_secs(1));
            }
        }
    }
}

impl Drop for PingPong {
    fn drop(&mut self) {
        self.stop();
        let mut status = 0;
        // SAFETY: waiting for our own child; `status` is a valid out-parameter.
        unsafe { libc::waitpid(self.child, &mut status, 0) };
    }
}

fn alive(pid: libc::pid_t) -> bool {
    crate::liveness::pid_is_alive(pid as u32)
}

/// The echo process's loop: bounce every message back until STOP or the parent is gone.
fn echo(kind: PingPongKind, mut ends: Ends) -> i32 {
    // SAFETY: getppid has no preconditions.
    let parent = unsafe { libc::getppid() };
    match &mut ends {
        Ends::Raw(w) => {
            let w = raw(*w);
            let mut last = 0u64;
            if kind == PingPongKind::CacheLine {
                let mut spins = 0u32;
                loop {
                    let v = w.ping.load(Ordering::Acquire);
                    if v == STOP {
                        return 0;
                    }
                    if v != last {
                        last = v;
                        w.pong.store(v, Ordering::Release);
                        continue;
                    }
                    spins = spins.wrapping_add(1);
                    if spins == 0 && !alive(parent) {
                        return 1;
                    }
                    std::hint::spin_loop();
                }
            }
            let mut last = 0u32;
            loop {
                let v = w.req.load(Ordering::Acquire);
                if v == STOP as u32 {
                    return 0;
                }
                if v == last {
                    if futex::wait(&w.req, v, Some(Duration::from_millis(100)))
                        == futex::WaitOutcome::TimedOut
                        && !alive(parent)
                    {
                        return 1;
                    }
                    continue;
                }
                last = v;
                w.resp.store(v, Ordering::Release);
                futex::wake_all(&w.resp);
            }
        }
        Ends::Sync { tx, rx, out, into } => loop {
            if rx.recv(into).is_err() || **into == STOP {
                return 0;
            }
            **out = **into;
            if tx.send(out).is_err() {
                return 1;
            }
        },
        Ends::Loan { tx, rx, size } => loop {
            let seq = match rx.recv() {
                Ok(sample) => header(&sample),
                Err(_) => return 0,
            };
            let Some(seq) = seq else { return 1 };
            if seq == STOP {
                return 0;
            }
            let Ok(mut loan) = tx.loan() else { return 1 };
            put_header(&mut loan.as_mut_slice()[..*size], seq);
            if loan.send(*size).is_err() {
                return 1;
            }
        },
        Ends::Buffered { tx, rx } => loop {
            match rx.recv() {
                Ok(STOP) | Err(_) => return 0,
                Ok(v) => {
                    if tx.send(v).is_err() {
                        return 1;
                    }
                }
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every kind starts, bounces checked messages, and stops its echo process.
    #[test]
    fn every_kind_round_trips() {
        for kind in [
            PingPongKind::CacheLine,
            PingPongKind::Futex,
            PingPongKind::Sync(WaitMode::Spin),
            PingPongKind::Sync(WaitMode::Block),
            PingPongKind::Loan {
                size: 8,
                mode: WaitMode::ADAPTIVE,
            },
            PingPongKind::Loan {
                size: 1 << 20,
                mode: WaitMode::Block,
            },
            PingPongKind::Buffered(WaitMode::ADAPTIVE),
        ] {
            let mut pp = PingPong::start(kind).unwrap();
            pp.round_trips(200).unwrap();
        }
    }
}
