//! The backing store: where a node puts the only copy of a page nobody has room for, and
//! where it gets it back when the page is wanted again (the seed's "disk as the ultimate
//! repository for pages nobody wants").
//!
//! [`BackingStore`] is the seam: the node runtime only reads and writes whole pages through
//! it. [`FileStore`] is the default, one per node: an unnamed file (`O_TMPFILE`, gone when the
//! node exits, even when it is killed) of the region's size, mapped with memmap2; pages never
//! written read as zeros, which is what every page of a fresh region holds. It lives in
//! [`STORE_DIR_ENV`]'s directory, else the system's temporary directory; on a host whose
//! temporary directory is a tmpfs, point it at a disk, or the store takes memory too.

use std::fmt;
use std::fs::OpenOptions;
use std::io;
use std::os::fd::BorrowedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use memmap2::MmapMut;

use crate::types::{PAGE_SIZE, PageNo};

/// The environment variable naming the directory of every node's [`FileStore`].
pub const STORE_DIR_ENV: &str = "MEMLINK_DSM_STORE_DIR";

/// Why the backing store failed.
#[derive(Debug)]
pub enum StoreError {
    /// The store's file could not be created, sized or mapped.
    Create {
        /// The directory it was to live in.
        dir: PathBuf,
        /// What the system said.
        error: io::Error,
    },
    /// The pager behind the store failed.
    Pager(String),
    /// The pager behind the store is gone: its process died or closed the connection.
    PagerLost {
        /// The pager's name.
        pager: String,
        /// What was seen.
        reason: String,
    },
    /// The pager behind the store did not answer a call in time.
    PagerTimeout {
        /// The pager's name.
        pager: String,
        /// How long the node waited.
        after: std::time::Duration,
    },
    /// A page outside the store (the region is larger than the store was made for).
    OutOfRange {
        /// The page.
        page: PageNo,
        /// The pages the store holds.
        pages: u32,
    },
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Create { dir, error } => write!(
                f,
                "cannot make the backing store for paged-out pages in {}: {error}; set \
                 {STORE_DIR_ENV} to a writable directory with room for the region",
                dir.display()
            ),
            StoreError::Pager(e) => write!(f, "{e}"),
            StoreError::PagerLost { pager, reason } => {
                write!(f, "the pager {pager:?} is gone ({reason})")
            }
            StoreError::PagerTimeout { pager, after } => {
                write!(f, "the pager {pager:?} did not answer within {after:?}")
            }
            StoreError::OutOfRange { page, pages } => write!(
                f,
                "page {page} is outside the backing store of {pages} pages"
            ),
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StoreError::Create { error, .. } => Some(error),
            StoreError::OutOfRange { .. }
            | StoreError::Pager(_)
            | StoreError::PagerLost { .. }
            | StoreError::PagerTimeout { .. } => None,
        }
    }
}

/// Where written-back pages go. The node runtime owns one per node and calls it under its
/// state lock, so an implementation needs no locking of its own; it must answer promptly.
pub trait BackingStore: Send {
    /// Copy the stored contents of `page` into `out` (`PAGE_SIZE` bytes); a page never
    /// written reads as zeros.
    fn read_page(&mut self, page: PageNo, out: &mut [u8]) -> Result<(), StoreError>;
    /// Copy the stored contents of the run of pages from `first` into `out` (a multiple of
    /// `PAGE_SIZE` bytes): what a node reads ahead. The default reads page by page.
    fn read_run(&mut self, first: PageNo, out: &mut [u8]) -> Result<(), StoreError> {
        for (i, page) in out.chunks_mut(PAGE_SIZE).enumerate() {
            let p = u32::try_from(i)
                .ok()
                .and_then(|i| first.checked_add(i))
                .ok_or(StoreError::OutOfRange {
                    page: first,
                    pages: u32::MAX,
                })?;
            self.read_page(p, page)?;
        }
        Ok(())
    }
    /// The stored contents of the `len` bytes of pages from `first` in place, when the store
    /// keeps them mapped: the node copies them straight into its memory. `None` (the
    /// default): it calls [`BackingStore::read_run`] with a buffer.
    fn mapped_run(&mut self, first: PageNo, len: usize) -> Option<&[u8]> {
        let _ = (first, len);
        None
    }
    /// The file that holds the `len` bytes of pages from `first` (a multiple of
    /// `PAGE_SIZE`), and where in it they start, when the store is a file the node may map
    /// read-only in place of a copy (a file pager's): clean pages read ahead then show the
    /// file's page cache itself ([`crate::LocalPages::map_file_run`]). `None` (the default):
    /// the node copies them.
    fn mapped_file(&mut self, first: PageNo, len: usize) -> Option<(BorrowedFd<'_>, u64)> {
        let _ = (first, len);
        None
    }
    /// Store `data` (`PAGE_SIZE` bytes) as the contents of `page`.
    fn write_page(&mut self, page: PageNo, data: &[u8]) -> Result<(), StoreError>;
    /// Make the writes so far durable (the node is leaving).
    fn sync(&mut self) -> Result<(), StoreError> {
        Ok(())
    }
    /// `pager_data_unlock`: a local fault wants `access` to `page`, which the pager's
    /// `data_lock` forbids here. Returns the pager's answer, the page's lock from now on
    /// (at least `access` grants it). The default store never locks: it grants.
    fn data_unlock(
        &mut self,
        page: PageNo,
        access: crate::types::Access,
    ) -> Result<crate::types::Access, StoreError> {
        let _ = (page, access);
        Ok(crate::types::Access::Write)
    }
    /// Whether the store outlives the node (a pager's file): then the node, when it
    /// leaves, writes the pages it owns into it. The default store goes with the node.
    fn keeps_pages(&self) -> bool {
        false
    }
}

/// The default store: an unnamed file mapped into this process; see the module docs.
pub struct FileStore {
    map: MmapMut,
    pages: u32,
}

impl fmt::Debug for FileStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileStore")
            .field("pages", &self.pages)
            .finish()
    }
}

impl FileStore {
    /// A store of `pages` zero pages in [`STORE_DIR_ENV`]'s directory or the temporary one.
    pub fn create(pages: u32) -> Result<FileStore, StoreError> {
        let dir = std::env::var_os(STORE_DIR_ENV)
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        Self::create_in(&dir, pages)
    }

    /// A store of `pages` zero pages in `dir`.
    pub fn create_in(dir: &Path, pages: u32) -> Result<FileStore, StoreError> {
        let fail = |error| StoreError::Create {
            dir: dir.to_path_buf(),
            error,
        };
        // O_TMPFILE: a file without a name, so nothing is left behind, and no other
        // process can open it by path.
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_TMPFILE)
            .mode(0o600)
            .open(dir)
            .map_err(fail)?;
        let len = (pages.max(1) as u64) * PAGE_SIZE as u64;
        file.set_len(len).map_err(fail)?;
        // SAFETY: the file has no name and its descriptor is private to this process (and
        // closed on exec), so nothing else truncates or writes it while it is mapped; the
        // mapping is only reached through `read_page`/`write_page`, bounds-checked.
        let map = unsafe { MmapMut::map_mut(&file) }.map_err(fail)?;
        Ok(FileStore { map, pages })
    }

    fn range(&self, page: PageNo) -> Result<std::ops::Range<usize>, StoreError> {
        if page >= self.pages {
            return Err(StoreError::OutOfRange {
                page,
                pages: self.pages,
            });
        }
        let start = page as usize * PAGE_SIZE;
        Ok(start..start + PAGE_SIZE)
    }
}

impl BackingStore for FileStore {
    fn read_page(&mut self, page: PageNo, out: &mut [u8]) -> Result<(), StoreError> {
        let range = self.range(page)?;
        let len = out.len().min(PAGE_SIZE);
        out[..len].copy_from_slice(&self.map[range][..len]);
        Ok(())
    }

    fn read_run(&mut self, first: PageNo, out: &mut [u8]) -> Result<(), StoreError> {
        let pages = out.len().div_ceil(PAGE_SIZE);
        let last = u32::try_from(pages.saturating_sub(1))
            .ok()
            .and_then(|n| first.checked_add(n))
            .unwrap_or(u32::MAX);
        let start = self.range(first)?.start;
        self.range(last)?;
        out.copy_from_slice(&self.map[start..start + out.len()]);
        Ok(())
    }

    fn mapped_run(&mut self, first: PageNo, len: usize) -> Option<&[u8]> {
        let start = (first as usize).checked_mul(PAGE_SIZE)?;
        let end = start.checked_add(len)?;
        (end <= self.pages as usize * PAGE_SIZE).then(|| &self.map[start..end])
    }

    fn write_page(&mut self, page: PageNo, data: &[u8]) -> Result<(), StoreError> {
        let range = self.range(page)?;
        let len = data.len().min(PAGE_SIZE);
        let dst = &mut self.map[range];
        dst[..len].copy_from_slice(&data[..len]);
        dst[len..].fill(0);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_read_back_what_was_written_and_start_zero() {
        let mut store = FileStore::create(4).unwrap();
        let mut page = vec![1u8; PAGE_SIZE];
        store.read_page(3, &mut page).unwrap();
        assert!(page.iter().all(|&b| b == 0));
        store.write_page(2, &[7u8; PAGE_SIZE]).unwrap();
        store.read_page(2, &mut page).unwrap();
        assert!(page.iter().all(|&b| b == 7));
        assert!(matches!(
            store.write_page(4, &page),
            Err(StoreError::OutOfRange { page: 4, pages: 4 })
        ));
        let e = FileStore::create_in(Path::new("/nonexistent-memlink-dir"), 1).unwrap_err();
        assert!(e.to_string().contains(STORE_DIR_ENV), "{e}");
    }
}
