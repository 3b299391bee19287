//! Exhaustive model checking (stateright, breadth first) of the coherence protocol with
//! capabilities, for every manager: 3 nodes, one page, a range node 0 minted (node 2 holds a
//! read-write-grant capability derived from node 0's, node 1 nothing); node 2 derives a
//! read-only capability for node 1 and node 0 revokes node 2's at any point of the runs,
//! among 3 faults (2 writes) for read and write by any node and messages delivered in every
//! order; in a configuration of its own (no derivation or revocation), node 2 restricting its
//! own capability to read and grant at any point; and, with 2 faults and a budget of one
//! frame per node, one eviction at any point (of a fenced page too) (see `model_support::rights`; public pages are the other models'). Checks that no node ever has more access
//! than the capabilities it holds allow (none through a revoked one once the revocation has
//! returned), that no grant or forward gives a node an access no capability of its allows,
//! that no fault the rights allow everywhere is refused, the coherence invariants (no
//! acknowledged write lost, single writer, exact copysets), and that every fault ends,
//! served or refused, from every state.

// Shared with the other model_* test binaries, each of which uses only part of it.
#[allow(dead_code)]
mod model_support;

use std::time::Instant;

use memlink_dsm::ManagerKind;
use model_support::rights::RightsModel;
use model_support::{CoherenceModel, counterexample};
use stateright::{Checker, Model};

fn model(kind: ManagerKind) -> RightsModel {
    RightsModel {
        base: CoherenceModel {
            pages: 1,
            faults: 3,
            ..CoherenceModel::base(kind)
        },
        restrict: false,
        derive: true,
        revoke: true,
    }
}

/// The restriction's own configuration, kept apart so that adding its step keeps the suite's
/// time: node 2 may restrict its capability to read and grant at any point (the derivation
/// and revocation are the first configuration's).
fn restrict_model(kind: ManagerKind) -> RightsModel {
    let mut m = model(kind);
    m.restrict = true;
    m.derive = false;
    m.revoke = false;
    m
}

/// Eviction of fenced pages: 2 faults, a budget of one frame per node and one eviction at
/// any point; node 0 revokes node 2's capability at any point (which fences node 2's page, to
/// be evicted like any page whose contents are here), no derivation.
fn fenced_eviction_model(kind: ManagerKind) -> RightsModel {
    let mut m = model(kind);
    m.derive = false;
    m.base.faults = 2;
    m.base.frames = Some(1);
    m.base.evictions = 1;
    m
}

/// Explore every state of `model`; panic with the shortest counterexample of the first
/// property broken. Returns the number of distinct states.
fn check(model: RightsModel) -> usize {
    let started = Instant::now();
    let checker = model.checker().spawn_bfs().join();
    let states = checker.unique_state_count();
    println!(
        "{:?} with capabilities: {} faults ({} writes): {} states, depth {}, {:.2?}",
        model.base.kind,
        model.base.faults,
        model.base.writes,
        states,
        checker.max_depth(),
        started.elapsed()
    );
    let what = format!("{:?} manager with capabilities", model.base.kind);
    model_support::assert_unbroken(&what, &checker, |name, s| model.explain(name, s));
    assert!(checker.is_done(), "the exploration did not finish");
    states
}

#[test]
#[ignore = "a CPU-bound model: scripts/test-all.sh runs it beside the other tests; alone: cargo test -p memlink-models -- --ignored"]
fn the_dynamic_manager_enforces_rights_and_revocation() {
    check_manager(model, ManagerKind::Dynamic);
}

/// The same for the central manager (a test of its own: the three largest runs go in
/// parallel).
#[test]
#[ignore = "a CPU-bound model: scripts/test-all.sh runs it beside the other tests; alone: cargo test -p memlink-models -- --ignored"]
fn the_central_manager_enforces_rights_and_revocation() {
    check_manager(model, ManagerKind::Central);
}

/// The same for the fixed distributed manager.
#[test]
#[ignore = "a CPU-bound model: scripts/test-all.sh runs it beside the other tests; alone: cargo test -p memlink-models -- --ignored"]
fn the_fixed_manager_enforces_rights_and_revocation() {
    check_manager(model, ManagerKind::Fixed);
}

/// A holder's restriction of its own capability binds the managers and owners: none decides
/// to serve node 2 a write once the restriction returned (nor anything its own table does not
/// allow), and node 2's access drops at once.
#[test]
#[ignore = "a CPU-bound model: scripts/test-all.sh runs it beside the other tests; alone: cargo test -p memlink-models -- --ignored"]
fn every_manager_enforces_a_restriction() {
    check_every_manager(restrict_model);
}

/// Fenced pages (a revocation took the access, the contents stay) are evicted like the others:
/// no write is lost, copysets stay exact, every fault ends.
#[test]
#[ignore = "a CPU-bound model: scripts/test-all.sh runs it beside the other tests; alone: cargo test -p memlink-models -- --ignored"]
fn every_manager_evicts_fenced_pages() {
    check_every_manager(fenced_eviction_model);
}

fn check_every_manager(model: fn(ManagerKind) -> RightsModel) {
    for kind in [
        ManagerKind::Dynamic,
        ManagerKind::Central,
        ManagerKind::Fixed,
    ] {
        check_manager(model, kind);
    }
}

/// Checks `model(kind)`'s properties, then that every fault can end from every state.
fn check_manager(model: fn(ManagerKind) -> RightsModel, kind: ManagerKind) {
    let m = model(kind);
    let states = check(m);
    assert!(states > 1000, "{kind:?}: only {states} states explored");
    let started = Instant::now();
    match model_support::progress(&m, |s| m.finished(s)) {
        Ok(n) => println!(
            "{kind:?} with capabilities: every fault can still end from all {n} states, {:.2?}",
            started.elapsed()
        ),
        Err(trapped) => {
            let title = format!(
                "{kind:?} manager with capabilities: after these {} steps no run ends every fault:",
                trapped.path.len()
            );
            let why = m.explain("every fault ends", &trapped.state);
            panic!("{}", counterexample(&title, &trapped.path, &why));
        }
    }
}
