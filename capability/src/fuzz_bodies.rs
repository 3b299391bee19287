//! The bodies of the cargo-fuzz targets in `capability/fuzz` (one function per target).
//! They live in the library so that the stable test suite replays the committed corpora
//! through exactly the code the fuzzer ran (`tests/fuzz_corpus.rs`). Each takes any
//! bytes; a panic is a finding: an input that memlink accepted in a state it must not
//! be in, or an input that made it panic.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::OnceLock;

use crate::capability::{AcquireError, MintError, Rights};
use crate::capability_transfer::{CapMessage, RecvCapError, capability_from_message};
use crate::fd_passing::{MAX_FDS, MAX_MESSAGE_LEN, RecvFdsError, recv_message, recv_with_fds};
use crate::mapping::Protection;
use crate::segment::{
    HEADER_FIELDS_LEN, HEADER_LEN, HeaderFields, MAX_PAYLOAD_LEN, Segment, SegmentId,
    encode_header, header_offsets, parse_header,
};
use crate::shared_ref::{ResolveError, SharedRef, TranslationTable};

/// Reads the bytes of `data` as a stream of little-endian words, zero past the end.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn u8(&mut self) -> u8 {
        let (b, rest) = self.0.split_first().map_or((0, &[][..]), |(b, r)| (*b, r));
        self.0 = rest;
        b
    }

    fn u64(&mut self) -> u64 {
        let mut w = [0u8; 8];
        for b in &mut w {
            *b = self.u8();
        }
        u64::from_le_bytes(w)
    }
}

/// Segment header: a raw image checked against a file length, and a valid header with
/// fuzz-chosen byte changes. Every image `parse_header` accepts must be exactly the
/// encoding of the fields it returns (so no corruption is ever accepted), with sizes
/// that agree with the file.
pub fn segment_header(data: &[u8]) {
    let mut d = Bytes(data);
    let mode = d.u8();
    let mut image = [0u8; HEADER_FIELDS_LEN];
    let file_len;
    let mut valid = None;
    if mode & 1 == 0 {
        for b in &mut image {
            *b = d.u8();
        }
        file_len = d.u64();
    } else {
        // A header as create writes it, then up to 8 fuzz-chosen byte changes.
        let payload_len = (d.u64() % MAX_PAYLOAD_LEN as u64).max(1) as usize;
        let fields = HeaderFields {
            id: SegmentId::from_raw((d.u64() & 0xffff_ffff).max(1)).expect("nonzero 32 bits"),
            payload_len,
            file_len: HEADER_LEN + payload_len.div_ceil(4096) * 4096,
            owner_pid: d.u64() as u32,
            checksum: 0,
            generation: (d.u64() as u32).max(1),
        };
        let fields = HeaderFields {
            checksum: crate::segment::checksum_for(
                fields.payload_len as u64,
                fields.file_len as u64,
                fields.id,
                fields.owner_pid,
            ),
            ..fields
        };
        image = encode_header(&fields);
        let pristine = image;
        for _ in 0..(mode >> 1) % 9 {
            let at = d.u8() as usize % HEADER_FIELDS_LEN;
            image[at] ^= d.u8();
        }
        file_len = if mode & 0x80 != 0 {
            d.u64()
        } else {
            fields.file_len as u64
        };
        if image == pristine && file_len == fields.file_len as u64 {
            valid = Some(fields);
        }
    }
    match parse_header(&image, file_len) {
        Ok(f) => {
            assert_eq!(encode_header(&f), image, "accepted a non-canonical header");
            assert!(f.payload_len >= 1 && f.payload_len <= MAX_PAYLOAD_LEN);
            assert_eq!(f.file_len as u64, file_len);
            assert_eq!(f.file_len, HEADER_LEN + f.payload_len.div_ceil(4096) * 4096);
            if let Some(v) = valid {
                assert_eq!(f, v);
            }
            let gen_at = header_offsets::GENERATION;
            assert_eq!(
                u64::from_le_bytes(image[gen_at..gen_at + 8].try_into().expect("8 bytes")),
                crate::segment::generation_word_for(f.generation, f.checksum)
            );
        }
        Err(e) => {
            assert!(valid.is_none(), "a valid header was refused: {e}");
            assert!(!e.to_string().is_empty());
        }
    }
}

/// A non-blocking pipe: (read end, write end).
fn pipe() -> (OwnedFd, OwnedFd) {
    let mut ends = [0; 2];
    // SAFETY: `ends` is a writable array of two descriptors.
    let rc = unsafe { libc::pipe2(ends.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) };
    assert_eq!(rc, 0, "pipe2: {}", std::io::Error::last_os_error());
    // SAFETY: pipe2 returned two fresh descriptors that nothing else owns.
    unsafe { (OwnedFd::from_raw_fd(ends[0]), OwnedFd::from_raw_fd(ends[1])) }
}

fn sendmsg_raw(stream: &UnixStream, bytes: &[u8], fds: &[RawFd]) -> bool {
    let mut iov = libc::iovec {
        iov_base: bytes.as_ptr() as *mut libc::c_void,
        iov_len: bytes.len(),
    };
    let mut control = [0u64; 16];
    // SAFETY: an all-zero msghdr is a valid empty value; fields are set below.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if !fds.is_empty() {
        let data_len = std::mem::size_of_val(fds) as u32;
        msg.msg_control = control.as_mut_ptr().cast();
        // SAFETY: CMSG_SPACE is a pure size computation.
        msg.msg_controllen = unsafe { libc::CMSG_SPACE(data_len) } as _;
        // SAFETY: the control buffer (128 bytes) holds one cmsghdr with up to 3 fds.
        unsafe {
            let c = libc::CMSG_FIRSTHDR(&msg);
            (*c).cmsg_level = libc::SOL_SOCKET;
            (*c).cmsg_type = libc::SCM_RIGHTS;
            (*c).cmsg_len = libc::CMSG_LEN(data_len) as _;
            std::ptr::copy_nonoverlapping(fds.as_ptr(), libc::CMSG_DATA(c).cast(), fds.len());
        }
    }
    // SAFETY: `msg` points to a live iovec and control buffer.
    unsafe { libc::sendmsg(stream.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) >= 0 }
}

/// Message framing (the rendezvous and fd-passing wire): arbitrary bytes, in up to 8
/// writes each carrying 0 to 3 descriptors, read back with `recv_message` and
/// `recv_with_fds`. Every message accepted respects the limits, every error is one of
/// the documented ones, and no descriptor is leaked whatever arrives.
pub fn fd_passing_frames(data: &[u8]) {
    // Descriptors to send: copies of a pipe's write end (never the socket's own ends,
    // which in flight would keep the connection open and the reader waiting). Once every
    // copy is closed, this process's descriptor table holds the pipe's read end alone; a
    // leaked copy is a second entry for the same pipe. (The table, not end-of-file on the
    // read end: a child another test thread forks meanwhile holds copies of our
    // descriptors until it execs or exits, which is no leak of ours.)
    let (pipe_r, pipe_w) = pipe();
    {
        let (tx, rx) = UnixStream::pair().expect("socketpair");
        let mut d = Bytes(data);
        let chunks = d.u8() % 8 + 1;
        let small_buffer = d.u8() % 64;
        let mut rest = d.0;
        for _ in 0..chunks {
            if rest.is_empty() {
                break;
            }
            let (n, k) = (rest[0] as usize, (rest[0] >> 6) as usize);
            let body = &rest[1..];
            let take = (n % 64 + 1).min(body.len());
            let fds = [pipe_w.as_raw_fd(); 3];
            sendmsg_raw(&tx, &body[..take], &fds[..k]);
            rest = &body[take..];
        }
        drop(tx);
        rx.set_nonblocking(false).expect("blocking");
        let mut buf = vec![0u8; small_buffer as usize];
        for turn in 0..64 {
            let got = if turn % 2 == 0 {
                recv_message(&rx).map(|(m, fds)| (m.len(), fds))
            } else {
                recv_with_fds(&rx, &mut buf)
            };
            match got {
                Ok((len, fds)) => {
                    assert!(len <= MAX_MESSAGE_LEN && fds.len() <= MAX_FDS);
                }
                Err(RecvFdsError::Disconnected | RecvFdsError::Truncated) => break,
                Err(RecvFdsError::BadFrame { len, fds }) => {
                    assert!(len as usize > MAX_MESSAGE_LEN || fds as usize > MAX_FDS);
                    break;
                }
                Err(RecvFdsError::BufferTooSmall { needed }) => assert!(needed > buf.len()),
                Err(RecvFdsError::FdsTruncated { expected, received }) => {
                    assert_ne!(expected, received);
                }
                Err(RecvFdsError::Io(e)) => panic!("unexpected socket error: {e}"),
            }
        }
    }
    drop(pipe_w);
    assert_eq!(
        descriptors_of_pipe(&pipe_r),
        1,
        "a received descriptor leaked (a copy of the pipe's write end is still open)"
    );
}

/// How many entries of this process's descriptor table refer to the pipe `end` is one end of.
fn descriptors_of_pipe(end: &OwnedFd) -> usize {
    let link = std::fs::read_link(format!("/proc/self/fd/{}", end.as_raw_fd())).expect("own fd");
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .filter(|target| *target == link)
        .count()
}

/// The segment the capability target names: a payload of 3 pages where the u64 at
/// every 8-byte offset holds that offset, so a wrongly placed pointer reads a wrong value.
fn capability_segment() -> &'static Segment {
    static SEG: OnceLock<Segment> = OnceLock::new();
    SEG.get_or_init(|| {
        let seg = Segment::create("fuzz-cap", 3 * 4096 - 8).expect("create the fuzz segment");
        for off in (0..seg.payload_len() - 7).step_by(8) {
            // SAFETY: `off + 8 <= payload_len`, mapped read-write, 8-aligned.
            unsafe { (seg.payload_ptr().add(off) as *mut u64).write(off as u64) };
        }
        seg
    })
}

/// Capability messages: `CapMessage::decode` on any bytes (everything it accepts
/// encodes back to the same bytes), then the whole receive path with the real segment's
/// descriptor, read-write or read-only: whatever is accepted maps the named object (the
/// value read is its offset), never carries WRITE on a read-only descriptor, and is
/// revoked unless it names the current generation.
pub fn capability_message(data: &[u8]) {
    let mut d = Bytes(data);
    let mode = d.u8();
    let mut msg = d.0.to_vec();
    match CapMessage::decode(&msg) {
        Ok(m) => assert_eq!(m.encode().as_slice(), msg.as_slice(), "non-canonical"),
        Err(e) => assert!(!e.to_string().is_empty()),
    }
    let seg = capability_segment();
    if mode & 1 != 0 && msg.len() >= 40 {
        // Name the real segment, so the fuzzer gets past the id check.
        msg[32..40].copy_from_slice(&seg.id().raw().to_le_bytes());
    }
    let fd = if mode & 2 != 0 {
        seg.read_only_fd()
    } else {
        seg.try_clone_fd()
    }
    .expect("descriptor for the fuzz segment");
    let read_only = mode & 2 != 0;
    let fds = if mode & 4 != 0 { vec![] } else { vec![fd] };
    match capability_from_message::<u64>(&msg, fds) {
        Ok(cap) => {
            let m = CapMessage::decode(&msg).expect("accepted messages decode");
            assert!(!(read_only && cap.rights().contains(Rights::WRITE)));
            assert!(cap.offset() + 8 <= seg.payload_len());
            match cap.acquire() {
                Ok(g) => {
                    assert_eq!(m.generation, 1);
                    assert_eq!(*g, cap.offset() as u64, "the guard points elsewhere");
                }
                Err(AcquireError::Revoked) => assert_ne!(m.generation, 1),
                Err(AcquireError::NoReadRight) => assert!(!cap.rights().contains(Rights::READ)),
                Err(e) => panic!("unexpected acquire error: {e}"),
            }
            if let Ok(w) = cap.acquire_write() {
                assert!(!read_only);
                assert_eq!(w.as_ptr() as usize % 8, 0);
            }
        }
        Err(RecvCapError::Invalid(MintError::WriteOnReadOnly)) => assert!(read_only),
        Err(e) => assert!(!e.to_string().is_empty()),
    }
    assert_eq!(seg.protection(), Protection::ReadWrite);
}

/// Each segment of the fuzz table: its id, where it is mapped, its payload length.
type KnownSegments = Vec<(SegmentId, usize, usize)>;

/// The translation table the shared-reference target resolves against: segments of 1,
/// 4096 and 10000 bytes.
fn translation_table() -> &'static (TranslationTable, KnownSegments) {
    static TABLE: OnceLock<(TranslationTable, KnownSegments)> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut table = TranslationTable::new();
        let mut known = Vec::new();
        for len in [1, 4096, 10_000] {
            let seg = Segment::create("fuzz-ref", len).expect("create a fuzz segment");
            known.push((seg.id(), seg.payload_ptr() as usize, len));
            table.insert(seg).expect("fresh ids");
        }
        (table, known)
    })
}

fn check_resolve<T: crate::Shareable>(r: SharedRef) {
    let (table, known) = translation_table();
    let size = std::mem::size_of::<T>();
    let align = std::mem::align_of::<T>();
    let model = match known.iter().find(|(id, _, _)| Some(*id) == r.segment()) {
        _ if r.is_null() => Err(ResolveError::Null),
        None => Err(ResolveError::UnknownSegment(r.raw() >> 32)),
        Some((_, base, len)) => {
            let off = r.offset() as usize;
            if off + size > *len {
                Err(ResolveError::OutOfRange {
                    offset: r.offset(),
                    size,
                    payload_len: *len,
                })
            } else if off % align != 0 {
                Err(ResolveError::Misaligned {
                    offset: r.offset(),
                    align,
                })
            } else {
                Ok(base + off)
            }
        }
    };
    let got = table.resolve::<T>(r).map(|p| p as usize);
    assert_eq!(
        got,
        model,
        "resolve disagrees with the model for {:#x}",
        r.raw()
    );
}

/// Shared references: any 64-bit value (or one naming a known segment, with any
/// offset) resolved as several types; the table must agree with a plain model, and an
/// address is only ever one inside the segment's payload, aligned.
pub fn shared_ref_translation(data: &[u8]) {
    let (_, known) = translation_table();
    let mut d = Bytes(data);
    while !d.0.is_empty() {
        let sel = d.u8();
        let mut raw = d.u64();
        if sel & 0x80 != 0 {
            let (id, _, _) = known[(sel as usize >> 4) % known.len()];
            raw = (id.raw() << 32) | (raw & 0xffff_ffff);
        }
        let r = SharedRef::from_raw(raw);
        match sel % 6 {
            0 => check_resolve::<u8>(r),
            1 => check_resolve::<u16>(r),
            2 => check_resolve::<u32>(r),
            3 => check_resolve::<u64>(r),
            4 => check_resolve::<[u8; 3]>(r),
            _ => check_resolve::<[u64; 4]>(r),
        }
        if let Some(next) = r.checked_add(sel as u32 * 1000) {
            assert_eq!(next.segment(), r.segment());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_accept_empty_and_small_inputs() {
        for data in [&[][..], &[1], &[0xff; 80], &[3; 200]] {
            segment_header(data);
            fd_passing_frames(data);
            capability_message(data);
            shared_ref_translation(data);
        }
    }

    #[test]
    fn a_valid_capability_message_reaches_the_object() {
        use crate::capability::Capability;
        let seg = capability_segment();
        let cap = Capability::<u64>::mint(seg, 4096 + 16, Rights::READ | Rights::GRANT).unwrap();
        let mut data = vec![1u8];
        data.extend_from_slice(&CapMessage::of(&cap).encode());
        capability_message(&data);
    }
}
