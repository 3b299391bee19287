//! Corrupted segment headers are rejected with their own error, never mapped blindly,
//! including when the corrupt segment arrives from another process.

use std::os::unix::net::UnixStream;

use crate::child_process::{fork_child, isolated, wait_child};
use memlink_capability::capability::{AcquireError, Capability, Rights};
use memlink_capability::fd_passing::{recv_message, send_with_fds};
use memlink_capability::segment::{
    AttachError, HEADER_FIELDS_LEN, HEADER_LEN, RevokeError, Segment, generation_word_for,
    header_offsets,
};
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
    let fix = |at: usize, len: usize| {
        // SAFETY: the header page lies before the payload in the read-write mapping.
        let orig =
            unsafe { std::slice::from_raw_parts(seg.payload_ptr().sub(HEADER_LEN).add(at), len) }
                .to_vec();
        move |seg: &Segment| poke(seg, at, &orig)
    };

    let restore = fix(header_offsets::MAGIC, 8);
    poke(&seg, header_offsets::MAGIC, b"NOTMEMLK");
    assert!(matches!(
        attach_copy(&seg),
        Err(AttachError::BadMagic { .. })
    ));
    restore(&seg);

    let restore = fix(header_offsets::LAYOUT_VERSION, 4);
    poke(&seg, header_offsets::LAYOUT_VERSION, &99u32.to_le_bytes());
    let err = attach_copy(&seg).unwrap_err();
    assert!(matches!(
        err,
        AttachError::UnsupportedVersion {
            found: 99,
            expected: 2
        }
    ));
    assert!(err.to_string().contains("version 99"));
    restore(&seg);

    // A payload length that still fits the file: only the checksum can tell.
    let restore = fix(header_offsets::PAYLOAD_LEN, 8);
    poke(&seg, header_offsets::PAYLOAD_LEN, &100u64.to_le_bytes());
    assert!(matches!(
        attach_copy(&seg),
        Err(AttachError::ChecksumMismatch { .. })
    ));
    restore(&seg);

    let restore = fix(header_offsets::OWNER_PID, 4);
    poke(&seg, header_offsets::OWNER_PID, &1u32.to_le_bytes());
    assert!(matches!(
        attach_copy(&seg),
        Err(AttachError::ChecksumMismatch { .. })
    ));
    restore(&seg);

    assert!(attach_copy(&seg).is_ok());
}

/// Rewrites the header of `seg` with consistent checksum but wrong sizes or id, as a
/// buggy or hostile writer could: the size and id checks must still catch it.
#[test]
fn consistent_but_wrong_headers_are_rejected() {
    let seg = Segment::create("hdr-forged", 4096).unwrap();
    let fnv = |fields: [u64; 8]| {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for f in fields {
            for b in f.to_le_bytes() {
                h ^= b as u64;
                h = h.wrapping_mul(0x0000_0100_0000_01b3);
            }
        }
        h
    };
    let magic = u64::from_le_bytes(*b"MEMLINKS");
    let pid = std::process::id() as u64;
    let forge = |payload: u64, file: u64, id: u64| {
        poke(&seg, header_offsets::PAYLOAD_LEN, &payload.to_le_bytes());
        poke(&seg, header_offsets::FILE_LEN, &file.to_le_bytes());
        poke(&seg, header_offsets::ID, &id.to_le_bytes());
        let sum = fnv([magic, 2, HEADER_LEN as u64, payload, file, id, pid, 0]);
        poke(&seg, header_offsets::CHECKSUM, &sum.to_le_bytes());
        let word = generation_word_for(1, sum);
        poke(&seg, header_offsets::GENERATION, &word.to_le_bytes());
    };
    let id = seg.id().raw();
    forge(1 << 20, (1 << 20) + 4096, id);
    assert!(matches!(
        attach_copy(&seg),
        Err(AttachError::SizeMismatch { file_len: 8192, .. })
    ));
    forge(4096, 8192, 0);
    assert!(matches!(
        attach_copy(&seg),
        Err(AttachError::InvalidId { found: 0 })
    ));
    forge(4096, 8192, id);
    assert_eq!(attach_copy(&seg).unwrap().id(), seg.id());
}

#[test]
fn corrupt_segment_from_another_process_is_rejected() {
    isolated(|| {
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
        assert!(matches!(err, AttachError::ChecksumMismatch { .. }));
    });
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// Any change to any header field byte makes attach fail: a corrupted header is never
    /// mapped.
    #[test]
    fn any_header_byte_change_is_rejected(at in 0usize..HEADER_FIELDS_LEN, xor in 1u8..=255) {
        let seg = Segment::create("hdr-prop", 4096).unwrap();
        // SAFETY: `at` < 64 lies inside the header page.
        let old = unsafe { seg.payload_ptr().sub(HEADER_LEN).add(at).read() };
        poke(&seg, at, &[old ^ xor]);
        prop_assert!(attach_copy(&seg).is_err(), "corruption at byte {} accepted", at);
    }
}

/// The field a header byte belongs to, as the error of a corruption there names it.
fn expected_error(at: usize, err: &AttachError) -> bool {
    use header_offsets as o;
    match at {
        o::MAGIC..o::LAYOUT_VERSION => matches!(err, AttachError::BadMagic { .. }),
        o::LAYOUT_VERSION..o::HEADER_LEN => {
            matches!(err, AttachError::UnsupportedVersion { .. })
        }
        o::HEADER_LEN..o::PAYLOAD_LEN => matches!(err, AttachError::BadHeaderLen { .. }),
        o::GENERATION..o::CHECKSUM => matches!(err, AttachError::CorruptGeneration { .. }),
        // payload_len, file_len, id, owner_pid, reserved and the checksum itself.
        _ => matches!(err, AttachError::ChecksumMismatch { .. }),
    }
}

/// Every bit of every header field byte, and every byte inverted: attach refuses each
/// with the error of the field it hit; a capability over the segment refuses to acquire
/// while the generation is corrupt (CorruptGeneration, not Revoked), and the owner
/// cannot revoke over a corrupt word. Restoring the byte makes everything work again.
#[test]
fn every_flip_of_every_header_byte_is_caught_and_named() {
    let seg = Segment::create("hdr-flips", 4096).unwrap();
    let cap = Capability::<u64>::mint(&seg, 0, Rights::READ).unwrap();
    let mut trials = 0;
    for at in 0..HEADER_FIELDS_LEN {
        // SAFETY: `at` < 64 lies inside the header page.
        let old = unsafe { seg.payload_ptr().sub(HEADER_LEN).add(at).read() };
        for xor in (0..8).map(|b| 1u8 << b).chain([0xff]) {
            poke(&seg, at, &[old ^ xor]);
            let err = attach_copy(&seg).expect_err("a corrupt header was accepted");
            assert!(expected_error(at, &err), "byte {at} ^ {xor:#x}: {err}");
            if (header_offsets::GENERATION..header_offsets::CHECKSUM).contains(&at) {
                assert!(matches!(
                    cap.acquire(),
                    Err(AcquireError::CorruptGeneration { .. })
                ));
                assert!(matches!(
                    seg.revoke(),
                    Err(RevokeError::CorruptGeneration { .. })
                ));
                assert!(seg.generation().is_err());
            }
            poke(&seg, at, &[old]);
            trials += 1;
        }
    }
    assert_eq!(trials, HEADER_FIELDS_LEN * 9);
    assert_eq!(*cap.acquire().unwrap(), 0);
    assert_eq!(attach_copy(&seg).unwrap().generation().unwrap(), 1);
}
