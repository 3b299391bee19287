//! Read-ahead from the backing store (Mach's clustered `data_request`): a fault on a page
//! this node owns and has paged out, right after the page before it came in the same way,
//! brings in a run of the following paged-out pages too, and the run's window doubles with
//! each such sequential fault (up to [`READ_AHEAD_MAX`] pages, and a quarter of the frames).
//! A fault that does not follow the last run reads one page, and the window starts again.
//!
//! The protocol still sees one ordinary fault per page (the page-ins it asks for are the
//! same), but the runtime carries them out as a batch: the frames the run needs are freed
//! first (evictions, in the seed's order), the contents of each stretch of consecutive pages
//! come from the store in one call (in place when it keeps them mapped, as a file pager
//! does: [`crate::replacement::BackingStore::mapped_run`]; else
//! [`crate::replacement::BackingStore::read_run`], a pager's `data_request` for the run),
//! and go into the node's memory and become accessible in one go
//! ([`crate::LocalPages::install_run`]); the frames evicted for it are released in runs
//! too. All of it under the state lock, before any thread can see a page of the run.
//!
//! A hint, like a prefetch: the pages read ahead are ordinary read copies of pages this node
//! owns (the cheapest to evict after copies), so a guess that was wrong costs their frames
//! until the next eviction.

use std::sync::MutexGuard;

use super::{NodeRuntime, Outgoing, State};
use crate::protocol::Effect;
use crate::replacement::Class;
use crate::types::{Access, DsmError, NodeId, PAGE_SIZE, PageNo};

/// The most pages one read-ahead brings in (1 MiB).
pub const READ_AHEAD_MAX: u32 = 256;

/// Where the last read-ahead ended, and how far the next one reaches.
#[derive(Debug, Default)]
pub(super) struct ReadAhead {
    /// The page after the last run paged in for a fault here.
    next: Option<PageNo>,
    /// The pages the last run brought in.
    window: u32,
}

/// Page-ins and releases collected while a read-ahead runs, carried out together
/// ([`NodeRuntime::finish_batch`]).
#[derive(Debug, Default)]
pub(super) struct Batch {
    page_ins: Vec<(PageNo, Access)>,
    releases: Vec<PageNo>,
}

impl Batch {
    fn holds(&self, page: PageNo) -> bool {
        self.page_ins.iter().any(|&(p, _)| p == page) || self.releases.contains(&page)
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
    /// the faults of the run, `page`'s first, into `out`. Returns whether it did; when not,
    /// the caller goes the ordinary way (a fault on one page, evicting first if need be).
    pub(super) fn read_ahead<'a>(
        &'a self,
        mut st: MutexGuard<'a, State>,
        page: PageNo,
        access: Access,
        out: &mut Outgoing,
    ) -> Result<(MutexGuard<'a, State>, bool), DsmError> {
        let Some(frames) = st.frames else {
            return Ok((st, false));
        };
        let sequential = st.read_ahead.next == Some(page);
        let window = if sequential {
            (st.read_ahead.window * 2).clamp(2, READ_AHEAD_MAX)
        } else {
            1
        }
        .min((frames / 4).max(1));
        let mut last = page;
        while last - page + 1 < window {
            let Some(q) = last.checked_add(1).filter(|&q| q < self.page_count) else {
                break;
            };
            let ok = st
                .coherence
                .page(q)
                .is_some_and(|s| s.paged_out() && s.pending.is_none())
                && st.coherence.allowed(q) >= Access::Read;
            if !ok {
                break;
            }
            last = q;
        }
        if last == page {
            st.read_ahead = ReadAhead {
                next: page.checked_add(1),
                window: 1,
            };
            return Ok((st, false));
        }
        let need = last - page + 1;
        st.batch = Some(Batch::default());
        let r = self.evict_for_run(&mut st, page..=last, need);
        let r = r.and_then(|more| {
            out.messages.extend(more.messages);
            let k = Self::free_frames(&st).min(need);
            let mut started = 0;
            for q in page..page + k {
                let acc = if q == page { access } else { Access::Read };
                let effects = st
                    .coherence
                    .fault(q, acc)
                    .map_err(|e| (self.id, format!("protocol violation: {e}")))?;
                let more = self.run_effects(&mut st, q, effects, None)?;
                out.served |= more.served;
                out.messages.extend(more.messages);
                started += 1;
            }
            self.finish_batch(&mut st)?;
            Ok(started)
        });
        st.batch = None;
        match r {
            Ok(0) => Ok((st, false)),
            Ok(started) => {
                st.read_ahead = ReadAhead {
                    next: page.checked_add(started),
                    window: started,
                };
                Ok((st, true))
            }
            Err((node, reason)) => {
                self.fail_locked(st, node, reason.clone());
                Err(self.failure_or(node, reason))
            }
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
            let effects = coherence
                .evict(victim, target)
                .map_err(|e| (self.id, format!("protocol violation: {e}")))?;
            let more = self.run_effects(st, victim, effects, None)?;
            out.served |= more.served;
            out.messages.extend(more.messages);
        }
        Ok(out)
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
            Effect::PageIn { page, access } => batch.page_ins.push((page, access)),
            Effect::Evicted { page, .. } => batch.releases.push(page),
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
        for (first, count, ()) in runs(releases.into_iter().map(|p| (p, ())).collect()) {
            self.pages
                .release_run(first, count)
                .map_err(|e| self.local_memory_failure(first, Access::None, e))?;
        }
        for (first, count, access) in runs(page_ins) {
            let len = count as usize * PAGE_SIZE;
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
                    self.store_read_run(st, first, &mut data)?;
                    self.pages.install_run(first, &data, access)
                }
            };
            installed.map_err(|e| self.local_memory_failure(first, access, e))?;
            for p in first..first + count {
                st.lru.touch(p);
            }
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
