//! `Dsm::prefetch` across 3 node processes, with each fault backend: a prefetch brings every
//! page of its ranges with the access asked for (one remote fetch per page, counted as a
//! fault), the data it brings is the owner's, touching the pages afterwards faults no more,
//! a write prefetch takes the other nodes' copies away (they see the new data after), and a
//! range past the region is refused. Started and waited for in one call, or started, then
//! waited for; and racing another thread's faults on the same pages.

use crate::support;

use memlink_dsm::cluster::Dsm;
use memlink_dsm::{Access, Backend, DsmError, PAGE_SIZE};

/// Pages in the block node 0 fills.
const BLOCK_PAGES: usize = 8;
/// The pages node 1 takes for writing.
const WRITTEN_PAGES: usize = 4;
const WORDS_PER_PAGE: usize = PAGE_SIZE / 8;

fn word(dsm: &Dsm, block: usize, i: usize) -> *mut u64 {
    dsm.at::<u64>(block + i * 8)
}

/// What word `i` holds after node 0's fill (`round` 0) and node 1's rewrite (`round` 1).
fn expected(i: usize, round: u64) -> u64 {
    let written = i < WRITTEN_PAGES * WORDS_PER_PAGE;
    if round == 1 && written {
        0xbeef_0000 + i as u64
    } else {
        (i as u64) * 3 + 1
    }
}

fn all_words_match(dsm: &Dsm, block: usize, round: u64) -> bool {
    (0..BLOCK_PAGES * WORDS_PER_PAGE).all(|i| {
        // SAFETY: word i lies in the block node 0 allocated (never freed); no node writes the
        // block in this phase (phases are separated by barriers).
        unsafe { word(dsm, block, i).read_volatile() == expected(i, round) }
    })
}

/// `holds`; when not, says on stderr which check failed (the launcher shows a failed node's
/// stderr).
fn expect(holds: bool, what: &str) -> bool {
    if !holds {
        eprintln!("check failed: {what}");
    }
    holds
}

fn prefetch_body(dsm: &Dsm) -> Result<bool, DsmError> {
    let block_len = BLOCK_PAGES * PAGE_SIZE;
    if dsm.id() == 0 {
        let block = dsm.alloc(block_len, PAGE_SIZE)?;
        for i in 0..BLOCK_PAGES * WORDS_PER_PAGE {
            // SAFETY: inside the block just allocated; only node 0 touches it before barrier 1.
            unsafe { word(dsm, block, i).write_volatile(expected(i, 0)) };
        }
        dsm.publish(1, block as u64);
        let racing = dsm.alloc(block_len, PAGE_SIZE)?;
        for i in 0..BLOCK_PAGES * WORDS_PER_PAGE {
            // SAFETY: as above, in the second block.
            unsafe { word(dsm, racing, i).write_volatile(expected(i, 0)) };
        }
        dsm.publish(2, racing as u64);
    }
    dsm.barrier(1)?;
    let block = dsm.lookup(1) as usize;
    let racing = dsm.lookup(2) as usize;
    let mut ok = true;

    // Phase 0: on nodes 1 and 2, a thread reads the second block (faulting page by page)
    // while the main thread prefetches it: every word reads right, and each page is fetched
    // once (a fault on a page the prefetch requested waits for it, and the prefetch leaves
    // pages already requested by a fault to that fault).
    if dsm.id() != 0 {
        let before = dsm.stats().read_faults;
        let first = word(dsm, racing, 0) as usize;
        let reader = std::thread::spawn(move || {
            (0..BLOCK_PAGES * WORDS_PER_PAGE).all(|i| {
                // SAFETY: word i of the second block (never freed); nobody writes the block
                // after barrier 1.
                unsafe { (first as *const u64).add(i).read_volatile() == expected(i, 0) }
            })
        });
        dsm.prefetch(&[(racing..racing + block_len, Access::Read)])?;
        ok &= expect(
            reader.join().unwrap_or(false),
            "phase 0: the racing reader read every word right",
        );
        let faults = dsm.stats().read_faults - before;
        ok &= expect(
            faults == BLOCK_PAGES as u64,
            &format!("phase 0: {faults} read faults for {BLOCK_PAGES} pages racing a prefetch"),
        );
    }

    // Phase 1: nodes 1 and 2 fetch the whole block for reading in one call (node 2 starts
    // it, then waits).
    if dsm.id() != 0 {
        let before = dsm.stats().read_faults;
        let whole = [(block..block + block_len, Access::Read)];
        if dsm.id() == 1 {
            dsm.prefetch(&whole)?;
        } else {
            let fetching = dsm.prefetch_start(&whole)?;
            let requested = fetching.requested();
            ok &= expect(
                requested == BLOCK_PAGES,
                &format!("phase 1: prefetch_start requested {requested} pages"),
            );
            fetching.wait()?;
        }
        let fetched = dsm.stats().read_faults - before;
        ok &= expect(
            fetched == BLOCK_PAGES as u64,
            &format!("phase 1: the prefetch fetched {fetched} pages of {BLOCK_PAGES}"),
        );
        ok &= expect(
            all_words_match(dsm, block, 0),
            "phase 1: the words node 0 wrote",
        );
        // Everything was here already: reading took no fault.
        let after_reading = dsm.stats().read_faults - before;
        ok &= expect(
            after_reading == BLOCK_PAGES as u64,
            &format!("phase 1: {after_reading} read faults after reading the prefetched pages"),
        );
        // Asking again for what is held sends nothing.
        dsm.prefetch(&[(block..block + block_len, Access::Read)])?;
        let after_again = dsm.stats().read_faults - before;
        ok &= expect(
            after_again == BLOCK_PAGES as u64,
            &format!("phase 1: {after_again} read faults after prefetching held pages again"),
        );
    }
    dsm.barrier(2)?;

    // Phase 2: node 1 takes the first pages for writing (the others lose their copies).
    if dsm.id() == 1 {
        let before = dsm.stats().write_faults;
        let written = block..block + WRITTEN_PAGES * PAGE_SIZE;
        dsm.prefetch(&[(written, Access::Write)])?;
        let taken = dsm.stats().write_faults - before;
        ok &= expect(
            taken == WRITTEN_PAGES as u64,
            &format!("phase 2: {taken} write faults prefetching {WRITTEN_PAGES} pages"),
        );
        for i in 0..WRITTEN_PAGES * WORDS_PER_PAGE {
            // SAFETY: in the block; only node 1 writes between barriers 2 and 3.
            unsafe { word(dsm, block, i).write_volatile(expected(i, 1)) };
        }
        let after_writing = dsm.stats().write_faults - before;
        ok &= expect(
            after_writing == WRITTEN_PAGES as u64,
            &format!("phase 2: {after_writing} write faults after writing the taken pages"),
        );
    }
    dsm.barrier(3)?;

    // Phase 3: everyone sees node 1's writes.
    ok &= expect(all_words_match(dsm, block, 1), "phase 3: node 1's writes");

    // Bad ranges: past the region's end is refused, an empty one does nothing.
    let end = dsm.len();
    let past_end = dsm.prefetch(&[(end - PAGE_SIZE..end + PAGE_SIZE, Access::Read)]);
    ok &= expect(
        matches!(past_end, Err(DsmError::PageOutOfRange { .. })),
        &format!("a range past the region: {past_end:?}"),
    );
    let empty = dsm.prefetch(&[(block..block, Access::Write)]);
    ok &= expect(empty.is_ok(), &format!("an empty range: {empty:?}"));
    dsm.barrier(4)?;
    Ok(ok)
}

#[test]
fn node_main() {
    support::node_entry(&[("prefetch", prefetch_body)]);
}

#[test]
fn prefetch_fetches_coherent_pages_with_sigsegv() {
    support::assert_cluster_verifies(3, "prefetch", Backend::Sigsegv);
}

#[test]
fn prefetch_fetches_coherent_pages_with_uffd() {
    support::assert_cluster_verifies(3, "prefetch", Backend::Uffd);
}
