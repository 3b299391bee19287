//! IVY's dynamic distributed manager: no manager at all. Each node keeps a probable owner per
//! page; a request goes to it and is forwarded along the chain until it reaches the owner.
//! A node that forwards a write request points its probable owner at the requester (which
//! will own the page), so chains stay short; a read copy points at the owner that served it;
//! an invalidated copy points at the owner that invalidated it.
//!
//! The owner keeps the copyset and serves one request at a time: for a write it invalidates
//! the copies (collecting acknowledgements) before handing ownership over; for a read it waits
//! for the reader's Confirm, so an invalidation can never overtake the copy it invalidates.
//! Requests that reach a busy owner, or a node waiting for ownership (the tail of the queue of
//! writers), wait in that node's FIFO.
//!
//! Eviction: a holder of a read copy asks the owner to take it off the copyset (a request for
//! access None, forwarded like the others) and keeps its frame until the owner's reply; the
//! owner itself passes ownership and the rest of the copyset to a holder of a copy
//! ([`Message::Adopt`]), or hands an only copy off to a node with room, or writes it back and
//! stays the owner of a paged-out page, whose later requests are served from the store.

use std::collections::VecDeque;

use super::coherence::PageState;
use super::manager::NodeSet;
use super::message::{Effect, EvictClass, EvictOutcome, Message};
use super::rights::RightsTable;
use crate::types::{Access, NodeId, PageNo};

/// What an owner is in the middle of.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DynamicBusy {
    /// Invalidating the copies before `requester` gets write access.
    Invalidating {
        /// The node that asked to write (possibly the owner itself).
        requester: NodeId,
        /// Acknowledgements still expected.
        acks_left: u32,
    },
    /// Waiting for `reader` to confirm the read copy it was sent.
    AwaitingConfirm {
        /// The reader.
        reader: NodeId,
    },
    /// This node evicted its owned copy and passed ownership to `to` (a holder of a
    /// copy); requests wait here until `to` confirms that it owns the page.
    Passing {
        /// The new owner.
        to: NodeId,
    },
    /// This node hands its only copy (and ownership) off to `to`; requests wait here until
    /// `to` accepts or refuses.
    HandingOff {
        /// The receiver.
        to: NodeId,
    },
}

/// A node's dynamic-manager state for one page.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DynamicEntry {
    /// Where this node believes the owner is (itself when it owns the page).
    pub prob_owner: NodeId,
    /// The read copies (valid at the owner), the owner excluded.
    pub copyset: NodeSet,
    /// What the owner is doing, if anything.
    pub busy: Option<DynamicBusy>,
    /// Requests waiting here, in arrival order.
    pub queue: VecDeque<(NodeId, Access)>,
}

impl DynamicEntry {
    /// The state at start: node 0 owns every page.
    pub fn new() -> DynamicEntry {
        DynamicEntry {
            prob_owner: 0,
            copyset: NodeSet::default(),
            busy: None,
            queue: VecDeque::new(),
        }
    }
}

impl Default for DynamicEntry {
    fn default() -> Self {
        Self::new()
    }
}

/// One page of one node: the step functions work on this.
pub(crate) struct PageCtx<'a> {
    pub me: NodeId,
    pub page: PageNo,
    pub st: &'a mut PageState,
    pub e: &'a mut DynamicEntry,
    pub out: &'a mut Vec<Effect>,
    /// The capabilities this node knows of: the owner serves only what they allow.
    pub rights: &'a RightsTable,
    /// The most access local threads may have to the page: what this node's rights and
    /// the pager's lock of the page here allow.
    pub limit: Access,
}

impl PageCtx<'_> {
    fn send(&mut self, to: NodeId, msg: Message) {
        self.out.push(Effect::Send { to, msg });
    }

    fn set_access(&mut self, access: Access) {
        if self.st.access != access {
            self.st.access = access;
            self.out.push(Effect::SetAccess {
                page: self.page,
                access,
            });
        }
    }

    /// A local fault that needs a request (the caller checked it is not satisfied and
    /// nothing is pending).
    pub fn fault(&mut self, access: Access) -> Result<(), String> {
        self.st.pending = Some(access);
        if self.st.owner || self.e.busy.is_some() {
            self.request(self.me, access)
        } else {
            let (page, me, to) = (self.page, self.me, self.e.prob_owner);
            self.send(
                to,
                Message::Request {
                    page,
                    requester: me,
                    access,
                },
            );
            Ok(())
        }
    }

    /// A request by `requester` reached this node from a peer.
    pub fn request_from_peer(&mut self, requester: NodeId, access: Access) -> Result<(), String> {
        self.request(requester, access)
    }

    /// A request by `requester` reached this node (or is drained from its queue). A request
    /// for access None is a holder's eviction of its read copy: the owner takes it off the
    /// copyset.
    pub fn request(&mut self, requester: NodeId, access: Access) -> Result<(), String> {
        if self.st.owner {
            if self.e.busy.is_some() {
                self.e.queue.push_back((requester, access));
                return Ok(());
            }
            return self.serve(requester, access);
        }
        if self.e.busy.is_some() {
            // Ownership is moving away from here: wait for where it lands.
            self.e.queue.push_back((requester, access));
            return Ok(());
        }
        let (page, to) = (self.page, self.e.prob_owner);
        if requester == self.me {
            // This node's own request, displaced (ownership passed through here): on to
            // the probable owner.
            if to == self.me {
                return Err(format!(
                    "node {} has its own request for page {page} and no owner to send it to",
                    self.me
                ));
            }
            self.send(
                to,
                Message::Request {
                    page,
                    requester,
                    access,
                },
            );
            return Ok(());
        }
        if self.st.pending == Some(Access::Write) {
            // This node will own the page next: the request waits here.
            self.e.queue.push_back((requester, access));
            return Ok(());
        }
        self.send(
            to,
            Message::Request {
                page,
                requester,
                access,
            },
        );
        if access == Access::Write {
            self.e.prob_owner = requester;
        }
        Ok(())
    }

    fn serve(&mut self, requester: NodeId, access: Access) -> Result<(), String> {
        let page = self.page;
        if access == Access::None {
            if requester == self.me {
                // This node's own eviction of its read copy, which became ownership on the
                // way: it holds the page; the runtime picks another one.
                if self.st.evicting {
                    self.st.evicting = false;
                    self.out.push(Effect::Served { page });
                }
                return Ok(());
            }
            self.e.copyset.remove(requester);
            self.send(
                requester,
                Message::EvictReply {
                    page,
                    outcome: EvictOutcome::Drop,
                },
            );
            return Ok(());
        }
        // The owner grants access: only what the requester's rights allow.
        if self.rights.allowed(requester, page) < access {
            self.send(requester, Message::Refused { page, access });
            return Ok(());
        }
        let paged_out = self.st.paged_out();
        if access == Access::Read {
            if requester == self.me {
                // A pager's lock that came down while the request waited leaves the page
                // fenced here (its contents kept): the thread asks the pager next.
                let usable = Access::Read.min(self.limit);
                if self.st.fenced {
                    // Its own page, fenced, and its rights allow reading again.
                    self.st.pending = None;
                    if usable == Access::Read {
                        self.st.fenced = false;
                        self.set_access(Access::Read);
                    }
                    self.out.push(Effect::Served { page });
                    return Ok(());
                }
                if !paged_out {
                    return Err(format!(
                        "owner {} asked itself for a read copy of page {page}",
                        self.me
                    ));
                }
                self.st.access = usable;
                self.st.fenced = usable == Access::None;
                self.st.pending = None;
                self.out.push(Effect::PageIn {
                    page,
                    access: usable,
                });
                self.out.push(Effect::Served { page });
                return Ok(());
            }
            self.e.copyset.insert(requester);
            let grant = Message::Grant {
                page,
                access: Access::Read,
                with_data: true,
            };
            if paged_out {
                self.out.push(Effect::SendStored {
                    to: requester,
                    msg: grant,
                });
            } else {
                if self.st.access == Access::Write {
                    self.set_access(Access::Read);
                }
                self.send(requester, grant);
            }
            self.e.busy = Some(DynamicBusy::AwaitingConfirm { reader: requester });
            return Ok(());
        }
        let mut holders = self.e.copyset;
        holders.remove(requester);
        holders.remove(self.me);
        if holders.is_empty() {
            return self.transfer(requester);
        }
        self.e.busy = Some(DynamicBusy::Invalidating {
            requester,
            acks_left: holders.len() as u32,
        });
        for h in holders.iter() {
            self.send(h, Message::Invalidate { page });
        }
        Ok(())
    }

    /// The copies are gone: give write access to `requester`.
    fn transfer(&mut self, requester: NodeId) -> Result<(), String> {
        let page = self.page;
        self.e.busy = None;
        let paged_out = self.st.paged_out();
        self.st.fenced = false;
        if requester == self.me {
            self.st.pending = None;
            self.e.copyset = NodeSet::default();
            // Rights that shrank while the copies were invalidated leave the page fenced.
            let usable = Access::Write.min(self.limit);
            self.st.fenced = usable == Access::None;
            if paged_out {
                self.st.access = usable;
                self.out.push(Effect::PageIn {
                    page,
                    access: usable,
                });
            } else {
                self.set_access(usable);
            }
            self.out.push(Effect::Served { page });
        } else {
            let with_data = !self.e.copyset.contains(requester);
            self.st.owner = false;
            let grant = Message::Grant {
                page,
                access: Access::Write,
                with_data,
            };
            if paged_out && with_data {
                self.out.push(Effect::SendStored {
                    to: requester,
                    msg: grant,
                });
            } else {
                self.set_access(Access::None);
                self.send(requester, grant);
            }
            self.e.prob_owner = requester;
            self.e.copyset = NodeSet::default();
            // This node's own write fault waited in its queue while it owned the page: now
            // it must ask the new owner like everyone else.
            if let Some(pos) = self.e.queue.iter().position(|(r, _)| *r == self.me) {
                if let Some((_, a)) = self.e.queue.remove(pos) {
                    let me = self.me;
                    self.send(
                        requester,
                        Message::Request {
                            page,
                            requester: me,
                            access: a,
                        },
                    );
                }
            }
        }
        self.drain()
    }

    /// Serve or pass on the waiting requests while this node can.
    fn drain(&mut self) -> Result<(), String> {
        if !self.st.owner && self.e.busy.is_none() {
            // This node's own requests that waited while ownership moved away: on to the
            // probable owner, before the others (which may wait here for ownership).
            while let Some(pos) = self.e.queue.iter().position(|(r, _)| *r == self.me) {
                if let Some((r, a)) = self.e.queue.remove(pos) {
                    self.request(r, a)?;
                }
            }
        }
        loop {
            let can =
                self.e.busy.is_none() && (self.st.owner || self.st.pending != Some(Access::Write));
            if !can {
                return Ok(());
            }
            let Some((r, a)) = self.e.queue.pop_front() else {
                return Ok(());
            };
            self.request(r, a)?;
        }
    }

    /// The owner `from` invalidates this node's copy.
    pub fn invalidate(&mut self, from: NodeId) -> Result<(), String> {
        if self.st.owner {
            return Err(format!(
                "invalidation of page {} at its owner {}",
                self.page, self.me
            ));
        }
        self.st.fenced = false;
        self.set_access(Access::None);
        self.e.prob_owner = from;
        let page = self.page;
        self.send(from, Message::InvalidateAck { page });
        Ok(())
    }

    /// `from` dropped its copy.
    pub fn invalidate_ack(&mut self, from: NodeId) -> Result<(), String> {
        match &mut self.e.busy {
            Some(DynamicBusy::Invalidating {
                requester,
                acks_left,
            }) if self.st.owner && self.e.copyset.contains(from) => {
                *acks_left -= 1;
                self.e.copyset.remove(from);
                if *acks_left == 0 {
                    let r = *requester;
                    // The rights may have shrunk while the copies were invalidated: the
                    // owner decides now, from what they allow now.
                    let page = self.page;
                    if r != self.me && self.rights.allowed(r, page) < Access::Write {
                        self.e.busy = None;
                        self.send(
                            r,
                            Message::Refused {
                                page,
                                access: Access::Write,
                            },
                        );
                        return self.drain();
                    }
                    return self.transfer(r);
                }
                Ok(())
            }
            _ => Err(format!(
                "unexpected invalidation ack for page {} from node {from} at node {}",
                self.page, self.me
            )),
        }
    }

    /// The owner `from` grants `access`.
    pub fn grant(&mut self, from: NodeId, access: Access, with_data: bool) -> Result<(), String> {
        let page = self.page;
        if self.st.pending != Some(access) {
            return Err(format!(
                "grant of {access:?} for page {page} that node {} did not ask for",
                self.me
            ));
        }
        if access == Access::Write
            && !with_data
            && self.st.access == Access::None
            && !self.st.fenced
        {
            return Err(format!(
                "ownership of page {page} without data at node {}, which has no copy",
                self.me
            ));
        }
        self.st.pending = None;
        // A grant decided before this node's rights shrank: the page comes, fenced.
        let usable = access.min(self.limit);
        self.st.fenced = usable < access && usable == Access::None;
        self.st.access = usable;
        self.out.push(if with_data {
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
        self.out.push(Effect::Served { page });
        if access == Access::Write {
            self.st.owner = true;
            self.e.prob_owner = self.me;
            self.e.copyset = NodeSet::default();
        } else {
            self.e.prob_owner = from;
            self.send(from, Message::Confirm { page, access });
        }
        self.drain()
    }

    /// The owner `from` refused this node's request for `access`: its rights do not allow
    /// it. The owner is the probable owner from now on (nodes that passed a refused write
    /// request on point here).
    pub fn refused(&mut self, from: NodeId, access: Access) -> Result<(), String> {
        let page = self.page;
        if self.st.pending != Some(access) {
            return Err(format!(
                "refusal of {access:?} for page {page} from node {from}, which node {} did not ask",
                self.me
            ));
        }
        self.st.pending = None;
        // (A refusal this node sent itself as owner may arrive after ownership moved on:
        // its probable owner is already where it went.)
        if !self.st.owner && from != self.me {
            self.e.prob_owner = from;
        }
        self.out.push(Effect::Denied { page, access });
        self.drain()
    }

    /// The owner `from` could not read the page from its store for this node's request
    /// for `access` (`Message::DataError`): nothing came, the fault fails. The owner is the
    /// probable owner from now on (nodes that passed a write request on point here).
    pub fn data_error_reply(&mut self, from: NodeId, access: Access) -> Result<(), String> {
        let page = self.page;
        if self.st.pending != Some(access) || from == self.me {
            return Err(format!(
                "data error of {access:?} for page {page} from node {from}, which node {} did \
                 not ask",
                self.me
            ));
        }
        self.st.pending = None;
        if !self.st.owner {
            self.e.prob_owner = from;
        }
        self.out.push(Effect::DataError { page, owner: from });
        self.drain()
    }

    /// `data_error` at this node, the owner whose store failed (see
    /// [`super::Coherence::data_error`]): undo the half-done page-in `failed`.
    pub fn data_error(&mut self, failed: Effect) -> Result<(), String> {
        let (page, me) = (self.page, self.me);
        match failed {
            Effect::PageIn { .. } if !self.st.evicting => {
                if self.st.owner {
                    super::coherence::undo_page_in(page, self.st, self.out);
                }
                self.out.push(Effect::DataError { page, owner: me });
                Ok(())
            }
            Effect::SendStored {
                to,
                msg:
                    Message::Grant {
                        access: Access::Read,
                        ..
                    },
            }
            | Effect::Send {
                to,
                msg:
                    Message::Grant {
                        access: Access::Read,
                        with_data: true,
                        ..
                    },
            } if to != me
                && self.st.owner
                && self.e.busy == Some(DynamicBusy::AwaitingConfirm { reader: to }) =>
            {
                self.e.copyset.remove(to);
                self.e.busy = None;
                self.send(
                    to,
                    Message::DataError {
                        page,
                        access: Access::Read,
                    },
                );
                self.drain()
            }
            Effect::SendStored {
                to,
                msg:
                    Message::Grant {
                        access: Access::Write,
                        ..
                    },
            }
            | Effect::Send {
                to,
                msg:
                    Message::Grant {
                        access: Access::Write,
                        with_data: true,
                        ..
                    },
            } if to != me
                && !self.st.owner
                && self.st.access == Access::None
                && !self.st.evicting
                && self.e.busy.is_none() =>
            {
                // Ownership stays here, paged out; requests passed on to `to` meanwhile
                // come back through it (it points here once told).
                self.st.owner = true;
                self.st.fenced = false;
                self.e.prob_owner = me;
                self.e.copyset = NodeSet::default();
                self.send(
                    to,
                    Message::DataError {
                        page,
                        access: Access::Write,
                    },
                );
                self.drain()
            }
            other => Err(format!(
                "a data error for {other:?} at node {me}, whose page {page} is {:?}",
                self.st
            )),
        }
    }

    /// The reader `from` confirmed its copy.
    pub fn confirm(&mut self, from: NodeId, access: Access) -> Result<(), String> {
        match self.e.busy {
            Some(DynamicBusy::AwaitingConfirm { reader })
                if reader == from && access == Access::Read && self.st.owner =>
            {
                self.e.busy = None;
                self.drain()
            }
            Some(DynamicBusy::Passing { to })
                if to == from && access == Access::Read && !self.st.owner =>
            {
                self.e.busy = None;
                self.drain()
            }
            _ => Err(format!(
                "unexpected confirm for page {} from node {from} at node {}",
                self.page, self.me
            )),
        }
    }

    /// Start evicting this node's frame of the page (the caller checked it is evictable).
    pub fn evict(&mut self, hand_off: Option<NodeId>) -> Result<(), String> {
        let (page, me) = (self.page, self.me);
        if !self.st.owner {
            // Off the copyset first; the contents stay until the owner's reply, in case
            // ownership comes here meanwhile.
            self.st.evicting = true;
            self.st.fenced = false;
            self.set_access(Access::None);
            let to = self.e.prob_owner;
            self.send(
                to,
                Message::Request {
                    page,
                    requester: me,
                    access: Access::None,
                },
            );
            return Ok(());
        }
        let mut holders = self.e.copyset;
        holders.remove(me);
        if let Some(h) = holders.iter().next() {
            holders.remove(h);
            self.st.owner = false;
            self.st.access = Access::None;
            self.st.fenced = false;
            self.out.push(Effect::Evicted {
                page,
                class: EvictClass::PassedOwnership,
            });
            self.e.prob_owner = h;
            self.e.copyset = NodeSet::default();
            self.e.busy = Some(DynamicBusy::Passing { to: h });
            self.send(
                h,
                Message::Adopt {
                    page,
                    copyset: holders,
                },
            );
            return Ok(());
        }
        match hand_off {
            // A fenced only copy is written back (no local access to hand the receiver).
            Some(t) if t != me && !self.st.fenced => {
                let access = self.st.access;
                self.st.owner = false;
                self.st.evicting = true;
                self.set_access(Access::None);
                self.e.busy = Some(DynamicBusy::HandingOff { to: t });
                self.send(t, Message::HandOff { page, access });
            }
            _ => {
                self.out.push(Effect::WriteBack { page });
                self.st.access = Access::None;
                self.st.fenced = false;
                self.out.push(Effect::Evicted {
                    page,
                    class: EvictClass::WrittenBack,
                });
            }
        }
        Ok(())
    }

    /// The owner took this node's read copy off the copyset: the eviction is done.
    pub fn drop_reply(&mut self) -> Result<(), String> {
        if !self.st.evicting || self.st.owner || self.e.busy.is_some() {
            return Err(format!(
                "eviction reply for page {} at node {}, which does not drop a copy of it",
                self.page, self.me
            ));
        }
        let page = self.page;
        self.st.evicting = false;
        self.st.access = Access::None;
        self.st.fenced = false;
        self.out.push(Effect::Evicted {
            page,
            class: EvictClass::DroppedCopy,
        });
        self.out.push(Effect::Served { page });
        Ok(())
    }

    /// The evicting owner `from` passes ownership here, with the other copies.
    pub fn adopt(&mut self, from: NodeId, copyset: NodeSet) -> Result<(), String> {
        let page = self.page;
        if self.st.owner || (self.st.access != Access::Read && !self.st.evicting && !self.st.fenced)
        {
            return Err(format!(
                "ownership of page {page} without data at node {}, which has no copy",
                self.me
            ));
        }
        self.st.owner = true;
        // Rights that shrank since this node took its copy (a revocation) leave the page
        // fenced: its contents are kept, local threads stay off them.
        if self.limit == Access::None {
            self.st.fenced = true;
            self.set_access(Access::None);
        } else if !self.st.fenced {
            self.set_access(Access::Read);
        }
        let mut copyset = copyset;
        copyset.remove(self.me);
        self.e.copyset = copyset;
        self.e.prob_owner = self.me;
        self.send(
            from,
            Message::Confirm {
                page,
                access: Access::Read,
            },
        );
        self.drain()
    }

    /// `from` hands its only copy off to this node: take it (and ownership) when there is a
    /// free frame (`room`) and nothing of the page is here.
    pub fn hand_off(&mut self, from: NodeId, access: Access, room: bool) -> Result<(), String> {
        let page = self.page;
        let accepted = room
            && access != Access::None
            && *self.st == PageState::ABSENT
            && self.e.busy.is_none()
            && self.e.queue.is_empty();
        if accepted {
            self.st.owner = true;
            self.st.access = access;
            self.out.push(Effect::Install { page, access });
            self.e.prob_owner = self.me;
            self.e.copyset = NodeSet::default();
        }
        self.send(from, Message::HandOffReply { page, accepted });
        Ok(())
    }

    /// The receiver `from` of this node's hand-off answered.
    pub fn hand_off_reply(&mut self, from: NodeId, accepted: bool) -> Result<(), String> {
        let page = self.page;
        match self.e.busy {
            Some(DynamicBusy::HandingOff { to }) if to == from && self.st.evicting => {}
            _ => {
                return Err(format!(
                    "hand-off reply for page {page} from node {from} at node {}, which hands \
                     nothing off to it",
                    self.me
                ));
            }
        }
        self.e.busy = None;
        self.st.evicting = false;
        if accepted {
            self.e.prob_owner = from;
            self.out.push(Effect::Evicted {
                page,
                class: EvictClass::HandedOff,
            });
        } else {
            // No room there: back to the store, and this node stays the owner.
            self.st.owner = true;
            self.e.prob_owner = self.me;
            self.out.push(Effect::WriteBack { page });
            self.out.push(Effect::Evicted {
                page,
                class: EvictClass::WrittenBack,
            });
        }
        self.out.push(Effect::Served { page });
        self.drain()
    }
}
