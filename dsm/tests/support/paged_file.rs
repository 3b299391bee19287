//! The paged file of the pager tests (`pager_locks`, `pager_process`): region page `p` (1 and
//! up) is the file's page `p - 1`, and its word `w` as writer `by` leaves it is
//! `pattern(p, w, by)` (`by` 0: the file as first written); the nodes write and check pages
//! through the region, the parent writes and checks the file.

use std::path::PathBuf;

use memlink_dsm::cluster::Dsm;
use memlink_dsm::{PAGE_SIZE, PageNo};

/// The words of a page.
pub const WORDS: usize = PAGE_SIZE / 8;

/// Word `w` of region page `page` as writer `by` leaves it.
pub fn pattern(page: PageNo, w: usize, by: u64) -> u64 {
    ((page as u64) << 40) | (by << 32) | w as u64 | 0x5a00_0000_0000_0000
}

/// The region offset of word `w` of page `page`.
pub fn at(page: PageNo, w: usize) -> usize {
    page as usize * PAGE_SIZE + w * 8
}

/// Writes region page `page` as `by` does (a write fault brings it here first).
pub fn write_page(dsm: &Dsm, page: PageNo, by: u64) {
    for w in 0..WORDS {
        // SAFETY: the caller's region holds `page` (the test sizes it to the file and page 0),
        // the word is 8-aligned; the write faults the page in.
        unsafe {
            dsm.at::<u64>(at(page, w))
                .write_volatile(pattern(page, w, by))
        };
    }
}

/// Whether region page `page` reads as `by` wrote it (a read fault brings it here first).
pub fn page_is(dsm: &Dsm, page: PageNo, by: u64) -> bool {
    // SAFETY: as in write_page, read-only.
    (0..WORDS)
        .all(|w| unsafe { dsm.at::<u64>(at(page, w)).read_volatile() } == pattern(page, w, by))
}

/// `ok`, saying `what` on stderr when not.
pub fn check(ok: bool, what: &str) -> bool {
    if !ok {
        eprintln!("check failed: {what}");
    }
    ok
}

/// The bytes of a file of `pages` pages (region pages `1..=pages`), page `p` as `by(p)`
/// wrote it.
pub fn file_bytes(pages: usize, by: impl Fn(PageNo) -> u64) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(pages * PAGE_SIZE);
    for page in 1..=pages as PageNo {
        for w in 0..WORDS {
            bytes.extend_from_slice(&pattern(page, w, by(page)).to_le_bytes());
        }
    }
    bytes
}

/// Whether region page `page` of the file's `bytes` is as `by` wrote it.
pub fn file_page_is(bytes: &[u8], page: PageNo, by: u64) -> bool {
    let start = (page as usize - 1) * PAGE_SIZE;
    bytes.len() >= start + PAGE_SIZE
        && (0..WORDS).all(|w| {
            let at = start + w * 8;
            u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap()) == pattern(page, w, by)
        })
}

/// `name` in a scratch directory of this process for the test `test`.
pub fn scratch(test: &str, name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("memlink-{test}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch directory");
    dir.join(name)
}
