//! The node runtime's side of an external pager (see [`crate::pager`]): the pager's
//! commands `data_lock` and `cache` (and the release that `cache` decides on), the
//! `data_unlock` a fault sends it, and what a pager that is gone or does not answer does to
//! the node.

use std::ops::Range;

use super::{NodeRuntime, Outgoing, State, lock};
use crate::replacement::StoreError;
use crate::types::{Access, DsmError, NodeId, PageNo};

/// A pager call that failed because the pager is gone or silent, kept so that every fault
/// and operation of the node reports it by name.
#[derive(Clone, Debug)]
pub(super) enum PagerFailure {
    /// The pager is gone.
    Lost {
        /// Its name.
        pager: String,
        /// What was seen.
        reason: String,
    },
    /// The pager did not answer in time.
    Timeout {
        /// Its name.
        pager: String,
        /// How long the node waited.
        after: std::time::Duration,
    },
}

impl PagerFailure {
    pub(super) fn error(&self) -> DsmError {
        match self.clone() {
            PagerFailure::Lost { pager, reason } => DsmError::PagerLost { pager, reason },
            PagerFailure::Timeout { pager, after } => DsmError::PagerTimeout { pager, after },
        }
    }
}

impl NodeRuntime {
    /// A backing-store call failed with `e`: the failure that ends the node, as
    /// `(node, reason)`. A pager that is gone or silent is remembered, so the faults waiting
    /// here (and every later operation) fail with [`DsmError::PagerLost`] or
    /// [`DsmError::PagerTimeout`] naming it; the peers see this node lost, with the reason.
    pub(super) fn store_failed(&self, st: &mut State, e: StoreError) -> (NodeId, String) {
        let failure = match &e {
            StoreError::PagerLost { pager, reason } => Some(PagerFailure::Lost {
                pager: pager.clone(),
                reason: reason.clone(),
            }),
            StoreError::PagerTimeout { pager, after } => Some(PagerFailure::Timeout {
                pager: pager.clone(),
                after: *after,
            }),
            _ => None,
        };
        if st.pager_failure.is_none() {
            st.pager_failure = failure;
        }
        (self.id, format!("this node's backing store failed: {e}"))
    }

    /// Carry out a protocol's [`crate::protocol::Effect::DataUnlock`]: ask the pager for
    /// `access` to `page`; its answer is the page's lock from now on.
    pub(super) fn store_unlock(
        &self,
        st: &mut State,
        page: PageNo,
        access: Access,
    ) -> Result<Access, (NodeId, String)> {
        match st.store.as_mut() {
            Some(store) => match store.data_unlock(page, access) {
                Ok(lock) => Ok(lock),
                Err(e) => Err(self.store_failed(st, e)),
            },
            // No pager: nothing ever locked a page but the application, which may unlock.
            None => Ok(Access::Write),
        }
    }

    /// The pager's `pager_data_lock` for `pages` at this node: local threads get at most
    /// `lock` access to them from now on (access above it drops now; the contents stay, no
    /// write is lost). A fault that wants more asks the pager first (`data_unlock`, see
    /// [`crate::pager::Pager::data_unlock`]); the pager's answer serves or refuses it
    /// ([`DsmError::Denied`]). The protocol keeps serving the pages to other nodes: a lock is
    /// this node's. Each node's pager locks its own node.
    pub fn data_lock(&self, pages: Range<PageNo>, lock_to: Access) -> Result<(), DsmError> {
        if !pages.is_empty() {
            self.check_page(pages.end - 1)?;
        }
        let mut st = lock(&self.state);
        Self::refused(&st)?;
        let mut out = Outgoing::default();
        for page in pages {
            let effects = st.coherence.data_lock(page, 1, lock_to);
            match self.run_effects(&mut st, page, effects, None) {
                Ok(more) => {
                    out.served |= more.served;
                    out.messages.extend(more.messages);
                }
                Err((node, reason)) => {
                    self.fail_locked(st, node, reason.clone());
                    return Err(self.failure_or(node, reason));
                }
            }
        }
        drop(st);
        self.flush_fault(out)
    }

    /// The pager's `pager_cache`: whether this node may keep the pages after the application
    /// releases them ([`NodeRuntime::release`]). On (the default): they stay resident, and
    /// an access that finds them still current costs nothing. Off: a release gives them up
    /// at once, so their frames are free and their writes reach the pager.
    pub fn cache(&self, keep: bool) {
        lock(&self.state).cache = keep;
    }

    /// The application is done with `pages` for now (in Mach, the memory object's mapping
    /// is released). With the pager's cache on, nothing happens; with it off, the pages go
    /// as with [`NodeRuntime::flush_request`] (a copy dropped, ownership passed on, an only
    /// copy written back when dirty, dropped when clean). Returns how many pages went.
    pub fn release(&self, pages: Range<PageNo>) -> Result<u32, DsmError> {
        if lock(&self.state).cache {
            return Ok(0);
        }
        self.flush_request(pages)
    }
}

/// A backing-store failure outside a protocol step (the node goes on): the pager's own
/// errors by name, the rest as a configuration error.
pub(super) fn store_error(e: StoreError) -> DsmError {
    match e {
        StoreError::PagerLost { pager, reason } => DsmError::PagerLost { pager, reason },
        StoreError::PagerTimeout { pager, after } => DsmError::PagerTimeout { pager, after },
        other => DsmError::Config(format!("this node's backing store failed: {other}")),
    }
}
