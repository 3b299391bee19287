//! A file mapped into the region through the file pager (Mach's external pager) on 3 node
//! processes, each under a memory budget far below the file: the words of the file are
//! counted through the region and checked against a sequential count, and since the pass only
//! reads, no node makes a single `data_write` (clean pages are dropped); and pages written by
//! the nodes reach the file (on eviction and on leave), checked by reading the file after
//! the nodes exited.

mod support;

use std::path::{Path, PathBuf};

use memlink_dsm::apps::{share, wordcount};
use memlink_dsm::cluster::Dsm;
use memlink_dsm::init::launch;
use memlink_dsm::{Backend, DsmError, ManagerKind, PAGE_SIZE};

const NODES: usize = 3;
const FILE_PAGES: usize = 48;
const WORDS: usize = PAGE_SIZE / 8;

#[test]
fn node_main() {
    support::node_entry(&[("wordcount", count), ("scribble", scribble)]);
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

/// Runs `body` on every node; returns each node's `data_write` calls on its pager.
fn run(body: &str, path: &Path, pages: u32, budget: u64, manager: ManagerKind) -> Vec<u64> {
    let what = format!("{body} ({manager})");
    let outputs = launch(NODES, support::DEADLINE, |slot| {
        let mut cmd = support::node_command_with_manager(slot, body, Backend::Sigsegv, manager);
        cmd.env(support::BUDGET_ENV, budget.to_string())
            .env(support::PAGER_FILE_ENV, path)
            .env(support::PAGES_ENV, pages.to_string());
        cmd
    })
    .unwrap_or_else(|e| panic!("{what}: {e}"));
    outputs
        .iter()
        .map(|out| {
            assert!(
                out.stdout.contains("verified: true"),
                "{what}: node {} printed {:?}",
                out.id,
                out.stdout
            );
            out.stdout
                .lines()
                .find_map(|l| l.strip_prefix("data_writes: "))
                .and_then(|n| n.trim().parse().ok())
                .unwrap_or_else(|| panic!("{what}: node {} gave no data_writes", out.id))
        })
        .collect()
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
fn pages_written_by_the_nodes_reach_the_file() {
    for manager in [
        ManagerKind::Central,
        ManagerKind::Fixed,
        ManagerKind::Dynamic,
    ] {
        let path = scratch(&format!("scribble-{manager}"));
        std::fs::write(&path, vec![0u8; FILE_PAGES * PAGE_SIZE]).expect("write the file");
        let writes = run(
            "scribble",
            &path,
            1 + FILE_PAGES as u32,
            8 * PAGE_SIZE as u64,
            manager,
        );
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
