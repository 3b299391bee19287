//! A mapping of (part of) a segment's file into this address space, unmapped on drop.

use std::fmt;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::ptr::NonNull;

/// The access a mapping grants to this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protection {
    /// Loads only: a store through a pointer into the mapping faults (SIGSEGV).
    ReadOnly,
    /// Loads and stores.
    ReadWrite,
}

impl Protection {
    pub(crate) fn prot_flags(self) -> libc::c_int {
        match self {
            Protection::ReadOnly => libc::PROT_READ,
            Protection::ReadWrite => libc::PROT_READ | libc::PROT_WRITE,
        }
    }
}

/// Where a mapping is placed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// Wherever the kernel chooses.
    Anywhere,
    /// Exactly at this page-aligned address, failing if anything is mapped there already
    /// (MAP_FIXED_NOREPLACE).
    FixedNoReplace(usize),
}

/// What dropping a mapping does with its address range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OnDrop {
    /// munmap the range.
    Unmap,
    /// Put a PROT_NONE reservation back (the range belongs to a window).
    Reserve,
}

/// Why mapping a segment failed.
#[derive(Debug)]
pub enum MapError {
    /// Something is already mapped at the requested fixed address.
    AddressInUse {
        /// The requested address.
        addr: usize,
    },
    /// The requested address is not page-aligned.
    Misaligned {
        /// The requested address.
        addr: usize,
    },
    /// A writable mapping was requested through a file descriptor opened read-only.
    ReadOnlyDescriptor,
    /// The kernel refused the mapping.
    Io(std::io::Error),
}

impl fmt::Display for MapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MapError::AddressInUse { addr } => write!(
                f,
                "address {addr:#x} is already in use in this process; choose another base address"
            ),
            MapError::Misaligned { addr } => {
                write!(f, "address {addr:#x} is not page-aligned (4096)")
            }
            MapError::ReadOnlyDescriptor => write!(
                f,
                "the segment was received read-only or is frozen; it can only be mapped with Protection::ReadOnly"
            ),
            MapError::Io(e) => write!(f, "mmap failed: {e}"),
        }
    }
}

impl std::error::Error for MapError {}

/// A live mapping of a file range; unmapped (or re-reserved) on drop.
pub struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
    on_drop: OnDrop,
}

// SAFETY: a Mapping is a range of shared memory owned by this value; moving the owner to
// another thread does not change which process it belongs to, and Mapping itself gives
// no unsynchronised access (callers go through raw pointers and their own protocols).
unsafe impl Send for Mapping {}
// SAFETY: shared references to a Mapping only expose its address and length.
unsafe impl Sync for Mapping {}

impl fmt::Debug for Mapping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mapping")
            .field("addr", &format_args!("{:#x}", self.ptr.as_ptr() as usize))
            .field("len", &self.len)
            .finish()
    }
}

pub(crate) const PAGE: usize = 4096;

impl Mapping {
    /// Maps `len` bytes of `fd` starting at file `offset` (page-aligned) with MAP_SHARED.
    pub(crate) fn map(
        fd: BorrowedFd<'_>,
        offset: usize,
        len: usize,
        protection: Protection,
        placement: Placement,
    ) -> Result<Mapping, MapError> {
        let (hint, extra) = match placement {
            Placement::Anywhere => (std::ptr::null_mut(), 0),
            Placement::FixedNoReplace(addr) => {
                if addr % PAGE != 0 || addr == 0 {
                    return Err(MapError::Misaligned { addr });
                }
                (addr as *mut libc::c_void, libc::MAP_FIXED_NOREPLACE)
            }
        };
        // SAFETY: mapping a new range cannot alias Rust-owned memory: either the kernel
        // picks a free range, or MAP_FIXED_NOREPLACE refuses to replace anything mapped.
        let p = unsafe {
            libc::mmap(
                hint,
                len,
                protection.prot_flags(),
                libc::MAP_SHARED | extra,
                fd.as_raw_fd(),
                offset as libc::off_t,
            )
        };
        if p == libc::MAP_FAILED {
            let e = std::io::Error::last_os_error();
            return Err(match (e.raw_os_error(), placement) {
                (Some(libc::EEXIST), Placement::FixedNoReplace(addr)) => {
                    MapError::AddressInUse { addr }
                }
                // EACCES: opened O_RDONLY; EPERM: sealed F_SEAL_FUTURE_WRITE (frozen).
                (Some(libc::EACCES | libc::EPERM), _) if protection == Protection::ReadWrite => {
                    MapError::ReadOnlyDescriptor
                }
                _ => MapError::Io(e),
            });
        }
        let mapping = Mapping {
            ptr: NonNull::new(p.cast()).ok_or(MapError::Io(std::io::Error::other("null map")))?,
            len,
            on_drop: OnDrop::Unmap,
        };
        if let Placement::FixedNoReplace(addr) = placement {
            // Kernels older than 4.17 treat the flag as a hint; never accept another address.
            if p as usize != addr {
                drop(mapping);
                return Err(MapError::AddressInUse { addr });
            }
        }
        Ok(mapping)
    }

    /// Maps `len` bytes of `fd` at `addr` with MAP_FIXED, replacing what was there; on drop
    /// the range goes back to a PROT_NONE reservation.
    ///
    /// # Safety
    ///
    /// `addr..addr+len` must be a page-aligned range that the caller owns as a PROT_NONE
    /// reservation (a window's free slot) and that no Rust object points into.
    pub(crate) unsafe fn map_over_reservation(
        fd: BorrowedFd<'_>,
        offset: usize,
        addr: usize,
        len: usize,
        protection: Protection,
    ) -> Result<Mapping, MapError> {
        // SAFETY: the caller guarantees the range is a reservation it owns, so replacing
        // it with MAP_FIXED destroys nothing anybody else uses.
        let p = unsafe {
            libc::mmap(
                addr as *mut libc::c_void,
                len,
                protection.prot_flags(),
                libc::MAP_SHARED | libc::MAP_FIXED,
                fd.as_raw_fd(),
                offset as libc::off_t,
            )
        };
        if p == libc::MAP_FAILED {
            let e = std::io::Error::last_os_error();
            // A failed MAP_FIXED may have left a hole: put the reservation back.
            reserve_fixed(addr, len);
            return Err(match e.raw_os_error() {
                Some(libc::EACCES | libc::EPERM) if protection == Protection::ReadWrite => {
                    MapError::ReadOnlyDescriptor
                }
                _ => MapError::Io(e),
            });
        }
        Ok(Mapping {
            ptr: NonNull::new(p.cast()).ok_or(MapError::Io(std::io::Error::other("null map")))?,
            len,
            on_drop: OnDrop::Reserve,
        })
    }

    /// The first byte of the mapping.
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// The mapped length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the mapping is empty (never true: zero-length mappings are refused).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Replaces `addr..addr+len` with an inaccessible anonymous reservation.
pub(crate) fn reserve_fixed(addr: usize, len: usize) -> bool {
    // SAFETY: only called on ranges this crate owns (a window's slots); MAP_FIXED over them
    // removes a mapping we are discarding anyway and keeps the range reserved.
    let p = unsafe {
        libc::mmap(
            addr as *mut libc::c_void,
            len,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    p != libc::MAP_FAILED
}

impl Drop for Mapping {
    fn drop(&mut self) {
        match self.on_drop {
            OnDrop::Unmap => {
                // SAFETY: the range was mapped by this value and is unmapped exactly once;
                // borrows of it (guards) cannot outlive the Mapping.
                unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
            }
            OnDrop::Reserve => {
                reserve_fixed(self.ptr.as_ptr() as usize, self.len);
            }
        }
    }
}
