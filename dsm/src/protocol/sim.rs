//! A whole cluster of protocol state machines in memory, with the network as a bag of
//! messages that the caller delivers in any order. Page contents are version numbers: the
//! simulator attaches the sender's version to a Grant with data, exactly as the runtime
//! attaches the page's bytes. Tests (and models) use it to drive the very code the runtime
//! runs, and [`SimCluster::check`] states the coherence invariants.

use super::coherence::{Coherence, PageState, ProtocolError};
use super::manager::Busy;
use super::message::{Effect, Message};
use super::rights::{CapId, CapRecord};
use super::unwritten::Unwritten;
use crate::types::{Access, ManagerKind, NodeId, PageNo};

/// A message in flight.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Envelope {
    /// Sender.
    pub from: NodeId,
    /// Receiver.
    pub to: NodeId,
    /// The message.
    pub msg: Message,
    /// The page version it carries (Grant with data).
    pub data: Option<u64>,
}

/// Several nodes' state machines, their page contents, and the messages between them.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SimCluster {
    /// Each node's protocol state.
    pub nodes: Vec<Coherence>,
    /// `contents[node][page]`: the version of the page in that node's memory.
    pub contents: Vec<Vec<u64>>,
    /// The last version written to each page.
    pub latest: Vec<u64>,
    /// Messages sent and not yet delivered, sorted (a multiset).
    pub in_flight: Vec<Envelope>,
    /// The backing store: the version of each page last written back (0 at start).
    pub store: Vec<u64>,
    /// Faults refused since the caller last emptied it: (node, page, access), from
    /// [`Effect::Denied`].
    pub denied: Vec<(NodeId, PageNo, Access)>,
    /// Refusals sent since the caller last emptied it: (deciding node, requester, page,
    /// access).
    pub refusals: Vec<(NodeId, NodeId, PageNo, Access)>,
    /// Capability rounds finished since the caller last emptied it: (node, capability),
    /// from [`Effect::CapDone`].
    pub cap_done: Vec<(NodeId, CapId)>,
    /// Whether the backing store's pager fails every read from now on (its writes still
    /// reach it): each page-in is undone ([`Coherence::data_error`]).
    pub store_fails: bool,
    /// Faults failed since the caller last emptied it: (node, page), from
    /// [`Effect::DataError`].
    pub data_errors: Vec<(NodeId, PageNo)>,
    /// Whether the backing store's pager fails every write (`data_write`) now: a write-back
    /// keeps the page's version at its node instead ([`SimCluster::kept`]).
    pub write_fails: bool,
    /// Per node: the versions of the pages whose write-back failed there, kept until written
    /// ([`SimCluster::retry`]) or no longer owned, as the runtime keeps their contents
    /// ([`Unwritten`]). A read of such a page from the store at that node gets them.
    pub kept: Vec<Unwritten<u64>>,
}

/// The contents of a frame that was given up: any read of it is a bug the checks see.
pub const EVICTED: u64 = u64::MAX;

impl SimCluster {
    /// A cluster at start: node 0 owns every page, all versions 0.
    pub fn new(nodes: usize, pages: u32, kind: ManagerKind) -> Result<SimCluster, ProtocolError> {
        Ok(SimCluster {
            nodes: (0..nodes)
                .map(|i| Coherence::new(i as NodeId, nodes, pages, kind))
                .collect::<Result<_, _>>()?,
            contents: vec![vec![0; pages as usize]; nodes],
            latest: vec![0; pages as usize],
            in_flight: Vec::new(),
            store: vec![0; pages as usize],
            denied: Vec::new(),
            refusals: Vec::new(),
            cap_done: Vec::new(),
            store_fails: false,
            data_errors: Vec::new(),
            write_fails: false,
            kept: vec![Unwritten::new(); nodes],
        })
    }

    /// A cluster whose nodes hold at most `frames` pages each: every page starts in the
    /// backing store (version 0), owned by node 0 ([`Coherence::with_budget`]).
    pub fn with_budget(
        nodes: usize,
        pages: u32,
        kind: ManagerKind,
        frames: u32,
    ) -> Result<SimCluster, ProtocolError> {
        let mut c = SimCluster::new(nodes, pages, kind)?;
        c.nodes = (0..nodes)
            .map(|i| Coherence::with_budget(i as NodeId, nodes, pages, kind, frames))
            .collect::<Result<_, _>>()?;
        c.contents = vec![vec![EVICTED; pages as usize]; nodes];
        Ok(c)
    }

    /// Carry out the effects of one protocol step at `node`, as the runtime does: a message
    /// with data takes the node's current contents when it is sent, an install takes the
    /// contents of the message being handled (`data`). The messages in flight stay sorted,
    /// so two orders of sending the same messages give the same cluster. With
    /// [`SimCluster::store_fails`], a page-in or a send from the store fails as the runtime
    /// sees it: the page's contents stay as they were, the step's later effects that would
    /// read or change them are skipped or undone too, and the node's
    /// [`Coherence::data_error`] is carried out at once.
    pub fn apply(
        &mut self,
        node: NodeId,
        effects: Vec<Effect>,
        data: Option<u64>,
    ) -> Result<(), ProtocolError> {
        // Pages whose contents could not be read from the store in this step.
        let mut failed: Vec<PageNo> = Vec::new();
        for e in effects {
            let unreadable = match e {
                Effect::PageIn { page, .. } if self.store_fails => Some(page),
                Effect::SendStored { msg, .. } if self.store_fails => Some(msg.page()),
                Effect::Send { msg, .. } if msg.carries_data() && failed.contains(&msg.page()) => {
                    Some(msg.page())
                }
                _ => None,
            };
            if let Some(page) = unreadable {
                failed.push(page);
                let undo = self.nodes[node as usize].data_error(e)?;
                self.apply(node, undo, None)?;
                continue;
            }
            if let Effect::SetAccess { page, .. } | Effect::Install { page, .. } = e {
                // The undo decided this page's access.
                if failed.contains(&page) {
                    continue;
                }
            }
            match e {
                Effect::Send { to, msg } | Effect::SendStored { to, msg } => {
                    let stored = matches!(e, Effect::SendStored { .. });
                    if let Message::Refused { page, access } = msg {
                        self.refusals.push((node, to, page, access));
                    }
                    let data = msg.carries_data().then(|| {
                        if stored {
                            self.stored(node, msg.page())
                        } else {
                            self.contents[node as usize][msg.page() as usize]
                        }
                    });
                    let env = Envelope {
                        from: node,
                        to,
                        msg,
                        data,
                    };
                    let at = self.in_flight.partition_point(|x| *x <= env);
                    self.in_flight.insert(at, env);
                }
                Effect::Install { page, .. } => match data {
                    Some(v) => self.contents[node as usize][page as usize] = v,
                    None => {
                        return Err(ProtocolError(format!(
                            "node {node} installs page {page} from a message without data"
                        )));
                    }
                },
                Effect::PageIn { page, .. } => {
                    self.contents[node as usize][page as usize] = self.stored(node, page);
                }
                Effect::WriteBack { page } => {
                    let version = self.contents[node as usize][page as usize];
                    if self.write_fails {
                        self.kept[node as usize].failed(page, version);
                    } else {
                        self.store[page as usize] = version;
                        self.kept[node as usize].written(page);
                    }
                }
                Effect::Evicted { page, .. } => {
                    self.contents[node as usize][page as usize] = EVICTED;
                }
                Effect::Denied { page, access } => self.denied.push((node, page, access)),
                Effect::DataError { page, .. } => self.data_errors.push((node, page)),
                Effect::CapDone { cap } => self.cap_done.push((node, cap)),
                // The pager's answer comes as SimCluster::data_lock (see Coherence::unlocking).
                Effect::Received { .. } | Effect::DataUnlock { .. } => {}
                Effect::SetAccess { .. } | Effect::Served { .. } | Effect::Hold { .. } => {}
            }
        }
        self.settle_kept(node);
        Ok(())
    }

    /// What a read of `page` from the store gets at `node`: the version it kept when its
    /// write-back failed, else the store's.
    pub fn stored(&self, node: NodeId, page: PageNo) -> u64 {
        self.kept[node as usize]
            .get(page)
            .copied()
            .unwrap_or(self.store[page as usize])
    }

    /// After a step at `node`: versions it kept for pages it no longer owns are dropped
    /// ([`Unwritten::settle`]), and its protocol counts the frames the others take.
    fn settle_kept(&mut self, node: NodeId) {
        let (c, kept) = (
            &mut self.nodes[node as usize],
            &mut self.kept[node as usize],
        );
        for page in 0..c.pages() {
            if let Some(st) = c.page(page) {
                kept.settle(page, &st);
            }
        }
        c.set_reserved(kept.len());
    }

    /// Node `node` writes the versions it kept again (the runtime's retry): unless the
    /// store's writes fail, they reach it and their frames are free.
    pub fn retry(&mut self, node: NodeId) {
        if self.write_fails {
            return;
        }
        let kept = &mut self.kept[node as usize];
        for page in kept.pages().collect::<Vec<_>>() {
            if let Some(version) = kept.written(page) {
                self.store[page as usize] = version;
            }
        }
        self.nodes[node as usize].set_reserved(0);
    }

    /// Node `node` faults on `page` for `access`.
    pub fn fault(
        &mut self,
        node: NodeId,
        page: PageNo,
        access: Access,
    ) -> Result<(), ProtocolError> {
        let effects = self.nodes[node as usize].fault(page, access)?;
        self.apply(node, effects, None)
    }

    /// The Δt timer of `page` at `node` fires.
    pub fn expire(&mut self, node: NodeId, page: PageNo) -> Result<(), ProtocolError> {
        let effects = self.nodes[node as usize].hold_expired(page)?;
        self.apply(node, effects, None)
    }

    /// Node `node` starts evicting `page`, handing an only copy to `hand_off` if it can.
    pub fn evict(
        &mut self,
        node: NodeId,
        page: PageNo,
        hand_off: Option<NodeId>,
    ) -> Result<(), ProtocolError> {
        let effects = self.nodes[node as usize].evict(page, hand_off)?;
        self.apply(node, effects, None)
    }

    /// Node `node` brings its own pages `first .. first + count` in from the store for
    /// reading in one step ([`Coherence::page_in_run`]).
    pub fn page_in_run(
        &mut self,
        node: NodeId,
        first: PageNo,
        count: u32,
    ) -> Result<(), ProtocolError> {
        let effects = self.nodes[node as usize].page_in_run(first, count)?;
        self.apply(node, effects, None)
    }

    /// Node `node` drops its own clean pages `first .. first + count` in one step
    /// ([`Coherence::drop_clean_run`]).
    pub fn drop_clean_run(
        &mut self,
        node: NodeId,
        first: PageNo,
        count: u32,
    ) -> Result<(), ProtocolError> {
        let effects = self.nodes[node as usize].drop_clean_run(first, count)?;
        self.apply(node, effects, None)
    }

    /// Node `node` writes `page` back if it owns it dirty, keeping it
    /// ([`Coherence::clean`], a pager's `clean_request`).
    pub fn clean(&mut self, node: NodeId, page: PageNo) -> Result<(), ProtocolError> {
        let effects = self.nodes[node as usize].clean(page)?;
        self.apply(node, effects, None)
    }

    /// The pager locks `page` at node `node` to `lock` access (`pager_data_lock`, also its
    /// answer to the node's `data_unlock`: [`Coherence::data_lock`]).
    pub fn data_lock(
        &mut self,
        node: NodeId,
        page: PageNo,
        lock: Access,
    ) -> Result<(), ProtocolError> {
        let effects = self.nodes[node as usize].data_lock(page, 1, lock);
        self.apply(node, effects, None)
    }

    /// Node `node` makes capability `record` and sends it to every node
    /// ([`Coherence::share`]).
    pub fn share(&mut self, node: NodeId, record: CapRecord) -> Result<(), ProtocolError> {
        let effects = self.nodes[node as usize].share(record)?;
        self.apply(node, effects, None)
    }

    /// Node `node` revokes capability `cap` ([`Coherence::revoke`]).
    pub fn revoke(&mut self, node: NodeId, cap: CapId) -> Result<(), ProtocolError> {
        let effects = self.nodes[node as usize].revoke(cap)?;
        self.apply(node, effects, None)
    }

    /// Node `node` restricts capability `cap`, which it holds, to `rights`
    /// ([`Coherence::restrict`]).
    pub fn restrict(&mut self, node: NodeId, cap: CapId, rights: u8) -> Result<(), ProtocolError> {
        let effects = self.nodes[node as usize].restrict(cap, rights)?;
        self.apply(node, effects, None)
    }

    /// Deliver every message in flight, oldest in the sorted order first, until none is
    /// left (a capability round, say, finished everywhere).
    pub fn settle(&mut self) -> Result<(), ProtocolError> {
        while !self.in_flight.is_empty() {
            self.deliver(0)?;
        }
        Ok(())
    }

    /// Deliver the in-flight message at `index`.
    pub fn deliver(&mut self, index: usize) -> Result<(), ProtocolError> {
        let env = self.in_flight.remove(index);
        let effects = self.nodes[env.to as usize].handle(env.from, env.msg)?;
        self.apply(env.to, effects, env.data)
    }

    /// The local access of `node` to `page`.
    pub fn access(&self, node: NodeId, page: PageNo) -> Access {
        self.nodes[node as usize]
            .page(page)
            .map(|s| s.access)
            .unwrap_or(Access::None)
    }

    /// A write by `node` to `page` (it must have write access): a new version.
    pub fn write(&mut self, node: NodeId, page: PageNo) -> Result<u64, ProtocolError> {
        if self.access(node, page) != Access::Write {
            return Err(ProtocolError(format!(
                "node {node} writes page {page} without access"
            )));
        }
        let v = self.latest[page as usize] + 1;
        self.latest[page as usize] = v;
        self.contents[node as usize][page as usize] = v;
        Ok(v)
    }

    /// A read by `node` of `page` (it must have read access): the version it sees.
    pub fn read(&self, node: NodeId, page: PageNo) -> Result<u64, ProtocolError> {
        if self.access(node, page) < Access::Read {
            return Err(ProtocolError(format!(
                "node {node} reads page {page} without access"
            )));
        }
        Ok(self.contents[node as usize][page as usize])
    }

    /// The coherence invariants; the first one broken is described in the error.
    ///
    /// - at most one writer per page, and no reader beside a writer;
    /// - at most one owner per page;
    /// - every node that can read a page sees its last written version (no write is lost);
    /// - every non-owner with a read copy is in the manager's copyset, or is the requester
    ///   whose transaction the manager is still finishing.
    pub fn check(&self) -> Result<(), String> {
        for page in 0..self.latest.len() as u32 {
            let paged_out = (0..self.nodes.len())
                .find(|&n| self.nodes[n].page(page).is_some_and(|s| s.paged_out()));
            if let Some(n) = paged_out {
                let stored = self.stored(n as NodeId, page);
                if stored != self.latest[page as usize] {
                    return Err(format!(
                        "page {page}: paged out at node {n}, but its store holds version \
                         {stored} and {} was written",
                        self.latest[page as usize]
                    ));
                }
            }
            let states: Vec<_> = self
                .nodes
                .iter()
                .map(|n| n.page(page).unwrap_or(PageState::ABSENT))
                .collect();
            let writers = states.iter().filter(|s| s.access == Access::Write).count();
            let readers = states.iter().filter(|s| s.access == Access::Read).count();
            if writers > 1 || (writers == 1 && readers > 0) {
                return Err(format!(
                    "page {page}: {writers} writers and {readers} readers"
                ));
            }
            if states.iter().filter(|s| s.owner).count() > 1 {
                return Err(format!("page {page}: more than one owner"));
            }
            let manager = self.nodes[0].manager_of(page);
            let entry = self.nodes[manager as usize].manager_entry(page);
            for (n, s) in states.iter().enumerate() {
                if s.access >= Access::Read
                    && self.contents[n][page as usize] != self.latest[page as usize]
                {
                    return Err(format!(
                        "page {page}: node {n} can read version {} but {} was written",
                        self.contents[n][page as usize], self.latest[page as usize]
                    ));
                }
                if s.access == Access::Read && !s.owner {
                    let listed = if self.nodes[0].kind() == ManagerKind::Dynamic {
                        // In the owner's copyset; or ownership is on its way to this node
                        // (its copy is current, the others were invalidated).
                        let owner = states.iter().position(|s| s.owner);
                        match owner {
                            Some(o) => self.nodes[o]
                                .dynamic_entry(page)
                                .is_some_and(|e| e.copyset.contains(n as NodeId)),
                            None => {
                                s.pending == Some(Access::Write)
                                    || self.adopt_in_flight_lists(page, n as NodeId)
                            }
                        }
                    } else {
                        entry.is_some_and(|e| {
                            e.copyset.contains(n as NodeId)
                                || e.busy.is_some_and(|b| match b {
                                    Busy::Access(t) => t.requester == n as NodeId,
                                    Busy::Adopting { to, .. } => to == n as NodeId,
                                    Busy::HandingOff { .. } => false,
                                })
                        })
                    };
                    if !listed {
                        return Err(format!(
                            "page {page}: node {n} holds a read copy but is not in the copyset"
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// Dynamic manager: an Adopt in flight (ownership passing between two nodes) lists `n`
    /// as its destination or in the copyset it carries.
    fn adopt_in_flight_lists(&self, page: PageNo, n: NodeId) -> bool {
        self.in_flight.iter().any(|e| match e.msg {
            Message::Adopt { page: p, copyset } if p == page => e.to == n || copyset.contains(n),
            _ => false,
        })
    }

    /// Whether every node's faults are served and no message is in flight.
    pub fn quiescent(&self) -> bool {
        self.in_flight.is_empty()
            && self.nodes.iter().all(|n| {
                (0..n.pages()).all(|p| {
                    n.page(p)
                        .is_some_and(|s| s.pending.is_none() && !s.evicting)
                })
            })
    }
}
