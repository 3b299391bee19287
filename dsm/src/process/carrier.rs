//! The current page of a migrating task's stack travels inside its `Migrate` (IVY's rule):
//! the source starts the coherence hand-off of each page [`StackPages::handed_off`] names
//! (an eviction with `hand_off: Some(destination)`), and the `Migrate` waits here until each
//! of those hand-offs has produced its `HandOff` (the page's ownership and the access that
//! goes with it) or ended without one (written back, passed to a copy holder, refused by the
//! receiver's rights). A `HandOff` produced for a waiting `Migrate` is not sent on its own:
//! it goes inside the `Migrate` ([`Carried`]), with the page's contents read as it is
//! produced, and the `Migrate` leaves with its last page. The destination hands the carried
//! `HandOff`s to its coherence protocol (installing the pages) and queues the task in one
//! step, so the task's first instructions there find their stack, and no message can come
//! between the pages and the task.
//!
//! The `Migrate` must wait (under a central or fixed manager the `HandOff` comes only with
//! the manager's answer): sent before, the task faulted on its stack at the destination and
//! the hand-off arriving then was refused, and the page went to the backing store and back
//! (the stateright model's "no stack hand-off is refused" catches that).
//!
//! A pure state machine over the coherence protocol's messages and effects, as the node
//! runtime carries them out in order; the model in `models/tests/model_scheduler.rs` runs
//! it over the coherence messages of its simulated cluster, with page versions as contents.
//!
//! [`StackPages::handed_off`]: super::StackPages::handed_off
//! [`Carried`]: super::Carried

use super::message::Message;
use crate::protocol::{Effect as PageEffect, Message as PageMessage};
use crate::types::{NodeId, PageNo};

/// One `Migrate` waiting for the hand-offs of its pages.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Waiting<T> {
    to: NodeId,
    migrate: Message,
    /// The pages whose hand-off started and has not produced its `HandOff` or ended yet.
    pages: Vec<PageNo>,
    /// The contents of the pages `migrate` carries, in its order.
    contents: Vec<T>,
}

/// A `Migrate` ready to leave: the message (carrying its pages) and the contents of the
/// pages it carries, in the order it carries them.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Leaving<T> {
    /// The destination.
    pub to: NodeId,
    /// The `Migrate`.
    pub msg: Message,
    /// The contents of its carried pages.
    pub contents: Vec<T>,
}

/// The `Migrate`s of a node waiting for their stack pages' hand-offs; `T` is a page's
/// contents (bytes in the runtime, a version in the model).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Carrier<T> {
    waiting: Vec<Waiting<T>>,
}

impl<T> Default for Carrier<T> {
    fn default() -> Self {
        Carrier {
            waiting: Vec::new(),
        }
    }
}

impl<T> Carrier<T> {
    /// A migration to `to` whose hand-offs of `pages` are about to start here: `migrate`
    /// waits for them (call this before starting them: the dynamic manager's owner produces
    /// its `HandOff` at once). With no page to wait for, `migrate` is returned, to be sent
    /// now, carrying nothing.
    pub fn wait(&mut self, to: NodeId, migrate: Message, pages: Vec<PageNo>) -> Option<Message> {
        if pages.is_empty() {
            return Some(migrate);
        }
        self.waiting.push(Waiting {
            to,
            migrate,
            pages,
            contents: Vec::new(),
        });
        None
    }

    fn waiting_for(&self, to: NodeId, page: PageNo) -> Option<usize> {
        self.waiting
            .iter()
            .position(|w| w.to == to && w.pages.contains(&page))
    }

    /// Whether `msg`, about to be sent to `to`, is the `HandOff` of a page a waiting
    /// `Migrate` carries: then it is not sent on its own but given to [`Carrier::carry`].
    pub fn carries(&self, to: NodeId, msg: &PageMessage) -> bool {
        matches!(*msg, PageMessage::HandOff { page, .. } if self.waiting_for(to, page).is_some())
    }

    /// Put the `HandOff` `msg` for `to` (see [`Carrier::carries`]; anything else is left
    /// alone) inside its `Migrate`, with the page's `contents` as they are now. Returns the
    /// `Migrate` when that was the last page it waited for.
    pub fn carry(&mut self, to: NodeId, msg: PageMessage, contents: T) -> Option<Leaving<T>> {
        let PageMessage::HandOff { page, access } = msg else {
            return None;
        };
        let at = self.waiting_for(to, page)?;
        let w = &mut self.waiting[at];
        if let Message::Migrate { carried, .. } = &mut w.migrate
            && carried.push(page, access)
        {
            w.contents.push(contents);
        }
        w.pages.retain(|&p| p != page);
        self.release(at)
    }

    /// The eviction of `page` here ended without producing a `HandOff` for its migration
    /// (written back, passed on, dropped): the `Migrate` stops waiting for it, and is
    /// returned when that was the last page it waited for.
    pub fn ended(&mut self, page: PageNo) -> Option<Leaving<T>> {
        let at = self.waiting.iter().position(|w| w.pages.contains(&page))?;
        self.waiting[at].pages.retain(|&p| p != page);
        self.release(at)
    }

    /// [`Carrier::ended`] for a coherence effect carried out here, in order (only
    /// [`PageEffect::Evicted`] ends an eviction).
    pub fn after(&mut self, effect: &PageEffect) -> Option<Leaving<T>> {
        match *effect {
            PageEffect::Evicted { page, .. } => self.ended(page),
            _ => None,
        }
    }

    fn release(&mut self, at: usize) -> Option<Leaving<T>> {
        if !self.waiting[at].pages.is_empty() {
            return None;
        }
        let w = self.waiting.remove(at);
        Some(Leaving {
            to: w.to,
            msg: w.migrate,
            contents: w.contents,
        })
    }

    /// The pages waited for, with the destination of their `Migrate`.
    pub fn pages(&self) -> impl Iterator<Item = (NodeId, PageNo)> + '_ {
        self.waiting
            .iter()
            .flat_map(|w| w.pages.iter().map(move |&p| (w.to, p)))
    }

    /// The `Migrate`s waiting.
    pub fn migrations(&self) -> impl Iterator<Item = (NodeId, &Message)> + '_ {
        self.waiting.iter().map(|w| (w.to, &w.migrate))
    }

    /// Drop the `Migrate`s to or waiting on `node` (the cluster lost it); returns them.
    pub fn lose(&mut self, node: NodeId) -> Vec<Message> {
        let mut lost = Vec::new();
        self.waiting.retain(|w| {
            let keep = w.to != node;
            if !keep {
                lost.push(w.migrate);
            }
            keep
        });
        lost
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
    use crate::process::{Carried, Load, StackPages, TaskId, TaskRef};
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
            carried: Carried::default(),
            load: Load::default(),
        }
    }

    fn hand_off(page: PageNo) -> PageMessage {
        PageMessage::HandOff {
            page,
            access: Access::Write,
        }
    }

    #[test]
    fn a_migrate_carries_the_hand_offs_of_its_pages_and_leaves_with_the_last() {
        let mut c: Carrier<&str> = Carrier::default();
        assert_eq!(c.wait(1, migrate(), Vec::new()), Some(migrate()));
        assert_eq!(c.wait(1, migrate(), vec![15, 0]), None);
        // Another destination's hand-off, or another page's, is not carried.
        assert!(!c.carries(2, &hand_off(15)));
        assert!(!c.carries(1, &hand_off(7)));
        assert_eq!(c.carry(1, hand_off(7), "seven"), None);
        assert!(c.carries(1, &hand_off(15)));
        assert_eq!(c.carry(1, hand_off(15), "fifteen"), None);
        assert_eq!(c.pages().collect::<Vec<_>>(), [(1, 0)]);
        // Other effects end nothing.
        let written = |page| PageEffect::Evicted {
            page,
            class: EvictClass::WrittenBack,
        };
        assert_eq!(c.after(&written(15)), None);
        assert_eq!(c.len(), 1);
        // The first page's eviction ends without a hand-off (written back): it leaves,
        // carrying the one page handed off.
        let left = c.after(&written(0)).unwrap();
        assert!(c.is_empty());
        assert_eq!(left.to, 1);
        assert_eq!(left.contents, ["fifteen"]);
        let Message::Migrate { carried, .. } = left.msg else {
            panic!("{left:?}")
        };
        assert_eq!(carried.iter().collect::<Vec<_>>(), [(15, Access::Write)]);
    }

    #[test]
    fn a_lost_destination_drops_its_migrates() {
        let mut c: Carrier<()> = Carrier::default();
        assert_eq!(c.wait(1, migrate(), vec![3]), None);
        assert_eq!(c.wait(2, migrate(), vec![4]), None);
        assert_eq!(c.lose(2), [migrate()]);
        assert_eq!(c.migrations().map(|(to, _)| to).collect::<Vec<_>>(), [1]);
    }
}
