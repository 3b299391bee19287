//! The raw memory of a node: a memfd of the region's size, mapped twice. The application
//! view sits at the cluster-wide fixed address (reserved with `MAP_FIXED_NOREPLACE`, so a clash
//! is an error, never a silent move); the fill view sits wherever the kernel likes, is always
//! writable, and is never handed out.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use super::MapError;
use crate::types::PAGE_SIZE;

/// The memfd and its two mappings. Unmapped on drop.
#[derive(Debug)]
pub(crate) struct Region {
    memfd: OwnedFd,
    app: *mut u8,
    fill: *mut u8,
    len: usize,
}

// SAFETY: Region only holds addresses of mappings it owns; every access through them is
// made by Mapping under its own per-page rules, from any thread.
unsafe impl Send for Region {}
// SAFETY: as above: the raw pointers are shared addresses, not exclusive borrows.
unsafe impl Sync for Region {}

impl Region {
    /// Creates the memfd and maps both views. The application view starts with `app_prot`.
    pub(crate) fn create(
        base: usize,
        pages: u32,
        app_prot: libc::c_int,
    ) -> Result<Region, MapError> {
        if pages == 0 {
            return Err(MapError::Empty);
        }
        if base % PAGE_SIZE != 0 || base == 0 {
            return Err(MapError::Misaligned { base });
        }
        let len = pages as usize * PAGE_SIZE;
        // SAFETY: the name is a NUL-terminated literal; memfd_create has no other inputs.
        let raw = unsafe { libc::memfd_create(c"memlink-dsm".as_ptr(), libc::MFD_CLOEXEC) };
        if raw < 0 {
            return Err(MapError::Memfd(io::Error::last_os_error()));
        }
        // SAFETY: raw is a fresh fd that nothing else owns.
        let memfd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: ftruncate on our own memfd; the size fits in off_t (checked by the kernel).
        if unsafe { libc::ftruncate(memfd.as_raw_fd(), len as libc::off_t) } < 0 {
            return Err(MapError::Memfd(io::Error::last_os_error()));
        }
        // SAFETY: MAP_FIXED_NOREPLACE never replaces an existing mapping: it fails with EEXIST
        // instead, so no memory of ours can be clobbered.
        let app = unsafe {
            libc::mmap(
                base as *mut libc::c_void,
                len,
                app_prot,
                libc::MAP_SHARED | libc::MAP_FIXED_NOREPLACE,
                memfd.as_raw_fd(),
                0,
            )
        };
        if app == libc::MAP_FAILED {
            let e = io::Error::last_os_error();
            return Err(if e.raw_os_error() == Some(libc::EEXIST) {
                MapError::AddressInUse { base, len }
            } else {
                MapError::Map(e)
            });
        }
        if app as usize != base {
            // An old kernel that ignores MAP_FIXED_NOREPLACE gave us another address.
            // SAFETY: `app` is the mapping of `len` bytes just made; nothing refers to it.
            unsafe { libc::munmap(app, len) };
            return Err(MapError::AddressInUse { base, len });
        }
        // SAFETY: a shared mapping of our memfd at an address of the kernel's choosing.
        let fill = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                memfd.as_raw_fd(),
                0,
            )
        };
        if fill == libc::MAP_FAILED {
            let e = io::Error::last_os_error();
            // SAFETY: `app` is our mapping of `len` bytes; nothing refers to it yet.
            unsafe { libc::munmap(app, len) };
            return Err(MapError::Map(e));
        }
        Ok(Region {
            memfd,
            app: app.cast(),
            fill: fill.cast(),
            len,
        })
    }

    /// The application view's address of page `page`.
    pub(crate) fn app_page(&self, page: usize) -> *mut u8 {
        debug_assert!((page + 1) * PAGE_SIZE <= self.len);
        self.app.wrapping_add(page * PAGE_SIZE)
    }

    /// The fill view's address of page `page`.
    pub(crate) fn fill_page(&self, page: usize) -> *mut u8 {
        debug_assert!((page + 1) * PAGE_SIZE <= self.len);
        self.fill.wrapping_add(page * PAGE_SIZE)
    }

    /// The start of the application view.
    pub(crate) fn app_base(&self) -> *mut u8 {
        self.app
    }

    /// The length of each view in bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Sets the protection of one page of the application view. On our own, page-aligned,
    /// mapped range mprotect fails only with ENOMEM: the split would pass the process's
    /// mapping limit (`vm.max_map_count`) or the kernel is out of memory.
    pub(crate) fn protect(&self, page: usize, prot: libc::c_int) -> io::Result<()> {
        // SAFETY: the page lies inside our application view; changing its protection cannot
        // invalidate Rust references because the view is only reached through raw pointers.
        let rc = unsafe { libc::mprotect(self.app_page(page).cast(), PAGE_SIZE, prot) };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    /// Sets the protection of the `count` pages from `first` of the application view, in
    /// one call (fails as [`Region::protect`]).
    pub(crate) fn protect_run(
        &self,
        first: usize,
        count: usize,
        prot: libc::c_int,
    ) -> io::Result<()> {
        debug_assert!((first + count) * PAGE_SIZE <= self.len);
        // SAFETY: as in `protect`, for a run of whole pages inside the application view.
        let rc = unsafe { libc::mprotect(self.app_page(first).cast(), count * PAGE_SIZE, prot) };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    /// Maps `count` pages of `file` from byte `offset` (page-aligned) read-only over the
    /// application view from page `first` on, in one `mmap` (`MAP_FIXED` replaces the
    /// memfd's mapping of those pages): the application reads the file's page cache itself.
    /// Fails as mmap does (EACCES for a file not open for reading, ENOMEM at the mapping
    /// limit); on failure the old mapping may be gone, so the caller gives the pages their
    /// memfd mapping back ([`Region::remap`]).
    pub(crate) fn map_file(
        &self,
        first: usize,
        count: usize,
        file: BorrowedFd<'_>,
        offset: u64,
    ) -> io::Result<()> {
        debug_assert!((first + count) * PAGE_SIZE <= self.len);
        let offset = libc::off_t::try_from(offset)
            .map_err(|_| io::Error::from_raw_os_error(libc::EOVERFLOW))?;
        // SAFETY: MAP_FIXED over whole pages of our own application view, which is only ever
        // reached through raw pointers (no Rust reference into it is invalidated); the new
        // mapping is read-only and shared, so nothing written through it can exist.
        let at = unsafe {
            libc::mmap(
                self.app_page(first).cast(),
                count * PAGE_SIZE,
                libc::PROT_READ,
                libc::MAP_SHARED | libc::MAP_FIXED,
                file.as_raw_fd(),
                offset,
            )
        };
        if at == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Maps the memfd's own pages back over the application view from page `first` on,
    /// with `prot`, in one `mmap` (undoing [`Region::map_file`]).
    pub(crate) fn remap(&self, first: usize, count: usize, prot: libc::c_int) -> io::Result<()> {
        debug_assert!((first + count) * PAGE_SIZE <= self.len);
        // SAFETY: as in `map_file`: MAP_FIXED over whole pages of our application view, this
        // time with the memfd at the same offsets as the view's original mapping.
        let at = unsafe {
            libc::mmap(
                self.app_page(first).cast(),
                count * PAGE_SIZE,
                prot,
                libc::MAP_SHARED | libc::MAP_FIXED,
                self.memfd.as_raw_fd(),
                (first * PAGE_SIZE) as libc::off_t,
            )
        };
        if at == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Writes `data` into the memfd from page `first` on (`pwrite`: the kernel allocates
    /// and fills the pages without a fault per page in either view).
    pub(crate) fn write_run(&self, first: usize, data: &[u8]) -> io::Result<()> {
        debug_assert!(first * PAGE_SIZE + data.len() <= self.len);
        let mut done = 0;
        while done < data.len() {
            let rest = &data[done..];
            // SAFETY: pwrite reads `rest.len()` bytes of a live slice and writes into our own
            // memfd inside its size (checked by the caller); it touches no mapping's memory.
            let n = unsafe {
                libc::pwrite(
                    self.memfd.as_raw_fd(),
                    rest.as_ptr().cast(),
                    rest.len(),
                    (first * PAGE_SIZE + done) as libc::off_t,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "the region's memfd took no bytes",
                ));
            }
            done += n as usize;
        }
        Ok(())
    }

    /// The bytes of memory the memfd holds now (its allocated blocks): the pages that were
    /// filled and not punched out since.
    pub(crate) fn resident_bytes(&self) -> io::Result<u64> {
        // SAFETY: an all-zero stat is a valid value; fstat fills it.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: fstat on our own open memfd, writing into a live stat.
        if unsafe { libc::fstat(self.memfd.as_raw_fd(), &mut st) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(st.st_blocks as u64 * 512)
    }

    /// Drops the backing page of `page` from the memfd, so that the next access to the
    /// application view is a missing-page fault (userfaultfd's invalidation).
    pub(crate) fn discard(&self, page: usize) -> io::Result<()> {
        self.discard_run(page, 1)
    }

    /// [`Region::discard`] for the `count` pages from `first`, in one call.
    pub(crate) fn discard_run(&self, first: usize, count: usize) -> io::Result<()> {
        // SAFETY: fallocate punches a hole inside our own memfd; every mapping of that page
        // (both views) is zapped by the kernel and refaults.
        let punch = || unsafe {
            libc::fallocate(
                self.memfd.as_raw_fd(),
                libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                (first * PAGE_SIZE) as libc::off_t,
                (count * PAGE_SIZE) as libc::off_t,
            )
        };
        let mut rc = punch();
        while rc != 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
            rc = punch();
        }
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: both views are ours, `len` bytes each; the Mapping that owns this Region is
        // being dropped, so no fault service or runtime uses them any more.
        unsafe {
            libc::munmap(self.app.cast(), self.len);
            libc::munmap(self.fill.cast(), self.len);
        }
    }
}
