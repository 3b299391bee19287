//! One node's coherence state machine: its page table (local access, ownership, pending
//! fault) and, for the pages it manages, the manager entries. Messages and faults go in,
//! [`Effect`]s come out; there is no I/O, no clock and no randomness, so a model checker can
//! drive the same code as the runtime.

use std::fmt;

use super::dynamic::{DynamicEntry, PageCtx};
use super::manager::ManagerEntry;
use super::message::{Effect, Message};
use crate::types::{Access, ManagerKind, NodeId, PageNo};

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
            pending: None,
        };
        let mut c = Coherence {
            id,
            nodes: nodes as u16,
            kind,
            pages: vec![initial; pages as usize],
            managed: Vec::new(),
            dynamic: Vec::new(),
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
        let manager = self.manager_of(page);
        let st = self.state(page)?;
        if st.access >= access || access == Access::None {
            return Ok(vec![Effect::Served { page }]);
        }
        if st.pending.is_some() {
            return Ok(Vec::new());
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

    /// Handle `msg` from `from`.
    pub fn handle(&mut self, from: NodeId, msg: Message) -> Result<Vec<Effect>, ProtocolError> {
        if from >= self.nodes {
            return Err(ProtocolError(format!("message from unknown node {from}")));
        }
        // A node named in a message comes from the wire: one outside the cluster would have
        // this node send to a peer that does not exist.
        let named = match msg {
            Message::ReadForward { to, .. } | Message::WriteForward { to, .. } => Some(to),
            Message::Request { requester, .. } => Some(requester),
            _ => None,
        };
        if let Some(n) = named.filter(|&n| n >= self.nodes) {
            return Err(ProtocolError(format!(
                "{msg:?} from node {from} names node {n}, outside the cluster of {}",
                self.nodes
            )));
        }
        let page = msg.page();
        let me = self.id;
        let manager = self.manager_of(page);
        let mut out = Vec::new();
        if self.kind == ManagerKind::Dynamic {
            let nodes = self.nodes;
            let mut ctx = self.dynamic_ctx(page, &mut out)?;
            let r = match msg {
                Message::Request {
                    requester, access, ..
                } if requester < nodes => ctx.request(requester, access),
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
            Message::ReadRequest { .. } | Message::WriteRequest { .. } => {
                let access = if matches!(msg, Message::ReadRequest { .. }) {
                    Access::Read
                } else {
                    Access::Write
                };
                self.entry(page)?.request(page, from, access, &mut out);
            }
            Message::InvalidateAck { .. } => {
                self.entry(page)?
                    .invalidate_ack(page, from, &mut out)
                    .map_err(ProtocolError)?;
            }
            Message::Confirm { access, .. } => {
                self.entry(page)?
                    .confirm(page, from, access, &mut out)
                    .map_err(ProtocolError)?;
            }
            Message::ReadForward { to, .. } => {
                let st = self.state(page)?;
                if !st.owner {
                    return Err(ProtocolError(format!(
                        "read forward for page {page} to node {me}, which does not own it"
                    )));
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
                let st = self.state(page)?;
                if !st.owner {
                    return Err(ProtocolError(format!(
                        "write forward for page {page} to node {me}, which does not own it"
                    )));
                }
                if to == me {
                    // Upgrade in place: the copies are gone, our contents are current.
                    st.access = Access::Write;
                    st.pending = None;
                    out.push(Effect::SetAccess {
                        page,
                        access: Access::Write,
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
                    st.access = Access::None;
                    out.push(Effect::SetAccess {
                        page,
                        access: Access::None,
                    });
                    out.push(Effect::Send {
                        to,
                        msg: Message::Grant {
                            page,
                            access: Access::Write,
                            with_data: send_data,
                        },
                    });
                }
            }
            Message::Invalidate { .. } => {
                let st = self.state(page)?;
                if st.owner {
                    return Err(ProtocolError(format!(
                        "invalidation of page {page} at its owner {me}"
                    )));
                }
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
                let st = self.state(page)?;
                if st.pending != Some(access) {
                    return Err(ProtocolError(format!(
                        "grant of {access:?} for page {page} that node {me} did not ask for"
                    )));
                }
                if !with_data && from != me && st.access == Access::None && access == Access::Write
                {
                    return Err(ProtocolError(format!(
                        "ownership of page {page} without data at node {me}, which has no copy"
                    )));
                }
                st.pending = None;
                if access == Access::Write {
                    st.owner = true;
                }
                if st.access != access || with_data {
                    st.access = access;
                    out.push(if with_data {
                        Effect::Install { page, access }
                    } else {
                        Effect::SetAccess { page, access }
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

    fn entry(&mut self, page: PageNo) -> Result<&mut ManagerEntry, ProtocolError> {
        let me = self.id;
        self.managed
            .get_mut(page as usize)
            .and_then(|m| m.as_mut())
            .ok_or_else(|| {
                ProtocolError(format!(
                    "node {me} got a manager message for page {page} it does not manage"
                ))
            })
    }
}
