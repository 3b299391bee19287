//! [`FilePager`]: a file, or a range of it, as the contents of a run of region pages.

use std::fs::{File, OpenOptions};
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;

use memmap2::{MmapMut, MmapOptions};

use super::{Pager, PagerError, Supply};
use crate::types::{Access, PAGE_SIZE, PageNo};

/// A pager whose pages are a file's bytes: region page `first_page + i` is the file's page `i`
/// of the range mapped. Pages before `first_page` or past the range's end are unavailable
/// (zero); a write past the end is dropped (the file never grows); a last partial page reads
/// zero past the end. Pages named by [`FilePager::refuse_writes`] are the file's
/// read-only part: a node's `data_unlock` of one for writing is refused.
pub struct FilePager {
    map: MmapMut,
    /// The file opened again read-only, for [`Pager::data_mapped_file`]: a node maps it
    /// over its pages, and a mapping of a read-only descriptor can never be made writable,
    /// so no slip of the node's can write the file but `data_write`.
    readonly: File,
    /// Where the range starts in the file.
    offset: u64,
    len: usize,
    first_page: PageNo,
    refused: std::ops::Range<PageNo>,
}

impl std::fmt::Debug for FilePager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FilePager")
            .field("len", &self.len)
            .field("first_page", &self.first_page)
            .finish()
    }
}

impl FilePager {
    /// Maps `len` bytes of `path` from `offset` (a multiple of `PAGE_SIZE`; `None`: to the
    /// file's end) as region pages from `first_page` on.
    pub fn open(
        path: &Path,
        offset: u64,
        len: Option<u64>,
        first_page: PageNo,
    ) -> Result<FilePager, PagerError> {
        let fail = |error| PagerError::Open {
            path: path.to_path_buf(),
            error,
        };
        if offset % PAGE_SIZE as u64 != 0 {
            return Err(fail(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("offset {offset} is not a multiple of the page size {PAGE_SIZE}"),
            )));
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(fail)?;
        let size = file.metadata().map_err(fail)?.len();
        let len = len
            .unwrap_or(size.saturating_sub(offset))
            .min(size.saturating_sub(offset));
        let len = usize::try_from(len).map_err(|_| {
            fail(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "the range does not fit in this address space",
            ))
        })?;
        // A zero-length mapping is refused by mmap: map one byte's page at least; `len`
        // bounds every access.
        // SAFETY: the mapping is shared with the file, which other processes (the other
        // nodes' pagers, the user) may write; it is only reached through `data_request` and
        // `data_write`, which copy bytes in and out within `len` and make no reference into
        // it that outlives the call, so a concurrent change is at worst torn data, never
        // unsoundness of this process's memory.
        let map = unsafe {
            MmapOptions::new()
                .offset(offset)
                .len(len.max(1))
                .map_mut(&file)
        }
        .map_err(fail)?;
        let readonly = File::open(path).map_err(fail)?;
        Ok(FilePager {
            map,
            readonly,
            offset,
            len,
            first_page,
            refused: 0..0,
        })
    }

    /// Refuse to unlock region pages `pages` for writing (`data_unlock` answers a read
    /// lock): with the node's `data_lock` of them to read access
    /// ([`crate::node::NodeRuntime::data_lock`]), they can be read and never written there.
    pub fn refuse_writes(mut self, pages: std::ops::Range<PageNo>) -> FilePager {
        self.refused = pages;
        self
    }

    /// The bytes of the file range this pager maps.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the range is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The region pages the range covers (from `first_page`).
    pub fn pages(&self) -> u32 {
        self.len.div_ceil(PAGE_SIZE) as u32
    }

    /// The byte range of the file behind region page `page`, if any.
    fn bytes_of(&self, page: PageNo) -> Option<std::ops::Range<usize>> {
        let i = page.checked_sub(self.first_page)? as usize;
        let start = i.checked_mul(PAGE_SIZE)?;
        (start < self.len).then(|| start..(start + PAGE_SIZE).min(self.len))
    }
}

impl Pager for FilePager {
    fn data_request(&mut self, first: PageNo, out: &mut [u8]) -> Result<Supply, PagerError> {
        // Pages before the range read as zeros; the rest of the run is one stretch of the
        // file (zeros past its end), copied in one go.
        let lead = (self.first_page.saturating_sub(first) as usize)
            .saturating_mul(PAGE_SIZE)
            .min(out.len());
        let (before, rest) = out.split_at_mut(lead);
        before.fill(0);
        let file_page =
            (first as u64 + (lead / PAGE_SIZE) as u64).saturating_sub(self.first_page as u64);
        let start = usize::try_from(file_page)
            .ok()
            .and_then(|p| p.checked_mul(PAGE_SIZE))
            .unwrap_or(usize::MAX);
        let n = self.len.saturating_sub(start).min(rest.len());
        if n > 0 {
            rest[..n].copy_from_slice(&self.map[start..start + n]);
        }
        rest[n..].fill(0);
        Ok(if n > 0 {
            Supply::DataProvided
        } else {
            Supply::DataUnavailable
        })
    }

    fn data_mapped(&self, first: PageNo, len: usize) -> Option<&[u8]> {
        let start = (first.checked_sub(self.first_page)? as usize).checked_mul(PAGE_SIZE)?;
        let end = start.checked_add(len)?;
        (end <= self.len).then(|| &self.map[start..end])
    }

    fn data_mapped_file(&self, first: PageNo, len: usize) -> Option<(BorrowedFd<'_>, u64)> {
        let start = (first.checked_sub(self.first_page)? as usize).checked_mul(PAGE_SIZE)?;
        let end = start.checked_add(len)?;
        (end <= self.len).then(|| (self.readonly.as_fd(), self.offset + start as u64))
    }

    fn data_write(&mut self, page: PageNo, data: &[u8]) -> Result<(), PagerError> {
        if let Some(range) = self.bytes_of(page) {
            let n = range.len().min(data.len());
            self.map[range.start..range.start + n].copy_from_slice(&data[..n]);
        }
        Ok(())
    }

    fn sync(&mut self) -> Result<(), PagerError> {
        self.map.flush().map_err(PagerError::Flush)
    }

    fn data_unlock(&mut self, page: PageNo, access: Access) -> Result<Access, PagerError> {
        Ok(if self.refused.contains(&page) {
            access.min(Access::Read)
        } else {
            access
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_range_reads_and_writes_as_pages_from_first_page() {
        let dir = std::env::temp_dir().join(format!("memlink-pager-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("data");
        let mut bytes = vec![1u8; PAGE_SIZE];
        bytes.extend(vec![2u8; 100]);
        std::fs::write(&path, &bytes).unwrap();
        let mut pager = FilePager::open(&path, 0, None, 1).unwrap();
        assert_eq!(pager.pages(), 2);
        let mut page = vec![9u8; PAGE_SIZE];
        assert_eq!(
            pager.data_request(0, &mut page).unwrap(),
            Supply::DataUnavailable
        );
        assert_eq!(
            pager.data_request(1, &mut page).unwrap(),
            Supply::DataProvided
        );
        assert!(page.iter().all(|&b| b == 1));
        assert_eq!(
            pager.data_request(2, &mut page).unwrap(),
            Supply::DataProvided
        );
        assert!(page[..100].iter().all(|&b| b == 2) && page[100..].iter().all(|&b| b == 0));
        assert_eq!(
            pager.data_request(3, &mut page).unwrap(),
            Supply::DataUnavailable
        );
        // A run across the range's start and end: zeros, the file's bytes, zeros.
        let mut run = vec![9u8; 4 * PAGE_SIZE];
        assert_eq!(
            pager.data_request(0, &mut run).unwrap(),
            Supply::DataProvided
        );
        assert!(run[..PAGE_SIZE].iter().all(|&b| b == 0));
        assert!(run[PAGE_SIZE..2 * PAGE_SIZE].iter().all(|&b| b == 1));
        assert!(
            run[2 * PAGE_SIZE..2 * PAGE_SIZE + 100]
                .iter()
                .all(|&b| b == 2)
        );
        assert!(run[2 * PAGE_SIZE + 100..].iter().all(|&b| b == 0));
        assert_eq!(
            pager.data_request(u32::MAX, &mut run).unwrap(),
            Supply::DataUnavailable
        );
        // In place: only runs wholly inside the file.
        assert_eq!(pager.data_mapped(1, PAGE_SIZE), Some(&bytes[..PAGE_SIZE]));
        assert_eq!(pager.data_mapped(1, PAGE_SIZE + 100), Some(&bytes[..]));
        assert_eq!(pager.data_mapped(1, 2 * PAGE_SIZE), None, "past the end");
        assert_eq!(pager.data_mapped(0, PAGE_SIZE), None, "before the range");
        assert_eq!(pager.data_mapped(u32::MAX, PAGE_SIZE), None);
        // The file itself, for mapping: where the run starts in it.
        assert_eq!(
            pager.data_mapped_file(1, PAGE_SIZE).map(|(_, at)| at),
            Some(0)
        );
        assert!(
            pager.data_mapped_file(1, 2 * PAGE_SIZE).is_none(),
            "past the end"
        );
        assert!(
            pager.data_mapped_file(0, PAGE_SIZE).is_none(),
            "before the range"
        );
        pager.data_write(2, &[7u8; PAGE_SIZE]).unwrap();
        pager.data_write(9, &[7u8; PAGE_SIZE]).unwrap();
        pager.sync().unwrap();
        let after = std::fs::read(&path).unwrap();
        assert_eq!(after.len(), PAGE_SIZE + 100, "the file never grows");
        assert!(after[PAGE_SIZE..].iter().all(|&b| b == 7));
        assert!(FilePager::open(&path, 100, None, 0).is_err());
        assert!(FilePager::open(&dir.join("missing"), 0, None, 0).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
