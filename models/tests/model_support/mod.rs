//! A stateright model of the DSM coherence protocol that drives the protocol's own
//! [`Coherence`] state machines (the code the node runtime runs), not a copy of them.
//!
//! State: every node's `Coherence`, the multiset of messages in flight (kept sorted, so two
//! orders of the same messages are one state), each node's page contents as version numbers,
//! the last version written to each page, and which pages each node waits for. Actions: a
//! node faults on a page for read or write (a bounded number of faults, of which a bounded
//! number are writes; a node waits for at most `concurrent` pages at once: 1 is one
//! application thread, more are several threads or a prefetch); any message in flight is
//! delivered (in any order); a wait whose access was granted completes its read (checking the
//! version it sees) or its write (a new version); a wait whose granted access was taken away
//! before it ran faults again, as a real thread would. With a frame budget, a node that needs
//! a frame and holds its budget evicts a page first, in any way the protocol allows (and
//! handing an only copy off to any node, or to the backing store). With the Δt hold, a page
//! whose access went up is held, and its timer fires at any later step.

pub mod invariants;
pub mod rights;

use std::fmt;

use memlink_dsm::protocol::PageState;
use memlink_dsm::protocol::sim::{Envelope, SimCluster};
use memlink_dsm::{Access, ManagerKind, NodeId, PageNo};
use stateright::{Checker, Model, Property};

use invariants::ClusterView;

/// The sizes of one model: cluster, pages, and how many faults the threads may take.
#[derive(Clone, Copy, Debug)]
pub struct CoherenceModel {
    /// The manager every node runs.
    pub kind: ManagerKind,
    /// Nodes in the cluster.
    pub nodes: usize,
    /// Pages in the region.
    pub pages: u32,
    /// Faults (read or write) the application threads take in all.
    pub faults: u8,
    /// Of those, at most this many are write faults.
    pub writes: u8,
    /// How many pages one node may wait for at once (1: one thread; more: several threads,
    /// or one prefetch of several pages).
    pub concurrent: usize,
    /// The frames of each node (`None`: every node may hold every page). With a budget,
    /// every page starts in the backing store, and a node holding its budget must evict a
    /// page (in any way the protocol allows, handing an only copy to any node or to the
    /// store) before a fault may bring one in.
    pub frames: Option<u32>,
    /// Whether pages are held for Δt after they arrive (the timer fires at any time).
    pub hold: bool,
    /// Evictions a node may start without needing a frame (as a runtime that keeps some
    /// frames free does), besides those a full node must make before a fault.
    pub evictions: u8,
    /// A pager's `clean_request`s: an owner writes a dirty page back and keeps it, at any
    /// step, this many times in a run.
    pub cleans: u8,
    /// A pager's `data_lock`s: the pager sets the lock of a page at a node (the most
    /// access its threads may have) to any value, at any step, this many times in a run.
    /// Its answers to the nodes' `data_unlock`s (a lock of the page, granting or not) come
    /// at any step besides, and are not counted.
    pub locks: u8,
    /// Runs of a node's own pages paged in, or dropped clean, in one step
    /// ([`memlink_dsm::protocol::Coherence::page_in_run`], `drop_clean_run`: the read-ahead
    /// of a file and the eviction of what it read), at any step where the node may take
    /// them alone, this many times in a run.
    pub runs: u8,
    /// Whether the pager may start failing every read (a `data_request` that errs: it died,
    /// or stopped answering) at any step of a run, once: from then on every page-in from
    /// the store is undone (`Coherence::data_error`) and the faults that waited on it fail.
    /// Its writes still reach it.
    pub pager_fails: bool,
    /// Whether the pager may start failing every write (`data_write`) at any step of a run,
    /// once, and recover at any later step: a write-back that fails keeps the page's version
    /// at its node, taking a frame, and every read of the page from the store there gets it
    /// (`memlink_dsm::protocol::Unwritten`); once the pager recovered, a node writes what it
    /// kept again at any step.
    pub write_fails: bool,
}

/// One state of the cluster.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ClusterState {
    /// Every node's protocol state machine, page contents (as versions) and the messages in
    /// flight (a sorted multiset, so two orders of the same messages are one state).
    pub sim: SimCluster,
    /// `waiting[node][page]`: the access that node waits for on that page, if any.
    pub waiting: Vec<Vec<Option<Access>>>,
    /// Faults the threads may still take.
    pub faults_left: u8,
    /// Write faults the threads may still take.
    pub writes_left: u8,
    /// Evictions without need the nodes may still start.
    pub evictions_left: u8,
    /// `clean_request`s the pager may still make.
    pub cleans_left: u8,
    /// `data_lock`s the pager may still make (besides its answers to `data_unlock`s).
    pub locks_left: u8,
    /// Run steps (paged in or dropped alone) the nodes may still take.
    pub runs_left: u8,
    /// A step the protocol refused (a ProtocolError) or a read that saw an old version.
    pub error: Option<String>,
    /// Faults that failed because the pager could not provide their page.
    pub failed_faults: u8,
    /// Whether the pager may still start failing writes.
    pub write_failure_left: bool,
}

impl ClusterState {
    /// The view the invariants are stated over.
    pub fn view(&self, kind: ManagerKind) -> ClusterView<'_> {
        ClusterView {
            kind,
            nodes: &self.sim.nodes,
            contents: &self.sim.contents,
            latest: &self.sim.latest,
            in_flight: &self.sim.in_flight,
            store: &self.sim.store,
            kept: &self.sim.kept,
        }
    }

    /// Whether a thread of `node` waits for a frame to fault (again) on a page.
    fn needs_frame(&self, m: &CoherenceModel, node: usize) -> bool {
        (0..m.pages).any(|page| {
            let st = self.page_state(node, page);
            let free = st.pending.is_none() && !st.evicting && !self.room_for(node, page);
            match self.waiting[node][page as usize] {
                Some(_) => free,
                None => {
                    free && self.faults_left > 0
                        && self.waiting[node].iter().flatten().count() < m.concurrent
                }
            }
        })
    }

    fn page_state(&self, node: usize, page: PageNo) -> PageState {
        self.sim.nodes[node].page(page).unwrap_or(PageState::ABSENT)
    }

    /// Whether `node` can take `page` in now: it holds it, or has a free frame.
    fn room_for(&self, node: usize, page: PageNo) -> bool {
        self.access(node, page) >= Access::Read || self.sim.nodes[node].has_free_frame()
    }

    fn access(&self, node: usize, page: PageNo) -> Access {
        self.sim.access(node as NodeId, page)
    }

    fn pending(&self, node: usize, page: PageNo) -> Option<Access> {
        self.sim.nodes[node].page(page).and_then(|s| s.pending)
    }
}

/// A step of the model.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Step {
    /// `node`'s thread touches `page` without enough access: a fault for `access`.
    Fault {
        /// The faulting node.
        node: NodeId,
        /// The page.
        page: PageNo,
        /// Read or Write.
        access: Access,
    },
    /// A message in flight arrives.
    Deliver(Envelope),
    /// `node`'s wait for `page` was granted and runs: a read sees a version, a write makes
    /// a new one.
    Complete {
        /// The node.
        node: NodeId,
        /// The page.
        page: PageNo,
    },
    /// `node`'s wait for `page` was served, but its access was taken away before it ran: it
    /// faults again.
    Refault {
        /// The node.
        node: NodeId,
        /// The page.
        page: PageNo,
    },
    /// The pager asks `node` to clean `page` (`clean_request`): written back, kept
    /// read-only.
    Clean {
        /// The node.
        node: NodeId,
        /// The page.
        page: PageNo,
    },
    /// The pager locks `page` at `node` to `access` (`data_lock`); when the node waits for
    /// its answer to a `data_unlock` of the page, this is the answer.
    Lock {
        /// The node.
        node: NodeId,
        /// The page.
        page: PageNo,
        /// The most access the node's threads may have from now on.
        access: Access,
    },
    /// The pager fails every read from now on.
    PagerFails,
    /// The pager fails every write from now on.
    WritesFail,
    /// The pager's writes work again.
    WritesRecover,
    /// `node` writes the pages whose write-back failed again.
    Retry {
        /// The node.
        node: NodeId,
    },
    /// The Δt timer of `page` at `node` fires: the messages that waited are handled.
    Expire {
        /// The node.
        node: NodeId,
        /// The page.
        page: PageNo,
    },
    /// `node` brings its own pages `first .. first + count` in from the store for reading,
    /// in one step, without a message (read-ahead).
    PageInRun {
        /// The node.
        node: NodeId,
        /// The first page.
        first: PageNo,
        /// How many.
        count: u32,
    },
    /// `node` drops its own clean pages `first .. first + count`, of which no other node
    /// holds a copy, in one step, without a message.
    DropRun {
        /// The node.
        node: NodeId,
        /// The first page.
        first: PageNo,
        /// How many.
        count: u32,
    },
    /// `node` holds its budget and needs a frame: it evicts `page`, handing an only copy to
    /// `hand_off` (or writing it back when None or refused).
    Evict {
        /// The node.
        node: NodeId,
        /// The page.
        page: PageNo,
        /// Where an only copy may go.
        hand_off: Option<NodeId>,
    },
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Fault { node, page, access } => {
                write!(f, "node {node} faults on page {page} for {access:?}")
            }
            Step::Deliver(e) => {
                write!(f, "deliver {} -> {}: {:?}", e.from, e.to, e.msg)?;
                if let Some(v) = e.data {
                    write!(f, " (version {v})")?;
                }
                Ok(())
            }
            Step::Complete { node, page } => {
                write!(f, "node {node}'s access to page {page} completes")
            }
            Step::Refault { node, page } => {
                write!(
                    f,
                    "node {node} lost its access to page {page} and faults again"
                )
            }
            Step::Expire { node, page } => {
                write!(f, "node {node}'s hold of page {page} expires")
            }
            Step::PagerFails => write!(f, "the pager fails every read from now on"),
            Step::WritesFail => write!(f, "the pager fails every write from now on"),
            Step::WritesRecover => write!(f, "the pager's writes work again"),
            Step::Retry { node } => {
                write!(f, "node {node} writes the pages it kept again")
            }
            Step::Clean { node, page } => {
                write!(f, "the pager asks node {node} to clean page {page}")
            }
            Step::Lock { node, page, access } => {
                write!(
                    f,
                    "the pager locks page {page} at node {node} to {access:?}"
                )
            }
            Step::PageInRun { node, first, count } => {
                write!(f, "node {node} pages in its pages {first}..+{count} alone")
            }
            Step::DropRun { node, first, count } => write!(
                f,
                "node {node} drops its clean pages {first}..+{count} alone"
            ),
            Step::Evict {
                node,
                page,
                hand_off,
            } => match hand_off {
                Some(t) => write!(f, "node {node} evicts page {page} (hand-off to node {t})"),
                None => write!(f, "node {node} evicts page {page} (no hand-off)"),
            },
        }
    }
}

impl Model for CoherenceModel {
    type State = ClusterState;
    type Action = Step;

    fn init_states(&self) -> Vec<ClusterState> {
        let sim = match self.frames {
            None => SimCluster::new(self.nodes, self.pages, self.kind),
            Some(f) => SimCluster::with_budget(self.nodes, self.pages, self.kind, f),
        }
        .expect("the protocol supports this manager");
        let mut sim = sim;
        for n in &mut sim.nodes {
            n.set_hold(self.hold);
        }
        vec![ClusterState {
            sim,
            waiting: vec![vec![None; self.pages as usize]; self.nodes],
            faults_left: self.faults,
            writes_left: self.writes,
            evictions_left: self.evictions,
            cleans_left: self.cleans,
            locks_left: self.locks,
            runs_left: self.runs,
            error: None,
            failed_faults: 0,
            write_failure_left: self.write_fails,
        }]
    }

    fn actions(&self, s: &ClusterState, actions: &mut Vec<Step>) {
        if s.error.is_some() {
            return;
        }
        if self.pager_fails && !s.sim.store_fails {
            actions.push(Step::PagerFails);
        }
        if s.write_failure_left {
            actions.push(Step::WritesFail);
        }
        if s.sim.write_fails {
            actions.push(Step::WritesRecover);
        } else {
            for (n, kept) in s.sim.kept.iter().enumerate() {
                if !kept.is_empty() {
                    actions.push(Step::Retry { node: n as NodeId });
                }
            }
        }
        let in_flight = &s.sim.in_flight;
        for (i, e) in in_flight.iter().enumerate() {
            // Equal messages give equal successors: offer one of them.
            if i == 0 || in_flight[i - 1] != *e {
                actions.push(Step::Deliver(e.clone()));
            }
        }
        for n in 0..self.nodes {
            let node = n as NodeId;
            let waits = s.waiting[n].iter().filter(|w| w.is_some()).count();
            let mut needs_frame = false;
            for page in 0..self.pages {
                let have = s.access(n, page);
                let st = s.page_state(n, page);
                if st.held {
                    actions.push(Step::Expire { node, page });
                }
                if s.cleans_left > 0 && s.sim.nodes[n].cleanable(page) {
                    actions.push(Step::Clean { node, page });
                }
                let unlocking = s.sim.nodes[n].unlocking(page).is_some();
                if unlocking || s.locks_left > 0 {
                    let now = s.sim.nodes[n].pager_lock(page);
                    for access in [Access::None, Access::Read, Access::Write] {
                        if unlocking || access != now {
                            actions.push(Step::Lock { node, page, access });
                        }
                    }
                }
                match s.waiting[n][page as usize] {
                    Some(access) if have >= access => actions.push(Step::Complete { node, page }),
                    Some(_)
                        if st.pending.is_none()
                            && !st.evicting
                            && s.sim.nodes[n].unlocking(page).is_none() =>
                    {
                        if s.room_for(n, page) {
                            actions.push(Step::Refault { node, page })
                        } else {
                            needs_frame = true;
                        }
                    }
                    Some(_) => {}
                    None if s.faults_left > 0
                        && waits < self.concurrent
                        && st.pending.is_none()
                        && !st.evicting =>
                    {
                        if !s.room_for(n, page) {
                            needs_frame = true;
                            continue;
                        }
                        if have < Access::Read {
                            actions.push(Step::Fault {
                                node,
                                page,
                                access: Access::Read,
                            });
                        }
                        if have < Access::Write && s.writes_left > 0 {
                            actions.push(Step::Fault {
                                node,
                                page,
                                access: Access::Write,
                            });
                        }
                    }
                    None => {}
                }
            }
            if s.runs_left > 0 {
                run_steps(self, s, n, actions);
            }
            // A node evicts when a fault needs a frame it does not have (or, a bounded number
            // of times, before it needs one).
            if needs_frame || (self.frames.is_some() && s.evictions_left > 0) {
                for page in 0..self.pages {
                    if !s.sim.nodes[n].evictable(page) {
                        continue;
                    }
                    actions.push(Step::Evict {
                        node,
                        page,
                        hand_off: None,
                    });
                    for t in (0..self.nodes as NodeId).filter(|&t| t != node) {
                        actions.push(Step::Evict {
                            node,
                            page,
                            hand_off: Some(t),
                        });
                    }
                }
            }
        }
    }

    fn next_state(&self, last: &ClusterState, step: Step) -> Option<ClusterState> {
        let mut s = last.clone();
        match step {
            Step::PagerFails => s.sim.store_fails = true,
            Step::WritesFail => {
                s.write_failure_left = false;
                s.sim.write_fails = true;
            }
            Step::WritesRecover => s.sim.write_fails = false,
            Step::Retry { node } => s.sim.retry(node),
            Step::Fault { node, page, access } => {
                s.faults_left -= 1;
                if access == Access::Write {
                    s.writes_left -= 1;
                }
                s.waiting[node as usize][page as usize] = Some(access);
                if let Err(e) = s.sim.fault(node, page, access) {
                    s.error = Some(format!("node {node}: {e}"));
                }
            }
            Step::Refault { node, page } => {
                let access = s.waiting[node as usize][page as usize]?;
                if let Err(e) = s.sim.fault(node, page, access) {
                    s.error = Some(format!("node {node}: {e}"));
                }
            }
            Step::Lock { node, page, access } => {
                if last.sim.nodes[node as usize].unlocking(page).is_none() {
                    s.locks_left = s.locks_left.checked_sub(1)?;
                }
                if let Err(e) = s.sim.data_lock(node, page, access) {
                    s.error = Some(format!("node {node}: {e}"));
                }
                // A refused unlock ends its fault: the thread got a protection fault.
                for (n, p, _) in std::mem::take(&mut s.sim.denied) {
                    s.waiting[n as usize][p as usize] = None;
                }
            }
            Step::Expire { node, page } => {
                if let Err(e) = s.sim.expire(node, page) {
                    s.error = Some(format!("node {node}: {e}"));
                }
            }
            Step::Clean { node, page } => {
                s.cleans_left -= 1;
                if let Err(e) = s.sim.clean(node, page) {
                    s.error = Some(format!("node {node}: {e}"));
                }
            }
            Step::Evict {
                node,
                page,
                hand_off,
            } => {
                if !last.needs_frame(self, node as usize) {
                    s.evictions_left = s.evictions_left.checked_sub(1)?;
                }
                if let Err(e) = s.sim.evict(node, page, hand_off) {
                    s.error = Some(format!("node {node}: {e}"));
                }
            }
            Step::PageInRun { node, first, count } => {
                s.runs_left -= 1;
                if let Err(e) = s.sim.page_in_run(node, first, count) {
                    s.error = Some(format!("node {node}: {e}"));
                }
            }
            Step::DropRun { node, first, count } => {
                s.runs_left -= 1;
                if let Err(e) = s.sim.drop_clean_run(node, first, count) {
                    s.error = Some(format!("node {node}: {e}"));
                }
            }
            Step::Deliver(env) => {
                let at = s.sim.in_flight.iter().position(|e| *e == env)?;
                if let Err(e) = s.sim.deliver(at) {
                    s.error = Some(format!("node {}: {e}", env.to));
                }
            }
            Step::Complete { node, page } => {
                let n = node as usize;
                let access = s.waiting[n][page as usize].take()?;
                let latest = s.sim.latest[page as usize];
                let done = if access == Access::Write {
                    s.sim.write(node, page).map(|_| ())
                } else {
                    s.sim.read(node, page).map(|seen| {
                        if seen < latest {
                            s.error = Some(format!(
                                "node {node} read version {seen} of page {page} after version \
                                 {latest} was written"
                            ));
                        }
                    })
                };
                if let Err(e) = done {
                    s.error = Some(e.to_string());
                }
            }
        }
        // A fault whose page-in failed ends: its thread got the pager's error.
        for (n, p) in std::mem::take(&mut s.sim.data_errors) {
            if s.waiting[n as usize][p as usize].take().is_some() {
                s.failed_faults += 1;
            }
        }
        Some(s)
    }

    fn format_action(&self, step: &Step) -> String {
        step.to_string()
    }

    fn properties(&self) -> Vec<Property<Self>> {
        vec![
            Property::always("the protocol accepts every step", |_, s: &ClusterState| {
                s.error.as_ref().is_none_or(|e| e.contains("read version"))
            }),
            Property::always(
                "at most one writer per page",
                |m: &CoherenceModel, s: &ClusterState| {
                    invariants::single_writer(&s.view(m.kind)).is_ok()
                },
            ),
            Property::always(
                "every read copy is in the copyset",
                |m: &CoherenceModel, s: &ClusterState| {
                    invariants::copies_in_copyset(&s.view(m.kind)).is_ok()
                },
            ),
            Property::always(
                "no acknowledged write is lost",
                |m: &CoherenceModel, s: &ClusterState| {
                    s.error.as_ref().is_none_or(|e| !e.contains("read version"))
                        && invariants::no_lost_write(&s.view(m.kind)).is_ok()
                },
            ),
            Property::always(
                "copysets stay exact",
                |m: &CoherenceModel, s: &ClusterState| {
                    invariants::copyset_exact(&s.view(m.kind)).is_ok()
                },
            ),
            Property::always(
                "no node has more access than its pager's lock",
                |m: &CoherenceModel, s: &ClusterState| {
                    (0..m.nodes).all(|n| {
                        (0..m.pages).all(|p| s.access(n, p) <= s.sim.nodes[n].pager_lock(p))
                    })
                },
            ),
            Property::always(
                "a failed page-in leaves no node holding the page",
                |m: &CoherenceModel, s: &ClusterState| {
                    (0..m.nodes).all(|n| {
                        (0..m.pages).all(|p| {
                            s.access(n, p) == Access::None
                                || s.sim.contents[n][p as usize]
                                    != memlink_dsm::protocol::sim::EVICTED
                        })
                    })
                },
            ),
            Property::always(
                "no node holds more pages than its budget",
                |m: &CoherenceModel, s: &ClusterState| {
                    // (With the pages kept after a failed write-back: they take frames too.)
                    m.frames.is_none_or(|f| {
                        (s.sim.nodes.iter().zip(&s.sim.kept))
                            .all(|(n, kept)| n.frames_in_use() + kept.len() <= f)
                    })
                },
            ),
            Property::always(
                "no request waits with nothing in flight",
                |m: &CoherenceModel, s: &ClusterState| {
                    !s.sim.in_flight.is_empty()
                        || (0..m.nodes).any(|n| (0..m.pages).any(|p| s.page_state(n, p).held))
                        || (0..m.nodes).all(|n| {
                            (0..m.pages).all(|p| {
                                let st = s.page_state(n, p);
                                st.pending.is_none() && !st.evicting
                            })
                        })
                },
            ),
            // Liveness, part 1 (no deadlock): every run that stops, stops with every fault
            // served. (Stateright's `eventually` would say the same on these finite runs, but
            // once it holds a counterexample it overwrites it with each later terminal state it
            // visits, so the trace it reports can be a good run; this `always` reports the
            // shortest bad one.) Part 2 (no livelock) is `CoherenceModel::check_progress`:
            // the graph has cycles (two threads that each lose the page to the other before
            // they run), so from every state, a state with every fault served must be reachable.
            Property::always(
                "every fault is served",
                |m: &CoherenceModel, s: &ClusterState| {
                    let mut more = Vec::new();
                    m.actions(s, &mut more);
                    s.error.is_some()
                        || !more.is_empty()
                        || (s.sim.in_flight.is_empty()
                            && s.waiting.iter().flatten().all(Option::is_none))
                },
            ),
        ]
    }
}

/// The run steps node `n` may take in `s`: every run of its own pages it may page in alone
/// that its free frames hold, and every run of its clean pages it may drop alone.
fn run_steps(m: &CoherenceModel, s: &ClusterState, n: usize, actions: &mut Vec<Step>) {
    let c = &s.sim.nodes[n];
    let node = n as NodeId;
    let free = m.frames.map_or(m.pages, |f| {
        f.saturating_sub(c.frames_in_use() + c.reserved())
    });
    for first in 0..m.pages {
        for count in 1..=m.pages - first {
            let end = first + count;
            if count <= free && (first..end).all(|p| c.pages_in_alone(p)) {
                actions.push(Step::PageInRun { node, first, count });
            }
            if (first..end).all(|p| c.drops_alone(p)) {
                actions.push(Step::DropRun { node, first, count });
            }
        }
    }
}

/// [`Trapped`] in the states and steps of model `M`.
pub type TrappedIn<M> = Trapped<<M as Model>::Action, <M as Model>::State>;

/// A state from which no run serves every fault, and how to get there.
pub struct Trapped<A = Step, S = ClusterState> {
    /// The steps from the initial state.
    pub path: Vec<A>,
    /// The state.
    pub state: S,
}

impl CoherenceModel {
    /// The configuration the tests vary: 3 nodes, 2 pages, 4 faults of which 2 writes, one
    /// fault at a time per node, no frame budget, no eviction, clean request, pager lock or
    /// run, no hold, a pager that never fails.
    pub fn base(kind: ManagerKind) -> Self {
        CoherenceModel {
            kind,
            nodes: 3,
            pages: 2,
            faults: 4,
            writes: 2,
            concurrent: 1,
            frames: None,
            evictions: 0,
            cleans: 0,
            locks: 0,
            runs: 0,
            hold: false,
            pager_fails: false,
            write_fails: false,
        }
    }

    /// Whether every fault is served and nothing is left to do in `s`.
    pub fn finished(&self, s: &ClusterState) -> bool {
        let mut more = Vec::new();
        self.actions(s, &mut more);
        s.error.is_none()
            && more.is_empty()
            && s.sim.in_flight.is_empty()
            && s.waiting.iter().flatten().all(Option::is_none)
    }

    /// Liveness under fair scheduling ([`progress`] with [`CoherenceModel::finished`]).
    pub fn check_progress(&self) -> Result<usize, Box<Trapped>> {
        progress(self, |s| self.finished(s))
    }

    /// Why `property` does not hold in `s`, for counterexample reports.
    pub fn explain(&self, property: &str, s: &ClusterState) -> String {
        let v = s.view(self.kind);
        let found = match property {
            "at most one writer per page" => invariants::single_writer(&v),
            "every read copy is in the copyset" => invariants::copies_in_copyset(&v),
            "no acknowledged write is lost" => invariants::no_lost_write(&v),
            "copysets stay exact" => invariants::copyset_exact(&v),
            _ => Ok(()),
        };
        match (found, s.error.clone()) {
            (Err(e), _) | (Ok(()), Some(e)) => e,
            (Ok(()), None) => format!(
                "threads waiting {:?}, requests pending {:?}, in flight {:?}",
                s.waiting,
                (0..self.nodes)
                    .map(|n| (0..self.pages).map(|p| s.pending(n, p)).collect::<Vec<_>>())
                    .collect::<Vec<_>>(),
                s.sim.in_flight
            ),
        }
    }
}

/// Liveness under fair scheduling: explores every state (breadth first, remembering each
/// state's successors by a 64-bit fingerprint) and checks that from each one some run
/// reaches a finished state (every fault served). A run that loops forever without
/// serving a fault is then only possible by starving a step that stays possible, which a
/// fair scheduler does not do. Returns the number of states, or the first trapped state.
pub fn progress<M>(
    model: &M,
    is_finished: impl Fn(&M::State) -> bool,
) -> Result<usize, Box<TrappedIn<M>>>
where
    M: Model,
    M::Action: Clone,
    M::State: std::hash::Hash,
{
    use std::collections::HashMap;
    use std::collections::VecDeque;
    use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};

    let fingerprint = |s: &M::State| BuildHasherDefault::<DefaultHasher>::default().hash_one(s);
    let init = model.init_states().remove(0);
    let mut index = HashMap::from([(fingerprint(&init), 0u32)]);
    // For each state: its parent and the step from it, its successors, and whether it
    // is finished.
    let mut parent: Vec<Option<(u32, M::Action)>> = vec![None];
    let mut successors: Vec<Vec<u32>> = vec![Vec::new()];
    let mut finished = vec![false];
    let mut queue = VecDeque::from([(0u32, init)]);
    let mut steps = Vec::new();
    let started = std::time::Instant::now();
    let mut reported = started;
    while let Some((i, s)) = queue.pop_front() {
        // A progress line every 20 s on stderr itself (not captured by the harness).
        if i % 4096 == 0 && reported.elapsed() >= std::time::Duration::from_secs(20) {
            reported = std::time::Instant::now();
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "model progress: {} states so far, {:.0?}",
                parent.len(),
                started.elapsed()
            );
        }
        finished[i as usize] = is_finished(&s);
        steps.clear();
        model.actions(&s, &mut steps);
        for step in steps.drain(..) {
            let Some(next) = model.next_state(&s, step.clone()) else {
                continue;
            };
            let fp = fingerprint(&next);
            let j = match index.get(&fp) {
                Some(&j) => j,
                None => {
                    let j = parent.len() as u32;
                    index.insert(fp, j);
                    parent.push(Some((i, step)));
                    successors.push(Vec::new());
                    finished.push(false);
                    queue.push_back((j, next));
                    j
                }
            };
            successors[i as usize].push(j);
        }
    }
    // Backwards from the finished states.
    let n = parent.len();
    let mut predecessors = vec![Vec::new(); n];
    for (i, succ) in successors.iter().enumerate() {
        for &j in succ {
            predecessors[j as usize].push(i as u32);
        }
    }
    let mut good = finished.clone();
    let mut work: Vec<u32> = (0..n as u32).filter(|&i| finished[i as usize]).collect();
    while let Some(j) = work.pop() {
        for &i in &predecessors[j as usize] {
            if !good[i as usize] {
                good[i as usize] = true;
                work.push(i);
            }
        }
    }
    let Some(bad) = good.iter().position(|g| !g) else {
        return Ok(n);
    };
    // Rebuild the path to the first trapped state (the earliest found: a shortest path).
    let mut path = Vec::new();
    let mut at = bad as u32;
    while let Some((p, step)) = &parent[at as usize] {
        path.push(step.clone());
        at = *p;
    }
    path.reverse();
    let mut state = model.init_states().remove(0);
    for step in &path {
        state = model
            .next_state(&state, step.clone())
            .expect("a replayed step");
    }
    Err(Box::new(Trapped { path, state }))
}

/// Panics, unless `checker` found every property to hold, with the shortest counterexample
/// of each property broken (shortest first): its steps, and why its last state breaks the
/// property (`explain`). `what` names the configuration.
pub fn assert_unbroken<M: Model>(
    what: &str,
    checker: &impl Checker<M>,
    explain: impl Fn(&'static str, &M::State) -> String,
) where
    M::State: Clone,
    M::Action: Clone + fmt::Display,
{
    let mut broken = checker.discoveries().into_iter().collect::<Vec<_>>();
    if broken.is_empty() {
        return;
    }
    broken.sort_by_key(|(name, path)| (path.clone().into_actions().len(), *name));
    let mut report = format!("{what}: {} properties broken\n", broken.len());
    for (name, path) in broken {
        let last = path.last_state().clone();
        let steps = path.into_actions();
        let title = format!("\"{name}\" broken after {} steps:", steps.len());
        report.push_str(&counterexample(&title, &steps, &explain(name, &last)));
    }
    panic!("{report}");
}

/// A counterexample as the reports give it: `title`, each step numbered on a line of its
/// own, then `=> ` and `why` its last state breaks the property.
pub fn counterexample(title: &str, steps: &[impl fmt::Display], why: &str) -> String {
    let mut report = format!("{title}\n");
    for (i, step) in steps.iter().enumerate() {
        report.push_str(&format!("  {:2}. {step}\n", i + 1));
    }
    report.push_str(&format!("  => {why}\n"));
    report
}
