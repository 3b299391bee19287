//! Runs of this node's own pages paged in, or dropped, in one protocol step: the read-ahead
//! of a file's pages and the eviction of the pages it brought in.
//!
//! A page this node owns, manages itself (central manager at node 0, fixed manager at
//! `page % nodes`, or dynamic owner) and whose manager entry is idle, needs no message to
//! come in from the backing store for reading nor, when it is clean and has no copy
//! elsewhere, to be dropped: the ordinary path would send the requests to this node itself
//! and end in exactly the same state (the manager entry unchanged: an owner's read copy is
//! not in the copyset, and an only copy evicted without a hand-off is written back, which a
//! clean page skips). [`Coherence::page_in_run`] and [`Coherence::drop_clean_run`] take such
//! a run in one step: the same per-page effects ([`Effect::PageIn`] for reading,
//! [`Effect::Evicted`] as [`EvictClass::DroppedClean`]), without the three self-addressed
//! messages and the manager transaction per page. A page of a run that does not qualify
//! refuses the whole step, before anything changes; the caller goes the ordinary way.

use super::{Coherence, ProtocolError};
use crate::protocol::message::{Effect, EvictClass};
use crate::types::{Access, ManagerKind, PageNo};

impl Coherence {
    /// Whether this node decides about `page` alone now: it owns it and is the one that
    /// keeps its manager entry (central or fixed manager here, or the dynamic owner), and
    /// that entry serves nothing and queues nothing.
    fn decides_alone(&self, page: PageNo) -> bool {
        let i = page as usize;
        if !self.pages.get(i).is_some_and(|s| s.owner) {
            return false;
        }
        if self.kind == ManagerKind::Dynamic {
            return self
                .dynamic
                .get(i)
                .is_some_and(|e| e.busy.is_none() && e.queue.is_empty());
        }
        self.managed
            .get(i)
            .and_then(Option::as_ref)
            .is_some_and(|m| m.owner == self.id && m.busy.is_none() && m.queue.is_empty())
    }

    /// Whether [`Coherence::page_in_run`] may bring `page` in for reading: this node owns
    /// it, has paged it out, waits for nothing of it, may read it (rights and pager lock),
    /// and decides about it alone.
    pub fn pages_in_alone(&self, page: PageNo) -> bool {
        self.pages.get(page as usize).is_some_and(|s| {
            s.paged_out() && s.pending.is_none() && !s.held && self.unlocking(page).is_none()
        }) && self.local_limit(page) >= Access::Read
            && self.decides_alone(page)
    }

    /// Whether [`Coherence::drop_clean_run`] may drop `page`: this node owns it readable
    /// (not fenced), clean (the store holds its contents), no other node holds a copy, it
    /// may be evicted now ([`Coherence::evictable`]), and this node decides about it alone.
    pub fn drops_alone(&self, page: PageNo) -> bool {
        let i = page as usize;
        let Some(s) = self.pages.get(i) else {
            return false;
        };
        let no_copies = if self.kind == ManagerKind::Dynamic {
            self.dynamic.get(i).is_some_and(|e| {
                let mut c = e.copyset;
                c.remove(self.id);
                c.is_empty()
            })
        } else {
            self.managed
                .get(i)
                .and_then(Option::as_ref)
                .is_some_and(|m| {
                    let mut c = m.copyset;
                    c.remove(self.id);
                    c.is_empty()
                })
        };
        s.owner
            && s.clean
            && s.access == Access::Read
            && !s.fenced
            && no_copies
            && self.evictable(page)
            && self.decides_alone(page)
    }

    /// The pages `first .. first + count`, if they lie in the region and each passes `ok`.
    fn run_passes(&self, first: PageNo, count: u32, ok: impl Fn(PageNo) -> bool) -> bool {
        count > 0
            && first
                .checked_add(count)
                .is_some_and(|end| end <= self.pages() && (first..end).all(ok))
    }

    /// Bring the pages `first .. first + count` in from the backing store for reading, in
    /// one step: each must pass [`Coherence::pages_in_alone`] (else nothing changes and the
    /// step is refused). Effects: a [`Effect::PageIn`] for reading per page (and a
    /// [`Effect::Hold`] per page with the Δt hold on), then one [`Effect::Served`].
    pub fn page_in_run(&mut self, first: PageNo, count: u32) -> Result<Vec<Effect>, ProtocolError> {
        if !self.run_passes(first, count, |p| self.pages_in_alone(p)) {
            return Err(ProtocolError(format!(
                "pages {first}..+{count} cannot be paged in alone at node {}",
                self.id
            )));
        }
        let mut out = Vec::with_capacity(count as usize + 1);
        for page in first..first + count {
            let st = self.state(page)?;
            st.access = Access::Read;
            out.push(Effect::PageIn {
                page,
                access: Access::Read,
            });
            self.hold_if_raised(page, Access::None, &mut out);
        }
        out.push(Effect::Served { page: first });
        self.track_clean(&mut out);
        Ok(out)
    }

    /// Drop the pages `first .. first + count` in one step, as evictions without a hand-off
    /// would ([`EvictClass::DroppedClean`]: the store keeps their contents; this node stays
    /// their owner): each must pass [`Coherence::drops_alone`] (else nothing changes and
    /// the step is refused). Effects: an [`Effect::Evicted`] per page, then one
    /// [`Effect::Served`].
    pub fn drop_clean_run(
        &mut self,
        first: PageNo,
        count: u32,
    ) -> Result<Vec<Effect>, ProtocolError> {
        if !self.run_passes(first, count, |p| self.drops_alone(p)) {
            return Err(ProtocolError(format!(
                "pages {first}..+{count} cannot be dropped alone at node {}",
                self.id
            )));
        }
        let mut out = Vec::with_capacity(count as usize + 1);
        for page in first..first + count {
            let st = self.state(page)?;
            st.access = Access::None;
            st.fenced = false;
            out.push(Effect::Evicted {
                page,
                class: EvictClass::DroppedClean,
            });
        }
        out.push(Effect::Served { page: first });
        self.track_clean(&mut out);
        Ok(out)
    }
}
