//! Exhaustive model checking (stateright, breadth first) of the coherence protocol's own state
//! machines, for every manager the protocol implements: 3 nodes, 2 pages, messages delivered
//! in every order, threads faulting for read and write (one fault at a time per node, and
//! again with each node waiting on both pages at once, as a prefetch does). Checks that every
//! state has at most one writer per page, that every read copy is in the copyset, that no
//! acknowledged write is lost, that the protocol accepts every message, and that every fault
//! is served: every run that stops has served them all (no deadlock), and from every state a
//! run that serves them all exists (no livelock, under fair scheduling). A broken property
//! panics with the shortest trace that breaks it.

// Shared with the other model_* test binaries, each of which uses only part of it.
#[allow(dead_code)]
mod model_support;

use std::io::Write;
use std::time::{Duration, Instant};

use memlink_dsm::ManagerKind;
use memlink_dsm::protocol::Coherence;
use model_support::{CoherenceModel, counterexample};
use stateright::{Checker, Model};

/// How often a long exploration says how far it got.
const PROGRESS_EVERY: Duration = Duration::from_secs(20);

/// The managers the protocol implements (it refuses the others at start).
fn implemented_managers() -> Vec<ManagerKind> {
    [
        ManagerKind::Central,
        ManagerKind::Fixed,
        ManagerKind::Dynamic,
    ]
    .into_iter()
    .filter(|&k| Coherence::new(0, 3, 2, k).is_ok())
    .collect()
}

/// Explore every state of `model`; panic with the shortest counterexample of the first
/// property broken. Returns the number of distinct states.
fn check(model: CoherenceModel) -> usize {
    let started = Instant::now();
    let checker = model
        .checker()
        .threads(std::thread::available_parallelism().map_or(1, |n| n.get()))
        .spawn_bfs();
    // A progress line every PROGRESS_EVERY while the exploration runs (written to stderr
    // itself, which the test harness does not capture). Polling only paces these lines:
    // join() below is what waits for the checker.
    let mut reported = Instant::now();
    while !checker.is_done() {
        std::thread::sleep(Duration::from_millis(100));
        if reported.elapsed() >= PROGRESS_EVERY {
            reported = Instant::now();
            let _ = writeln!(
                std::io::stderr(),
                "model_coherence: {:?} manager, {} faults at once: {} states so far, depth {}, {:.0?}",
                model.kind,
                model.concurrent,
                checker.unique_state_count(),
                checker.max_depth(),
                started.elapsed()
            );
        }
    }
    let checker = checker.join();
    let states = checker.unique_state_count();
    println!(
        "{:?}: {} nodes, {} pages, {} faults ({} writes), frames {:?}, hold {}: {} states \
         ({} visits), depth {}, {:.2?}",
        model.kind,
        model.nodes,
        model.pages,
        model.faults,
        model.writes,
        model.frames,
        model.hold,
        states,
        checker.state_count(),
        checker.max_depth(),
        started.elapsed()
    );
    let what = format!("{:?} manager", model.kind);
    model_support::assert_unbroken(&what, &checker, |name, s| model.explain(name, s));
    assert!(checker.is_done(), "the exploration did not finish");
    states
}

/// 2 nodes, 1 page, 3 faults: the small cluster of the pager's configurations (its clean
/// requests and locks).
fn pager_cluster(kind: ManagerKind) -> CoherenceModel {
    CoherenceModel {
        nodes: 2,
        pages: 1,
        faults: 3,
        ..CoherenceModel::base(kind)
    }
}

/// For every implemented manager: checks `model(kind)`'s properties (at least `min_states`
/// distinct states explored), then that every fault can still be served from every state.
fn check_config(model: fn(ManagerKind) -> CoherenceModel, min_states: usize) {
    for kind in implemented_managers() {
        let m = model(kind);
        let states = check(m);
        assert!(
            states > min_states,
            "{kind:?}: only {states} states explored"
        );
        check_progress(m);
    }
}

#[test]
#[ignore = "a CPU-bound model: scripts/test-all.sh runs it beside the other tests; alone: cargo test -p memlink-models -- --ignored"]
fn every_manager_is_coherent_on_3_nodes_and_2_pages() {
    let managers = implemented_managers();
    assert!(managers.contains(&ManagerKind::Central) && managers.contains(&ManagerKind::Fixed));
    for kind in managers {
        let states = check(CoherenceModel {
            writes: 3,
            ..CoherenceModel::base(kind)
        });
        assert!(states > 1000, "{kind:?}: only {states} states explored");
    }
}

/// Check that from every state of `model` every fault can still be served; panic with the
/// shortest path to a state from which none can.
fn check_progress(model: CoherenceModel) {
    let started = Instant::now();
    match model.check_progress() {
        Ok(states) => println!(
            "{:?}, {} faults at once: progress possible from all {states} states, {:.2?}",
            model.kind,
            model.concurrent,
            started.elapsed()
        ),
        Err(trapped) => {
            let title = format!(
                "{:?} manager, {} faults at once: after these {} steps no run serves every fault:",
                model.kind,
                model.concurrent,
                trapped.path.len()
            );
            let why = model.explain("every fault is served", &trapped.state);
            panic!("{}", counterexample(&title, &trapped.path, &why));
        }
    }
}

#[test]
#[ignore = "a CPU-bound model: scripts/test-all.sh runs it beside the other tests; alone: cargo test -p memlink-models -- --ignored"]
fn from_every_state_every_fault_can_still_be_served() {
    for kind in implemented_managers() {
        check_progress(CoherenceModel::base(kind));
    }
}

/// A node with several faults under way at once (several application threads, or one
/// prefetch of several pages, see `NodeRuntime::prefetch_start`): each node may wait for both
/// pages at the same time, requests for the two pages crossing in every order.
#[test]
#[ignore = "a CPU-bound model: scripts/test-all.sh runs it beside the other tests; alone: cargo test -p memlink-models -- --ignored"]
fn every_manager_is_coherent_with_several_faults_under_way_per_node() {
    check_config(
        |kind| CoherenceModel {
            concurrent: 2,
            ..CoherenceModel::base(kind)
        },
        1000,
    );
}

/// Page replacement under a budget of one frame per node: every page starts in the backing
/// store; a node that needs a frame and holds its budget evicts first (and once in a run, a
/// node evicts before it needs to), in every way the protocol allows (drop a read copy, pass
/// ownership to a holder of a copy, hand an only copy off to any other node, which refuses
/// when full, or write it back), and a later fault on a page written back gets it from the
/// store. Coherent (no acknowledged write lost, copysets
/// exact, at most one writer, never more pages than frames) and live (every fault served),
/// for every manager.
#[test]
#[ignore = "a CPU-bound model: scripts/test-all.sh runs it beside the other tests; alone: cargo test -p memlink-models -- --ignored"]
fn every_manager_is_coherent_and_live_with_one_frame_per_node() {
    check_config(
        |kind| CoherenceModel {
            faults: 2,
            frames: Some(1),
            evictions: 1,
            ..CoherenceModel::base(kind)
        },
        1000,
    );
}

/// The Δt hold: a page whose access went up stays at least until its timer fires (at any
/// later step); forwards, invalidations and requests that would take it away or lower its
/// access wait for the timer, then are handled in arrival order. Coherent and live for every
/// manager.
#[test]
#[ignore = "a CPU-bound model: scripts/test-all.sh runs it beside the other tests; alone: cargo test -p memlink-models -- --ignored"]
fn every_manager_is_coherent_and_live_with_the_hold() {
    check_config(
        |kind| CoherenceModel {
            faults: 3,
            hold: true,
            ..CoherenceModel::base(kind)
        },
        1000,
    );
}

/// A pager's `clean_request` under a budget of one frame per node: an owner writes a dirty
/// page back at any step and keeps it read-only, so that a later write faults and makes it
/// dirty again; a clean page is dropped at eviction without a write. No acknowledged write
/// is lost, copysets stay exact, every fault is served, for every manager (2 nodes, 1 page:
/// a small state space).
#[test]
#[ignore = "a CPU-bound model: scripts/test-all.sh runs it beside the other tests; alone: cargo test -p memlink-models -- --ignored"]
fn every_manager_is_coherent_and_live_with_clean_requests() {
    check_config(
        |kind| CoherenceModel {
            frames: Some(1),
            evictions: 1,
            cleans: 1,
            ..pager_cluster(kind)
        },
        100,
    );
}

/// A pager's `data_lock` and `data_unlock`: at any step the pager locks a page at a node to
/// any access (twice in a run), and answers each `data_unlock` a fault sends it, granting or
/// refusing, at any later step. No node ever has more access than its lock, no
/// acknowledged write is lost (a lock below the access a page has fences it, keeping its
/// contents), copysets stay exact, and every fault is served or refused, for every manager
/// (2 nodes, 1 page).
#[test]
#[ignore = "a CPU-bound model: scripts/test-all.sh runs it beside the other tests; alone: cargo test -p memlink-models -- --ignored"]
fn every_manager_is_coherent_and_live_with_pager_locks() {
    check_config(
        |kind| CoherenceModel {
            locks: 2,
            ..pager_cluster(kind)
        },
        1000,
    );
}

/// The pager's locks under a budget of one frame per node: pages locked while they are
/// paged in and out, handed off and written back.
#[test]
#[ignore = "a CPU-bound model: scripts/test-all.sh runs it beside the other tests; alone: cargo test -p memlink-models -- --ignored"]
fn every_manager_is_coherent_and_live_with_pager_locks_and_one_frame() {
    check_config(
        |kind| CoherenceModel {
            frames: Some(1),
            evictions: 1,
            locks: 2,
            ..pager_cluster(kind)
        },
        10_000,
    );
}

/// Runs of a node's own pages paged in, or dropped clean, in one step without a message (the
/// read-ahead of a file and the eviction of what it read), at any step where the protocol
/// lets the node take them alone, beside faults, evictions and messages in every order, on 2
/// nodes and 2 pages: with one frame per node (runs of one page), and with two (runs of
/// both pages). No acknowledged write is lost (a dirty page or one with copies is
/// never dropped alone), copysets stay exact, every fault is served, for every manager.
#[test]
#[ignore = "a CPU-bound model: scripts/test-all.sh runs it beside the other tests; alone: cargo test -p memlink-models -- --ignored"]
fn every_manager_is_coherent_and_live_with_runs_paged_in_and_dropped_alone() {
    check_config(
        |kind| CoherenceModel {
            nodes: 2,
            faults: 2,
            frames: Some(1),
            evictions: 1,
            runs: 2,
            ..CoherenceModel::base(kind)
        },
        1000,
    );
    check_config(
        |kind| CoherenceModel {
            nodes: 2,
            faults: 2,
            frames: Some(2),
            evictions: 1,
            runs: 2,
            ..CoherenceModel::base(kind)
        },
        1000,
    );
}

/// A pager that fails (Mach's `data_error`): at any step the pager starts failing every
/// read, under a budget of one frame per node (every page starts in the store, at node 0).
/// Each page-in from then on is undone: the owner keeps the page paged out, a requester
/// elsewhere is told and ends the manager's transaction. No node holds a page whose
/// page-in failed, no acknowledged write is lost, copysets stay exact, and every fault is
/// answered, served or failed, for every manager (3 nodes, 1 page).
#[test]
#[ignore = "a CPU-bound model: scripts/test-all.sh runs it beside the other tests; alone: cargo test -p memlink-models -- --ignored"]
fn every_manager_is_coherent_and_live_when_the_pager_fails() {
    check_config(
        |kind| CoherenceModel {
            pages: 1,
            faults: 3,
            frames: Some(1),
            evictions: 1,
            pager_fails: true,
            ..CoherenceModel::base(kind)
        },
        1000,
    );
}

/// A pager whose writes fail (a `data_write` that errs: a full disk), from any step, then work
/// again from any later step, under a budget of one frame per node: a write-back that fails
/// keeps the page's version at its node (taking its frame; reads of the page from the store
/// there get it) until the node writes it again after the recovery, or gives the page's
/// ownership away with it. No acknowledged write is lost, no node holds more than its
/// budget with the pages it kept, copysets stay exact, and every fault is served, for every
/// manager (2 nodes, 1 page).
#[test]
#[ignore = "a CPU-bound model: scripts/test-all.sh runs it beside the other tests; alone: cargo test -p memlink-models -- --ignored"]
fn every_manager_is_coherent_and_live_when_the_pagers_writes_fail() {
    check_config(
        |kind| CoherenceModel {
            frames: Some(1),
            evictions: 2,
            write_fails: true,
            ..pager_cluster(kind)
        },
        1000,
    );
}
