//! The state machine driving several nodes in memory, with deliveries reordered.

use super::message::EvictClass;
use super::sim::SimCluster;
use super::{Coherence, Effect, Message};
use crate::types::{Access, ManagerKind, NodeId, PageNo};

/// A small deterministic random generator (xorshift64*), so each seed replays exactly.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n
    }
}

fn drain_in_order(c: &mut SimCluster) {
    while !c.in_flight.is_empty() {
        c.deliver(0).unwrap();
        c.check().unwrap();
    }
}

#[test]
fn a_write_is_read_elsewhere_and_invalidates_copies() {
    for kind in [
        ManagerKind::Central,
        ManagerKind::Fixed,
        ManagerKind::Dynamic,
    ] {
        let mut c = SimCluster::new(4, 3, kind).unwrap();
        // Nodes 1, 2 and 3 take read copies of page 2.
        for n in 1..4 {
            c.fault(n, 2, Access::Read).unwrap();
            drain_in_order(&mut c);
            assert_eq!(c.read(n, 2).unwrap(), 0);
        }
        assert_eq!(c.access(0, 2), Access::Read, "the owner was downgraded");
        // Node 3 writes: every other copy is invalidated, and node 3 got no data
        // (its copy was current).
        c.fault(3, 2, Access::Write).unwrap();
        let mut saw_data = false;
        while !c.in_flight.is_empty() {
            saw_data |= c.in_flight[0].data.is_some();
            c.deliver(0).unwrap();
            c.check().unwrap();
        }
        assert!(
            !saw_data,
            "ownership moved to a current copy without the contents"
        );
        for n in 0..3 {
            assert_eq!(c.access(n, 2), Access::None);
        }
        let v = c.write(3, 2).unwrap();
        c.fault(1, 2, Access::Read).unwrap();
        drain_in_order(&mut c);
        assert_eq!(c.read(1, 2).unwrap(), v);
        assert!(c.quiescent());
    }
}

#[test]
fn the_owner_upgrades_in_place() {
    for kind in [ManagerKind::Central, ManagerKind::Dynamic] {
        let mut c = SimCluster::new(2, 1, kind).unwrap();
        c.fault(1, 0, Access::Read).unwrap();
        drain_in_order(&mut c);
        assert_eq!(c.access(0, 0), Access::Read);
        c.fault(0, 0, Access::Write).unwrap();
        drain_in_order(&mut c);
        assert_eq!(c.access(0, 0), Access::Write);
        assert_eq!(c.access(1, 0), Access::None);
        assert!(c.quiescent());
    }
}

#[test]
fn a_fault_already_satisfied_is_served_at_once() {
    let mut c = SimCluster::new(2, 1, ManagerKind::Central).unwrap();
    let e = c.nodes[0].fault(0, Access::Write).unwrap();
    assert_eq!(e, vec![Effect::Served { page: 0 }]);
    // A second fault while one is pending sends nothing more.
    assert_eq!(c.nodes[1].fault(0, Access::Read).unwrap().len(), 1);
    assert!(c.nodes[1].fault(0, Access::Write).unwrap().is_empty());
}

#[test]
fn messages_that_do_not_fit_the_state_are_errors() {
    let mut c = SimCluster::new(3, 1, ManagerKind::Central).unwrap();
    let grant = Message::Grant {
        page: 0,
        access: Access::Write,
        with_data: true,
    };
    assert!(
        c.nodes[1].handle(0, grant).is_err(),
        "grant that was not asked for"
    );
    let fwd = Message::ReadForward { page: 0, to: 2 };
    assert!(c.nodes[1].handle(0, fwd).is_err(), "forward to a non-owner");
    assert!(
        c.nodes[1]
            .handle(0, Message::ReadRequest { page: 0 })
            .is_err()
    );
    assert!(
        c.nodes[0]
            .handle(9, Message::ReadRequest { page: 0 })
            .is_err()
    );
    assert!(
        c.nodes[0]
            .handle(1, Message::ReadRequest { page: 5 })
            .is_err()
    );
    let confirm = Message::Confirm {
        page: 0,
        access: Access::Read,
    };
    assert!(
        c.nodes[0].handle(1, confirm).is_err(),
        "confirm with no transaction"
    );
}

/// Random programs of reads and writes on every node, messages delivered in random order;
/// the invariants hold after every step, every read sees the last write, and every fault is
/// eventually served.
fn random_run(kind: ManagerKind, nodes: usize, pages: u32, seed: u64, steps: usize) {
    let mut c = SimCluster::new(nodes, pages, kind).unwrap();
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    // What each node's (single) application thread is waiting for.
    let mut waiting: Vec<Option<(PageNo, Access)>> = vec![None; nodes];
    let mut reads = 0;
    for _ in 0..steps {
        if !c.in_flight.is_empty() && rng.below(3) > 0 {
            let i = rng.below(c.in_flight.len());
            c.deliver(i).unwrap();
        } else {
            let n = rng.below(nodes);
            let (page, access) = waiting[n].unwrap_or_else(|| {
                let a = if rng.below(2) == 0 {
                    Access::Read
                } else {
                    Access::Write
                };
                (rng.below(pages as usize) as PageNo, a)
            });
            if c.access(n as NodeId, page) >= access {
                waiting[n] = None;
                if access == Access::Write {
                    c.write(n as NodeId, page).unwrap();
                } else {
                    assert_eq!(c.read(n as NodeId, page).unwrap(), c.latest[page as usize]);
                    reads += 1;
                }
            } else {
                waiting[n] = Some((page, access));
                c.fault(n as NodeId, page, access).unwrap();
            }
        }
        if let Err(e) = c.check() {
            panic!("{kind:?} seed {seed}: {e}");
        }
    }
    // Liveness: deliver everything left, in random order, re-faulting as threads would.
    let mut guard = 0;
    loop {
        for (n, w) in waiting.iter_mut().enumerate() {
            if let Some((page, access)) = *w {
                if c.access(n as NodeId, page) >= access {
                    *w = None;
                } else {
                    c.fault(n as NodeId, page, access).unwrap();
                }
            }
        }
        if c.in_flight.is_empty() {
            break;
        }
        let i = rng.below(c.in_flight.len());
        c.deliver(i).unwrap();
        c.check().unwrap();
        guard += 1;
        assert!(guard < 100_000, "{kind:?} seed {seed}: no progress");
    }
    if !waiting.iter().all(Option::is_none) {
        eprintln!("waiting {waiting:?}");
        for n in &c.nodes {
            for p in 0..pages {
                eprintln!(
                    "node {} page {p}: {:?} {:?}",
                    n.id(),
                    n.page(p),
                    n.dynamic_entry(p)
                );
            }
        }
    }
    assert!(
        waiting.iter().all(Option::is_none),
        "{kind:?} seed {seed}: a fault was never served"
    );
    assert!(c.quiescent());
    assert!(reads > 0);
}

#[test]
fn random_programs_with_reordered_deliveries_stay_coherent() {
    for kind in [
        ManagerKind::Central,
        ManagerKind::Fixed,
        ManagerKind::Dynamic,
    ] {
        for seed in 0..200 {
            random_run(kind, 4, 3, seed, 400);
        }
        for seed in 0..50 {
            random_run(kind, 2, 1, seed, 200);
        }
    }
}

#[test]
fn fixed_manager_spreads_pages() {
    let c = SimCluster::new(3, 6, ManagerKind::Fixed).unwrap();
    let managers: Vec<_> = (0..6).map(|p| c.nodes[0].manager_of(p)).collect();
    assert_eq!(managers, vec![0, 1, 2, 0, 1, 2]);
    assert!(c.nodes[1].manager_entry(1).is_some());
    assert!(c.nodes[1].manager_entry(0).is_none());
}
#[test]
#[ignore = "a long sweep: run by hand"]
fn long_sweep() {
    for kind in [
        ManagerKind::Central,
        ManagerKind::Fixed,
        ManagerKind::Dynamic,
    ] {
        for seed in 0..5000 {
            random_run(
                kind,
                3 + (seed % 3) as usize,
                1 + (seed % 2) as u32,
                seed,
                600,
            );
        }
    }
}

/// Found by the protocol_codec fuzz target: a forward (or a dynamic request) naming a node
/// outside the cluster is refused, not obeyed with a send to a peer that does not exist.
#[test]
fn a_message_naming_a_node_outside_the_cluster_is_refused() {
    use super::Coherence;
    for kind in [
        ManagerKind::Central,
        ManagerKind::Fixed,
        ManagerKind::Dynamic,
    ] {
        let mut owner = Coherence::new(0, 3, 8, kind).unwrap();
        for msg in [
            Message::ReadForward { page: 4, to: 512 },
            Message::WriteForward {
                page: 4,
                to: 3,
                send_data: true,
            },
            Message::Request {
                page: 4,
                requester: 7,
                access: Access::Read,
            },
        ] {
            let err = owner.handle(1, msg).unwrap_err();
            assert!(err.to_string().contains("outside the cluster"), "{err}");
        }
    }
}

/// Deliver everything, in order, checking the invariants after each step.
fn settle(c: &mut SimCluster) {
    drain_in_order(c);
    assert!(c.quiescent(), "something is still under way");
}

fn copyset_of(c: &SimCluster, page: PageNo) -> u64 {
    match c.nodes[0].kind() {
        ManagerKind::Dynamic => {
            let owner = (0..c.nodes.len())
                .find(|&n| c.nodes[n].page(page).is_some_and(|s| s.owner))
                .expect("an owner");
            c.nodes[owner].dynamic_entry(page).unwrap().copyset.0
        }
        _ => {
            let m = c.nodes[0].manager_of(page) as usize;
            c.nodes[m].manager_entry(page).unwrap().copyset.0
        }
    }
}

fn owner_of(c: &SimCluster, page: PageNo) -> usize {
    (0..c.nodes.len())
        .find(|&n| c.nodes[n].page(page).is_some_and(|s| s.owner))
        .expect("an owner")
}

#[test]
fn every_eviction_class_under_a_budget_of_one_frame() {
    for kind in [
        ManagerKind::Central,
        ManagerKind::Fixed,
        ManagerKind::Dynamic,
    ] {
        let mut c = SimCluster::with_budget(3, 2, kind, 1).unwrap();
        assert!(c.nodes[0].page(0).unwrap().paged_out(), "{kind:?}");
        // Node 1 reads page 0 from the store (node 0 owns it, paged out), then writes it.
        c.fault(1, 0, Access::Read).unwrap();
        settle(&mut c);
        assert_eq!(c.read(1, 0).unwrap(), 0);
        c.fault(1, 0, Access::Write).unwrap();
        settle(&mut c);
        let v1 = c.write(1, 0).unwrap();
        c.fault(2, 0, Access::Read).unwrap();
        settle(&mut c);
        assert_eq!(copyset_of(&c, 0), 1 << 2, "{kind:?}");
        // 1. Node 2 drops its read copy: off the copyset, no data moves.
        c.evict(2, 0, None).unwrap();
        assert!(
            c.in_flight.iter().all(|e| e.data.is_none()),
            "{kind:?}: data moved for a dropped copy"
        );
        settle(&mut c);
        assert_eq!(c.access(2, 0), Access::None);
        assert_eq!(copyset_of(&c, 0), 0, "{kind:?}");
        assert!(c.nodes[2].has_free_frame());
        // 2. Node 1 owns page 0, node 2 holds a copy: ownership passes without data.
        c.fault(2, 0, Access::Read).unwrap();
        settle(&mut c);
        c.evict(1, 0, Some(0)).unwrap();
        while !c.in_flight.is_empty() {
            assert!(c.in_flight[0].data.is_none(), "{kind:?}: data moved");
            c.deliver(0).unwrap();
            c.check().unwrap();
        }
        assert_eq!(owner_of(&c, 0), 2, "{kind:?}");
        assert_eq!(c.access(1, 0), Access::None);
        // 3. Node 2 writes and hands the only copy off to node 0, which has room.
        c.fault(2, 0, Access::Write).unwrap();
        settle(&mut c);
        let v2 = c.write(2, 0).unwrap();
        assert!(v2 > v1);
        c.evict(2, 0, Some(0)).unwrap();
        settle(&mut c);
        assert_eq!(owner_of(&c, 0), 0, "{kind:?}");
        assert_eq!(c.read(0, 0).unwrap(), v2);
        // 4. Node 1 fills its frame with page 1; node 0's hand-off to it is refused, so
        // page 0 goes back to the store, and a later fault gets it from there.
        c.fault(1, 1, Access::Read).unwrap();
        settle(&mut c);
        assert!(!c.nodes[1].has_free_frame());
        c.evict(0, 0, Some(1)).unwrap();
        settle(&mut c);
        assert!(c.nodes[0].page(0).unwrap().paged_out(), "{kind:?}");
        assert_eq!(c.store[0], v2);
        assert_eq!(
            c.access(1, 0),
            Access::None,
            "{kind:?}: the full node took it"
        );
        c.fault(2, 0, Access::Read).unwrap();
        settle(&mut c);
        assert_eq!(c.read(2, 0).unwrap(), v2, "{kind:?}");
        // The owner's own fault pages it back in.
        c.fault(0, 0, Access::Write).unwrap();
        settle(&mut c);
        assert_eq!(c.read(0, 0).unwrap(), v2);
        assert_eq!(c.access(2, 0), Access::None);
    }
}

#[test]
fn eviction_of_a_page_not_held_is_refused() {
    let mut c = SimCluster::with_budget(2, 1, ManagerKind::Central, 1).unwrap();
    assert!(c.evict(1, 0, None).is_err(), "node 1 holds nothing");
    assert!(
        c.evict(0, 0, None).is_err(),
        "a paged-out page has no frame"
    );
    c.fault(1, 0, Access::Read).unwrap();
    assert!(c.evict(1, 0, None).is_err(), "a fault is under way");
    settle(&mut c);
    assert!(c.evict(1, 0, Some(7)).is_err(), "no node 7");
}

/// Run a one-node cluster's step and every message it sends itself; all the effects.
fn run_alone(c: &mut Coherence, first: Vec<Effect>) -> Vec<Effect> {
    let mut all = Vec::new();
    let mut todo: std::collections::VecDeque<Effect> = first.into();
    while let Some(e) = todo.pop_front() {
        if let Effect::Send { to: 0, msg } = e {
            todo.extend(c.handle(0, msg).unwrap());
        }
        all.push(e);
    }
    all
}

#[test]
fn only_a_page_written_since_it_came_from_the_store_is_written_back() {
    for kind in [
        ManagerKind::Central,
        ManagerKind::Fixed,
        ManagerKind::Dynamic,
    ] {
        let mut c = Coherence::with_budget(0, 1, 2, kind, 1).unwrap();
        let written_back = |effects: &[Effect]| {
            effects
                .iter()
                .any(|e| matches!(e, Effect::WriteBack { page: 0 }))
        };
        let class = |effects: &[Effect]| {
            effects.iter().find_map(|e| match e {
                Effect::Evicted { page: 0, class } => Some(*class),
                _ => None,
            })
        };
        // Read in from the store and evicted: clean, dropped, nothing written.
        let f = c.fault(0, Access::Read).unwrap();
        let fx = run_alone(&mut c, f);
        assert!(fx.contains(&Effect::PageIn {
            page: 0,
            access: Access::Read
        }));
        assert!(c.page(0).unwrap().clean, "{kind:?}");
        let e = c.evict(0, None).unwrap();
        let fx = run_alone(&mut c, e);
        assert!(!written_back(&fx), "{kind:?}: {fx:?}");
        assert_eq!(class(&fx), Some(EvictClass::DroppedClean), "{kind:?}");
        assert!(c.page(0).unwrap().paged_out() && !c.page(0).unwrap().clean);
        // Read in, then written (upgrade in place): dirty, written back.
        let f = c.fault(0, Access::Read).unwrap();
        run_alone(&mut c, f);
        let f = c.fault(0, Access::Write).unwrap();
        run_alone(&mut c, f);
        assert!(!c.page(0).unwrap().clean, "{kind:?}");
        let e = c.evict(0, None).unwrap();
        let fx = run_alone(&mut c, e);
        assert!(written_back(&fx), "{kind:?}: {fx:?}");
        assert_eq!(class(&fx), Some(EvictClass::WrittenBack), "{kind:?}");
        // Paged in for writing: dirty from the start.
        let f = c.fault(0, Access::Write).unwrap();
        run_alone(&mut c, f);
        assert!(!c.page(0).unwrap().clean, "{kind:?}");
    }
}

/// A run paged in alone, then dropped alone, leaves every node exactly as the ordinary
/// faults and evictions of its pages would (same protocol state, same contents).
#[test]
fn runs_paged_in_and_dropped_alone_end_as_the_ordinary_steps() {
    for (nodes, kind) in [
        (1, ManagerKind::Central),
        (1, ManagerKind::Fixed),
        (1, ManagerKind::Dynamic),
        (3, ManagerKind::Central),
        (3, ManagerKind::Dynamic),
    ] {
        let start = SimCluster::with_budget(nodes, 4, kind, 4).unwrap();
        let mut run = start.clone();
        run.page_in_run(0, 0, 4).unwrap();
        assert!(run.in_flight.is_empty(), "{kind:?}: no message");
        let mut each = start.clone();
        for p in 0..4 {
            each.fault(0, p, Access::Read).unwrap();
            settle(&mut each);
        }
        assert_eq!(run.nodes, each.nodes, "{nodes} nodes, {kind:?}: paged in");
        assert_eq!(run.contents, each.contents, "{kind:?}");
        for p in 0..4 {
            assert!(run.nodes[0].page(p).unwrap().clean, "{kind:?}");
            assert!(run.nodes[0].drops_alone(p), "{kind:?}");
        }
        run.drop_clean_run(0, 1, 3).unwrap();
        for p in 1..4 {
            each.evict(0, p, None).unwrap();
            settle(&mut each);
        }
        assert_eq!(run.nodes, each.nodes, "{nodes} nodes, {kind:?}: dropped");
        assert_eq!(run.contents, each.contents, "{kind:?}");
        assert_eq!(run.store, each.store, "{kind:?}");
        run.check().unwrap();
    }
}

/// A run the node may not take alone is refused whole, and nothing changes: a page managed
/// elsewhere, one another node holds a copy of, a dirty one, one with a fault under way,
/// and runs outside the region.
#[test]
fn runs_the_node_may_not_take_alone_are_refused_whole() {
    // Fixed manager on 2 nodes: node 1 manages page 1.
    let mut c = SimCluster::with_budget(2, 4, ManagerKind::Fixed, 4).unwrap();
    let before = c.clone();
    assert!(
        c.page_in_run(0, 0, 2).is_err(),
        "page 1 is managed by node 1"
    );
    assert!(c.page_in_run(0, 3, 2).is_err(), "past the region");
    assert!(c.page_in_run(0, 0, 0).is_err(), "an empty run");
    assert!(c.page_in_run(0, u32::MAX, 2).is_err(), "overflow");
    assert!(c.page_in_run(1, 0, 1).is_err(), "node 1 owns nothing");
    assert_eq!(c, before, "nothing changed");
    c.page_in_run(0, 0, 1).unwrap();
    c.page_in_run(0, 2, 1).unwrap();
    assert!(c.page_in_run(0, 2, 1).is_err(), "already in");

    let mut c = SimCluster::with_budget(2, 3, ManagerKind::Central, 3).unwrap();
    c.page_in_run(0, 0, 3).unwrap();
    // Node 1 takes a copy of page 1; node 0 writes page 2.
    c.fault(1, 1, Access::Read).unwrap();
    settle(&mut c);
    c.fault(0, 2, Access::Write).unwrap();
    settle(&mut c);
    c.write(0, 2).unwrap();
    assert!(c.nodes[0].drops_alone(0));
    assert!(!c.nodes[0].drops_alone(1), "node 1 holds a copy");
    assert!(!c.nodes[0].drops_alone(2), "dirty");
    let before = c.clone();
    assert!(c.drop_clean_run(0, 0, 2).is_err());
    assert!(c.drop_clean_run(0, 2, 1).is_err());
    assert!(c.drop_clean_run(1, 1, 1).is_err(), "node 1 does not own it");
    assert_eq!(c, before, "nothing changed");
    c.drop_clean_run(0, 0, 1).unwrap();
    // A fault under way on page 0 at node 1: node 0's manager entry is busy.
    c.fault(1, 0, Access::Read).unwrap();
    assert!(c.nodes[0].pages_in_alone(0), "the request is not there yet");
    c.deliver(0).unwrap();
    assert!(!c.nodes[0].pages_in_alone(0), "its manager serves node 1");
    settle(&mut c);
    c.check().unwrap();
}

/// An owner evicting its page that gives it away to a writer first (the manager's forward,
/// sent after its eviction reply, overtook the reply) keeps the frame until the reply, and
/// the reply ends the eviction with no effect on the page but `Served`: the frame is left by a
/// step with neither `Evicted` nor an access change. The runtime therefore returns a page's
/// memory whenever the page stops taking a frame (`Lru::update`), not only at such effects (a
/// page one over the budget, in memory_budget's test, before that).
#[test]
fn an_eviction_overtaken_by_a_forward_leaves_the_frame_without_an_evicted() {
    for kind in [ManagerKind::Central, ManagerKind::Fixed] {
        let mut c = SimCluster::with_budget(3, 1, kind, 4).unwrap();
        let manager = c.nodes[0].manager_of(0) as usize;
        assert_eq!(manager, 0, "{kind:?}: page 0's manager");
        c.fault(1, 0, Access::Write).unwrap();
        settle(&mut c);
        c.write(1, 0).unwrap();
        c.evict(1, 0, None).unwrap();
        // The manager answers the eviction (write it back), then serves node 2's write.
        let at = |c: &SimCluster, f: &dyn Fn(&Message) -> bool| {
            c.in_flight.iter().position(|e| f(&e.msg)).unwrap()
        };
        let evict = at(&c, &|m| matches!(m, Message::Evict { .. }));
        c.deliver(evict).unwrap();
        c.fault(2, 0, Access::Write).unwrap();
        let request = at(&c, &|m| matches!(m, Message::WriteRequest { .. }));
        c.deliver(request).unwrap();
        // The forward overtakes the reply: node 1 gives the page away, still evicting.
        let forward = at(&c, &|m| matches!(m, Message::WriteForward { .. }));
        c.deliver(forward).unwrap();
        let st = c.nodes[1].page(0).unwrap();
        assert!(
            !st.owner && st.access == Access::None && st.uses_frame(),
            "{kind:?}: {st:?}"
        );
        let reply = at(&c, &|m| matches!(m, Message::EvictReply { .. }));
        let env = c.in_flight.remove(reply);
        let effects = c.nodes[1].handle(env.from, env.msg).unwrap();
        assert_eq!(effects, vec![Effect::Served { page: 0 }], "{kind:?}");
        assert!(!c.nodes[1].page(0).unwrap().uses_frame(), "{kind:?}");
        c.apply(1, effects, None).unwrap();
        settle(&mut c);
        c.check().unwrap();
    }
}
