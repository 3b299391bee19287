//! The node runtime: one per node process. It owns the connections to the peers, drives the
//! coherence protocol, the sync manager and the allocator with the messages that arrive, and
//! serves page faults for the fault backends ([`FaultResolver`]).
//!
//! Threads: each peer connection's reader thread runs the messages of that peer through the
//! protocol itself (no hand-off; it never waits for a reply), and the callers' own threads
//! (fault service threads, application threads calling lock/barrier/alloc) block until
//! served. Protocol steps run under one state lock; the messages they produce are sent after
//! the lock is released (the protocol allows any delivery order), so a served fault wakes
//! its thread without waiting for the sends; the messages one step produces for one peer go
//! out as one batch (one write). A lost peer fails every waiting and later operation with
//! [`DsmError::NodeLost`]; so does a page change the kernel refuses here (the node fails,
//! naming itself). [`prefetch`] starts the faults of many pages at once.
//!
//! ```no_run
//! use std::sync::Arc;
//! use std::time::Duration;
//! use memlink_dsm::{LocalPages, ManagerKind, NodeConfig, node::NodeRuntime};
//! use memlink_dsm::admission::{Admission, ClusterKey};
//! # fn pages() -> Arc<dyn LocalPages> { unimplemented!() }
//! let peers = vec!["127.0.0.1:7000".parse().unwrap(), "127.0.0.1:7001".parse().unwrap()];
//! let config = NodeConfig::builder(1, peers)
//!     .pages(256)
//!     .manager(ManagerKind::Central)
//!     .connect_timeout(Duration::from_secs(10))
//!     .admission(Admission::Key(ClusterKey::from_file("cluster.key".as_ref())?))
//!     .build()?;
//! let node = NodeRuntime::start(config, pages())?;   // waits for every peer
//! node.lock(0)?;
//! // ... touch shared pages: faults go through node.resolve_fault ...
//! node.unlock(0)?;
//! node.barrier(1)?;
//! let offset = node.alloc(1024, 64)?;
//! node.shutdown()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::{HashSet, VecDeque};
use std::net::TcpListener;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::Duration;

mod budget;
pub mod capabilities;
mod pager;
pub use pager::PagerCommandLink;
pub mod prefetch;
mod read_ahead;
pub mod tasks;
mod timers;
pub mod wire;

use crate::alloc::FirstFit;
use crate::protocol::{Coherence, Effect, Message, codec};
use crate::remote::{
    CallError, ConnectError, Endpoint, EventSource, Incoming, Responder, TcpConfig, TcpTransport,
    Transport,
};
use crate::replacement::{BackingStore, Lru, PeerFrames};
use crate::sync::{SyncManager, manager_of};
use crate::types::{
    Access, DsmError, FaultResolver, LocalPages, NodeConfig, NodeId, NodeStats, PAGE_SIZE, PageNo,
};
use budget::EvictionCounters;
use timers::Timers;
use wire::{Request, SERVICE_COHERENCE, SERVICE_FREE_FRAMES, SERVICE_TASKS};

/// The barrier every node passes in [`NodeRuntime::shutdown`].
pub const SHUTDOWN_BARRIER: u32 = u32::MAX;

/// How often a blocked caller re-checks for a failed cluster (a safety net: failures also
/// wake callers directly).
const RECHECK: Duration = Duration::from_millis(200);

/// Someone waiting for a lock grant or a barrier release.
enum Waiter {
    /// A remote node's request, answered by a reply.
    Remote(Responder),
    /// A thread of this node.
    Local(Sender<Result<(), String>>),
}

impl Waiter {
    fn release(self, result: Result<(), DsmError>) {
        match self {
            Waiter::Remote(r) => {
                let reply = match &result {
                    Ok(()) => wire::ok_reply(0),
                    Err(e) => wire::err_reply(e),
                };
                let _ = r.reply(reply);
            }
            Waiter::Local(tx) => {
                let _ = tx.send(result.map_err(|e| e.to_string()));
            }
        }
    }
}

/// Release a barrier's waiters: remote ones first, so that a local thread woken last cannot
/// close the connections (shutdown) before the replies are out.
fn release_all(waiters: Vec<Waiter>) {
    let (local, remote): (Vec<_>, Vec<_>) = waiters
        .into_iter()
        .partition(|w| matches!(w, Waiter::Local(_)));
    remote
        .into_iter()
        .chain(local)
        .for_each(|w| w.release(Ok(())));
}

/// A protocol step of [`NodeRuntime::run_page_steps`]: the page it is on, its effects and
/// the page contents that came with the message it handled; or the failure `(node, reason)`.
type PageStep<'d> = Result<(PageNo, Vec<Effect>, Option<&'d [u8]>), (NodeId, String)>;

/// What a protocol step leaves to do once the state lock is released.
#[derive(Default)]
struct Outgoing {
    /// Whether a fault was served (wake the waiting threads).
    served: bool,
    /// Messages for other nodes, encoded.
    messages: Vec<(NodeId, Vec<u8>)>,
}

struct State {
    coherence: Coherence,
    failed: Option<(NodeId, String)>,
    shut: bool,
    /// Set when shutdown begins: the application is done with the region, so a fault seen
    /// from then on is a stale event of the backend and is not served (its peers may already
    /// be gone once the final barrier ends).
    leaving: bool,
    left: HashSet<NodeId>,
    /// The frames of the memory budget (`None`: no limit).
    frames: Option<u32>,
    /// The resident pages in replacement order, and how many there are.
    lru: Lru,
    /// What this node believes its peers' free frames are.
    peers: PeerFrames,
    /// Where written-back pages go (made on first use).
    store: Option<Box<dyn BackingStore>>,
    /// The free frames this node last broadcast.
    last_broadcast: Option<u32>,
    /// Capability rounds, deliveries and refused faults ([`capabilities`]).
    caps: capabilities::CapState,
    /// Where the last read-ahead from the store ended ([`read_ahead`]).
    read_ahead: read_ahead::ReadAhead,
    /// While a read-ahead runs: the page-ins and releases it carries out together.
    batch: Option<read_ahead::Batch>,
    /// The pager's `cache`: whether released pages stay resident ([`pager`]).
    cache: bool,
    /// The pager that is gone or silent, once a call on it failed ([`pager`]).
    pager_failure: Option<pager::PagerFailure>,
    /// Migrating tasks' `Migrate`s waiting for their stack pages' hand-offs ([`tasks`]).
    carrier: tasks::StackCarrier,
    /// Pages whose last page-in failed (the store's `data_error`), and why: the faults
    /// that waited on them fail with it ([`pager`]).
    unavailable: std::collections::HashMap<PageNo, pager::Unavailable>,
    /// Pages whose write-back failed, with their contents, kept until written ([`pager`]).
    unwritten: crate::protocol::Unwritten<pager::KeptPage>,
}

/// One node of the DSM cluster; see the module documentation.
pub struct NodeRuntime {
    id: NodeId,
    nodes: usize,
    page_count: u32,
    endpoint: Arc<Endpoint>,
    pages: Arc<dyn LocalPages>,
    state: Mutex<State>,
    served: Condvar,
    sync: Mutex<SyncManager<Waiter>>,
    alloc: Mutex<FirstFit>,
    read_faults: AtomicU64,
    write_faults: AtomicU64,
    /// The Δt hold (zero: off).
    hold: Duration,
    timers: Arc<Timers>,
    evictions: EvictionCounters,
    /// Where the scheduler's messages go ([`tasks`]).
    task_inbox: tasks::TaskInbox,
}

/// What every node of a cluster must agree on besides the peers list, as one number: the page
/// count, the manager and the page size (part of the cluster id of the admission handshake,
/// see [`TcpConfig::cluster_id`]).
pub fn cluster_tag(pages: u32, manager: crate::ManagerKind) -> u64 {
    let kind = match manager {
        crate::ManagerKind::Central => 1u64,
        crate::ManagerKind::Fixed => 2,
        crate::ManagerKind::Dynamic => 3,
    };
    (pages as u64) | (kind << 32) | ((PAGE_SIZE as u64) << 40)
}

fn connect_error(e: ConnectError) -> DsmError {
    match e {
        ConnectError::Bind { error, .. } => DsmError::Io(error),
        ConnectError::Unreachable { node, addr, reason } => DsmError::Unreachable {
            node,
            addr: format!("{addr} ({reason})"),
        },
        ConnectError::Rejected { by, reason } => DsmError::Rejected {
            by,
            reason: reason.to_string(),
        },
        ConnectError::NotAdmitted { node, addr, reason } => DsmError::NotAdmitted {
            node,
            addr: addr.to_string(),
            reason: reason.to_string(),
        },
        ConnectError::Config(what) => DsmError::Config(what),
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl NodeRuntime {
    /// Listen on `config.listen`, connect to every peer (retrying until
    /// `config.connect_timeout`; the error names the unreachable peer), and start serving.
    /// A listener for `config.listen` inherited from the local launcher
    /// ([`crate::init::take_inherited_listener`]) is used as it is; otherwise the address is bound.
    pub fn start(
        config: NodeConfig,
        pages: Arc<dyn LocalPages>,
    ) -> Result<Arc<NodeRuntime>, DsmError> {
        let listener = match crate::init::take_inherited_listener(config.listen) {
            Some(listener) => listener,
            None => TcpListener::bind(config.listen).map_err(|e| {
                let hint = match e.kind() {
                    std::io::ErrorKind::AddrInUse => " (another process uses that port)",
                    std::io::ErrorKind::AddrNotAvailable => " (not an address of this host)",
                    _ => "",
                };
                DsmError::Io(std::io::Error::new(
                    e.kind(),
                    format!("cannot listen on {}: {e}{hint}", config.listen),
                ))
            })?,
        };
        Self::start_with_listener(config, listener, pages)
    }

    /// As [`NodeRuntime::start`], on a listener bound already (e.g. to port 0 in tests).
    pub fn start_with_listener(
        config: NodeConfig,
        listener: TcpListener,
        pages: Arc<dyn LocalPages>,
    ) -> Result<Arc<NodeRuntime>, DsmError> {
        Self::check_config(&config)?;
        let listen = listener.local_addr()?;
        match config.admission.check(listen, &config.peers) {
            Ok(None) => {}
            Ok(Some(warning)) => eprintln!("memlink-dsm node {}: {warning}", config.id),
            Err(refusal) => return Err(DsmError::Config(refusal)),
        }
        let tcp = TcpConfig {
            id: config.id,
            peers: config.peers.clone(),
            cluster_tag: cluster_tag(config.pages, config.manager),
            key: config.admission.key().cloned(),
            connect_timeout: config.connect_timeout,
        };
        let (transport, events) =
            TcpTransport::start_with_listener(listener, &tcp).map_err(connect_error)?;
        Self::start_on(Arc::new(transport), events, &config, pages)
    }

    fn check_config(config: &NodeConfig) -> Result<(), DsmError> {
        if config.id as usize >= config.peers.len() {
            return Err(DsmError::Config(format!(
                "node id {} is not among the {} peers (ids start at 0)",
                config.id,
                config.peers.len()
            )));
        }
        if config.pages == 0 {
            return Err(DsmError::Config(
                "the shared region needs at least one page".into(),
            ));
        }
        Ok(())
    }

    /// Start on any transport (TCP, or in-process for tests); `events` is its event stream.
    pub fn start_on(
        transport: Arc<dyn Transport>,
        events: EventSource,
        config: &NodeConfig,
        pages: Arc<dyn LocalPages>,
    ) -> Result<Arc<NodeRuntime>, DsmError> {
        Self::check_config(config)?;
        let nodes = transport.nodes();
        let frames = match config.memory_budget {
            Some(bytes) => Some(crate::replacement::frames_for(bytes).map_err(DsmError::Config)?),
            None => None,
        };
        let mut coherence = match frames {
            Some(f) => Coherence::with_budget(config.id, nodes, config.pages, config.manager, f),
            None => Coherence::new(config.id, nodes, config.pages, config.manager),
        }
        .map_err(|e| DsmError::Config(e.to_string()))?;
        coherence.set_hold(!config.hold.is_zero());
        let mut lru = Lru::new(config.pages);
        for p in 0..config.pages {
            if let Some(page) = coherence.page(p) {
                lru.update(p, &page);
            }
        }
        // Node 0 starts as the owner of every page, contents zero (in its backing store when
        // it has a budget: a store nothing was written to reads as zeros).
        if config.id == 0 && frames.is_none() {
            let zero = vec![0u8; PAGE_SIZE];
            for p in 0..config.pages {
                pages.install_page(p, &zero, Access::Write)?;
            }
        }
        let endpoint = Endpoint::new(transport);
        let rt = Arc::new(NodeRuntime {
            id: config.id,
            nodes,
            page_count: config.pages,
            endpoint: Arc::clone(&endpoint),
            pages,
            state: Mutex::new(State {
                coherence,
                failed: None,
                shut: false,
                leaving: false,
                left: HashSet::new(),
                frames,
                lru,
                peers: PeerFrames::new(config.id, nodes),
                store: None,
                last_broadcast: None,
                caps: Default::default(),
                read_ahead: Default::default(),
                batch: None,
                cache: true,
                pager_failure: None,
                carrier: Default::default(),
                unavailable: Default::default(),
                unwritten: Default::default(),
            }),
            served: Condvar::new(),
            sync: Mutex::new(SyncManager::new()),
            alloc: Mutex::new(FirstFit::new(config.pages as usize * PAGE_SIZE)),
            read_faults: AtomicU64::new(0),
            write_faults: AtomicU64::new(0),
            hold: config.hold,
            timers: Arc::new(Timers::default()),
            evictions: EvictionCounters::default(),
            task_inbox: Default::default(),
        });
        let weak: Weak<NodeRuntime> = Arc::downgrade(&rt);
        endpoint.serve(events, move |incoming| {
            if let Some(rt) = weak.upgrade() {
                rt.on_incoming(incoming);
            }
        });
        Timers::start(Arc::clone(&rt.timers), Arc::downgrade(&rt))?;
        Ok(rt)
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The number of nodes in the cluster.
    pub fn nodes(&self) -> usize {
        self.nodes
    }

    /// The number of shared pages.
    pub fn pages(&self) -> u32 {
        self.page_count
    }

    /// What this node has done so far.
    pub fn stats(&self) -> NodeStats {
        let (messages, bytes) = self.endpoint.transport().sent();
        NodeStats {
            read_faults: self.read_faults.load(Ordering::Relaxed),
            write_faults: self.write_faults.load(Ordering::Relaxed),
            messages,
            bytes,
            evictions: self.evictions.snapshot(),
        }
    }

    /// The local access to `page` as the protocol sees it.
    pub fn access(&self, page: PageNo) -> Access {
        lock(&self.state)
            .coherence
            .page(page)
            .map(|s| s.access)
            .unwrap_or(Access::None)
    }

    fn failure(st: &State) -> Option<DsmError> {
        if let (Some(pager), Some(_)) = (&st.pager_failure, &st.failed) {
            return Some(pager.error());
        }
        if let Some((node, reason)) = &st.failed {
            return Some(DsmError::NodeLost {
                node: *node,
                reason: reason.clone(),
            });
        }
        st.shut.then_some(DsmError::ShutDown)
    }

    // ---- incoming messages (dispatcher thread) ----

    fn on_incoming(&self, incoming: Incoming) {
        match incoming {
            Incoming::OneWay { from, payload } => {
                if payload.first() == Some(&SERVICE_COHERENCE) {
                    self.on_coherence(from, &payload[1..]);
                } else if payload.first() == Some(&SERVICE_TASKS) {
                    self.on_task_message(from, &payload[1..]);
                } else if payload.first() == Some(&SERVICE_FREE_FRAMES) {
                    match wire::decode_free_frames(&payload[1..]) {
                        Ok(free) => lock(&self.state).peers.heard(from, free),
                        Err(e) => self.fail(from, format!("bad message: {e}")),
                    }
                } else {
                    self.fail(
                        from,
                        format!("bad message: unknown service {:?}", payload.first()),
                    );
                }
            }
            Incoming::Request {
                from,
                payload,
                responder,
            } => match Request::decode(&payload) {
                Ok(req) => self.on_request(from, req, responder),
                Err(e) => {
                    let _ = responder.reply(wire::err_reply(&DsmError::Protocol(e)));
                }
            },
            Incoming::Lost { node, reason } => self.fail(node, reason),
            Incoming::Left { node } => {
                lock(&self.state).left.insert(node);
                // A fault waiting here re-checks at once (see resolve_fault).
                self.served.notify_all();
                self.fail_if_waiting_on_departed();
            }
        }
    }

    fn on_coherence(&self, from: NodeId, body: &[u8]) {
        let decoded = wire::split_coherence(body)
            .and_then(|(free, bytes)| Ok((free, codec::decode(bytes).map_err(|e| e.to_string())?)));
        let (free, (msg, data)) = match decoded {
            Ok(d) => d,
            Err(e) => return self.fail(from, format!("bad coherence message: {e}")),
        };
        let mut st = lock(&self.state);
        if st.failed.is_some() {
            return;
        }
        st.peers.heard(from, free);
        let result = st
            .coherence
            .handle(from, msg)
            .map_err(|e| (from, format!("protocol violation: {e}")))
            .and_then(|effects| self.run_effects(&mut st, msg.page(), effects, data));
        match result {
            Ok(out) => {
                drop(st);
                if let Err((node, reason)) = self.flush(out) {
                    self.fail(node, reason);
                }
            }
            Err((node, reason)) => self.fail_locked(st, node, reason),
        }
    }

    /// Carry out `effects` (and the effects of the messages they send to this node itself)
    /// on the protocol state and the local pages. The messages for other nodes (their page
    /// contents read now, in order with the access changes) are returned, to be sent by
    /// [`NodeRuntime::flush`] once the state lock is released: the protocol allows any
    /// delivery order, and the waiting threads need not wait for the sends.
    /// `page` is the page of the protocol step that produced `effects`: the replacement
    /// order is brought up to date with it, and with every step run here after it.
    fn run_effects(
        &self,
        st: &mut State,
        page: PageNo,
        effects: Vec<Effect>,
        data: Option<&[u8]>,
    ) -> Result<Outgoing, (NodeId, String)> {
        let mut to_self: VecDeque<Message> = VecDeque::new();
        let mut out = Outgoing::default();
        let evicted = Self::evicts(&effects, page);
        let executed = self.execute(st, effects, data, &mut to_self, &mut out);
        self.settle(st, page, evicted)?;
        executed?;
        while let Some(msg) = to_self.pop_front() {
            let effects = st
                .coherence
                .handle(self.id, msg)
                .map_err(|e| (self.id, format!("protocol violation: {e}")))?;
            let evicted = Self::evicts(&effects, msg.page());
            let executed = self.execute(st, effects, None, &mut to_self, &mut out);
            self.settle(st, msg.page(), evicted)?;
            executed?;
        }
        Ok(out)
    }

    /// Whether `effects` end an eviction of `page` here ([`Effect::Evicted`], which
    /// returns the frame's memory itself).
    fn evicts(effects: &[Effect], page: PageNo) -> bool {
        effects
            .iter()
            .any(|e| matches!(e, Effect::Evicted { page: p, .. } if *p == page))
    }

    /// After a step on `page`: bring the replacement order up to date with the protocol's
    /// state of it; and under a memory budget, when the page stopped taking a frame here
    /// ([`crate::protocol::PageState::uses_frame`]) with this step and not by an eviction
    /// of it (`evicted`: [`Effect::Evicted`] returned its memory already), return its
    /// memory, so that the node holds no more than its frames. Its contents were read by
    /// the step's sends before this.
    ///
    /// The frame is left by the step that ends its use, which need not be the step that
    /// took the page's access: an owner evicting its page that gives the ownership away
    /// meanwhile (a forward the manager sent after its eviction reply, and that overtook
    /// it) loses its access then but keeps the frame (`evicting`) until the manager's reply
    /// ends the eviction, with no access change and nothing to write back. Its memory goes
    /// at that reply. (Before, only a step that took the access returned the memory, so
    /// that frame stayed in memory uncounted: one page over the budget, SIGSEGV backend;
    /// userfaultfd had moved the contents aside at the access change, and kept them.)
    fn settle(&self, st: &mut State, page: PageNo, evicted: bool) -> Result<(), (NodeId, String)> {
        let Some(now) = st.coherence.page(page) else {
            return Ok(());
        };
        let left = st.lru.update(page, &now);
        if left && !evicted && st.frames.is_some() {
            self.pages
                .release_page(page)
                .map_err(|e| self.local_memory_failure(page, Access::None, e))?;
        }
        // Contents kept after a failed write-back are its new owner's now ([`pager`]).
        if st.unwritten.settle(page, &now) {
            let kept = st.unwritten.len();
            st.coherence.set_reserved(kept);
        }
        Ok(())
    }

    /// Wake the threads whose faults were served, then send the messages.
    fn flush(&self, out: Outgoing) -> Result<(), (NodeId, String)> {
        if out.served {
            self.served.notify_all();
        }
        // One batch per peer, each in the order the protocol produced its messages.
        let mut batches: Vec<(NodeId, Vec<Vec<u8>>)> = Vec::new();
        for (to, payload) in out.messages {
            match batches.iter_mut().find(|(peer, _)| *peer == to) {
                Some((_, batch)) => batch.push(payload),
                None => batches.push((to, vec![payload])),
            }
        }
        for (to, batch) in batches {
            self.endpoint
                .send_all(to, batch)
                .map_err(|e| (to, e.reason))?;
        }
        Ok(())
    }

    /// The kernel refused to change a page here (the mapping limit, memory): the node cannot
    /// keep the region coherent any more and fails, as a node the cluster lost.
    fn local_memory_failure(
        &self,
        page: PageNo,
        access: Access,
        e: std::io::Error,
    ) -> (NodeId, String) {
        let hint = if e.raw_os_error() == Some(libc::ENOMEM) {
            " (too many differently protected page runs for vm.max_map_count, or out of memory)"
        } else {
            ""
        };
        (
            self.id,
            format!("this node could not give page {page} {access:?} access: {e}{hint}"),
        )
    }

    /// A coherence message to `to`, with this node's free frames and, when `data` is given,
    /// the page contents.
    fn encode_for(st: &State, msg: &Message, data: Option<&[u8]>) -> Vec<u8> {
        let mut payload = Vec::with_capacity(5 + codec::MESSAGE_LEN + PAGE_SIZE);
        wire::coherence_header(Self::free_frames(st), &mut payload);
        codec::encode(msg, data, &mut payload);
        payload
    }

    fn execute(
        &self,
        st: &mut State,
        effects: Vec<Effect>,
        data: Option<&[u8]>,
        to_self: &mut VecDeque<Message>,
        out: &mut Outgoing,
    ) -> Result<(), (NodeId, String)> {
        // Pages whose contents could not be read from the store in this step (a failed
        // page-in, undone by the protocol's `data_error`): the step's later effects that
        // would read them or change their access here are undone or skipped too.
        let mut unreadable: Vec<PageNo> = Vec::new();
        for e in effects {
            self.before_effect(st, &e)?;
            // A migrating task's Migrate that waited for this eviction leaves behind it.
            let released = st.carrier.after(&e);
            if self.batched(st, &e) {
                if let Effect::Evicted { class, .. } = e {
                    self.evictions.evicted(class);
                    out.served = true;
                }
                Self::push_task_messages(released, out);
                continue;
            }
            match e {
                Effect::SetAccess { page, .. } | Effect::Install { page, .. }
                    if unreadable.contains(&page) =>
                {
                    Self::push_task_messages(released, out);
                    continue;
                }
                Effect::Send { to, msg }
                    if to != self.id && msg.carries_data() && unreadable.contains(&msg.page()) =>
                {
                    self.data_error(st, e, to_self, out)?;
                    Self::push_task_messages(released, out);
                    continue;
                }
                _ => {}
            }
            match e {
                Effect::Send { to, msg } if to == self.id => to_self.push_back(msg),
                // A stack page's hand-off goes inside its task's Migrate, not on its own.
                Effect::Send { to, msg }
                    if Self::carry_hand_off(
                        &mut st.carrier,
                        to,
                        msg,
                        |buf| self.pages.read_page(msg.page(), buf),
                        out,
                    ) => {}
                Effect::Send { to, msg } => {
                    if let Message::HandOffReply { accepted, .. } = msg {
                        self.evictions.hand_off_answered(accepted);
                    }
                    let payload = if msg.carries_data() {
                        let mut page = vec![0u8; PAGE_SIZE];
                        self.pages.read_page(msg.page(), &mut page);
                        Self::encode_for(st, &msg, Some(&page))
                    } else {
                        Self::encode_for(st, &msg, None)
                    };
                    out.messages.push((to, payload));
                }
                Effect::SendStored { to, msg } => {
                    if to == self.id {
                        return Err((
                            self.id,
                            format!(
                                "protocol violation: page {} sent from the store to this node itself",
                                msg.page()
                            ),
                        ));
                    }
                    let mut page = vec![0u8; PAGE_SIZE];
                    if !self.read_stored(st, msg.page(), &mut page) {
                        unreadable.push(msg.page());
                        self.data_error(st, e, to_self, out)?;
                        Self::push_task_messages(released, out);
                        continue;
                    }
                    out.messages
                        .push((to, Self::encode_for(st, &msg, Some(&page))));
                }
                Effect::Install { page, access } => match data {
                    Some(d) => {
                        self.pages
                            .install_page(page, d, access)
                            .map_err(|e| self.local_memory_failure(page, access, e))?;
                        st.lru.touch(page);
                    }
                    None => {
                        return Err((self.id, format!("page {page} to install came without data")));
                    }
                },
                Effect::PageIn { page, access } => {
                    let mut data = vec![0u8; PAGE_SIZE];
                    if !self.read_stored(st, page, &mut data) {
                        unreadable.push(page);
                        self.data_error(st, e, to_self, out)?;
                        Self::push_task_messages(released, out);
                        continue;
                    }
                    self.pages
                        .install_page(page, &data, access)
                        .map_err(|e| self.local_memory_failure(page, access, e))?;
                    st.lru.touch(page);
                }
                Effect::WriteBack { page } => {
                    // No thread may write the page while its contents are copied out: an
                    // eviction takes its access (None in the protocol now), a clean leaves
                    // it readable.
                    let keep = Self::page_state(st, page).access.min(Access::Read);
                    self.pages
                        .set_access(page, keep)
                        .map_err(|e| self.local_memory_failure(page, keep, e))?;
                    let mut data = vec![0u8; PAGE_SIZE];
                    self.pages.read_page(page, &mut data);
                    self.write_back(st, page, data);
                }
                Effect::Hold { page } => {
                    self.timers
                        .schedule(page, crate::remote::tcp::deadline_after(self.hold));
                }
                Effect::SetAccess { page, access } => self
                    .pages
                    .set_access(page, access)
                    .map_err(|e| self.local_memory_failure(page, access, e))?,
                Effect::Served { .. } => out.served = true,
                Effect::DataUnlock { page, access } => {
                    // The pager answers at once, with the page's lock from now on.
                    let lock_now = self.store_unlock(st, page, access)?;
                    let effects = st.coherence.data_lock(page, 1, lock_now);
                    self.execute(st, effects, None, to_self, out)?;
                }
                Effect::DataError { page, owner } => {
                    self.fault_failed(st, page, owner);
                    out.served = true;
                }
                Effect::Denied { .. } | Effect::CapDone { .. } | Effect::Received { .. } => {
                    st.caps.absorb(&e);
                    out.served = true;
                }
                Effect::Evicted { page, class } => {
                    self.pages
                        .release_page(page)
                        .map_err(|e| self.local_memory_failure(page, Access::None, e))?;
                    self.evictions.evicted(class);
                    // A frame is free: a fault waiting for one goes on.
                    out.served = true;
                }
            }
            Self::push_task_messages(released, out);
        }
        Ok(())
    }

    fn on_request(&self, from: NodeId, req: Request, responder: Responder) {
        if let Some(e) = Self::failure(&lock(&self.state)) {
            let _ = responder.reply(wire::err_reply(&e));
            return;
        }
        match req {
            Request::Lock(l) => {
                let granted = lock(&self.sync).lock(l, from, Waiter::Remote(responder));
                match granted {
                    Some(w) => w.release(Ok(())),
                    None => self.settle_new_wait(),
                }
            }
            Request::Unlock(l) => {
                let r = lock(&self.sync).unlock(l, from);
                match r {
                    Ok(next) => {
                        let _ = responder.reply(wire::ok_reply(0));
                        if let Some(w) = next {
                            w.release(Ok(()));
                        }
                    }
                    Err(e) => {
                        let _ = responder.reply(wire::err_reply(&DsmError::Sync(e.to_string())));
                    }
                }
            }
            Request::Barrier(b) => {
                let r = lock(&self.sync).arrive(b, from, self.nodes, Waiter::Remote(responder));
                match r {
                    Ok(released) if released.is_empty() => self.settle_new_wait(),
                    Ok(released) => release_all(released),
                    Err((e, w)) => w.release(Err(DsmError::Sync(e.to_string()))),
                }
            }
            Request::Alloc { size, align } => {
                let r = self.alloc_here(size as usize, align as usize);
                let _ = responder.reply(match r {
                    Ok(off) => wire::ok_reply(off as u64),
                    Err(e) => wire::err_reply(&e),
                });
            }
            Request::Free(off) => {
                let r = self.free_here(off as usize);
                let _ = responder.reply(match r {
                    Ok(()) => wire::ok_reply(0),
                    Err(e) => wire::err_reply(&e),
                });
            }
        }
    }

    fn fail(&self, node: NodeId, reason: String) {
        self.fail_locked(lock(&self.state), node, reason);
    }

    fn fail_locked(&self, st: MutexGuard<'_, State>, node: NodeId, reason: String) {
        if st.failed.is_some() || st.shut {
            return;
        }
        if st.left.contains(&node) && reason.contains("EOF") {
            return;
        }
        // The peers hear which node was lost before any thread here can see the failure and
        // end the process (told without the state lock: a send may block).
        drop(st);
        self.endpoint.transport().announce_lost(node, &reason);
        let mut st = lock(&self.state);
        if st.failed.is_some() || st.shut {
            return;
        }
        eprintln!("memlink-dsm node {}: lost node {node}: {reason}", self.id);
        st.failed = Some((node, reason.clone()));
        drop(st);
        self.endpoint.fail_all(node, &reason);
        self.served.notify_all();
        let waiters = lock(&self.sync).drain_waiters();
        for w in waiters {
            w.release(Err(DsmError::NodeLost {
                node,
                reason: reason.clone(),
            }));
        }
    }

    /// After a wait was queued in the sync manager: a wait queued just after the node failed
    /// (its request passed the failure check before the failure, and was queued after
    /// `fail_locked` drained the waiters) is released with the failure now, instead of never;
    /// and a wait that needs a departed peer fails the node. `fail_locked` sets the failure
    /// before it drains, so either its drain or this check sees every queued wait.
    fn settle_new_wait(&self) {
        let failed = lock(&self.state).failed.clone();
        if let Some((node, reason)) = failed {
            let waiters = lock(&self.sync).drain_waiters();
            for w in waiters {
                w.release(Err(DsmError::NodeLost {
                    node,
                    reason: reason.clone(),
                }));
            }
            return;
        }
        self.fail_if_waiting_on_departed();
    }

    /// A peer that left (sent Leave) takes part in nothing any more. Normally it leaves after
    /// the final barrier, when nothing here waits for it; if a lock or barrier managed here
    /// still needs it (it left without arriving, e.g. dropped without shutdown, or after its
    /// final barrier failed), nothing would ever end that wait: the node fails instead, which
    /// ends every wait here with NodeLost. Called when a Leave arrives and after every new
    /// wait is queued, so whichever comes second sees the other.
    fn fail_if_waiting_on_departed(&self) {
        let gone = {
            let st = lock(&self.state);
            if st.left.is_empty() || st.failed.is_some() || st.shut {
                return;
            }
            st.left.clone()
        };
        let found = lock(&self.sync).waits_on(&gone);
        if let Some((node, what)) = found {
            self.fail(
                node,
                format!("it left the cluster while {what} still waited for it"),
            );
        }
    }

    // ---- operations (callers' threads) ----

    fn call(&self, to: NodeId, req: Request) -> Result<u64, DsmError> {
        if let Some(e) = Self::failure(&lock(&self.state)) {
            return Err(e);
        }
        let (node, reason) = match self.endpoint.call(to, req.encode()) {
            Ok(reply) => match wire::decode_reply(&reply) {
                // The peer answered that the cluster lost a node: so did this node.
                Err(DsmError::NodeLost { node, reason }) => (node, reason),
                other => return other,
            },
            Err(CallError::NodeLost { node, reason }) => (node, reason),
            Err(CallError::Send(e)) => (e.to, e.reason),
            Err(CallError::TimedOut) => (to, "no reply".into()),
        };
        // The whole node fails now, not only when the loss reaches the handler: a caller
        // that saw the loss must find every later operation failed too.
        self.fail(node, reason);
        Err(Self::failure(&lock(&self.state)).unwrap_or(DsmError::ShutDown))
    }

    fn wait_local(&self, rx: Receiver<Result<(), String>>) -> Result<(), DsmError> {
        loop {
            match rx.recv_timeout(RECHECK) {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(text)) => {
                    return Err(Self::failure(&lock(&self.state)).unwrap_or(DsmError::Sync(text)));
                }
                Err(RecvTimeoutError::Timeout) => {
                    if let Some(e) = Self::failure(&lock(&self.state)) {
                        return Err(e);
                    }
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(Self::failure(&lock(&self.state)).unwrap_or(DsmError::ShutDown));
                }
            }
        }
    }

    /// Acquire `lock` (cluster-wide); blocks until granted, in FIFO order at the lock's
    /// manager node (`lock % nodes`).
    pub fn lock(&self, lock_id: u32) -> Result<(), DsmError> {
        let m = manager_of(lock_id, self.nodes);
        if m != self.id {
            return self.call(m, Request::Lock(lock_id)).map(|_| ());
        }
        if let Some(e) = Self::failure(&lock(&self.state)) {
            return Err(e);
        }
        let (tx, rx) = channel();
        let granted = lock(&self.sync).lock(lock_id, self.id, Waiter::Local(tx));
        match granted {
            Some(w) => w.release(Ok(())),
            None => self.settle_new_wait(),
        }
        self.wait_local(rx)
    }

    /// Release `lock`, which this node holds.
    pub fn unlock(&self, lock_id: u32) -> Result<(), DsmError> {
        let m = manager_of(lock_id, self.nodes);
        if m != self.id {
            return self.call(m, Request::Unlock(lock_id)).map(|_| ());
        }
        if let Some(e) = Self::failure(&lock(&self.state)) {
            return Err(e);
        }
        let r = lock(&self.sync).unlock(lock_id, self.id);
        match r {
            Ok(next) => {
                if let Some(w) = next {
                    w.release(Ok(()));
                }
                Ok(())
            }
            Err(e) => Err(DsmError::Sync(e.to_string())),
        }
    }

    /// Wait until every node has arrived at `barrier` (managed by node `barrier % nodes`).
    pub fn barrier(&self, barrier: u32) -> Result<(), DsmError> {
        let m = manager_of(barrier, self.nodes);
        if m != self.id {
            return self.call(m, Request::Barrier(barrier)).map(|_| ());
        }
        if let Some(e) = Self::failure(&lock(&self.state)) {
            return Err(e);
        }
        let (tx, rx) = channel();
        let r = lock(&self.sync).arrive(barrier, self.id, self.nodes, Waiter::Local(tx));
        match r {
            Ok(released) if released.is_empty() => self.settle_new_wait(),
            Ok(released) => release_all(released),
            Err((e, w)) => w.release(Err(DsmError::Sync(e.to_string()))),
        }
        self.wait_local(rx)
    }

    fn alloc_here(&self, size: usize, align: usize) -> Result<usize, DsmError> {
        if self.id != 0 {
            return Err(DsmError::Protocol(
                "allocation request sent to a node other than 0".into(),
            ));
        }
        lock(&self.alloc).alloc(size, align).map_err(DsmError::from)
    }

    fn free_here(&self, offset: usize) -> Result<(), DsmError> {
        if self.id != 0 {
            return Err(DsmError::Protocol(
                "free request sent to a node other than 0".into(),
            ));
        }
        lock(&self.alloc)
            .free(offset)
            .map(|_| ())
            .map_err(DsmError::from)
    }

    /// Allocate `size` bytes of the shared region aligned to `align` (first fit, served by
    /// node 0); returns the offset in the region.
    pub fn alloc(&self, size: usize, align: usize) -> Result<usize, DsmError> {
        if self.id == 0 {
            if let Some(e) = Self::failure(&lock(&self.state)) {
                return Err(e);
            }
            return self.alloc_here(size, align);
        }
        let req = Request::Alloc {
            size: size as u64,
            align: align as u64,
        };
        self.call(0, req).map(|off| off as usize)
    }

    /// Free the block that [`NodeRuntime::alloc`] returned at `offset`.
    pub fn free(&self, offset: usize) -> Result<(), DsmError> {
        if self.id == 0 {
            if let Some(e) = Self::failure(&lock(&self.state)) {
                return Err(e);
            }
            return self.free_here(offset);
        }
        self.call(0, Request::Free(offset as u64)).map(|_| ())
    }

    /// Leave the cluster in order: a final barrier with every node, then a Leave to each
    /// peer and the connections closed. Later operations fail with `ShutDown`, and so do the
    /// calls other threads of this node still wait in (their replies could no longer come:
    /// this node's readers stop at close).
    ///
    /// The final barrier ends however the peers go: when all arrive, when one is lost (EOF or
    /// a broken connection), or when one leaves without arriving
    /// (see `fail_if_waiting_on_departed`). Its result is returned: `Ok` when every node
    /// arrived, [`DsmError::NodeLost`] when the cluster lost a node before or during it (the
    /// connections are closed either way). A second call returns `Ok` at once.
    pub fn shutdown(&self) -> Result<(), DsmError> {
        {
            let mut st = lock(&self.state);
            if st.shut {
                return Ok(());
            }
            st.leaving = true;
        }
        let final_barrier = self.barrier(SHUTDOWN_BARRIER);
        // After every node's last access: write the pages owned here to a pager's file.
        let cleaned = match &final_barrier {
            Ok(()) => self.clean_into_store(),
            Err(_) => Ok(()),
        };
        lock(&self.state).shut = true;
        self.timers.stop();
        self.endpoint.transport().close();
        self.endpoint
            .fail_all(self.id, "this node shut down (left the cluster)");
        self.served.notify_all();
        final_barrier.and(cleaned)
    }
}

impl NodeRuntime {
    /// The protocol's view of `page` here (no access, not owned, nothing pending for a page
    /// it has not seen yet).
    fn page_state(st: &State, page: PageNo) -> crate::protocol::PageState {
        st.coherence
            .page(page)
            .unwrap_or(crate::protocol::PageState::ABSENT)
    }

    /// Start a fault on `page` for `access` (nothing of it is pending): the protocol's
    /// request, and whatever it does locally at once, into `out`. Counts a fault that needs
    /// another node. A local step that fails the node (NodeLost) fails it here; on any error
    /// the state lock is released.
    fn start_fault<'a>(
        &'a self,
        mut st: MutexGuard<'a, State>,
        page: PageNo,
        access: Access,
        out: &mut Outgoing,
    ) -> Result<MutexGuard<'a, State>, DsmError> {
        let effects = st
            .coherence
            .fault(page, access)
            .map_err(|e| DsmError::Protocol(e.to_string()))?;
        if effects.iter().any(|e| matches!(e, Effect::Send { .. })) {
            let counter = if access == Access::Write {
                &self.write_faults
            } else {
                &self.read_faults
            };
            counter.fetch_add(1, Ordering::Relaxed);
        }
        match self.run_effects(&mut st, page, effects, None) {
            Ok(more) => {
                out.served |= more.served;
                out.messages.extend(more.messages);
                Ok(st)
            }
            Err((node, reason)) => {
                self.fail_locked(st, node, reason.clone());
                Err(self.failure_or(node, reason))
            }
        }
    }

    /// Send what a fault started (the state lock released); a failed send fails the node.
    fn flush_fault(&self, out: Outgoing) -> Result<(), DsmError> {
        let Err((node, reason)) = self.flush(out) else {
            return Ok(());
        };
        // A stale backend event whose request was made just before shutdown began and sent
        // after the peers had left (the service thread was preempted in between): not a loss.
        if lock(&self.state).leaving {
            return Err(DsmError::ShutDown);
        }
        self.fail(node, reason.clone());
        Err(self.failure_or(node, reason))
    }

    /// Carry out, in order under the state lock `st`, the protocol step `step` makes for
    /// each of `items` (the page it is on, its effects, and the page contents a message it
    /// handles brought), then wake the served faults and send what the steps produced. The
    /// first step that fails fails the node, and its error is returned.
    fn run_page_steps<'d, I>(
        &self,
        mut st: MutexGuard<'_, State>,
        items: impl IntoIterator<Item = I>,
        mut step: impl FnMut(&mut State, I) -> PageStep<'d>,
    ) -> Result<(), DsmError> {
        let mut out = Outgoing::default();
        for item in items {
            let result = step(&mut st, item)
                .and_then(|(page, effects, data)| self.run_effects(&mut st, page, effects, data));
            match result {
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

    /// The node's failure (the first loss, which may have come just before this one: it is
    /// the one to name), or this loss.
    fn failure_or(&self, node: NodeId, reason: String) -> DsmError {
        Self::failure(&lock(&self.state)).unwrap_or(DsmError::NodeLost { node, reason })
    }

    /// Why a fault cannot be served any more, if so: the node failed or is shutting down.
    fn refused(st: &State) -> Result<(), DsmError> {
        match Self::failure(st) {
            Some(e) => Err(e),
            None if st.leaving => Err(DsmError::ShutDown),
            None => Ok(()),
        }
    }

    /// Before a caller waits for `page`: a peer that left did so after the final barrier, so
    /// no fault of a correct program waits now; whatever this one waits for may never come,
    /// and the node fails.
    fn wait_for_page<'a>(
        &'a self,
        st: MutexGuard<'a, State>,
        page: PageNo,
    ) -> Result<MutexGuard<'a, State>, DsmError> {
        if let Some(&gone) = st.left.iter().next() {
            let reason =
                format!("it left the cluster while page {page} was still being fetched here");
            self.fail_locked(st, gone, reason);
            return Err(Self::failure(&lock(&self.state)).unwrap_or(DsmError::ShutDown));
        }
        Ok(self
            .served
            .wait_timeout(st, RECHECK)
            .unwrap_or_else(|p| p.into_inner())
            .0)
    }

    fn check_page(&self, page: PageNo) -> Result<(), DsmError> {
        if page >= self.page_count {
            return Err(DsmError::PageOutOfRange {
                page,
                pages: self.page_count,
            });
        }
        Ok(())
    }
}

impl FaultResolver for NodeRuntime {
    fn resolve_fault(&self, page: PageNo, access: Access) -> Result<(), DsmError> {
        self.check_page(page)?;
        let mut st = lock(&self.state);
        // Whether this call asked or waited (a refusal seen before answers an older fault).
        let mut asked = false;
        loop {
            Self::refused(&st)?;
            let now = Self::page_state(&st, page);
            if now.access >= access {
                st.lru.touch(page);
                return Ok(());
            }
            if asked && st.caps.refused(page, access) {
                return Err(DsmError::Denied { page, access });
            }
            if let Some(why) = st.unavailable.get(&page).filter(|_| asked) {
                return Err(why.error(page));
            }
            if now.pending.is_some() || now.evicting {
                asked = true;
                st = self.wait_for_page(st, page)?;
                continue;
            }
            // (A page its pager locked below `access` asks the pager first, the ordinary way.)
            if now.paged_out() && access <= st.coherence.pager_lock(page) {
                // Its own page, from the store: maybe with the pages after it.
                st.unavailable.remove(&page);
                let mut out = Outgoing::default();
                let (guard, started) = self.read_ahead(st, page, access, &mut out)?;
                st = guard;
                // Evictions it started without starting the fault (a hand-off waits for its
                // peer) have messages to send too; then look again.
                if started || out.served || !out.messages.is_empty() {
                    if started {
                        st.caps.fault_starts(page);
                        asked = true;
                    }
                    drop(st);
                    self.flush_fault(out)?;
                    st = lock(&self.state);
                    continue;
                }
            }
            if !now.uses_frame() && Self::free_frames(&st) == 0 {
                st = self.make_room(st, page)?;
                continue;
            }
            st.caps.fault_starts(page);
            st.unavailable.remove(&page);
            asked = true;
            let mut out = Outgoing::default();
            st = self.start_fault(st, page, access, &mut out)?;
            drop(st);
            self.flush_fault(out)?;
            st = lock(&self.state);
        }
    }
}

impl Drop for NodeRuntime {
    fn drop(&mut self) {
        self.timers.stop();
        self.endpoint.transport().close_now();
    }
}
