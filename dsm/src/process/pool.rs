//! Tasks for real: [`TaskPool`] runs the node's [`Scheduler`] on worker threads, and each
//! task's descriptor and stack live in one block of the shared region, at the same address
//! on every node. Every node of the cluster starts a pool; the pools' schedulers talk through
//! the node runtime ([`crate::node::tasks`]): an idle worker's null task asks the node the
//! hints say has a surplus for work, that node migrates a ready task (the page of its saved
//! stack pointer, which its worker reports to the scheduler whenever it switches out, and
//! its descriptor's page are handed to the destination by the coherence protocol's
//! hand-off, inside the `Migrate` with the descriptor's reference, see [`super::carrier`];
//! the rest of its stack follows on demand), a running task moves itself
//! with [`migrate`], and a task that ends away from home tells its home, where
//! [`TaskPool::join`] waits. A task may be joined on any node ([`JoinHandle::into_raw`]).
//! When the cluster loses a node, every handle of a task not ended yet returns
//! [`JoinError::NodeLost`] naming it (the DSM cannot go on after a loss), never a hang.
//!
//! A task block is [`STACK_SIZE`] bytes aligned to its size: the descriptor (the seed's PCB:
//! state, migratable flag, saved context, home node, whether it panicked) at its lowest
//! address, then the argument and the result, then the stack, which grows down from the top
//! of the block. A task finds its own descriptor by rounding its stack pointer down to the
//! block (no thread-local: a task may resume on another worker thread, and LLVM may keep a
//! thread-local's address in a register across a switch). The scheduler runs under a mutex
//! (no lock-free structure: nothing here needs a loom model); idle workers wait on a
//! condition variable (READY) with the TIMEOUT period as its timeout.
//!
//! A task spawns and joins tasks with the free functions [`spawn`] and [`join`] (the pool
//! running in this process is registered for them; one pool per process at a time), and
//! reaches its node's `Dsm` with [`with_dsm`].
//!
//! Rules for task code (see also the dsm README): the argument and result are
//! [`Shareable`] (no pointers into the node-local heap, which does not travel); hold no
//! thread-local borrow and no std lock across [`yield_now`]; data a task shares or keeps
//! goes in the region (`DsmBox`, `DsmVec`). This module keeps the same rule: whatever a
//! task's call here holds of its node (the pool's shared state, the `Dsm`, whether a task
//! is homed here) is looked up afresh after every point where the task gives its worker
//! up, since it may resume on another node (a joiner that kept them across its waits looked
//! for its child's end on the wrong node forever once a work request had moved it: the
//! quicksort hang of issue 13). A joining task therefore waits blocked on the joined
//! task's home (off the ready queue: no work request moves it) until the end resolves.

use std::collections::HashMap;
use std::fmt;
use std::marker::PhantomData;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle as ThreadHandle;
use std::time::Duration;

use super::context;
use super::message::{Effect, Message, Outcome, StackPages, TaskId, TaskRef};
use super::scheduler::{
    MigrateError, Scheduler, SchedulerConfig, SchedulerStats, SpawnError, Suspend,
};
use crate::cluster::Dsm;
use crate::handles::Shareable;
use crate::node::NodeRuntime;
use crate::types::{DsmError, NodeId, PAGE_SIZE, PageNo};

/// The bytes of a task block (descriptor, argument, result and stack), and its alignment.
pub const STACK_SIZE: usize = 64 * 1024;

/// The most bytes a task's argument or result may take.
pub const MAX_VALUE: usize = 1024;

/// How often an idle worker's null task times out.
const TIMEOUT: Duration = Duration::from_millis(10);

const MAGIC: u64 = 0x6d6c_5441_534b_0002; // "mlTASK" v2
const CANARY: u64 = 0x5354_4143_4b45_4e44; // "STACKEND"
const ARG_AT: usize = 256;
const RESULT_AT: usize = ARG_AT + MAX_VALUE;
const STACK_BOTTOM: usize = RESULT_AT + MAX_VALUE + 64;

/// Why a task gave its worker back.
#[repr(u32)]
#[derive(Clone, Copy, PartialEq, Eq)]
enum Reason {
    Yielded = 1,
    Ended = 2,
    /// It asks to move to the node in `request`; the worker answers in `answer` when it
    /// may not (and resumes it at once).
    Migrating = 3,
    /// It waits for a DSM lock or barrier ([`Wait`] in `request`), off its worker.
    Blocking = 4,
    /// It joins the task whose id is in `request`, homed on this node: off its worker and
    /// off the ready queue (so no work request moves it) until that task's end resolves.
    Joining = 5,
    /// It asks its worker to run a call ([`on_worker`], its address in `request`) on the
    /// worker's own stack, and to resume it at once.
    Calling = 6,
}

/// Run `f` on the stack of the worker that runs this task (outside a task: here), and
/// return what it returns; a panic in `f` goes on in the task. The task stays the worker's
/// meanwhile (no other task runs, no work request can take it) and resumes as soon as `f`
/// returns.
///
/// The pool's code that takes the scheduler's lock or a lock of the node runtime (spawn,
/// join, a DSM unlock) runs so: on a task's stack it could take a page fault while it holds
/// the lock (a stack page not touched yet here is still at another node), and the fault
/// waits for a message that the node's reader thread may never read, blocked on that very
/// lock (a work request it is answering, say). The worker's stack is the thread's own,
/// never in the region: no fault there.
fn on_worker<T>(f: impl FnOnce() -> T) -> T {
    let Some(d) = current_descriptor() else {
        return f();
    };
    let mut f = Some(f);
    let mut out = None;
    {
        let mut call = || {
            if let Some(f) = f.take() {
                out = Some(catch_unwind(AssertUnwindSafe(f)));
            }
        };
        let mut call_ref: &mut dyn FnMut() = &mut call;
        // SAFETY: `d` is this task's own descriptor (as in `yield_now`). The worker reads
        // `request` as the address of `call_ref`, which lives on this stack, resident here
        // (just written), until the worker switches back, and calls it once.
        unsafe {
            (*d).request = &raw mut call_ref as u64;
            (*d).reason = Reason::Calling as u32;
            context::switch(&raw mut (*d).saved_sp, *((*d).worker_sp as *const usize));
        }
    }
    match (out, f) {
        (Some(Ok(v)), _) => v,
        (Some(Err(panic)), _) => std::panic::resume_unwind(panic),
        // The worker did not call it (it cannot happen): call it here.
        (None, Some(f)) => f(),
        (None, None) => unreachable!("a call on the worker taken but not made"),
    }
}

/// What a blocking task waits for, in its descriptor's `request`: the kind in the high
/// half, the lock or barrier id in the low.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Wait {
    Lock(u32),
    Barrier(u32),
}

impl Wait {
    fn encode(self) -> u64 {
        match self {
            Wait::Lock(id) => (1 << 32) | u64::from(id),
            Wait::Barrier(id) => (2 << 32) | u64::from(id),
        }
    }

    fn decode(word: u64) -> Option<Wait> {
        let id = word as u32;
        match word >> 32 {
            1 => Some(Wait::Lock(id)),
            2 => Some(Wait::Barrier(id)),
            _ => None,
        }
    }
}

/// Why a task's wait for a DSM lock or barrier, or its release of a lock, failed.
#[derive(Debug)]
pub enum WaitError {
    /// Called outside a task (a thread uses `Dsm::lock` and `Dsm::barrier`).
    NotInTask,
    /// The node runtime failed the operation (a lost node, a misuse).
    Dsm(DsmError),
    /// The task moved while it held a lock and could not move back to the node that holds
    /// it to release it there.
    Migrate(MigrateError),
}

impl fmt::Display for WaitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WaitError::NotInTask => f.write_str(
                "process::pool::lock and barrier work only inside a task; a thread uses \
                 Dsm::lock and Dsm::barrier",
            ),
            WaitError::Dsm(e) => e.fmt(f),
            WaitError::Migrate(e) => write!(
                f,
                "the task could not go back to the node holding its lock to release it: {e}"
            ),
        }
    }
}

impl std::error::Error for WaitError {}

/// Suspend the calling task until `wait` is over: its worker runs other tasks meanwhile, a
/// waiter thread of the node makes the (blocking) call, and the end makes the task ready.
/// Returns the node whose waiter made the call (which holds a lock acquired so): once
/// ready, the task may have been moved by a work request before it resumed.
fn block_on(wait: Wait) -> Result<NodeId, WaitError> {
    let d = current_descriptor().ok_or(WaitError::NotInTask)?;
    let base = REGION_BASE.load(Ordering::Acquire);
    let task = TaskId((d as usize - base) as u64);
    let waited_on = current_node().ok_or(WaitError::NotInTask)?;
    // SAFETY: as in `yield_now`. The waiter leaves any error in its node's map (a task moved
    // after its wait finds none where it resumes: the failure shows in its next DSM call,
    // since a failed wait means the cluster failed).
    unsafe {
        (*d).request = wait.encode();
        (*d).reason = Reason::Blocking as u32;
        context::switch(&raw mut (*d).saved_sp, *((*d).worker_sp as *const usize));
    }
    let (_, shared) = registered().ok_or(WaitError::NotInTask)?;
    let failed = shared
        .wait_errors
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&task);
    failed.map_or(Ok(waited_on), |e| Err(WaitError::Dsm(e)))
}

/// Acquire cluster-wide lock `lock` from a task: the task waits off its worker (other tasks
/// run meanwhile) until the lock's manager grants it to this node. The lock is held by the
/// node where the task called this (a work request may move the task once the grant made
/// it ready); [`LockGuard::unlock`] (or dropping the guard) releases it there, taking the
/// task back to that node first if it moved meanwhile.
pub fn lock(lock: u32) -> Result<LockGuard, WaitError> {
    // The node whose waiter acquired it holds it, wherever the task resumed.
    let node = block_on(Wait::Lock(lock))?;
    Ok(LockGuard {
        lock,
        node,
        released: false,
    })
}

/// Arrive at cluster-wide barrier `barrier` from a task, which waits off its worker until
/// every node arrived. A barrier counts nodes: one task per node arrives per round.
pub fn barrier(barrier: u32) -> Result<(), WaitError> {
    block_on(Wait::Barrier(barrier)).map(|_| ())
}

/// A DSM lock a task holds (see [`lock`]); it lives on the task's stack and moves with it.
#[must_use = "the lock is released when the guard is dropped"]
#[derive(Debug)]
pub struct LockGuard {
    lock: u32,
    /// The node that holds the lock (where the task acquired it).
    node: NodeId,
    released: bool,
}

impl LockGuard {
    /// Release the lock, on the node that holds it (the task migrates back there first if
    /// it moved).
    pub fn unlock(mut self) -> Result<(), WaitError> {
        self.released = true;
        self.release()
    }

    fn release(&self) -> Result<(), WaitError> {
        // A task that migrated there sits on that node's ready queue until it runs, where a
        // work request may take it on to a third node: it goes back until it runs there.
        while current_node() != Some(self.node) {
            migrate(self.node).map_err(WaitError::Migrate)?;
        }
        let (dsm, _shared) = registered().ok_or(WaitError::NotInTask)?;
        on_worker(|| dsm.unlock(self.lock)).map_err(WaitError::Dsm)
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if !self.released {
            let _ = self.release();
        }
    }
}

/// The descriptor at the start of a task block, in the shared region.
#[repr(C)]
struct Descriptor {
    magic: u64,
    /// The task's saved stack pointer while it is suspended.
    saved_sp: usize,
    /// The address of the word where the worker running it saved its own stack pointer
    /// (node-local; set by each worker before it switches in).
    worker_sp: usize,
    /// `run::<A, R>`: reads the argument, calls `func`, writes the result.
    run: usize,
    /// The task's function, a `fn(A) -> R` (a code address: the same binary on every node).
    func: usize,
    reason: u32,
    panicked: u32,
    migratable: u32,
    home: u32,
    /// What the task asks of its worker with its reason (the node to migrate to).
    request: u64,
    /// The worker's answer ([`MigrateAnswer`]).
    answer: u64,
    canary: u64,
}

/// A worker's answer to a task that asked to migrate, in the descriptor: 0 when it went,
/// else the error's kind in the low byte and a node in the next two.
struct MigrateAnswer;

impl MigrateAnswer {
    fn encode(e: &MigrateError) -> u64 {
        match *e {
            MigrateError::NotMigratable(_) => 1,
            MigrateError::UnknownNode { node, nodes } => {
                2 | (u64::from(node) << 8) | (u64::from(nodes) << 24)
            }
            MigrateError::SameNode(n) => 3 | (u64::from(n) << 8),
            MigrateError::NotRunning(_) => 4,
            MigrateError::ClusterFailed { lost } => 5 | (u64::from(lost) << 8),
            MigrateError::Barred(n) => 6 | (u64::from(n) << 8),
        }
    }

    fn decode(word: u64, task: TaskId) -> Result<(), MigrateError> {
        let node = ((word >> 8) & 0xffff) as NodeId;
        match word & 0xff {
            0 => Ok(()),
            1 => Err(MigrateError::NotMigratable(task)),
            2 => Err(MigrateError::UnknownNode {
                node,
                nodes: ((word >> 24) & 0xffff) as u16,
            }),
            3 => Err(MigrateError::SameNode(node)),
            5 => Err(MigrateError::ClusterFailed { lost: node }),
            6 => Err(MigrateError::Barred(node)),
            _ => Err(MigrateError::NotRunning(task)),
        }
    }
}

// The process's task region, for `current`: set by the pool.
static REGION_BASE: AtomicUsize = AtomicUsize::new(0);
static REGION_LEN: AtomicUsize = AtomicUsize::new(0);
// This process's node, for `current_node`: set by the pool (usize::MAX: no pool yet).
static NODE: AtomicUsize = AtomicUsize::new(usize::MAX);

/// The node this process is, once its [`TaskPool`] started: where the calling task runs now.
pub fn current_node() -> Option<NodeId> {
    NodeId::try_from(NODE.load(Ordering::Acquire)).ok()
}

/// The pool running in this process (one at a time), for tasks that spawn, join or reach
/// the region: its node's `Dsm` (an address: the pool borrows it for its whole life) and
/// its shared state. Set by [`TaskPool::start`], cleared by its drop after every worker
/// stopped, so a running task always finds its own pool here.
struct Registered {
    dsm: usize,
    shared: Arc<Shared>,
}

static POOL: Mutex<Option<Registered>> = Mutex::new(None);

/// This task's pool: its node's `Dsm` and shared state. `None` outside a task.
fn registered() -> Option<(&'static Dsm, Arc<Shared>)> {
    current_descriptor()?;
    let pool = POOL.lock().unwrap_or_else(|p| p.into_inner());
    let r = pool.as_ref()?;
    // SAFETY: the caller is a task, so it runs on a worker of the registered pool; the pool
    // outlives its workers (drop joins them before it unregisters) and borrows the Dsm for
    // its whole life, so the Dsm lives at least as long as this call's caller runs. The
    // 'static is confined to this module: callers use it within the task's current run.
    let dsm = unsafe { &*(r.dsm as *const Dsm) };
    Some((dsm, Arc::clone(&r.shared)))
}

/// Spawn a migratable task from inside a task, on the node the caller runs on (a task that
/// spawns tasks, e.g. a parallel quicksort). Outside a task: [`TaskSpawnError::NotInTask`]
/// (use [`TaskPool::spawn`]).
pub fn spawn<A: Shareable, R: Shareable>(
    f: fn(A) -> R,
    arg: A,
) -> Result<JoinHandle<R>, TaskSpawnError> {
    let (dsm, shared) = registered().ok_or(TaskSpawnError::NotInTask)?;
    on_worker(|| spawn_in(dsm, &shared, f, arg, true))
}

/// Join a task from inside a task. The joiner waits on the joined task's home node (it
/// migrates there first when it runs elsewhere), blocked: off its worker and off the ready
/// queue, so no work request moves it while it waits, until the task's end resolves there.
/// A joiner that cannot go home (spawned pinned, or the home runs other code) polls the
/// task's descriptor instead, yielding between looks. Outside a task:
/// [`JoinError::NotInTask`] (use [`TaskPool::join`]).
pub fn join<R: Shareable>(handle: JoinHandle<R>) -> Result<R, JoinError> {
    let d = current_descriptor().ok_or(JoinError::NotInTask)?;
    loop {
        // The node's pool and Dsm are looked up afresh each round and dropped before the
        // task gives its worker up: after any wait it may run on another node, where these
        // node-local objects (and whether the task is homed here) are others.
        let (dsm, shared) = registered().ok_or(JoinError::NotInTask)?;
        let step = on_worker(|| poll_join::<R>(dsm, &shared, handle.id));
        drop(shared);
        match step {
            JoinPoll::Ended(result) => return result,
            // SAFETY: `d` is this task's own descriptor (as in `yield_now`); the worker
            // blocks it until the joined task's end resolves on this node.
            JoinPoll::Pending => unsafe {
                (*d).request = handle.id.0;
                (*d).reason = Reason::Joining as u32;
                context::switch(&raw mut (*d).saved_sp, *((*d).worker_sp as *const usize));
            },
            // Homed elsewhere (the joiner was moved after its wait, or was handed the
            // handle): it joins at home, where the handle is reaped with the block.
            JoinPoll::Away { home, ended } => {
                if migrate(home).is_err() {
                    // It cannot go home: the descriptor tells the end, and the home keeps
                    // the handle's entry.
                    let (_, shared) = registered().ok_or(JoinError::NotInTask)?;
                    if let Some(outcome) = ended {
                        return on_worker(|| take_remote_result(&shared, handle.id, home, outcome));
                    }
                    drop(shared);
                    yield_now();
                }
            }
        }
    }
}

/// One look at a joined task from the node the caller runs on now.
enum JoinPoll<R> {
    /// It ended (or the cluster lost a node): the join's result.
    Ended(Result<R, JoinError>),
    /// It is homed here and has not ended.
    Pending,
    /// It is homed on `home` (its descriptor says); `ended`: how, if its descriptor says
    /// it ended.
    Away {
        home: NodeId,
        ended: Option<Outcome>,
    },
}

fn poll_join<R: Shareable>(dsm: &Dsm, shared: &Shared, id: TaskId) -> JoinPoll<R> {
    shared.check_lost();
    let mut s = shared.lock();
    if let Some(lost) = s.lost() {
        // Nothing of the region may be touched any more: its faults cannot be served.
        s.reap(id);
        return JoinPoll::Ended(Err(JoinError::NodeLost(lost)));
    }
    match s.outcome(id) {
        Some(Some(_)) => {
            let outcome = s.reap(id);
            drop(s);
            outcome.map_or(JoinPoll::Pending, |o| {
                JoinPoll::Ended(take_result(dsm, shared.base, id, o))
            })
        }
        Some(None) => JoinPoll::Pending,
        None => {
            drop(s);
            let d = (shared.base + id.0 as usize) as *const Descriptor;
            // SAFETY: the block stays allocated until this join frees it; the reads fault
            // the descriptor's page in as any read of the region.
            let (reason, panicked, home) = unsafe {
                (
                    std::ptr::read_volatile(&raw const (*d).reason),
                    std::ptr::read_volatile(&raw const (*d).panicked),
                    std::ptr::read_volatile(&raw const (*d).home),
                )
            };
            let ended = (reason == Reason::Ended as u32).then_some(if panicked != 0 {
                Outcome::Panicked
            } else {
                Outcome::Finished
            });
            JoinPoll::Away {
                home: NodeId::try_from(home).unwrap_or(NodeId::MAX),
                ended,
            }
        }
    }
}

/// The result of an ended task, from its block, which is then freed.
fn take_result<R: Shareable>(
    dsm: &Dsm,
    base: usize,
    id: TaskId,
    outcome: Outcome,
) -> Result<R, JoinError> {
    let r = read_result(base, id, outcome);
    if !matches!(outcome, Outcome::NodeLost(_)) {
        let _ = dsm.free(id.0 as usize);
    }
    r
}

/// The result of an ended task homed on `home`, another node, joined here by its
/// descriptor: the home learns it ([`Message::Reaped`]), forgets the handle and frees the
/// block (it may still be about to learn the end: freeing here could hand the block to a
/// new task before that).
fn take_remote_result<R: Shareable>(
    shared: &Shared,
    id: TaskId,
    home: NodeId,
    outcome: Outcome,
) -> Result<R, JoinError> {
    let r = read_result(shared.base, id, outcome);
    let load = shared.lock().load();
    let _ = shared
        .runtime
        .send_task_message(home, &Message::Reaped { task: id, load });
    r
}

/// The result of an ended task, read from its block, whose descriptor is then cleared.
fn read_result<R: Shareable>(base: usize, id: TaskId, outcome: Outcome) -> Result<R, JoinError> {
    let block = base + id.0 as usize;
    let r = match outcome {
        // SAFETY: the task ended Finished, so `run` wrote an R at RESULT_AT; nothing
        // touches the block any more.
        Outcome::Finished => Ok(unsafe { ((block + RESULT_AT) as *const R).read() }),
        // SAFETY: it ended panicked: store_panic wrote the slot.
        Outcome::Panicked => Err(JoinError::Panicked(unsafe { load_panic(block) })),
        Outcome::NodeLost(n) => return Err(JoinError::NodeLost(n)),
    };
    // SAFETY: as above; clearing the magic keeps `current` from taking a freed block
    // for a descriptor.
    unsafe { (*(block as *mut Descriptor)).magic = 0 };
    r
}

/// Run `f` with the `Dsm` of the node this task runs on (to attach a `DsmVec` or `DsmBox`
/// by offset). `None` outside a task. Do not yield inside `f`: after a migration the node,
/// and its `Dsm`, would be another.
pub fn with_dsm<T>(f: impl FnOnce(&Dsm) -> T) -> Option<T> {
    let (dsm, _shared) = registered()?;
    Some(f(dsm))
}

/// The descriptor of the task running on this stack, if this is a task's stack.
fn current_descriptor() -> Option<*mut Descriptor> {
    let marker = 0u8;
    let sp = &raw const marker as usize;
    let base = REGION_BASE.load(Ordering::Acquire);
    let len = REGION_LEN.load(Ordering::Acquire);
    if base == 0 || sp < base || sp - base >= len {
        return None;
    }
    let block = sp & !(STACK_SIZE - 1);
    let d = block as *mut Descriptor;
    // SAFETY: `block` lies in the mapped region (sp does, and the region's blocks are
    // aligned to STACK_SIZE from an aligned base), and a descriptor starts every task block.
    (unsafe { (*d).magic } == MAGIC).then_some(d)
}

/// The task running here, if the caller is a task.
pub fn current() -> Option<TaskId> {
    let d = current_descriptor()?;
    let base = REGION_BASE.load(Ordering::Acquire);
    Some(TaskId((d as usize - base) as u64))
}

/// Give the worker to the next ready task (this task goes to the end of the ready queue).
/// Outside a task, yields the thread.
pub fn yield_now() {
    let Some(d) = current_descriptor() else {
        std::thread::yield_now();
        return;
    };
    // SAFETY: `d` is this task's own descriptor; only the task's current worker and the
    // task itself touch it, one at a time. worker_sp was set by that worker before it
    // switched in, and the worker waits in `switch` for us.
    unsafe {
        (*d).reason = Reason::Yielded as u32;
        context::switch(&raw mut (*d).saved_sp, *((*d).worker_sp as *const usize));
    }
}

/// Move the running task to node `to`: it is suspended here, its stack pages are handed to
/// `to` and it goes on there, returning from this call on `to` (pointers on its stack, to
/// its stack and to the region, stay valid: the addresses are the same there) — or on a
/// node a work request took it on to from `to`'s ready queue before it ran there: check
/// [`current_node`] where that matters. On an error it keeps running here. Outside a task:
/// [`MigrateError::NotRunning`].
///
/// Hold no thread-local borrow, no std lock and nothing of the node-local heap across this
/// call: they stay behind.
pub fn migrate(to: NodeId) -> Result<(), MigrateError> {
    let Some(d) = current_descriptor() else {
        return Err(MigrateError::NotRunning(TaskId(u64::MAX)));
    };
    let base = REGION_BASE.load(Ordering::Acquire);
    let task = TaskId((d as usize - base) as u64);
    // SAFETY: as in `yield_now`; the worker writes `answer` before it resumes us (here or
    // on `to`, whose worker leaves it at the 0 written here).
    unsafe {
        (*d).request = u64::from(to);
        (*d).answer = 0;
        (*d).reason = Reason::Migrating as u32;
        context::switch(&raw mut (*d).saved_sp, *((*d).worker_sp as *const usize));
        MigrateAnswer::decode((*d).answer, task)
    }
}

/// Writes what a panic says (its `&str` or `String` payload, cut to fit) into the result
/// slot: a `u32` length, then the bytes.
///
/// # Safety
/// `block` is the block of the task that panicked, running here.
unsafe fn store_panic(block: usize, payload: &(dyn std::any::Any + Send)) {
    let text = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("a panic with a payload that is no string");
    let mut n = text.len().min(MAX_VALUE - 4);
    while !text.is_char_boundary(n) {
        n -= 1;
    }
    // SAFETY: RESULT_AT .. RESULT_AT + MAX_VALUE is the task's result slot, in its block.
    unsafe {
        ((block + RESULT_AT) as *mut u32).write(n as u32);
        std::ptr::copy_nonoverlapping(text.as_ptr(), (block + RESULT_AT + 4) as *mut u8, n);
    }
}

/// The panic text [`store_panic`] left (validated: the slot is shared memory).
///
/// # Safety
/// `block` is the block of a task that ended panicked.
unsafe fn load_panic(block: usize) -> String {
    // SAFETY: the result slot lies in the block; store_panic wrote it.
    let n = unsafe { ((block + RESULT_AT) as *const u32).read() } as usize;
    let n = n.min(MAX_VALUE - 4);
    // SAFETY: as above, `n` is bounded by the slot.
    let bytes = unsafe { std::slice::from_raw_parts((block + RESULT_AT + 4) as *const u8, n) };
    String::from_utf8_lossy(bytes).into_owned()
}

unsafe extern "C" fn task_entry(block: usize) -> ! {
    let d = block as *mut Descriptor;
    // SAFETY: `block` is this task's block, prepared by spawn; `run` was stored there as a
    // `run::<A, R>` for the task's types.
    let run: unsafe fn(usize) = unsafe { std::mem::transmute((*d).run) };
    // SAFETY: as above.
    let caught = catch_unwind(AssertUnwindSafe(|| unsafe { run(block) }));
    if let Err(payload) = &caught {
        // SAFETY: our own block, running here.
        unsafe { store_panic(block, payload.as_ref()) };
    }
    // SAFETY: our own descriptor; the worker waits in `switch` and never resumes us again.
    unsafe {
        (*d).panicked = u32::from(caught.is_err());
        (*d).reason = Reason::Ended as u32;
        drop(caught);
        context::switch(&raw mut (*d).saved_sp, *((*d).worker_sp as *const usize));
    }
    unreachable!("an ended task was resumed")
}

/// # Safety
/// `block` is a task block whose argument slot holds an `A` and whose `func` is a
/// `fn(A) -> R`.
unsafe fn run<A: Shareable, R: Shareable>(block: usize) {
    let d = block as *mut Descriptor;
    // SAFETY: spawn stored a `fn(A) -> R` in func and an `A` at ARG_AT (both fit, checked).
    let (f, arg): (fn(A) -> R, A) = unsafe {
        (
            std::mem::transmute::<usize, fn(A) -> R>((*d).func),
            ((block + ARG_AT) as *const A).read(),
        )
    };
    let r = f(arg);
    // SAFETY: RESULT_AT has room for an R (checked at spawn) and is aligned to 64.
    unsafe { ((block + RESULT_AT) as *mut R).write(r) };
}

struct Shared {
    sched: Mutex<Scheduler>,
    /// READY: a task was queued, or the pool stops.
    ready: Condvar,
    /// A task homed here ended.
    resolved: Condvar,
    stop: AtomicUsize,
    base: usize,
    runtime: Arc<NodeRuntime>,
    /// The error a blocked task's wait ended with, for the task to take when it resumes.
    wait_errors: Mutex<HashMap<TaskId, DsmError>>,
    /// The blocks of tasks whose handles were joined on other nodes, for a worker to free
    /// (on its own stack, off the reader thread).
    to_free: Mutex<Vec<usize>>,
    /// Tasks blocked in [`join`], by the task each joins (homed here, not ended when the
    /// joiner blocked): the end's resolution makes the joiner ready. Filled with the
    /// scheduler locked, so no resolution falls between the look and the entry.
    joiners: Mutex<HashMap<TaskId, TaskId>>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Scheduler> {
        debug_assert!(
            current_descriptor().is_none(),
            "the scheduler's lock taken on a task's stack (see on_worker)"
        );
        self.sched.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Carry out a scheduler step's effects, in order, with the scheduler unlocked (sends
    /// and hand-offs go through the node runtime). A failure to send fails the node in the
    /// runtime; the next [`Shared::check_lost`] ends the handles.
    fn carry_out(&self, effects: &[Effect]) {
        for e in effects {
            match e {
                Effect::Wake => self.ready.notify_one(),
                Effect::Resolved { task, .. } => {
                    self.resolved.notify_all();
                    self.wake_joiner(*task);
                }
                Effect::Reaped { task } => {
                    self.to_free
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(task.0 as usize);
                    self.ready.notify_one();
                }
                Effect::Send { to, msg } => {
                    let _ = self.runtime.send_task_message(*to, msg);
                }
                Effect::Broadcast { msg } => {
                    let _ = self.runtime.broadcast_task_message(msg);
                }
                // The Migrate leaves carrying its stack pages' hand-offs.
                Effect::Migrate { to, msg } => {
                    let _ = self.runtime.migrate_task(*to, msg);
                }
                // The worker that asked runs it.
                Effect::Run { .. } => {}
            }
        }
        if effects.iter().any(|e| !matches!(e, Effect::Run { .. })) {
            self.check_lost();
        }
    }

    /// Free the blocks of the tasks joined on other nodes (a worker calls this).
    fn free_reaped(&self) {
        let blocks = std::mem::take(&mut *self.to_free.lock().unwrap_or_else(|p| p.into_inner()));
        for offset in blocks {
            if let Err(e) = self.runtime.free(offset) {
                eprintln!("memlink-dsm: the block of a task joined elsewhere: {e}");
            }
        }
    }

    /// The task blocked joining `ended` (which just ended) goes back on the ready queue.
    fn wake_joiner(&self, ended: TaskId) {
        let joiner = self
            .joiners
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&ended);
        if let Some(joiner) = joiner {
            match self.lock().unblock(joiner) {
                Ok(effects) => self.carry_out(&effects),
                Err(e) => eprintln!("memlink-dsm: scheduler: {e}"),
            }
        }
    }

    /// When the runtime has lost a node, the scheduler ends the handles of the tasks homed
    /// here that had not ended, with `NodeLost` naming it.
    fn check_lost(&self) {
        let Some(node) = self.runtime.lost_node() else {
            return;
        };
        let effects = {
            let mut s = self.lock();
            if s.lost().is_some() {
                return;
            }
            s.node_lost(node).unwrap_or_default()
        };
        self.ready.notify_all();
        for e in &effects {
            if let Effect::Resolved { .. } = e {
                self.resolved.notify_all();
            }
        }
    }

    /// A scheduler message from a peer.
    fn on_message(&self, from: NodeId, msg: Message) {
        let effects = self.lock().handle(from, msg);
        match effects {
            Ok(effects) => self.carry_out(&effects),
            Err(e) => {
                self.runtime.scheduler_violation(from, e.to_string());
                self.check_lost();
            }
        }
    }
}

/// Why a task was not spawned.
#[derive(Debug)]
pub enum TaskSpawnError {
    /// The argument or result is larger than [`MAX_VALUE`] bytes or aligned beyond 64.
    TooLarge,
    /// No room in the region for the task's block.
    Region(DsmError),
    /// The scheduler refused it.
    Scheduler(SpawnError),
    /// [`spawn`] was called outside a task.
    NotInTask,
}

impl fmt::Display for TaskSpawnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TaskSpawnError::TooLarge => write!(
                f,
                "a task's argument and result must each fit in {MAX_VALUE} bytes with an \
                 alignment of at most 64: pass a DsmBox or DsmVec offset instead"
            ),
            TaskSpawnError::Region(e) => {
                write!(f, "no room for the task's {STACK_SIZE}-byte block: {e}")
            }
            TaskSpawnError::Scheduler(e) => e.fmt(f),
            TaskSpawnError::NotInTask => f.write_str(
                "process::pool::spawn works only inside a task; elsewhere use TaskPool::spawn",
            ),
        }
    }
}

impl std::error::Error for TaskSpawnError {}

/// Why a join returned no result.
#[derive(Debug, PartialEq, Eq)]
pub enum JoinError {
    /// The task panicked; what its panic said (cut to [`MAX_VALUE`] bytes).
    Panicked(String),
    /// The cluster lost this node before the task ended.
    NodeLost(NodeId),
    /// [`join`] was called outside a task.
    NotInTask,
}

impl fmt::Display for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JoinError::Panicked(what) => write!(f, "the task panicked: {what}"),
            JoinError::NodeLost(n) => write!(
                f,
                "the cluster lost node {n} before the task ended; restart all nodes"
            ),
            JoinError::NotInTask => f.write_str(
                "process::pool::join works only inside a task; elsewhere use TaskPool::join",
            ),
        }
    }
}

impl std::error::Error for JoinError {}

/// The handle of a spawned task: join it for its result, on its home node or, passed on
/// with [`JoinHandle::into_raw`], on any node.
#[must_use = "a task's block stays allocated until it is joined"]
pub struct JoinHandle<R> {
    id: TaskId,
    _result: PhantomData<fn() -> R>,
}

impl<R> fmt::Debug for JoinHandle<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JoinHandle({:?})", self.id)
    }
}

impl<R> JoinHandle<R> {
    /// The task.
    pub fn id(&self) -> TaskId {
        self.id
    }

    /// The task's id, to pass to another node (in the region, or as a task's argument),
    /// where [`JoinHandle::from_raw`] makes the handle again.
    pub fn into_raw(self) -> TaskId {
        self.id
    }

    /// The handle of task `id` (from [`JoinHandle::into_raw`]).
    ///
    /// # Safety
    /// `id` came from `into_raw` of a `JoinHandle<R>` with this `R`, and the task is joined
    /// once, by this handle only.
    pub unsafe fn from_raw(id: TaskId) -> JoinHandle<R> {
        JoinHandle {
            id,
            _result: PhantomData,
        }
    }
}

/// A node's tasks: its scheduler on `workers` threads (see the module documentation).
pub struct TaskPool<'d> {
    dsm: &'d Dsm,
    shared: Arc<Shared>,
    threads: Vec<ThreadHandle<()>>,
}

impl<'d> TaskPool<'d> {
    /// Start `workers` worker threads on this node of `dsm`. One pool per process.
    pub fn start(dsm: &'d Dsm, workers: u16) -> Result<TaskPool<'d>, DsmError> {
        let config = SchedulerConfig {
            workers,
            ..SchedulerConfig::default()
        };
        TaskPool::start_with(dsm, config)
    }

    /// Start a pool whose scheduler runs with `config` (its workers, hint threshold and
    /// whether it uses hints). One pool per process.
    pub fn start_with(dsm: &'d Dsm, config: SchedulerConfig) -> Result<TaskPool<'d>, DsmError> {
        let base = dsm.base() as usize;
        if base % STACK_SIZE != 0 {
            return Err(DsmError::Config(format!(
                "tasks need the region aligned to {STACK_SIZE} bytes; it is at {base:#x}"
            )));
        }
        let config = SchedulerConfig {
            workers: config.workers.max(1),
            ..config
        };
        let pages = (dsm.len() / PAGE_SIZE) as u32;
        let mut sched = Scheduler::new(dsm.id(), dsm.nodes(), pages, config)
            .map_err(|e| DsmError::Config(e.to_string()))?;
        // No task moves to or from a node that runs other code (it told so in the
        // admission handshake); pages are shared as before.
        for node in (0..dsm.nodes()).filter_map(|n| crate::types::NodeId::try_from(n).ok()) {
            if dsm.code_check(node).is_err() {
                sched.bar(node);
            }
        }
        let mut registered = POOL.lock().unwrap_or_else(|p| p.into_inner());
        if registered.is_some() {
            return Err(DsmError::Config(
                "a task pool already runs in this process; drop it before starting another".into(),
            ));
        }
        REGION_BASE.store(base, Ordering::Release);
        REGION_LEN.store(dsm.len(), Ordering::Release);
        NODE.store(usize::from(dsm.id()), Ordering::Release);
        let shared = Arc::new(Shared {
            sched: Mutex::new(sched),
            ready: Condvar::new(),
            resolved: Condvar::new(),
            stop: AtomicUsize::new(0),
            base,
            runtime: Arc::clone(dsm.runtime()),
            wait_errors: Mutex::new(HashMap::new()),
            joiners: Mutex::new(HashMap::new()),
            to_free: Mutex::new(Vec::new()),
        });
        let on_message = Arc::clone(&shared);
        dsm.runtime()
            .set_task_handler(Some(Arc::new(move |from, msg| {
                on_message.on_message(from, msg)
            })));
        let threads = (0..config.workers)
            .map(|i| {
                let s = Arc::clone(&shared);
                std::thread::Builder::new()
                    .name(format!("memlink-task-worker-{i}"))
                    .spawn(move || worker(&s))
                    .map_err(DsmError::Io)
            })
            .collect::<Result<Vec<_>, _>>();
        let threads = match threads {
            Ok(t) => t,
            Err(e) => {
                dsm.runtime().set_task_handler(None);
                shared.stop.store(1, Ordering::Release);
                shared.ready.notify_all();
                return Err(e);
            }
        };
        *registered = Some(Registered {
            dsm: dsm as *const Dsm as usize,
            shared: Arc::clone(&shared),
        });
        drop(registered);
        Ok(TaskPool {
            dsm,
            shared,
            threads,
        })
    }

    /// Spawn a migratable task running `f(arg)`.
    pub fn spawn<A: Shareable, R: Shareable>(
        &self,
        f: fn(A) -> R,
        arg: A,
    ) -> Result<JoinHandle<R>, TaskSpawnError> {
        self.spawn_with(f, arg, true)
    }

    /// Spawn a task that never leaves this node.
    pub fn spawn_pinned<A: Shareable, R: Shareable>(
        &self,
        f: fn(A) -> R,
        arg: A,
    ) -> Result<JoinHandle<R>, TaskSpawnError> {
        self.spawn_with(f, arg, false)
    }

    fn spawn_with<A: Shareable, R: Shareable>(
        &self,
        f: fn(A) -> R,
        arg: A,
        migratable: bool,
    ) -> Result<JoinHandle<R>, TaskSpawnError> {
        spawn_in(self.dsm, &self.shared, f, arg, migratable)
    }

    /// What this node's scheduler did so far (tasks run, migrations, work requests, hints).
    pub fn stats(&self) -> SchedulerStats {
        self.shared.lock().stats()
    }

    /// How many handles of tasks spawned here this node keeps: those not joined yet (a
    /// handle joined on another node is dropped here when that node tells).
    pub fn handles_held(&self) -> usize {
        self.shared.lock().handles().count()
    }

    /// Wait for the task to end and return its result. From inside a task, the waiting task
    /// yields its worker meanwhile. On the task's home node the scheduler learns the end
    /// (its `Done`); elsewhere the joiner watches the task's descriptor in the region. When
    /// the cluster loses a node first: [`JoinError::NodeLost`] naming it.
    pub fn join<R: Shareable>(&self, handle: JoinHandle<R>) -> Result<R, JoinError> {
        join_in(self.dsm, &self.shared, handle)
    }
}

fn spawn_in<A: Shareable, R: Shareable>(
    dsm: &Dsm,
    shared: &Shared,
    f: fn(A) -> R,
    arg: A,
    migratable: bool,
) -> Result<JoinHandle<R>, TaskSpawnError> {
    if size_of::<A>() > MAX_VALUE
        || size_of::<R>() > MAX_VALUE
        || align_of::<A>() > 64
        || align_of::<R>() > 64
    {
        return Err(TaskSpawnError::TooLarge);
    }
    if let Some(lost) = shared.runtime.lost_node() {
        return Err(TaskSpawnError::Scheduler(SpawnError::ClusterFailed {
            lost,
        }));
    }
    let offset = dsm
        .alloc(STACK_SIZE, STACK_SIZE)
        .map_err(TaskSpawnError::Region)?;
    let block = shared.base + offset;
    let d = block as *mut Descriptor;
    // SAFETY: the block is ours (just allocated, STACK_SIZE bytes, aligned), mapped and
    // writable on this node (it owns what it allocates... or faults it in); no task
    // runs on it yet. The argument fits at ARG_AT (checked above).
    let sp = unsafe {
        d.write(Descriptor {
            magic: MAGIC,
            saved_sp: 0,
            worker_sp: 0,
            run: run::<A, R> as *const () as usize,
            func: f as *const () as usize,
            reason: 0,
            panicked: 0,
            migratable: u32::from(migratable),
            home: u32::from(dsm.id()),
            request: 0,
            answer: 0,
            canary: CANARY,
        });
        ((block + ARG_AT) as *mut A).write(arg);
        ((block + STACK_BOTTOM) as *mut u64).write(CANARY);
        context::prepare(block + STACK_SIZE, task_entry, block)
    };
    // SAFETY: as above.
    unsafe { (*d).saved_sp = sp };
    let task = TaskRef {
        id: TaskId(offset as u64),
        home: dsm.id(),
        migratable,
        stack: StackPages::new((offset / PAGE_SIZE) as u32, (STACK_SIZE / PAGE_SIZE) as u32),
    };
    let effects = shared.lock().spawn(task);
    match effects {
        Ok(effects) => {
            shared.carry_out(&effects);
            Ok(JoinHandle {
                id: task.id,
                _result: PhantomData,
            })
        }
        Err(e) => {
            let _ = dsm.free(offset);
            Err(TaskSpawnError::Scheduler(e))
        }
    }
}

fn join_in<R: Shareable>(
    dsm: &Dsm,
    shared: &Shared,
    handle: JoinHandle<R>,
) -> Result<R, JoinError> {
    if current_descriptor().is_some() {
        return join(handle);
    }
    // A thread: it stays on this node, and waits for a resolution here (a task homed here
    // ended, or the cluster lost a node) or for the TIMEOUT period (a task homed elsewhere,
    // whose end only its descriptor shows).
    loop {
        let away = match poll_join::<R>(dsm, shared, handle.id) {
            JoinPoll::Ended(result) => return result,
            JoinPoll::Pending => false,
            // A thread cannot go to the home: the descriptor tells the end (the home keeps
            // the handle's entry).
            JoinPoll::Away {
                home,
                ended: Some(outcome),
            } => return take_remote_result(shared, handle.id, home, outcome),
            JoinPoll::Away { ended: None, .. } => true,
        };
        let s = shared.lock();
        if away || (s.lost().is_none() && s.outcome(handle.id) == Some(None)) {
            let _unused = shared
                .resolved
                .wait_timeout(s, TIMEOUT)
                .unwrap_or_else(|p| p.into_inner());
        }
    }
}

impl Drop for TaskPool<'_> {
    fn drop(&mut self) {
        self.dsm.runtime().set_task_handler(None);
        self.shared.stop.store(1, Ordering::Release);
        {
            let _s = self.shared.lock();
            self.shared.ready.notify_all();
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        *POOL.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

/// The waiter of a blocked task: makes the blocking call on a thread of its own (the
/// worker goes on with other tasks), leaves an error for the task, and makes it ready.
fn start_waiter(shared: &Arc<Shared>, task: TaskId, wait: Option<Wait>) {
    let waiter = Arc::clone(shared);
    let run = move || {
        let rt = &waiter.runtime;
        let result = match wait {
            Some(Wait::Lock(id)) => rt.lock(id),
            Some(Wait::Barrier(id)) => rt.barrier(id),
            None => Err(DsmError::Protocol(format!(
                "task {task:?} blocked with no known wait in its descriptor"
            ))),
        };
        if let Err(e) = result {
            waiter
                .wait_errors
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(task, e);
        }
        let effects = waiter.lock().unblock(task);
        match effects {
            Ok(effects) => waiter.carry_out(&effects),
            Err(e) => eprintln!("memlink-dsm: scheduler: {e}"),
        }
    };
    if let Err(e) = std::thread::Builder::new()
        .name("memlink-task-waiter".into())
        .spawn(run)
    {
        // No thread: the task is made ready again with the error.
        shared
            .wait_errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(task, DsmError::Io(e));
        let effects = shared.lock().unblock(task);
        if let Ok(effects) = effects {
            shared.carry_out(&effects);
        }
    }
}

/// A worker: runs the ready queue; idle, it is the null task (READY wakes it, TIMEOUT runs
/// the passive load balancing).
fn worker(shared: &Arc<Shared>) {
    let mut worker_sp = 0usize;
    loop {
        let task = loop {
            if shared.stop.load(Ordering::Acquire) != 0 {
                return;
            }
            shared.free_reaped();
            let mut s = shared.lock();
            let effects = s.next_task();
            let run = effects.iter().find_map(|e| match e {
                Effect::Run { task } => Some(*task),
                _ => None,
            });
            if run.is_none() && effects.is_empty() && shared.stop.load(Ordering::Acquire) == 0 {
                let (guard, waited) = shared
                    .ready
                    .wait_timeout(s, TIMEOUT)
                    .unwrap_or_else(|p| p.into_inner());
                s = guard;
                if waited.timed_out() {
                    let effects = s.timeout();
                    drop(s);
                    shared.carry_out(&effects);
                    shared.check_lost();
                }
                continue;
            }
            drop(s);
            shared.carry_out(&effects);
            if let Some(task) = run {
                break task;
            }
        };
        let block = shared.base + task.id.0 as usize;
        let d = block as *mut Descriptor;
        let effects = loop {
            // SAFETY: the scheduler gave this worker the task, so no other worker touches
            // its block; saved_sp was made by prepare or saved by the task's last switch out
            // (here or on the node it migrated from: the same address).
            let (reason, panicked, intact, to, sp) = unsafe {
                (*d).worker_sp = &raw mut worker_sp as usize;
                context::switch(&raw mut worker_sp, (*d).saved_sp);
                (
                    (*d).reason,
                    (*d).panicked != 0,
                    ((block + STACK_BOTTOM) as *const u64).read() == CANARY
                        && (*d).canary == CANARY,
                    (*d).request,
                    (*d).saved_sp,
                )
            };
            if reason == Reason::Calling as u32 && intact {
                // SAFETY: the task set `request` to the address of its `&mut dyn FnMut()`
                // in `on_worker`, on its stack, which stays as it is (and resident here:
                // just written) while it is switched out; it is resumed right after.
                unsafe { (*(to as usize as *mut &mut dyn FnMut()))() };
                continue;
            }
            // The page its next resumption starts on: handed off first if it migrates (read
            // here, on the worker, so no other thread ever reads the descriptor for it).
            let sp_page = sp
                .checked_sub(shared.base)
                .map(|off| (off / PAGE_SIZE) as PageNo)
                .unwrap_or(task.stack.first);
            let mut s = shared.lock();
            if intact && let Err(e) = s.stack_at(task.id, sp_page) {
                eprintln!("memlink-dsm: scheduler: {e}");
            }
            if !intact {
                eprintln!(
                    "memlink-dsm: task {:?} overflowed its {STACK_SIZE}-byte stack; it is ended as panicked",
                    task.id
                );
                break s.finished(task.id, true);
            }
            if reason == Reason::Yielded as u32 {
                break s.suspend(task.id, Suspend::Yield);
            }
            if reason == Reason::Blocking as u32 {
                let effects = s.suspend(task.id, Suspend::Block);
                drop(s);
                start_waiter(shared, task.id, Wait::decode(to));
                break effects;
            }
            if reason == Reason::Joining as u32 {
                let joined = TaskId(to);
                let blocked = s.suspend(task.id, Suspend::Block);
                if s.lost().is_none() && s.outcome(joined) == Some(None) {
                    // Its end resolves later: the resolution wakes this joiner.
                    shared
                        .joiners
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(joined, task.id);
                    break blocked;
                }
                // It ended already (or is not homed here): the joiner looks again at once.
                break blocked.and_then(|mut effects| {
                    effects.extend(s.unblock(task.id)?);
                    Ok(effects)
                });
            }
            if reason != Reason::Migrating as u32 {
                break s.finished(task.id, panicked);
            }
            let to = NodeId::try_from(to).unwrap_or(NodeId::MAX);
            match s.migrate(task.id, to) {
                Ok(effects) => break Ok(effects),
                Err(e) => {
                    // It keeps running here: resume it with the error.
                    // SAFETY: the task is suspended on this worker (as above).
                    unsafe { (*d).answer = MigrateAnswer::encode(&e) };
                }
            }
        };
        match effects {
            Ok(effects) => shared.carry_out(&effects),
            Err(e) => eprintln!("memlink-dsm: scheduler: {e}"),
        }
    }
}
