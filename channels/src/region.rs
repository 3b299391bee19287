//! A shared memory region that every participant maps at the same address (reference
//! scheme 1, coinciding logical addresses), with a bump allocator for channels, process
//! control blocks, message variables and slot pools.
//!
//! A region is a thin layer over a memlink-capability [`Segment`] (a sealed memfd with a
//! checked header: no file is left behind when its processes die). The first bytes of the
//! segment's payload hold a small region header: a magic, the address the creator mapped the
//! payload at, and the allocation cursor. A forked child inherits the mapping at the same
//! address; an unrelated process that receives the descriptor calls [`Region::attach`], which
//! checks the segment header ([`Segment::attach`]), then the region header, then maps the
//! payload at the creator's address with [`Segment::map_payload_at`] (`MAP_FIXED_NOREPLACE`),
//! failing with [`RegionError::AddressInUse`] if that range is taken. So a plain pointer into the
//! region means the same object in every process, which is what lets a channel descriptor's
//! `val_ref` point straight at another process's message variable.

use crate::checksum::{crc16_48, crc32_words};
use crate::shareable::Shareable;
use memlink_capability::mapping::{MapError, Mapping, Protection};
use memlink_capability::segment::{self, AttachError, CreateError, Segment};
use std::fmt;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

const REGION_MAGIC: u64 = u64::from_le_bytes(*b"MLREGION");
/// Bytes at the start of the payload kept for [`RegionHeader`] (one cache line pair).
const REGION_HEADER_LEN: usize = 128;
/// The allocation cursor keeps its value in the low 48 bits of its word and a CRC-16 of those
/// bits in the high 16, so a corrupted cursor is seen before it is used.
const CURSOR_BITS: u32 = 48;
const CURSOR_MASK: u64 = (1 << CURSOR_BITS) - 1;

/// The start of every region's payload: what `attach` checks, and the allocation cursor.
///
/// `magic`, `base` and `len` never change after `create`; `check` is a CRC-32 of the three, so
/// any change of up to four consecutive bytes of them is detected. A peer with write access can
/// still rewrite all four consistently; `attach_at` defends against that by checking `base`
/// against the value learnt from the creator itself.
#[repr(C)]
struct RegionHeader {
    magic: AtomicU64,
    base: AtomicU64,
    len: AtomicU64,
    check: AtomicU64,
    cursor: AtomicU64,
}

const _: () = assert!(size_of::<RegionHeader>() <= REGION_HEADER_LEN);

/// Byte offsets of the header's fields (for tests that corrupt them on purpose).
pub mod header_offsets {
    /// The magic (`MLREGION`).
    pub const MAGIC: usize = 0;
    /// The base address the creator mapped the payload at.
    pub const BASE: usize = 8;
    /// The payload length at creation.
    pub const LEN: usize = 16;
    /// CRC-32 of magic, base and length.
    pub const CHECK: usize = 24;
    /// The allocation cursor (48 bits) and its CRC-16 (16 bits).
    pub const CURSOR: usize = 32;
    /// Bytes of the header that carry meaning; the rest of the reserved space is unused.
    pub const END: usize = 40;
}

fn header_check(magic: u64, base: u64, len: u64) -> u64 {
    crc32_words(&[magic, base, len]) as u64
}

fn cursor_word(cursor: u64) -> u64 {
    debug_assert!(cursor <= CURSOR_MASK);
    cursor | (crc16_48(cursor) as u64) << CURSOR_BITS
}

/// The cursor in `word` if its check matches and it lies in `[REGION_HEADER_LEN, len]`.
fn cursor_value(word: u64, len: usize) -> Option<u64> {
    let cursor = word & CURSOR_MASK;
    (crc16_48(cursor) as u64 == word >> CURSOR_BITS
        && cursor >= REGION_HEADER_LEN as u64
        && cursor <= len as u64)
        .then_some(cursor)
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if n > 0 { n as usize } else { 4096 }
}

/// A field of the region header that failed its check on attach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderField {
    /// The CRC-32 over magic, base and length does not match: one of the four was changed.
    Check,
    /// The base address is zero, not page-aligned, or the region would end past the top of
    /// the address space.
    Base,
    /// The recorded length differs from the segment's payload.
    Len,
    /// The allocation cursor fails its CRC-16 or points outside the region.
    Cursor,
}

impl fmt::Display for HeaderField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HeaderField::Check => "checksum (of magic, base and length)",
            HeaderField::Base => "base address",
            HeaderField::Len => "length",
            HeaderField::Cursor => "allocation cursor",
        })
    }
}

/// Why a region could not be created or attached.
#[derive(Debug)]
pub enum RegionError {
    /// Creating the underlying segment failed (bad name, size, or a system call).
    Create(CreateError),
    /// The descriptor is not a valid memlink segment (its header check failed).
    Attach(AttachError),
    /// The descriptor is a memlink segment but not a channel region (wrong region header).
    NotARegion,
    /// The region header is a channel region's, but one of its fields is corrupt.
    CorruptHeader {
        /// The field that failed its check.
        field: HeaderField,
        /// The value found there.
        found: u64,
    },
    /// The region's header names a base address other than the one the creator announced
    /// (over the rendezvous socket): someone rewrote the header.
    BaseMismatch {
        /// The base the creator announced.
        expected: usize,
        /// The base the header names.
        found: usize,
    },
    /// The creator's address range is already used in this process.
    AddressInUse {
        /// The base address the region must be mapped at.
        base: usize,
    },
    /// Mapping the payload at the creator's address failed for another reason.
    Map(MapError),
}

impl fmt::Display for RegionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegionError::Create(e) => write!(f, "cannot create the region: {e}"),
            RegionError::Attach(e) => write!(f, "cannot attach the region: {e}"),
            RegionError::NotARegion => write!(
                f,
                "the descriptor is a memlink segment but not a channel region (wrong region header)"
            ),
            RegionError::CorruptHeader { field, found } => write!(
                f,
                "the region header's {field} is corrupt (found {found:#x}): a process with write \
                 access to the region overwrote it; the region was not mapped"
            ),
            RegionError::BaseMismatch { expected, found } => write!(
                f,
                "the region header names base {found:#x} but its creator announced {expected:#x}: \
                 a process with write access rewrote the header; the region was not mapped"
            ),
            RegionError::AddressInUse { base } => write!(
                f,
                "cannot map the region at its shared address {base:#x}: that range is already \
                 used in this process; attach before mapping other things there"
            ),
            RegionError::Map(e) => write!(f, "cannot map the region at its shared address: {e}"),
        }
    }
}

impl std::error::Error for RegionError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RegionError::Create(e) => Some(e),
            RegionError::Attach(e) => Some(e),
            RegionError::Map(e) => Some(e),
            RegionError::NotARegion
            | RegionError::CorruptHeader { .. }
            | RegionError::BaseMismatch { .. }
            | RegionError::AddressInUse { .. } => None,
        }
    }
}

/// Why an allocation inside a region failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllocError {
    /// Not enough space is left; create a bigger region.
    OutOfSpace {
        /// Bytes requested.
        requested: usize,
        /// Bytes still free.
        available: usize,
    },
    /// The shared allocation cursor fails its check or points outside the region: a process
    /// with write access overwrote it. Nothing was allocated.
    CorruptCursor {
        /// The cursor word found.
        found: u64,
    },
}

impl fmt::Display for AllocError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AllocError::OutOfSpace {
                requested,
                available,
            } => write!(
                f,
                "region is full: {requested} bytes requested, {available} free; create a larger region"
            ),
            AllocError::CorruptCursor { found } => write!(
                f,
                "the region's allocation cursor is corrupt (word {found:#x}): a process with \
                 write access overwrote it; nothing was allocated"
            ),
        }
    }
}

impl std::error::Error for AllocError {}

/// A shared memory region mapped at the same address in every process that uses it.
#[derive(Debug)]
pub struct Region {
    segment: Segment,
    /// The payload mapped at the creator's address, when this process attached (the creator
    /// uses the segment's own mapping).
    _fixed: Option<Mapping>,
    base: usize,
    len: usize,
}

impl Region {
    /// Creates a region of at least `len` usable bytes (rounded up to pages).
    pub fn create(name: &str, len: usize) -> Result<Region, RegionError> {
        let segment =
            Segment::create(name, REGION_HEADER_LEN + len).map_err(RegionError::Create)?;
        let base = segment.payload_ptr() as usize;
        let region = Region {
            len: segment.payload_capacity(),
            segment,
            _fixed: None,
            base,
        };
        let h = region.header();
        h.base.store(base as u64, Ordering::Relaxed);
        h.len.store(region.len as u64, Ordering::Relaxed);
        h.check.store(
            header_check(REGION_MAGIC, base as u64, region.len as u64),
            Ordering::Relaxed,
        );
        h.cursor
            .store(cursor_word(REGION_HEADER_LEN as u64), Ordering::Relaxed);
        // The magic goes last: a header with the magic is complete.
        h.magic.store(REGION_MAGIC, Ordering::Release);
        Ok(region)
    }

    /// Maps a region received as a descriptor (from another process) at its creator's address,
    /// as the region header records it.
    ///
    /// Every header field is checked before use (magic, a CRC-32 over magic, base and length,
    /// the base's alignment and range, the length against the segment, the cursor's CRC-16 and
    /// bounds): a corrupt field is [`RegionError::CorruptHeader`] naming it, and nothing is
    /// mapped. A header rewritten consistently by a peer with write access (checksum
    /// recomputed) cannot be told from the creator's own; [`Region::attach_at`] with the base
    /// learnt from the creator closes that gap.
    pub fn attach(fd: OwnedFd) -> Result<Region, RegionError> {
        Self::attach_checked(fd, None)
    }

    /// Like [`Region::attach`], and the header must name `expected_base` (the creator's
    /// address, learnt from the creator itself): otherwise [`RegionError::BaseMismatch`].
    pub fn attach_at(fd: OwnedFd, expected_base: usize) -> Result<Region, RegionError> {
        Self::attach_checked(fd, Some(expected_base))
    }

    fn attach_checked(fd: OwnedFd, expected_base: Option<usize>) -> Result<Region, RegionError> {
        let segment = Segment::attach(fd).map_err(RegionError::Attach)?;
        if segment.protection() != Protection::ReadWrite
            || segment.payload_capacity() < REGION_HEADER_LEN
        {
            return Err(RegionError::NotARegion);
        }
        // SAFETY: the payload is mapped (read-write, checked above) for at least
        // REGION_HEADER_LEN bytes, page-aligned; the header is all atomics.
        let h = unsafe { &*segment.payload_ptr().cast::<RegionHeader>() };
        let base = Self::check_header(h, segment.payload_capacity())?;
        if let Some(expected) = expected_base {
            if expected != base {
                return Err(RegionError::BaseMismatch {
                    expected,
                    found: base,
                });
            }
        }
        // The segment's own mapping (where the kernel chose) may sit in the very range the
        // region must take. Then map the segment again while the first mapping still holds
        // that spot (the new one lands elsewhere), and let the first one go.
        let overlaps = |seg: &Segment| {
            let start = seg.payload_ptr() as usize - segment::HEADER_LEN;
            let end = seg.payload_ptr() as usize + seg.payload_capacity();
            start < base + seg.payload_capacity() && base < end
        };
        let segment = if overlaps(&segment) {
            let fd = segment
                .try_clone_fd()
                .map_err(|e| RegionError::Map(MapError::Io(e)))?;
            let again = Segment::attach(fd).map_err(RegionError::Attach)?;
            drop(segment);
            again
        } else {
            segment
        };
        let fixed = segment
            .map_payload_at(base, Protection::ReadWrite)
            .map_err(|e| match e {
                MapError::AddressInUse { addr } => RegionError::AddressInUse { base: addr },
                other => RegionError::Map(other),
            })?;
        Ok(Region {
            len: segment.payload_capacity(),
            segment,
            _fixed: Some(fixed),
            base,
        })
    }

    /// Reads every header field once and checks it; returns the base to map at.
    fn check_header(h: &RegionHeader, capacity: usize) -> Result<usize, RegionError> {
        if h.magic.load(Ordering::Acquire) != REGION_MAGIC {
            return Err(RegionError::NotARegion);
        }
        let base = h.base.load(Ordering::Relaxed);
        let len = h.len.load(Ordering::Relaxed);
        let check = h.check.load(Ordering::Relaxed);
        if check != header_check(REGION_MAGIC, base, len) {
            return Err(RegionError::CorruptHeader {
                field: HeaderField::Check,
                found: check,
            });
        }
        let base_ok = base != 0
            && base % page_size() as u64 == 0
            && base
                .checked_add(len)
                .is_some_and(|end| end <= usize::MAX as u64);
        if !base_ok {
            return Err(RegionError::CorruptHeader {
                field: HeaderField::Base,
                found: base,
            });
        }
        if len != capacity as u64 {
            return Err(RegionError::CorruptHeader {
                field: HeaderField::Len,
                found: len,
            });
        }
        let cursor = h.cursor.load(Ordering::Acquire);
        if cursor_value(cursor, capacity).is_none() {
            return Err(RegionError::CorruptHeader {
                field: HeaderField::Cursor,
                found: cursor,
            });
        }
        Ok(base as usize)
    }

    fn header(&self) -> &RegionHeader {
        // SAFETY: the payload starts with the region header (written by `create`, checked by
        // `attach`); it stays mapped while `self` lives and is all atomics.
        unsafe { &*(self.base as *const RegionHeader) }
    }

    /// The descriptor to pass to another process (for [`Region::attach`]).
    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.segment.as_fd()
    }

    /// The segment the region lives in.
    pub fn segment(&self) -> &Segment {
        &self.segment
    }

    /// The address the region is mapped at, the same in every process.
    pub fn base(&self) -> *mut u8 {
        self.base as *mut u8
    }

    /// The mapped length in bytes, region header included.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: a region has at least its header.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Whether `[ptr, ptr + len)` lies inside the region.
    pub fn contains(&self, ptr: *const u8, len: usize) -> bool {
        let p = ptr as usize;
        p >= self.base
            && p.checked_add(len)
                .is_some_and(|end| end <= self.base + self.len)
    }

    /// Offset of `ptr` from the base (for [`Region::at_offset`] in another process).
    pub fn offset_of(&self, ptr: *const u8) -> usize {
        ptr as usize - self.base
    }

    /// The pointer at `offset`, or `None` if out of bounds.
    pub fn at_offset(&self, offset: usize, len: usize) -> Option<*mut u8> {
        (offset >= REGION_HEADER_LEN && offset.checked_add(len).is_some_and(|e| e <= self.len))
            .then(|| (self.base + offset) as *mut u8)
    }

    /// Reserves `size` bytes aligned to `align` (a power of two) and returns their address.
    /// Space is never returned to the region. The shared cursor is checked (CRC-16 and
    /// bounds) before it is used: a corrupt one is [`AllocError::CorruptCursor`].
    pub fn alloc_bytes(&self, size: usize, align: usize) -> Result<*mut u8, AllocError> {
        let align = align.max(1).next_power_of_two() as u64;
        let len = self.len;
        let mut start = 0;
        let mut corrupt = false;
        let r = self
            .header()
            .cursor
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |word| {
                let Some(cur) = cursor_value(word, len) else {
                    corrupt = true;
                    return None;
                };
                corrupt = false;
                start = cur.checked_add(align - 1)? & !(align - 1);
                let end = start.checked_add(size as u64)?;
                (end <= len as u64).then(|| cursor_word(end))
            });
        match r {
            Ok(_) => Ok((self.base + start as usize) as *mut u8),
            Err(word) if corrupt => Err(AllocError::CorruptCursor { found: word }),
            Err(word) => Err(AllocError::OutOfSpace {
                requested: size,
                available: (len as u64).saturating_sub(word & CURSOR_MASK) as usize,
            }),
        }
    }

    /// Places `value` in the region and returns a handle to it: a message or target variable
    /// that every process sharing the region can reach at the same address.
    pub fn alloc<T: Shareable>(self: &Arc<Self>, value: T) -> Result<SharedVar<T>, AllocError> {
        let p = self
            .alloc_bytes(size_of::<T>(), align_of::<T>())?
            .cast::<T>();
        // SAFETY: `p` is fresh, aligned, in-bounds space for one T that nobody else uses.
        unsafe { p.write(value) };
        Ok(SharedVar {
            ptr: p,
            _region: Arc::clone(self),
        })
    }
}

/// A variable in a [`Region`]: message or target variable of a synchronous channel.
///
/// It reads and writes like a `T` (`Deref`/`DerefMut`); its address is the same in every
/// process that shares the region, so the peer can copy into or out of it directly.
#[derive(Debug)]
pub struct SharedVar<T> {
    ptr: *mut T,
    _region: Arc<Region>,
}

// SAFETY: a SharedVar is a pointer into shared memory whose contents are Shareable plain data.
unsafe impl<T: Shareable + Send> Send for SharedVar<T> {}

impl<T> std::ops::Deref for SharedVar<T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: `ptr` was initialised by `Region::alloc` and `_region` keeps it mapped.
        unsafe { &*self.ptr }
    }
}

impl<T> std::ops::DerefMut for SharedVar<T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`; `&mut self` makes this the only handle used right now.
        unsafe { &mut *self.ptr }
    }
}
