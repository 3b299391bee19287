//! Scheme 2 across processes that map the same segments at different addresses: the
//! list's links are (segment id, offset) references, each process translates them with
//! its own table. The walker, a separately started process, also appends a node that the
//! builder then finds.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::child_process::{role, socket_path, spawn_role};
use memlink_capability::fd_passing::{recv_message, send_with_fds};
use memlink_capability::rendezvous::{RendezvousListener, connect_within};
use memlink_capability::segment::Segment;
use memlink_capability::shareable::Shareable;
use memlink_capability::shared_ref::{ResolveError, SharedRef, TranslationTable};

#[repr(C)]
struct Node {
    value: AtomicU64,
    /// Raw SharedRef of the next node (0: end).
    next: AtomicU64,
}

// SAFETY: repr(C) of two atomics; every bit pattern is valid.
unsafe impl Shareable for Node {}

const PER_SEGMENT: usize = 50;

fn node(table: &TranslationTable, r: SharedRef) -> Result<&Node, ResolveError> {
    let p = table.resolve::<Node>(r)?;
    // SAFETY: resolve checked bounds and alignment in a segment the table owns; Node is
    // all atomics.
    Ok(unsafe { &*p })
}

#[test]
fn refs_walker_role() {
    let Some(path) = role() else { return };
    // Shift this process's mappings so they cannot coincide with the builder's.
    let pad = Segment::create("pad", 3 * 4096 + 17).unwrap();
    let stream = connect_within(&path, Duration::from_secs(20)).unwrap();
    let (msg, fds) = recv_message(&stream).unwrap();
    let builder_bases: Vec<u64> = msg
        .chunks(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    let mut table = TranslationTable::new();
    let mut first_id = None;
    for fd in fds {
        let seg = Segment::attach(fd).unwrap();
        assert!(
            !builder_bases.contains(&(seg.payload_ptr() as u64)),
            "same address as the builder"
        );
        first_id.get_or_insert(seg.id());
        table.insert(seg).unwrap();
    }
    let head = SharedRef::new(first_id.unwrap(), 0);
    let (mut count, mut sum, mut last) = (0u64, 0u64, head);
    let mut r = head;
    while !r.is_null() {
        let n = node(&table, r).unwrap();
        count += 1;
        sum += n.value.load(Ordering::Acquire);
        last = r;
        r = SharedRef::from_raw(n.next.load(Ordering::Acquire));
    }
    // Append a node in a free slot of the last node's segment and link it.
    let new_ref = SharedRef::new(last.segment().unwrap(), (PER_SEGMENT * 16) as u32);
    let new_node = node(&table, new_ref).unwrap();
    new_node.value.store(1_000_000, Ordering::Relaxed);
    node(&table, last)
        .unwrap()
        .next
        .store(new_ref.raw(), Ordering::Release);
    // Garbage references are errors, not wild pointers.
    assert!(node(&table, SharedRef::from_raw(0xdead_beef_0000_0000)).is_err());
    assert!(
        node(
            &table,
            SharedRef::new(last.segment().unwrap(), u32::MAX - 4)
        )
        .is_err()
    );
    let mut reply = count.to_le_bytes().to_vec();
    reply.extend_from_slice(&sum.to_le_bytes());
    send_with_fds(&stream, &reply, &[]).unwrap();
    drop(pad);
}

#[test]
fn list_of_shared_refs_across_processes_at_different_addresses() {
    let mut table = TranslationTable::new();
    let mut ids = Vec::new();
    let mut bases = Vec::new();
    for k in 0..2 {
        let seg = Segment::create(&format!("scheme2-{k}"), (PER_SEGMENT + 1) * 16).unwrap();
        ids.push(seg.id());
        bases.push(seg.payload_ptr() as u64);
        table.insert(seg).unwrap();
    }
    // Element i lives in segment i % 2, slot i / 2: links alternate between segments.
    let total = 2 * PER_SEGMENT;
    let at = |i: usize| SharedRef::new(ids[i % 2], ((i / 2) * 16) as u32);
    for i in 0..total {
        let n = node(&table, at(i)).unwrap();
        n.value.store(i as u64 + 1, Ordering::Relaxed);
        let next = if i + 1 < total { at(i + 1).raw() } else { 0 };
        n.next.store(next, Ordering::Release);
    }
    let path = socket_path("scheme2");
    let listener = RendezvousListener::bind(&path).unwrap();
    let mut child = spawn_role("refs_walker_role", path.to_str().unwrap());
    let stream = crate::child_process::accept_within(&listener);
    let msg: Vec<u8> = bases.iter().flat_map(|b| b.to_le_bytes()).collect();
    let fds: Vec<_> = ids
        .iter()
        .map(|id| table.segment(*id).unwrap().as_fd())
        .collect();
    send_with_fds(&stream, &msg, &fds).unwrap();
    let (reply, _) = recv_message(&stream).unwrap();
    assert_eq!(
        u64::from_le_bytes(reply[0..8].try_into().unwrap()),
        total as u64
    );
    assert_eq!(
        u64::from_le_bytes(reply[8..16].try_into().unwrap()),
        (1..=total as u64).sum::<u64>()
    );
    let status = crate::child_process::wait_process(&mut child, crate::child_process::DEADLINE)
        .expect("the peer process ran past the deadline and was killed");
    assert!(status.success(), "{status}");
    // The node the walker appended is reachable through our own translation.
    let last = node(&table, at(total - 1)).unwrap();
    let appended = SharedRef::from_raw(last.next.load(Ordering::Acquire));
    assert_eq!(
        node(&table, appended)
            .unwrap()
            .value
            .load(Ordering::Relaxed),
        1_000_000
    );
}
