//! Node processes under a memory budget: every eviction class runs, and the data survives.
//!
//! Each test starts a local cluster of 3 node processes (this binary, re-run as nodes) with a
//! budget far below what they touch, under each page manager and both fault backends; the
//! nodes check every word they read, and print their eviction counters, which the test
//! checks too. The Δt hold is on in some of them: a hold whose timer did not fire would hang
//! the cluster (the launcher's deadline fails the test).

use crate::support;

use memlink_dsm::apps::share;
use memlink_dsm::cluster::Dsm;
use memlink_dsm::handles::DsmVec;
use memlink_dsm::{Backend, DsmError, ManagerKind, PAGE_SIZE};

const NODES: usize = 3;
/// Pages every node writes a share of and then reads all of.
const SPREAD_PAGES: usize = 36;
const WORDS: usize = PAGE_SIZE / 8;

#[test]
fn node_main() {
    support::node_entry(&[("spread", spread)]);
}

/// The word `i` of the spread area after round `round`.
fn pattern(i: usize, round: u64) -> u64 {
    ((i as u64) << 8) ^ round.wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// Whether every word holds round `round`'s pattern; the first that does not is reported on
/// stderr (the launcher shows a failed node's stderr).
fn check_all(v: &DsmVec<u64>, round: u64) -> bool {
    match (0..SPREAD_PAGES * WORDS).find(|&i| v.get(i) != pattern(i, round)) {
        None => true,
        Some(i) => {
            eprintln!(
                "round {round}: word {i} (page {}) holds {:#x}, not {:#x}",
                i / WORDS,
                v.get(i),
                pattern(i, round)
            );
            false
        }
    }
}

/// Whether the region takes no more memory on this node than its budget, and no more than
/// the frames the protocol counts (a copy dropped or invalidated gave its memory back).
fn within_budget(dsm: &Dsm) -> Result<bool, DsmError> {
    let budget: u64 = std::env::var(support::BUDGET_ENV)
        .ok()
        .and_then(|b| b.parse().ok())
        .unwrap_or(u64::MAX);
    let frames = dsm.runtime().frames_in_use() as u64 * PAGE_SIZE as u64;
    let resident = dsm.resident_bytes()?;
    if resident > budget.min(frames) {
        eprintln!(
            "node {}: {resident} bytes resident, {frames} bytes of frames, budget {budget}",
            dsm.id()
        );
    }
    Ok(resident <= budget.min(frames))
}

/// [`within_budget`] while no node touches the region: every node has reached barrier `quiet`
/// before it measures, and none goes on before all have measured (barrier `quiet + 1`).
/// Measured while another node faults, a page handed to this node or dropped here could be
/// counted in the protocol's frames and not yet in the memory, or the other way round.
fn within_budget_when_quiet(dsm: &Dsm, quiet: u32) -> Result<bool, DsmError> {
    dsm.barrier(quiet)?;
    let within = within_budget(dsm)?;
    dsm.barrier(quiet + 1)?;
    Ok(within)
}

/// Every node writes its share of the pages, then reads every page; then each node rewrites
/// the next node's share and everyone reads everything again.
fn spread(dsm: &Dsm) -> Result<bool, DsmError> {
    let n = dsm.nodes();
    if dsm.id() == 0 {
        let v = DsmVec::<u64>::new_zeroed(dsm, SPREAD_PAGES * WORDS)?;
        dsm.publish(1, v.offset() as u64);
    }
    dsm.barrier(1)?;
    let v = DsmVec::<u64>::attach(dsm, dsm.lookup(1) as usize, SPREAD_PAGES * WORDS)?;
    for page in share(SPREAD_PAGES, dsm.id(), n) {
        for w in 0..WORDS {
            v.set(page * WORDS + w, pattern(page * WORDS + w, 1));
        }
    }
    dsm.barrier(2)?;
    let mut ok = check_all(&v, 1);
    ok &= within_budget_when_quiet(dsm, 20)?;
    dsm.barrier(3)?;
    let next = (dsm.id() as usize + 1) % n;
    for page in share(SPREAD_PAGES, next as u16, n) {
        for w in 0..WORDS {
            v.set(page * WORDS + w, pattern(page * WORDS + w, 2));
        }
    }
    // Copies invalidated by the other nodes' writes gave their memory back too.
    ok &= within_budget_when_quiet(dsm, 40)?;
    ok &= check_all(&v, 2);
    ok &= within_budget_when_quiet(dsm, 42)?;
    dsm.barrier(5)?;
    // Copies of the first 4 pages everywhere but at their owner, which then rewrites them.
    let owner = (0..n).find(|&k| share(SPREAD_PAGES, ((k + 1) % n) as u16, n).contains(&0));
    if Some(dsm.id() as usize) != owner {
        ok &= (0..4 * WORDS).all(|i| v.get(i) == pattern(i, 2));
    }
    dsm.barrier(6)?;
    if Some(dsm.id() as usize) == owner {
        (0..4 * WORDS).for_each(|i| v.set(i, pattern(i, 3)));
    }
    ok &= within_budget_when_quiet(dsm, 70)?;
    dsm.barrier(8)?;
    Ok(ok)
}

/// Per node: dropped copies, passed ownership, handed off, written back, dropped clean,
/// hand-offs accepted and refused, pages read back (`EvictionStats::named`'s order).
type Counters = [u64; 8];

/// Runs `body` on a 3-node cluster with `budget` bytes per node and `hold_us`; asserts that
/// every node verified, and returns their eviction counters.
fn run(
    body: &str,
    manager: ManagerKind,
    backend: Backend,
    budget: u64,
    hold_us: u64,
) -> Vec<Counters> {
    let what = format!("{body} ({manager}, {backend}, budget {budget}, hold {hold_us} us)");
    let outputs = support::launch_verified(&what, NODES, |slot| {
        let mut cmd = support::node_command_with_manager(slot, body, backend, manager);
        cmd.env(support::BUDGET_ENV, budget.to_string())
            .env(support::HOLD_US_ENV, hold_us.to_string());
        cmd
    });
    let counters: Vec<Counters> = outputs
        .iter()
        .map(|out| {
            let line = support::line_after(&what, out, "evictions: ");
            let mut counters = [0u64; 8];
            for (c, field) in counters.iter_mut().zip(line.split_whitespace()) {
                *c = field.parse().expect("counter");
            }
            counters
        })
        .collect();
    // Shown with --nocapture: which classes ran where.
    println!("{what}: {counters:?}");
    counters
}

fn total(counters: &[Counters], class: usize) -> u64 {
    counters.iter().map(|c| c[class]).sum()
}

const MANAGERS: [ManagerKind; 3] = [
    ManagerKind::Central,
    ManagerKind::Fixed,
    ManagerKind::Dynamic,
];

#[test]
fn data_survives_every_eviction_class_under_every_manager() {
    // 8 frames per node against 36 pages each node reads.
    let budget = 8 * PAGE_SIZE as u64;
    for manager in MANAGERS {
        for backend in [Backend::Sigsegv, Backend::Uffd] {
            // Which classes a run needs depends on the order of the nodes' faults: runs are
            // repeated (each verifying its data) until every class has run in one of them.
            let mut runs: Vec<Vec<Counters>> = Vec::new();
            let ran =
                |runs: &[Vec<Counters>], class: usize| runs.iter().any(|c| total(c, class) > 0);
            while runs.len() < 4
                && !(ran(&runs, 0)
                    && ran(&runs, 1)
                    && ran(&runs, 7)
                    && (2..5).any(|k| ran(&runs, k)))
            {
                let c = run("spread", manager, backend, budget, 0);
                // Every hand-off that left a node was accepted by another.
                assert_eq!(
                    total(&c, 2),
                    total(&c, 5),
                    "hand-offs: spread ({manager}, {backend}): {c:?}"
                );
                runs.push(c);
            }
            let what = format!(
                "spread ({manager}, {backend}) in {} runs: {runs:?}",
                runs.len()
            );
            assert!(ran(&runs, 0), "no read copy was dropped: {what}");
            assert!(ran(&runs, 1), "no ownership was passed on: {what}");
            assert!(
                (2..5).any(|k| ran(&runs, k)),
                "no only copy was handed off or written back: {what}"
            );
            assert!(ran(&runs, 7), "nothing came back from a store: {what}");
        }
    }
}

#[test]
fn matmul_and_sort_verify_under_half_their_working_set() {
    // matmul touches 7 pages (A, B, C and the directory): 4 frames; sort 17: 8 frames.
    for (app, frames) in [("matmul", 4u64), ("sort", 8)] {
        for manager in MANAGERS {
            let c = run(app, manager, Backend::Sigsegv, frames * PAGE_SIZE as u64, 0);
            let evictions: u64 = (0..5).map(|class| total(&c, class)).sum();
            assert!(evictions > 0, "{app} ({manager}) evicted nothing: {c:?}");
        }
    }
}

#[test]
fn the_hold_timer_fires_with_and_without_a_budget() {
    // counter moves one page between all nodes under a lock: every request for it waits
    // for the holder's Δt to end, so a timer that never fired would hang the cluster.
    for manager in MANAGERS {
        run("counter", manager, Backend::Sigsegv, 1 << 20, 1000);
        run("spread", manager, Backend::Uffd, 8 * PAGE_SIZE as u64, 100);
    }
}
