//! Process management, IVY's third module: tasks whose descriptors and stacks live in the
//! shared region, a ready queue per node run by its workers, a null task that does passive
//! load balancing with hints, and migration of suspended tasks.
//!
//! The scheduling protocol is a pure state machine, [`Scheduler`] (one per node): the
//! workers' calls (spawn, next task, yield, block, end, migrate), the null task's TIMEOUT and
//! peers' [`Message`]s go in, [`Effect`]s come out. The stateright model in
//! `models/tests/model_scheduler.rs` drives it together with the coherence protocol's
//! [`crate::protocol::Coherence`] (which moves the stack pages) and checks that no task is
//! lost or run twice, that a refused work request leaves the task where it was, that a lost
//! node ends the handles with `NodeLost` naming it, and that every task ends.
//!
//! Work request (idle D, hints say S has a surplus), and migration:
//! ```text
//! D: ready queue empty, a worker idle (its       D -> S  WorkRequest{load}
//!    next_task, a TIMEOUT, or a refusal)
//! S: a migratable ready task T, surplus left?    S      Migrate{T} effect: the coherence
//!                                                        hand-off of the pages
//!                                                        T.stack.handed_off() names (its
//!                                                        current page and its first) starts,
//!                                                        an eviction with hand_off D each
//!                                                S -> D  Migrate{T, requested, carried}, once
//!                                                        each hand-off produced its HandOff
//!                                                        (carried inside: ownership, access
//!                                                        and contents) or ended without one
//!                                                        (process::carrier)
//!    no surplus any more                         S -> D  Refuse{load}       (T stays at S)
//! D: Migrate                                     D      one step: each carried HandOff to
//!                                                        the coherence protocol (the page
//!                                                        installed, HandOffReply to S), then
//!                                                        T on the ready queue (READY)
//! T ends anywhere                                X -> home(T)  Done{T}  (the handle resolves)
//! ```
//! An idle node asks at once when a worker frees up and when a request was refused (the
//! refusal's load updates the hints first), not only at its TIMEOUT; after the other nodes
//! all refused it one after the other it waits for the next TIMEOUT (no storm of requests
//! and refusals); a task received resets that count.
//! A running task asks to move with [`Scheduler::migrate`]: the same hand-off and
//! `Migrate{requested: false}`. The model checks that no carried hand-off is refused. Every message carries the sender's [`Load`] (hints
//! piggybacked); a node also broadcasts its load ([`Message::Hint`], no reply) when its
//! surplus changes by the threshold, at most once per TIMEOUT period.
//!
//! Failure: the DSM cannot go on after it loses a node, so [`Scheduler::node_lost`] ends
//! every task homed here that has not ended with [`Outcome::NodeLost`] naming the node —
//! among them a task that was migrating to or from it — and nothing is dispatched or moved
//! any more. Messages from peers are untrusted: a node outside the cluster, a stack outside
//! the region, a task arriving twice, an answer to a request never sent or a second end of
//! a task is a [`crate::protocol::ProtocolError`], never a panic.
//!
//! ```
//! use memlink_dsm::process::{Effect, Message, Scheduler, SchedulerConfig, StackPages, TaskId, TaskRef};
//!
//! let config = SchedulerConfig::default(); // one worker, hints on
//! let mut s = Scheduler::new(0, 2, 64, config).unwrap();
//! let mut d = Scheduler::new(1, 2, 64, config).unwrap();
//! let task = |n| TaskRef { id: TaskId(n), home: 0, migratable: true, stack: StackPages::new(n as u32, 1) };
//! s.spawn(task(1)).unwrap();
//! s.spawn(task(2)).unwrap();
//! s.next_task(); // node 0's worker runs task 1; task 2 waits: a surplus of one
//! // Node 1 hears node 0's load (a hint), times out idle, and asks node 0.
//! d.handle(0, Message::Hint { load: s.load() }).unwrap();
//! let ask = d.timeout();
//! let [Effect::Send { to: 0, msg }] = ask[..] else { panic!("{ask:?}") };
//! let grant = s.handle(1, msg).unwrap();
//! // The node's carrier puts the stack pages' hand-offs inside the Migrate (here: none).
//! let Effect::Migrate { to: 1, msg } = grant[0] else { panic!("{grant:?}") };
//! d.handle(0, msg).unwrap();
//! assert_eq!(d.ready().next().map(|t| t.id), Some(TaskId(2)));
//! ```

pub mod carrier;
pub mod codec;
pub mod context;
pub mod identity;
pub mod message;
#[cfg(not(memlink_loom))]
pub mod pool;
pub mod scheduler;

pub use message::{
    Carried, Effect, Load, MAX_CARRIED, Message, Outcome, StackPages, TaskId, TaskRef,
};
pub use scheduler::{
    MigrateError, Scheduler, SchedulerConfig, SchedulerStats, SpawnError, Suspend,
};

#[cfg(test)]
mod tests;
