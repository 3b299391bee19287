//! The TCP transport and request/reply over loopback: calls and broadcasts between real
//! connections, a member that sends a bad frame loses its connection while the others go on,
//! and (ignored, run by hand) round-trip figures against raw TCP in the same run.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use memlink_dsm::admission::dial;
use memlink_dsm::remote::frame::HEADER_LEN;
use memlink_dsm::remote::{
    BroadcastReply, Endpoint, EventSource, Frame, FrameKind, Incoming, ReplyScheme, TcpConfig,
    TcpTransport, Transport, TransportEvent,
};

const TAG: u64 = 0x5eed;

fn listeners(n: usize) -> (Vec<TcpListener>, Vec<SocketAddr>) {
    let ls: Vec<_> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let addrs = ls.iter().map(|l| l.local_addr().unwrap()).collect();
    (ls, addrs)
}

fn tcp_config(id: u16, peers: &[SocketAddr]) -> TcpConfig {
    TcpConfig {
        id,
        peers: peers.to_vec(),
        cluster_tag: TAG,
        key: None,
        connect_timeout: Duration::from_secs(10),
    }
}

/// Start real TCP transports for the ids in `ids` (threads, since each waits for the others).
fn start(
    ids: &[u16],
    ls: Vec<TcpListener>,
    addrs: &[SocketAddr],
) -> Vec<(TcpTransport, EventSource)> {
    let hs: Vec<_> = ids
        .iter()
        .zip(ls)
        .map(|(&id, l)| {
            let cfg = tcp_config(id, addrs);
            thread::spawn(move || TcpTransport::start_with_listener(l, &cfg).unwrap())
        })
        .collect();
    hs.into_iter().map(|h| h.join().unwrap()).collect()
}

fn echo_endpoint(t: TcpTransport, events: EventSource) -> Arc<Endpoint> {
    let me = t.id() as u8;
    Endpoint::start(Arc::new(t), events, move |inc| {
        if let Incoming::Request {
            mut payload,
            responder,
            ..
        } = inc
        {
            payload.push(me);
            let _ = responder.reply(payload);
        }
    })
}

#[test]
fn calls_and_broadcasts_over_tcp() {
    let (ls, addrs) = listeners(3);
    let eps: Vec<_> = start(&[0, 1, 2], ls, &addrs)
        .into_iter()
        .map(|(t, rx)| echo_endpoint(t, rx))
        .collect();
    let page = vec![7u8; 4096];
    let mut want = page.clone();
    want.push(2);
    assert_eq!(eps[1].call(2, page).unwrap(), want);
    match eps[0]
        .broadcast(&[1, 2], vec![1], ReplyScheme::All, None)
        .unwrap()
    {
        BroadcastReply::All(mut r) => {
            r.sort();
            assert_eq!(r, vec![(1, vec![1, 1]), (2, vec![1, 2])]);
        }
        other => panic!("{other:?}"),
    }
    let (frames, bytes) = eps[1].transport().sent();
    // Node 1 sent its request and its reply to node 0's broadcast.
    assert_eq!(frames, 2);
    assert_eq!(bytes, (HEADER_LEN + 4096 + HEADER_LEN + 2) as u64);
}

/// A connect timeout or a broadcast timeout too long to add to an `Instant` (`Duration::MAX`)
/// is a wait without end, not an overflow panic.
#[test]
fn endless_timeouts_do_not_overflow() {
    let (ls, addrs) = listeners(2);
    let hs: Vec<_> = (0..2u16)
        .zip(ls)
        .map(|(id, l)| {
            let mut cfg = tcp_config(id, &addrs);
            cfg.connect_timeout = Duration::MAX;
            thread::spawn(move || TcpTransport::start_with_listener(l, &cfg).unwrap())
        })
        .collect();
    let eps: Vec<_> = hs
        .into_iter()
        .map(|h| h.join().expect("a transport with Duration::MAX connects"))
        .map(|(t, rx)| echo_endpoint(t, rx))
        .collect();
    match eps[0]
        .broadcast(&[1], vec![5], ReplyScheme::First, Some(Duration::MAX))
        .unwrap()
    {
        BroadcastReply::First { from, payload } => assert_eq!((from, payload), (1, vec![5, 1])),
        other => panic!("{other:?}"),
    }
}

/// Join as node 2 by hand: dial node `target` and pass its admission handshake.
fn fake_member(addrs: &[SocketAddr], target: u16) -> TcpStream {
    let hs = tcp_config(2, addrs).handshake();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match dial(addrs[target as usize], &hs, target, Duration::from_secs(5)) {
            Ok(s) => return s,
            Err(e) if e.is_transient() && Instant::now() < deadline => thread::yield_now(),
            Err(e) => panic!("node {target} did not admit the fake member: {e}"),
        }
    }
}

#[test]
fn a_member_sending_a_bad_frame_is_dropped_and_the_others_go_on() {
    let (mut ls, addrs) = listeners(3);
    drop(ls.pop()); // node 2 is played by hand and never listens
    let a = addrs.clone();
    let fake = thread::spawn(move || (fake_member(&a, 0), fake_member(&a, 1)));
    let mut real = start(&[0, 1], ls, &addrs);
    let (mut to0, mut to1) = fake.join().unwrap();
    let (t1, ev1) = real.pop().unwrap();
    let (t0, ev0) = real.pop().unwrap();
    let (rx0, rx1) = (ev0.into_channel(), ev1.into_channel());

    // A wrong version to node 0, an unknown frame kind to node 1. Each hears of node 2's loss
    // from its own reader or from the other's notice, whichever comes first.
    let mut bad = Frame::new(FrameKind::OneWay, 0, vec![1, 2, 3])
        .encode()
        .unwrap();
    bad[4] = 99;
    to0.write_all(&bad).unwrap();
    let mut bad = Frame::new(FrameKind::OneWay, 0, vec![]).encode().unwrap();
    bad[5] = 200;
    to1.write_all(&bad).unwrap();
    for (rx, what) in [(&rx0, "version"), (&rx1, "kind")] {
        match rx.recv_timeout(Duration::from_secs(10)).unwrap() {
            TransportEvent::Lost { node: 2, reason } => {
                assert!(
                    reason.contains("bad frame")
                        && (reason.contains(what) || reason.contains("reported by node")),
                    "{reason}"
                )
            }
            other => panic!("expected the loss of node 2, got {other:?}"),
        }
    }
    // The connection was dropped: the fake member reads EOF.
    let mut buf = [0u8; 1];
    assert_eq!(to0.read(&mut buf).unwrap_or(0), 0);
    // Nodes 0 and 1 still talk to each other.
    let ep0 = echo_endpoint(t0, EventSource::channel(rx0));
    let ep1 = echo_endpoint(t1, EventSource::channel(rx1));
    assert_eq!(ep0.call(1, vec![5]).unwrap(), vec![5, 1]);
    assert_eq!(ep1.call(0, vec![6]).unwrap(), vec![6, 0]);
}

fn median(mut v: Vec<Duration>) -> f64 {
    v.sort();
    v[v.len() / 2].as_secs_f64() * 1e6
}

/// Round trips over loopback, request/reply against raw TCP ping-pong of the same size, in
/// the same run. Run by hand:
/// `cargo test -p memlink-dsm --release --test integration remote_tcp -- --ignored --nocapture`
#[test]
#[ignore = "a measurement: run by hand with --ignored --nocapture"]
fn measure_round_trips() {
    const N: usize = 2000;
    let (ls, addrs) = listeners(2);
    let eps: Vec<_> = start(&[0, 1], ls, &addrs)
        .into_iter()
        .map(|(t, rx)| echo_endpoint(t, rx))
        .collect();
    // Raw TCP echo: a thread echoes `size` bytes back.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let raw_addr = l.local_addr().unwrap();
    thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        s.set_nodelay(true).unwrap();
        let mut buf = vec![0u8; 4096];
        loop {
            let mut len = [0u8; 4];
            if s.read_exact(&mut len).is_err() {
                return;
            }
            let n = u32::from_le_bytes(len) as usize;
            s.read_exact(&mut buf[..n]).unwrap();
            s.write_all(&len).unwrap();
            s.write_all(&buf[..n]).unwrap();
        }
    });
    let mut raw = TcpStream::connect(raw_addr).unwrap();
    raw.set_nodelay(true).unwrap();
    for size in [16usize, 4096] {
        let msg = vec![3u8; size];
        let mut rpc = Vec::with_capacity(N);
        let mut tcp = Vec::with_capacity(N);
        let mut back = vec![0u8; size];
        for _ in 0..N {
            let t = Instant::now();
            let r = eps[0].call(1, msg.clone()).unwrap();
            rpc.push(t.elapsed());
            assert_eq!(r.len(), size + 1);

            let t = Instant::now();
            let mut out = (size as u32).to_le_bytes().to_vec();
            out.extend_from_slice(&msg);
            raw.write_all(&out).unwrap();
            let mut len = [0u8; 4];
            raw.read_exact(&mut len).unwrap();
            raw.read_exact(&mut back).unwrap();
            tcp.push(t.elapsed());
            assert_eq!(back, msg);
        }
        let (r, t) = (median(rpc), median(tcp));
        println!(
            "payload {size:5} B: request/reply {r:7.1} us, raw TCP {t:7.1} us, ratio {:.2}",
            r / t
        );
    }
}
