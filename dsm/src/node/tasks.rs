//! The node runtime's side of process management: it carries the scheduler's messages
//! ([`crate::process::Message`], in the form of [`crate::process::codec`]) between nodes,
//! hands them to this node's task pool, and hands a migrating task's stack pages to the
//! destination with the coherence protocol's hand-off, its `Migrate` right behind them.
//!
//! Trust boundary: a scheduler frame from a peer is decoded with exact lengths and checked
//! flags; a frame that does not decode fails the node naming that peer, as a bad coherence
//! message does. What the message means (a known node, a stack inside the region, an answer
//! to a request sent) the pool's [`crate::process::Scheduler`] checks.
//!
//! Messages that arrive before this node's pool starts wait in an inbox and are handed to
//! the pool when it starts (a peer may send work or a task at once). Once the pool has
//! stopped, a work request is refused at once (the asking node must not wait for an answer
//! that never comes) and anything else is dropped.

use std::sync::{Arc, Mutex};

use super::wire::SERVICE_TASKS;
use super::{NodeRuntime, Outgoing, lock};
use crate::process::codec;
use crate::process::{Load, Message, TaskRef};
use crate::types::{DsmError, NodeId};

/// What the pool runs for each scheduler message from a peer.
pub type TaskHandler = Arc<dyn Fn(NodeId, Message) + Send + Sync>;

enum InboxState {
    /// No pool yet: messages wait.
    Waiting(Vec<(NodeId, Message)>),
    /// A pool handles them.
    Serving(TaskHandler),
    /// The pool stopped.
    Stopped,
}

/// Where scheduler messages go on this node.
pub(super) struct TaskInbox(Mutex<InboxState>);

impl Default for TaskInbox {
    fn default() -> Self {
        TaskInbox(Mutex::new(InboxState::Waiting(Vec::new())))
    }
}

impl NodeRuntime {
    /// A scheduler frame from `from` (after its service byte).
    pub(super) fn on_task_message(&self, from: NodeId, body: &[u8]) {
        let msg = match codec::decode(body) {
            Ok(msg) => msg,
            Err(e) => return self.fail(from, format!("bad message: {e}")),
        };
        if lock(&self.state).failed.is_some() {
            return;
        }
        // Delivered under the inbox lock: in order, and never to a pool that has stopped.
        let mut inbox = lock(&self.task_inbox.0);
        match &mut *inbox {
            InboxState::Waiting(queued) => queued.push((from, msg)),
            InboxState::Serving(handler) => handler(from, msg),
            InboxState::Stopped => {
                if let Message::WorkRequest { .. } = msg {
                    drop(inbox);
                    let _ = self.send_task_message(
                        from,
                        &Message::Refuse {
                            load: Load::default(),
                        },
                    );
                }
            }
        }
    }

    /// Hand the scheduler messages from peers to `handler` (the task pool of this node),
    /// first those that arrived before; `None` when the pool stops.
    pub fn set_task_handler(&self, handler: Option<TaskHandler>) {
        let mut inbox = lock(&self.task_inbox.0);
        let before = std::mem::replace(
            &mut *inbox,
            match &handler {
                Some(h) => InboxState::Serving(Arc::clone(h)),
                None => InboxState::Stopped,
            },
        );
        if let (InboxState::Waiting(queued), Some(h)) = (before, handler) {
            for (from, msg) in queued {
                h(from, msg);
            }
        }
    }

    /// Send a scheduler message to `to` (one-way). A failed send fails the node, as any
    /// lost connection does.
    pub fn send_task_message(&self, to: NodeId, msg: &Message) -> Result<(), DsmError> {
        if let Some(e) = Self::failure(&lock(&self.state)) {
            return Err(e);
        }
        self.endpoint
            .send(to, Self::task_payload(msg))
            .map_err(|e| {
                self.fail(to, e.reason.clone());
                self.failure_or(to, e.reason)
            })
    }

    /// Send a scheduler message to every other node, with no reply (hints).
    pub fn broadcast_task_message(&self, msg: &Message) -> Result<(), DsmError> {
        for to in (0..self.nodes as NodeId).filter(|&n| n != self.id) {
            self.send_task_message(to, msg)?;
        }
        Ok(())
    }

    /// The node the cluster lost first, if it lost one (the DSM cannot go on after it).
    pub fn lost_node(&self) -> Option<NodeId> {
        lock(&self.state).failed.as_ref().map(|(n, _)| *n)
    }

    /// A peer broke the scheduling protocol: the node fails, naming it.
    pub(crate) fn scheduler_violation(&self, from: NodeId, what: String) {
        self.fail(from, format!("scheduler protocol violation: {what}"));
    }

    /// Send a migrating task's `Migrate` (`msg`) to `to`, with the ownership and contents
    /// of its stack pages that [`crate::process::StackPages::handed_off`] names: each page
    /// held here and evictable now starts the coherence protocol's eviction with a hand-off
    /// to `to`, and `msg` waits ([`crate::process::carrier`]) until each has sent its
    /// `HandOff` or ended without one, to leave right behind them. Returns once the messages
    /// ready now are sent. A page busy here (a fault or an eviction under way) stays, and
    /// `to` fetches it when it touches it.
    pub fn migrate_task(&self, task: &TaskRef, to: NodeId, msg: &Message) -> Result<(), DsmError> {
        if to as usize >= self.nodes || to == self.id {
            return Err(DsmError::Protocol(format!(
                "migration to node {to} from node {} of {}",
                self.id, self.nodes
            )));
        }
        let mut st = lock(&self.state);
        Self::refused(&st)?;
        let mut pages = Vec::new();
        for page in task.stack.handed_off() {
            self.check_page(page)?;
            if st.coherence.evictable(page) {
                pages.push(page);
            }
        }
        if let Some(now) = st.carrier.wait(to, *msg, pages.clone()) {
            drop(st);
            return self.send_task_message(to, &now);
        }
        let mut out = Outgoing::default();
        for page in pages {
            let effects = st
                .coherence
                .evict(page, Some(to))
                .map_err(|e| DsmError::Protocol(e.to_string()))?;
            match self.run_effects(&mut st, page, effects, None) {
                Ok(more) => {
                    out.served |= more.served;
                    out.messages.extend(more.messages);
                }
                Err((node, reason)) => {
                    self.fail_locked(st, node, reason.clone());
                    return Err(self.failure_or(node, reason));
                }
            }
        }
        drop(st);
        self.flush_fault(out)
    }

    /// Queue the `Migrate`s the carrier released, behind the messages queued so far.
    pub(super) fn push_task_messages(released: Vec<(NodeId, Message)>, out: &mut Outgoing) {
        for (to, msg) in released {
            out.messages.push((to, Self::task_payload(&msg)));
        }
    }

    fn task_payload(msg: &Message) -> Vec<u8> {
        let mut payload = Vec::with_capacity(1 + codec::MAX_LEN);
        payload.push(SERVICE_TASKS);
        codec::encode(msg, &mut payload);
        payload
    }
}
