//! The model's invariants, checked after every step of random schedules on clusters larger
//! than the exhaustive model reaches (4 nodes, 4 pages), through the protocol simulator
//! (`protocol::sim::SimCluster`, the same `Coherence` state machines): proptest draws the
//! schedule (which node faults on which page for what, which message in flight arrives next)
//! and shrinks a failing one to a short trace. A second run gives every node a budget of two
//! frames (of four pages): a node evicts where the schedule says, and before a fault that
//! needs a frame it does not have.

// Shared with the other model_* test binaries, each of which uses only part of it.
#[allow(dead_code)]
mod model_support;

use memlink_dsm::protocol::sim::SimCluster;
use memlink_dsm::protocol::{Coherence, PageState};
use memlink_dsm::{Access, ManagerKind, NodeId, PageNo};
use model_support::invariants::{self, ClusterView};
use proptest::prelude::*;

const NODES: usize = 4;
const PAGES: u32 = 4;

/// One scheduling choice.
#[derive(Clone, Copy, Debug)]
enum Choice {
    /// Deliver the in-flight message at this index (modulo the number in flight).
    Deliver(usize),
    /// This node's thread runs: it completes the access it waits for if it has it, faults
    /// again if it lost it, or starts a new access to `page` (a write when `write`).
    Run { node: usize, page: u32, write: bool },
    /// This node evicts `page` if it can, handing an only copy off to `to` (or writing it
    /// back when `to` is this node).
    Evict { node: usize, page: u32, to: usize },
}

fn choice() -> impl Strategy<Value = Choice> {
    prop_oneof![
        2 => any::<usize>().prop_map(Choice::Deliver),
        1 => (0..NODES, 0..PAGES, any::<bool>())
            .prop_map(|(node, page, write)| Choice::Run { node, page, write }),
    ]
}

fn choice_with_evictions() -> impl Strategy<Value = Choice> {
    prop_oneof![
        4 => any::<usize>().prop_map(Choice::Deliver),
        2 => (0..NODES, 0..PAGES, any::<bool>())
            .prop_map(|(node, page, write)| Choice::Run { node, page, write }),
        1 => (0..NODES, 0..PAGES, 0..NODES)
            .prop_map(|(node, page, to)| Choice::Evict { node, page, to }),
    ]
}

/// Node `n` evicts `page` if it can: a hand-off to `to`, or a write-back when `to == n`.
fn evict(c: &mut SimCluster, n: usize, page: PageNo, to: usize) -> Result<(), String> {
    if !c.nodes[n].evictable(page) {
        return Ok(());
    }
    let hand_off = (to != n).then_some(to as NodeId);
    c.evict(n as NodeId, page, hand_off)
        .map_err(|e| e.to_string())
}

/// Before node `n` brings `page` in, free a frame if it holds its budget: evict the first
/// page it can (handing an only copy to the next node). False when no frame can be freed
/// now (an eviction is already under way).
fn make_room(c: &mut SimCluster, n: usize, page: PageNo) -> Result<bool, String> {
    if c.access(n as NodeId, page) >= Access::Read || c.nodes[n].has_free_frame() {
        return Ok(true);
    }
    if let Some(victim) = (0..PAGES).find(|&p| c.nodes[n].evictable(p)) {
        evict(c, n, victim, (n + 1) % NODES)?;
    }
    Ok(false)
}

fn manager() -> impl Strategy<Value = ManagerKind> {
    prop_oneof![
        Just(ManagerKind::Central),
        Just(ManagerKind::Fixed),
        Just(ManagerKind::Dynamic),
    ]
}

/// The managers the protocol implements (it refuses the others at start).
fn implemented(kind: ManagerKind) -> bool {
    Coherence::new(0, NODES, PAGES, kind).is_ok()
}

/// What each node's single application thread waits for.
type Waiting = Vec<Option<(PageNo, Access)>>;

/// Thread `n` runs: complete, fault again, or start `next`.
fn run_thread(
    c: &mut SimCluster,
    waiting: &mut Waiting,
    n: usize,
    next: Option<(PageNo, Access)>,
) -> Result<(), String> {
    let node = n as NodeId;
    let Some((page, access)) = waiting[n].or(next) else {
        return Ok(());
    };
    let st = c.nodes[n].page(page).unwrap_or(PageState::ABSENT);
    if c.access(node, page) < access
        && st.pending.is_none()
        && !st.evicting
        && !make_room(c, n, page)?
    {
        // No frame yet: the thread waits (if it was to start, it starts later).
        return Ok(());
    }
    if c.access(node, page) >= access {
        waiting[n] = None;
        if access == Access::Write {
            c.write(node, page).map_err(|e| e.to_string())?;
        } else {
            let seen = c.read(node, page).map_err(|e| e.to_string())?;
            let written = c.latest[page as usize];
            if seen != written {
                return Err(format!(
                    "node {n} read version {seen} of page {page} after {written} was written"
                ));
            }
        }
    } else {
        waiting[n] = Some((page, access));
        c.fault(node, page, access).map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn run_schedule(kind: ManagerKind, frames: Option<u32>, schedule: &[Choice]) -> Result<(), String> {
    let mut c = match frames {
        None => SimCluster::new(NODES, PAGES, kind),
        Some(f) => SimCluster::with_budget(NODES, PAGES, kind, f),
    }
    .map_err(|e| e.to_string())?;
    let mut waiting: Waiting = vec![None; NODES];
    for (i, &step) in schedule.iter().enumerate() {
        match step {
            Choice::Deliver(k) if !c.in_flight.is_empty() => {
                let k = k % c.in_flight.len();
                c.deliver(k).map_err(|e| format!("step {i}: {e}"))?;
            }
            Choice::Deliver(_) => {}
            Choice::Run { node, page, write } => {
                let access = if write { Access::Write } else { Access::Read };
                run_thread(&mut c, &mut waiting, node, Some((page, access)))
                    .map_err(|e| format!("step {i}: {e}"))?;
            }
            Choice::Evict { node, page, to } => {
                evict(&mut c, node, page, to).map_err(|e| format!("step {i}: {e}"))?;
            }
        }
        invariants::all(&ClusterView::of_sim(&c, kind)).map_err(|e| format!("step {i}: {e}"))?;
        if let Some(f) = frames {
            if let Some(n) = c.nodes.iter().position(|n| n.frames_in_use() > f) {
                return Err(format!("step {i}: node {n} holds more than {f} pages"));
            }
        }
    }
    // Liveness under fair delivery: deliver everything left, oldest first, and let each
    // waiting thread run (complete or fault again) until nothing moves.
    for _ in 0..10_000 {
        for n in 0..NODES {
            run_thread(&mut c, &mut waiting, n, None)?;
        }
        if c.in_flight.is_empty() && waiting.iter().all(Option::is_none) {
            break;
        }
        if c.in_flight.is_empty() {
            continue;
        }
        c.deliver(0).map_err(|e| e.to_string())?;
        invariants::all(&ClusterView::of_sim(&c, kind))?;
    }
    if waiting.iter().any(Option::is_some) || !c.quiescent() {
        return Err(format!(
            "faults never served: threads wait for {waiting:?}, {} messages in flight",
            c.in_flight.len()
        ));
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn random_schedules_on_4_nodes_and_4_pages_keep_the_invariants(
        kind in manager().prop_filter("implemented by the protocol", |&k| implemented(k)),
        schedule in prop::collection::vec(choice(), 50..400),
    ) {
        if let Err(e) = run_schedule(kind, None, &schedule) {
            return Err(TestCaseError::fail(format!("{kind:?}: {e}")));
        }
    }

    #[test]
    fn random_schedules_with_two_frames_per_node_keep_the_invariants(
        kind in manager().prop_filter("implemented by the protocol", |&k| implemented(k)),
        schedule in prop::collection::vec(choice_with_evictions(), 50..400),
    ) {
        if let Err(e) = run_schedule(kind, Some(2), &schedule) {
            return Err(TestCaseError::fail(format!("{kind:?}: {e}")));
        }
    }
}
