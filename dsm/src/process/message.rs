//! The scheduling protocol's vocabulary: tasks as they travel, a node's load (the hint),
//! the messages between schedulers and the effects a step asks the runtime to carry out.

use crate::protocol::Message as PageMessage;
use crate::types::{Access, NodeId, PageNo};

/// Names a task on every node: the region offset of its descriptor (the seed's PCB), which is
/// at the same address everywhere.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaskId(pub u64);

/// The pages of a task's stack: `first .. first + count` of the shared region, and the
/// page of its saved stack pointer (the seed's "current page of the stack").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StackPages {
    /// The lowest page (it holds the task's descriptor).
    pub first: PageNo,
    /// How many pages.
    pub count: u32,
    /// The page of the saved stack pointer, the one the task's first instruction after a
    /// resumption uses ([`crate::process::Scheduler::stack_at`] keeps it up to date).
    pub current: PageNo,
}

impl StackPages {
    /// `count` pages from `first`, the current one the highest (where a fresh stack, which
    /// grows down, starts).
    pub fn new(first: PageNo, count: u32) -> StackPages {
        StackPages {
            first,
            count,
            current: first.saturating_add(count.saturating_sub(1)),
        }
    }

    /// The pages, lowest first; empty when the range overflows.
    pub fn iter(self) -> impl Iterator<Item = PageNo> {
        let end = self.first.checked_add(self.count).unwrap_or(self.first);
        self.first..end
    }

    /// Whether `page` is one of the stack's pages.
    pub fn contains(self, page: PageNo) -> bool {
        page >= self.first && page - self.first < self.count
    }

    /// Whether every page lies in a region of `pages` pages (overflow-checked) and the
    /// current page is one of them.
    pub fn within(self, pages: u32) -> bool {
        self.count > 0
            && self
                .first
                .checked_add(self.count)
                .is_some_and(|e| e <= pages)
            && self.contains(self.current)
    }

    /// The pages whose ownership passes to the destination with the task when it migrates,
    /// in the order they are handed off: its current page, which travels inside the
    /// `Migrate` (the seed's rule), then its first page (the descriptor, which the
    /// destination's worker reads before it switches in) when that is another page, inside
    /// the same `Migrate`. The rest of the stack follows on demand, served like any fault.
    /// The runtime and the stateright model both take the pages from here.
    pub fn handed_off(self) -> impl Iterator<Item = PageNo> {
        let first = (self.first != self.current).then_some(self.first);
        std::iter::once(self.current).chain(first)
    }
}

/// The most pages a [`Message::Migrate`] carries ([`StackPages::handed_off`] names at most two).
pub const MAX_CARRIED: usize = 2;

/// The stack pages a [`Message::Migrate`] carries: for each, the coherence protocol's
/// hand-off that the source's eviction of it produced (the page's ownership, and the access
/// that goes with it). The contents travel in the same frame ([`super::codec`]); the
/// destination hands each to its coherence protocol as the `HandOff` it is
/// ([`Carried::hand_offs`]), installing the page, before it queues the task.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Carried {
    pages: [Option<(PageNo, Access)>; MAX_CARRIED],
}

impl Carried {
    /// Add `page`, handed off with `access`; false (and nothing added) when
    /// [`MAX_CARRIED`] pages are carried already or `page` is one of them.
    pub fn push(&mut self, page: PageNo, access: Access) -> bool {
        if self.iter().any(|(p, _)| p == page) {
            return false;
        }
        match self.pages.iter_mut().find(|p| p.is_none()) {
            Some(slot) => {
                *slot = Some((page, access));
                true
            }
            None => false,
        }
    }

    /// The pages and their access, in the order they were added.
    pub fn iter(&self) -> impl Iterator<Item = (PageNo, Access)> + '_ {
        self.pages.iter().flatten().copied()
    }

    /// How many pages.
    pub fn len(&self) -> usize {
        self.pages.iter().flatten().count()
    }

    /// Whether none.
    pub fn is_empty(&self) -> bool {
        self.pages[0].is_none()
    }

    /// Whether each page is one `stack` hands off ([`StackPages::handed_off`]) with a
    /// readable access: what a destination accepts from a peer.
    pub fn fits(&self, stack: StackPages) -> bool {
        self.iter()
            .all(|(p, a)| a != Access::None && stack.handed_off().any(|h| h == p))
    }

    /// The coherence messages the destination handles, in order, before it queues the task.
    pub fn hand_offs(&self) -> impl Iterator<Item = PageMessage> + '_ {
        self.iter()
            .map(|(page, access)| PageMessage::HandOff { page, access })
    }
}

/// What a scheduler knows of a task it holds, and what a migration carries: a reference to
/// the descriptor (not the descriptor: it is in the shared region already), where its
/// handle lives, whether it may move, and its stack pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaskRef {
    /// The descriptor.
    pub id: TaskId,
    /// The node that spawned it: its handle (and whoever joins there) learns the outcome.
    pub home: NodeId,
    /// Whether the task may run on another node (the seed's flag in the PCB).
    pub migratable: bool,
    /// The stack, in the shared region.
    pub stack: StackPages,
}

/// A node's load, as its hints tell the others: tasks on its ready queue (how many of them
/// may migrate) and its workers (how many of them run a task).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Load {
    /// Tasks on the ready queue.
    pub ready: u16,
    /// Of those, the migratable ones.
    pub migratable: u16,
    /// Worker threads.
    pub workers: u16,
    /// Workers running (or resuming) a task now.
    pub busy: u16,
}

impl Load {
    /// How many tasks the node could give away without leaving a worker of its own idle:
    /// migratable ready tasks beyond those its idle workers are about to take.
    pub fn surplus(&self) -> u16 {
        let idle = self.workers.saturating_sub(self.busy);
        self.migratable.min(self.ready.saturating_sub(idle))
    }
}

/// A message between two nodes' schedulers. Every message carries the sender's load: hints
/// are piggybacked on all of them, besides the broadcast [`Message::Hint`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Message {
    /// Broadcast, no reply: the sender's load changed by the threshold.
    Hint {
        /// The sender's load.
        load: Load,
    },
    /// An idle node's null task → a node the hints say has a surplus: send me a task.
    WorkRequest {
        /// The sender's load.
        load: Load,
    },
    /// The answer to a [`Message::WorkRequest`] when the receiver has no surplus any more.
    Refuse {
        /// The sender's load.
        load: Load,
    },
    /// A suspended task moves to the receiver, which puts it on its ready queue. The
    /// ownership and contents of the pages [`StackPages::handed_off`] names travel inside
    /// it ([`Effect::Migrate`]), and the receiver installs them and queues the task in one
    /// step.
    Migrate {
        /// The task.
        task: TaskRef,
        /// Whether it answers the receiver's work request (false: the task asked to go).
        requested: bool,
        /// The stack pages it carries (filled in by [`super::carrier::Carrier`] at the
        /// sender; empty as the scheduler makes it).
        carried: Carried,
        /// The sender's load.
        load: Load,
    },
    /// A thread (or a task that cannot go home) on the sender joined this task, homed on
    /// the receiver, by its descriptor: the home forgets the handle and frees the task's
    /// block (once it knows the end too: this may overtake the task's `Done`).
    Reaped {
        /// The task.
        task: TaskId,
        /// The sender's load.
        load: Load,
    },
    /// The task ended on the sender; sent to its home, where its handle lives.
    Done {
        /// The task.
        task: TaskId,
        /// Whether it panicked (the panic is in its descriptor for the joiner).
        panicked: bool,
        /// The sender's load.
        load: Load,
    },
}

impl Message {
    /// The sender's load, carried by every message.
    pub fn load(&self) -> Load {
        match *self {
            Message::Hint { load }
            | Message::WorkRequest { load }
            | Message::Refuse { load }
            | Message::Migrate { load, .. }
            | Message::Reaped { load, .. }
            | Message::Done { load, .. } => load,
        }
    }
}

/// How a task ended, as its handle reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Outcome {
    /// It returned; its result is in its descriptor.
    Finished,
    /// It panicked; the panic is in its descriptor.
    Panicked,
    /// The cluster lost this node before the task ended (the DSM cannot go on after a
    /// loss: every task not finished by then ends so).
    NodeLost(NodeId),
}

/// What a scheduler step asks the runtime to do, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Effect {
    /// Send `msg` to `to`.
    Send {
        /// The destination.
        to: NodeId,
        /// The message.
        msg: Message,
    },
    /// Send `msg` to every other node, with the no-reply broadcast.
    Broadcast {
        /// The message.
        msg: Message,
    },
    /// The worker that called [`super::Scheduler::next_task`] runs (or resumes) this task.
    Run {
        /// The task.
        task: TaskRef,
    },
    /// READY: a task was put on the ready queue; wake an idle worker (its null task).
    Wake,
    /// Send `msg` (a [`Message::Migrate`]) to `to` with the stack pages of its task that
    /// [`StackPages::handed_off`] names inside it: the coherence protocol's hand-off
    /// ([`crate::protocol::Coherence::evict`] with `hand_off: Some(to)`) of each page held
    /// here starts, the current page first, and `msg` waits in the node's
    /// [`crate::process::carrier::Carrier`] until each hand-off has produced its `HandOff`
    /// (at once for the dynamic manager's owner; after the manager's answer otherwise),
    /// which goes inside `msg` instead of on its own, or ended without one.
    Migrate {
        /// The destination.
        to: NodeId,
        /// The `Migrate`, carrying no page yet.
        msg: Message,
    },
    /// The handle of a task homed here was joined on another node (its end is known
    /// here): free the task's block (not on the reader thread, which must not wait for the
    /// region's allocator).
    Reaped {
        /// The task.
        task: TaskId,
    },
    /// The task homed here ended: wake whoever joins it.
    Resolved {
        /// The task.
        task: TaskId,
        /// How it ended.
        outcome: Outcome,
    },
}
