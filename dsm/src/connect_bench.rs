//! What admission costs at connection set-up, measured in one run over loopback: a raw TCP
//! connect, a connect with the handshake of a cluster without a key (Hello, Welcome), and a
//! connect with the keyed admission handshake (Hello, Challenge, Proof, Welcome), beside a
//! 1-byte round trip on an open connection, in interleaved rounds so that a slow phase of
//! the host weighs on all of them. The keyed handshake should cost one round trip (and two
//! HMACs each side) more than the one without a key. `memlink dsm bench` prints these.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc::Receiver;
use std::thread;
use std::time::{Duration, Instant};

use crate::admission::{ClusterId, ClusterKey, Gate, Handshake, dial};
use crate::types::NodeId;

/// Medians of connection set-up, in microseconds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ConnectFigures {
    /// A 1-byte round trip on an open connection (TCP_NODELAY).
    pub round_trip_us: f64,
    /// `connect()` alone (the kernel's SYN, SYN-ACK).
    pub tcp_connect_us: f64,
    /// Connect and the handshake without a key (one round trip).
    pub open_handshake_us: f64,
    /// Connect and the keyed admission handshake (two round trips, four HMACs).
    pub admission_us: f64,
    /// The keyed handshake's computation alone (both sides, in memory, no I/O).
    pub admission_compute_us: f64,
}

impl ConnectFigures {
    /// What admission adds to the handshake without a key, in round trips:
    /// (admission - open handshake) / round trip; about 1 plus the HMACs' share.
    pub fn extra_round_trips(&self) -> f64 {
        (self.admission_us - self.open_handshake_us) / self.round_trip_us
    }

    /// Each figure with its name (`memlink dsm bench --json` keys).
    pub fn named(&self) -> [(&'static str, f64); 5] {
        [
            ("connect_round_trip_us", self.round_trip_us),
            ("tcp_connect_us", self.tcp_connect_us),
            ("open_handshake_us", self.open_handshake_us),
            ("admission_us", self.admission_us),
            ("admission_compute_us", self.admission_compute_us),
        ]
    }
}

fn median_us(v: &mut [Duration]) -> f64 {
    v.sort();
    v.get(v.len() / 2).map_or(0.0, |d| d.as_secs_f64() * 1e6)
}

/// A gate of node 0 that admits `samples` dialers (ids 1..=samples) and drops what it admits.
fn gate(
    samples: usize,
    key: Option<ClusterKey>,
) -> io::Result<(Gate, Receiver<(NodeId, TcpStream)>)> {
    let hs = Handshake {
        me: 0,
        nodes: samples + 1,
        cluster: ClusterId::derive(&[b"connect bench"]),
        key,
        code: crate::process::identity::CodeIdentity::here(),
    };
    Gate::start(TcpListener::bind("127.0.0.1:0")?, hs, "connect bench")
}

fn dialer(me: NodeId, samples: usize, key: Option<ClusterKey>) -> Handshake {
    Handshake {
        me,
        nodes: samples + 1,
        cluster: ClusterId::derive(&[b"connect bench"]),
        key,
        code: crate::process::identity::CodeIdentity::here(),
    }
}

/// The keyed handshake run in memory by both sides (what it computes, without I/O).
fn compute_once(key: &ClusterKey, me: NodeId, samples: usize) -> Duration {
    use crate::admission::handshake::{AcceptStep, Acceptor, DialStep, Dialer};
    let started = Instant::now();
    let (mut d, hello) = Dialer::start(dialer(me, samples, Some(key.clone())), 0, [me as u8; 32]);
    let mut a = Acceptor::new(dialer(0, samples, Some(key.clone())), [0xee; 32]);
    let AcceptStep::Send(challenge) = a.on_message(&hello) else {
        return Duration::ZERO;
    };
    let DialStep::Send(proof) = d.on_message(&challenge) else {
        return Duration::ZERO;
    };
    let AcceptStep::Verified(_) = a.on_message(&proof) else {
        return Duration::ZERO;
    };
    let welcome = a.welcome().unwrap_or_default();
    let admitted = d.on_message(&welcome) == DialStep::Admitted;
    let took = started.elapsed();
    if admitted { took } else { Duration::ZERO }
}

/// Measures `samples` set-ups of each kind (at least 3) in interleaved rounds.
pub fn measure(samples: usize) -> io::Result<ConnectFigures> {
    let samples = samples.clamp(3, u16::MAX as usize - 1);
    let key = ClusterKey::generate().map_err(|e| io::Error::other(e.to_string()))?;
    // A plain listener that accepts and drops, and an echo connection for the round trip.
    let raw = TcpListener::bind("127.0.0.1:0")?;
    let raw_addr = raw.local_addr()?;
    thread::spawn(move || for _ in raw.incoming() {});
    let echo_listener = TcpListener::bind("127.0.0.1:0")?;
    let mut echo = TcpStream::connect(echo_listener.local_addr()?)?;
    echo.set_nodelay(true)?;
    let (mut echoed, _) = echo_listener.accept()?;
    echoed.set_nodelay(true)?;
    thread::spawn(move || {
        let mut b = [0u8; 1];
        while echoed.read_exact(&mut b).is_ok() && echoed.write_all(&b).is_ok() {}
    });
    let (open_gate, open_rx) = gate(samples, None)?;
    let (keyed_gate, keyed_rx) = gate(samples, Some(key.clone()))?;
    let timeout = Duration::from_secs(10);
    let mut figures: [Vec<Duration>; 5] = Default::default();
    for i in 0..samples {
        let me = (i + 1) as NodeId;
        // Each round takes the kinds in another order, so that none always follows the
        // same one (the gate's or the listener's wake-up after the previous connection).
        for kind in (0..5).map(|k| (k + i) % 5) {
            let started = Instant::now();
            match kind {
                0 => {
                    let mut b = [7u8; 1];
                    echo.write_all(&b)?;
                    echo.read_exact(&mut b)?;
                }
                1 => drop(TcpStream::connect(raw_addr)?),
                2 => drop(
                    dial(open_gate.addr(), &dialer(me, samples, None), 0, timeout)
                        .map_err(|e| io::Error::other(e.to_string()))?,
                ),
                3 => drop(
                    dial(
                        keyed_gate.addr(),
                        &dialer(me, samples, Some(key.clone())),
                        0,
                        timeout,
                    )
                    .map_err(|e| io::Error::other(e.to_string()))?,
                ),
                _ => {
                    figures[4].push(compute_once(&key, me, samples));
                    continue;
                }
            }
            figures[kind].push(started.elapsed());
        }
        // Close the admitted ends too, so that descriptors do not pile up.
        while open_rx.try_recv().is_ok() {}
        while keyed_rx.try_recv().is_ok() {}
    }
    let [rtt, connect, open, keyed, compute] = &mut figures;
    Ok(ConnectFigures {
        round_trip_us: median_us(rtt),
        tcp_connect_us: median_us(connect),
        open_handshake_us: median_us(open),
        admission_us: median_us(keyed),
        admission_compute_us: median_us(compute),
    })
}
