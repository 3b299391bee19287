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

use crate::shareable::Shareable;
use memlink_capability::mapping::{MapError, Mapping, Protection};
use memlink_capability::segment::{AttachError, CreateError, Segment};
use std::fmt;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

const REGION_MAGIC: u64 = u64::from_le_bytes(*b"MLREGION");
/// Bytes at the start of the payload kept for [`RegionHeader`] (one cache line pair).
const REGION_HEADER_LEN: usize = 128;

/// The start of every region's payload: what `attach` checks, and the allocation cursor.
#[repr(C)]
struct RegionHeader {
    magic: AtomicU64,
    base: AtomicU64,
    cursor: AtomicU64,
}

const _: () = assert!(size_of::<RegionHeader>() <= REGION_HEADER_LEN);

/// Why a region could not be created or attached.
#[derive(Debug)]
pub enum RegionError {
    /// Creating the underlying segment failed (bad name, size, or a system call).
    Create(CreateError),
    /// The descriptor is not a valid memlink segment (its header check failed).
    Attach(AttachError),
    /// The descriptor is a memlink segment but not a channel region (wrong region header).
    NotARegion,
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
            RegionError::NotARegion | RegionError::AddressInUse { .. } => None,
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
        h.cursor.store(REGION_HEADER_LEN as u64, Ordering::Relaxed);
        // The magic goes last: a header with the magic is complete.
        h.magic.store(REGION_MAGIC, Ordering::Release);
        Ok(region)
    }

    /// Maps a region received as a descriptor (from another process) at its creator's address.
    pub fn attach(fd: OwnedFd) -> Result<Region, RegionError> {
        let segment = Segment::attach(fd).map_err(RegionError::Attach)?;
        if segment.protection() != Protection::ReadWrite
            || segment.payload_capacity() < REGION_HEADER_LEN
        {
            return Err(RegionError::NotARegion);
        }
        // SAFETY: the payload is mapped (read-write, checked above) for at least
        // REGION_HEADER_LEN bytes, page-aligned; the header is all atomics.
        let h = unsafe { &*segment.payload_ptr().cast::<RegionHeader>() };
        if h.magic.load(Ordering::Acquire) != REGION_MAGIC {
            return Err(RegionError::NotARegion);
        }
        let base = h.base.load(Ordering::Relaxed) as usize;
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
    /// Space is never returned to the region.
    pub fn alloc_bytes(&self, size: usize, align: usize) -> Result<*mut u8, AllocError> {
        let align = align.max(1) as u64;
        let mut start = 0;
        let r = self
            .header()
            .cursor
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |cur| {
                start = (cur + align - 1) & !(align - 1);
                let end = start.checked_add(size as u64)?;
                (end <= self.len as u64).then_some(end)
            });
        match r {
            Ok(_) => Ok((self.base + start as usize) as *mut u8),
            Err(cur) => Err(AllocError::OutOfSpace {
                requested: size,
                available: (self.len as u64).saturating_sub(cur) as usize,
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
