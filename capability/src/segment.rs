//! Segments: sealed memfd-backed shared memory objects with a checked header.
//!
//! A segment file is one header page (4096 bytes) followed by the payload, rounded up
//! to whole pages. The file is sealed against shrinking and growing, so a mapping of it
//! can never hit SIGBUS, and every [`Segment::attach`] checks the header before any
//! payload byte is trusted. Holding the file descriptor is the authority to map the
//! segment; the [`SegmentId`] only names it.

use std::ffi::CString;
use std::fmt;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::mapping::{MapError, Mapping, PAGE, Placement, Protection};

/// Size of the header at the start of every segment file; the payload starts here.
pub const HEADER_LEN: usize = 4096;
/// "MEMLINKS" as a little-endian u64: the first bytes of every segment.
pub const SEGMENT_MAGIC: u64 = u64::from_le_bytes(*b"MEMLINKS");
/// Version of the header layout written by this build (2: the generation word carries
/// its own check, and the checksum covers the reserved word).
pub const LAYOUT_VERSION: u32 = 2;
/// Bytes of the header that carry fields; a peer may write the rest of the header page,
/// which nobody reads.
pub const HEADER_FIELDS_LEN: usize = 64;
/// Largest payload a segment may have: offsets inside it must fit scheme 2's 32 bits.
pub const MAX_PAYLOAD_LEN: usize = u32::MAX as usize;

/// The name of a segment, unique across the processes of a machine: 32 random bits,
/// never zero, so that it fits a scheme 2 reference next to a 32-bit offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SegmentId(u64);

impl SegmentId {
    /// The id with this raw value, or `None` for zero or a value wider than 32 bits.
    pub fn from_raw(raw: u64) -> Option<SegmentId> {
        (raw != 0 && raw <= u32::MAX as u64).then_some(SegmentId(raw))
    }

    /// The raw value (nonzero, at most `u32::MAX`).
    pub fn raw(self) -> u64 {
        self.0
    }

    fn random() -> std::io::Result<SegmentId> {
        loop {
            let mut buf = [0u8; 4];
            // SAFETY: `buf` is a writable 4-byte buffer owned by this frame.
            let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if n as usize != buf.len() {
                continue;
            }
            if let Some(id) = SegmentId::from_raw(u32::from_le_bytes(buf) as u64) {
                return Ok(id);
            }
        }
    }
}

impl fmt::Display for SegmentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "seg:{:08x}", self.0)
    }
}

/// The header at offset 0 of every segment. All fields are atomics because a peer with
/// write access may change them at any time; attach copies them out once
/// ([`HeaderImage`]), checks the copy and never trusts the shared words again, except
/// `generation`, which is meant to change and carries its own check.
#[repr(C)]
struct SegmentHeader {
    magic: AtomicU64,
    layout_version: AtomicU32,
    header_len: AtomicU32,
    payload_len: AtomicU64,
    file_len: AtomicU64,
    id: AtomicU64,
    owner_pid: AtomicU32,
    reserved: AtomicU32,
    generation: AtomicU64,
    checksum: AtomicU64,
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

fn fnv1a(mut h: u64, words: &[u64]) -> u64 {
    for w in words {
        for b in w.to_le_bytes() {
            h ^= b as u64;
            h = h.wrapping_mul(FNV_PRIME);
        }
    }
    h
}

/// FNV-1a over the fields that never change after creation, so that any corruption of
/// them (even one that leaves the sizes consistent) is caught on attach.
fn header_checksum(
    version: u32,
    header_len: u32,
    payload_len: u64,
    file_len: u64,
    id: u64,
    owner_pid: u32,
    reserved: u32,
) -> u64 {
    fnv1a(
        FNV_OFFSET,
        &[
            SEGMENT_MAGIC,
            version as u64,
            header_len as u64,
            payload_len,
            file_len,
            id,
            owner_pid as u64,
            reserved as u64,
        ],
    )
}

/// The generation word: the generation (a nonzero u32) in the low half and, in the high
/// half, a 32-bit check of it keyed by the header's checksum. One atomic store changes
/// both, so a revocation stays a single write, and a corrupted word is told apart from a
/// revoked one (a random change passes the check with probability 2^-32).
pub fn generation_word_for(generation: u32, header_checksum: u64) -> u64 {
    let h = fnv1a(header_checksum, &[generation as u64]);
    let check = (h ^ (h >> 32)) as u32;
    ((check as u64) << 32) | generation as u64
}

/// The generation in `word`, if the word carries a valid check for it.
pub fn generation_of(word: u64, header_checksum: u64) -> Option<u32> {
    let generation = word as u32;
    (generation != 0 && generation_word_for(generation, header_checksum) == word)
        .then_some(generation)
}

const _: () = assert!(std::mem::size_of::<SegmentHeader>() <= HEADER_LEN);

/// Byte offsets of the header fields, for tests and tools that inspect raw files.
pub mod header_offsets {
    /// The magic number (u64).
    pub const MAGIC: usize = 0;
    /// The layout version (u32).
    pub const LAYOUT_VERSION: usize = 8;
    /// The header length (u32).
    pub const HEADER_LEN: usize = 12;
    /// The payload length (u64).
    pub const PAYLOAD_LEN: usize = 16;
    /// The file length (u64).
    pub const FILE_LEN: usize = 24;
    /// The segment id (u64).
    pub const ID: usize = 32;
    /// The creator's pid (u32).
    pub const OWNER_PID: usize = 40;
    /// Reserved (u32, zero; covered by the checksum).
    pub const RESERVED: usize = 44;
    /// The generation word (u64): generation (low 32 bits) and its check (high 32 bits).
    pub const GENERATION: usize = 48;
    /// Checksum of the fields that never change (u64).
    pub const CHECKSUM: usize = 56;
}

fn file_len_for(payload_len: usize) -> usize {
    HEADER_LEN + payload_len.div_ceil(PAGE) * PAGE
}

/// Why [`Segment::create`] failed.
#[derive(Debug)]
pub enum CreateError {
    /// The payload length was zero.
    EmptyPayload,
    /// The payload length exceeds [`MAX_PAYLOAD_LEN`].
    TooLarge {
        /// The requested length.
        requested: usize,
    },
    /// The name contains a NUL byte.
    InvalidName,
    /// The system page size is not 4096 bytes, which the segment layout assumes.
    UnsupportedPageSize(usize),
    /// memfd_create, ftruncate, sealing or mapping failed.
    Io(std::io::Error),
}

impl fmt::Display for CreateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CreateError::EmptyPayload => write!(f, "a segment needs a payload of at least 1 byte"),
            CreateError::TooLarge { requested } => write!(
                f,
                "payload of {requested} bytes exceeds the limit of {MAX_PAYLOAD_LEN} bytes; split it into several segments"
            ),
            CreateError::InvalidName => write!(f, "segment names must not contain NUL bytes"),
            CreateError::UnsupportedPageSize(p) => {
                write!(
                    f,
                    "page size {p} is not supported; memlink needs 4096-byte pages"
                )
            }
            CreateError::Io(e) => write!(f, "creating the segment failed: {e}"),
        }
    }
}

impl std::error::Error for CreateError {}

/// Why [`Segment::attach`] refused a file descriptor.
#[derive(Debug)]
pub enum AttachError {
    /// The file is not sealed against shrinking and growing, so mapping it could SIGBUS.
    NotSealed,
    /// The file is shorter than a header plus one payload page.
    TooSmall {
        /// The file's length.
        file_len: u64,
    },
    /// The first 8 bytes are not [`SEGMENT_MAGIC`]: not a memlink segment.
    BadMagic {
        /// The value found.
        found: u64,
    },
    /// The header's `header_len` field is not [`HEADER_LEN`].
    BadHeaderLen {
        /// The value found.
        found: u32,
    },
    /// The header's `generation` word fails its check: it was overwritten (a revocation
    /// always writes a word that passes).
    CorruptGeneration {
        /// The word found.
        found: u64,
    },
    /// The header was written by an incompatible layout version.
    UnsupportedVersion {
        /// The version found.
        found: u32,
        /// The version this build understands.
        expected: u32,
    },
    /// The header's lengths disagree with each other or with the file's real size.
    SizeMismatch {
        /// The payload length the header claims.
        payload_len: u64,
        /// The file length the header claims.
        header_file_len: u64,
        /// The file's real length (fstat).
        file_len: u64,
    },
    /// The header's fields do not match its checksum: some header byte was changed.
    ChecksumMismatch {
        /// The checksum stored in the header.
        stored: u64,
        /// The checksum of the fields as found.
        computed: u64,
    },
    /// The header carries an id of zero or wider than 32 bits.
    InvalidId {
        /// The raw id found.
        found: u64,
    },
    /// fstat, fcntl or mmap failed.
    Io(std::io::Error),
}

impl fmt::Display for AttachError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttachError::NotSealed => write!(
                f,
                "the file descriptor is not a sealed memlink segment (missing F_SEAL_SHRINK/F_SEAL_GROW)"
            ),
            AttachError::TooSmall { file_len } => write!(
                f,
                "the file is {file_len} bytes, smaller than a segment header plus one page"
            ),
            AttachError::BadMagic { found } => write!(
                f,
                "bad segment magic {found:#018x}: this is not a memlink segment, or its header was overwritten"
            ),
            AttachError::UnsupportedVersion { found, expected } => write!(
                f,
                "segment layout version {found} is not supported (this build reads version {expected}); rebuild both sides from the same memlink"
            ),
            AttachError::SizeMismatch {
                payload_len,
                header_file_len,
                file_len,
            } => write!(
                f,
                "segment header claims payload {payload_len} bytes / file {header_file_len} bytes but the file is {file_len} bytes: the header is corrupt"
            ),
            AttachError::ChecksumMismatch { stored, computed } => write!(
                f,
                "segment header checksum {stored:#018x} does not match its fields ({computed:#018x}): the header was corrupted"
            ),
            AttachError::BadHeaderLen { found } => write!(
                f,
                "segment header field header_len is {found}, expected {HEADER_LEN}: the header is corrupt"
            ),
            AttachError::CorruptGeneration { found } => write!(
                f,
                "segment header field generation holds {found:#018x}, which fails its check: the header was overwritten"
            ),
            AttachError::InvalidId { found } => {
                write!(f, "segment header carries an invalid id {found:#x}")
            }
            AttachError::Io(e) => write!(f, "attaching the segment failed: {e}"),
        }
    }
}

impl std::error::Error for AttachError {}

/// Why [`Segment::bump_generation`] failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevokeError {
    /// This process holds the segment read-only.
    ReadOnly,
    /// Only the process that created the segment may revoke.
    NotOwner,
    /// The generation word fails its check (someone overwrote it); nothing was changed.
    CorruptGeneration {
        /// The word found.
        found: u64,
    },
    /// The generation reached its limit (2^32 - 1 revocations); create a new segment.
    Exhausted,
}

impl fmt::Display for RevokeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RevokeError::ReadOnly => {
                write!(f, "cannot revoke: this process holds the segment read-only")
            }
            RevokeError::NotOwner => {
                write!(f, "cannot revoke: only the segment's creator may revoke")
            }
            RevokeError::CorruptGeneration { found } => write!(
                f,
                "cannot revoke: the segment's generation word {found:#018x} fails its check (the header was overwritten)"
            ),
            RevokeError::Exhausted => write!(
                f,
                "cannot revoke: the segment was revoked 2^32 - 1 times; move the data to a new segment"
            ),
        }
    }
}

impl std::error::Error for RevokeError {}

/// File mode of every segment's memfd: readable by anyone who holds or may reopen it,
/// writable by nobody through a new open. A holder running under another uid than the
/// creator cannot reopen /proc/self/fd/N read-write nor fchmod the file (not its owner),
/// so its rights stay those of the open file description it was sent.
pub const SEGMENT_FILE_MODE: libc::mode_t = 0o444;

/// Whether new writable mappings of a segment stay possible after creation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WritePolicy {
    /// Writable capabilities may be minted at any time.
    Shared,
    /// F_SEAL_FUTURE_WRITE after the creator's fill: read-only for everyone else.
    Frozen,
}

/// A shared memory segment mapped into this process (at an address the kernel chose).
pub struct Segment {
    fd: OwnedFd,
    id: SegmentId,
    payload_len: usize,
    file_len: usize,
    /// Private copies of header fields a peer must not be able to change under us.
    owner_pid: u32,
    checksum: u64,
    protection: Protection,
    map: Mapping,
}

impl fmt::Debug for Segment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Segment")
            .field("id", &self.id)
            .field("payload_len", &self.payload_len)
            .field("protection", &self.protection)
            .field("fd", &self.fd.as_raw_fd())
            .finish()
    }
}

fn io_err() -> std::io::Error {
    std::io::Error::last_os_error()
}

fn fstat_len(fd: BorrowedFd<'_>) -> std::io::Result<u64> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `st` is a writable stat buffer; fstat fills it on success.
    if unsafe { libc::fstat(fd.as_raw_fd(), st.as_mut_ptr()) } != 0 {
        return Err(io_err());
    }
    // SAFETY: fstat returned 0, so it initialised `st`.
    Ok(unsafe { st.assume_init() }.st_size as u64)
}

/// The access a descriptor gives: read-only when it was opened O_RDONLY or when the file
/// is sealed against (future) writes, which makes the kernel refuse writable mappings.
fn access_of(fd: BorrowedFd<'_>, seals: libc::c_int) -> std::io::Result<Protection> {
    // SAFETY: F_GETFL only reads the descriptor's status flags.
    let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
    if flags < 0 {
        return Err(io_err());
    }
    let write_sealed = seals & (libc::F_SEAL_WRITE | libc::F_SEAL_FUTURE_WRITE) != 0;
    Ok(
        if write_sealed || flags & libc::O_ACCMODE == libc::O_RDONLY {
            Protection::ReadOnly
        } else {
            Protection::ReadWrite
        },
    )
}

/// A read-only descriptor for the file behind `fd`: a duplicate when `fd` is already
/// O_RDONLY, else a fresh open of /proc/self/fd/N with O_RDONLY. A writable mapping
/// through the result is refused by the kernel, and so is mprotect to PROT_WRITE of a
/// read-only shared mapping made through it (no VM_MAYWRITE).
pub(crate) fn reopen_read_only(fd: BorrowedFd<'_>) -> std::io::Result<OwnedFd> {
    // SAFETY: F_GETFL only reads the descriptor's status flags.
    let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
    if flags < 0 {
        return Err(io_err());
    }
    if flags & libc::O_ACCMODE == libc::O_RDONLY {
        return fd.try_clone_to_owned();
    }
    let path =
        CString::new(format!("/proc/self/fd/{}", fd.as_raw_fd())).map_err(std::io::Error::other)?;
    // SAFETY: `path` is a valid NUL-terminated string.
    let raw = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if raw < 0 {
        return Err(io_err());
    }
    // SAFETY: open returned a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// The header fields as [`parse_header`] accepted them: a private copy, never read from
/// shared memory again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderFields {
    /// The segment's id.
    pub id: SegmentId,
    /// Payload bytes, as created.
    pub payload_len: usize,
    /// File bytes: the header page plus the payload rounded up to whole pages.
    pub file_len: usize,
    /// The creator's pid.
    pub owner_pid: u32,
    /// The checksum of the fixed fields (also the key of the generation check).
    pub checksum: u64,
    /// The generation when the header was read.
    pub generation: u32,
}

fn u64_at(b: &[u8; HEADER_FIELDS_LEN], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}

fn u32_at(b: &[u8; HEADER_FIELDS_LEN], at: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(w)
}

/// Checks a private copy of a header's first [`HEADER_FIELDS_LEN`] bytes against the
/// real length of its file: magic, layout version, header length, checksum (over every
/// fixed field, the reserved word included), sizes, id, and the generation's own check.
/// Pure: it is what [`Segment::attach`] runs on the copy it takes, and what the
/// `segment_header` fuzz target drives.
pub fn parse_header(
    image: &[u8; HEADER_FIELDS_LEN],
    file_len: u64,
) -> Result<HeaderFields, AttachError> {
    use header_offsets as o;
    let magic = u64_at(image, o::MAGIC);
    if magic != SEGMENT_MAGIC {
        return Err(AttachError::BadMagic { found: magic });
    }
    let version = u32_at(image, o::LAYOUT_VERSION);
    if version != LAYOUT_VERSION {
        return Err(AttachError::UnsupportedVersion {
            found: version,
            expected: LAYOUT_VERSION,
        });
    }
    let header_len = u32_at(image, o::HEADER_LEN);
    if header_len != HEADER_LEN as u32 {
        return Err(AttachError::BadHeaderLen { found: header_len });
    }
    let payload_len = u64_at(image, o::PAYLOAD_LEN);
    let header_file_len = u64_at(image, o::FILE_LEN);
    let raw_id = u64_at(image, o::ID);
    let owner_pid = u32_at(image, o::OWNER_PID);
    let sum = header_checksum(
        version,
        header_len,
        payload_len,
        header_file_len,
        raw_id,
        owner_pid,
        u32_at(image, o::RESERVED),
    );
    let stored = u64_at(image, o::CHECKSUM);
    if sum != stored {
        return Err(AttachError::ChecksumMismatch {
            stored,
            computed: sum,
        });
    }
    let sizes_agree = payload_len != 0
        && payload_len <= MAX_PAYLOAD_LEN as u64
        && header_file_len == file_len
        && file_len_for(payload_len as usize) as u64 == file_len;
    if !sizes_agree {
        return Err(AttachError::SizeMismatch {
            payload_len,
            header_file_len,
            file_len,
        });
    }
    let id = SegmentId::from_raw(raw_id).ok_or(AttachError::InvalidId { found: raw_id })?;
    let word = u64_at(image, o::GENERATION);
    let generation =
        generation_of(word, stored).ok_or(AttachError::CorruptGeneration { found: word })?;
    Ok(HeaderFields {
        id,
        payload_len: payload_len as usize,
        file_len: file_len as usize,
        owner_pid,
        checksum: stored,
        generation,
    })
}

/// The header bytes [`Segment::create`] writes for these fields (the inverse of
/// [`parse_header`] on every header it accepts).
pub fn encode_header(fields: &HeaderFields) -> [u8; HEADER_FIELDS_LEN] {
    use header_offsets as o;
    let mut b = [0u8; HEADER_FIELDS_LEN];
    let mut put = |at: usize, bytes: &[u8]| b[at..at + bytes.len()].copy_from_slice(bytes);
    put(o::MAGIC, &SEGMENT_MAGIC.to_le_bytes());
    put(o::LAYOUT_VERSION, &LAYOUT_VERSION.to_le_bytes());
    put(o::HEADER_LEN, &(HEADER_LEN as u32).to_le_bytes());
    put(o::PAYLOAD_LEN, &(fields.payload_len as u64).to_le_bytes());
    put(o::FILE_LEN, &(fields.file_len as u64).to_le_bytes());
    put(o::ID, &fields.id.raw().to_le_bytes());
    put(o::OWNER_PID, &fields.owner_pid.to_le_bytes());
    put(o::RESERVED, &0u32.to_le_bytes());
    let word = generation_word_for(fields.generation, fields.checksum);
    put(o::GENERATION, &word.to_le_bytes());
    put(o::CHECKSUM, &fields.checksum.to_le_bytes());
    b
}

/// The checksum a header with these fields carries.
pub(crate) fn checksum_for(payload_len: u64, file_len: u64, id: SegmentId, owner_pid: u32) -> u64 {
    header_checksum(
        LAYOUT_VERSION,
        HEADER_LEN as u32,
        payload_len,
        file_len,
        id.raw(),
        owner_pid,
        0,
    )
}

/// Copies the header's fields out of shared memory, one atomic load per field.
fn copy_header(h: &SegmentHeader) -> [u8; HEADER_FIELDS_LEN] {
    use header_offsets as o;
    let mut b = [0u8; HEADER_FIELDS_LEN];
    let mut put = |at: usize, bytes: &[u8]| b[at..at + bytes.len()].copy_from_slice(bytes);
    put(o::MAGIC, &h.magic.load(Ordering::Acquire).to_le_bytes());
    put(
        o::LAYOUT_VERSION,
        &h.layout_version.load(Ordering::Relaxed).to_le_bytes(),
    );
    put(
        o::HEADER_LEN,
        &h.header_len.load(Ordering::Relaxed).to_le_bytes(),
    );
    put(
        o::PAYLOAD_LEN,
        &h.payload_len.load(Ordering::Relaxed).to_le_bytes(),
    );
    put(
        o::FILE_LEN,
        &h.file_len.load(Ordering::Relaxed).to_le_bytes(),
    );
    put(o::ID, &h.id.load(Ordering::Relaxed).to_le_bytes());
    put(
        o::OWNER_PID,
        &h.owner_pid.load(Ordering::Relaxed).to_le_bytes(),
    );
    put(
        o::RESERVED,
        &h.reserved.load(Ordering::Relaxed).to_le_bytes(),
    );
    put(
        o::GENERATION,
        &h.generation.load(Ordering::Acquire).to_le_bytes(),
    );
    put(
        o::CHECKSUM,
        &h.checksum.load(Ordering::Relaxed).to_le_bytes(),
    );
    b
}

/// A header that passed every check, with the header page mapped read-only.
#[derive(Debug)]
pub(crate) struct HeaderCheck {
    pub(crate) fields: HeaderFields,
    pub(crate) protection: Protection,
    header_map: Mapping,
}

impl HeaderCheck {
    /// The segment's generation word, read through the read-only header mapping.
    pub(crate) fn generation_word(&self) -> &AtomicU64 {
        // SAFETY: `header_map` maps the header page, which starts with a SegmentHeader of
        // atomics (valid for any bytes); it lives as long as `self`.
        &unsafe { &*(self.header_map.as_ptr() as *const SegmentHeader) }.generation
    }
}

/// Checks seals, then a private copy of the header (see [`parse_header`]), mapping only
/// the header page (read-only).
pub(crate) fn check_header(fd: BorrowedFd<'_>) -> Result<HeaderCheck, AttachError> {
    // SAFETY: F_GET_SEALS only reads the descriptor's seals.
    let seals = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GET_SEALS) };
    let needed = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW;
    if seals < 0 || seals & needed != needed {
        return Err(AttachError::NotSealed);
    }
    let file_len = fstat_len(fd).map_err(AttachError::Io)?;
    if file_len < (HEADER_LEN + PAGE) as u64 {
        return Err(AttachError::TooSmall { file_len });
    }
    let protection = access_of(fd, seals).map_err(AttachError::Io)?;
    let header_map = Mapping::map(fd, 0, HEADER_LEN, Protection::ReadOnly, Placement::Anywhere)
        .map_err(|e| match e {
            MapError::Io(e) => AttachError::Io(e),
            other => AttachError::Io(std::io::Error::other(other.to_string())),
        })?;
    // SAFETY: the mapping is HEADER_LEN bytes, page-aligned, and the header consists of
    // atomics, valid for any bytes a peer may have written.
    let h = unsafe { &*(header_map.as_ptr() as *const SegmentHeader) };
    let fields = parse_header(&copy_header(h), file_len)?;
    Ok(HeaderCheck {
        fields,
        protection,
        header_map,
    })
}

impl Segment {
    /// Creates a segment with room for `payload_len` bytes (zero-filled), sealed against
    /// shrink and grow, and maps it read-write.
    ///
    /// ```
    /// use memlink_capability::segment::Segment;
    /// let seg = Segment::create("example", 100).unwrap();
    /// assert_eq!(seg.payload_len(), 100);
    /// assert_eq!(seg.payload_ptr() as usize % 4096, 0);
    /// ```
    pub fn create(name: &str, payload_len: usize) -> Result<Segment, CreateError> {
        Self::create_with_policy(name, payload_len, WritePolicy::Shared)
    }

    /// Creates a segment whose payload `fill` writes once, then freezes it with
    /// F_SEAL_FUTURE_WRITE: from then on the kernel refuses every new writable mapping
    /// and every write(2) of the file, for every process and every uid, root included.
    /// Only the mapping this call made before sealing stays writable, so the creator can
    /// still revoke (bump the generation) and change its own payload; every descriptor
    /// that leaves this process can only ever be read.
    ///
    /// ```
    /// use memlink_capability::mapping::Protection;
    /// use memlink_capability::segment::Segment;
    /// let seg = Segment::create_frozen("table", 64, |p| p[0] = 7).unwrap();
    /// let copy = Segment::attach(seg.try_clone_fd().unwrap()).unwrap();
    /// assert_eq!(copy.protection(), Protection::ReadOnly);
    /// assert!(copy.map_payload(Protection::ReadWrite).is_err());
    /// ```
    pub fn create_frozen(
        name: &str,
        payload_len: usize,
        fill: impl FnOnce(&mut [u8]),
    ) -> Result<Segment, CreateError> {
        let seg = Self::create_with_policy(name, payload_len, WritePolicy::Frozen)?;
        // SAFETY: the payload is `payload_len` bytes mapped read-write, and no descriptor
        // or pointer to it has left this function yet, so this is the only reference.
        fill(unsafe { std::slice::from_raw_parts_mut(seg.payload_ptr(), payload_len) });
        let seals = libc::F_SEAL_FUTURE_WRITE | libc::F_SEAL_SEAL;
        // SAFETY: F_ADD_SEALS on the memfd this segment owns.
        if unsafe { libc::fcntl(seg.fd.as_raw_fd(), libc::F_ADD_SEALS, seals) } != 0 {
            return Err(CreateError::Io(io_err()));
        }
        Ok(seg)
    }

    fn create_with_policy(
        name: &str,
        payload_len: usize,
        policy: WritePolicy,
    ) -> Result<Segment, CreateError> {
        if payload_len == 0 {
            return Err(CreateError::EmptyPayload);
        }
        if payload_len > MAX_PAYLOAD_LEN {
            return Err(CreateError::TooLarge {
                requested: payload_len,
            });
        }
        // SAFETY: sysconf has no memory-safety preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
        if page != PAGE {
            return Err(CreateError::UnsupportedPageSize(page));
        }
        let cname =
            CString::new(format!("memlink:{name}")).map_err(|_| CreateError::InvalidName)?;
        // SAFETY: `cname` is a valid NUL-terminated string for the duration of the call.
        let raw = unsafe {
            libc::memfd_create(cname.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING)
        };
        if raw < 0 {
            return Err(CreateError::Io(io_err()));
        }
        // SAFETY: memfd_create returned a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let file_len = file_len_for(payload_len);
        // SAFETY: ftruncate on a descriptor we own.
        if unsafe { libc::ftruncate(fd.as_raw_fd(), file_len as libc::off_t) } != 0 {
            return Err(CreateError::Io(io_err()));
        }
        // Rights are enforced on open file descriptions: a holder may only ever open the
        // memfd again (through /proc/self/fd) for reading, whatever uid it runs as
        // except the creator's and root's (see the README's "Rights" section).
        // SAFETY: fchmod on a descriptor we own.
        if unsafe { libc::fchmod(fd.as_raw_fd(), SEGMENT_FILE_MODE) } != 0 {
            return Err(CreateError::Io(io_err()));
        }
        let seals = match policy {
            WritePolicy::Shared => libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL,
            // F_SEAL_SEAL and F_SEAL_FUTURE_WRITE come after `fill` (see `create_frozen`).
            WritePolicy::Frozen => libc::F_SEAL_SHRINK | libc::F_SEAL_GROW,
        };
        // SAFETY: F_ADD_SEALS on a memfd we own created with MFD_ALLOW_SEALING.
        if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals) } != 0 {
            return Err(CreateError::Io(io_err()));
        }
        let map = Mapping::map(
            fd.as_fd(),
            0,
            file_len,
            Protection::ReadWrite,
            Placement::Anywhere,
        )
        .map_err(|e| match e {
            MapError::Io(e) => CreateError::Io(e),
            other => CreateError::Io(std::io::Error::other(other.to_string())),
        })?;
        let id = SegmentId::random().map_err(CreateError::Io)?;
        let owner_pid = std::process::id();
        let checksum = checksum_for(payload_len as u64, file_len as u64, id, owner_pid);
        let seg = Segment {
            fd,
            id,
            payload_len,
            file_len,
            owner_pid,
            checksum,
            protection: Protection::ReadWrite,
            map,
        };
        let h = seg.header();
        h.layout_version.store(LAYOUT_VERSION, Ordering::Relaxed);
        h.header_len.store(HEADER_LEN as u32, Ordering::Relaxed);
        h.payload_len.store(payload_len as u64, Ordering::Relaxed);
        h.file_len.store(file_len as u64, Ordering::Relaxed);
        h.id.store(id.raw(), Ordering::Relaxed);
        h.owner_pid.store(owner_pid, Ordering::Relaxed);
        h.reserved.store(0, Ordering::Relaxed);
        h.generation
            .store(generation_word_for(1, checksum), Ordering::Relaxed);
        h.checksum.store(checksum, Ordering::Relaxed);
        // The magic goes last: a header with the magic is a complete header.
        h.magic.store(SEGMENT_MAGIC, Ordering::Release);
        Ok(seg)
    }

    /// Attaches a segment received as a file descriptor (for example over a port),
    /// checking seals, magic, layout version, id and sizes before mapping the payload.
    /// A descriptor opened read-only yields a read-only segment.
    pub fn attach(fd: OwnedFd) -> Result<Segment, AttachError> {
        let check = check_header(fd.as_fd())?;
        // The file is sealed, so mapping all `file_len` bytes can never fault past EOF.
        let map = Mapping::map(
            fd.as_fd(),
            0,
            check.fields.file_len,
            check.protection,
            Placement::Anywhere,
        )
        .map_err(|e| match e {
            MapError::Io(e) => AttachError::Io(e),
            other => AttachError::Io(std::io::Error::other(other.to_string())),
        })?;
        Ok(Segment {
            fd,
            id: check.fields.id,
            payload_len: check.fields.payload_len,
            file_len: check.fields.file_len,
            owner_pid: check.fields.owner_pid,
            checksum: check.fields.checksum,
            protection: check.protection,
            map,
        })
    }

    fn header(&self) -> &SegmentHeader {
        // SAFETY: `map` covers the whole file, which starts with a header page; the header
        // is all atomics, so shared access from any process is sound.
        unsafe { &*(self.map.as_ptr() as *const SegmentHeader) }
    }

    /// The segment's id.
    pub fn id(&self) -> SegmentId {
        self.id
    }

    /// The payload length in bytes, as created.
    pub fn payload_len(&self) -> usize {
        self.payload_len
    }

    /// The mapped payload length: the payload rounded up to whole pages.
    pub fn payload_capacity(&self) -> usize {
        self.file_len - HEADER_LEN
    }

    /// The first payload byte in this process (page-aligned). Stores through it fault if
    /// the segment is held read-only.
    pub fn payload_ptr(&self) -> *mut u8 {
        // SAFETY: HEADER_LEN < file_len, so the result stays inside the mapping.
        unsafe { self.map.as_ptr().add(HEADER_LEN) }
    }

    /// The segment's file descriptor, for sending it to another process.
    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// A new descriptor for the same segment with the same access.
    pub fn try_clone_fd(&self) -> std::io::Result<OwnedFd> {
        self.fd.try_clone()
    }

    /// A new descriptor for the same segment that can only be mapped read-only (a fresh
    /// open of the memfd with O_RDONLY: a writable mapping through it is refused by the
    /// kernel, so a receiver cannot upgrade itself).
    pub fn read_only_fd(&self) -> std::io::Result<OwnedFd> {
        reopen_read_only(self.fd.as_fd())
    }

    /// Whether the segment was created with [`create_frozen`](Self::create_frozen): no
    /// new writable mapping of it is possible anywhere.
    pub fn is_frozen(&self) -> bool {
        // SAFETY: F_GET_SEALS only reads the descriptor's seals.
        let seals = unsafe { libc::fcntl(self.fd.as_raw_fd(), libc::F_GET_SEALS) };
        seals >= 0 && seals & libc::F_SEAL_FUTURE_WRITE != 0
    }

    /// How this process holds the segment.
    pub fn protection(&self) -> Protection {
        self.protection
    }

    /// The pid of the process that created the segment (as its header said on attach).
    pub fn owner_pid(&self) -> u32 {
        self.owner_pid
    }

    /// The current generation (starts at 1; each revocation bumps it), or
    /// [`AttachError::CorruptGeneration`] if the shared word fails its check.
    pub fn generation(&self) -> Result<u64, AttachError> {
        let word = self.header().generation.load(Ordering::Acquire);
        generation_of(word, self.checksum)
            .map(u64::from)
            .ok_or(AttachError::CorruptGeneration { found: word })
    }

    /// The generation word itself (generation and its check), for protocols that compare
    /// it atomically against [`generation_word_for`] of the generation they expect.
    pub fn generation_word(&self) -> &AtomicU64 {
        &self.header().generation
    }

    /// Revokes every capability minted from this segment so far (see
    /// [`bump_generation`](Self::bump_generation)); returns the new generation.
    pub fn revoke(&self) -> Result<u64, RevokeError> {
        self.bump_generation()
    }

    /// Bumps the generation (revokes every capability minted at an older one); only the
    /// creating process may, and only through a writable descriptor. Returns the new value.
    pub fn bump_generation(&self) -> Result<u64, RevokeError> {
        if self.protection != Protection::ReadWrite {
            return Err(RevokeError::ReadOnly);
        }
        if self.owner_pid != std::process::id() {
            return Err(RevokeError::NotOwner);
        }
        let word = &self.header().generation;
        let mut now = word.load(Ordering::Acquire);
        loop {
            let current = generation_of(now, self.checksum)
                .ok_or(RevokeError::CorruptGeneration { found: now })?;
            let next = current.checked_add(1).ok_or(RevokeError::Exhausted)?;
            let next_word = generation_word_for(next, self.checksum);
            match word.compare_exchange(now, next_word, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Ok(next as u64),
                Err(seen) => now = seen,
            }
        }
    }

    /// Maps the payload again, wherever the kernel chooses, with `protection`.
    pub fn map_payload(&self, protection: Protection) -> Result<Mapping, MapError> {
        Mapping::map(
            self.fd.as_fd(),
            HEADER_LEN,
            self.payload_capacity(),
            protection,
            Placement::Anywhere,
        )
    }

    /// Maps the payload again at exactly `addr` (page-aligned), failing with
    /// [`MapError::AddressInUse`] if anything is mapped there.
    pub fn map_payload_at(&self, addr: usize, protection: Protection) -> Result<Mapping, MapError> {
        Mapping::map(
            self.fd.as_fd(),
            HEADER_LEN,
            self.payload_capacity(),
            protection,
            Placement::FixedNoReplace(addr),
        )
    }

    /// Maps the payload over a reservation this crate owns (a window slot).
    ///
    /// # Safety
    ///
    /// `addr..addr + payload_capacity()` must be a PROT_NONE reservation owned by the
    /// caller with nothing pointing into it.
    pub(crate) unsafe fn map_payload_over(
        &self,
        addr: usize,
        protection: Protection,
    ) -> Result<Mapping, MapError> {
        // SAFETY: forwarded from this function's contract.
        unsafe {
            Mapping::map_over_reservation(
                self.fd.as_fd(),
                HEADER_LEN,
                addr,
                self.payload_capacity(),
                protection,
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_then_attach_sees_same_bytes() {
        let a = Segment::create("t", 10_000).unwrap();
        assert_eq!(a.payload_capacity(), 12_288);
        // SAFETY: the payload is at least 10_000 bytes and mapped read-write.
        unsafe { a.payload_ptr().add(9_999).write(42) };
        let b = Segment::attach(a.try_clone_fd().unwrap()).unwrap();
        assert_eq!(b.id(), a.id());
        assert_eq!(b.payload_len(), 10_000);
        assert_ne!(b.payload_ptr(), a.payload_ptr());
        // SAFETY: same segment, mapped at least 10_000 bytes.
        assert_eq!(unsafe { b.payload_ptr().add(9_999).read() }, 42);
        assert_eq!(b.generation().unwrap(), 1);
    }

    #[test]
    fn bad_inputs_are_errors() {
        assert!(matches!(
            Segment::create("x", 0),
            Err(CreateError::EmptyPayload)
        ));
        assert!(matches!(
            Segment::create("a\0b", 1),
            Err(CreateError::InvalidName)
        ));
        // An unsealed memfd is refused.
        let name = CString::new("plain").unwrap();
        // SAFETY: valid C string.
        let raw = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
        assert!(raw >= 0);
        // SAFETY: fresh descriptor.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        assert!(matches!(Segment::attach(fd), Err(AttachError::NotSealed)));
    }

    #[test]
    fn read_only_descriptor_cannot_map_writable() {
        let a = Segment::create("ro", 4096).unwrap();
        let ro = Segment::attach(a.read_only_fd().unwrap()).unwrap();
        assert_eq!(ro.protection(), Protection::ReadOnly);
        assert!(matches!(
            ro.map_payload(Protection::ReadWrite),
            Err(MapError::ReadOnlyDescriptor)
        ));
        assert_eq!(ro.bump_generation(), Err(RevokeError::ReadOnly));
        assert_eq!(a.bump_generation(), Ok(2));
        assert_eq!(ro.generation().unwrap(), 2);
    }

    #[test]
    fn fixed_address_mapping_refuses_a_used_address() {
        let a = Segment::create("fx", 4096).unwrap();
        let used = a.payload_ptr() as usize;
        assert!(matches!(
            a.map_payload_at(used, Protection::ReadOnly),
            Err(MapError::AddressInUse { .. })
        ));
    }
}
