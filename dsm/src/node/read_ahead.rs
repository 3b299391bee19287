//! Read-ahead from the backing store (Mach's clustered `data_request`): a fault on a page
//! this node owns and has paged out, right after the page before it came in the same way,
//! brings in a run of the following paged-out pages too, and the run's window doubles with
//! each such sequential fault (up to [`READ_AHEAD_MAX`] pages, and a quarter of the frames).
//! A fault that does not follow the last run reads one page, and the window starts again.
//!
//! The protocol brings in a stretch of the run that this node may take alone (its own
//! pages, which it manages and nobody else asks for:
//! [`crate::protocol::Coherence::page_in_run`]) in one step, with no message, and each
//! other page with an ordinary fault; clean pages of its own that nobody else holds leave
//! the same way, in runs ([`crate::protocol::Coherence::drop_clean_run`]), other victims
//! with one eviction each. The runtime carries the page-ins out as a batch: the frames the
//! run needs are freed first (evictions, in the seed's order), the contents of each stretch of consecutive pages
//! come from the store in one call (in place when it keeps them mapped, as a file pager
//! does: [`crate::replacement::BackingStore::mapped_run`]; else
//! [`crate::replacement::BackingStore::read_run`], a pager's `data_request` for the run),
//! and go into the node's memory and become accessible in one go
//! ([`crate::LocalPages::install_run`]); the frames evicted for it are released in runs
//! too. All of it under the state lock, before any thread can see a page of the run.
//!
//! **No copy for a file.** When the store is a file the node may map
//! ([`crate::replacement::BackingStore::mapped_file`], the file pager), a run of pages
//! brought in for reading is not copied at all: one `mmap` puts the file's pages over the
//! run, read-only ([`crate::LocalPages::map_file_run`]), and the reader's faults map the
//! page cache as a plain `mmap` of the file would. Coherence is unchanged: the protocol
//! sees read copies of clean pages it owns, and the first change of such a page (write
//! access, an invalidation, an install, the end of its eviction) gives it back its own
//! memory first (the file's bytes copied in when its contents must stay), so a write never
//! reaches the file but through `data_write`, and a later write elsewhere invalidates it
//! like any copy.
//!
//! **In the background.** Once the window is at its largest, and when the store can map the
//! next run in place (so that reading it cannot wait on a pager, nor fail but for local
//! memory), the next run is read by the node's clock thread while the reader is still in
//! this one ([`NodeRuntime::read_ahead_fired`]);
//! its first page is left paged out as a marker: the fault on it (one page) says the reader
//! got there, and starts the background read of the run after. A reader faster than the
//! background falls back to reading runs itself.
//!
//! A hint, like a prefetch: the pages read ahead are ordinary read copies of pages this node
//! owns (the cheapest to evict after copies), so a guess that was wrong costs their frames
//! until the next eviction.

use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::MutexGuard;

use super::{NodeRuntime, Outgoing, State, lock};
use crate::protocol::Effect;
use crate::replacement::Class;
use crate::types::{Access, DsmError, NodeId, PAGE_SIZE, PageNo};

/// The most pages one read-ahead brings in (4 MiB).
pub const READ_AHEAD_MAX: u32 = 1024;

/// Where the last read-ahead ended, and how far the next one reaches.
#[derive(Debug, Default)]
pub(super) struct ReadAhead {
    /// The page after the last run paged in for a fault here.
    next: Option<PageNo>,
    /// The pages the last run brought in.
    window: u32,
    /// The page left paged out at the start of the run read in the background: a fault on
    /// it means the reader got there.
    marker: Option<PageNo>,
}

/// Page-ins and releases collected while a read-ahead runs, carried out together
/// ([`NodeRuntime::finish_batch`]).
#[derive(Debug, Default)]
pub(super) struct Batch {
    page_ins: Vec<(PageNo, Access)>,
    releases: Vec<PageNo>,
    /// The pages of both (asked of every effect of the batch: a set, not a scan).
    pages: HashSet<PageNo, BuildHasherDefault<PageHasher>>,
}

/// A hasher for page numbers (small integers, not chosen by a peer: no flooding to resist):
/// one multiplication.
#[derive(Default)]
struct PageHasher(u64);

impl Hasher for PageHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.0 = (self.0 ^ u64::from(n)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

impl Batch {
    fn holds(&self, page: PageNo) -> bool {
        self.pages.contains(&page)
    }
}

/// The page whose memory an effect reads or changes here, if any.
fn touches(e: &Effect) -> Option<PageNo> {
    match *e {
        Effect::Send { msg, .. } if msg.carries_data() => Some(msg.page()),
        Effect::SendStored { msg, .. } => Some(msg.page()),
        Effect::Install { page, .. }
        | Effect::SetAccess { page, .. }
        | Effect::PageIn { page, .. }
        | Effect::WriteBack { page }
        | Effect::Evicted { page, .. } => Some(page),
        _ => None,
    }
}

/// Consecutive runs of `pages` (sorted here) with equal keys: (first, count, key).
fn runs<K: Copy + PartialEq>(mut pages: Vec<(PageNo, K)>) -> Vec<(PageNo, u32, K)> {
    pages.sort_by_key(|&(p, _)| p);
    let mut out: Vec<(PageNo, u32, K)> = Vec::new();
    for (p, k) in pages {
        match out.last_mut() {
            Some((first, count, key)) if *key == k && first.checked_add(*count) == Some(p) => {
                *count += 1
            }
            _ => out.push((p, 1, k)),
        }
    }
    out
}

impl NodeRuntime {
    /// Before a fault on `page` for `access` starts, when this node owns `page` and has paged
    /// it out: if the fault follows the last run, read ahead (see the module docs) and start
    /// the faults of the run, `page`'s first, into `out`; if `page` is the marker of the run
    /// read in the background, bring it in alone and start the background read of the run
    /// after it. Returns whether it did; when not, the caller goes the ordinary way (a fault
    /// on one page, evicting first if need be).
    pub(super) fn read_ahead<'a>(
        &'a self,
        mut st: MutexGuard<'a, State>,
        page: PageNo,
        access: Access,
        out: &mut Outgoing,
    ) -> Result<(MutexGuard<'a, State>, bool), DsmError> {
        // A page whose write-back failed comes from its kept contents, alone.
        let Some(frames) = st.frames.filter(|_| !st.unwritten.contains(page)) else {
            return Ok((st, false));
        };
        let cap = READ_AHEAD_MAX.min((frames / 4).max(1));
        let marker = st.read_ahead.marker == Some(page);
        let last = if marker {
            // The run after the marker is here if the background read it already; if it did
            // not get to it yet, this fault reads it, and the background goes on with the
            // next one.
            self.paged_out_until(&st, page, st.read_ahead.window)
        } else {
            let sequential = st.read_ahead.next == Some(page);
            let window = if sequential {
                (st.read_ahead.window * 2).clamp(2, READ_AHEAD_MAX)
            } else {
                1
            }
            .min(cap);
            self.paged_out_until(&st, page, window)
        };
        if last == page && !marker {
            st.read_ahead = ReadAhead {
                next: page.checked_add(1),
                window: 1,
                marker: None,
            };
            return Ok((st, false));
        }
        match self.read_run(&mut st, page, last, access, out) {
            Ok(0) => Ok((st, false)),
            Ok(started) => {
                // The reader reached the run read in the background: the run after it goes
                // the same way. Or a run read now reached the largest window: the next one
                // is read in the background from now on.
                let window = if marker {
                    st.read_ahead.window
                } else {
                    started
                };
                st.read_ahead = ReadAhead {
                    next: page.checked_add(if marker { 1 } else { started }),
                    window,
                    marker: None,
                };
                if window >= cap.max(2) {
                    let next = page.checked_add(if marker { window } else { started });
                    if let Some(m) = next.filter(|&m| self.mappable(&mut st, m, window)) {
                        st.read_ahead.marker = Some(m);
                        self.timers.read_ahead(m, window);
                    }
                }
                Ok((st, true))
            }
            Err((node, reason)) => {
                self.fail_locked(st, node, reason.clone());
                Err(self.failure_or(node, reason))
            }
        }
    }

    /// Whether the store can map the run of `window` pages from `marker` in place (a file
    /// pager's file): only such a run is read in the background, where bringing it in cannot
    /// wait on a pager or fail but for local memory.
    fn mappable(&self, st: &mut State, marker: PageNo, window: u32) -> bool {
        let len = window as usize * PAGE_SIZE;
        let fits = marker
            .checked_add(window)
            .is_some_and(|end| end <= self.page_count);
        fits && st
            .store
            .as_mut()
            .is_some_and(|s| s.mapped_file(marker, len).is_some())
    }

    /// The last page of the run from `first` (which the caller knows is paged out here) of
    /// at most `window` pages that this node owns, has paged out (not after a failed
    /// write-back: those come from their kept contents), may read and waits for nothing.
    fn paged_out_until(&self, st: &State, first: PageNo, window: u32) -> PageNo {
        let mut last = first;
        while last - first + 1 < window {
            let Some(q) = last.checked_add(1).filter(|&q| q < self.page_count) else {
                break;
            };
            let ok = st
                .coherence
                .page(q)
                .is_some_and(|s| s.paged_out() && s.pending.is_none())
                && st.coherence.allowed(q) >= Access::Read
                && !st.unwritten.contains(q);
            if !ok {
                break;
            }
            last = q;
        }
        last
    }

    /// Bring in the pages `first ..= last` (paged out here): free their frames first, then
    /// start their faults (`first`'s for `access`, the others' for reading) and carry them
    /// out as one batch. Returns how many were started (fewer when frames ran short).
    fn read_run(
        &self,
        st: &mut State,
        first: PageNo,
        last: PageNo,
        access: Access,
        out: &mut Outgoing,
    ) -> Result<u32, (NodeId, String)> {
        let need = last - first + 1;
        let mut batch = Batch::default();
        // A page-in and at most one release per page.
        batch.pages.reserve(2 * need as usize);
        st.batch = Some(batch);
        let r = self.evict_for_run(st, first..=last, need);
        let r = r.and_then(|more| {
            out.messages.extend(more.messages);
            out.served |= more.served;
            let end = first + Self::free_frames(st).min(need);
            let mut q = first;
            while q < end {
                let acc = if q == first { access } else { Access::Read };
                // The stretch from `q` this node may bring in alone, for reading: one
                // protocol step for all of it; else `q`'s own fault.
                let alone = if acc == Access::Read {
                    (q..end)
                        .take_while(|&p| st.coherence.pages_in_alone(p))
                        .count() as u32
                } else {
                    0
                };
                let (effects, count) = if alone > 0 {
                    (st.coherence.page_in_run(q, alone), alone)
                } else {
                    (st.coherence.fault(q, acc), 1)
                };
                let effects = effects.map_err(|e| (self.id, format!("protocol violation: {e}")))?;
                let more = self.run_effects(st, q, effects, None)?;
                self.settle_run(st, q, count);
                out.served |= more.served;
                out.messages.extend(more.messages);
                q += count;
            }
            self.finish_batch(st)?;
            // A stretch whose read from the store failed was undone there (its pages paged
            // out again, nothing installed): their frames are free.
            for p in first..end {
                if let Some(now) = st.coherence.page(p) {
                    st.lru.update(p, &now);
                }
            }
            Ok(end - first)
        });
        st.batch = None;
        r
    }

    /// The clock thread's turn to read ahead (scheduled by [`NodeRuntime::read_ahead`]): the
    /// run after `marker` (the page left out at its start), `window` pages with it, unless
    /// the reader went elsewhere meanwhile. The pages come in as a fault's read-ahead would
    /// bring them, under the state lock.
    pub(super) fn read_ahead_fired(&self, marker: PageNo, window: u32) {
        let mut st = lock(&self.state);
        if st.failed.is_some() || st.shut || st.leaving || st.read_ahead.marker != Some(marker) {
            return;
        }
        let Some(first) = marker.checked_add(1).filter(|&p| p < self.page_count) else {
            return;
        };
        let ready = st
            .coherence
            .page(first)
            .is_some_and(|s| s.paged_out() && s.pending.is_none())
            && st.coherence.allowed(first) >= Access::Read
            && !st.unwritten.contains(first);
        if !ready || window < 2 || !self.mappable(&mut st, marker, window) {
            return;
        }
        let last = self.paged_out_until(&st, first, window - 1);
        let mut out = Outgoing::default();
        match self.read_run(&mut st, first, last, Access::Read, &mut out) {
            Ok(_) => {
                drop(st);
                if let Err((node, reason)) = self.flush(out) {
                    if !lock(&self.state).leaving {
                        self.fail(node, reason);
                    }
                }
            }
            Err((node, reason)) => self.fail_locked(st, node, reason),
        }
    }

    /// Evict until `need` frames are free (or an eviction waits for a peer, or nothing else
    /// can go), never a page of `run`; the evictions' releases join the batch.
    fn evict_for_run(
        &self,
        st: &mut State,
        run: std::ops::RangeInclusive<PageNo>,
        need: u32,
    ) -> Result<Outgoing, (NodeId, String)> {
        let mut out = Outgoing::default();
        while Self::free_frames(st) < need && st.lru.evicting() == 0 {
            let State {
                lru,
                coherence,
                peers,
                ..
            } = &mut *st;
            let Some((victim, class)) = lru.victim(|p| !run.contains(&p) && coherence.evictable(p))
            else {
                break;
            };
            let target = (class == Class::OnlyCopy)
                .then(|| peers.hand_off_target())
                .flatten();
            // A clean page of this node's own with no copy elsewhere and nowhere to hand it
            // off: dropped in one step with the pages after it that go the same way (pages
            // a read-ahead brought in together leave together).
            let alone = if target.is_none() && coherence.drops_alone(victim) {
                let want = need - Self::free_frames(st);
                let coherence = &st.coherence;
                (victim..self.page_count)
                    .take(want.max(1) as usize)
                    .take_while(|p| !run.contains(p) && coherence.drops_alone(*p))
                    .count() as u32
            } else {
                0
            };
            let (effects, count) = if alone > 0 {
                (st.coherence.drop_clean_run(victim, alone), alone)
            } else {
                (st.coherence.evict(victim, target), 1)
            };
            let effects = effects.map_err(|e| (self.id, format!("protocol violation: {e}")))?;
            let more = self.run_effects(st, victim, effects, None)?;
            self.settle_run(st, victim, count);
            out.served |= more.served;
            out.messages.extend(more.messages);
        }
        Ok(out)
    }

    /// After a step on the run of `count` pages from `first` (whose first page
    /// [`NodeRuntime::run_effects`] settled): bring the replacement order up to date with
    /// the others.
    fn settle_run(&self, st: &mut State, first: PageNo, count: u32) {
        for p in first.saturating_add(1)..first.saturating_add(count) {
            if let Some(now) = st.coherence.page(p) {
                st.lru.update(p, &now);
            }
        }
    }

    /// In a batch, before an effect that reads or changes `e`'s page here: when the batch
    /// holds work for that page, carry it out first, so effects keep their order per page.
    pub(super) fn before_effect(&self, st: &mut State, e: &Effect) -> Result<(), (NodeId, String)> {
        let pending = match (&st.batch, touches(e)) {
            (Some(batch), Some(page)) => batch.holds(page),
            _ => false,
        };
        if pending {
            self.finish_batch(st)?;
        }
        Ok(())
    }

    /// Record a page-in or a release in the batch, if one is open; false when none is.
    pub(super) fn batched(&self, st: &mut State, e: &Effect) -> bool {
        let Some(batch) = st.batch.as_mut() else {
            return false;
        };
        match *e {
            Effect::PageIn { page, access } => {
                batch.page_ins.push((page, access));
                batch.pages.insert(page);
            }
            Effect::Evicted { page, .. } => {
                batch.releases.push(page);
                batch.pages.insert(page);
            }
            _ => return false,
        }
        true
    }

    /// Carry out the batch's work: release the evicted frames, a run at a time; read each
    /// run of pages to bring in from the store in one call and install it in one go.
    pub(super) fn finish_batch(&self, st: &mut State) -> Result<(), (NodeId, String)> {
        let Some(batch) = st.batch.as_mut() else {
            return Ok(());
        };
        let releases = std::mem::take(&mut batch.releases);
        let page_ins = std::mem::take(&mut batch.page_ins);
        batch.pages.clear();
        for (first, count, ()) in runs(releases.into_iter().map(|p| (p, ())).collect()) {
            self.pages
                .release_run(first, count)
                .map_err(|e| self.local_memory_failure(first, Access::None, e))?;
        }
        for (first, count, access) in runs(page_ins) {
            let len = count as usize * PAGE_SIZE;
            // Clean pages to read, from a file the store lets the node map: the file's pages
            // themselves, no copy (any later change of them gives them their own memory).
            if access == Access::Read {
                let mapped = match st.store.as_mut().and_then(|s| s.mapped_file(first, len)) {
                    Some((file, offset)) => self
                        .pages
                        .map_file_run(first, count, file, offset)
                        .map_err(|e| self.local_memory_failure(first, access, e))?,
                    None => false,
                };
                if mapped {
                    // (The pages became the most recently used when they started to take
                    // their frames: `Lru::update`, after the step.)
                    self.evictions.paged_in_run(count);
                    continue;
                }
            }
            // Straight from where the store keeps the pages (a file's page cache) when it
            // can: one copy; else through a buffer.
            let mapped = st.store.as_mut().and_then(|s| s.mapped_run(first, len));
            let installed = match mapped {
                Some(bytes) => {
                    self.evictions.paged_in_run(count);
                    self.pages.install_run(first, bytes, access)
                }
                None => {
                    let mut data = vec![0u8; len];
                    if !self.read_run_or_undo(st, first, count, access, &mut data)? {
                        continue;
                    }
                    self.pages.install_run(first, &data, access)
                }
            };
            installed.map_err(|e| self.local_memory_failure(first, access, e))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_group_consecutive_pages_with_equal_keys() {
        let r = runs(vec![
            (5, Access::Read),
            (3, Access::Read),
            (4, Access::Read),
            (6, Access::Write),
            (9, Access::Read),
        ]);
        assert_eq!(
            r,
            vec![
                (3, 3, Access::Read),
                (6, 1, Access::Write),
                (9, 1, Access::Read)
            ]
        );
        assert!(runs::<()>(Vec::new()).is_empty());
    }
}
