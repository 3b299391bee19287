//! The bodies of the fuzz targets in `dsm/fuzz` (cargo-fuzz, nightly), as plain functions so
//! that the stable test suite runs them too (`dsm/tests/fuzz_corpus.rs` replays the committed
//! corpus). Each takes arbitrary bytes as a peer could send them and panics only when an
//! invariant breaks:
//!
//! - [`frame_decoder`]: a byte stream read as frames, the way a connection's reader does
//!   (lost-node notices decoded as the reader does);
//! - [`handshake`]: the admission handshake fed arbitrary messages (no proof without the key
//!   is ever accepted), or an honest handshake whose messages are tampered with in flight
//!   (no tampered handshake ever admits);
//! - [`protocol_codec`]: coherence messages decoded and handed to the protocol state machine
//!   (what a node does with a peer's one-way frames);
//! - [`sync_alloc_requests`]: lock, barrier, alloc and free requests decoded and run against
//!   the sync manager and the allocator (what a node does with a peer's requests), with the
//!   allocator's blocks checked against a shadow copy;
//! - [`scheduler_messages`]: scheduler messages decoded and handed to a node's scheduler,
//!   between its own steps (spawns, dispatches, ends, timeouts): what a node does with a
//!   peer's task frames;
//! - [`pager_wire`]: a pager process's replies as a node reads them, and a node's requests
//!   as a pager server reads them.

use std::collections::BTreeMap;
use std::io::Cursor;

use crate::admission::ClusterKey;
use crate::admission::handshake::{
    AcceptStep, Acceptor, ClusterId, DialStep, Dialer, Handshake, MAX_MESSAGE,
};
use crate::alloc::FirstFit;
use crate::protocol::rights::{self, CapId, CapRecord};
use crate::protocol::{Coherence, Effect, codec};
use crate::remote::frame::{Frame, FrameKind, HEADER_LEN, Header, MAX_PAYLOAD};
use crate::remote::notice::LostNotice;
use crate::sync::SyncManager;
use crate::types::{ManagerKind, PAGE_SIZE};

/// Splits the input into messages: a length byte, then that many bytes (fewer at the end).
fn messages(mut data: &[u8]) -> impl Iterator<Item = &[u8]> {
    std::iter::from_fn(move || {
        let (&len, rest) = data.split_first()?;
        let n = (len as usize).min(rest.len());
        let (msg, rest) = rest.split_at(n);
        data = rest;
        Some(msg)
    })
}

/// As [`messages`], with room for long messages: a length byte of 255 is followed by the
/// length as a little-endian `u16` (a `Migrate` carrying stack pages is over 4 KiB).
fn long_messages(mut data: &[u8]) -> impl Iterator<Item = &[u8]> {
    std::iter::from_fn(move || {
        let (&len, rest) = data.split_first()?;
        let (len, rest) = match (len, rest) {
            (255, [lo, hi, rest @ ..]) => (u16::from_le_bytes([*lo, *hi]) as usize, rest),
            _ => (len as usize, rest),
        };
        let n = len.min(rest.len());
        let (msg, rest) = rest.split_at(n);
        data = rest;
        Some(msg)
    })
}

/// A stream of frames as a connection's reader takes them: every accepted frame fits the
/// limit and encodes back to the bytes it came from (the hint aside, which frames drop); a
/// lost-node notice accepted from a 4-node cluster names one of its nodes and encodes back to
/// its payload.
pub fn frame_decoder(data: &[u8]) {
    let mut cursor = Cursor::new(data);
    loop {
        let at = cursor.position() as usize;
        let Ok(frame) = crate::remote::tcp::read_frame(&mut cursor) else {
            return;
        };
        assert!(frame.payload.len() <= MAX_PAYLOAD);
        if frame.kind == FrameKind::Lost {
            if let Ok(notice) = LostNotice::decode(&frame.payload, 4) {
                assert!(notice.node < 4);
                assert_eq!(
                    LostNotice::encode(notice.node, &notice.reason),
                    frame.payload
                );
            }
        }
        let end = cursor.position() as usize;
        let mut bytes = Frame::new(frame.kind, frame.request_id, frame.payload)
            .encode()
            .expect("an accepted frame encodes");
        bytes[6..8].copy_from_slice(&data[at + 6..at + 8]);
        assert_eq!(bytes, &data[at..end]);
        let mut h = [0u8; HEADER_LEN];
        h.copy_from_slice(&data[at..at + HEADER_LEN]);
        let header = Header::decode(&h).expect("accepted once");
        assert_eq!(header.encode(), h);
    }
}

fn fuzz_handshake(me: u16, keyed: bool) -> Handshake {
    Handshake {
        me,
        nodes: 3,
        cluster: ClusterId::derive(&[b"fuzz"]),
        key: keyed.then(|| ClusterKey::from_bytes([0x42; 32])),
        code: crate::process::identity::CodeIdentity {
            build: [0x17; 32],
            anchor: 0x5555_5555_0000 + u64::from(me),
        },
    }
}

/// The admission handshake under attack. The first byte picks the attack:
/// 0: a keyed acceptor fed arbitrary messages never verifies a dialler;
/// 1: a keyed dialler fed arbitrary messages is never admitted;
/// 2: an acceptor without a key verifies only after a well-formed Hello;
/// else: an honest handshake whose messages are tampered with (triples of message index,
/// offset, xor mask): the dialler is admitted only if nothing was changed, and the acceptor
/// verifies only if nothing it relied on was changed.
pub fn handshake(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode {
        0 | 2 => {
            let mut a = Acceptor::new(fuzz_handshake(0, mode == 0), [1; 32]);
            for msg in messages(rest) {
                assert!(msg.len() <= 255);
                match a.on_message(msg) {
                    AcceptStep::Verified(n) => {
                        assert!(mode == 2, "verified node {n} without the key");
                        assert!((1..3).contains(&n));
                        assert!(a.welcome().is_some());
                    }
                    AcceptStep::Send(m) => assert!(m.len() <= MAX_MESSAGE),
                    AcceptStep::Refuse(_, m) => assert!(m.len() <= MAX_MESSAGE),
                    AcceptStep::RefusedBy(_) => {}
                }
            }
        }
        1 => {
            let (mut d, hello) = Dialer::start(fuzz_handshake(2, true), 0, [1; 32]);
            assert!(hello.len() <= MAX_MESSAGE);
            for msg in messages(rest) {
                let step = d.on_message(msg);
                assert!(step != DialStep::Admitted, "admitted without the key");
            }
        }
        _ => tampered_handshake(rest),
    }
}

/// An honest keyed handshake, node 2 dialling node 0, with the messages changed in flight.
fn tampered_handshake(rest: &[u8]) {
    // Up to 8 (message index, offset, xor) triples; message 0 is the Hello, 1 the Challenge,
    // 2 the Proof, 3 the Welcome.
    let edits: Vec<(usize, usize, u8)> = rest
        .chunks_exact(3)
        .take(8)
        .map(|c| ((c[0] % 4) as usize, c[1] as usize, c[2]))
        .collect();
    let mut changed = [false; 4];
    let mut tamper = |index: usize, msg: Vec<u8>| {
        let mut out = msg.clone();
        for &(i, off, x) in &edits {
            if i == index && off < out.len() {
                out[off] ^= x;
            }
        }
        changed[index] |= out != msg;
        out
    };
    let (mut dialer, hello) = Dialer::start(fuzz_handshake(2, true), 0, [1; 32]);
    let mut acceptor = Acceptor::new(fuzz_handshake(0, true), [2; 32]);
    let mut verified = false;
    let mut admitted = false;
    let hello = tamper(0, hello);
    let to_dialer = match acceptor.on_message(&hello) {
        AcceptStep::Send(challenge) => Some(tamper(1, challenge)),
        AcceptStep::Refuse(_, m) => Some(m),
        AcceptStep::Verified(_) | AcceptStep::RefusedBy(_) => None,
    };
    if let Some(m) = to_dialer {
        if let DialStep::Send(proof) = dialer.on_message(&m) {
            let proof = tamper(2, proof);
            let reply = match acceptor.on_message(&proof) {
                AcceptStep::Verified(n) => {
                    assert_eq!(n, 2);
                    verified = true;
                    acceptor.welcome().map(|w| tamper(3, w))
                }
                AcceptStep::Refuse(_, m) => Some(m),
                _ => None,
            };
            if let Some(m) = reply {
                admitted = dialer.on_message(&m) == DialStep::Admitted;
            }
        }
    }
    if verified {
        assert!(
            !changed[0] && !changed[1] && !changed[2],
            "verified a tampered handshake"
        );
    }
    if admitted {
        assert!(!changed.iter().any(|&c| c), "admitted a tampered handshake");
    } else {
        assert!(changed.iter().any(|&c| c), "an honest handshake failed");
    }
}

/// Coherence messages from peers, decoded and handled as node 0 of 3 does (stopping at the
/// first message it refuses, as the node fails then): decoding round-trips, every message
/// the protocol sends goes to a node of the cluster about a page of the region, and every
/// capability it accepts from a peer names nodes of the cluster and pages of the region.
pub fn protocol_codec(data: &[u8]) {
    let Some((&setup, rest)) = data.split_first() else {
        return;
    };
    let kind = match setup % 3 {
        0 => ManagerKind::Central,
        1 => ManagerKind::Fixed,
        _ => ManagerKind::Dynamic,
    };
    const PAGES: u32 = 8;
    let mut node = Coherence::new(0, 3, PAGES, kind).expect("a valid configuration");
    // Pages 4 to 7 are a range node 0 minted: the peers' requests for them are refused,
    // and their capability messages are checked against it.
    node.share(CapRecord {
        id: CapId::new(0, 1),
        parent: None,
        holder: 0,
        rights: rights::ALL,
        first: 4,
        pages: 4,
    })
    .expect("a valid mint");
    let msgs = messages(rest);
    for m in msgs {
        // The first byte says who sent it; a Grant with data or a HandOff takes the page
        // from the input.
        let Some((&from, body)) = m.split_first() else {
            continue;
        };
        let page_data;
        let bytes = if body.len() == codec::MESSAGE_LEN
            && ((body[0] == 7 && body[8] == 1) || body[0] == 13)
        {
            let mut b = body.to_vec();
            b.resize(codec::MESSAGE_LEN + PAGE_SIZE, 0xa5);
            page_data = b;
            &page_data[..]
        } else {
            body
        };
        let Ok((msg, page)) = codec::decode(bytes) else {
            continue;
        };
        let mut again = Vec::new();
        codec::encode(&msg, page, &mut again);
        assert_eq!(codec::decode(&again).map(|(m, _)| m), Ok(msg));
        let from = (from % 3) as u16;
        let Ok(effects) = node.handle(from, msg) else {
            return;
        };
        for e in effects {
            match e {
                Effect::Send { to, msg } | Effect::SendStored { to, msg } => {
                    assert!((to as usize) < 3 && msg.page() < PAGES)
                }
                Effect::Install { page, .. }
                | Effect::SetAccess { page, .. }
                | Effect::PageIn { page, .. }
                | Effect::WriteBack { page }
                | Effect::Evicted { page, .. }
                | Effect::Hold { page }
                | Effect::Served { page }
                | Effect::Denied { page, .. }
                | Effect::DataError { page, .. }
                | Effect::DataUnlock { page, .. } => assert!(page < PAGES),
                Effect::CapDone { .. } | Effect::Received { .. } => {}
            }
        }
        // Every capability a peer made that the node accepted names nodes of the cluster
        // and pages of the region.
        for (r, _) in node.rights().records() {
            assert!((r.holder as usize) < 3 && (r.id.maker() as usize) < 3);
            assert!(r.pages > 0 && r.first.checked_add(r.pages).is_some_and(|e| e <= PAGES));
        }
    }
}

/// Sync and allocation requests from peers, as node 0 of 3 serves them: every request
/// decodes to one that encodes back to the same bytes; the allocator's blocks lie in the
/// region, aligned, never overlapping, and frees succeed exactly for live blocks.
pub fn sync_alloc_requests(data: &[u8]) {
    use crate::node::wire::{Request, decode_reply};
    const SIZE: usize = 64 * PAGE_SIZE;
    let mut sync: SyncManager<usize> = SyncManager::new();
    let mut alloc = FirstFit::new(SIZE);
    let mut live: BTreeMap<usize, usize> = BTreeMap::new();
    for (i, m) in messages(data).enumerate() {
        let _ = decode_reply(m);
        let Some((&from, body)) = m.split_first() else {
            continue;
        };
        let from = (from % 3) as u16;
        let Ok(req) = Request::decode(body) else {
            continue;
        };
        assert_eq!(req.encode(), body);
        match req {
            Request::Lock(l) => {
                let _ = sync.lock(l, from, i);
            }
            Request::Unlock(l) => {
                let _ = sync.unlock(l, from);
            }
            Request::Barrier(b) => {
                let _ = sync.arrive(b, from, 3, i);
            }
            Request::Alloc { size, align } => {
                if let Ok(off) = alloc.alloc(size as usize, align as usize) {
                    assert!(align as usize <= 1 || off % align as usize == 0);
                    let len = (size as usize).max(1);
                    assert!(off.checked_add(len).is_some_and(|end| end <= SIZE));
                    if let Some((&prev, &plen)) = live.range(..=off).next_back() {
                        assert!(prev + plen <= off, "block at {off} overlaps {prev}");
                    }
                    if let Some((&next, _)) = live.range(off + 1..).next() {
                        assert!(off + len <= next, "block at {off} overlaps {next}");
                    }
                    live.insert(off, len);
                }
            }
            Request::Free(off) => {
                let freed = alloc.free(off as usize).is_ok();
                assert_eq!(freed, live.remove(&(off as usize)).is_some());
            }
        }
    }
    let used: usize = live.values().sum();
    assert!(alloc.free_bytes() + used <= SIZE);
}

/// Scheduler frames from peers (framed as `long_messages` does: a `Migrate` carries its stack
/// pages),
/// decoded and handled by node 0 of 3 as its task pool does
/// (stopping at the first it refuses, as the node fails then), between the node's own steps
/// (a message whose first byte is 3 modulo 4 is a local step instead: spawn, dispatch, end,
/// yield or TIMEOUT): decoding round-trips; every message it sends goes to another node of
/// the cluster; every task it runs, holds or sends has its stack inside the region; a
/// decoded `Migrate` carries only pages its stack hands off, each with a whole page of
/// contents, and one it sends carries none yet (the node's carrier fills it in); no task
/// is held twice; every handle it resolves is of a task spawned here.
pub fn scheduler_messages(data: &[u8]) {
    use crate::process::codec as sched_codec;
    use crate::process::{
        Effect as SchedEffect, Message as SchedMessage, Scheduler, SchedulerConfig, StackPages,
        Suspend, TaskId, TaskRef,
    };
    const PAGES: u32 = 64;
    let Some((&setup, rest)) = data.split_first() else {
        return;
    };
    let config = SchedulerConfig {
        workers: u16::from(setup % 3) + 1,
        hint_threshold: u16::from(setup / 3 % 3) + 1,
        use_hints: setup & 0x80 == 0,
    };
    let mut node = Scheduler::new(0, 3, PAGES, config).expect("a valid configuration");
    let mut spawned = 0u64;
    for m in long_messages(rest) {
        let Some((&first, body)) = m.split_first() else {
            continue;
        };
        let effects = if first % 4 == 3 {
            match body.first().copied().unwrap_or(0) % 5 {
                0 => {
                    spawned += 1;
                    let task = TaskRef {
                        id: TaskId(spawned << 16),
                        home: 0,
                        migratable: first & 0x80 == 0,
                        stack: StackPages::new(
                            (spawned as u32 * 4) % PAGES,
                            4.min(PAGES - (spawned as u32 * 4) % PAGES),
                        ),
                    };
                    node.spawn(task).unwrap_or_default()
                }
                1 => node.next_task(),
                2 => match node.running().first().copied() {
                    Some(t) => node.finished(t.id, first & 0x40 != 0).unwrap_or_default(),
                    None => Vec::new(),
                },
                3 => match node.running().first().copied() {
                    Some(t) => node.suspend(t.id, Suspend::Yield).unwrap_or_default(),
                    None => Vec::new(),
                },
                _ => node.timeout(),
            }
        } else {
            let Ok(frame) = sched_codec::decode(body) else {
                continue;
            };
            let mut again = Vec::new();
            sched_codec::encode(&frame.msg, &frame.contents, &mut again)
                .expect("a decoded frame encodes");
            assert_eq!(again, body, "a decoded message encodes back to its bytes");
            let msg = frame.msg;
            let carried = match msg {
                SchedMessage::Migrate { task, carried, .. } => {
                    assert!(
                        carried.fits(task.stack),
                        "carried pages it does not hand off"
                    );
                    carried.len()
                }
                _ => 0,
            };
            assert_eq!(frame.contents.len(), carried);
            assert!(frame.contents.iter().all(|c| c.len() == crate::PAGE_SIZE));
            let from = u16::from(first % 4).min(2);
            match node.handle(from, msg) {
                Ok(effects) => effects,
                Err(_) => return,
            }
        };
        for e in effects {
            match e {
                SchedEffect::Send { to, msg } => {
                    assert!(to != 0 && to < 3, "a message to node {to}");
                    if let SchedMessage::Migrate { task, .. } = msg {
                        assert!(task.stack.within(PAGES));
                    }
                }
                SchedEffect::Broadcast { msg } => {
                    assert!(matches!(msg, SchedMessage::Hint { .. }))
                }
                SchedEffect::Migrate { to, msg } => {
                    assert!(to != 0 && to < 3, "a migration to node {to}");
                    let SchedMessage::Migrate { task, carried, .. } = msg else {
                        panic!("a migration effect with {msg:?}")
                    };
                    assert!(task.stack.within(PAGES) && carried.is_empty());
                }
                SchedEffect::Run { task } => assert!(task.stack.within(PAGES)),
                SchedEffect::Resolved { task, .. } => {
                    assert!(task.0 >> 16 >= 1 && task.0 >> 16 <= spawned && task.0 & 0xffff == 0)
                }
                SchedEffect::Wake | SchedEffect::Reaped { .. } => {}
            }
        }
        let held: Vec<TaskId> = node
            .ready()
            .chain(node.running())
            .chain(node.blocked())
            .map(|t| t.id)
            .collect();
        let mut unique = held.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), held.len(), "a task held twice: {held:?}");
        assert!(
            node.ready()
                .chain(node.running())
                .all(|t| t.stack.within(PAGES))
        );
    }
}

/// A pager of 8 in-memory pages whose `data_unlock` grants read access only to odd pages:
/// what [`pager_wire`] serves to a hostile node.
struct MemoryPager(Vec<u8>);

impl crate::pager::Pager for MemoryPager {
    fn data_request(
        &mut self,
        first: crate::PageNo,
        out: &mut [u8],
    ) -> Result<crate::pager::Supply, crate::pager::PagerError> {
        let start = (first as usize).saturating_mul(PAGE_SIZE);
        if start >= self.0.len() {
            return Ok(crate::pager::Supply::DataUnavailable);
        }
        let n = out.len().min(self.0.len() - start);
        out[..n].copy_from_slice(&self.0[start..start + n]);
        out[n..].fill(0);
        Ok(crate::pager::Supply::DataProvided)
    }

    fn data_write(
        &mut self,
        page: crate::PageNo,
        data: &[u8],
    ) -> Result<(), crate::pager::PagerError> {
        assert_eq!(data.len(), PAGE_SIZE, "the server passed a partial page");
        let start = (page as usize).saturating_mul(PAGE_SIZE);
        if start < self.0.len() {
            self.0[start..start + PAGE_SIZE].copy_from_slice(data);
        }
        Ok(())
    }

    fn sync(&mut self) -> Result<(), crate::pager::PagerError> {
        Ok(())
    }

    fn data_unlock(
        &mut self,
        page: crate::PageNo,
        access: crate::Access,
    ) -> Result<crate::Access, crate::pager::PagerError> {
        Ok(if page % 2 == 1 {
            access.min(crate::Access::Read)
        } else {
            access
        })
    }
}

/// The pager wire ([`crate::pager::RemotePager`], [`crate::pager::PagerServer`]) fed what a
/// hostile peer could send, after a first byte that picks the side:
/// - even: the bytes are a pager's replies to a node's fixed series of calls (requests of
///   one and of two pages, a write, an unlock, a sync, a request again). Every call ends
///   (the stream ends, so nothing waits for the timeout), with an answer or one of the
///   pager's errors; once a call failed with anything but the pager's own error, every later
///   call fails too (the connection is out of step);
/// - odd, `side % 8` 1 or 5: the bytes are a node's requests to a pager server (a first
///   frame may be a command link's hello). The server never hands its pager a partial
///   page, and every reply it writes is well formed: a known status and a length that fits
///   it (whole pages of at most the longest run for data, none for the others, a bounded
///   error text);
/// - `side % 8 == 3`: the bytes are a pager's commands as a node of 64 pages reads them
///   ([`crate::pager::commands::decode_command`]): every command taken names pages of the
///   region only, and encodes back to the frame it came from;
/// - `side % 8 == 7`: the bytes are a node's answers to a pager's series of commands
///   ([`crate::pager::PagerCommands`]). Every command ends, with a count of at most its
///   pages or an error; once a link broke, the node is no longer commanded.
pub fn pager_wire(data: &[u8]) {
    if let Some(&side) = data.first() {
        if side % 8 == 3 {
            return pager_commands_read(&data[1..]);
        }
        if side % 8 == 7 {
            return pager_command_answers(&data[1..]);
        }
    }
    pager_calls(data)
}

/// [`pager_wire`] for commands a node reads.
fn pager_commands_read(bytes: &[u8]) {
    use crate::pager::commands::{COMMAND_LEN, Command, decode_command};
    const PAGES: u32 = 64;
    for chunk in bytes.chunks_exact(COMMAND_LEN) {
        let frame: [u8; COMMAND_LEN] = chunk.try_into().expect("a whole frame");
        let Ok(cmd) = decode_command(&frame, PAGES) else {
            continue;
        };
        match &cmd {
            Command::DataLock { pages, .. }
            | Command::FlushRequest { pages }
            | Command::CleanRequest { pages } => {
                assert!(pages.start < pages.end && pages.end <= PAGES, "{cmd:?}")
            }
            Command::Cache { .. } => {}
        }
        assert_eq!(cmd.encode(), frame, "{cmd:?} from another frame");
    }
}

/// [`pager_wire`] for a node's answers to a pager's commands.
fn pager_command_answers(bytes: &[u8]) {
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;

    use crate::pager::commands::{self, CommandError, Links, PagerCommands};

    let Ok((near, mut far)) = UnixStream::pair() else {
        return;
    };
    let links = std::sync::Arc::new(Links::default());
    links.join(&commands::hello(1, 64), near);
    let mut ack = [0u8; crate::pager::wire::REPLY_HEADER];
    if far.read_exact(&mut ack).is_err() {
        return;
    }
    // Small inputs fit the socket's buffer, beside the commands the pager writes.
    let bytes = &bytes[..bytes.len().min(64 * 1024)];
    if far.write_all(bytes).is_err() || far.shutdown(std::net::Shutdown::Write).is_err() {
        return;
    }
    let pager = PagerCommands::new(links).with_timeout(std::time::Duration::from_secs(5));
    let mut linked = true;
    for (cmd, pages) in [
        (pager.clean_request(0..4), 4),
        (pager.data_lock(2..3, crate::Access::Read), 1),
        (pager.cache(false), 0),
        (pager.flush_request(60..64), 4),
        (pager.clean_request(0..64), 64),
    ] {
        assert_eq!(
            cmd.len(),
            usize::from(linked),
            "a node commanded after its link broke"
        );
        for (node, r) in cmd {
            assert_eq!(node, 1);
            match r {
                Ok(n) => assert!(n <= pages, "{n} pages for a command of {pages}"),
                Err(CommandError::Failed { .. }) => {}
                Err(_) => linked = false,
            }
        }
    }
}

/// [`pager_wire`] for a pager's calls, from either side.
fn pager_calls(data: &[u8]) {
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;

    use crate::pager::Pager;
    use crate::pager::server;
    use crate::pager::wire::{self, MAX_ERROR_TEXT, MAX_RUN_PAGES};

    let Some((&side, bytes)) = data.split_first() else {
        return;
    };
    // A write to a closed socket must fail with EPIPE, not kill the process (Rust's own
    // main ignores SIGPIPE; a fuzzing harness's may not).
    static IGNORE_SIGPIPE: std::sync::Once = std::sync::Once::new();
    // SAFETY: sets SIGPIPE's disposition to "ignore", no handler runs; done once.
    IGNORE_SIGPIPE.call_once(|| unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    });
    let Ok((near, far)) = UnixStream::pair() else {
        return;
    };
    if side % 2 == 0 {
        // Small inputs fit the socket's buffer; the node's requests fit in it beside them.
        let bytes = &bytes[..bytes.len().min(64 * 1024)];
        let mut far = far;
        if far.write_all(bytes).is_err() || far.shutdown(std::net::Shutdown::Write).is_err() {
            return;
        }
        let Ok(mut pager) =
            crate::pager::RemotePager::from_stream(near, "fuzz", std::time::Duration::from_secs(5))
        else {
            return;
        };
        let mut one = vec![0u8; PAGE_SIZE];
        let mut two = vec![0u8; 2 * PAGE_SIZE];
        let results: [Result<(), crate::pager::PagerError>; 6] = [
            pager.data_request(0, &mut one).map(|_| ()),
            pager.data_request(3, &mut two).map(|_| ()),
            pager.data_write(1, &[7u8; PAGE_SIZE]),
            pager.data_unlock(2, crate::Access::Write).map(|_| ()),
            pager.sync(),
            pager.data_request(5, &mut one).map(|_| ()),
        ];
        let mut broken = false;
        for r in results {
            match r {
                Ok(()) => assert!(!broken, "a call succeeded after the connection broke"),
                Err(crate::pager::PagerError::Remote { .. }) => {}
                Err(
                    crate::pager::PagerError::Lost { .. }
                    | crate::pager::PagerError::Timeout { .. }
                    | crate::pager::PagerError::BadReply { .. },
                ) => broken = true,
                Err(other) => panic!("a remote call failed with {other}"),
            }
        }
        drop(far);
        return;
    }
    // The pager's side: the requests, then the end of the stream.
    let mut near = near;
    let bytes = bytes.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = near.write_all(&bytes);
        let _ = near.shutdown(std::net::Shutdown::Write);
        let mut replies = Vec::new();
        let _ = near.read_to_end(&mut replies);
        replies
    });
    let pager = std::sync::Mutex::new(MemoryPager(vec![3u8; 8 * PAGE_SIZE]));
    server::serve_node(&pager, far);
    let Ok(replies) = writer.join() else {
        panic!("the node's side panicked");
    };
    let mut at = 0;
    while at < replies.len() {
        let header = &replies[at..(at + wire::REPLY_HEADER).min(replies.len())];
        assert_eq!(header.len(), wire::REPLY_HEADER, "a partial reply header");
        let status = header[0];
        let len = u32::from_le_bytes([header[1], header[2], header[3], header[4]]);
        let payload = match status {
            wire::REPLY_PROVIDED => {
                assert!(
                    len > 0 && len as usize % PAGE_SIZE == 0,
                    "data of {len} bytes"
                );
                assert!(len / PAGE_SIZE as u32 <= MAX_RUN_PAGES, "a run too long");
                len as usize
            }
            wire::REPLY_UNAVAILABLE | wire::REPLY_DONE => {
                assert_eq!(len, 0, "status {status} with a length");
                0
            }
            wire::REPLY_LOCK => {
                assert!(len <= 2, "a lock of {len}");
                0
            }
            wire::REPLY_ERROR => {
                assert!(len <= MAX_ERROR_TEXT, "an error text of {len} bytes");
                len as usize
            }
            other => panic!("reply status {other}"),
        };
        at += wire::REPLY_HEADER + payload;
        assert!(at <= replies.len(), "a reply shorter than its length");
    }
}
