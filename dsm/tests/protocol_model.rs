//! A stateright model of the coherence protocol: the very state machine the node runtime runs
//! (`protocol::Coherence`, driven through `protocol::sim::SimCluster`), with every order of
//! message delivery explored for 3 nodes and 2 pages, for each manager.
//!
//! Checked: at most one writer per page and no reader beside it, every read copy listed in
//! the copyset, every read sees the last write (no write is lost), no message the protocol
//! refuses, and every program runs to its end (every fault is served).

use memlink_dsm::protocol::sim::SimCluster;
use memlink_dsm::{Access, ManagerKind, NodeId, PageNo};
use stateright::{Checker, Model, Property};

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct State {
    cluster: SimCluster,
    /// Each node's position in its program.
    pc: Vec<usize>,
    /// The first thing that went wrong (a stale read, a refused message).
    broken: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Action {
    /// Node `n` runs its next operation (or faults for it).
    Step(NodeId),
    /// Deliver the in-flight message at this index (messages are kept sorted).
    Deliver(usize),
}

struct CoherenceModel {
    kind: ManagerKind,
    pages: u32,
    /// Per node: the accesses it makes, in order (a Write writes a new version).
    programs: Vec<Vec<(PageNo, Access)>>,
}

impl Model for CoherenceModel {
    type State = State;
    type Action = Action;

    fn init_states(&self) -> Vec<State> {
        vec![State {
            cluster: SimCluster::new(self.programs.len(), self.pages, self.kind).unwrap(),
            pc: vec![0; self.programs.len()],
            broken: None,
        }]
    }

    fn actions(&self, s: &State, actions: &mut Vec<Action>) {
        if s.broken.is_some() {
            return;
        }
        for (n, prog) in self.programs.iter().enumerate() {
            let Some(&(page, access)) = prog.get(s.pc[n]) else {
                continue;
            };
            let node = &s.cluster.nodes[n];
            let st = node.page(page).unwrap();
            if st.access >= access || st.pending.is_none() {
                actions.push(Action::Step(n as NodeId));
            }
        }
        for i in 0..s.cluster.in_flight.len() {
            if i == 0 || s.cluster.in_flight[i] != s.cluster.in_flight[i - 1] {
                actions.push(Action::Deliver(i));
            }
        }
    }

    fn next_state(&self, last: &State, action: Action) -> Option<State> {
        let mut s = last.clone();
        match action {
            Action::Step(n) => {
                let (page, access) = self.programs[n as usize][s.pc[n as usize]];
                if s.cluster.access(n, page) >= access {
                    if access == Access::Write {
                        s.cluster.write(n, page).unwrap();
                    } else {
                        let seen = s.cluster.read(n, page).unwrap();
                        let last_written = s.cluster.latest[page as usize];
                        if seen != last_written {
                            s.broken = Some(format!(
                                "node {n} read version {seen} of page {page}, {last_written} was written"
                            ));
                        }
                    }
                    s.pc[n as usize] += 1;
                } else if let Err(e) = s.cluster.fault(n, page, access) {
                    s.broken = Some(e.to_string());
                }
            }
            Action::Deliver(i) => {
                if let Err(e) = s.cluster.deliver(i) {
                    s.broken = Some(e.to_string());
                }
            }
        }
        s.cluster.in_flight.sort();
        Some(s)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        vec![
            Property::always("coherent", |_, s: &State| {
                s.broken.is_none() && s.cluster.check().is_ok()
            }),
            Property::eventually("every fault is served", |m: &CoherenceModel, s: &State| {
                s.pc.iter()
                    .zip(&m.programs)
                    .all(|(pc, prog)| *pc == prog.len())
            }),
        ]
    }
}

fn check(kind: ManagerKind) {
    use Access::{Read as R, Write as W};
    let model = CoherenceModel {
        kind,
        pages: 2,
        programs: vec![
            vec![(0, R), (1, W), (0, W)],
            vec![(0, W), (1, R), (1, W)],
            vec![(1, W), (0, R), (0, W)],
        ],
    };
    let checker = model.checker().spawn_bfs().join();
    checker.assert_properties();
    assert!(
        checker.unique_state_count() > 100,
        "the model explored something"
    );
    println!("{kind}: {} states", checker.unique_state_count());
}

#[test]
fn central_manager_model() {
    check(ManagerKind::Central);
}

#[test]
fn fixed_manager_model() {
    check(ManagerKind::Fixed);
}

#[test]
fn dynamic_manager_model() {
    check(ManagerKind::Dynamic);
}
