//! Multi-process checks of the primitives: segments shared through fork and through a
//! rendezvous socket between separately started processes, futex wake-up across
//! processes, and a waiter that learns its peer died.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::child_process::{
    fork_child, isolated, kill9, role, socket_path, spawn_role, wait_child,
};
use memlink_capability::fd_passing::{recv_message, send_with_fds};
use memlink_capability::liveness::PeerLiveness;
use memlink_capability::process::{BlockOutcome, ProcessDescriptor};
use memlink_capability::rendezvous::{RendezvousListener, connect_within};
use memlink_capability::segment::Segment;

#[repr(C)]
struct Shared {
    parent: ProcessDescriptor,
    child: ProcessDescriptor,
    value: AtomicU64,
}

/// A new segment named `name` holding a `Shared`, whose parent descriptor is this process's.
fn create_shared(name: &str) -> Segment {
    let seg = Segment::create(name, std::mem::size_of::<Shared>()).unwrap();
    shared(&seg).parent.reset(std::process::id());
    seg
}

/// The `Shared` in `seg`'s payload.
fn shared(seg: &Segment) -> &Shared {
    // SAFETY: the payload is page-aligned, zero-filled and large enough for Shared (made by
    // `create_shared`), whose all-zero bytes are valid (atomics); `seg` keeps it mapped.
    unsafe { &*(seg.payload_ptr() as *const Shared) }
}

/// Blocks the parent until the child wakes it (at most 20 s); fails the test otherwise.
fn wait_for_child_wake(shared: &Shared) {
    assert_eq!(
        shared.parent.block(
            Some(Duration::from_secs(20)),
            None,
            Duration::from_millis(50)
        ),
        BlockOutcome::Woken
    );
}

#[test]
fn futex_wake_crosses_processes() {
    isolated(|| {
        let seg = create_shared("futex-x");
        let shared = shared(&seg);
        let child = fork_child(|| {
            shared.child.claim();
            // Tell the parent we are ready, then block until it publishes the value.
            shared.parent.wake();
            loop {
                match shared.child.block(
                    Some(Duration::from_secs(20)),
                    None,
                    Duration::from_millis(50),
                ) {
                    BlockOutcome::Woken if shared.value.load(Ordering::Acquire) == 0xfeed => {
                        return 0;
                    }
                    BlockOutcome::Woken => continue,
                    _ => return 1,
                }
            }
        });
        wait_for_child_wake(shared);
        assert_eq!(shared.child.pid(), child as u32);
        shared.value.store(0xfeed, Ordering::Release);
        shared.child.wake();
        assert_eq!(wait_child(child), Ok(0));
    });
}

#[test]
fn blocked_waiter_learns_peer_died() {
    isolated(|| {
        let seg = create_shared("futex-dead");
        let shared = shared(&seg);
        let child = fork_child(|| {
            shared.parent.wake();
            // Block forever: the parent kills us.
            loop {
                shared.child.block(None, None, Duration::from_secs(1));
            }
        });
        let peer = PeerLiveness::watch(child).unwrap();
        wait_for_child_wake(shared);
        kill9(child);
        // Nobody will ever wake the parent: the block must end with PeerDied.
        assert_eq!(
            shared
                .parent
                .block(None, Some(&peer), Duration::from_millis(10)),
            BlockOutcome::PeerDied
        );
        assert_eq!(wait_child(child), Err(libc::SIGKILL));
    });
}

/// Runs as the separately started process (re-executed test binary): connects to the
/// path, receives a segment, adds 1 to every u64 and reports the sum.
#[test]
fn rendezvous_peer_role() {
    let Some(path) = role() else {
        return; // Only meaningful when started by `unrelated_processes_exchange_segment`.
    };
    let stream = connect_within(&path, Duration::from_secs(20)).unwrap();
    let (msg, fds) = recv_message(&stream).unwrap();
    assert_eq!(msg, b"segment");
    let seg = Segment::attach(fds.into_iter().next().unwrap()).unwrap();
    let words = seg.payload_len() / 8;
    let p = seg.payload_ptr() as *const AtomicU64;
    let mut sum = 0u64;
    for i in 0..words {
        // SAFETY: i < payload_len / 8 and the payload is 8-aligned and mapped read-write.
        let w = unsafe { &*p.add(i) };
        sum += w.fetch_add(1, Ordering::AcqRel) + 1;
    }
    send_with_fds(&stream, &sum.to_le_bytes(), &[]).unwrap();
}

#[test]
fn unrelated_processes_exchange_segment() {
    let path = socket_path("rv-test");
    let listener = RendezvousListener::bind(&path).unwrap();
    let mut child = spawn_role("rendezvous_peer_role", path.to_str().unwrap());
    let stream = crate::child_process::accept_within(&listener);
    let seg = Segment::create("rv", 64 * 8).unwrap();
    let p = seg.payload_ptr() as *const AtomicU64;
    for i in 0..64 {
        // SAFETY: 64 u64 slots fit the payload; atomics are valid for any bytes.
        unsafe { &*p.add(i) }.store(i as u64, Ordering::Relaxed);
    }
    send_with_fds(&stream, b"segment", &[seg.as_fd()]).unwrap();
    let (reply, _) = recv_message(&stream).unwrap();
    let sum = u64::from_le_bytes(reply.as_slice().try_into().unwrap());
    assert_eq!(sum, (1..=64).sum::<u64>());
    for i in 0..64 {
        // SAFETY: as above.
        assert_eq!(unsafe { &*p.add(i) }.load(Ordering::Acquire), i as u64 + 1);
    }
    let status = crate::child_process::wait_process(&mut child, crate::child_process::DEADLINE)
        .expect("the peer process ran past the deadline and was killed");
    assert!(status.success(), "{status}");
}
