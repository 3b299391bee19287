//! Exhaustive model checking (stateright, breadth first) of the scheduling protocol: every
//! node's [`Scheduler`] (the code the runtime runs) together with every node's coherence
//! state machine ([`SimCluster`]), which moves the tasks' stack pages.
//!
//! Three nodes with one worker each; tasks spawned on node 0, each with one or two stack
//! pages (task `i`'s stack is pages `i * count ..`; its first holds the descriptor, which the
//! worker writes at every switch, its last is the current page, which the task writes), each
//! running a few quanta (it writes both, then yields or ends). A migration hands off the
//! pages `StackPages::handed_off` names, as the runtime does, and its `Migrate` waits in the
//! source's `process::carrier::Carrier` (the runtime's code) until each hand-off produced its
//! `HandOff`, which goes inside the `Migrate` (`Message::Migrate::carried`, with the page's
//! version as its contents) instead of on its own, or ended without one; the destination
//! hands the carried `HandOff`s to its coherence protocol and queues the task in one step.
//! Coherence messages are delivered in any order, scheduler messages in the order
//! sent between each pair of nodes (one TCP connection per pair) but in any order across
//! pairs; any node's TIMEOUT fires at
//! any step; a running task may ask to migrate to any node; a node other than node 0 (where
//! the handles live) may be lost at any step, after which every survivor hears of it at any
//! later step. Checks, in every reachable state: no task is lost or held twice, none ends
//! twice, a task resumes with the stack it left (coherence moved its page with it), a
//! refused work request moves no task, a handle's outcome is true (Finished only for a task
//! that ended once, NodeLost only naming a node that was lost), no stack hand-off is
//! refused (a `Migrate` that overtook its pages made its task fault there first, and the
//! page then went to the backing store and back), and every task ends: every
//! run that stops has resolved every handle, and from every state such a run exists.

// Shared with the other model_* test binaries, each of which uses only part of it.
#[allow(dead_code)]
mod model_support;

use std::fmt;
use std::time::Instant;

use memlink_dsm::process::carrier::{Carrier, Leaving};
use memlink_dsm::process::{
    Effect, Message, Outcome, Scheduler, SchedulerConfig, StackPages, Suspend, TaskId, TaskRef,
};
use memlink_dsm::protocol::Message as PageMessage;
use memlink_dsm::protocol::sim::{Envelope as PageEnvelope, SimCluster};
use memlink_dsm::{Access, ManagerKind, NodeId, PageNo};
use stateright::{Checker, Expectation, Model, Property};

/// The sizes of one model.
#[derive(Clone, Debug)]
struct SchedulerModel {
    nodes: usize,
    /// Per task spawned on node 0: whether it is migratable.
    migratable: Vec<bool>,
    /// Pages in each task's stack (1 or 2).
    stack_pages: u32,
    /// Whether a thread on a node other than the home may join an ended task by its
    /// descriptor (and tell the home with `Reaped`).
    remote_joins: bool,
    /// Quanta each task runs (it yields between them).
    quanta: u8,
    /// Migrations running tasks may ask for, in all.
    pushes: u8,
    /// Whether a node (not node 0) may be lost.
    loss: bool,
    /// The coherence manager of the stack pages.
    kind: ManagerKind,
    use_hints: bool,
}

/// A scheduler message in flight.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Envelope {
    from: NodeId,
    to: NodeId,
    msg: Message,
    /// The contents (versions) of the stack pages a `Migrate` carries, in its order.
    contents: Vec<Option<u64>>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct State {
    scheds: Vec<Scheduler>,
    /// The coherence protocol of the stack pages.
    sim: SimCluster,
    /// Scheduler messages in flight, in the order sent: between two nodes they arrive in
    /// that order (the runtime sends them on the pair's one TCP connection).
    in_flight: Vec<Envelope>,
    /// Each node's migrations waiting for their stack pages' hand-offs.
    carriers: Vec<Carrier<Option<u64>>>,
    /// Quanta each task has left.
    left: Vec<u8>,
    /// The version last written to each stack page.
    stack_version: Vec<u64>,
    /// How many times each task ended.
    ends: Vec<u8>,
    /// Which handles a thread on another node joined.
    joined_away: Vec<bool>,
    pushes_left: u8,
    /// The node lost, if any (the coherence protocol stops then: the DSM fails).
    lost: Option<NodeId>,
    /// Which survivors have been told of the loss.
    noticed: Vec<bool>,
    /// A task whose migration message the loss dropped (to or from the lost node).
    lost_in_transit: Option<TaskId>,
    error: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Step {
    Deliver(Envelope),
    DeliverPage(PageEnvelope),
    Dispatch(NodeId),
    /// A running task touches a page of its stack without write access: a fault.
    Fault(NodeId, TaskId, PageNo),
    /// A running task with its stack writable runs a quantum, then yields (or asks to move
    /// to the node given), or ends.
    Quantum(NodeId, TaskId, Option<NodeId>),
    Timeout(NodeId),
    Lose(NodeId),
    Notice(NodeId),
    /// After the loss: a running task's stack fault fails (NodeLost): the task ends.
    Abort(NodeId, TaskId),
    /// A thread on a node other than the home sees in the descriptor that the task ended,
    /// takes its result and tells the home (`Reaped`).
    JoinAway(NodeId, TaskId),
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Deliver(e) => write!(f, "deliver {} -> {}: {:?}", e.from, e.to, e.msg),
            Step::DeliverPage(e) => {
                write!(f, "deliver page msg {} -> {}: {:?}", e.from, e.to, e.msg)
            }
            Step::Dispatch(n) => write!(
                f,
                "node {n}'s worker takes the next ready task (none: it may ask for work)"
            ),
            Step::Fault(n, t, p) => write!(f, "node {n}: task {} faults on stack page {p}", t.0),
            Step::Quantum(n, t, None) => write!(f, "node {n}: task {} runs a quantum", t.0),
            Step::Quantum(n, t, Some(d)) => write!(
                f,
                "node {n}: task {} runs a quantum and asks to migrate to node {d}",
                t.0
            ),
            Step::Timeout(n) => write!(f, "node {n}: TIMEOUT"),
            Step::Lose(n) => write!(f, "node {n} is lost"),
            Step::Notice(n) => write!(f, "node {n} hears of the loss"),
            Step::Abort(n, t) => write!(f, "node {n}: task {}'s stack fault fails", t.0),
            Step::JoinAway(n, t) => write!(f, "a thread on node {n} joins task {}", t.0),
        }
    }
}

fn task_ref(i: usize, migratable: bool, count: u32) -> TaskRef {
    TaskRef {
        id: TaskId(i as u64),
        home: 0,
        migratable,
        stack: StackPages::new(i as PageNo * count, count),
    }
}

impl SchedulerModel {
    fn tasks(&self) -> usize {
        self.migratable.len()
    }

    fn live(&self, s: &State, n: NodeId) -> bool {
        s.lost != Some(n)
    }

    fn stack(&self, t: TaskId) -> StackPages {
        task_ref(t.0 as usize, true, self.stack_pages).stack
    }

    /// Carry out one scheduler step's effects at `node`.
    fn apply(&self, s: &mut State, node: NodeId, effects: Vec<Effect>) {
        for e in effects {
            match e {
                Effect::Send { to, msg } => self.post(s, node, to, msg, Vec::new()),
                Effect::Broadcast { msg } => {
                    for to in (0..self.nodes as NodeId).filter(|&t| t != node) {
                        self.post(s, node, to, msg, Vec::new());
                    }
                }
                Effect::Migrate { to, msg } => {
                    let Message::Migrate { task, .. } = msg else {
                        s.error = Some(format!("node {node}: a migration effect with {msg:?}"));
                        continue;
                    };
                    if s.lost.is_some() {
                        self.post(s, node, to, msg, Vec::new());
                        continue;
                    }
                    let pages: Vec<PageNo> = task
                        .stack
                        .handed_off()
                        .filter(|&p| s.sim.nodes[node as usize].evictable(p))
                        .collect();
                    // The Migrate waits before the hand-offs start, as in the runtime.
                    if let Some(now) = s.carriers[node as usize].wait(to, msg, pages.clone()) {
                        self.post(s, node, to, now, Vec::new());
                    }
                    for &page in &pages {
                        if let Err(e) = s.sim.evict(node, page, Some(to)) {
                            s.error = Some(format!("node {node}: stack hand-off: {e}"));
                        }
                    }
                }
                Effect::Run { .. }
                | Effect::Wake
                | Effect::Resolved { .. }
                | Effect::Reaped { .. } => {}
            }
        }
    }

    fn post(
        &self,
        s: &mut State,
        from: NodeId,
        to: NodeId,
        msg: Message,
        contents: Vec<Option<u64>>,
    ) {
        if !self.live(s, to) {
            return;
        }
        s.in_flight.push(Envelope {
            from,
            to,
            msg,
            contents,
        });
    }

    /// Each node's carrier takes the `HandOff`s its waiting `Migrate`s carry off the
    /// network (the runtime never sends them alone), lets go of the pages whose eviction
    /// ended without one, and the `Migrate`s that waited for nothing more leave.
    fn collect(&self, s: &mut State) {
        if s.lost.is_some() {
            return;
        }
        for n in 0..self.nodes as NodeId {
            if s.carriers[n as usize].is_empty() {
                continue;
            }
            let mut leaving: Vec<Leaving<Option<u64>>> = Vec::new();
            let mut i = 0;
            while i < s.sim.in_flight.len() {
                let e = &s.sim.in_flight[i];
                if e.from == n && s.carriers[n as usize].carries(e.to, &e.msg) {
                    let e = s.sim.in_flight.remove(i);
                    leaving.extend(s.carriers[n as usize].carry(e.to, e.msg, e.data));
                } else {
                    i += 1;
                }
            }
            let ended: Vec<PageNo> = s.carriers[n as usize]
                .pages()
                .map(|(_, p)| p)
                .filter(|&p| {
                    !s.sim.nodes[n as usize]
                        .page(p)
                        .is_some_and(|st| st.evicting)
                })
                .collect();
            for page in ended {
                leaving.extend(s.carriers[n as usize].ended(page));
            }
            for l in leaving {
                self.post(s, n, l.to, l.msg, l.contents);
            }
        }
    }

    /// Where each task is: (live node holding it or a migration in flight) counts.
    fn places(&self, s: &State, t: TaskId) -> usize {
        let held = (0..self.nodes as NodeId)
            .filter(|&n| self.live(s, n) && s.scheds[n as usize].holds(t))
            .count();
        let moving = s
            .in_flight
            .iter()
            .map(|e| &e.msg)
            .chain(
                s.carriers
                    .iter()
                    .flat_map(|c| c.migrations().map(|(_, m)| m)),
            )
            .filter(|m| matches!(m, Message::Migrate { task, .. } if task.id == t))
            .count();
        held + moving
    }

    fn locations(&self, s: &State) -> Vec<Vec<NodeId>> {
        (0..self.tasks())
            .map(|i| {
                (0..self.nodes as NodeId)
                    .filter(|&n| s.scheds[n as usize].holds(TaskId(i as u64)))
                    .collect()
            })
            .collect()
    }

    /// Every handle resolved, nothing running or queued, nothing in flight.
    fn finished(&self, s: &State) -> bool {
        s.error.is_none()
            && s.scheds[0].handles().all(|(_, o)| o.is_some())
            && s.in_flight.is_empty()
            && s.carriers.iter().all(|c| c.is_empty())
            && (s.lost.is_some() || s.sim.in_flight.is_empty())
            && (0..self.nodes as NodeId)
                .filter(|&n| self.live(s, n))
                .all(|n| {
                    let sc = &s.scheds[n as usize];
                    sc.running().is_empty() && sc.ready().next().is_none()
                })
    }
}

impl Model for SchedulerModel {
    type State = State;
    type Action = Step;

    fn init_states(&self) -> Vec<State> {
        let config = SchedulerConfig {
            workers: 1,
            hint_threshold: 1,
            use_hints: self.use_hints,
        };
        let pages = self.tasks() as u32 * self.stack_pages;
        let mut s = State {
            scheds: (0..self.nodes)
                .map(|n| Scheduler::new(n as NodeId, self.nodes, pages, config).unwrap())
                .collect(),
            sim: SimCluster::new(self.nodes, pages, self.kind).unwrap(),
            in_flight: Vec::new(),
            carriers: vec![Carrier::default(); self.nodes],
            left: vec![self.quanta; self.tasks()],
            stack_version: vec![0; pages as usize],
            ends: vec![0; self.tasks()],
            joined_away: vec![false; self.tasks()],
            pushes_left: self.pushes,
            lost: None,
            noticed: vec![false; self.nodes],
            lost_in_transit: None,
            error: None,
        };
        for (i, &m) in self.migratable.iter().enumerate() {
            let effects = s.scheds[0].spawn(task_ref(i, m, self.stack_pages)).unwrap();
            self.apply(&mut s, 0, effects);
        }
        vec![s]
    }

    fn actions(&self, s: &State, actions: &mut Vec<Step>) {
        if s.error.is_some() {
            return;
        }
        // The first message of each pair of nodes (in the order sent).
        for (i, e) in s.in_flight.iter().enumerate() {
            if !s.in_flight[..i]
                .iter()
                .any(|x| x.from == e.from && x.to == e.to)
            {
                actions.push(Step::Deliver(e.clone()));
            }
        }
        if s.lost.is_none() {
            for (i, e) in s.sim.in_flight.iter().enumerate() {
                if i == 0 || s.sim.in_flight[i - 1] != *e {
                    actions.push(Step::DeliverPage(e.clone()));
                }
            }
        }
        for n in (0..self.nodes as NodeId).filter(|&n| self.live(s, n)) {
            let sc = &s.scheds[n as usize];
            // A free worker takes the next ready task; with none, its null task may ask for
            // work at once (the runtime's worker calls next_task whenever it is free).
            if sc.running().is_empty()
                && sc.lost().is_none()
                && (sc.ready().next().is_some() || sc.asking().is_none())
            {
                actions.push(Step::Dispatch(n));
            }
            for t in sc.running() {
                // The first page (the descriptor) the worker writes, then the current one.
                let missing = t
                    .stack
                    .handed_off()
                    .find(|&p| s.sim.nodes[n as usize].page(p).unwrap().access != Access::Write);
                let Some(page) = missing else {
                    actions.push(Step::Quantum(n, t.id, None));
                    if s.pushes_left > 0 && t.migratable && s.left[t.id.0 as usize] > 1 {
                        for d in (0..self.nodes as NodeId).filter(|&d| d != n) {
                            actions.push(Step::Quantum(n, t.id, Some(d)));
                        }
                    }
                    continue;
                };
                let st = s.sim.nodes[n as usize].page(page).unwrap();
                if s.lost.is_none() && st.pending.is_none() && !st.evicting {
                    actions.push(Step::Fault(n, t.id, page));
                } else if s.noticed[n as usize] {
                    actions.push(Step::Abort(n, t.id));
                }
            }
            if self.remote_joins && n != 0 && s.lost.is_none() {
                for t in 0..self.tasks() {
                    if s.ends[t] == 1 && !s.joined_away[t] {
                        actions.push(Step::JoinAway(n, TaskId(t as u64)));
                    }
                }
            }
            actions.push(Step::Timeout(n));
            if self.loss && s.lost.is_none() && n != 0 {
                actions.push(Step::Lose(n));
            }
            if s.lost.is_some() && !s.noticed[n as usize] {
                actions.push(Step::Notice(n));
            }
        }
    }

    fn next_state(&self, last: &State, step: Step) -> Option<State> {
        let mut s = last.clone();
        match step {
            Step::Deliver(env) => {
                let at = s.in_flight.iter().position(|e| *e == env)?;
                s.in_flight.remove(at);
                // The stack pages that travel inside a Migrate are handled first, in the
                // same step.
                let carried = match env.msg {
                    Message::Migrate { carried, .. } => carried,
                    _ => Default::default(),
                };
                if carried.len() != env.contents.len() {
                    s.error = Some(format!(
                        "a migration carrying {carried:?} and {:?}",
                        env.contents
                    ));
                    return Some(s);
                }
                for (msg, &data) in carried.hand_offs().zip(&env.contents) {
                    let page_env = PageEnvelope {
                        from: env.from,
                        to: env.to,
                        msg,
                        data,
                    };
                    let at = s.sim.in_flight.partition_point(|x| *x <= page_env);
                    s.sim.in_flight.insert(at, page_env);
                    if let Err(e) = s.sim.deliver(at) {
                        s.error = Some(format!("node {} (coherence): {e}", env.to));
                        return Some(s);
                    }
                }
                let before = self.locations(&s);
                match s.scheds[env.to as usize].handle(env.from, env.msg) {
                    Ok(effects) => {
                        let refused = matches!(env.msg, Message::Refuse { .. })
                            || effects.iter().any(|e| {
                                matches!(
                                    e,
                                    Effect::Send {
                                        msg: Message::Refuse { .. },
                                        ..
                                    }
                                )
                            });
                        self.apply(&mut s, env.to, effects);
                        if refused && self.locations(&s) != before {
                            s.error = Some(format!(
                                "a refused work request moved a task: {before:?} -> {:?}",
                                self.locations(&s)
                            ));
                        }
                    }
                    Err(e) => s.error = Some(format!("node {}: {e}", env.to)),
                }
            }
            Step::DeliverPage(env) => {
                let at = s.sim.in_flight.iter().position(|e| *e == env)?;
                if let Err(e) = s.sim.deliver(at) {
                    s.error = Some(format!("node {} (coherence): {e}", env.to));
                }
            }
            Step::Dispatch(n) => {
                let effects = s.scheds[n as usize].next_task();
                self.apply(&mut s, n, effects);
            }
            Step::Fault(n, _, page) => {
                if let Err(e) = s.sim.fault(n, page, Access::Write) {
                    s.error = Some(format!("node {n} (coherence): {e}"));
                }
            }
            Step::Quantum(n, t, push) => {
                let i = t.0 as usize;
                for page in self.stack(t).iter() {
                    let seen = s.sim.contents[n as usize][page as usize];
                    if seen != s.stack_version[page as usize] {
                        s.error = Some(format!(
                            "task {i} resumed at node {n} with version {seen} of stack page \
                             {page}, not the version {} it left",
                            s.stack_version[page as usize]
                        ));
                        return Some(s);
                    }
                    match s.sim.write(n, page) {
                        Ok(v) => s.stack_version[page as usize] = v,
                        Err(e) => s.error = Some(format!("node {n}: {e}")),
                    }
                }
                let Some(left) = s.left[i].checked_sub(1) else {
                    s.error = Some(format!("task {i} runs at node {n} after it ended"));
                    return Some(s);
                };
                s.left[i] = left;
                let sched = &mut s.scheds[n as usize];
                let r = if s.left[i] == 0 {
                    s.ends[i] += 1;
                    sched.finished(t, false)
                } else if let Some(d) = push {
                    s.pushes_left -= 1;
                    sched
                        .migrate(t, d)
                        .map_err(|e| memlink_dsm::protocol::ProtocolError(format!("migrate: {e}")))
                } else {
                    sched.suspend(t, Suspend::Yield)
                };
                match r {
                    Ok(effects) => self.apply(&mut s, n, effects),
                    Err(e) => s.error = Some(format!("node {n}: {e}")),
                }
            }
            Step::Timeout(n) => {
                let effects = s.scheds[n as usize].timeout();
                self.apply(&mut s, n, effects);
                if s == *last {
                    return None;
                }
            }
            Step::Lose(n) => {
                s.lost = Some(n);
                for e in s.in_flight.iter().filter(|e| e.from == n || e.to == n) {
                    if let Message::Migrate { task, .. } = e.msg {
                        s.lost_in_transit = Some(task.id);
                    }
                }
                s.in_flight.retain(|e| e.from != n && e.to != n);
                let mut dropped: Vec<Message> = s.carriers[n as usize]
                    .migrations()
                    .map(|(_, m)| *m)
                    .collect();
                s.carriers[n as usize] = Carrier::default();
                for c in s.carriers.iter_mut() {
                    dropped.extend(c.lose(n));
                }
                for m in dropped {
                    if let Message::Migrate { task, .. } = m {
                        s.lost_in_transit = Some(task.id);
                    }
                }
            }
            Step::Notice(n) => {
                s.noticed[n as usize] = true;
                let lost = s.lost?;
                match s.scheds[n as usize].node_lost(lost) {
                    Ok(effects) => self.apply(&mut s, n, effects),
                    Err(e) => s.error = Some(format!("node {n}: {e}")),
                }
            }
            Step::Abort(n, t) => match s.scheds[n as usize].finished(t, true) {
                Ok(effects) => self.apply(&mut s, n, effects),
                Err(e) => s.error = Some(format!("node {n}: {e}")),
            },
            Step::JoinAway(n, t) => {
                s.joined_away[t.0 as usize] = true;
                let load = s.scheds[n as usize].load();
                self.post(&mut s, n, 0, Message::Reaped { task: t, load }, Vec::new());
            }
        }
        self.collect(&mut s);
        Some(s)
    }

    fn format_action(&self, step: &Step) -> String {
        step.to_string()
    }

    fn properties(&self) -> Vec<Property<Self>> {
        vec![
            Property::always("every step is accepted", |_, s: &State| {
                s.error
                    .as_ref()
                    .is_none_or(|e| e.contains("resumed") || e.contains("refused"))
            }),
            Property::always(
                "no task is lost or held twice",
                |m: &SchedulerModel, s: &State| {
                    (0..m.tasks()).all(|i| {
                        let places = m.places(s, TaskId(i as u64));
                        match (s.lost, s.ends[i]) {
                            (None, 0) => places == 1,
                            (None, _) => places == 0,
                            (Some(_), _) => places <= 1,
                        }
                    })
                },
            ),
            Property::always(
                "a non-migratable task never leaves its home",
                |m: &SchedulerModel, s: &State| {
                    (0..m.tasks()).filter(|&i| !m.migratable[i]).all(|i| {
                        let t = TaskId(i as u64);
                        (1..m.nodes).all(|n| !s.scheds[n].holds(t))
                            && !s.in_flight.iter().any(
                                |e| matches!(e.msg, Message::Migrate { task, .. } if task.id == t),
                            )
                    })
                },
            ),
            Property::always("no task ends twice", |_, s: &State| {
                s.ends.iter().all(|&e| e <= 1)
            }),
            Property::always("a task resumes with the stack it left", |_, s: &State| {
                s.error.as_ref().is_none_or(|e| !e.contains("resumed"))
            }),
            Property::always("the stack pages stay coherent", |_, s: &State| {
                s.lost.is_some() || s.sim.check().is_ok()
            }),
            Property::always("no stack hand-off is refused", |_, s: &State| {
                !s.sim.in_flight.iter().any(|e| {
                    matches!(
                        e.msg,
                        PageMessage::HandOffReply {
                            accepted: false,
                            ..
                        }
                    )
                })
            }),
            Property::always(
                "a handle joined on another node is dropped at its home",
                |m: &SchedulerModel, s: &State| {
                    s.lost.is_some()
                        || (0..m.tasks()).filter(|&i| s.joined_away[i]).all(|i| {
                            let t = TaskId(i as u64);
                            let told = |e: &Envelope| {
                                matches!(e.msg, Message::Reaped { task, .. } | Message::Done { task, .. } if task == t)
                            };
                            s.in_flight.iter().any(told) || s.scheds[0].outcome(t).is_none()
                        })
                },
            ),
            Property::always("a refused work request moves no task", |_, s: &State| {
                s.error.as_ref().is_none_or(|e| !e.contains("refused"))
            }),
            Property::always("a handle tells how its task ended", |_, s: &State| {
                s.scheds[0].handles().all(|(t, o)| match o {
                    None => true,
                    Some(Outcome::Finished) => s.ends[t.0 as usize] == 1,
                    Some(Outcome::NodeLost(n)) => s.lost == Some(n),
                    Some(Outcome::Panicked) => s.lost.is_some(),
                })
            }),
            Property::always(
                "a task lost in transit ends with NodeLost naming the node",
                |_, s: &State| {
                    s.lost_in_transit.is_none_or(|t| {
                        matches!(s.scheds[0].outcome(t), Some(None))
                            || s.scheds[0].outcome(t) == Some(s.lost.map(Outcome::NodeLost))
                    })
                },
            ),
            // Liveness, part 1 (no deadlock): a run that stops has resolved every handle.
            // Part 2 (no livelock) is `check_progress`.
            Property::always("every task ends", |m: &SchedulerModel, s: &State| {
                let mut more = Vec::new();
                m.actions(s, &mut more);
                s.error.is_some()
                    || m.finished(s)
                    || more.into_iter().any(|a| m.next_state(s, a).is_some())
            }),
            // Witnesses that the cases the brief names are explored.
            Property::sometimes(
                "two nodes ask the same node for work at once",
                |_, s: &State| {
                    let asks: Vec<_> = s
                        .in_flight
                        .iter()
                        .filter(|e| matches!(e.msg, Message::WorkRequest { .. }))
                        .collect();
                    asks.len() >= 2 && asks[0].to == asks[1].to
                },
            ),
            Property::sometimes(
                "a node is lost while a task migrates to or from it, and its handle ends",
                |_, s: &State| {
                    s.lost_in_transit
                        .is_some_and(|t| matches!(s.scheds[0].outcome(t), Some(Some(_))))
                },
            ),
            Property::sometimes("a work request is refused", |_, s: &State| {
                s.in_flight
                    .iter()
                    .any(|e| matches!(e.msg, Message::Refuse { .. }))
            }),
            Property::sometimes(
                "a task migrates in answer to a work request",
                |_, s: &State| {
                    s.in_flight.iter().any(|e| {
                        matches!(
                            e.msg,
                            Message::Migrate {
                                requested: true,
                                ..
                            }
                        )
                    })
                },
            ),
            Property::sometimes(
                "a migration carries a stack page inside it",
                |_, s: &State| {
                    s.in_flight.iter().any(|e| {
                        matches!(e.msg, Message::Migrate { carried, .. } if !carried.is_empty())
                    })
                },
            ),
            Property::sometimes(
                "a task ends on a node other than its home",
                |_, s: &State| {
                    s.in_flight
                        .iter()
                        .any(|e| matches!(e.msg, Message::Done { .. }))
                },
            ),
        ]
    }
}

/// Explore every state; panic with the shortest counterexample of a broken `always`
/// property, or if a `sometimes` property was never seen. Returns the number of states.
fn check(model: SchedulerModel, witnesses: &[&str]) -> usize {
    let started = Instant::now();
    let checker = model.clone().checker().spawn_bfs().join();
    let states = checker.unique_state_count();
    println!(
        "{} nodes, tasks migratable {:?}, {} stack pages, {} quanta, {} pushes, loss {}, {:?} stacks, hints {}: \
         {states} states, depth {}, {:.2?}",
        model.nodes,
        model.migratable,
        model.stack_pages,
        model.quanta,
        model.pushes,
        model.loss,
        model.kind,
        model.use_hints,
        checker.max_depth(),
        started.elapsed()
    );
    let mut report = String::new();
    for p in model.properties() {
        let found = checker.discovery(p.name);
        match (p.expectation, found) {
            (Expectation::Always, Some(path)) => {
                let last = path.last_state().clone();
                let steps = path.into_actions();
                let title = format!("\"{}\" broken after {} steps:", p.name, steps.len());
                let why = format!("{:?}", last.error);
                report.push_str(&model_support::counterexample(&title, &steps, &why));
            }
            (Expectation::Sometimes, None) if witnesses.contains(&p.name) => {
                report.push_str(&format!("\"{}\" never happened\n", p.name));
            }
            _ => {}
        }
    }
    assert!(report.is_empty(), "{report}");
    assert!(checker.is_done(), "the exploration did not finish");
    states
}

/// Liveness under fair scheduling: from every state some run resolves every handle. Returns
/// the number of states, or panics with the path to one from which none does.
fn check_progress(model: &SchedulerModel) -> usize {
    match model_support::progress(model, |s| model.finished(s)) {
        Ok(states) => states,
        Err(trapped) => panic!(
            "after these {} steps no run ends every task:\n  {}",
            trapped.path.len(),
            trapped
                .path
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n  ")
        ),
    }
}

const ALL_WITNESSES: [&str; 5] = [
    "two nodes ask the same node for work at once",
    "a work request is refused",
    "a task migrates in answer to a work request",
    "a migration carries a stack page inside it",
    "a task ends on a node other than its home",
];

fn model(migratable: &[bool], quanta: u8, kind: ManagerKind) -> SchedulerModel {
    SchedulerModel {
        nodes: 3,
        migratable: migratable.to_vec(),
        stack_pages: 1,
        remote_joins: false,
        quanta,
        pushes: 0,
        loss: false,
        kind,
        use_hints: true,
    }
}

fn check_all(model: SchedulerModel, witnesses: &[&str]) {
    let states = check(model.clone(), witnesses);
    assert!(states > 40, "only {states} states explored");
    let started = Instant::now();
    let n = check_progress(&model);
    println!(
        "  progress possible from all {n} states, {:.2?}",
        started.elapsed()
    );
}

/// Two migratable tasks on node 0, two quanta each, three nodes with one worker: idle
/// nodes ask node 0 (and each other) for work, at once and in every order.
#[test]
#[ignore = "a CPU-bound model: scripts/test-all.sh runs it beside the other tests; alone: cargo test -p memlink-models -- --ignored"]
fn work_requests_and_migration_lose_no_task() {
    check_all(
        model(&[true, true], 2, ManagerKind::Dynamic),
        &ALL_WITNESSES,
    );
}

/// A non-migratable task never leaves node 0; the migratable one still spreads.
#[test]
#[ignore = "a CPU-bound model: scripts/test-all.sh runs it beside the other tests; alone: cargo test -p memlink-models -- --ignored"]
fn a_non_migratable_task_stays_home() {
    check_all(
        model(&[true, false], 2, ManagerKind::Dynamic),
        &ALL_WITNESSES[1..],
    );
}

/// A task that asks to migrate twice (and is asked for by idle nodes meanwhile) moves with
/// its stack each time: under the central manager, whose hand-offs go through the manager
/// (so its `Migrate` waits for the manager's answer), with a two-page stack (the descriptor
/// page and the current page, both handed off).
/// A thread on node 1 or 2 may join the task once it ended, by its descriptor: its
/// `Reaped` may overtake the task's `Done` at the home, which drops the handle either way.
#[test]
#[ignore = "a CPU-bound model: scripts/test-all.sh runs it beside the other tests; alone: cargo test -p memlink-models -- --ignored"]
fn a_task_that_asks_to_move_twice_keeps_its_stack() {
    let mut m = model(&[true], 3, ManagerKind::Central);
    m.pushes = 2;
    m.stack_pages = 2;
    m.remote_joins = true;
    check_all(m, &ALL_WITNESSES[3..]);
}

/// Under the central manager (whose hand-offs wait for the manager's answer, so each
/// `Migrate` waits in its carrier) with two-page stacks, both pages carried: idle nodes ask
/// for the two tasks at once and in every order.
#[test]
#[ignore = "a CPU-bound model: scripts/test-all.sh runs it beside the other tests; alone: cargo test -p memlink-models -- --ignored"]
fn work_requests_under_a_central_manager_carry_both_stack_pages() {
    let mut m = model(&[true, true], 2, ManagerKind::Central);
    m.stack_pages = 2;
    check_all(m, &ALL_WITNESSES);
}

/// Without hints an idle node asks the others in turn: more refusals, still no task lost.
#[test]
#[ignore = "a CPU-bound model: scripts/test-all.sh runs it beside the other tests; alone: cargo test -p memlink-models -- --ignored"]
fn without_hints_no_task_is_lost_either() {
    let mut m = model(&[true, true], 2, ManagerKind::Dynamic);
    m.use_hints = false;
    check_all(m, &ALL_WITNESSES[1..]);
}

/// A node lost at any step (also while a task migrates to or from it): every handle ends,
/// NodeLost names the lost node, no task ends twice.
#[test]
#[ignore = "a CPU-bound model: scripts/test-all.sh runs it beside the other tests; alone: cargo test -p memlink-models -- --ignored"]
fn a_node_lost_mid_migration_ends_the_handles_with_node_lost() {
    let mut m = model(&[true, true], 2, ManagerKind::Dynamic);
    m.loss = true;
    check_all(
        m,
        &["a node is lost while a task migrates to or from it, and its handle ends"],
    );
}
