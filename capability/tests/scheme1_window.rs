//! Scheme 1 across processes: one process builds a linked list with plain pointers in a
//! segment mapped into a window; a separately started process reserves a window at the
//! same base, maps the segment at the same offset and walks the list through the very
//! same pointers.

use std::time::Duration;

use crate::child_process::{role, socket_path, spawn_role};
use memlink_capability::fd_passing::{recv_message, send_with_fds};
use memlink_capability::mapping::Protection;
use memlink_capability::rendezvous::{RendezvousListener, connect_within};
use memlink_capability::segment::Segment;
use memlink_capability::window::{ReserveError, Window, WindowPtr};

const BASE: usize = 0x6200_0000_0000;
const WINDOW_LEN: usize = 1 << 30;
const NODES: usize = 200;

#[repr(C)]
struct Node {
    value: u64,
    next: WindowPtr<Node>,
}

/// The walker: started as a separate process by `list_built_in_one_process_walked_in_another`.
#[test]
fn window_walker_role() {
    let Some(path) = role() else { return };
    let stream = connect_within(&path, Duration::from_secs(20)).unwrap();
    let (msg, fds) = recv_message(&stream).unwrap();
    let base = usize::from_le_bytes(msg[0..8].try_into().unwrap());
    let offset = usize::from_le_bytes(msg[8..16].try_into().unwrap());
    let window = Window::reserve(base, WINDOW_LEN).unwrap();
    let seg = Segment::attach(fds.into_iter().next().unwrap()).unwrap();
    let mapping = window.map_at(&seg, offset, Protection::ReadOnly).unwrap();
    assert_eq!(mapping.as_ptr() as usize, base + offset);
    // The head pointer sits at the start of the segment.
    // SAFETY: the segment starts with a WindowPtr written by the builder; the mapping is
    // live and at the same address as in the builder.
    let mut p = unsafe { *(mapping.as_ptr() as *const WindowPtr<Node>) };
    let (mut count, mut sum) = (0u64, 0u64);
    while !p.is_null() {
        assert!(window.contains(p.as_ptr() as usize, std::mem::size_of::<Node>()));
        // SAFETY: p points into the mapped segment (checked just above), at a Node the
        // builder initialised before sending the descriptor.
        let node = unsafe { &*p.as_ptr() };
        count += 1;
        sum += node.value;
        p = node.next;
    }
    let mut reply = count.to_le_bytes().to_vec();
    reply.extend_from_slice(&sum.to_le_bytes());
    send_with_fds(&stream, &reply, &[]).unwrap();
}

#[test]
fn list_built_in_one_process_walked_in_another() {
    let window = Window::reserve(BASE, WINDOW_LEN).unwrap();
    let seg = Segment::create("scheme1-list", 8 + NODES * std::mem::size_of::<Node>()).unwrap();
    let mapping = window.map_anywhere(&seg, Protection::ReadWrite).unwrap();
    let nodes = mapping.as_ptr().wrapping_add(8) as *mut Node;
    // Place list element i at slot (i * 7) % NODES, so the list jumps around the segment.
    let slot = |i: usize| (i * 7) % NODES;
    for i in 0..NODES {
        let next = if i + 1 < NODES {
            WindowPtr::from_ptr(nodes.wrapping_add(slot(i + 1)))
        } else {
            WindowPtr::NULL
        };
        // SAFETY: slot(i) < NODES, inside the read-write mapping sized for NODES nodes.
        unsafe {
            nodes.add(slot(i)).write(Node {
                value: i as u64 * 3,
                next,
            })
        };
    }
    // SAFETY: the first 8 bytes of the mapping hold the head pointer.
    unsafe {
        (mapping.as_ptr() as *mut WindowPtr<Node>)
            .write(WindowPtr::from_ptr(nodes.wrapping_add(slot(0))))
    };

    let path = socket_path("scheme1");
    let listener = RendezvousListener::bind(&path).unwrap();
    let mut child = spawn_role("window_walker_role", path.to_str().unwrap());
    let stream = crate::child_process::accept_within(&listener);
    let mut msg = window.base().to_le_bytes().to_vec();
    msg.extend_from_slice(&mapping.offset().to_le_bytes());
    send_with_fds(&stream, &msg, &[seg.as_fd()]).unwrap();
    let (reply, _) = recv_message(&stream).unwrap();
    let count = u64::from_le_bytes(reply[0..8].try_into().unwrap());
    let sum = u64::from_le_bytes(reply[8..16].try_into().unwrap());
    assert_eq!(count, NODES as u64);
    assert_eq!(sum, (0..NODES as u64).map(|i| i * 3).sum::<u64>());
    let status = crate::child_process::wait_process(&mut child, crate::child_process::DEADLINE)
        .expect("the peer process ran past the deadline and was killed");
    assert!(status.success(), "{status}");
}

#[test]
fn base_already_in_use_is_a_clear_error() {
    let seg = Segment::create("scheme1-clash", 4096).unwrap();
    // The segment's own mapping occupies this address: a window there must be refused.
    let taken = seg.payload_ptr() as usize;
    let err = Window::reserve(taken, 1 << 20).unwrap_err();
    assert!(matches!(err, ReserveError::BaseInUse { base, .. } if base == taken));
    assert!(err.to_string().contains("already mapped"));
    assert!(matches!(
        Window::reserve(BASE + 123, 4096),
        Err(ReserveError::Misaligned { .. })
    ));
}
