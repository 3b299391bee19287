//! A shared memory region that every participant maps at the same address (reference
//! scheme 1, coinciding logical addresses), with a bump allocator for channels, process
//! control blocks, message variables and slot pools.
//!
//! The region is a memfd (no file is left behind when its processes die), sealed against
//! shrinking and growing. A forked child inherits the mapping at the same address; an unrelated
//! process that receives the descriptor calls [`Region::attach`], which maps it at the
//! creator's address with `MAP_FIXED_NOREPLACE` and fails clearly if that range is taken. So a
//! plain pointer into the region means the same object in every process, which is what lets a
//! channel descriptor's `val_ref` point straight at another process's message variable.
//!
//! This is a minimal adapter owned by memlink-channels; memlink-capability's `Segment` and
//! `Window` are the general form of the same idea.

use crate::shareable::Shareable;
use std::ffi::CString;
use std::fmt;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

const MAGIC: u64 = 0x6d65_6d6c_6e6b_7267; // "memlnkrg"
const LAYOUT_VERSION: u64 = 1;
const HEADER_LEN: usize = 4096;

/// The first page of every region: what `attach` checks, and the allocation cursor.
#[repr(C)]
struct RegionHeader {
    magic: u64,
    version: u64,
    base: u64,
    len: u64,
    cursor: AtomicU64,
}

/// Why a region could not be created or attached.
#[derive(Debug)]
pub enum RegionError {
    /// The name contains a NUL byte.
    BadName,
    /// A system call failed (memfd_create, ftruncate, fcntl, mmap).
    Os(&'static str, std::io::Error),
    /// The descriptor does not hold a memlink region (bad magic, version or size).
    NotARegion,
    /// The creator's address range is already used in this process.
    AddressInUse {
        /// The base address the region must be mapped at.
        base: usize,
    },
}

impl fmt::Display for RegionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegionError::BadName => write!(f, "region name must not contain a NUL byte"),
            RegionError::Os(call, e) => write!(f, "{call} failed: {e}"),
            RegionError::NotARegion => {
                write!(
                    f,
                    "the descriptor is not a memlink channel region (wrong header)"
                )
            }
            RegionError::AddressInUse { base } => write!(
                f,
                "cannot map the region at its shared address {base:#x}: that range is already \
                 used in this process; attach before mapping other things there"
            ),
        }
    }
}

impl std::error::Error for RegionError {}

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
    base: *mut u8,
    len: usize,
    fd: OwnedFd,
}

// SAFETY: the region is plain shared memory; all mutation of its contents goes through
// atomics or through protocols that hand exclusive access around, so it may be used from any
// thread.
unsafe impl Send for Region {}
// SAFETY: as above; `&Region` only exposes the base pointer and the allocator (atomic cursor).
unsafe impl Sync for Region {}

fn os_err(call: &'static str) -> RegionError {
    RegionError::Os(call, std::io::Error::last_os_error())
}

impl Region {
    /// Creates a region of `len` usable bytes (rounded up to pages, plus a header page).
    pub fn create(name: &str, len: usize) -> Result<Region, RegionError> {
        let cname = CString::new(name).map_err(|_| RegionError::BadName)?;
        let total = HEADER_LEN + len.div_ceil(4096) * 4096;
        // SAFETY: `cname` is a valid NUL-terminated string for the duration of the call.
        let raw = unsafe {
            libc::memfd_create(cname.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING)
        };
        if raw < 0 {
            return Err(os_err("memfd_create"));
        }
        // SAFETY: memfd_create returned a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: `fd` is an open memfd we own.
        if unsafe { libc::ftruncate(fd.as_raw_fd(), total as libc::off_t) } != 0 {
            return Err(os_err("ftruncate"));
        }
        let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;
        // SAFETY: `fd` is an open memfd created with MFD_ALLOW_SEALING.
        if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals) } != 0 {
            return Err(os_err("fcntl(F_ADD_SEALS)"));
        }
        // SAFETY: mapping `total` bytes of a memfd of exactly that size, at an address the
        // kernel picks; no existing mapping is affected.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                total,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(os_err("mmap"));
        }
        let header = RegionHeader {
            magic: MAGIC,
            version: LAYOUT_VERSION,
            base: base as u64,
            len: total as u64,
            cursor: AtomicU64::new(HEADER_LEN as u64),
        };
        // SAFETY: `base` is a fresh page-aligned writable mapping of at least HEADER_LEN bytes
        // that no one else sees yet.
        unsafe { std::ptr::write(base.cast::<RegionHeader>(), header) };
        Ok(Region {
            base: base.cast(),
            len: total,
            fd,
        })
    }

    /// Maps a region received as a descriptor (from another process) at its creator's address.
    pub fn attach(fd: OwnedFd) -> Result<Region, RegionError> {
        let mut probe = [0u64; 4];
        // SAFETY: reading 32 bytes into `probe`, which is 32 bytes long.
        let n = unsafe { libc::pread(fd.as_raw_fd(), probe.as_mut_ptr().cast(), 32, 0) };
        if n != 32 || probe[0] != MAGIC || probe[1] != LAYOUT_VERSION {
            return Err(RegionError::NotARegion);
        }
        let (base, len) = (probe[2] as usize, probe[3] as usize);
        // SAFETY: fstat fills the stat buffer we pass.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: `fd` is open and `st` is a valid out-parameter.
        if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 {
            return Err(os_err("fstat"));
        }
        if st.st_size as usize != len || len < HEADER_LEN {
            return Err(RegionError::NotARegion);
        }
        // SAFETY: MAP_FIXED_NOREPLACE never replaces an existing mapping: it fails instead.
        let got = unsafe {
            libc::mmap(
                base as *mut libc::c_void,
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_FIXED_NOREPLACE,
                fd.as_raw_fd(),
                0,
            )
        };
        if got == libc::MAP_FAILED {
            let e = std::io::Error::last_os_error();
            return Err(if e.raw_os_error() == Some(libc::EEXIST) {
                RegionError::AddressInUse { base }
            } else {
                RegionError::Os("mmap", e)
            });
        }
        if got as usize != base {
            // An old kernel ignored the flag and mapped elsewhere: undo and refuse.
            // SAFETY: `got` is the mapping we just made, of `len` bytes.
            unsafe { libc::munmap(got, len) };
            return Err(RegionError::AddressInUse { base });
        }
        Ok(Region {
            base: base as *mut u8,
            len,
            fd,
        })
    }

    fn header(&self) -> &RegionHeader {
        // SAFETY: the first page holds the header written by `create`; it stays mapped while
        // `self` lives.
        unsafe { &*self.base.cast::<RegionHeader>() }
    }

    /// The descriptor to pass to another process (for [`Region::attach`]).
    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// The address the region is mapped at, the same in every process.
    pub fn base(&self) -> *mut u8 {
        self.base
    }

    /// The mapped length in bytes, header included.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: a region has at least its header page.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Whether `[ptr, ptr + len)` lies inside the region.
    pub fn contains(&self, ptr: *const u8, len: usize) -> bool {
        let start = self.base as usize;
        let p = ptr as usize;
        p >= start
            && p.checked_add(len)
                .is_some_and(|end| end <= start + self.len)
    }

    /// Offset of `ptr` from the base (for [`Region::at_offset`] in another process).
    pub fn offset_of(&self, ptr: *const u8) -> usize {
        ptr as usize - self.base as usize
    }

    /// The pointer at `offset`, or `None` if out of bounds.
    pub fn at_offset(&self, offset: usize, len: usize) -> Option<*mut u8> {
        (offset >= HEADER_LEN && offset.checked_add(len).is_some_and(|e| e <= self.len))
            // SAFETY: in bounds of the mapping, checked just above.
            .then(|| unsafe { self.base.add(offset) })
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
            // SAFETY: `start + size <= len`, checked in the update closure.
            Ok(_) => Ok(unsafe { self.base.add(start as usize) }),
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

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly the mapping this value made (or inherited across fork);
        // handles that point into it hold an `Arc<Region>`, so none outlive it.
        unsafe { libc::munmap(self.base.cast(), self.len) };
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
