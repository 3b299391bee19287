//! What the task apps ([`super::nqueens`], [`super::quicksort`]) share: every node starts its
//! [`TaskPool`], node 0 spawns the app's tasks and joins them while the other nodes' null
//! tasks ask for work, and every node reports what its scheduler did.
//!
//! ```text
//! every node: TaskPool::start_with(workers, hints)   barrier START
//! node 0:     spawn the tasks, join them, publish the result
//! others:     their workers run what migrates to them
//! every node: barrier DONE (node 0 has joined every task), scheduler counters, pool dropped
//! ```
//! A peer that runs other code (another binary, or the same one loaded at another address)
//! is named on stdout; the pools move no task between it and this node, and the app still
//! verifies.

use std::fmt;
use std::time::{Duration, Instant};

use crate::cluster::Dsm;
use crate::process::pool::{JoinError, TaskPool};
use crate::process::{SchedulerConfig, SchedulerStats};
use crate::types::DsmError;

/// Every pool runs before node 0 spawns.
const START_BARRIER: u32 = 20;
/// Node 0 has joined every task: the pools may stop.
const DONE_BARRIER: u32 = 21;

/// What one node's scheduler did during a task app, for its report line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TaskCounts {
    /// Tasks that ended on this node.
    pub tasks_run: u64,
    /// Tasks that migrated to this node.
    pub migrated_in: u64,
    /// Tasks that migrated away from this node.
    pub migrated_out: u64,
    /// Work requests this node's null task sent.
    pub requests: u64,
    /// Of those, the ones refused.
    pub refused: u64,
    /// Hints (load broadcasts) this node sent.
    pub hints: u64,
}

impl TaskCounts {
    /// The counters as (name, value), in report-line order.
    pub fn named(&self) -> [(&'static str, u64); 6] {
        [
            ("tasks_run", self.tasks_run),
            ("migrated_in", self.migrated_in),
            ("migrated_out", self.migrated_out),
            ("work_requests", self.requests),
            ("requests_refused", self.refused),
            ("hints_sent", self.hints),
        ]
    }

    /// Sets the counter called `name`; false if there is none.
    pub fn set(&mut self, name: &str, value: u64) -> bool {
        let field = match name {
            "tasks_run" => &mut self.tasks_run,
            "migrated_in" => &mut self.migrated_in,
            "migrated_out" => &mut self.migrated_out,
            "work_requests" => &mut self.requests,
            "requests_refused" => &mut self.refused,
            "hints_sent" => &mut self.hints,
            _ => return false,
        };
        *field = value;
        true
    }
}

impl From<SchedulerStats> for TaskCounts {
    fn from(s: SchedulerStats) -> Self {
        TaskCounts {
            tasks_run: s.tasks_run,
            migrated_in: s.migrated_in,
            migrated_out: s.migrated_out,
            requests: s.requests_sent,
            refused: s.requests_refused,
            hints: s.hints_sent,
        }
    }
}

impl fmt::Display for TaskCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "tasks run {}, migrated in {}, out {}, work requests {} ({} refused), hints sent {}",
            self.tasks_run,
            self.migrated_in,
            self.migrated_out,
            self.requests,
            self.refused,
            self.hints
        )
    }
}

/// How a task app's pools run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolSettings {
    /// Worker threads per node.
    pub workers: u16,
    /// Whether the schedulers use hints (off: an idle node asks the others in turn).
    pub hints: bool,
}

impl Default for PoolSettings {
    fn default() -> Self {
        PoolSettings {
            workers: 1,
            hints: true,
        }
    }
}

/// One node's part of a task app.
pub struct TaskRun<T> {
    /// Node 0's result (`None` on the other nodes).
    pub result: Option<T>,
    /// What this node's scheduler did.
    pub counts: TaskCounts,
    /// From the start barrier to the barrier after node 0's last join (as this node saw it).
    pub parallel: Duration,
}

/// A joined task that did not return: as a DSM error, naming the app.
pub(crate) fn join_failed(app: &str, e: JoinError) -> DsmError {
    match e {
        JoinError::NodeLost(node) => DsmError::NodeLost {
            node,
            reason: format!("{app}: it held a task"),
        },
        other => DsmError::Config(format!("{app}: a task failed: {other}")),
    }
}

/// Runs a task app on this node: the pool with `settings`, and on node 0 `spawn_and_join`,
/// which spawns the app's tasks on the pool and joins them.
pub(crate) fn run_tasks<T>(
    dsm: &Dsm,
    settings: PoolSettings,
    spawn_and_join: impl FnOnce(&TaskPool<'_>) -> Result<T, DsmError>,
) -> Result<TaskRun<T>, DsmError> {
    let config = SchedulerConfig {
        workers: settings.workers.max(1),
        use_hints: settings.hints,
        ..SchedulerConfig::default()
    };
    for node in (0..dsm.nodes()).filter_map(|n| crate::types::NodeId::try_from(n).ok()) {
        if let Err(differs) = dsm.code_check(node) {
            // Relayed by `memlink dsm run` (its lines start with "node N: ").
            println!("node {}: {differs}", dsm.id());
        }
    }
    let pool = TaskPool::start_with(dsm, config)?;
    dsm.barrier(START_BARRIER)?;
    let start = Instant::now();
    let result = if dsm.id() == 0 {
        Some(spawn_and_join(&pool)?)
    } else {
        None
    };
    dsm.barrier(DONE_BARRIER)?;
    let parallel = start.elapsed();
    let counts = pool.stats().into();
    drop(pool);
    Ok(TaskRun {
        result,
        counts,
        parallel,
    })
}
