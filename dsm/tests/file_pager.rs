//! A file mapped into the region through the file pager (Mach's external pager) on 3 node
//! processes, each under a memory budget far below the file: the words of the file are
//! counted through the region and checked against a sequential count, and since the pass only
//! reads, no node makes a single `data_write` (clean pages are dropped); and pages written by
//! the nodes reach the file (on eviction and on leave), checked by reading the file after
//! the nodes exited; and the pager's `clean_request` and `flush_request` reach the file
//! while the nodes run.

use crate::support;

use std::path::{Path, PathBuf};

use memlink_dsm::apps::{share, wordcount};
use memlink_dsm::cluster::Dsm;
use memlink_dsm::{Backend, DsmError, ManagerKind, PAGE_SIZE};

const NODES: usize = 3;
const FILE_PAGES: usize = 48;
const WORDS: usize = PAGE_SIZE / 8;

#[test]
fn node_main() {
    support::node_entry(&[
        ("wordcount", count),
        ("scribble", scribble),
        ("clean", clean_and_flush),
        ("overwrite", read_then_overwrite),
    ]);
}

fn file() -> PathBuf {
    std::env::var_os(support::PAGER_FILE_ENV)
        .expect("the pager's file")
        .into()
}

fn count(dsm: &Dsm) -> Result<bool, DsmError> {
    let path = file();
    let len = std::fs::metadata(&path)?.len() as usize;
    wordcount::run(dsm, &path, len)
}

fn pattern(page: usize, w: usize) -> u64 {
    ((page as u64) << 32) | w as u64 | 0x5a00_0000_0000_0000
}

/// Every node writes its share of the file's pages, then checks every page.
fn scribble(dsm: &Dsm) -> Result<bool, DsmError> {
    let at = |page: usize, w: usize| (wordcount::FIRST_PAGE as usize + page) * PAGE_SIZE + w * 8;
    for page in share(FILE_PAGES, dsm.id(), dsm.nodes()) {
        for w in 0..WORDS {
            // SAFETY: the word lies inside the region (FILE_PAGES + 1 pages of it), 8-aligned.
            unsafe { dsm.at::<u64>(at(page, w)).write_volatile(pattern(page, w)) };
        }
    }
    dsm.barrier(1)?;
    let ok = (0..FILE_PAGES).all(|page| {
        // SAFETY: as above, read-only.
        (0..WORDS)
            .all(|w| unsafe { dsm.at::<u64>(at(page, w)).read_volatile() } == pattern(page, w))
    });
    dsm.barrier(2)?;
    Ok(ok)
}

/// The pager's commands while the cluster runs: every node writes its share of the file's
/// pages and answers `clean_request` for them (a `data_write` per page it wrote, the pages
/// kept); node 0 then finds every word in the file itself, before anyone leaves. A second
/// `clean_request` writes nothing (the pages are clean); a page written again is dirty
/// again; `flush_request` gives the share up (the clean pages dropped without a write, the
/// one written again written back), and the file still holds every word.
fn clean_and_flush(dsm: &Dsm) -> Result<bool, DsmError> {
    use std::sync::atomic::Ordering;
    let at = |page: usize, w: usize| (wordcount::FIRST_PAGE as usize + page) * PAGE_SIZE + w * 8;
    let region_page = |page: usize| wordcount::FIRST_PAGE + page as u32;
    let mine = share(FILE_PAGES, dsm.id(), dsm.nodes());
    let pages = region_page(mine.start)..region_page(mine.end);
    let write = |page: usize, round: u64| {
        for w in 0..WORDS {
            // SAFETY: the word lies inside the region (FILE_PAGES + 1 pages of it), 8-aligned.
            unsafe {
                dsm.at::<u64>(at(page, w))
                    .write_volatile(pattern(page, w) + round)
            };
        }
    };
    for page in mine.clone() {
        write(page, 0);
    }
    let rt = dsm.runtime();
    let me = dsm.id();
    let mut ok = true;
    let mut check = |good: bool, what: String| {
        if !good {
            eprintln!("node {me}: {what}");
        }
        ok &= good;
    };
    let before = support::DATA_WRITES.load(Ordering::Relaxed);
    let cleaned = rt.clean_request(pages.clone())?;
    let wrote = support::DATA_WRITES.load(Ordering::Relaxed) - before;
    check(
        cleaned as usize == mine.len() && wrote == cleaned as u64,
        format!(
            "the first clean_request wrote {cleaned} pages ({wrote} data_writes), not {}",
            mine.len()
        ),
    );
    dsm.barrier(1)?;
    if me == 0 {
        let bad = first_mismatch(&std::fs::read(file())?, |_| 0);
        check(
            bad.is_none(),
            format!("after the clean, the file differs: {bad:?}"),
        );
    }
    // Nobody writes again before node 0 has read the file: the second round's write-backs
    // would race with its read (the cause of this test's failures in its first draft).
    dsm.barrier(2)?;
    let again = rt.clean_request(pages.clone())?;
    check(
        again == 0,
        format!("the second clean_request wrote {again} pages"),
    );
    // The first page of the share is written again: only it is dirty.
    write(mine.start, 1);
    let before = support::DATA_WRITES.load(Ordering::Relaxed);
    let dropped = rt.eviction_stats().dropped_clean;
    let flushed = rt.flush_request(pages.clone())?;
    let wrote = support::DATA_WRITES.load(Ordering::Relaxed) - before;
    let dropped = rt.eviction_stats().dropped_clean - dropped;
    check(
        flushed as usize == mine.len() && wrote == 1 && dropped == mine.len() as u64 - 1,
        format!(
            "flush_request: {flushed} pages went, {wrote} data_writes, {dropped} dropped clean"
        ),
    );
    dsm.barrier(3)?;
    if me == 0 {
        // The first page of each share holds the second round's words.
        let nodes = dsm.nodes();
        let bad = first_mismatch(&std::fs::read(file())?, |page| {
            (0..nodes as u16).any(|n| share(FILE_PAGES, n, nodes).start == page) as u64
        });
        check(
            bad.is_none(),
            format!("after the flush, the file differs: {bad:?}"),
        );
    }
    dsm.barrier(4)?;
    Ok(ok)
}

/// Node 0 reads the whole file in order, twice (its own pages, read ahead: the file's pages
/// mapped in place, the later runs in the background, stretches of them paged in and, the
/// budget being half the file, dropped in one protocol step each; the second pass pages
/// them in again); then node 1 writes a word of every page;
/// then every node reads node 1's words, not the file's, and the rest of the file's.
fn read_then_overwrite(dsm: &Dsm) -> Result<bool, DsmError> {
    let at = |page: usize, w: usize| (wordcount::FIRST_PAGE as usize + page) * PAGE_SIZE + w * 8;
    let read = |page: usize, w: usize| {
        // SAFETY: the word lies inside the region (FILE_PAGES + 1 pages of it), 8-aligned.
        unsafe { dsm.at::<u64>(at(page, w)).read_volatile() }
    };
    let me = dsm.id();
    // Whether every word of the file's pages reads here as `expect` says; the first that
    // does not is said on stderr, with `when`.
    let all_read_as = |when: &str, expect: &dyn Fn(usize, usize) -> u64| {
        let bad = (0..FILE_PAGES)
            .flat_map(|page| (0..WORDS).map(move |w| (page, w)))
            .find(|&(page, w)| read(page, w) != expect(page, w));
        if let Some((page, w)) = bad {
            eprintln!(
                "node {me}, {when}: page {page} word {w} is {:#x}",
                read(page, w)
            );
        }
        bad.is_none()
    };
    let mut ok = true;
    if me == 0 {
        for pass in 1..=2 {
            ok &= all_read_as(&format!("pass {pass}"), &pattern);
        }
    }
    dsm.barrier(1)?;
    if me == 1 {
        for page in 0..FILE_PAGES {
            // SAFETY: as above.
            unsafe { dsm.at::<u64>(at(page, 3)).write_volatile(!pattern(page, 3)) };
        }
    }
    dsm.barrier(2)?;
    ok &= all_read_as("after the writes", &|page, w| {
        if w == 3 {
            !pattern(page, w)
        } else {
            pattern(page, w)
        }
    });
    dsm.barrier(3)?;
    Ok(ok)
}

/// The first word of the file's bytes that is not `pattern(page, w) + round(page)`:
/// (page, word, found).
fn first_mismatch(bytes: &[u8], round: impl Fn(usize) -> u64) -> Option<(usize, usize, u64)> {
    if bytes.len() != FILE_PAGES * PAGE_SIZE {
        return Some((usize::MAX, 0, bytes.len() as u64));
    }
    (0..FILE_PAGES).find_map(|page| {
        (0..WORDS).find_map(|w| {
            let at = page * PAGE_SIZE + w * 8;
            let found = u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap_or([0; 8]));
            (found != pattern(page, w) + round(page)).then_some((page, w, found))
        })
    })
}

/// Runs `body` on every node; returns each node's `data_write` calls on its pager.
fn run(body: &str, path: &Path, pages: u32, budget: u64, manager: ManagerKind) -> Vec<u64> {
    let what = format!("{body} ({manager})");
    let outputs = support::launch_verified(&what, NODES, |slot| {
        let mut cmd = support::node_command_with_manager(slot, body, Backend::Sigsegv, manager);
        cmd.env(support::BUDGET_ENV, budget.to_string())
            .env(support::PAGER_FILE_ENV, path)
            .env(support::PAGES_ENV, pages.to_string());
        cmd
    });
    outputs
        .iter()
        .map(|out| {
            let n = support::line_after(&what, out, "data_writes: ");
            n.trim()
                .parse()
                .unwrap_or_else(|_| panic!("{what}: node {} gave no data_writes", out.id))
        })
        .collect()
}

/// Runs `body` on every node over a new file of `contents` (the region: page 0 and the
/// file's pages), each node with `frames` frames; the file's path and each node's
/// `data_write` calls.
fn run_on_new_file(
    body: &str,
    contents: &[u8],
    frames: usize,
    manager: ManagerKind,
) -> (PathBuf, Vec<u64>) {
    let path = scratch(&format!("{body}-{manager}"));
    std::fs::write(&path, contents).expect("write the file");
    let pages = 1 + FILE_PAGES as u32;
    let writes = run(body, &path, pages, (frames * PAGE_SIZE) as u64, manager);
    (path, writes)
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("memlink-file-pager-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch directory");
    dir.join(name)
}

#[test]
fn words_of_a_file_larger_than_the_budgets_are_counted_through_the_region() {
    // About 2 MiB of words of 1 to 12 letters; 16 frames (64 KiB) per node.
    let path = scratch("words.txt");
    let mut text = Vec::new();
    let mut x = 0x9e37_79b9_u64;
    while text.len() < (2 << 20) + 123 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        text.extend((0..1 + x % 12).map(|i| b'a' + ((x >> (i * 3)) % 26) as u8));
        text.push([b' ', b'\n', b'\t', b' '][(x >> 40) as usize % 4]);
    }
    std::fs::write(&path, &text).expect("write the file");
    let pages = wordcount::pages_for(text.len() as u64);
    let modified = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
    for manager in [ManagerKind::Central, ManagerKind::Dynamic] {
        // A read-only pass: every page the nodes give up is clean (unchanged since it came
        // from the pager), dropped without a data_write, on eviction and on leave.
        let writes = run("wordcount", &path, pages, 16 * PAGE_SIZE as u64, manager);
        assert_eq!(
            writes,
            vec![0; NODES],
            "{manager}: data_write calls per node"
        );
    }
    assert_eq!(
        std::fs::read(&path).expect("read the file back"),
        text,
        "the file changed"
    );
    assert_eq!(
        std::fs::metadata(&path).and_then(|m| m.modified()).ok(),
        modified,
        "the file was written"
    );
    std::fs::remove_file(&path).ok();
}

#[test]
fn clean_and_flush_requests_reach_the_file_while_the_nodes_run() {
    for manager in [ManagerKind::Central, ManagerKind::Dynamic] {
        // Frames for a whole share (16 pages) and the slots page.
        let zeros = vec![0u8; FILE_PAGES * PAGE_SIZE];
        let (path, _) = run_on_new_file("clean", &zeros, 24, manager);
        std::fs::remove_file(&path).ok();
    }
}

#[test]
fn a_write_elsewhere_replaces_the_pages_read_ahead_from_the_file() {
    let bytes: Vec<u8> = (0..FILE_PAGES)
        .flat_map(|page| (0..WORDS).flat_map(move |w| pattern(page, w).to_le_bytes()))
        .collect();
    for manager in [ManagerKind::Central, ManagerKind::Dynamic] {
        // 24 frames: runs of up to 6 pages, and evictions, while node 0 reads 48 pages.
        let (path, _) = run_on_new_file("overwrite", &bytes, 24, manager);
        std::fs::remove_file(&path).ok();
    }
}

#[test]
fn pages_written_by_the_nodes_reach_the_file() {
    for manager in [
        ManagerKind::Central,
        ManagerKind::Fixed,
        ManagerKind::Dynamic,
    ] {
        let zeros = vec![0u8; FILE_PAGES * PAGE_SIZE];
        let (path, writes) = run_on_new_file("scribble", &zeros, 8, manager);
        // Every page was written: each reaches the file at least once.
        assert!(
            writes.iter().sum::<u64>() >= FILE_PAGES as u64,
            "{manager}: data_write calls per node {writes:?}"
        );
        let bytes = std::fs::read(&path).expect("read the file back");
        assert_eq!(bytes.len(), FILE_PAGES * PAGE_SIZE);
        for page in 0..FILE_PAGES {
            for w in 0..WORDS {
                let at = page * PAGE_SIZE + w * 8;
                let v = u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
                assert_eq!(
                    v,
                    pattern(page, w),
                    "{manager}: page {page} word {w} in the file"
                );
            }
        }
        std::fs::remove_file(&path).ok();
    }
}
