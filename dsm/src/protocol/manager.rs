//! The page manager's side of the protocol (IVY's central and fixed distributed managers):
//! for each page it manages, the owner, the copyset and a FIFO of requests. It serves one
//! request per page at a time; the requester's Confirm ends the transaction.

use std::collections::VecDeque;

use super::message::{Effect, Message};
use crate::types::{Access, NodeId, PageNo};

/// A set of nodes as a bit mask (node ids below 64).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
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

/// What the manager knows about one page.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ManagerEntry {
    /// The node that owns the page.
    pub owner: NodeId,
    /// The nodes holding read copies, the owner excluded.
    pub copyset: NodeSet,
    /// The request being served, if any.
    pub busy: Option<Transaction>,
    /// Requests waiting, in arrival order.
    pub queue: VecDeque<(NodeId, Access)>,
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

    /// Queue a request and start it if the page is idle.
    pub fn request(&mut self, page: PageNo, from: NodeId, access: Access, out: &mut Vec<Effect>) {
        self.queue.push_back((from, access));
        self.start_next(page, out);
    }

    fn start_next(&mut self, page: PageNo, out: &mut Vec<Effect>) {
        if self.busy.is_some() {
            return;
        }
        let Some((requester, access)) = self.queue.pop_front() else {
            return;
        };
        if access == Access::Read {
            self.busy = Some(Transaction {
                requester,
                access,
                acks_left: 0,
            });
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
        self.busy = Some(Transaction {
            requester,
            access,
            acks_left: holders.len() as u32,
        });
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
        let Some(t) = self.busy else { return };
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

    /// An invalidation was acknowledged by `from`.
    pub fn invalidate_ack(
        &mut self,
        page: PageNo,
        from: NodeId,
        out: &mut Vec<Effect>,
    ) -> Result<(), String> {
        match &mut self.busy {
            Some(t) if t.access == Access::Write && t.acks_left > 0 => {
                t.acks_left -= 1;
                self.copyset.remove(from);
                if t.acks_left == 0 {
                    self.forward_write(page, out);
                }
                Ok(())
            }
            _ => Err(format!(
                "unexpected invalidation ack for page {page} from node {from}"
            )),
        }
    }

    /// The requester confirmed: record the new owner or copy and serve the next request.
    pub fn confirm(
        &mut self,
        page: PageNo,
        from: NodeId,
        access: Access,
        out: &mut Vec<Effect>,
    ) -> Result<(), String> {
        match self.busy {
            Some(t) if t.requester == from && t.access == access && t.acks_left == 0 => {
                if access == Access::Write {
                    self.owner = from;
                    self.copyset = NodeSet::default();
                } else if from != self.owner {
                    self.copyset.insert(from);
                }
                self.busy = None;
                self.start_next(page, out);
                Ok(())
            }
            _ => Err(format!(
                "unexpected confirm of {access:?} for page {page} from node {from}"
            )),
        }
    }
}
