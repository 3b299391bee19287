//! The memory mapping of a node: the shared region at the cluster-wide fixed address, with the
//! coherence state of each page reflected in what application threads may do with it.
//!
//! The region is a memfd mapped twice. Application threads use the *application view*, at the
//! same address on every node, whose per-page access follows the coherence protocol. The
//! runtime moves page contents through the *fill view*, a private writable mapping of the same
//! memfd that is never handed out, or with `UFFDIO_COPY`; in both cases a page becomes visible
//! to application threads only once it is complete, so no thread ever reads a half-written page.
//!
//! How access is enforced depends on the fault backend:
//! - [`Backend::Sigsegv`]: the application view's protection per page (`mprotect`): none,
//!   read-only, read-write; the fill view is written while the page is inaccessible.
//! - [`Backend::Uffd`]: the application view is registered with userfaultfd (missing and
//!   write-protect modes). A page without access has no backing page (its hole is punched, its
//!   last contents kept aside for the runtime), so any access is a missing fault; a read-only
//!   page is write-protected; installing a page is one `UFFDIO_COPY`, which fills and maps it
//!   atomically.
//!
//! ```no_run
//! use memlink_dsm::mapping::{Mapping, DEFAULT_BASE};
//! use memlink_dsm::{Access, Backend, LocalPages, PAGE_SIZE};
//!
//! let mapping = Mapping::create(DEFAULT_BASE, 16, Backend::Sigsegv).unwrap();
//! mapping.install_page(3, &[7u8; PAGE_SIZE], Access::Read);
//! // Page 3 is now readable at the same address on every node that installed it.
//! let byte = unsafe { *mapping.base().add(3 * PAGE_SIZE) };
//! assert_eq!(byte, 7);
//! ```

mod page_table;
mod region;

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::fault::userfaultfd::Userfaultfd;
use crate::types::{Access, Backend, LocalPages, PAGE_SIZE, PageNo};
use page_table::PageTable;
use region::Region;

/// The default address of the shared region on every node: high in the 47-bit user address
/// space, far from where Linux places heaps, stacks, libraries and executables.
/// Override it with [`Mapping::create`]'s `base` or the `MEMLINK_DSM_BASE` environment
/// variable (hexadecimal, read by [`base_from_env`]).
pub const DEFAULT_BASE: usize = 0x3d5a_0000_0000;

/// The region base: `MEMLINK_DSM_BASE` (hex, with or without `0x`) if set and valid, else
/// [`DEFAULT_BASE`].
pub fn base_from_env() -> Result<usize, MapError> {
    match std::env::var("MEMLINK_DSM_BASE") {
        Err(_) => Ok(DEFAULT_BASE),
        Ok(text) => {
            let digits = text.trim().trim_start_matches("0x");
            usize::from_str_radix(digits, 16).map_err(|_| MapError::BadBase { text })
        }
    }
}

/// Why the shared region could not be mapped.
#[derive(Debug)]
pub enum MapError {
    /// Something is already mapped in the region's address range on this node.
    AddressInUse {
        /// The requested base address.
        base: usize,
        /// The region's length in bytes.
        len: usize,
    },
    /// The base address is zero or not page-aligned.
    Misaligned {
        /// The requested base address.
        base: usize,
    },
    /// `MEMLINK_DSM_BASE` is not a hexadecimal address.
    BadBase {
        /// The variable's text.
        text: String,
    },
    /// A region of zero pages.
    Empty,
    /// memfd_create or ftruncate failed.
    Memfd(io::Error),
    /// mmap failed for another reason than a clash.
    Map(io::Error),
    /// userfaultfd could not be opened, negotiated or registered.
    Userfaultfd(io::Error),
}

impl fmt::Display for MapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MapError::AddressInUse { base, len } => write!(
                f,
                "the DSM region {base:#x}..{:#x} clashes with an existing mapping in this \
                 process; choose another base with MEMLINK_DSM_BASE (the same on every node)",
                base + len
            ),
            MapError::Misaligned { base } => write!(
                f,
                "the DSM region base {base:#x} must be non-zero and a multiple of {PAGE_SIZE}"
            ),
            MapError::BadBase { text } => write!(
                f,
                "MEMLINK_DSM_BASE={text:?} is not a hexadecimal address (e.g. 0x3d5a00000000)"
            ),
            MapError::Empty => write!(f, "the DSM region needs at least one page"),
            MapError::Memfd(e) => write!(f, "cannot create the region's memfd: {e}"),
            MapError::Map(e) => write!(f, "cannot map the DSM region: {e}"),
            MapError::Userfaultfd(e) => write!(
                f,
                "userfaultfd is not usable here ({e}); run `memlink doctor`, or use \
                 --backend sigsegv"
            ),
        }
    }
}

impl std::error::Error for MapError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            MapError::Memfd(e) | MapError::Map(e) | MapError::Userfaultfd(e) => Some(e),
            _ => None,
        }
    }
}

/// Number of locks that serialise changes to pages (page `p` uses lock `p % STRIPES`).
const STRIPES: usize = 64;

/// A page of zeros: the contents of a page that was never written.
static ZERO_PAGE: [u8; PAGE_SIZE] = [0; PAGE_SIZE];

/// The shared region of one node and the access of each of its pages. Implements
/// [`LocalPages`] for the node runtime.
pub struct Mapping {
    region: Region,
    table: PageTable,
    uffd: Option<Arc<Userfaultfd>>,
    backend: Backend,
    stripes: Box<[Mutex<()>]>,
    /// userfaultfd: the contents of pages invalidated here (their backing page is gone), kept
    /// because the runtime may still read them (to send them on) or re-enable them.
    stash: Mutex<HashMap<PageNo, Box<[u8]>>>,
    /// SIGSEGV backend: per page, whether its application view shows a file's page
    /// ([`LocalPages::map_file_run`]) instead of the memfd's; changed under the page's stripe
    /// lock.
    direct: Box<[AtomicBool]>,
}

impl fmt::Debug for Mapping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mapping")
            .field("base", &self.region.app_base())
            .field("pages", &self.pages())
            .field("backend", &self.backend)
            .finish()
    }
}

impl Mapping {
    /// Maps a region of `pages` pages at `base` for `backend`, every page without access
    /// (and, for userfaultfd, without contents: the first access of any page faults).
    pub fn create(base: usize, pages: u32, backend: Backend) -> Result<Arc<Mapping>, MapError> {
        let (region, uffd) = match backend {
            Backend::Sigsegv => (Region::create(base, pages, libc::PROT_NONE)?, None),
            Backend::Uffd => {
                let uffd = Userfaultfd::open().map_err(MapError::Userfaultfd)?;
                let region = Region::create(base, pages, libc::PROT_READ | libc::PROT_WRITE)?;
                uffd.register(region.app_base() as usize, region.len())
                    .map_err(MapError::Userfaultfd)?;
                (region, Some(Arc::new(uffd)))
            }
        };
        Ok(Arc::new(Mapping {
            region,
            table: PageTable::new(pages),
            uffd,
            backend,
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
            stash: Mutex::new(HashMap::new()),
            direct: (0..pages).map(|_| AtomicBool::new(false)).collect(),
        }))
    }

    /// The start of the region: the same address on every node of the cluster.
    pub fn base(&self) -> *mut u8 {
        self.region.app_base()
    }

    /// The region's length in bytes.
    pub fn len(&self) -> usize {
        self.region.len()
    }

    /// Always false: a region has at least one page.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The number of pages in the region.
    pub fn pages(&self) -> u32 {
        self.table.pages()
    }

    /// The bytes of memory the region's pages take on this node now (pages filled and not
    /// released since; with userfaultfd, not counting the contents it keeps aside for the
    /// runtime).
    pub fn resident_bytes(&self) -> io::Result<u64> {
        self.region.resident_bytes()
    }

    /// The fault backend this mapping was made for.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The page that holds `addr`, if `addr` is inside the region.
    pub fn page_of(&self, addr: usize) -> Option<PageNo> {
        let base = self.region.app_base() as usize;
        if addr >= base && addr < base + self.region.len() {
            Some(((addr - base) / PAGE_SIZE) as PageNo)
        } else {
            None
        }
    }

    /// What application threads may currently do with `page` (async-signal-safe: one atomic
    /// load). A page outside the region reads as [`Access::None`].
    pub fn access(&self, page: PageNo) -> Access {
        self.table.access(page)
    }

    /// The userfaultfd this mapping is registered with (userfaultfd backend only).
    pub(crate) fn userfaultfd(&self) -> Option<&Arc<Userfaultfd>> {
        self.uffd.as_ref()
    }

    fn in_range(&self, page: PageNo) -> bool {
        page < self.pages()
    }

    fn lock(&self, page: PageNo) -> std::sync::MutexGuard<'_, ()> {
        // A poisoned stripe only means another thread panicked while holding it; the page
        // table is updated last, so the state it records is still the kernel's state.
        self.stripes[page as usize % STRIPES]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Every stripe lock, in order (a run may span them all; single-page changes take one,
    /// so taking them in order cannot deadlock).
    fn lock_all(&self) -> Vec<std::sync::MutexGuard<'_, ()>> {
        self.stripes
            .iter()
            .map(|m| m.lock().unwrap_or_else(|p| p.into_inner()))
            .collect()
    }

    /// Whether the run of `count` pages from `first` lies inside the region.
    fn run_in_range(&self, first: PageNo, count: usize) -> bool {
        (first as usize)
            .checked_add(count)
            .is_some_and(|end| end <= self.pages() as usize)
    }

    fn prot(access: Access) -> libc::c_int {
        match access {
            Access::None => libc::PROT_NONE,
            Access::Read => libc::PROT_READ,
            Access::Write => libc::PROT_READ | libc::PROT_WRITE,
        }
    }

    /// Whether `page` shows a file's page ([`LocalPages::map_file_run`]).
    fn is_direct(&self, page: PageNo) -> bool {
        self.direct
            .get(page as usize)
            .is_some_and(|d| d.load(Ordering::Relaxed))
    }

    /// Give every page of the run from `first` that shows a file's page its own memory back
    /// (the caller holds the pages' stripe locks). With `keep`, the file's bytes are copied
    /// into the memfd first and the page stays readable, unchanged to the application;
    /// without, it has no access afterwards (it is about to be released or filled).
    fn undirect_run(&self, first: PageNo, count: u32, keep: bool) -> io::Result<()> {
        let end = first.saturating_add(count).min(self.pages());
        let mut p = first;
        while p < end {
            if !self.is_direct(p) {
                p += 1;
                continue;
            }
            let start = p;
            while p < end && self.is_direct(p) {
                p += 1;
            }
            let n = (p - start) as usize;
            if keep {
                // SAFETY: the application view of these pages maps the file read-only and
                // readable (map_file_run checked the run lies inside it); the fill view is
                // our own read-write memfd mapping, a distinct range; the stripe locks keep
                // every other change of these pages out meanwhile.
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        self.region.app_page(start as usize),
                        self.region.fill_page(start as usize),
                        n * PAGE_SIZE,
                    )
                };
            }
            let prot = if keep {
                libc::PROT_READ
            } else {
                libc::PROT_NONE
            };
            self.region.remap(start as usize, n, prot)?;
            for q in start..p {
                self.direct[q as usize].store(false, Ordering::Relaxed);
                if !keep {
                    self.table.set(q, Access::None, true);
                }
            }
        }
        Ok(())
    }

    fn stash(&self) -> std::sync::MutexGuard<'_, HashMap<PageNo, Box<[u8]>>> {
        self.stash.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// userfaultfd: drops the backing page of `page`, keeping its contents in the stash.
    fn uffd_discard(&self, uffd: &Userfaultfd, page: PageNo) -> io::Result<()> {
        if self.table.access(page) == Access::Write {
            // Stop application writes before taking the copy, or a write landing between the
            // copy and the hole punch would be lost (they fault and wait from now on).
            let addr = self.region.app_page(page as usize) as usize;
            uffd.write_protect(addr, PAGE_SIZE, true)?;
        }
        let mut copy = vec![0u8; PAGE_SIZE].into_boxed_slice();
        let src = self.region.fill_page(page as usize);
        // SAFETY: the page is present (it has a backing page), so reading it through the fill
        // view maps that page and creates nothing; the caller holds the page's stripe lock.
        unsafe { std::ptr::copy_nonoverlapping(src, copy.as_mut_ptr(), PAGE_SIZE) };
        self.stash().insert(page, copy);
        self.table.set(page, Access::None, false);
        self.region.discard(page as usize)
    }

    /// userfaultfd: maps `data` at `page` in one step (the page must have no backing page).
    fn uffd_fill(
        &self,
        uffd: &Userfaultfd,
        page: PageNo,
        data: &[u8],
        access: Access,
    ) -> io::Result<()> {
        let dst = self.region.app_page(page as usize) as usize;
        let wp = access == Access::Read;
        // Recorded before the copy wakes the faulting threads, so that they see it.
        self.table.set(page, access, true);
        let copied = match uffd.copy(dst, data, wp) {
            // EEXIST: a backing page appeared (only a kernel-side access could do that):
            // drop it and fill again.
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => self
                .region
                .discard(page as usize)
                .and_then(|()| uffd.copy(dst, data, wp)),
            other => other,
        };
        if copied.is_err() {
            // Nothing was mapped: the page stays missing, as the table must say.
            self.table.set(page, Access::None, false);
        }
        copied
    }
}

impl LocalPages for Mapping {
    fn read_page(&self, page: PageNo, out: &mut [u8]) {
        let len = out.len().min(PAGE_SIZE);
        if !self.in_range(page) {
            out[..len].fill(0);
            return;
        }
        let _guard = self.lock(page);
        if self.backend == Backend::Uffd && !self.table.present(page) {
            // No backing page: the contents are the stashed ones, or zero (never written).
            // Reading the fill view would create a backing page behind userfaultfd's back.
            match self.stash().get(&page) {
                Some(saved) => out[..len].copy_from_slice(&saved[..len]),
                None => out[..len].copy_from_slice(&ZERO_PAGE[..len]),
            }
            return;
        }
        // A page that shows a file's page has its contents there (readable in the
        // application view), not in the memfd.
        let src = if self.is_direct(page) {
            self.region.app_page(page as usize)
        } else {
            self.region.fill_page(page as usize)
        };
        // SAFETY: `src` is the start of page `page` in the fill view, mapped read-write for the
        // mapping's lifetime, or in the application view while it maps the file's page
        // readable (the stripe lock keeps it so); `len <= PAGE_SIZE`; `out` is a distinct,
        // live buffer.
        unsafe { std::ptr::copy_nonoverlapping(src, out.as_mut_ptr(), len) };
    }

    fn install_page(&self, page: PageNo, data: &[u8], access: Access) -> io::Result<()> {
        if !self.in_range(page) {
            return Ok(());
        }
        let len = data.len().min(PAGE_SIZE);
        let _guard = self.lock(page);
        match &self.uffd {
            None => {
                self.undirect_run(page, 1, false)?;
                if self.table.access(page) != Access::None {
                    // No application thread may see the page while it is being filled.
                    self.region.protect(page as usize, libc::PROT_NONE)?;
                }
                let dst = self.region.fill_page(page as usize);
                // SAFETY: `dst` is page `page` in the fill view (read-write); the application
                // view of this page is PROT_NONE, so no thread reads it during the copy;
                // `data` is a live slice of at least `len` bytes.
                unsafe {
                    std::ptr::copy_nonoverlapping(data.as_ptr(), dst, len);
                    std::ptr::write_bytes(dst.add(len), 0, PAGE_SIZE - len);
                }
                self.table.set(page, access, true);
                let protected = self.region.protect(page as usize, Self::prot(access));
                if protected.is_err() {
                    self.table.set(page, Access::None, true);
                }
                protected
            }
            Some(uffd) => {
                if self.table.present(page) {
                    self.table.set(page, Access::None, false);
                    self.region.discard(page as usize)?;
                }
                self.stash().remove(&page);
                if access == Access::None {
                    let mut saved = vec![0u8; PAGE_SIZE].into_boxed_slice();
                    saved[..len].copy_from_slice(&data[..len]);
                    self.stash().insert(page, saved);
                    return Ok(());
                }
                if len == PAGE_SIZE {
                    self.uffd_fill(uffd, page, data, access)
                } else {
                    let mut full = [0u8; PAGE_SIZE];
                    full[..len].copy_from_slice(&data[..len]);
                    self.uffd_fill(uffd, page, &full, access)
                }
            }
        }
    }

    /// No access, and the memory behind the page goes back to the system: its page of the
    /// memfd is punched out (and, for userfaultfd, its kept contents dropped), so a node
    /// under a memory budget really holds no more than its frames.
    fn release_page(&self, page: PageNo) -> io::Result<()> {
        if !self.in_range(page) {
            return Ok(());
        }
        let _guard = self.lock(page);
        self.undirect_run(page, 1, false)?;
        if self.uffd.is_none() && self.table.access(page) != Access::None {
            self.region.protect(page as usize, libc::PROT_NONE)?;
        }
        // No access first, so that no thread reads the page while its memory goes.
        self.table.set(page, Access::None, false);
        self.stash().remove(&page);
        self.region.discard(page as usize)
    }

    /// The SIGSEGV backend fills the whole run through the memfd (one `pwrite`) while its
    /// pages are inaccessible, then opens them with one `mprotect`; userfaultfd goes page
    /// by page.
    fn install_run(&self, first: PageNo, data: &[u8], access: Access) -> io::Result<()> {
        let count = data.len() / PAGE_SIZE;
        if self.uffd.is_some()
            || count * PAGE_SIZE != data.len()
            || !self.run_in_range(first, count)
        {
            for (i, contents) in data.chunks(PAGE_SIZE).enumerate() {
                self.install_page(first.saturating_add(i as PageNo), contents, access)?;
            }
            return Ok(());
        }
        let _guards = self.lock_all();
        self.undirect_run(first, count as u32, false)?;
        let pages = first..first + count as PageNo;
        if pages.clone().any(|p| self.table.access(p) != Access::None) {
            // No application thread may see a page while it is being filled.
            self.region
                .protect_run(first as usize, count, libc::PROT_NONE)?;
            for p in pages.clone() {
                self.table.set(p, Access::None, true);
            }
        }
        self.region.write_run(first as usize, data)?;
        // Recorded first, so that a thread woken by the change sees it.
        for p in pages.clone() {
            self.table.set(p, access, true);
        }
        let protected = self
            .region
            .protect_run(first as usize, count, Self::prot(access));
        if protected.is_err() {
            for p in pages {
                self.table.set(p, Access::None, true);
            }
        }
        protected
    }

    /// SIGSEGV backend only (userfaultfd serves missing pages of its registered range, which
    /// a file mapping would leave): one `mmap` of the file over the run, whose pages must
    /// have no access now (they are being paged in).
    fn map_file_run(
        &self,
        first: PageNo,
        count: u32,
        file: BorrowedFd<'_>,
        offset: u64,
    ) -> io::Result<bool> {
        if self.uffd.is_some() || count == 0 || !self.run_in_range(first, count as usize) {
            return Ok(false);
        }
        let _guards = self.lock_all();
        let pages = first..first + count;
        if pages.clone().any(|p| self.table.access(p) != Access::None) {
            return Ok(false);
        }
        if let Err(e) = self
            .region
            .map_file(first as usize, count as usize, file, offset)
        {
            // The memfd's mapping of the run may be gone: put it back (no access, as the
            // table says) before failing.
            self.region
                .remap(first as usize, count as usize, libc::PROT_NONE)?;
            return Err(e);
        }
        // Recorded after the mapping exists, so that a thread that sees the access finds
        // the file's bytes.
        for p in pages {
            self.direct[p as usize].store(true, Ordering::Relaxed);
            self.table.set(p, Access::Read, true);
        }
        Ok(true)
    }

    /// No access for the whole run and its memory returned, in one `mprotect` and one hole
    /// punch.
    fn release_run(&self, first: PageNo, count: u32) -> io::Result<()> {
        if !self.run_in_range(first, count as usize) {
            return Ok(());
        }
        let _guards = self.lock_all();
        self.undirect_run(first, count, false)?;
        let pages = first..first + count;
        if self.uffd.is_none() && pages.clone().any(|p| self.table.access(p) != Access::None) {
            self.region
                .protect_run(first as usize, count as usize, libc::PROT_NONE)?;
        }
        let mut stash = self.stash();
        for p in pages {
            self.table.set(p, Access::None, false);
            stash.remove(&p);
        }
        drop(stash);
        self.region.discard_run(first as usize, count as usize)
    }

    fn set_access(&self, page: PageNo, access: Access) -> io::Result<()> {
        if !self.in_range(page) {
            return Ok(());
        }
        let _guard = self.lock(page);
        match &self.uffd {
            None => {
                if self.is_direct(page) {
                    if access == Access::Read {
                        return Ok(());
                    }
                    // Write access, or none with the contents kept (an eviction under way, a
                    // fence): the page needs its own memory, with the file's bytes in it.
                    self.undirect_run(page, 1, true)?;
                }
                let current = self.table.access(page);
                if access > current {
                    // Recorded first, so that a thread woken by the change sees it.
                    self.table.set(page, access, true);
                    let protected = self.region.protect(page as usize, Self::prot(access));
                    if protected.is_err() {
                        self.table.set(page, current, true);
                    }
                    protected
                } else if access < current {
                    self.region.protect(page as usize, Self::prot(access))?;
                    self.table.set(page, access, true);
                    Ok(())
                } else {
                    Ok(())
                }
            }
            Some(uffd) => {
                let present = self.table.present(page);
                match access {
                    Access::None if present => self.uffd_discard(uffd, page),
                    Access::None => Ok(()),
                    Access::Read | Access::Write if !present => {
                        // Its contents are the stashed ones, or the initial zeros.
                        let saved = self.stash().remove(&page);
                        let data = saved.as_deref().unwrap_or(&ZERO_PAGE);
                        self.uffd_fill(uffd, page, data, access)
                    }
                    Access::Read | Access::Write => {
                        let addr = self.region.app_page(page as usize) as usize;
                        let current = self.table.access(page);
                        if access > current {
                            // Recorded before lifting the protection wakes the faulting thread.
                            self.table.set(page, access, true);
                        }
                        match uffd.write_protect(addr, PAGE_SIZE, access == Access::Read) {
                            Ok(()) => {
                                self.table.set(page, access, true);
                                Ok(())
                            }
                            Err(e) => {
                                self.table.set(page, current, true);
                                Err(e)
                            }
                        }
                    }
                }
            }
        }
    }
}
