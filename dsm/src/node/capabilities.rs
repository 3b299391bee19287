//! The node runtime's side of capabilities across nodes (the protocol's part is
//! [`crate::protocol::rights`]; the user-facing API is [`crate::capability`]): capability
//! rounds started here and waited for, capabilities delivered here, faults the protocol
//! refused, and the local withdrawal and return of access when guards come and go.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::MutexGuard;
use std::time::{Duration, Instant};

use super::{NodeRuntime, Outgoing, RECHECK, State, lock};
use crate::protocol::rights::{CapId, CapRecord};
use crate::protocol::{Effect, ProtocolError, RightsTable};
use crate::types::{Access, DsmError, PageNo};

/// What the runtime remembers about capabilities between protocol steps.
#[derive(Default)]
pub(super) struct CapState {
    /// Faults the protocol refused: page → the access refused (until a new fault starts).
    denied: HashMap<PageNo, Access>,
    /// Capability rounds this node started that every node acknowledged.
    done: HashSet<CapId>,
    /// Capabilities delivered to this node, not yet taken by the application.
    inbox: VecDeque<CapId>,
}

impl CapState {
    /// Take note of a capability effect of a protocol step; returns whether it was one.
    pub(super) fn absorb(&mut self, e: &Effect) -> bool {
        match *e {
            Effect::Denied { page, access } => {
                self.denied.insert(page, access);
            }
            Effect::CapDone { cap } => {
                self.done.insert(cap);
            }
            Effect::Received { cap } => self.inbox.push_back(cap),
            _ => return false,
        }
        true
    }

    /// Whether a fault for `access` on `page` was refused (a refusal of less access does not
    /// answer it: that fault asks again).
    pub(super) fn refused(&self, page: PageNo, access: Access) -> bool {
        self.denied.get(&page).is_some_and(|&d| d <= access)
    }

    /// A new fault on `page` starts: an older refusal does not answer it.
    pub(super) fn fault_starts(&mut self, page: PageNo) {
        self.denied.remove(&page);
    }
}

fn protocol(e: ProtocolError) -> DsmError {
    DsmError::Protocol(e.to_string())
}

impl NodeRuntime {
    /// Run one local protocol step on the state, carry out its effects, send its messages.
    fn capability_step(
        &self,
        page: PageNo,
        step: impl FnOnce(&mut State) -> Result<Vec<Effect>, ProtocolError>,
    ) -> Result<(), DsmError> {
        let mut st = lock(&self.state);
        Self::refused(&st)?;
        let effects = step(&mut st).map_err(protocol)?;
        let out: Outgoing = match self.run_effects(&mut st, page, effects, None) {
            Ok(out) => out,
            Err((node, reason)) => {
                self.fail_locked(st, node, reason.clone());
                return Err(DsmError::NodeLost { node, reason });
            }
        };
        drop(st);
        self.flush_fault(out)
    }

    /// Wait until the capability round of `cap` that this node started is acknowledged by
    /// every node.
    fn wait_round(&self, cap: CapId) -> Result<(), DsmError> {
        let mut st = lock(&self.state);
        loop {
            Self::refused(&st)?;
            if st.caps.done.remove(&cap) {
                return Ok(());
            }
            st = self.wait_for_capability(st);
        }
    }

    /// Sleep until a protocol step wakes the waiting threads (or the failure re-check).
    fn wait_for_capability<'a>(&'a self, st: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        self.served
            .wait_timeout(st, RECHECK)
            .unwrap_or_else(|p| p.into_inner())
            .0
    }

    /// Make capability `record` (mint it, or derive it from one this node holds with the
    /// grant right), record it at every node, and, when it is for another node, deliver it
    /// there. Returns once every node recorded it.
    pub fn share_capability(&self, record: CapRecord) -> Result<(), DsmError> {
        self.capability_step(record.first, |st| st.coherence.share(record))?;
        self.wait_round(record.id)
    }

    /// Revoke capability `cap` (minted here) and everything derived from it, at every node.
    /// Returns once every node fenced its pages and acknowledged.
    pub fn revoke_capability(&self, cap: CapId) -> Result<(), DsmError> {
        let first = self.with_rights(|t| t.get(cap).map_or(0, |(r, _)| r.first));
        self.capability_step(first, |st| st.coherence.revoke(cap))?;
        self.wait_round(cap)
    }

    /// Restrict capability `cap`, which this node holds, to `rights` (a subset of its rights)
    /// at every node: this node's access to its pages drops at once, and once this returns
    /// every page's manager (or owner) serves this node through it only what `rights` allow.
    pub fn restrict_capability(&self, cap: CapId, rights: u8) -> Result<(), DsmError> {
        let first = self.with_rights(|t| t.get(cap).map_or(0, |(r, _)| r.first));
        self.capability_step(first, |st| st.coherence.restrict(cap, rights))?;
        self.wait_round(cap)
    }

    /// The next capability delivered to this node, waiting up to `timeout` for one.
    pub fn receive_capability(&self, timeout: Duration) -> Result<Option<CapRecord>, DsmError> {
        let deadline = Instant::now() + timeout;
        let mut st = lock(&self.state);
        loop {
            Self::refused(&st)?;
            if let Some(id) = st.caps.inbox.pop_front() {
                if let Some((rec, _)) = st.coherence.rights().get(id) {
                    return Ok(Some(rec));
                }
                continue;
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            st = self.wait_for_capability(st);
        }
    }

    /// What the capability table of this node says, read by `f`.
    pub fn with_rights<R>(&self, f: impl FnOnce(&RightsTable) -> R) -> R {
        f(lock(&self.state).coherence.rights())
    }

    /// This node's threads are done with pages `first .. first + pages` for now: local access
    /// ends (the contents stay, fenced, until the protocol moves them).
    pub fn withdraw_pages(&self, first: PageNo, pages: u32) -> Result<(), DsmError> {
        self.capability_step(first, |st| Ok(st.coherence.withdraw(first, pages)))
    }

    /// Give back, without messages, read access to the pages of `first .. first + pages`
    /// whose current contents are still here (fenced by [`NodeRuntime::withdraw_pages`]) and
    /// that the rights allow reading.
    pub fn return_pages(&self, first: PageNo, pages: u32) -> Result<(), DsmError> {
        self.capability_step(first, |st| Ok(st.coherence.unfence(first, pages)))
    }
}
