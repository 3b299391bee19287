//! The node runtime's side of process management: it carries the scheduler's messages
//! ([`crate::process::Message`], in the form of [`crate::process::codec`]) between nodes,
//! hands them to this node's task pool, and moves a migrating task's stack pages inside its
//! `Migrate`: the source's coherence protocol hands each page off (an eviction with a
//! hand-off to the destination), the [`Carrier`] puts each `HandOff` it produces, with the
//! page's contents, inside the `Migrate` instead of sending it alone, and the destination
//! hands the carried `HandOff`s to its coherence protocol (installing the pages, answering
//! the source) and then gives the `Migrate` to its pool, in one step of the connection's
//! reader.
//!
//! Trust boundary: a scheduler frame from a peer is decoded with exact lengths, checked
//! flags and accesses, and carried pages that must be pages the task's stack hands off;
//! a carried page must lie in the region, and its `HandOff` is a coherence message like any
//! other (the protocol refuses one it did not expect). A frame that does not decode, or a
//! carried page the protocol refuses, fails the node naming that peer, as a bad coherence
//! message does. What the message means (a known node, a stack inside the region, an answer
//! to a request sent) the pool's [`crate::process::Scheduler`] checks.
//!
//! Messages that arrive before this node's pool starts wait in an inbox and are handed to
//! the pool when it starts (a peer may send work or a task at once). Once the pool has
//! stopped, a work request is refused at once (the asking node must not wait for an answer
//! that never comes) and anything else is dropped (a task's carried pages are installed all
//! the same: the source waits for their hand-offs' answers).

use std::sync::{Arc, Mutex};

use super::wire::SERVICE_TASKS;
use super::{NodeRuntime, Outgoing, lock};
use crate::process::carrier::{Carrier, Leaving};
use crate::process::codec;
use crate::process::{Carried, Load, Message};
use crate::types::{DsmError, NodeId, PAGE_SIZE};

/// The migrations of this node waiting for their stack pages' hand-offs, each page's
/// contents read as its `HandOff` is produced.
pub(super) type StackCarrier = Carrier<Box<[u8; PAGE_SIZE]>>;

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
        let (msg, contents) = match codec::decode(body) {
            Ok(frame) => (frame.msg, frame.contents),
            Err(e) => return self.fail(from, format!("bad message: {e}")),
        };
        if lock(&self.state).failed.is_some() {
            return;
        }
        if let Message::Migrate { carried, .. } = msg
            && !carried.is_empty()
            && self.install_carried(from, carried, &contents).is_err()
        {
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
        let payload = Self::task_payload(msg, &[] as &[&[u8]])?;
        self.endpoint.send(to, payload).map_err(|e| {
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

    /// Send a migrating task's `Migrate` (`msg`) to `to`, carrying the ownership and
    /// contents of its stack pages that [`crate::process::StackPages::handed_off`] names:
    /// each page held here and evictable now starts the coherence protocol's eviction with a
    /// hand-off to `to`, and `msg` waits in the [`Carrier`] until each has produced its
    /// `HandOff` (which goes inside `msg`) or ended without one. Returns once the messages
    /// ready now are sent. A page busy here (a fault or an eviction under way) stays, and
    /// `to` fetches it when it touches it.
    pub fn migrate_task(&self, to: NodeId, msg: &Message) -> Result<(), DsmError> {
        let Message::Migrate { task, .. } = msg else {
            return Err(DsmError::Protocol(format!(
                "{msg:?} is no migration to send with its stack"
            )));
        };
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
        self.run_page_steps(st, pages, |st, page| {
            let effects = st
                .coherence
                .evict(page, Some(to))
                .map_err(|e| (self.id, format!("stack hand-off: {e}")))?;
            Ok((page, effects, None))
        })
    }

    /// The `HandOff`s a `Migrate` from `from` carries, with their `contents`: each goes to
    /// the coherence protocol as if it came alone (the page is installed, the answer goes
    /// back to `from`), before the `Migrate` goes to the pool. A page outside the region, or
    /// a hand-off the protocol refuses, fails the node naming `from`.
    fn install_carried(
        &self,
        from: NodeId,
        carried: Carried,
        contents: &[&[u8]],
    ) -> Result<(), DsmError> {
        for (page, _) in carried.iter() {
            if let Err(e) = self.check_page(page) {
                self.fail(from, format!("bad message: a carried stack page: {e}"));
                return Err(e);
            }
        }
        // As any coherence message: handled until the node fails (also while it leaves).
        let st = lock(&self.state);
        if let Some(e) = Self::failure(&st) {
            return Err(e);
        }
        self.run_page_steps(st, carried.hand_offs().zip(contents), |st, (msg, data)| {
            let effects = st
                .coherence
                .handle(from, msg)
                .map_err(|e| (from, format!("protocol violation: {e}")))?;
            Ok((msg.page(), effects, Some(*data)))
        })
    }

    /// Whether `msg` for `to`, a coherence message about to be sent, is the `HandOff` of a
    /// page a waiting `Migrate` carries: then its contents are read now (`read`) and it goes
    /// inside the `Migrate`, which is queued in `out` when that was its last page.
    pub(super) fn carry_hand_off(
        carrier: &mut StackCarrier,
        to: NodeId,
        msg: crate::protocol::Message,
        read: impl FnOnce(&mut [u8]),
        out: &mut Outgoing,
    ) -> bool {
        if !carrier.carries(to, &msg) {
            return false;
        }
        let mut page = Box::new([0u8; PAGE_SIZE]);
        read(&mut page[..]);
        if let Some(leaving) = carrier.carry(to, msg, page) {
            Self::push_migrate(leaving, out);
        }
        true
    }

    /// Queue the `Migrate` the carrier let go, if any, behind the messages queued so far.
    pub(super) fn push_task_messages(
        released: Option<Leaving<Box<[u8; PAGE_SIZE]>>>,
        out: &mut Outgoing,
    ) {
        if let Some(leaving) = released {
            Self::push_migrate(leaving, out);
        }
    }

    /// Queue a `Migrate` that the carrier let go, behind the messages queued so far.
    fn push_migrate(leaving: Leaving<Box<[u8; PAGE_SIZE]>>, out: &mut Outgoing) {
        let contents: Vec<&[u8]> = leaving.contents.iter().map(|c| &c[..]).collect();
        match Self::task_payload(&leaving.msg, &contents) {
            Ok(payload) => out.messages.push((leaving.to, payload)),
            // Not reached: the carrier pairs each carried page with its contents.
            Err(e) => eprintln!("memlink-dsm: a migration not sent: {e}"),
        }
    }

    fn task_payload<C: AsRef<[u8]>>(msg: &Message, contents: &[C]) -> Result<Vec<u8>, DsmError> {
        let mut payload = Vec::with_capacity(1 + codec::MAX_LEN);
        payload.push(SERVICE_TASKS);
        codec::encode(msg, contents, &mut payload)
            .map_err(|e| DsmError::Protocol(e.to_string()))?;
        Ok(payload)
    }
}
