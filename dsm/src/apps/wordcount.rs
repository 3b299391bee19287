//! Counts the words of a file mapped into the region by a file pager (see [`crate::pager`]):
//! every node joins with a [`crate::pager::PagerStore`] of a [`crate::pager::FilePager`] on
//! the file from region page [`FIRST_PAGE`] on, counts the words that start in its share of
//! the bytes (reading them through the region: its faults fetch the pages, its memory budget
//! evicts them), publishes its count, and checks the sum against a sequential count of the
//! file. A word is a maximal run of bytes that are not ASCII whitespace.
//!
//! `memlink dsm run --app wordcount --file F --memory-budget 16M` runs it;
//! `dsm/tests/file_pager.rs` runs it on 3 node processes.

use std::io::Read;
use std::path::Path;

use super::share;
use crate::cluster::Dsm;
use crate::types::{DsmError, PAGE_SIZE, PageNo};

/// The region page the file starts at (page 0 is the directory).
pub const FIRST_PAGE: PageNo = 1;
/// The first directory slot of the per-node counts.
const SLOT_COUNTS: usize = 16;

/// The region pages a cluster counting a file of `len` bytes needs.
pub fn pages_for(len: u64) -> u32 {
    (FIRST_PAGE as u64 + len.div_ceil(PAGE_SIZE as u64)).min(u32::MAX as u64) as u32
}

/// The words that start in `bytes`, `before` being the byte just before them (if any).
pub fn words_starting_in(bytes: &[u8], before: Option<u8>) -> u64 {
    let mut prev_space = before.is_none_or(|b| b.is_ascii_whitespace());
    let mut words = 0;
    for &b in bytes {
        let space = b.is_ascii_whitespace();
        if prev_space && !space {
            words += 1;
        }
        prev_space = space;
    }
    words
}

/// The words of the file at `path`, read sequentially in chunks.
pub fn sequential(path: &Path) -> std::io::Result<u64> {
    let mut file = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 1 << 20];
    let (mut words, mut before) = (0, None);
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(words);
        }
        words += words_starting_in(&buf[..n], before);
        before = Some(buf[n - 1]);
    }
}

/// Copies region bytes `at..at + out.len()` into `out` (faulting their pages in).
fn read_region(dsm: &Dsm, at: usize, out: &mut [u8]) {
    let src: *const u8 = dsm.at::<u8>(at);
    // SAFETY: the caller keeps `at..at + out.len()` inside the region (checked against its
    // length in `run`); the region is mapped for the node's lifetime, and a page of it is
    // only ever replaced whole while no application thread can access it, so this read-only
    // copy sees whole pages; `out` is a distinct, live buffer.
    unsafe { std::ptr::copy_nonoverlapping(src, out.as_mut_ptr(), out.len()) };
}

/// Counts this node's share of the `len`-byte file mapped at [`FIRST_PAGE`]; true if the
/// cluster's sum equals the sequential count of the file at `path`.
pub fn run(dsm: &Dsm, path: &Path, len: usize) -> Result<bool, DsmError> {
    let base = FIRST_PAGE as usize * PAGE_SIZE;
    if base.checked_add(len).is_none_or(|end| end > dsm.len()) || dsm.nodes() > 64 {
        return Err(DsmError::Config(format!(
            "a file of {len} bytes does not fit in the region of {} bytes from page {FIRST_PAGE}",
            dsm.len()
        )));
    }
    let mine = share(len, dsm.id(), dsm.nodes());
    let mut before = None;
    if mine.start > 0 && !mine.is_empty() {
        let mut b = [0u8; 1];
        read_region(dsm, base + mine.start - 1, &mut b);
        before = Some(b[0]);
    }
    let mut words = 0;
    let mut chunk = vec![0u8; PAGE_SIZE];
    let mut at = mine.start;
    while at < mine.end {
        let n = (PAGE_SIZE - at % PAGE_SIZE).min(mine.end - at);
        read_region(dsm, base + at, &mut chunk[..n]);
        words += words_starting_in(&chunk[..n], before);
        before = Some(chunk[n - 1]);
        at += n;
    }
    dsm.publish(SLOT_COUNTS + dsm.id() as usize, words);
    dsm.barrier(1)?;
    let total: u64 = (0..dsm.nodes()).map(|n| dsm.lookup(SLOT_COUNTS + n)).sum();
    let expected = sequential(path)?;
    dsm.barrier(2)?;
    Ok(total == expected)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_counted_across_chunk_boundaries() {
        let text = b"  one two\tthree\nfour  ";
        assert_eq!(words_starting_in(text, None), 4);
        let (a, b) = text.split_at(6); // inside "two"
        assert_eq!(
            words_starting_in(a, None) + words_starting_in(b, a.last().copied()),
            4
        );
        assert_eq!(words_starting_in(b"", Some(b'x')), 0);
        assert_eq!(pages_for(1), 2);
        assert_eq!(pages_for(PAGE_SIZE as u64), 2);
        assert_eq!(pages_for(PAGE_SIZE as u64 + 1), 3);
    }
}
