//! The node runtime's side of page replacement (see [`crate::replacement`]): making room
//! when a fault needs a frame and none is free, the Δt holds firing, the free-frame
//! broadcast, the backing store, and the counters of what ran.

use std::sync::MutexGuard;
use std::sync::atomic::{AtomicU64, Ordering};

use super::{NodeRuntime, State, lock, wire};
use crate::protocol::message::EvictClass;
use crate::remote::ReplyScheme;
use crate::replacement::{BackingStore, Class, FileStore, UNLIMITED};
use crate::types::{DsmError, EvictionStats, NodeId, PageNo};

/// What page replacement did on this node (see [`EvictionStats`]).
#[derive(Debug, Default)]
pub(super) struct EvictionCounters {
    dropped_copies: AtomicU64,
    passed_ownership: AtomicU64,
    handed_off: AtomicU64,
    written_back: AtomicU64,
    dropped_clean: AtomicU64,
    hand_offs_accepted: AtomicU64,
    hand_offs_refused: AtomicU64,
    paged_in: AtomicU64,
    write_backs_failed: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl EvictionCounters {
    /// An eviction of `class` ended here.
    pub(super) fn evicted(&self, class: EvictClass) {
        bump(match class {
            EvictClass::DroppedCopy => &self.dropped_copies,
            EvictClass::PassedOwnership => &self.passed_ownership,
            EvictClass::HandedOff => &self.handed_off,
            EvictClass::WrittenBack => &self.written_back,
            EvictClass::DroppedClean => &self.dropped_clean,
        });
    }

    /// This node answered a hand-off offered to it.
    pub(super) fn hand_off_answered(&self, accepted: bool) {
        bump(if accepted {
            &self.hand_offs_accepted
        } else {
            &self.hand_offs_refused
        });
    }

    /// A page was read back from the backing store.
    pub(super) fn paged_in(&self) {
        bump(&self.paged_in);
    }

    /// A write of a page to the backing store failed.
    pub(super) fn write_back_failed(&self) {
        bump(&self.write_backs_failed);
    }

    /// A run of `count` pages was read back from the backing store.
    pub(super) fn paged_in_run(&self, count: u32) {
        self.paged_in.fetch_add(count as u64, Ordering::Relaxed);
    }

    pub(super) fn snapshot(&self) -> EvictionStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        EvictionStats {
            dropped_copies: get(&self.dropped_copies),
            passed_ownership: get(&self.passed_ownership),
            handed_off: get(&self.handed_off),
            written_back: get(&self.written_back),
            dropped_clean: get(&self.dropped_clean),
            hand_offs_accepted: get(&self.hand_offs_accepted),
            hand_offs_refused: get(&self.hand_offs_refused),
            paged_in: get(&self.paged_in),
            write_backs_failed: get(&self.write_backs_failed),
        }
    }
}

impl NodeRuntime {
    /// The frames this node has free now ([`UNLIMITED`] without a budget).
    pub(super) fn free_frames(st: &State) -> u32 {
        match st.frames {
            None => UNLIMITED,
            Some(f) => f.saturating_sub(st.lru.resident() + st.unwritten.len()),
        }
    }

    /// A fault on `page` needs a frame and none is free. Unless an eviction is under way
    /// already (its end frees one), start one: the least recently used evictable page of
    /// the cheapest class, an only copy offered to the peer believed to have the most room.
    /// Then wait for something to change (a frame freed, a hold over, a page arrived); the
    /// caller looks again. Fails the node on a local failure, like a fault.
    ///
    /// With nothing to evict, pages whose write-back failed may hold the frames: they are
    /// written again first. When that fails too and no page here could ever be evicted
    /// instead (every frame is such a page), only this fault fails,
    /// with [`DsmError::WriteBackFailed`]; the pages stay, and the next fault tries again.
    pub(super) fn make_room<'a>(
        &'a self,
        mut st: MutexGuard<'a, State>,
        page: PageNo,
    ) -> Result<MutexGuard<'a, State>, DsmError> {
        if st.lru.evicting() == 0 {
            let State {
                lru,
                coherence,
                peers,
                ..
            } = &mut *st;
            if let Some((victim, class)) = lru.victim(|p| coherence.evictable(p)) {
                let target = (class == Class::OnlyCopy)
                    .then(|| peers.hand_off_target())
                    .flatten();
                let effects = coherence
                    .evict(victim, target)
                    .map_err(|e| DsmError::Protocol(e.to_string()))?;
                let out = match self.run_effects(&mut st, victim, effects, None) {
                    Ok(out) => out,
                    Err((node, reason)) => {
                        self.fail_locked(st, node, reason.clone());
                        return Err(DsmError::NodeLost { node, reason });
                    }
                };
                drop(st);
                self.flush_fault(out)?;
                return Ok(lock(&self.state));
            }
            if !st.unwritten.is_empty() {
                let kept = st.unwritten.len();
                let retried = self.retry_unwritten(&mut st);
                if st.unwritten.len() < kept {
                    // Frames are free now.
                    return Ok(st);
                }
                if let Err(e) = retried {
                    if st.lru.resident() == 0 {
                        return Err(e);
                    }
                }
            }
        }
        self.wait_for_page(st, page)
    }

    /// The Δt of `page` is over: the requests that waited for it are handled now, and
    /// threads waiting for a frame look again (the page may be evicted from now on).
    pub(super) fn hold_fired(&self, page: PageNo) {
        let mut st = lock(&self.state);
        if st.failed.is_some() || st.shut {
            return;
        }
        let result = st
            .coherence
            .hold_expired(page)
            .map_err(|e| (self.id, format!("protocol violation: {e}")))
            .and_then(|effects| self.run_effects(&mut st, page, effects, None));
        match result {
            Ok(mut out) => {
                out.served = true;
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

    /// Tell every peer this node's free frames, if they changed since the last time. No
    /// reply is awaited, and a failed send is not acted on here: a broken connection is seen
    /// by its reader, which fails the node.
    pub(super) fn broadcast_free_frames(&self) {
        let (free, targets) = {
            let mut st = lock(&self.state);
            if st.failed.is_some() || st.shut || st.leaving {
                return;
            }
            let free = Self::free_frames(&st);
            if st.last_broadcast == Some(free) {
                return;
            }
            st.last_broadcast = Some(free);
            let targets: Vec<NodeId> = (0..self.nodes as NodeId)
                .filter(|n| *n != self.id && !st.left.contains(n))
                .collect();
            (free, targets)
        };
        let _ = self.endpoint.broadcast(
            &targets,
            wire::free_frames_message(free),
            ReplyScheme::None,
            None,
        );
    }

    /// Write `data` as the stored contents of `page` (the store is made on first use).
    pub(super) fn store_write(
        &self,
        st: &mut State,
        page: PageNo,
        data: &[u8],
    ) -> Result<(), crate::replacement::StoreError> {
        if st.store.is_none() {
            let store: Box<dyn BackingStore> = Box::new(FileStore::create(self.page_count)?);
            st.store = Some(store);
        }
        match st.store.as_mut() {
            Some(store) => store.write_page(page, data),
            None => Ok(()),
        }
    }

    /// Evict `page` from this node now, in the seed's order, and wait until the eviction
    /// ends; an only copy is offered to a peer believed to have room when `hand_off` is true,
    /// else written back. Returns false (and does nothing) when the page cannot be evicted
    /// now: not held here, inside its Δt hold, or something under way for it. The runtime
    /// evicts by itself under a memory budget; this is for benchmarks and tests, which read
    /// the class that ran in [`NodeRuntime::eviction_stats`].
    pub fn evict_page(&self, page: PageNo, hand_off: bool) -> Result<bool, DsmError> {
        self.check_page(page)?;
        let mut st = lock(&self.state);
        Self::refused(&st)?;
        if !st.coherence.evictable(page) {
            return Ok(false);
        }
        let target = if hand_off {
            st.peers.hand_off_target()
        } else {
            None
        };
        let effects = st
            .coherence
            .evict(page, target)
            .map_err(|e| DsmError::Protocol(e.to_string()))?;
        let out = match self.run_effects(&mut st, page, effects, None) {
            Ok(out) => out,
            Err((node, reason)) => {
                self.fail_locked(st, node, reason.clone());
                return Err(DsmError::NodeLost { node, reason });
            }
        };
        drop(st);
        self.flush_fault(out)?;
        let mut st = lock(&self.state);
        while Self::page_state(&st, page).evicting {
            Self::refused(&st)?;
            st = self.wait_for_page(st, page)?;
        }
        // Gone from the protocol, but not yet in the store: say so.
        match st.unwritten.get(page) {
            Some(kept) => Err(kept.error(page)),
            None => Ok(true),
        }
    }

    /// The pages of the region that take a frame here now (held, on their way, or being
    /// evicted); at most the memory budget's frames.
    pub fn frames_in_use(&self) -> u32 {
        lock(&self.state).lru.resident()
    }

    /// Use `store` as this node's backing store (a pager's, see [`crate::pager`]) instead of
    /// the default file. Only for a node with a memory budget (its pages start in the store),
    /// before any page moved ([`crate::cluster::Dsm::join_with_store`] calls it before the
    /// cluster's first barrier).
    pub fn set_store(&self, store: Box<dyn BackingStore>) -> Result<(), DsmError> {
        let mut st = lock(&self.state);
        if st.frames.is_none() {
            return Err(DsmError::Config(
                "a pager needs a memory budget on every node (the pages start in the store)".into(),
            ));
        }
        if st.lru.resident() != 0 || st.store.is_some() {
            return Err(DsmError::Config(
                "the backing store can only be set before any page moved".into(),
            ));
        }
        st.store = Some(store);
        Ok(())
    }

    /// Leaving: when the store outlives the node (a pager's file), write every page this
    /// node owns and holds, unless it is clean (unchanged since it came from the store),
    /// into it and make it durable, so that the writes of the run reach
    /// the file. Called after the final barrier: no page changes hands any more.
    pub(super) fn clean_into_store(&self) -> Result<(), DsmError> {
        let mut st = lock(&self.state);
        if !st.store.as_ref().is_some_and(|s| s.keeps_pages()) {
            return Ok(());
        }
        // The pages whose write-back failed first: the store holds older contents of them.
        self.retry_unwritten(&mut st)?;
        let mut data = vec![0u8; crate::types::PAGE_SIZE];
        for page in 0..self.page_count {
            // A clean page is the store's copy already: nothing to write.
            let dirty = st
                .coherence
                .page(page)
                .is_some_and(|p| p.owner && p.access >= crate::types::Access::Read && !p.clean);
            if dirty {
                self.pages.read_page(page, &mut data);
                if let Err(e) = self.store_write(&mut st, page, &data) {
                    self.evictions.write_back_failed();
                    return Err(DsmError::WriteBackFailed {
                        page,
                        reason: e.to_string(),
                    });
                }
            }
        }
        if let Some(store) = st.store.as_mut() {
            store.sync().map_err(super::pager::store_error)?;
        }
        Ok(())
    }

    /// A pager's `clean_request` for `pages`: every page of the range this node owns and
    /// changed since it came from the store is written back (`data_write`) and kept,
    /// read-only until the next local write; then the store is made durable. Pages owned by
    /// other nodes are theirs to clean (each node's pager commands its own node). Returns
    /// how many pages were written. Pages whose write-back failed before are written again
    /// first; a page of the range whose write fails stays in memory, and the clean fails
    /// with [`DsmError::WriteBackFailed`] (a later clean writes it).
    pub fn clean_request(&self, pages: std::ops::Range<PageNo>) -> Result<u32, DsmError> {
        if !pages.is_empty() {
            self.check_page(pages.end - 1)?;
        }
        let mut st = lock(&self.state);
        Self::refused(&st)?;
        // (A failure shows below, for the pages of the range.)
        let _ = self.retry_unwritten(&mut st);
        let mut written = 0;
        for page in pages.clone() {
            if !st.coherence.cleanable(page) {
                continue;
            }
            let effects = st
                .coherence
                .clean(page)
                .map_err(|e| DsmError::Protocol(e.to_string()))?;
            if let Err((node, reason)) = self.run_effects(&mut st, page, effects, None) {
                self.fail_locked(st, node, reason.clone());
                return Err(DsmError::NodeLost { node, reason });
            }
            written += 1;
        }
        if let Some(page) = st.unwritten.pages().find(|p| pages.contains(p)) {
            return Err(st
                .unwritten
                .get(page)
                .map_or(DsmError::ShutDown, |kept| kept.error(page)));
        }
        if let Some(store) = st.store.as_mut() {
            store.sync().map_err(super::pager::store_error)?;
        }
        Ok(written)
    }

    /// A pager's `flush_request` for `pages`: this node gives up every page of the range it
    /// holds, in the seed's order (a copy dropped, ownership passed on, an only copy written
    /// back when it changed or dropped when clean, never handed off), waiting for each.
    /// Pages inside their Δt hold or with a fault under way stay. Returns how many went.
    pub fn flush_request(&self, pages: std::ops::Range<PageNo>) -> Result<u32, DsmError> {
        let mut flushed = 0;
        for page in pages {
            if self.evict_page(page, false)? {
                flushed += 1;
            }
        }
        Ok(flushed)
    }

    /// What page replacement did here so far.
    pub fn eviction_stats(&self) -> EvictionStats {
        self.evictions.snapshot()
    }
}
