//! One node's scheduler as a pure state machine: its ready queue, its workers, the hints it
//! holds about the other nodes, its null task's work requests, migration in and out, and the
//! handles of the tasks spawned here. Calls from the workers and messages from peers go in,
//! [`Effect`]s come out; there is no I/O, no clock and no randomness, so a model checker
//! drives the very code the runtime runs.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::hash::{Hash, Hasher};

use super::message::{Effect, Load, Message, Outcome, TaskId, TaskRef};
use crate::protocol::{MAX_NODES, ProtocolError};
use crate::types::NodeId;

/// How a node schedules.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SchedulerConfig {
    /// Worker threads running the ready queue (at least 1).
    pub workers: u16,
    /// A hint is broadcast when the surplus changes by this much (or becomes zero, or
    /// stops being zero); at least 1.
    pub hint_threshold: u16,
    /// Whether hints are used: off, no hint is broadcast and an idle node asks the other
    /// nodes in turn (the baseline that shows what hints save in refusals).
    pub use_hints: bool,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            workers: 1,
            hint_threshold: 1,
            use_hints: true,
        }
    }
}

/// What a scheduler counted. Not protocol state: two schedulers that differ only in their
/// counts are equal (and hash alike), so a model checker sees one state, not one per count.
#[derive(Clone, Copy, Debug, Default)]
pub struct SchedulerStats {
    /// Tasks that ended here.
    pub tasks_run: u64,
    /// Tasks that migrated here.
    pub migrated_in: u64,
    /// Tasks that migrated away.
    pub migrated_out: u64,
    /// Work requests this node's null task sent.
    pub requests_sent: u64,
    /// Of those, the ones refused.
    pub requests_refused: u64,
    /// Work requests this node refused.
    pub refusals_sent: u64,
    /// Hints broadcast.
    pub hints_sent: u64,
}

impl PartialEq for SchedulerStats {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for SchedulerStats {}

impl Hash for SchedulerStats {
    fn hash<H: Hasher>(&self, _: &mut H) {}
}

/// Why a task could not be spawned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SpawnError {
    /// A task with this descriptor is already known here.
    Duplicate(TaskId),
    /// The task names another node as its home: a task is spawned on its home.
    NotHome {
        /// The home it names.
        home: NodeId,
        /// This node.
        here: NodeId,
    },
    /// Its stack is not inside the shared region.
    StackOutOfRange,
    /// The cluster lost a node: no task runs any more.
    ClusterFailed {
        /// The node lost.
        lost: NodeId,
    },
}

impl fmt::Display for SpawnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpawnError::Duplicate(t) => write!(
                f,
                "task {t:?} is already known on this node: each task needs its own descriptor"
            ),
            SpawnError::NotHome { home, here } => write!(
                f,
                "a task is spawned on its home node, but this task names node {home} and this \
                 is node {here}"
            ),
            SpawnError::StackOutOfRange => {
                f.write_str("the task's stack is not inside the shared region")
            }
            SpawnError::ClusterFailed { lost } => write!(
                f,
                "the cluster lost node {lost}; no task can be spawned: restart all nodes"
            ),
        }
    }
}

impl std::error::Error for SpawnError {}

/// Why a task could not migrate (it keeps running where it is).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MigrateError {
    /// The task was spawned non-migratable.
    NotMigratable(TaskId),
    /// No such node in the cluster.
    UnknownNode {
        /// The node asked for.
        node: NodeId,
        /// The cluster's size.
        nodes: u16,
    },
    /// The task is already on that node.
    SameNode(NodeId),
    /// The task is not running on this node (only a running task asks to move).
    NotRunning(TaskId),
    /// The cluster lost a node: nothing migrates any more.
    ClusterFailed {
        /// The node lost.
        lost: NodeId,
    },
    /// The node runs other code (see [`Scheduler::bar`]).
    Barred(NodeId),
}

impl fmt::Display for MigrateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MigrateError::NotMigratable(t) => write!(
                f,
                "task {t:?} was spawned non-migratable; spawn it migratable to move it"
            ),
            MigrateError::UnknownNode { node, nodes } => write!(
                f,
                "node {node} is not in the cluster of {nodes} nodes (ids 0 to {})",
                nodes.saturating_sub(1)
            ),
            MigrateError::SameNode(n) => write!(f, "the task already runs on node {n}"),
            MigrateError::NotRunning(t) => write!(
                f,
                "task {t:?} is not running on this node; only a running task asks to migrate"
            ),
            MigrateError::ClusterFailed { lost } => write!(
                f,
                "the cluster lost node {lost}; nothing migrates any more: restart all nodes"
            ),
            MigrateError::Barred(n) => write!(
                f,
                "node {n} runs other code (another binary, or the same one loaded at another \
                 address): tasks cannot migrate there (Dsm::code_check names the difference)"
            ),
        }
    }
}

impl std::error::Error for MigrateError {}

/// Why a running task gave its worker up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Suspend {
    /// It yielded: back to the end of the ready queue.
    Yield,
    /// It waits for a DSM lock, barrier or condition: off the queue (and off its worker)
    /// until [`Scheduler::unblock`].
    Block,
}

/// One node's scheduler (see the module documentation).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Scheduler {
    id: NodeId,
    nodes: u16,
    /// Pages in the shared region (a task's stack must lie inside).
    pages: u32,
    config: SchedulerConfig,
    ready: VecDeque<TaskRef>,
    /// Tasks a worker runs now (at most `config.workers`).
    running: Vec<TaskRef>,
    /// Tasks waiting for a DSM lock, barrier or condition (no worker held).
    blocked: Vec<TaskRef>,
    /// The surplus ([`Load::surplus`]) last heard from each node, by a hint or piggybacked
    /// on any message (this node's own entry is unused). Only the surplus is kept: it is all
    /// the choice of whom to ask uses.
    hints: Vec<u16>,
    /// The surplus this node broadcast last.
    announced: u16,
    /// A hint should go out but one already went out this period.
    hint_due: bool,
    /// A hint went out since the last [`Scheduler::timeout`].
    hinted_this_period: bool,
    /// The node this node's null task asked for work and has not answered yet.
    asking: Option<NodeId>,
    /// Work requests refused one after the other since the last task that came in answer
    /// to one, or the last TIMEOUT: an idle node asks again at once (not at the next
    /// TIMEOUT) while this is below the number of other nodes.
    refused_in_row: u16,
    /// Without hints: the node asked next.
    next_victim: NodeId,
    /// The handles of the tasks spawned here: `None` while the task has not ended.
    homed: BTreeMap<TaskId, Option<Outcome>>,
    /// Handles joined on another node before their end arrived here: forgotten at the end.
    reaped_early: BTreeSet<TaskId>,
    /// The first node the cluster lost (the cluster cannot go on after it).
    lost: Option<NodeId>,
    /// The nodes that run other code: no task moves between them and this node.
    barred: Vec<bool>,
    stats: SchedulerStats,
}

impl Scheduler {
    /// The scheduler of node `id` in a cluster of `nodes`, over a region of `pages` pages.
    pub fn new(
        id: NodeId,
        nodes: usize,
        pages: u32,
        config: SchedulerConfig,
    ) -> Result<Scheduler, ProtocolError> {
        if nodes == 0 || nodes > MAX_NODES || id as usize >= nodes {
            return Err(ProtocolError(format!(
                "node {id} of {nodes}: the scheduler supports 1 to {MAX_NODES} nodes"
            )));
        }
        if config.workers == 0 || config.hint_threshold == 0 {
            return Err(ProtocolError(
                "a scheduler needs at least one worker and a hint threshold of at least 1".into(),
            ));
        }
        Ok(Scheduler {
            id,
            nodes: nodes as u16,
            pages,
            config,
            ready: VecDeque::new(),
            running: Vec::new(),
            blocked: Vec::new(),
            hints: vec![0; nodes],
            announced: 0,
            hint_due: false,
            hinted_this_period: false,
            asking: None,
            refused_in_row: 0,
            next_victim: (id + 1) % nodes as u16,
            homed: BTreeMap::new(),
            reaped_early: BTreeSet::new(),
            lost: None,
            barred: vec![false; nodes],
            stats: SchedulerStats::default(),
        })
    }

    /// Node `node` runs other code (another binary, or the same one loaded at another
    /// address; the admission handshake tells): no task moves between it and this node. It
    /// is never asked for work, its work requests are refused, [`Scheduler::migrate`] to it
    /// fails with [`MigrateError::Barred`] and a task it sends is a protocol error. Pages
    /// are shared as before. The check is symmetric, so the peer bars this node too.
    pub fn bar(&mut self, node: NodeId) {
        if let Some(b) = self.barred.get_mut(node as usize) {
            *b = node != self.id;
        }
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// This node's load now.
    pub fn load(&self) -> Load {
        Load {
            ready: self.ready.len().min(u16::MAX as usize) as u16,
            migratable: self
                .ready
                .iter()
                .filter(|t| t.migratable)
                .count()
                .min(u16::MAX as usize) as u16,
            workers: self.config.workers,
            busy: self.running.len().min(u16::MAX as usize) as u16,
        }
    }

    /// The ready queue, first to run first.
    pub fn ready(&self) -> impl Iterator<Item = &TaskRef> {
        self.ready.iter()
    }

    /// The tasks the workers run now.
    pub fn running(&self) -> &[TaskRef] {
        &self.running
    }

    /// The tasks waiting for a DSM lock, barrier or condition.
    pub fn blocked(&self) -> &[TaskRef] {
        &self.blocked
    }

    /// The surplus last heard from `node`.
    pub fn hint(&self, node: NodeId) -> Option<u16> {
        self.hints.get(node as usize).copied()
    }

    /// The node this node's null task waits on for an answer.
    pub fn asking(&self) -> Option<NodeId> {
        self.asking
    }

    /// The first node the cluster lost, if any.
    pub fn lost(&self) -> Option<NodeId> {
        self.lost
    }

    /// What this scheduler counted.
    pub fn stats(&self) -> SchedulerStats {
        self.stats
    }

    /// The handle of a task spawned here: `None` if unknown here, `Some(None)` while it has
    /// not ended, `Some(Some(outcome))` once it has.
    pub fn outcome(&self, task: TaskId) -> Option<Option<Outcome>> {
        self.homed.get(&task).copied()
    }

    /// The handles of the tasks spawned here.
    pub fn handles(&self) -> impl Iterator<Item = (TaskId, Option<Outcome>)> + '_ {
        self.homed.iter().map(|(&t, &o)| (t, o))
    }

    /// Forget the handle of an ended task (it was joined); returns its outcome.
    pub fn reap(&mut self, task: TaskId) -> Option<Outcome> {
        let outcome = (*self.homed.get(&task)?)?;
        self.homed.remove(&task);
        Some(outcome)
    }

    /// Whether this node holds `task` (ready, running or blocked).
    pub fn holds(&self, task: TaskId) -> bool {
        self.ready.iter().any(|t| t.id == task)
            || self.running.iter().any(|t| t.id == task)
            || self.blocked.iter().any(|t| t.id == task)
    }

    /// A task created here: it goes on the ready queue (READY), its handle lives here.
    pub fn spawn(&mut self, task: TaskRef) -> Result<Vec<Effect>, SpawnError> {
        if let Some(lost) = self.lost {
            return Err(SpawnError::ClusterFailed { lost });
        }
        if task.home != self.id {
            return Err(SpawnError::NotHome {
                home: task.home,
                here: self.id,
            });
        }
        if !task.stack.within(self.pages) {
            return Err(SpawnError::StackOutOfRange);
        }
        if self.homed.contains_key(&task.id) || self.holds(task.id) {
            return Err(SpawnError::Duplicate(task.id));
        }
        self.homed.insert(task.id, None);
        self.ready.push_back(task);
        let mut out = vec![Effect::Wake];
        self.after_change(&mut out);
        Ok(out)
    }

    /// A worker is free: it takes the first ready task ([`Effect::Run`]), or nothing (it
    /// runs the null task: it waits for READY, and calls [`Scheduler::timeout`] each period).
    pub fn next_task(&mut self) -> Vec<Effect> {
        if self.lost.is_some() || self.running.len() >= self.config.workers as usize {
            return Vec::new();
        }
        let Some(task) = self.ready.pop_front() else {
            // The worker is idle: its null task asks for work now rather than at the next
            // TIMEOUT (a node that just ran the task it was given asks for the next at once).
            let mut out = Vec::new();
            self.ask_again(&mut out);
            return out;
        };
        self.running.push(task);
        let mut out = vec![Effect::Run { task }];
        self.after_change(&mut out);
        out
    }

    fn take_running(&mut self, task: TaskId) -> Result<TaskRef, ProtocolError> {
        let at = self
            .running
            .iter()
            .position(|t| t.id == task)
            .ok_or_else(|| {
                ProtocolError(format!("task {task:?} is not running on node {}", self.id))
            })?;
        Ok(self.running.swap_remove(at))
    }

    /// The running task `task` switched out with its saved stack pointer in `page`: the
    /// page its next resumption uses, handed off first when it migrates
    /// ([`StackPages::handed_off`]). The worker calls this before it reports why the task
    /// switched out.
    ///
    /// [`StackPages::handed_off`]: super::StackPages::handed_off
    pub fn stack_at(
        &mut self,
        task: TaskId,
        page: crate::types::PageNo,
    ) -> Result<(), ProtocolError> {
        let me = self.id;
        let t = self
            .running
            .iter_mut()
            .find(|t| t.id == task)
            .ok_or_else(|| ProtocolError(format!("task {task:?} is not running on node {me}")))?;
        if !t.stack.contains(page) {
            return Err(ProtocolError(format!(
                "task {task:?} switched out with its stack pointer in page {page}, outside its \
                 stack {:?}",
                t.stack
            )));
        }
        t.stack.current = page;
        Ok(())
    }

    /// A running task gave its worker up: it yielded (back to the ready queue) or blocked.
    pub fn suspend(&mut self, task: TaskId, why: Suspend) -> Result<Vec<Effect>, ProtocolError> {
        let t = self.take_running(task)?;
        let mut out = Vec::new();
        match why {
            Suspend::Yield if self.lost.is_none() => {
                self.ready.push_back(t);
                out.push(Effect::Wake);
            }
            Suspend::Yield => {}
            Suspend::Block => self.blocked.push(t),
        }
        self.after_change(&mut out);
        Ok(out)
    }

    /// A blocked task may go on: back to the ready queue (READY).
    pub fn unblock(&mut self, task: TaskId) -> Result<Vec<Effect>, ProtocolError> {
        let at = self
            .blocked
            .iter()
            .position(|t| t.id == task)
            .ok_or_else(|| {
                ProtocolError(format!("task {task:?} is not blocked on node {}", self.id))
            })?;
        let t = self.blocked.swap_remove(at);
        if self.lost.is_some() {
            return Ok(Vec::new());
        }
        self.ready.push_back(t);
        let mut out = vec![Effect::Wake];
        self.after_change(&mut out);
        Ok(out)
    }

    /// A running task ended (returned or panicked): its home learns it.
    pub fn finished(&mut self, task: TaskId, panicked: bool) -> Result<Vec<Effect>, ProtocolError> {
        let t = self.take_running(task)?;
        let mut out = Vec::new();
        if self.lost.is_some() {
            // Its handle already ended with NodeLost.
            return Ok(out);
        }
        self.stats.tasks_run += 1;
        if t.home == self.id {
            self.resolve(task, panicked, &mut out)?;
        } else {
            out.push(Effect::Send {
                to: t.home,
                msg: Message::Done {
                    task,
                    panicked,
                    load: self.load(),
                },
            });
        }
        self.after_change(&mut out);
        Ok(out)
    }

    fn resolve(
        &mut self,
        task: TaskId,
        panicked: bool,
        out: &mut Vec<Effect>,
    ) -> Result<(), ProtocolError> {
        let me = self.id;
        match self.homed.get_mut(&task) {
            Some(slot @ None) => {
                let outcome = if panicked {
                    Outcome::Panicked
                } else {
                    Outcome::Finished
                };
                *slot = Some(outcome);
                out.push(Effect::Resolved { task, outcome });
                if self.reaped_early.remove(&task) {
                    self.homed.remove(&task);
                    out.push(Effect::Reaped { task });
                }
                Ok(())
            }
            Some(Some(o)) => Err(ProtocolError(format!(
                "task {task:?} ended again at node {me}, which already has its outcome {o:?}"
            ))),
            None => Err(ProtocolError(format!(
                "task {task:?} ended, but node {me} is not its home"
            ))),
        }
    }

    /// The running task `task` asks to move to `to`: once it is suspended (its context saved),
    /// its stack's ownership is handed to `to` and the descriptor follows. On an error the
    /// task keeps running here.
    pub fn migrate(&mut self, task: TaskId, to: NodeId) -> Result<Vec<Effect>, MigrateError> {
        if let Some(lost) = self.lost {
            return Err(MigrateError::ClusterFailed { lost });
        }
        if to >= self.nodes {
            return Err(MigrateError::UnknownNode {
                node: to,
                nodes: self.nodes,
            });
        }
        if to == self.id {
            return Err(MigrateError::SameNode(to));
        }
        if self.barred[to as usize] {
            return Err(MigrateError::Barred(to));
        }
        let t = *self
            .running
            .iter()
            .find(|t| t.id == task)
            .ok_or(MigrateError::NotRunning(task))?;
        if !t.migratable {
            return Err(MigrateError::NotMigratable(task));
        }
        self.running.retain(|r| r.id != task);
        let mut out = Vec::new();
        self.send_task(t, to, false, &mut out);
        self.after_change(&mut out);
        Ok(out)
    }

    fn send_task(&mut self, task: TaskRef, to: NodeId, requested: bool, out: &mut Vec<Effect>) {
        self.stats.migrated_out += 1;
        out.push(Effect::Migrate {
            to,
            msg: Message::Migrate {
                task,
                requested,
                carried: Default::default(),
                load: self.load(),
            },
        });
    }

    /// The null task's TIMEOUT, every period: a hint held back by the rate bound goes out;
    /// then, if this node is idle, it asks the node the hints say has the largest surplus
    /// for work (without hints: the next node in turn).
    pub fn timeout(&mut self) -> Vec<Effect> {
        let mut out = Vec::new();
        if self.lost.is_some() {
            return out;
        }
        self.hinted_this_period = false;
        if self.hint_due {
            self.after_change(&mut out);
        }
        self.refused_in_row = 0;
        self.ask_for_work(&mut out);
        out
    }

    /// Outside a TIMEOUT: an idle node asks for work at once, unless the other nodes all
    /// refused it one after the other since the last TIMEOUT or task received (then it
    /// waits for the next TIMEOUT: no storm of requests and refusals).
    fn ask_again(&mut self, out: &mut Vec<Effect>) {
        if self.lost.is_none() && self.refused_in_row < self.nodes.saturating_sub(1) {
            self.ask_for_work(out);
        }
    }

    /// If this node is idle and not asking already: ask the node the hints say has the
    /// largest surplus for work (without hints: the next node in turn).
    fn ask_for_work(&mut self, out: &mut Vec<Effect>) {
        let idle = self.ready.is_empty() && self.running.len() < self.config.workers as usize;
        if !idle || self.asking.is_some() || self.nodes < 2 {
            return;
        }
        let victim = if self.config.use_hints {
            // The largest surplus; among equals, the first after this node.
            let mut best: Option<(u16, NodeId)> = None;
            for k in 1..self.nodes {
                let n = (self.id + k) % self.nodes;
                let s = self.hints[n as usize];
                if s > 0 && !self.barred[n as usize] && best.is_none_or(|(b, _)| s > b) {
                    best = Some((s, n));
                }
            }
            best.map(|(_, n)| n)
        } else {
            let mut pick = None;
            for _ in 1..self.nodes {
                let n = self.next_victim;
                self.next_victim = (n + 1) % self.nodes;
                if self.next_victim == self.id {
                    self.next_victim = (self.next_victim + 1) % self.nodes;
                }
                if !self.barred[n as usize] {
                    pick = Some(n);
                    break;
                }
            }
            pick
        };
        if let Some(to) = victim {
            self.asking = Some(to);
            self.stats.requests_sent += 1;
            out.push(Effect::Send {
                to,
                msg: Message::WorkRequest { load: self.load() },
            });
        }
    }

    /// After the load changed: broadcast it if it changed by the threshold, at most once a
    /// period (a hint held back goes out at the next [`Scheduler::timeout`]).
    fn after_change(&mut self, out: &mut Vec<Effect>) {
        if !self.config.use_hints || self.nodes < 2 || self.lost.is_some() {
            return;
        }
        let now = self.load();
        let (a, b) = (now.surplus(), self.announced);
        let significant = (a == 0) != (b == 0) || a.abs_diff(b) >= self.config.hint_threshold;
        if !significant {
            self.hint_due = false;
        } else if self.hinted_this_period {
            self.hint_due = true;
        } else {
            self.announced = a;
            self.hint_due = false;
            self.hinted_this_period = true;
            self.stats.hints_sent += 1;
            out.push(Effect::Broadcast {
                msg: Message::Hint { load: now },
            });
        }
    }

    /// Handle `msg` from node `from`. After the cluster lost a node, messages are ignored.
    pub fn handle(&mut self, from: NodeId, msg: Message) -> Result<Vec<Effect>, ProtocolError> {
        let me = self.id;
        if from >= self.nodes || from == me {
            return Err(ProtocolError(format!(
                "scheduler message from node {from} at node {me} of {}",
                self.nodes
            )));
        }
        let mut out = Vec::new();
        if self.lost.is_some() {
            return Ok(out);
        }
        self.hints[from as usize] = msg.load().surplus();
        match msg {
            Message::Hint { .. } => {}
            Message::WorkRequest { .. } => {
                let grant = if self.load().surplus() > 0 && !self.barred[from as usize] {
                    // The newest migratable task: the oldest run here first.
                    self.ready.iter().rposition(|t| t.migratable)
                } else {
                    None
                };
                match grant.and_then(|at| self.ready.remove(at)) {
                    Some(task) => self.send_task(task, from, true, &mut out),
                    None => {
                        self.stats.refusals_sent += 1;
                        out.push(Effect::Send {
                            to: from,
                            msg: Message::Refuse { load: self.load() },
                        });
                    }
                }
            }
            Message::Refuse { .. } => {
                if self.asking != Some(from) {
                    return Err(ProtocolError(format!(
                        "refusal from node {from}, which node {me} did not ask for work"
                    )));
                }
                self.asking = None;
                self.stats.requests_refused += 1;
                self.refused_in_row = self.refused_in_row.saturating_add(1);
                // Still idle: ask the next node the hints (just updated by the refusal's
                // load) point to, at once.
                self.ask_again(&mut out);
            }
            Message::Migrate {
                task,
                requested,
                carried,
                ..
            } => {
                if self.barred[from as usize] {
                    return Err(ProtocolError(format!(
                        "node {from} sent task {:?} to node {me}, but the two run other code",
                        task.id
                    )));
                }
                if task.home >= self.nodes || !task.stack.within(self.pages) {
                    return Err(ProtocolError(format!(
                        "migration of {task:?} from node {from}: its home or stack is outside \
                         the cluster's {} nodes and {} pages",
                        self.nodes, self.pages
                    )));
                }
                if !carried.fits(task.stack) {
                    return Err(ProtocolError(format!(
                        "migration of {task:?} from node {from} carries pages {carried:?}, not \
                         the pages its stack hands off"
                    )));
                }
                if self.holds(task.id) {
                    return Err(ProtocolError(format!(
                        "migration of task {:?} from node {from} to node {me}, which holds it \
                         already",
                        task.id
                    )));
                }
                if requested {
                    if self.asking != Some(from) {
                        return Err(ProtocolError(format!(
                            "a task from node {from} answers a work request node {me} did not \
                             send it"
                        )));
                    }
                    self.asking = None;
                    self.refused_in_row = 0;
                }
                self.stats.migrated_in += 1;
                self.ready.push_back(task);
                out.push(Effect::Wake);
            }
            Message::Done { task, panicked, .. } => self.resolve(task, panicked, &mut out)?,
            Message::Reaped { task, .. } => match self.homed.get(&task) {
                Some(Some(_)) => {
                    self.homed.remove(&task);
                    out.push(Effect::Reaped { task });
                }
                // Its Done (from a third node) has not arrived yet.
                Some(None) if self.reaped_early.insert(task) => {}
                _ => {
                    return Err(ProtocolError(format!(
                        "node {from} joined task {task:?}, whose handle node {me} does not \
                         hold (not homed here, or joined already)"
                    )));
                }
            },
        }
        self.after_change(&mut out);
        Ok(out)
    }

    /// The cluster lost `node`: the DSM cannot go on, so every task homed here that has not
    /// ended ends with [`Outcome::NodeLost`] naming it, the ready queue is dropped and no
    /// task is dispatched or moves any more. Only the first loss counts.
    pub fn node_lost(&mut self, node: NodeId) -> Result<Vec<Effect>, ProtocolError> {
        if node >= self.nodes || node == self.id {
            return Err(ProtocolError(format!(
                "node {} told that node {node} was lost",
                self.id
            )));
        }
        let mut out = Vec::new();
        if self.lost.is_some() {
            return Ok(out);
        }
        self.lost = Some(node);
        self.asking = None;
        self.ready.clear();
        for (&task, slot) in self.homed.iter_mut() {
            if slot.is_none() {
                let outcome = Outcome::NodeLost(node);
                *slot = Some(outcome);
                out.push(Effect::Resolved { task, outcome });
            }
        }
        Ok(out)
    }
}
