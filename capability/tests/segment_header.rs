//! Corrupted segment headers are rejected with their own error, never mapped blindly,
//! including when the corrupt segment arrives from another process.

#![cfg(not(memlink_loom))]

mod child_process;

use std::os::unix::net::UnixStream;

use child_process::{fork_child, wait_child};
use memlink_capability::fd_passing::{recv_message, send_with_fds};
use memlink_capability::segment::{AttachError, HEADER_LEN, Segment, header_offsets};
use proptest::prelude::*;

/// Overwrites header bytes of `seg` through its own read-write mapping.
fn poke(seg: &Segment, at: usize, bytes: &[u8]) {
    // SAFETY: the header page precedes the payload in the same read-write mapping, and
    // `at + bytes.len()` stays within it (callers pass offsets below HEADER_LEN).
    unsafe {
        let header = seg.payload_ptr().sub(HEADER_LEN);
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), header.add(at), bytes.len());
    }
}

fn attach_copy(seg: &Segment) -> Result<Segment, AttachError> {
    Segment::attach(seg.try_clone_fd().unwrap())
}

#[test]
fn each_corruption_has_its_own_error() {
    let seg = Segment::create("hdr", 4096).unwrap();
    assert!(attach_copy(&seg).is_ok());

    poke(&seg, header_offsets::MAGIC, b"NOTMEMLK");
    assert!(matches!(
        attach_copy(&seg),
        Err(AttachError::BadMagic { .. })
    ));
    poke(&seg, header_offsets::MAGIC, b"MEMLINKS");

    poke(&seg, header_offsets::LAYOUT_VERSION, &99u32.to_le_bytes());
    let err = attach_copy(&seg).unwrap_err();
    assert!(matches!(
        err,
        AttachError::UnsupportedVersion {
            found: 99,
            expected: 1
        }
    ));
    assert!(err.to_string().contains("version 99"));
    poke(&seg, header_offsets::LAYOUT_VERSION, &1u32.to_le_bytes());

    poke(
        &seg,
        header_offsets::PAYLOAD_LEN,
        &(1u64 << 20).to_le_bytes(),
    );
    assert!(matches!(
        attach_copy(&seg),
        Err(AttachError::SizeMismatch { .. })
    ));
    poke(&seg, header_offsets::PAYLOAD_LEN, &4096u64.to_le_bytes());

    poke(&seg, header_offsets::ID, &0u64.to_le_bytes());
    assert!(matches!(
        attach_copy(&seg),
        Err(AttachError::InvalidId { found: 0 })
    ));
    poke(&seg, header_offsets::ID, &seg.id().raw().to_le_bytes());

    assert!(attach_copy(&seg).is_ok());
}

#[test]
fn corrupt_segment_from_another_process_is_rejected() {
    let (tx, rx) = UnixStream::pair().unwrap();
    let child = fork_child(|| {
        let seg = Segment::create("hdr-child", 8192).unwrap();
        poke(&seg, header_offsets::FILE_LEN, &4096u64.to_le_bytes());
        send_with_fds(&rx, b"seg", &[seg.as_fd()]).unwrap();
        0
    });
    let (_, fds) = recv_message(&tx).unwrap();
    assert_eq!(wait_child(child), Ok(0));
    let err = Segment::attach(fds.into_iter().next().unwrap()).unwrap_err();
    assert!(matches!(
        err,
        AttachError::SizeMismatch {
            file_len: 12288,
            ..
        }
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// Any change to a checked header byte (magic, version, header length, sizes, id)
    /// makes attach fail; it never maps a segment whose checked fields are wrong.
    #[test]
    fn any_checked_byte_change_is_rejected(at in 0usize..40, xor in 1u8..=255) {
        let seg = Segment::create("hdr-prop", 4096).unwrap();
        // SAFETY: `at` < 40 lies inside the header page.
        let old = unsafe { seg.payload_ptr().sub(HEADER_LEN).add(at).read() };
        poke(&seg, at, &[old ^ xor]);
        let res = attach_copy(&seg);
        // The id's upper half (bytes 36..40) must stay zero, its lower half may take any
        // nonzero value: changing it yields a valid segment with another id.
        if (32..36).contains(&at) && res.is_ok() {
            prop_assert_ne!(res.unwrap().id(), seg.id());
        } else {
            prop_assert!(res.is_err(), "corruption at byte {} accepted", at);
        }
    }
}
