//! The pager's locks (Mach's `data_lock` and `data_unlock`): a pager may restrict what the
//! local threads of a node may do with a page, independently of the coherence protocol,
//! which keeps serving the page to other nodes as before.
//!
//! - `data_lock(pages, lock)` ([`Coherence::data_lock`]): from now on the local threads of
//!   this node get at most `lock` access to the pages. Access above it drops at once
//!   (a page whose contents must stay here, owned or a listed copy, is fenced, as when
//!   rights shrink: the contents are kept, no write is lost); a grant that arrives later is
//!   capped the same way. Raising a lock from `None` gives read access back to a page
//!   fenced by it (its contents are current); write access is always asked for again.
//! - `data_unlock(page, access)` ([`Effect::DataUnlock`]): a local fault wants more than
//!   the lock allows. The node asks the pager first, and the fault waits for its answer,
//!   which is a `data_lock` of the page: a lock that allows the access ends the wait
//!   ([`Effect::Served`]: the fault asks the protocol for the page as usual), one that
//!   still forbids it refuses the fault ([`Effect::Denied`]: a protection fault).
//!
//! No message between nodes: a lock is this node's alone, like the pager's view of it in
//! Mach, and the protocol's invariants do not depend on it (the model checks that a lock
//! never lets a node have more access than it allows, and that no acknowledged write is
//! lost when pages are locked at any step).

use super::Coherence;
use crate::protocol::message::Effect;
use crate::types::{Access, PageNo};

impl Coherence {
    /// The pager's lock of `page` here: the most access it lets local threads have (Write
    /// when it never locked the page, or for a page out of range).
    pub fn pager_lock(&self, page: PageNo) -> Access {
        self.locks
            .get(page as usize)
            .copied()
            .unwrap_or(Access::Write)
    }

    /// The access a `data_unlock` of `page` asked the pager for, while it has not answered.
    pub fn unlocking(&self, page: PageNo) -> Option<Access> {
        self.unlocking.get(page as usize).copied().flatten()
    }

    /// The most access local threads may have to `page`: what this node's rights and the
    /// pager's lock allow.
    pub(super) fn local_limit(&self, page: PageNo) -> Access {
        self.rights
            .allowed(self.id, page)
            .min(self.pager_lock(page))
    }

    /// Before a local fault for `access` asks the protocol: when the pager's lock forbids
    /// it, the `data_unlock` to send (once: a fault that finds one under way waits for its
    /// answer, which is the empty list). `None`: the lock allows the access.
    pub(super) fn unlock_first(&mut self, page: PageNo, access: Access) -> Option<Vec<Effect>> {
        if access <= self.pager_lock(page) {
            return None;
        }
        let asked = self.unlocking.get_mut(page as usize)?;
        if asked.is_some() {
            return Some(Vec::new());
        }
        *asked = Some(access);
        Some(vec![Effect::DataUnlock { page, access }])
    }

    /// The pager's `pager_data_lock` for pages `first .. first + pages` at this node: local
    /// threads get at most `lock` access to them from now on (see the module docs). Also the
    /// pager's answer to this node's `data_unlock` of any of them: the waiting fault is
    /// served when `lock` allows what it asked for ([`Effect::Served`]), refused when not
    /// ([`Effect::Denied`]).
    pub fn data_lock(&mut self, first: PageNo, pages: u32, lock: Access) -> Vec<Effect> {
        let end = first.saturating_add(pages).min(self.pages());
        let mut out = Vec::new();
        let mut raised = Vec::new();
        for page in first..end {
            let before = std::mem::replace(&mut self.locks[page as usize], lock);
            if before == Access::None && lock > Access::None {
                raised.push(page);
            }
        }
        if first < end {
            self.fence(first, end - first, &mut out);
        }
        for page in raised {
            out.extend(self.unfence(page, 1));
        }
        for page in first..end {
            if let Some(wanted) = self.unlocking[page as usize].take() {
                out.push(if lock >= wanted {
                    Effect::Served { page }
                } else {
                    Effect::Denied {
                        page,
                        access: wanted,
                    }
                });
            }
        }
        self.track_clean(&mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use crate::protocol::Effect;
    use crate::protocol::sim::SimCluster;
    use crate::types::{Access, ManagerKind};

    fn settle(c: &mut SimCluster) {
        while !c.in_flight.is_empty() {
            c.deliver(0).unwrap();
        }
    }

    #[test]
    fn a_locked_page_asks_the_pager_and_its_answer_serves_or_refuses_the_fault() {
        for kind in [
            ManagerKind::Central,
            ManagerKind::Fixed,
            ManagerKind::Dynamic,
        ] {
            let mut c = SimCluster::new(2, 1, kind).unwrap();
            c.fault(1, 0, Access::Write).unwrap();
            settle(&mut c);
            let v = c.write(1, 0).unwrap();
            // Locked read-only: the writer keeps its contents, readable.
            c.data_lock(1, 0, Access::Read).unwrap();
            assert_eq!(c.access(1, 0), Access::Read, "{kind:?}");
            // A write fault asks the pager, and nothing else, until it answers.
            let asked = c.nodes[1].fault(0, Access::Write).unwrap();
            assert_eq!(
                asked,
                vec![Effect::DataUnlock {
                    page: 0,
                    access: Access::Write
                }]
            );
            assert!(c.nodes[1].fault(0, Access::Write).unwrap().is_empty());
            // Refused: the fault is denied, the lock stays.
            let refused = c.nodes[1].data_lock(0, 1, Access::Read);
            assert!(refused.contains(&Effect::Denied {
                page: 0,
                access: Access::Write
            }));
            // Locked out entirely: fenced, contents kept; unlocked: readable again, the
            // write that was made is still there.
            c.data_lock(1, 0, Access::None).unwrap();
            assert_eq!(c.access(1, 0), Access::None);
            assert!(c.nodes[1].page(0).unwrap().fenced);
            c.data_lock(1, 0, Access::Write).unwrap();
            assert_eq!(c.read(1, 0).unwrap(), v, "{kind:?}");
            c.fault(1, 0, Access::Write).unwrap();
            settle(&mut c);
            assert_eq!(c.access(1, 0), Access::Write, "{kind:?}");
            c.check().unwrap();
        }
    }
}
