//! The pager's `data_lock`, `data_unlock` and `cache` on 2 node processes sharing a file
//! through the file pager (Mach's external pager), under every manager kind that routes
//! differently (central, dynamic):
//! - the file's first 4 pages are its read-only part: each node's pager locks them to read
//!   access (`data_lock`) and refuses to unlock them for writing (`data_unlock`), so a
//!   write fault there is refused (`DsmError::Denied`) while reads go on;
//! - a page locked entirely (`data_lock` to none) that a thread then reads makes the node
//!   ask its pager (`data_unlock`), which grants: the plain read through the fault backend
//!   sees the other node's write;
//! - with the pager's cache off, a page the application releases leaves the node at once
//!   (written back to the file); with it on, it stays.
//!
//! The parent checks the file afterwards: the read-only pages unchanged, the others holding
//! what the nodes wrote.

use crate::support;
use crate::support::paged_file::{check, file_bytes, file_page_is, page_is, scratch, write_page};

use std::path::Path;

use memlink_dsm::cluster::Dsm;
use memlink_dsm::{Access, Backend, DsmError, FaultResolver, ManagerKind, PAGE_SIZE, PageNo};

const NODES: usize = 2;
/// The file's pages; region page `1 + i` is the file's page `i`.
const FILE_PAGES: usize = 8;
/// The region pages of the file's read-only part.
const READ_ONLY: std::ops::Range<PageNo> = 1..5;
/// Written by node 1, locked entirely at node 0, which reads it after unlocking.
const SHARED: PageNo = 6;
/// Written by node 1 and released with the cache off, then on.
const UNCACHED: PageNo = 7;
const CACHED: PageNo = 8;

#[test]
fn node_main() {
    support::node_entry(&[("locks", locks)]);
}

fn locks(dsm: &Dsm) -> Result<bool, DsmError> {
    let rt = dsm.runtime();
    // Each node's pager locks the file's read-only part at its node.
    rt.data_lock(READ_ONLY, Access::Read)?;
    dsm.barrier(1)?;
    let mut ok = true;
    if dsm.id() == 1 {
        ok &= check(page_is(dsm, 2, 0), "node 1 reads a read-only page");
        ok &= check(
            matches!(
                rt.resolve_fault(2, Access::Write),
                Err(DsmError::Denied {
                    page: 2,
                    access: Access::Write
                })
            ),
            "the pager refuses to unlock a read-only page for writing",
        );
        ok &= check(
            rt.access(2) == Access::Read,
            "the refused page stays readable",
        );
        write_page(dsm, SHARED, 1);
    }
    dsm.barrier(2)?;
    if dsm.id() == 0 {
        // Locked entirely: the plain read below faults, asks the pager, which unlocks.
        rt.data_lock(SHARED..SHARED + 1, Access::None)?;
        ok &= check(rt.access(SHARED) == Access::None, "a page locked to none");
        ok &= check(
            page_is(dsm, SHARED, 1),
            "node 0 reads node 1's write after unlocking",
        );
        ok &= check(
            matches!(
                rt.resolve_fault(3, Access::Write),
                Err(DsmError::Denied { .. })
            ),
            "node 0's pager refuses too",
        );
    }
    dsm.barrier(3)?;
    if dsm.id() == 1 {
        rt.cache(false);
        write_page(dsm, UNCACHED, 1);
        let before = rt.eviction_stats();
        ok &= check(
            rt.release(UNCACHED..UNCACHED + 1)? == 1,
            "released without cache",
        );
        ok &= check(
            rt.access(UNCACHED) == Access::None,
            "a page released without cache leaves the node",
        );
        ok &= check(
            rt.eviction_stats().written_back == before.written_back + 1,
            "its only copy, written, went back to the file",
        );
        rt.cache(true);
        write_page(dsm, CACHED, 1);
        ok &= check(rt.release(CACHED..CACHED + 1)? == 0, "released with cache");
        ok &= check(
            rt.access(CACHED) == Access::Write,
            "a page released with cache stays",
        );
    }
    dsm.barrier(4)?;
    if dsm.id() == 0 {
        ok &= check(page_is(dsm, UNCACHED, 1), "node 0 reads the flushed page");
        ok &= check(page_is(dsm, CACHED, 1), "node 0 reads the cached page");
        ok &= check(page_is(dsm, 1, 0), "node 0 reads a read-only page");
    }
    dsm.barrier(5)?;
    Ok(ok)
}

fn run(path: &Path, manager: ManagerKind) {
    let outputs = support::launch_verified(&manager.to_string(), NODES, |slot| {
        let mut cmd = support::node_command_with_manager(slot, "locks", Backend::Sigsegv, manager);
        cmd.env(support::BUDGET_ENV, (8 * PAGE_SIZE).to_string())
            .env(support::PAGER_FILE_ENV, path)
            .env(
                support::PAGER_REFUSE_WRITES_ENV,
                format!("{}..{}", READ_ONLY.start, READ_ONLY.end),
            )
            .env(support::PAGES_ENV, (1 + FILE_PAGES).to_string());
        cmd
    });
    assert_eq!(outputs.len(), NODES, "{manager}: the nodes' outputs");
}

#[test]
fn locked_pages_are_refused_or_unlocked_by_the_pager_and_uncached_pages_leave_at_release() {
    for manager in [ManagerKind::Central, ManagerKind::Dynamic] {
        let path = scratch("pager-locks", &format!("file-{manager}"));
        let bytes = file_bytes(FILE_PAGES, |_| 0);
        std::fs::write(&path, &bytes).expect("write the file");
        run(&path, manager);
        let after = std::fs::read(&path).expect("read the file back");
        assert_eq!(after.len(), bytes.len());
        for page in READ_ONLY {
            assert!(
                file_page_is(&after, page, 0),
                "{manager}: read-only page {page} changed"
            );
        }
        for page in [SHARED, UNCACHED, CACHED] {
            assert!(
                file_page_is(&after, page, 1),
                "{manager}: page {page} in the file is not node 1's write"
            );
        }
        std::fs::remove_file(&path).ok();
    }
}
