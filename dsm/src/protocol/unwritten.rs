//! Pages whose write-back failed (Mach's `data_write` answered with an error: a pager that
//! cannot write now, a full disk), kept by the node that evicted them until a write of them
//! reaches the store.
//!
//! To the coherence protocol such a page was written back: it is paged out at its owner
//! (this node), and its frame is free. To the node it is not gone: its contents wait here,
//! and every read of the page from the store at this node ([`super::Effect::PageIn`],
//! [`super::Effect::SendStored`], a read-ahead) gets them instead of the store's stale
//! copy, so no write is lost. Each takes a frame of the node's budget
//! ([`super::Coherence::set_reserved`]) until a later write of the page reaches the store
//! (a retry, or a newer write-back), or until this node no longer owns the page
//! ([`Unwritten::settle`]): the new owner holds the contents then (they went with the
//! ownership, read from here), and writes them back itself when it evicts them; contents
//! written from here later would overwrite its newer ones.
//!
//! Pure (no I/O): the node runtime keeps page contents in it, the simulator and the model
//! their versions, and both follow these rules.

use std::collections::BTreeMap;

use super::coherence::PageState;
use crate::types::PageNo;

/// The pages of one node whose write-back failed, with their contents (`T`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Unwritten<T> {
    pages: BTreeMap<PageNo, T>,
}

impl<T> Default for Unwritten<T> {
    fn default() -> Self {
        Unwritten {
            pages: BTreeMap::new(),
        }
    }
}

impl<T> Unwritten<T> {
    /// No page kept.
    pub fn new() -> Unwritten<T> {
        Unwritten::default()
    }

    /// The write-back of `page` with `contents` failed: keep them (they replace contents
    /// kept for it before, which are older).
    pub fn failed(&mut self, page: PageNo, contents: T) {
        self.pages.insert(page, contents);
    }

    /// A write of `page` reached the store: contents kept for it are obsolete (returned).
    pub fn written(&mut self, page: PageNo) -> Option<T> {
        self.pages.remove(&page)
    }

    /// The contents a read of `page` from the store gets here, when kept.
    pub fn get(&self, page: PageNo) -> Option<&T> {
        self.pages.get(&page)
    }

    /// Whether contents of `page` are kept here.
    pub fn contains(&self, page: PageNo) -> bool {
        self.pages.contains_key(&page)
    }

    /// After a step left `page` in state `st` at this node: contents kept for a page this
    /// node no longer owns are dropped (its new owner holds them). Returns whether they were.
    pub fn settle(&mut self, page: PageNo, st: &PageState) -> bool {
        !st.owner && self.pages.remove(&page).is_some()
    }

    /// How many pages are kept: the frames they take.
    pub fn len(&self) -> u32 {
        self.pages.len() as u32
    }

    /// Whether no page is kept.
    pub fn is_empty(&self) -> bool {
        self.pages.is_empty()
    }

    /// The kept pages, lowest first.
    pub fn pages(&self) -> impl Iterator<Item = PageNo> + '_ {
        self.pages.keys().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Access;

    #[test]
    fn kept_contents_are_read_until_written_or_no_longer_owned() {
        let mut u = Unwritten::new();
        u.failed(3, 7u64);
        u.failed(3, 8);
        u.failed(5, 1);
        assert_eq!(
            (u.get(3), u.len()),
            (Some(&8), 2),
            "newer contents replace older"
        );
        let paged_out = PageState {
            owner: true,
            ..PageState::ABSENT
        };
        assert!(!u.settle(3, &paged_out), "still its owner: kept");
        assert!(u.settle(3, &PageState::ABSENT), "ownership went: dropped");
        assert_eq!(u.get(3), None);
        let read = PageState {
            access: Access::Read,
            owner: true,
            ..PageState::ABSENT
        };
        assert!(!u.settle(5, &read));
        assert_eq!(u.written(5), Some(1));
        assert!(u.is_empty());
    }
}
