//! Least recently used order of a node's resident pages, one queue per eviction class.
//!
//! What "used" means here is what the runtime can see: a fault backend reports faults, not
//! every access (a page that is readable or writable is touched by plain loads and stores the
//! runtime never hears of). So a page's recency is the time of its last fault here or of its
//! last arrival (contents installed, read back from the store, or ownership adopted), which is
//! the information IVY-style DSMs have without hardware reference bits.

use std::collections::BTreeSet;

use crate::protocol::PageState;
use crate::types::{Access, PageNo};

/// The seed's eviction classes, cheapest first, as the evicting node can tell them from its
/// own page state (the protocol decides the actual outcome: a page this node owns with read
/// access is taken to be replicated, because an owner drops to read access only when it
/// serves a copy; the manager knows whether the copies are still there).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Class {
    /// A read copy of a page owned elsewhere: dropped, the copyset's keeper told.
    Copy,
    /// A page this node owns with read access (copies elsewhere): ownership passed on.
    OwnedReplicated,
    /// A page this node owns and writes (the only copy): handed off or written back.
    OnlyCopy,
}

impl Class {
    /// Every class, in the order victims are taken from them.
    pub const ORDER: [Class; 3] = [Class::Copy, Class::OwnedReplicated, Class::OnlyCopy];

    /// The class a page in state `st` is evicted as, or `None` if it is no candidate (no
    /// contents here to give up).
    pub fn of(st: &PageState) -> Option<Class> {
        match (st.access, st.owner) {
            // Fenced (a capability's rights keep local threads off it, its contents stay):
            // a copy is dropped; an owned page may be the only copy.
            (Access::None, false) if st.fenced => Some(Class::Copy),
            (Access::None, true) if st.fenced => Some(Class::OnlyCopy),
            (Access::None, _) => None,
            (Access::Read, false) | (Access::Write, false) => Some(Class::Copy),
            (Access::Read, true) => Some(Class::OwnedReplicated),
            (Access::Write, true) => Some(Class::OnlyCopy),
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// What the order knows of one page.
#[derive(Clone, Copy, Debug, Default)]
struct Entry {
    /// When the page was last used (a logical clock: larger is more recent).
    stamp: u64,
    /// The queue it is filed in, if it is a candidate.
    class: Option<Class>,
    /// Whether it takes a frame here ([`PageState::uses_frame`]).
    resident: bool,
    /// Whether an eviction of it is under way here.
    evicting: bool,
}

/// The resident pages of one node in least-recently-used order per [`Class`], and how many
/// frames are in use. Kept in step with the protocol by [`Lru::update`] after every step
/// that may have changed a page.
#[derive(Debug)]
pub struct Lru {
    clock: u64,
    entries: Vec<Entry>,
    queues: [BTreeSet<(u64, PageNo)>; 3],
    resident: u32,
    evicting: u32,
}

impl Lru {
    /// The order of a region of `pages` pages, none resident.
    pub fn new(pages: u32) -> Lru {
        Lru {
            clock: 0,
            entries: vec![Entry::default(); pages as usize],
            queues: Default::default(),
            resident: 0,
            evicting: 0,
        }
    }

    /// The number of pages that take a frame here.
    pub fn resident(&self) -> u32 {
        self.resident
    }

    /// The number of evictions under way here.
    pub fn evicting(&self) -> u32 {
        self.evicting
    }

    /// `page` was used now (a fault on it was served, or it arrived): it becomes the most
    /// recently used of its class.
    pub fn touch(&mut self, page: PageNo) {
        self.clock += 1;
        let clock = self.clock;
        let Some(e) = self.entries.get_mut(page as usize) else {
            return;
        };
        if let Some(class) = e.class {
            self.queues[class.index()].remove(&(e.stamp, page));
            self.queues[class.index()].insert((clock, page));
        }
        e.stamp = clock;
    }

    /// Refile `page` after a protocol step left it in state `st`; a page that starts to take
    /// a frame becomes the most recently used of its class, as [`Lru::touch`] makes it.
    /// Returns whether the page stopped taking a frame here with this step (its memory is
    /// no longer counted, so it must go).
    pub fn update(&mut self, page: PageNo, st: &PageState) -> bool {
        let Some(e) = self.entries.get_mut(page as usize) else {
            return false;
        };
        let mut left = false;
        let resident = st.uses_frame();
        if resident != e.resident {
            if resident {
                self.resident += 1;
                // A page that comes in is used now (a read-ahead's pages need no touch).
                self.clock += 1;
                if let Some(class) = e.class {
                    self.queues[class.index()].remove(&(e.stamp, page));
                    self.queues[class.index()].insert((self.clock, page));
                }
                e.stamp = self.clock;
            } else {
                self.resident -= 1;
                left = true;
            }
            e.resident = resident;
        }
        if st.evicting != e.evicting {
            if st.evicting {
                self.evicting += 1;
            } else {
                self.evicting -= 1;
            }
            e.evicting = st.evicting;
        }
        let class = Class::of(st);
        if class != e.class {
            if let Some(old) = e.class {
                self.queues[old.index()].remove(&(e.stamp, page));
            }
            if let Some(new) = class {
                self.queues[new.index()].insert((e.stamp, page));
            }
            e.class = class;
        }
        left
    }

    /// The page to evict: the least recently used page of the cheapest class for which
    /// `evictable` holds (the protocol's [`crate::protocol::Coherence::evictable`]: not held
    /// for Δt, nothing under way for it), and its class.
    pub fn victim(&self, mut evictable: impl FnMut(PageNo) -> bool) -> Option<(PageNo, Class)> {
        Class::ORDER.into_iter().find_map(|class| {
            self.queues[class.index()]
                .iter()
                .map(|&(_, page)| page)
                .find(|&p| evictable(p))
                .map(|p| (p, class))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(access: Access, owner: bool) -> PageState {
        PageState {
            access,
            owner,
            ..PageState::ABSENT
        }
    }

    #[test]
    fn victims_come_from_the_cheapest_class_least_recent_first() {
        let mut lru = Lru::new(8);
        lru.update(0, &state(Access::Write, true));
        lru.touch(0);
        lru.update(1, &state(Access::Read, true));
        lru.touch(1);
        lru.update(2, &state(Access::Read, false));
        lru.touch(2);
        lru.update(3, &state(Access::Read, false));
        lru.touch(3);
        assert_eq!(lru.resident(), 4);
        assert_eq!(lru.victim(|_| true), Some((2, Class::Copy)));
        lru.touch(2);
        assert_eq!(lru.victim(|_| true), Some((3, Class::Copy)));
        assert_eq!(
            lru.victim(|p| p != 2 && p != 3),
            Some((1, Class::OwnedReplicated))
        );
        assert_eq!(lru.victim(|p| p == 0), Some((0, Class::OnlyCopy)));
        assert_eq!(lru.victim(|_| false), None);
    }

    #[test]
    fn a_page_that_comes_in_is_the_most_recently_used_without_a_touch() {
        let mut lru = Lru::new(4);
        lru.update(0, &state(Access::Read, true));
        lru.update(1, &state(Access::Read, true));
        lru.touch(0);
        assert_eq!(lru.victim(|_| true), Some((1, Class::OwnedReplicated)));
        lru.update(2, &state(Access::Read, true));
        assert_eq!(lru.victim(|p| p != 1), Some((0, Class::OwnedReplicated)));
        // Paged out and in again: the most recent.
        lru.update(0, &PageState::ABSENT);
        lru.update(0, &state(Access::Read, true));
        assert_eq!(lru.victim(|p| p != 1), Some((2, Class::OwnedReplicated)));
        assert_eq!(lru.resident(), 3);
    }

    #[test]
    fn frames_and_evictions_follow_the_protocol_state() {
        let mut lru = Lru::new(4);
        let pending = PageState {
            pending: Some(Access::Read),
            ..PageState::ABSENT
        };
        lru.update(1, &pending);
        assert_eq!(lru.resident(), 1);
        assert_eq!(
            lru.victim(|_| true),
            None,
            "a page on its way is no candidate"
        );
        lru.update(1, &state(Access::Read, false));
        let evicting = PageState {
            evicting: true,
            ..PageState::ABSENT
        };
        assert!(!lru.update(1, &evicting), "still takes its frame");
        assert_eq!((lru.resident(), lru.evicting()), (1, 1));
        // The eviction ends with no access change (its ownership went to a requester
        // meanwhile): the frame is left now, and the caller returns its memory.
        assert!(lru.update(1, &PageState::ABSENT), "the frame is left");
        assert_eq!((lru.resident(), lru.evicting()), (0, 0));
        assert!(!lru.update(1, &PageState::ABSENT), "left once");
        assert_eq!(lru.victim(|_| true), None);
        // Out of range pages are ignored, not a panic.
        lru.update(9, &state(Access::Write, true));
        lru.touch(9);
        assert_eq!(lru.resident(), 0);
    }
}
