//! The page manager's side of the protocol (IVY's central and fixed distributed managers):
//! for each page it manages, the owner, the copyset and a FIFO of requests. It serves one
//! request per page at a time; the requester's Confirm ends the transaction.

use std::collections::VecDeque;

use super::message::{Effect, EvictOutcome, Message};
use crate::types::{Access, NodeId, PageNo};

/// A set of nodes as a bit mask (node ids below 64).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeSet(pub u64);

impl NodeSet {
    /// Whether `n` is in the set.
    pub fn contains(self, n: NodeId) -> bool {
        self.0 & (1u64 << n) != 0
    }
    /// Add `n`.
    pub fn insert(&mut self, n: NodeId) {
        self.0 |= 1u64 << n;
    }
    /// Remove `n`.
    pub fn remove(&mut self, n: NodeId) {
        self.0 &= !(1u64 << n);
    }
    /// The members, in increasing order.
    pub fn iter(self) -> impl Iterator<Item = NodeId> {
        (0..64u16).filter(move |&n| self.contains(n))
    }
    /// The number of members.
    pub fn len(self) -> usize {
        self.0.count_ones() as usize
    }
    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

/// A request a manager queues for a page.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Want {
    /// Read or write access.
    Access(Access),
    /// The node wants its frame back ([`Message::Evict`]).
    Evict {
        /// Where an only copy may go.
        hand_off: Option<NodeId>,
    },
}

/// The request a manager is serving for a page.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Transaction {
    /// Who asked.
    pub requester: NodeId,
    /// What for.
    pub access: Access,
    /// Invalidation acknowledgements still expected (write requests).
    pub acks_left: u32,
}

/// What a manager is in the middle of for a page.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Busy {
    /// Serving a read or write request.
    Access(Transaction),
    /// The evicting owner `from` passes ownership to `to`, a holder of a copy; done when
    /// `to` confirms.
    Adopting {
        /// The evicting owner.
        from: NodeId,
        /// The new owner.
        to: NodeId,
    },
    /// The evicting owner `from` hands the only copy to `to`; done when `from` confirms
    /// (with the access `to` took, or None: refused, `from` still owns it).
    HandingOff {
        /// The evicting owner.
        from: NodeId,
        /// The receiver.
        to: NodeId,
    },
}

/// What the manager knows about one page.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ManagerEntry {
    /// The node that owns the page.
    pub owner: NodeId,
    /// The nodes holding read copies, the owner excluded.
    pub copyset: NodeSet,
    /// What the manager is doing for the page, if anything.
    pub busy: Option<Busy>,
    /// Requests waiting, in arrival order.
    pub queue: VecDeque<(NodeId, Want)>,
}

impl ManagerEntry {
    /// A page owned by `owner`, with no copies.
    pub fn new(owner: NodeId) -> ManagerEntry {
        ManagerEntry {
            owner,
            copyset: NodeSet::default(),
            busy: None,
            queue: VecDeque::new(),
        }
    }

    /// The read or write request being served, if any.
    pub fn transaction(&self) -> Option<Transaction> {
        match self.busy {
            Some(Busy::Access(t)) => Some(t),
            _ => None,
        }
    }

    /// Queue a request and start it if the page is idle. `allowed(node, access)`: whether
    /// the rights `node` holds now let it have `access` to the page (asked when a request
    /// starts and again when a write's invalidations end: the rights may have shrunk while it
    /// waited; a request they no longer allow is refused).
    pub fn request(
        &mut self,
        page: PageNo,
        from: NodeId,
        want: Want,
        allowed: &dyn Fn(NodeId, Access) -> bool,
        out: &mut Vec<Effect>,
    ) {
        self.queue.push_back((from, want));
        self.start_next(page, allowed, out);
    }

    fn start_next(
        &mut self,
        page: PageNo,
        allowed: &dyn Fn(NodeId, Access) -> bool,
        out: &mut Vec<Effect>,
    ) {
        while self.busy.is_none() {
            let Some((requester, want)) = self.queue.pop_front() else {
                return;
            };
            match want {
                Want::Access(access) if !allowed(requester, access) => out.push(Effect::Send {
                    to: requester,
                    msg: Message::Refused { page, access },
                }),
                Want::Access(access) => self.start_access(page, requester, access, out),
                Want::Evict { hand_off } => self.start_evict(page, requester, hand_off, out),
            }
        }
    }

    /// `from` wants its frame back: decide how, by what it is now.
    fn start_evict(
        &mut self,
        page: PageNo,
        from: NodeId,
        hand_off: Option<NodeId>,
        out: &mut Vec<Effect>,
    ) {
        let outcome = if self.owner != from {
            self.copyset.remove(from);
            EvictOutcome::Drop
        } else {
            let mut holders = self.copyset;
            holders.remove(from);
            match (holders.iter().next(), hand_off) {
                (Some(h), _) => {
                    self.busy = Some(Busy::Adopting { from, to: h });
                    EvictOutcome::PassTo(h)
                }
                (None, Some(t)) if t != from => {
                    self.busy = Some(Busy::HandingOff { from, to: t });
                    EvictOutcome::HandOffTo(t)
                }
                (None, _) => EvictOutcome::WriteBack,
            }
        };
        out.push(Effect::Send {
            to: from,
            msg: Message::EvictReply { page, outcome },
        });
    }

    fn start_access(
        &mut self,
        page: PageNo,
        requester: NodeId,
        access: Access,
        out: &mut Vec<Effect>,
    ) {
        if access == Access::Read {
            self.busy = Some(Busy::Access(Transaction {
                requester,
                access,
                acks_left: 0,
            }));
            out.push(Effect::Send {
                to: self.owner,
                msg: Message::ReadForward {
                    page,
                    to: requester,
                },
            });
            return;
        }
        let mut holders = self.copyset;
        holders.remove(requester);
        holders.remove(self.owner);
        self.busy = Some(Busy::Access(Transaction {
            requester,
            access,
            acks_left: holders.len() as u32,
        }));
        if holders.is_empty() {
            self.forward_write(page, out);
        } else {
            for n in holders.iter() {
                out.push(Effect::Send {
                    to: n,
                    msg: Message::Invalidate { page },
                });
            }
        }
    }

    fn forward_write(&mut self, page: PageNo, out: &mut Vec<Effect>) {
        let Some(t) = self.transaction() else { return };
        let current_copy = t.requester == self.owner || self.copyset.contains(t.requester);
        out.push(Effect::Send {
            to: self.owner,
            msg: Message::WriteForward {
                page,
                to: t.requester,
                send_data: !current_copy,
            },
        });
    }

    /// An invalidation was acknowledged by `from`. The last one forwards the write, if the
    /// requester's rights still allow it (see [`ManagerEntry::request`]); else the request
    /// is refused and the next one starts.
    pub fn invalidate_ack(
        &mut self,
        page: PageNo,
        from: NodeId,
        allowed: &dyn Fn(NodeId, Access) -> bool,
        out: &mut Vec<Effect>,
    ) -> Result<(), String> {
        match &mut self.busy {
            Some(Busy::Access(t)) if t.access == Access::Write && t.acks_left > 0 => {
                t.acks_left -= 1;
                self.copyset.remove(from);
                if t.acks_left == 0 {
                    let requester = t.requester;
                    if allowed(requester, Access::Write) {
                        self.forward_write(page, out);
                    } else {
                        self.busy = None;
                        out.push(Effect::Send {
                            to: requester,
                            msg: Message::Refused {
                                page,
                                access: Access::Write,
                            },
                        });
                        self.start_next(page, allowed, out);
                    }
                }
                Ok(())
            }
            _ => Err(format!(
                "unexpected invalidation ack for page {page} from node {from}"
            )),
        }
    }

    /// The requester confirmed: record the new owner or copy and serve the next request.
    /// Or an ownership move ended: the adopting node confirmed, or the evicting node
    /// reported its hand-off (the access the receiver took; None: refused). A requester's
    /// confirm of access None: its transfer failed (the owner's store could not provide the
    /// page), nothing changed.
    pub fn confirm(
        &mut self,
        page: PageNo,
        from: NodeId,
        access: Access,
        allowed: &dyn Fn(NodeId, Access) -> bool,
        out: &mut Vec<Effect>,
    ) -> Result<(), String> {
        match self.busy {
            Some(Busy::Access(t))
                if t.requester == from && t.access == access && t.acks_left == 0 =>
            {
                if access == Access::Write {
                    self.owner = from;
                    self.copyset = NodeSet::default();
                } else if from != self.owner {
                    self.copyset.insert(from);
                }
            }
            // The owner's store could not provide the page (`Message::DataError`): the
            // transfer did not happen, nothing changes.
            Some(Busy::Access(t))
                if t.requester == from && access == Access::None && t.acks_left == 0 => {}
            Some(Busy::Adopting { from: old, to }) if to == from && access == Access::Read => {
                self.owner = to;
                self.copyset.remove(to);
                self.copyset.remove(old);
            }
            Some(Busy::HandingOff { from: old, to }) if old == from => {
                if access != Access::None {
                    self.owner = to;
                    self.copyset = NodeSet::default();
                }
            }
            _ => {
                return Err(format!(
                    "unexpected confirm of {access:?} for page {page} from node {from}"
                ));
            }
        }
        self.busy = None;
        self.start_next(page, allowed, out);
        Ok(())
    }
}
