//! The current page of a migrating task's stack travels with its `Migrate` (IVY's rule): the
//! source starts the coherence hand-off of each page [`StackPages::handed_off`] names and the
//! `Migrate` waits here until each of those hand-offs has sent its `HandOff` (the page's
//! ownership and contents) to the destination, or ended without one (written back, passed
//! to a copy holder, refused by the receiver's rights). It then leaves right behind the
//! `HandOff`s, in the same write on the pair's one connection, so the destination installs
//! the pages before it queues the task, and the task's first instructions there find their
//! stack. Without the wait, under a central manager the `Migrate` overtook the `HandOff`
//! (which waits for the manager's answer): the task faulted on its stack at the
//! destination, the hand-off arriving then was refused and the page went to the backing
//! store and back (the stateright model's "no stack hand-off is refused" catches that).
//!
//! A pure state machine over the coherence protocol's effects, as the node runtime carries
//! them out in order; the model in `models/tests/model_scheduler.rs` does the same with the
//! coherence messages themselves.
//!
//! [`StackPages::handed_off`]: super::StackPages::handed_off

use super::message::Message;
use crate::protocol::{Effect as PageEffect, Message as PageMessage};
use crate::types::{NodeId, PageNo};

/// One `Migrate` waiting for the hand-offs of its pages.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Waiting {
    to: NodeId,
    migrate: Message,
    /// The pages whose hand-off started and has not sent its `HandOff` or ended yet.
    pages: Vec<PageNo>,
}

/// The `Migrate`s of a node waiting for their stack pages' hand-offs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Carrier {
    waiting: Vec<Waiting>,
}

impl Carrier {
    /// A migration to `to` whose hand-offs of `pages` are about to start here: `migrate`
    /// waits for them (call this before starting them: the dynamic manager's owner sends its
    /// `HandOff` at once). With no page to wait for, `migrate` is returned, to be sent now.
    pub fn wait(&mut self, to: NodeId, migrate: Message, pages: Vec<PageNo>) -> Option<Message> {
        if pages.is_empty() {
            return Some(migrate);
        }
        self.waiting.push(Waiting { to, migrate, pages });
        None
    }

    /// A coherence effect this node carries out now, in order: the `Migrate`s it releases,
    /// each to be sent right behind it (the `HandOff` it may be).
    pub fn after(&mut self, effect: &PageEffect) -> Vec<(NodeId, Message)> {
        if self.waiting.is_empty() {
            return Vec::new();
        }
        let done = |dest: NodeId, page: PageNo| match *effect {
            PageEffect::Send {
                to,
                msg: PageMessage::HandOff { page: p, .. },
            } => to == dest && p == page,
            // The eviction ended without a hand-off to the destination (or after it).
            PageEffect::Evicted { page: p, .. } => p == page,
            _ => false,
        };
        let mut released = Vec::new();
        self.waiting.retain_mut(|w| {
            let dest = w.to;
            w.pages.retain(|&p| !done(dest, p));
            if w.pages.is_empty() {
                released.push((w.to, w.migrate));
                false
            } else {
                true
            }
        });
        released
    }

    /// How many `Migrate`s wait.
    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    /// Whether none waits.
    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::{Load, StackPages, TaskId, TaskRef};
    use crate::protocol::message::EvictClass;
    use crate::types::Access;

    fn migrate() -> Message {
        Message::Migrate {
            task: TaskRef {
                id: TaskId(0),
                home: 0,
                migratable: true,
                stack: StackPages::new(0, 16),
            },
            requested: false,
            load: Load::default(),
        }
    }

    #[test]
    fn a_migrate_leaves_behind_the_last_hand_off_of_its_pages() {
        let mut c = Carrier::default();
        assert_eq!(c.wait(1, migrate(), Vec::new()), Some(migrate()));
        assert_eq!(c.wait(1, migrate(), vec![15, 0]), None);
        let hand_off = |to, page| PageEffect::Send {
            to,
            msg: PageMessage::HandOff {
                page,
                access: Access::Write,
            },
        };
        // Another destination's hand-off, or another page's, releases nothing.
        assert!(c.after(&hand_off(2, 15)).is_empty());
        assert!(c.after(&hand_off(1, 7)).is_empty());
        assert!(c.after(&hand_off(1, 15)).is_empty());
        assert_eq!(c.len(), 1);
        // The first page's eviction ends without a hand-off (written back): it goes.
        let evicted = PageEffect::Evicted {
            page: 0,
            class: EvictClass::WrittenBack,
        };
        assert_eq!(c.after(&evicted), vec![(1, migrate())]);
        assert!(c.is_empty());
    }
}
