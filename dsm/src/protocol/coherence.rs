//! One node's coherence state machine: its page table (local access, ownership, pending
//! fault) and, for the pages it manages, the manager entries. Messages and faults go in,
//! [`Effect`]s come out; there is no I/O, no clock and no randomness, so a model checker can
//! drive the same code as the runtime.

use std::fmt;

use super::dynamic::{DynamicEntry, PageCtx};
use super::manager::{ManagerEntry, Want};
use super::message::{Effect, EvictClass, EvictOutcome, Message};
use super::rights::{CapId, CapRecord, CapRound, RightsTable};
use crate::types::{Access, ManagerKind, NodeId, PageNo};

mod pager_lock;
mod runs;

/// The largest cluster the protocol supports (copysets are 64-bit masks).
pub const MAX_NODES: usize = 64;

/// A message the protocol does not allow in the current state (a bug or a bad peer).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProtocolError(pub String);

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ProtocolError {}

/// What a node knows about one page locally.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PageState {
    /// What local threads may do.
    pub access: Access,
    /// Whether this node owns the page.
    pub owner: bool,
    /// The access this node has asked for and not yet received.
    pub pending: Option<Access>,
    /// An eviction of the page is under way here: the node keeps its frame (and the
    /// contents in it) until the eviction ends; local faults on the page wait for it.
    pub evicting: bool,
    /// The Δt hold: the page arrived here (or its access went up) less than Δt ago; requests
    /// that would take it away or lower its access wait until [`Coherence::hold_expired`].
    pub held: bool,
    /// The page's contents are here (this node owns it, or holds a copy that the copyset
    /// lists) but its rights do not let local threads at them: a capability was revoked or a
    /// range minted while it was here, or a grant came after that. The contents stay (no
    /// write is lost); the next grant, forward or invalidation of the page ends the fence.
    pub fenced: bool,
    /// The contents here are the backing store's copy, unchanged: the page came in from the
    /// store ([`Effect::PageIn`]) for reading and has not been writable here since. An only
    /// copy that is clean is dropped at eviction instead of written back (Mach's pager sees
    /// a `data_write` only for a page that was written). Cleared by anything that may change
    /// the contents here or take them away (write access, an install, no access, the end of
    /// an eviction), so it errs only towards writing a page back.
    pub clean: bool,
}

impl PageState {
    /// A page this node has never seen: no access, not owned, nothing under way.
    pub const ABSENT: PageState = PageState {
        access: Access::None,
        owner: false,
        pending: None,
        evicting: false,
        held: false,
        fenced: false,
        clean: false,
    };

    /// Whether the page takes a frame here: it is readable, being evicted, or its contents
    /// are on their way (a request for a page not held here).
    pub fn uses_frame(&self) -> bool {
        self.access >= Access::Read || self.evicting || self.pending.is_some() || self.fenced
    }

    /// Whether this node owns the page and has written it back to the backing store.
    pub fn paged_out(&self) -> bool {
        self.owner && self.access == Access::None && !self.evicting && !self.fenced
    }
}

/// A page-in of an owned page failed: it is paged out again (no access, its contents only
/// in the store), as before the fault.
pub(super) fn undo_page_in(page: PageNo, st: &mut PageState, out: &mut Vec<Effect>) {
    st.fenced = false;
    st.clean = false;
    if st.access != Access::None {
        st.access = Access::None;
        out.push(Effect::SetAccess {
            page,
            access: Access::None,
        });
    }
}

/// One node's half of the coherence protocol.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Coherence {
    id: NodeId,
    nodes: u16,
    kind: ManagerKind,
    pages: Vec<PageState>,
    /// Manager entries of the pages this node manages, indexed by page number
    /// (`None` for pages managed elsewhere).
    managed: Vec<Option<ManagerEntry>>,
    /// Dynamic manager: this node's probable owner, copyset and queue of every page
    /// (empty for the other managers).
    dynamic: Vec<DynamicEntry>,
    /// The most pages this node may hold at once (`None`: no limit); a hand-off is refused
    /// when they are all in use.
    frames: Option<u32>,
    /// Frames of the budget the node's runtime holds outside the protocol: the contents of
    /// pages whose write-back failed, kept until written ([`super::Unwritten`]).
    reserved: u32,
    /// Whether pages are held for Δt after they arrive ([`Coherence::set_hold`]).
    hold: bool,
    /// Per page: the messages that arrived while it was held, in arrival order.
    deferred: Vec<Vec<(NodeId, Message)>>,
    /// The capabilities this node knows of ([`super::rights`]).
    rights: RightsTable,
    /// The capability rounds this node started and that are not acknowledged by all yet.
    rounds: Vec<CapRound>,
    /// Per page: the most access the pager lets local threads have here (its `data_lock`;
    /// Write: not locked). See [`Coherence::data_lock`].
    locks: Vec<Access>,
    /// Per page: the access a `data_unlock` sent to the pager asks for, until the pager
    /// answers with a `data_lock`.
    unlocking: Vec<Option<Access>>,
}

impl Coherence {
    /// The state at start of node `id` in a cluster of `nodes`, with `pages` pages: node 0
    /// owns every page (writable, contents zero).
    pub fn new(
        id: NodeId,
        nodes: usize,
        pages: u32,
        kind: ManagerKind,
    ) -> Result<Coherence, ProtocolError> {
        if nodes == 0 || nodes > MAX_NODES || id as usize >= nodes {
            return Err(ProtocolError(format!(
                "node {id} of {nodes}: the protocol supports 1 to {MAX_NODES} nodes"
            )));
        }
        let initial = PageState {
            access: if id == 0 { Access::Write } else { Access::None },
            owner: id == 0,
            ..PageState::ABSENT
        };
        let mut c = Coherence {
            id,
            nodes: nodes as u16,
            kind,
            pages: vec![initial; pages as usize],
            managed: Vec::new(),
            dynamic: Vec::new(),
            frames: None,
            reserved: 0,
            hold: false,
            deferred: vec![Vec::new(); pages as usize],
            rights: RightsTable::default(),
            rounds: Vec::new(),
            locks: vec![Access::Write; pages as usize],
            unlocking: vec![None; pages as usize],
        };
        if kind == ManagerKind::Dynamic {
            c.dynamic = vec![DynamicEntry::new(); pages as usize];
        } else {
            c.managed = (0..pages)
                .map(|p| (c.manager_of(p) == id).then(|| ManagerEntry::new(0)))
                .collect();
        }
        Ok(c)
    }

    /// Like [`Coherence::new`], for a node that may hold at most `frames` pages at once:
    /// every page starts paged out (in the backing store, zero), owned by node 0.
    pub fn with_budget(
        id: NodeId,
        nodes: usize,
        pages: u32,
        kind: ManagerKind,
        frames: u32,
    ) -> Result<Coherence, ProtocolError> {
        let mut c = Coherence::new(id, nodes, pages, kind)?;
        c.frames = Some(frames);
        for st in &mut c.pages {
            st.access = Access::None;
        }
        Ok(c)
    }

    /// Turn the Δt hold on or off: with it on, a page whose access goes up here is held
    /// ([`Effect::Hold`]: the runtime starts a Δt timer and calls
    /// [`Coherence::hold_expired`] when it fires); messages that would take a held page away
    /// or lower its access (forwards, invalidations, requests reaching its owner) wait until
    /// then, so the local threads can make many references without interference.
    pub fn set_hold(&mut self, on: bool) {
        self.hold = on;
    }

    /// The Δt timer of `page` fired: the page is no longer held, and the messages that
    /// waited for it are handled now, in arrival order.
    pub fn hold_expired(&mut self, page: PageNo) -> Result<Vec<Effect>, ProtocolError> {
        let st = self.state(page)?;
        if !st.held {
            return Ok(Vec::new());
        }
        st.held = false;
        let waiting = std::mem::take(&mut self.deferred[page as usize]);
        let mut out = Vec::new();
        for (from, msg) in waiting {
            out.extend(self.handle(from, msg)?);
        }
        Ok(out)
    }

    /// Whether a message must wait for the hold of its page to expire here.
    fn waits_for_hold(&self, msg: &Message) -> bool {
        let me = self.id;
        let Some(st) = self.pages.get(msg.page() as usize) else {
            return false;
        };
        st.held
            && match *msg {
                Message::ReadForward { to, .. } | Message::WriteForward { to, .. } => to != me,
                Message::Invalidate { .. } => true,
                Message::Request {
                    requester, access, ..
                } => st.owner && requester != me && access != Access::None,
                _ => false,
            }
    }

    /// With the hold on: after a step that raised the access of `page`, hold it.
    fn hold_if_raised(&mut self, page: PageNo, before: Access, out: &mut Vec<Effect>) {
        if !self.hold {
            return;
        }
        if let Some(st) = self.pages.get_mut(page as usize) {
            if st.access > before && !st.held {
                st.held = true;
                out.push(Effect::Hold { page });
            }
        }
    }

    /// Keep [`PageState::clean`] in step with a step's effects, in their order, and drop the
    /// write-back of a page that is clean (its eviction ends as [`EvictClass::DroppedClean`]).
    fn track_clean(&mut self, out: &mut Vec<Effect>) {
        let mut skipped: Vec<PageNo> = Vec::new();
        let mut kept = Vec::with_capacity(out.len());
        for mut e in out.drain(..) {
            let (page, clean) = match &mut e {
                Effect::PageIn { page, access } => (*page, Some(*access == Access::Read)),
                Effect::Install { page, .. }
                | Effect::SetAccess {
                    page,
                    access: Access::None | Access::Write,
                } => (*page, Some(false)),
                Effect::WriteBack { page } => {
                    if self.pages.get(*page as usize).is_some_and(|st| st.clean) {
                        skipped.push(*page);
                        continue;
                    }
                    (*page, None)
                }
                Effect::Evicted { page, class } => {
                    if *class == EvictClass::WrittenBack && skipped.contains(page) {
                        *class = EvictClass::DroppedClean;
                    }
                    (*page, Some(false))
                }
                _ => (0, None),
            };
            if let (Some(clean), Some(st)) = (clean, self.pages.get_mut(page as usize)) {
                st.clean = clean;
            }
            kept.push(e);
        }
        *out = kept;
    }

    /// The frame budget (`None`: no limit).
    pub fn frames(&self) -> Option<u32> {
        self.frames
    }

    /// How many pages take a frame here now ([`PageState::uses_frame`]).
    pub fn frames_in_use(&self) -> u32 {
        self.pages.iter().filter(|s| s.uses_frame()).count() as u32
    }

    /// Whether a page may come in without an eviction first.
    pub fn has_free_frame(&self) -> bool {
        self.frames
            .is_none_or(|f| self.frames_in_use() + self.reserved < f)
    }

    /// Set the frames of the budget that the node holds outside the protocol: the pages
    /// whose write-back failed, whose contents it keeps until a write of them reaches the
    /// store ([`super::Unwritten`]). A hand-off is refused when they and the pages here
    /// take every frame.
    pub fn set_reserved(&mut self, frames: u32) {
        self.reserved = frames;
    }

    /// The frames set aside by [`Coherence::set_reserved`].
    pub fn reserved(&self) -> u32 {
        self.reserved
    }

    /// Whether [`Coherence::evict`] may start on `page` now: it is held here (readable, or
    /// fenced: its contents are here though its rights keep local threads off them), nothing
    /// is under way for it here, and (dynamic owner) no request for it is being served.
    pub fn evictable(&self, page: PageNo) -> bool {
        let Some(st) = self.pages.get(page as usize) else {
            return false;
        };
        let idle_owner = !st.owner
            || self
                .dynamic
                .get(page as usize)
                .is_none_or(|e| e.busy.is_none() && e.queue.is_empty());
        (st.access >= Access::Read || st.fenced)
            && st.pending.is_none()
            && !st.evicting
            && !st.held
            && idle_owner
    }

    /// Give up this node's frame of `page`, in the seed's order: a read copy is dropped
    /// (the copyset's keeper is told first); an owned page with copies elsewhere passes its
    /// ownership to one of them; an only copy goes to `hand_off` (a node believed to have a
    /// free frame) or, when there is none or it refuses, back to the backing store. Central
    /// and fixed managers decide with the manager, which knows the copyset; the dynamic
    /// owner knows it and starts at once. The frame is free at [`Effect::Evicted`]; an
    /// eviction that ends with [`Effect::Served`] and no `Evicted` freed nothing.
    pub fn evict(
        &mut self,
        page: PageNo,
        hand_off: Option<NodeId>,
    ) -> Result<Vec<Effect>, ProtocolError> {
        if !self.evictable(page) {
            return Err(ProtocolError(format!(
                "page {page} cannot be evicted at node {} now",
                self.id
            )));
        }
        if hand_off.is_some_and(|t| t >= self.nodes) {
            return Err(ProtocolError(format!(
                "hand-off to unknown node {hand_off:?}"
            )));
        }
        // The contents go only to a node whose rights allow the access that travels with
        // them; else the page is written back (a protected page's bytes never reach a node
        // without the right to them).
        let access = self.state(page)?.access;
        let hand_off = hand_off.filter(|&t| self.rights.allowed(t, page) >= access);
        let manager = self.manager_of(page);
        let mut out = Vec::new();
        if self.kind == ManagerKind::Dynamic {
            self.dynamic_ctx(page, &mut out)?
                .evict(hand_off)
                .map_err(ProtocolError)?;
            self.track_clean(&mut out);
            return Ok(out);
        }
        let st = self.state(page)?;
        st.evicting = true;
        if !st.owner {
            // The copy stops being readable now, so the manager may forget it; the
            // contents stay until the reply, in case ownership comes here meanwhile (a
            // fenced copy is no longer one the copyset counts on either).
            st.access = Access::None;
            st.fenced = false;
            out.push(Effect::SetAccess {
                page,
                access: Access::None,
            });
        }
        out.push(Effect::Send {
            to: manager,
            msg: Message::Evict { page, hand_off },
        });
        Ok(out)
    }

    /// Whether [`Coherence::clean`] would write `page` back now: this node owns it, holds
    /// its contents (readable), changed since they came from the store, and nothing is under
    /// way for it here.
    pub fn cleanable(&self, page: PageNo) -> bool {
        self.pages.get(page as usize).is_some_and(|st| {
            st.owner
                && st.access >= Access::Read
                && !st.clean
                && !st.evicting
                && st.pending.is_none()
        })
    }

    /// A pager's `clean_request` for `page` at this node: when it owns the page dirty
    /// ([`Coherence::cleanable`]), write it back to the backing store and keep it, read-only,
    /// so that the next local write faults and makes it dirty again; otherwise nothing (a
    /// clean page, or one this node does not own or hold: its owner cleans it). No message:
    /// the copies elsewhere are current already.
    pub fn clean(&mut self, page: PageNo) -> Result<Vec<Effect>, ProtocolError> {
        if !self.cleanable(page) {
            return Ok(Vec::new());
        }
        let st = self.state(page)?;
        let mut out = Vec::new();
        if st.access == Access::Write {
            st.access = Access::Read;
            out.push(Effect::SetAccess {
                page,
                access: Access::Read,
            });
        }
        out.push(Effect::WriteBack { page });
        self.track_clean(&mut out);
        self.state(page)?.clean = true;
        Ok(out)
    }

    /// Mach's `memory_object_data_error`, at the node whose backing store (pager) failed:
    /// the contents that `failed` needed could not be read. `failed` is an effect of the
    /// step just run: an [`Effect::PageIn`] or [`Effect::SendStored`], or an
    /// [`Effect::Send`] of a [`Message::Grant`] with data of a page whose page-in failed
    /// earlier in that step. The runtime carries out the step's other effects (skipping
    /// those that would change the failed page's access here, which this undo decides),
    /// then these, which undo the half-done page-in so that the node and its peers go on:
    /// - a page-in for a local fault: the page is paged out again (owned, no access, its
    ///   contents still only in the store), and the fault fails ([`Effect::DataError`]);
    /// - a grant to another node: the requester is told ([`Message::DataError`]) and asks
    ///   nothing more of this request; a write grant's ownership comes back here (the page
    ///   paged out, as before), a read grant's copy leaves the copyset.
    ///
    /// No node believes it holds the page afterwards, and every fault that waited on the
    /// store is answered. A `failed` that this node's state does not fit is an error.
    pub fn data_error(&mut self, failed: Effect) -> Result<Vec<Effect>, ProtocolError> {
        let page = match failed {
            Effect::PageIn { page, .. } => page,
            Effect::SendStored { msg, .. } | Effect::Send { msg, .. } => msg.page(),
            other => {
                return Err(ProtocolError(format!(
                    "a data error reported for {other:?}, which reads no store"
                )));
            }
        };
        let me = self.id;
        let mut out = Vec::new();
        if self.kind == ManagerKind::Dynamic {
            self.dynamic_ctx(page, &mut out)?
                .data_error(failed)
                .map_err(ProtocolError)?;
            self.track_clean(&mut out);
            return Ok(out);
        }
        let st = self.state(page)?;
        match failed {
            Effect::PageIn { .. } if !st.evicting => {
                if st.owner {
                    undo_page_in(page, st, &mut out);
                }
                out.push(Effect::DataError { page, owner: me });
            }
            Effect::SendStored {
                to,
                msg: Message::Grant { access, .. },
            }
            | Effect::Send {
                to,
                msg:
                    Message::Grant {
                        access,
                        with_data: true,
                        ..
                    },
            } if to != me => {
                match access {
                    Access::Read if st.owner => {}
                    Access::Write if !st.owner && st.access == Access::None && !st.evicting => {
                        // Ownership stays here, paged out.
                        st.owner = true;
                        st.fenced = false;
                    }
                    _ => {
                        return Err(ProtocolError(format!(
                            "a data error for a grant of {access:?} of page {page} to node {to}, \
                             which node {me} did not make"
                        )));
                    }
                }
                out.push(Effect::Send {
                    to,
                    msg: Message::DataError { page, access },
                });
            }
            other => {
                return Err(ProtocolError(format!(
                    "a data error for {other:?} at node {me}, whose page {page} is {st:?}"
                )));
            }
        }
        self.track_clean(&mut out);
        Ok(out)
    }

    /// The capabilities this node knows of.
    pub fn rights(&self) -> &RightsTable {
        &self.rights
    }

    /// The most access local threads may have to `page` without asking anyone first: what
    /// this node's rights (Write for a public page) and its pager's lock
    /// ([`Coherence::data_lock`]) allow.
    pub fn allowed(&self, page: PageNo) -> Access {
        self.local_limit(page)
    }

    /// The capability rounds this node started that are still waiting for acknowledgements.
    pub fn cap_rounds(&self) -> &[CapRound] {
        &self.rounds
    }

    /// Record a capability this node makes (mints, when `record.parent` is `None`, or
    /// derives from one it holds with the grant right) and send it to every other node. It
    /// may be handed to its holder at [`Effect::CapDone`], once every node recorded it.
    /// Minting a range lowers every other node's access to it as the record arrives there.
    pub fn share(&mut self, record: CapRecord) -> Result<Vec<Effect>, ProtocolError> {
        self.rights
            .record(self.id, record, self.pages(), self.nodes)
            .map_err(ProtocolError)?;
        let mut out = Vec::new();
        self.fence(record.first, record.pages, &mut out);
        let deliver_to = (record.holder != self.id).then_some(record.holder);
        self.start_round(
            record.id,
            record.first,
            Message::Cap { record },
            deliver_to,
            &mut out,
        );
        Ok(out)
    }

    /// Revoke capability `cap` (minted here) and everything derived from it: every node's
    /// access through them ends (pages fenced, contents kept), and later requests through
    /// them are refused. Done everywhere at [`Effect::CapDone`].
    pub fn revoke(&mut self, cap: CapId) -> Result<Vec<Effect>, ProtocolError> {
        let rec = self.rights.revoke(self.id, cap).map_err(ProtocolError)?;
        let mut out = Vec::new();
        self.fence(rec.first, rec.pages, &mut out);
        let first = rec.first;
        self.start_round(cap, first, Message::Revoke { cap, first }, None, &mut out);
        Ok(out)
    }

    /// Restrict capability `cap`, held here, to `rights` (a subset of its rights): this
    /// node's access to its pages drops at once to what its rights allow now, and every other
    /// node records the narrower rights, so that the page's manager (or owner) serves this
    /// node no more than they allow. Done everywhere at [`Effect::CapDone`].
    pub fn restrict(&mut self, cap: CapId, rights: u8) -> Result<Vec<Effect>, ProtocolError> {
        let rec = self
            .rights
            .restrict(self.id, cap, rights)
            .map_err(ProtocolError)?;
        let mut out = Vec::new();
        self.fence(rec.first, rec.pages, &mut out);
        let msg = Message::Restrict {
            cap,
            first: rec.first,
            rights,
        };
        self.start_round(cap, rec.first, msg, None, &mut out);
        Ok(out)
    }

    fn start_round(
        &mut self,
        id: CapId,
        first: PageNo,
        msg: Message,
        deliver_to: Option<NodeId>,
        out: &mut Vec<Effect>,
    ) {
        let mut waiting = super::NodeSet::default();
        for n in (0..self.nodes).filter(|&n| n != self.id) {
            waiting.insert(n);
            out.push(Effect::Send { to: n, msg });
        }
        let round = CapRound {
            id,
            first,
            waiting,
            deliver_to,
        };
        if waiting.is_empty() {
            Self::end_round(round, out);
        } else {
            self.rounds.push(round);
        }
    }

    fn end_round(round: CapRound, out: &mut Vec<Effect>) {
        if let Some(to) = round.deliver_to {
            out.push(Effect::Send {
                to,
                msg: Message::Deliver {
                    cap: round.id,
                    first: round.first,
                },
            });
        }
        out.push(Effect::CapDone { cap: round.id });
    }

    /// Give read access back, without messages, to the fenced pages of
    /// `first .. first + pages` that this node's rights let it read: their contents are
    /// current (a fenced copy stays in the copyset until an invalidation, which ends the
    /// fence; a fenced owner holds the page).
    pub fn unfence(&mut self, first: PageNo, pages: u32) -> Vec<Effect> {
        let mut out = Vec::new();
        for page in first..first.saturating_add(pages) {
            let allowed = self.local_limit(page);
            let Some(st) = self.pages.get_mut(page as usize) else {
                break;
            };
            if !st.fenced || st.evicting || st.pending.is_some() || allowed < Access::Read {
                continue;
            }
            st.fenced = false;
            st.access = Access::Read;
            out.push(Effect::SetAccess {
                page,
                access: Access::Read,
            });
        }
        out
    }

    /// This node's threads are done with pages `first .. first + pages` for now (a
    /// capability's last guard was dropped): their local access ends, the contents stay
    /// (fenced) until the protocol moves them; the next fault asks again, and the rights
    /// decide.
    pub fn withdraw(&mut self, first: PageNo, pages: u32) -> Vec<Effect> {
        let mut out = Vec::new();
        for page in first..first.saturating_add(pages) {
            let Some(st) = self.pages.get_mut(page as usize) else {
                break;
            };
            if st.access == Access::None || st.evicting || st.held {
                continue;
            }
            st.access = Access::None;
            st.fenced = true;
            out.push(Effect::SetAccess {
                page,
                access: Access::None,
            });
        }
        out
    }

    /// Lower this node's access to pages `first .. first + pages` to what its rights allow;
    /// a page whose contents must stay (owned, or a listed copy) is fenced.
    fn fence(&mut self, first: PageNo, pages: u32, out: &mut Vec<Effect>) {
        for page in first..first.saturating_add(pages) {
            let allowed = self.local_limit(page);
            let Some(st) = self.pages.get_mut(page as usize) else {
                return;
            };
            // (An owner evicting its page keeps its access until the manager's reply: that
            // access too drops now, and the reply finds the page fenced.)
            if st.access <= allowed {
                continue;
            }
            st.access = allowed;
            st.fenced |= allowed == Access::None;
            out.push(Effect::SetAccess {
                page,
                access: allowed,
            });
        }
    }

    /// The capability messages: record, revoke, acknowledge.
    fn handle_rights(&mut self, from: NodeId, msg: Message) -> Result<Vec<Effect>, ProtocolError> {
        let mut out = Vec::new();
        match msg {
            Message::Cap { record } => {
                self.rights
                    .record(from, record, self.pages(), self.nodes)
                    .map_err(ProtocolError)?;
                self.fence(record.first, record.pages, &mut out);
                out.push(Effect::Send {
                    to: from,
                    msg: Message::CapAck {
                        cap: record.id,
                        first: record.first,
                    },
                });
            }
            Message::Revoke { cap, first } => {
                let rec = self.rights.revoke(from, cap).map_err(ProtocolError)?;
                if rec.first != first {
                    return Err(ProtocolError(format!(
                        "revocation of {cap:?} names page {first}, not its first page {}",
                        rec.first
                    )));
                }
                self.fence(rec.first, rec.pages, &mut out);
                out.push(Effect::Send {
                    to: from,
                    msg: Message::CapAck { cap, first },
                });
            }
            Message::Restrict { cap, first, rights } => {
                let rec = self
                    .rights
                    .restrict(from, cap, rights)
                    .map_err(ProtocolError)?;
                if rec.first != first {
                    return Err(ProtocolError(format!(
                        "restriction of {cap:?} names page {first}, not its first page {}",
                        rec.first
                    )));
                }
                out.push(Effect::Send {
                    to: from,
                    msg: Message::CapAck { cap, first },
                });
            }
            Message::Deliver { cap, first } => {
                let me = self.id;
                match self.rights.get(cap) {
                    Some((r, _)) if r.holder == me && r.first == first && cap.maker() == from => {
                        out.push(Effect::Received { cap });
                    }
                    _ => {
                        return Err(ProtocolError(format!(
                            "delivery of {cap:?} from node {from}, which did not make it for node {me}"
                        )));
                    }
                }
            }
            Message::CapAck { cap, first } => {
                let Some(at) = self
                    .rounds
                    .iter()
                    .position(|r| r.id == cap && r.first == first && r.waiting.contains(from))
                else {
                    return Err(ProtocolError(format!(
                        "unexpected acknowledgement of {cap:?} from node {from}"
                    )));
                };
                self.rounds[at].waiting.remove(from);
                if self.rounds[at].waiting.is_empty() {
                    let round = self.rounds.remove(at);
                    Self::end_round(round, &mut out);
                }
            }
            other => {
                return Err(ProtocolError(format!(
                    "{other:?} is not a capability message"
                )));
            }
        }
        Ok(out)
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The number of pages.
    pub fn pages(&self) -> u32 {
        self.pages.len() as u32
    }

    /// Which manager this node runs.
    pub fn kind(&self) -> ManagerKind {
        self.kind
    }

    /// The dynamic-manager state of `page` (dynamic manager only).
    pub fn dynamic_entry(&self, page: PageNo) -> Option<&DynamicEntry> {
        self.dynamic.get(page as usize)
    }

    fn dynamic_ctx<'a>(
        &'a mut self,
        page: PageNo,
        out: &'a mut Vec<Effect>,
    ) -> Result<PageCtx<'a>, ProtocolError> {
        let n = self.pages.len();
        let limit = self.local_limit(page);
        match (
            self.pages.get_mut(page as usize),
            self.dynamic.get_mut(page as usize),
        ) {
            (Some(st), Some(e)) => Ok(PageCtx {
                me: self.id,
                page,
                st,
                e,
                out,
                rights: &self.rights,
                limit,
            }),
            _ => Err(ProtocolError(format!(
                "page {page} out of range ({n} pages)"
            ))),
        }
    }

    /// The node that manages `page` (central and fixed managers; the dynamic manager has
    /// none, this returns 0 for it).
    pub fn manager_of(&self, page: PageNo) -> NodeId {
        match self.kind {
            ManagerKind::Central | ManagerKind::Dynamic => 0,
            ManagerKind::Fixed => (page % self.nodes as u32) as NodeId,
        }
    }

    /// The local state of `page`.
    pub fn page(&self, page: PageNo) -> Option<PageState> {
        self.pages.get(page as usize).copied()
    }

    /// The manager entry of `page`, when this node manages it.
    pub fn manager_entry(&self, page: PageNo) -> Option<&ManagerEntry> {
        self.managed.get(page as usize).and_then(|m| m.as_ref())
    }

    fn state(&mut self, page: PageNo) -> Result<&mut PageState, ProtocolError> {
        let n = self.pages.len();
        self.pages
            .get_mut(page as usize)
            .ok_or_else(|| ProtocolError(format!("page {page} out of range ({n} pages)")))
    }

    /// A local thread needs `access` to `page`. Returns `[Served]` when it already has it,
    /// nothing when a request is already on its way (wait for `Served`, then ask again), or
    /// the request to send.
    pub fn fault(&mut self, page: PageNo, access: Access) -> Result<Vec<Effect>, ProtocolError> {
        let before = self.state(page)?.access;
        let mut out = self.fault_step(page, access)?;
        self.hold_if_raised(page, before, &mut out);
        self.track_clean(&mut out);
        Ok(out)
    }

    fn fault_step(&mut self, page: PageNo, access: Access) -> Result<Vec<Effect>, ProtocolError> {
        let manager = self.manager_of(page);
        let st = self.state(page)?;
        if st.access >= access || access == Access::None {
            return Ok(vec![Effect::Served { page }]);
        }
        if st.pending.is_some() || st.evicting {
            return Ok(Vec::new());
        }
        if let Some(unlock) = self.unlock_first(page, access) {
            return Ok(unlock);
        }
        if self.kind == ManagerKind::Dynamic {
            let mut out = Vec::new();
            self.dynamic_ctx(page, &mut out)?
                .fault(access)
                .map_err(ProtocolError)?;
            return Ok(out);
        }
        let st = self.state(page)?;
        st.pending = Some(access);
        let msg = if access == Access::Write {
            Message::WriteRequest { page }
        } else {
            Message::ReadRequest { page }
        };
        Ok(vec![Effect::Send { to: manager, msg }])
    }

    /// Handle `msg` from `from` (or keep it until the page's hold expires).
    pub fn handle(&mut self, from: NodeId, msg: Message) -> Result<Vec<Effect>, ProtocolError> {
        if from >= self.nodes {
            return Err(ProtocolError(format!("message from unknown node {from}")));
        }
        if matches!(
            msg,
            Message::Cap { .. }
                | Message::Revoke { .. }
                | Message::Restrict { .. }
                | Message::CapAck { .. }
                | Message::Deliver { .. }
        ) {
            return self.handle_rights(from, msg);
        }
        // A node named in a message comes from the wire: one outside the cluster would have
        // this node send to a peer that does not exist.
        let named = match msg {
            Message::ReadForward { to, .. } | Message::WriteForward { to, .. } => Some(to),
            Message::Request { requester, .. } => Some(requester),
            Message::EvictReply {
                outcome: EvictOutcome::PassTo(n) | EvictOutcome::HandOffTo(n),
                ..
            } => Some(n),
            _ => None,
        };
        if let Some(n) = named.filter(|&n| n >= self.nodes) {
            return Err(ProtocolError(format!(
                "{msg:?} from node {from} names node {n}, outside the cluster of {}",
                self.nodes
            )));
        }
        let page = msg.page();
        let before = self.state(page)?.access;
        if self.waits_for_hold(&msg) {
            self.deferred[page as usize].push((from, msg));
            return Ok(Vec::new());
        }
        let mut out = self.handle_step(from, msg)?;
        self.hold_if_raised(page, before, &mut out);
        self.track_clean(&mut out);
        Ok(out)
    }

    fn handle_step(&mut self, from: NodeId, msg: Message) -> Result<Vec<Effect>, ProtocolError> {
        if from >= self.nodes {
            return Err(ProtocolError(format!("message from unknown node {from}")));
        }
        let page = msg.page();
        let me = self.id;
        let manager = self.manager_of(page);
        let mut out = Vec::new();
        if self.kind == ManagerKind::Dynamic {
            let nodes = self.nodes;
            let allowed = self.local_limit(page);
            let room = self.has_free_frame();
            let mut ctx = self.dynamic_ctx(page, &mut out)?;
            let r = match msg {
                Message::Request {
                    requester, access, ..
                } if requester < nodes => ctx.request_from_peer(requester, access),
                Message::EvictReply {
                    outcome: EvictOutcome::Drop,
                    ..
                } => ctx.drop_reply(),
                Message::Adopt { copyset, .. } if copyset.0 >> nodes == 0 => {
                    ctx.adopt(from, copyset)
                }
                // A node takes a page handed off only with the rights to its access.
                Message::HandOff { access, .. } => {
                    ctx.hand_off(from, access, room && allowed >= access)
                }
                Message::Refused { access, .. } => ctx.refused(from, access),
                Message::DataError { access, .. } => ctx.data_error_reply(from, access),
                Message::HandOffReply { accepted, .. } => ctx.hand_off_reply(from, accepted),
                Message::Invalidate { .. } => ctx.invalidate(from),
                Message::InvalidateAck { .. } => ctx.invalidate_ack(from),
                Message::Grant {
                    access, with_data, ..
                } => ctx.grant(from, access, with_data),
                Message::Confirm { access, .. } => ctx.confirm(from, access),
                other => Err(format!("{other:?} is not a dynamic-manager message")),
            };
            r.map_err(ProtocolError)?;
            return Ok(out);
        }
        match msg {
            Message::Request { .. } => {
                return Err(ProtocolError(
                    "a dynamic-manager request reached a node running another manager".into(),
                ));
            }
            Message::Cap { .. }
            | Message::Revoke { .. }
            | Message::Restrict { .. }
            | Message::CapAck { .. }
            | Message::Deliver { .. } => {
                return self.handle_rights(from, msg);
            }
            Message::ReadRequest { .. } | Message::WriteRequest { .. } => {
                let access = if matches!(msg, Message::ReadRequest { .. }) {
                    Access::Read
                } else {
                    Access::Write
                };
                // The manager grants access: only what the requester's rights allow (checked
                // when the request starts, and again after a write's invalidations).
                let (entry, rights) = self.entry_and_rights(page)?;
                let allowed = |n: NodeId, a: Access| rights.allowed(n, page) >= a;
                entry.request(page, from, Want::Access(access), &allowed, &mut out);
            }
            Message::Refused { access, .. } => {
                let st = self.state(page)?;
                if from != manager || st.pending != Some(access) {
                    return Err(ProtocolError(format!(
                        "refusal of {access:?} for page {page} from node {from}, which node {me} \
                         did not ask"
                    )));
                }
                st.pending = None;
                out.push(Effect::Denied { page, access });
            }
            Message::DataError { access, .. } => {
                let st = self.state(page)?;
                if from == me || st.pending != Some(access) {
                    return Err(ProtocolError(format!(
                        "data error of {access:?} for page {page} from node {from}, which node \
                         {me} did not ask"
                    )));
                }
                // Nothing came: the page is as it was; the manager's transaction ends.
                st.pending = None;
                out.push(Effect::DataError { page, owner: from });
                out.push(Effect::Send {
                    to: manager,
                    msg: Message::Confirm {
                        page,
                        access: Access::None,
                    },
                });
            }
            Message::Evict { hand_off, .. } => {
                if hand_off.is_some_and(|t| t >= self.nodes) {
                    return Err(ProtocolError(format!(
                        "eviction of page {page} with hand-off to unknown node {hand_off:?}"
                    )));
                }
                let (entry, rights) = self.entry_and_rights(page)?;
                let allowed = |n: NodeId, a: Access| rights.allowed(n, page) >= a;
                entry.request(page, from, Want::Evict { hand_off }, &allowed, &mut out);
            }
            Message::EvictReply { outcome, .. } => {
                if from != manager {
                    return Err(ProtocolError(format!(
                        "eviction reply for page {page} from node {from}, not its manager"
                    )));
                }
                self.evict_reply(page, outcome, &mut out)?;
            }
            Message::Adopt { .. } => {
                let allowed = self.local_limit(page);
                let st = self.state(page)?;
                if st.owner || (st.access != Access::Read && !st.evicting && !st.fenced) {
                    return Err(ProtocolError(format!(
                        "ownership of page {page} without data at node {me}, which has no copy"
                    )));
                }
                st.owner = true;
                // Rights that shrank since this node took its copy leave the page fenced.
                if allowed == Access::None {
                    st.fenced = true;
                    if st.access != Access::None {
                        st.access = Access::None;
                        out.push(Effect::SetAccess {
                            page,
                            access: Access::None,
                        });
                    }
                } else if st.access != Access::Read && !st.fenced {
                    st.access = Access::Read;
                    out.push(Effect::SetAccess {
                        page,
                        access: Access::Read,
                    });
                }
                out.push(Effect::Send {
                    to: manager,
                    msg: Message::Confirm {
                        page,
                        access: Access::Read,
                    },
                });
            }
            Message::HandOff { access, .. } => {
                // A node takes a page handed off only with the rights to its access.
                let room = self.has_free_frame() && self.local_limit(page) >= access;
                let st = self.state(page)?;
                let accepted = room && *st == PageState::ABSENT && access != Access::None;
                if accepted {
                    *st = PageState {
                        access,
                        owner: true,
                        ..PageState::ABSENT
                    };
                    out.push(Effect::Install { page, access });
                }
                out.push(Effect::Send {
                    to: from,
                    msg: Message::HandOffReply { page, accepted },
                });
            }
            Message::HandOffReply { accepted, .. } => {
                let st = self.state(page)?;
                if st.owner || !st.evicting {
                    return Err(ProtocolError(format!(
                        "hand-off reply for page {page} at node {me}, which hands nothing off"
                    )));
                }
                st.evicting = false;
                let confirm = if accepted {
                    out.push(Effect::Evicted {
                        page,
                        class: EvictClass::HandedOff,
                    });
                    // The receiver's access; only its being Some matters to the manager.
                    Access::Write
                } else {
                    st.owner = true;
                    out.push(Effect::WriteBack { page });
                    out.push(Effect::Evicted {
                        page,
                        class: EvictClass::WrittenBack,
                    });
                    Access::None
                };
                out.push(Effect::Served { page });
                out.push(Effect::Send {
                    to: manager,
                    msg: Message::Confirm {
                        page,
                        access: confirm,
                    },
                });
            }
            Message::InvalidateAck { .. } => {
                let (entry, rights) = self.entry_and_rights(page)?;
                let allowed = |n: NodeId, a: Access| rights.allowed(n, page) >= a;
                entry
                    .invalidate_ack(page, from, &allowed, &mut out)
                    .map_err(ProtocolError)?;
            }
            Message::Confirm { access, .. } => {
                let (entry, rights) = self.entry_and_rights(page)?;
                let allowed = |n: NodeId, a: Access| rights.allowed(n, page) >= a;
                entry
                    .confirm(page, from, access, &allowed, &mut out)
                    .map_err(ProtocolError)?;
            }
            Message::ReadForward { to, .. } => {
                let allowed = self.local_limit(page);
                let st = self.state(page)?;
                if !st.owner {
                    return Err(ProtocolError(format!(
                        "read forward for page {page} to node {me}, which does not own it"
                    )));
                }
                if st.paged_out() {
                    if to == me {
                        // This node's own read fault on its paged-out page.
                        let usable = Access::Read.min(allowed);
                        st.access = usable;
                        st.fenced = usable == Access::None;
                        st.pending = None;
                        out.push(Effect::PageIn {
                            page,
                            access: usable,
                        });
                        out.push(Effect::Served { page });
                        out.push(Effect::Send {
                            to: manager,
                            msg: Message::Confirm {
                                page,
                                access: Access::Read,
                            },
                        });
                    } else {
                        out.push(Effect::SendStored {
                            to,
                            msg: Message::Grant {
                                page,
                                access: Access::Read,
                                with_data: true,
                            },
                        });
                    }
                    return Ok(out);
                }
                if st.access == Access::Write {
                    st.access = Access::Read;
                    out.push(Effect::SetAccess {
                        page,
                        access: Access::Read,
                    });
                }
                out.push(Effect::Send {
                    to,
                    msg: Message::Grant {
                        page,
                        access: Access::Read,
                        with_data: to != me,
                    },
                });
            }
            Message::WriteForward { to, send_data, .. } => {
                let allowed = self.local_limit(page);
                let st = self.state(page)?;
                if !st.owner {
                    return Err(ProtocolError(format!(
                        "write forward for page {page} to node {me}, which does not own it"
                    )));
                }
                let paged_out = st.paged_out();
                st.fenced = false;
                if to == me {
                    // Upgrade in place: the copies are gone, our contents are current (in
                    // memory, or in the backing store when paged out). Rights that shrank
                    // since the manager decided leave the page fenced.
                    let usable = Access::Write.min(allowed);
                    st.access = usable;
                    st.fenced = usable == Access::None;
                    st.pending = None;
                    out.push(if paged_out {
                        Effect::PageIn {
                            page,
                            access: usable,
                        }
                    } else {
                        Effect::SetAccess {
                            page,
                            access: usable,
                        }
                    });
                    out.push(Effect::Served { page });
                    out.push(Effect::Send {
                        to: manager,
                        msg: Message::Confirm {
                            page,
                            access: Access::Write,
                        },
                    });
                } else {
                    st.owner = false;
                    let msg = Message::Grant {
                        page,
                        access: Access::Write,
                        with_data: send_data,
                    };
                    if paged_out && send_data {
                        out.push(Effect::SendStored { to, msg });
                    } else {
                        if st.access != Access::None {
                            st.access = Access::None;
                            out.push(Effect::SetAccess {
                                page,
                                access: Access::None,
                            });
                        }
                        out.push(Effect::Send { to, msg });
                    }
                }
            }
            Message::Invalidate { .. } => {
                let st = self.state(page)?;
                if st.owner {
                    return Err(ProtocolError(format!(
                        "invalidation of page {page} at its owner {me}"
                    )));
                }
                st.fenced = false;
                if st.access != Access::None {
                    st.access = Access::None;
                    out.push(Effect::SetAccess {
                        page,
                        access: Access::None,
                    });
                }
                out.push(Effect::Send {
                    to: from,
                    msg: Message::InvalidateAck { page },
                });
            }
            Message::Grant {
                access, with_data, ..
            } => {
                let allowed = self.local_limit(page);
                let st = self.state(page)?;
                if st.pending != Some(access) {
                    return Err(ProtocolError(format!(
                        "grant of {access:?} for page {page} that node {me} did not ask for"
                    )));
                }
                if !with_data
                    && from != me
                    && st.access == Access::None
                    && !st.fenced
                    && access == Access::Write
                {
                    return Err(ProtocolError(format!(
                        "ownership of page {page} without data at node {me}, which has no copy"
                    )));
                }
                st.pending = None;
                if access == Access::Write {
                    st.owner = true;
                }
                // A grant decided before this node's rights shrank (a revocation or a mint
                // that reached the granting node later): the page comes, fenced.
                let usable = access.min(allowed);
                st.fenced = usable < access && usable == Access::None;
                if st.access != usable || with_data {
                    st.access = usable;
                    out.push(if with_data {
                        Effect::Install {
                            page,
                            access: usable,
                        }
                    } else {
                        Effect::SetAccess {
                            page,
                            access: usable,
                        }
                    });
                }
                out.push(Effect::Served { page });
                out.push(Effect::Send {
                    to: manager,
                    msg: Message::Confirm { page, access },
                });
            }
        }
        Ok(out)
    }

    /// Central and fixed managers: the manager's answer to this node's [`Message::Evict`].
    fn evict_reply(
        &mut self,
        page: PageNo,
        outcome: EvictOutcome,
        out: &mut Vec<Effect>,
    ) -> Result<(), ProtocolError> {
        let me = self.id;
        let manager = self.manager_of(page);
        // What the receiver of a hand-off may have (its rights may have shrunk since the
        // eviction asked for it).
        let receiver_may = match outcome {
            EvictOutcome::HandOffTo(t) => self.rights.allowed(t, page),
            _ => Access::None,
        };
        let st = self.state(page)?;
        if !st.evicting {
            return Err(ProtocolError(format!(
                "eviction reply for page {page} at node {me}, which does not evict it"
            )));
        }
        let drop = |st: &mut PageState, out: &mut Vec<Effect>, class| {
            st.access = Access::None;
            st.evicting = false;
            st.fenced = false;
            out.push(Effect::Evicted { page, class });
        };
        match outcome {
            EvictOutcome::Drop if !st.owner => drop(st, out, EvictClass::DroppedCopy),
            EvictOutcome::PassTo(h) if st.owner && h != me => {
                st.owner = false;
                drop(st, out, EvictClass::PassedOwnership);
                out.push(Effect::Send {
                    to: h,
                    msg: Message::Adopt {
                        page,
                        copyset: Default::default(),
                    },
                });
            }
            EvictOutcome::HandOffTo(t)
                if st.owner
                    && t != me
                    && st.access != Access::None
                    && receiver_may >= st.access =>
            {
                // Ownership travels with the contents; the frame stays until the reply.
                let access = st.access;
                st.owner = false;
                st.access = Access::None;
                out.push(Effect::SetAccess {
                    page,
                    access: Access::None,
                });
                out.push(Effect::Send {
                    to: t,
                    msg: Message::HandOff { page, access },
                });
                return Ok(());
            }
            // A fenced only copy is not handed off (no local access to give the receiver),
            // nor one the receiver's rights no longer allow: it is written back, as when a
            // hand-off is refused.
            EvictOutcome::HandOffTo(t) if st.owner && t != me => {
                out.push(Effect::WriteBack { page });
                drop(st, out, EvictClass::WrittenBack);
                out.push(Effect::Served { page });
                out.push(Effect::Send {
                    to: manager,
                    msg: Message::Confirm {
                        page,
                        access: Access::None,
                    },
                });
                return Ok(());
            }
            EvictOutcome::WriteBack if st.owner && (st.access != Access::None || st.fenced) => {
                out.push(Effect::WriteBack { page });
                drop(st, out, EvictClass::WrittenBack);
            }
            // A forward that the manager sent after its reply took the ownership away
            // first: there is nothing to write back, the frame went with the access.
            EvictOutcome::WriteBack if !st.owner => st.evicting = false,
            other => {
                return Err(ProtocolError(format!(
                    "eviction reply {other:?} for page {page} at node {me}, which is {:?}{}",
                    st.access,
                    if st.owner { " and its owner" } else { "" }
                )));
            }
        }
        out.push(Effect::Served { page });
        Ok(())
    }

    /// The manager entry of `page` (which this node must manage), and the rights table that
    /// decides what it may serve.
    fn entry_and_rights(
        &mut self,
        page: PageNo,
    ) -> Result<(&mut ManagerEntry, &RightsTable), ProtocolError> {
        let me = self.id;
        let entry = self
            .managed
            .get_mut(page as usize)
            .and_then(|m| m.as_mut())
            .ok_or_else(|| {
                ProtocolError(format!(
                    "node {me} got a manager message for page {page} it does not manage"
                ))
            })?;
        Ok((entry, &self.rights))
    }
}
