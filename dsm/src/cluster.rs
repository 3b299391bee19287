//! The user-facing handle of one node: [`Dsm::join`] maps the shared region at the
//! cluster-wide address, starts the node runtime (connections, coherence, sync manager,
//! allocator) and the fault backend; then the region is ordinary memory, kept coherent page by
//! page across the cluster.
//!
//! ```no_run
//! use memlink_dsm::{Backend, NodeConfig, cluster::Dsm};
//! use memlink_dsm::admission::{Admission, ClusterKey};
//!
//! let peers = vec!["10.0.0.1:7000".parse().unwrap(), "10.0.0.2:7000".parse().unwrap()];
//! let config = NodeConfig::builder(1, peers)
//!     .listen("0.0.0.0:7000".parse().unwrap())
//!     .pages(64)
//!     .admission(Admission::Key(ClusterKey::from_file("cluster.key".as_ref())?))
//!     .build()?;
//! let dsm = Dsm::join(config, Backend::Sigsegv)?;
//! dsm.barrier(0)?;                         // node 0 has published its data by now
//! let offset = dsm.lookup(0) as usize;      // where node 0 put it
//! let first = unsafe { *dsm.at::<u64>(offset) }; // a plain read: faults fetch the page
//! dsm.leave()?;
//! # let _ = first;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::fault::FaultService;
use crate::mapping::{MapError, Mapping, base_from_env};
use crate::node::NodeRuntime;
use crate::node::prefetch::Prefetch;
use crate::types::{
    Access, Backend, DsmError, LocalPages, NodeConfig, NodeId, NodeStats, PAGE_SIZE,
};

/// The barrier every node passes at the end of [`Dsm::join`], after node 0 set up the
/// directory. Application barriers should use other ids.
pub const JOIN_BARRIER: u32 = u32::MAX - 1;

/// The number of `u64` slots in the directory (one page at region offset 0).
pub const DIRECTORY_SLOTS: usize = PAGE_SIZE / 8;

/// One node's membership in a DSM cluster. Dropping it without [`Dsm::leave`] abandons the
/// cluster (the peers see this node as lost).
pub struct Dsm {
    // Field order is drop order: stop faults first, then the runtime, then unmap.
    faults: Option<FaultService>,
    runtime: Arc<NodeRuntime>,
    mapping: Arc<Mapping>,
    backend: Backend,
    /// The cluster id its handshakes proved (the key of the peers' code identities).
    cluster: crate::admission::ClusterId,
}

impl std::fmt::Debug for Dsm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dsm")
            .field("id", &self.runtime.id())
            .field("nodes", &self.runtime.nodes())
            .field("base", &self.mapping.base())
            .field("backend", &self.backend)
            .finish()
    }
}

fn map_error(e: MapError) -> DsmError {
    match e {
        MapError::Memfd(io) | MapError::Map(io) => DsmError::Io(io),
        other => DsmError::Config(other.to_string()),
    }
}

/// A remote node's error comes back over the wire as text; a lost node reported by the lock,
/// barrier or allocation manager is still a lost node here, so it is turned back into
/// [`DsmError::NodeLost`] (callers match on it to tell a failed cluster from a misuse).
fn remote_error(e: DsmError) -> DsmError {
    match e {
        DsmError::Sync(text) | DsmError::Protocol(text) if text.starts_with("lost node ") => {
            let node = text["lost node ".len()..]
                .split(|c: char| !c.is_ascii_digit())
                .next()
                .and_then(|n| n.parse().ok());
            match node {
                Some(node) => DsmError::NodeLost { node, reason: text },
                None => DsmError::Sync(text),
            }
        }
        other => other,
    }
}

impl Dsm {
    /// Joins the cluster described by `config`, catching faults with `backend`, with the
    /// region at [`base_from_env`] (`MEMLINK_DSM_BASE` or the default; the same on every node).
    /// Returns once every node has joined.
    pub fn join(config: NodeConfig, backend: Backend) -> Result<Dsm, DsmError> {
        let base = base_from_env().map_err(map_error)?;
        Self::join_at(config, backend, base)
    }

    /// As [`Dsm::join`], with the region at `base`.
    pub fn join_at(config: NodeConfig, backend: Backend, base: usize) -> Result<Dsm, DsmError> {
        Self::join_inner(config, backend, base, None)
    }

    /// As [`Dsm::join`], with `store` as this node's backing store: the region's pages come
    /// from it and written-back pages go to it (a [`crate::pager::PagerStore`] of a file
    /// pager maps a file into the region). `config` needs a memory budget. Every node
    /// should be given a store of the same memory object; on leave, each writes the pages
    /// it owns into its store.
    pub fn join_with_store(
        config: NodeConfig,
        backend: Backend,
        store: Box<dyn crate::replacement::BackingStore>,
    ) -> Result<Dsm, DsmError> {
        let base = base_from_env().map_err(map_error)?;
        Self::join_inner(config, backend, base, Some(store))
    }

    fn join_inner(
        config: NodeConfig,
        backend: Backend,
        base: usize,
        store: Option<Box<dyn crate::replacement::BackingStore>>,
    ) -> Result<Dsm, DsmError> {
        let mapping = Mapping::create(base, config.pages, backend).map_err(map_error)?;
        let cluster = crate::remote::TcpConfig {
            id: config.id,
            peers: config.peers.clone(),
            cluster_tag: crate::node::cluster_tag(config.pages, config.manager),
            key: None,
            connect_timeout: config.connect_timeout,
        }
        .cluster_id();
        let pages: Arc<dyn LocalPages> = mapping.clone();
        let runtime = NodeRuntime::start(config, pages)?;
        if let Some(store) = store {
            // No page moves before the join barrier below: peers fault only after it.
            runtime.set_store(store)?;
        }
        let faults = FaultService::start(mapping.clone(), runtime.clone())
            .map_err(|e| DsmError::Config(e.to_string()))?;
        let dsm = Dsm {
            faults: Some(faults),
            runtime,
            mapping,
            backend,
            cluster,
        };
        if dsm.id() == 0 {
            // The directory: the first block of a fresh first-fit allocator, so at offset 0.
            let offset = dsm
                .runtime
                .alloc(PAGE_SIZE, PAGE_SIZE)
                .map_err(remote_error)?;
            if offset != 0 {
                return Err(DsmError::Protocol(format!(
                    "the directory landed at offset {offset}, not 0"
                )));
            }
        }
        dsm.runtime.barrier(JOIN_BARRIER).map_err(remote_error)?;
        Ok(dsm)
    }

    /// Whether a task may migrate between this node and `node`: the same binary, loaded at
    /// the same address, as `node` told in its admission handshake. An error names the
    /// difference; pages are shared either way (see [`crate::admission::peer_codes`]).
    pub fn code_check(&self, node: NodeId) -> Result<(), crate::process::identity::CodeMismatch> {
        let ours = crate::process::identity::CodeIdentity::here();
        crate::admission::peer_codes::check(self.cluster, &ours, node)
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.runtime.id()
    }

    /// The number of nodes in the cluster.
    pub fn nodes(&self) -> usize {
        self.runtime.nodes()
    }

    /// The start of the shared region: the same address on every node.
    pub fn base(&self) -> *mut u8 {
        self.mapping.base()
    }

    /// The region's length in bytes.
    pub fn len(&self) -> usize {
        self.mapping.len()
    }

    /// Always false: a region has at least one page.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The fault backend in use.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The address of region offset `offset` as a `*mut T` (valid on every node). Reading or
    /// writing it faults the page in as needed.
    pub fn at<T>(&self, offset: usize) -> *mut T {
        self.mapping.base().wrapping_add(offset).cast()
    }

    /// The region offset of `ptr`, if it points into the region.
    pub fn offset_of<T>(&self, ptr: *const T) -> Option<usize> {
        let addr = ptr as usize;
        let base = self.mapping.base() as usize;
        (addr >= base && addr < base + self.mapping.len()).then(|| addr - base)
    }

    fn directory(&self, slot: usize) -> &AtomicU64 {
        assert!(slot < DIRECTORY_SLOTS, "directory slot {slot} out of range");
        // SAFETY: the directory is the page at offset 0, allocated by node 0 in join and never
        // freed; an AtomicU64 may live at any 8-aligned address and be shared between threads
        // (and, through coherence, nodes).
        unsafe { &*self.at::<AtomicU64>(slot * 8) }
    }

    /// Publishes `value` (typically an offset from [`Dsm::alloc`]) in directory slot `slot`
    /// (`< DIRECTORY_SLOTS`), for the other nodes to [`lookup`](Dsm::lookup) after a barrier.
    pub fn publish(&self, slot: usize, value: u64) {
        self.directory(slot).store(value, Ordering::SeqCst);
    }

    /// Reads directory slot `slot` (0 until someone publishes it).
    pub fn lookup(&self, slot: usize) -> u64 {
        self.directory(slot).load(Ordering::SeqCst)
    }

    /// Allocates `size` bytes of the region aligned to `align` (first fit, cluster-wide);
    /// returns the region offset.
    pub fn alloc(&self, size: usize, align: usize) -> Result<usize, DsmError> {
        self.runtime.alloc(size, align).map_err(remote_error)
    }

    /// Frees the block that [`Dsm::alloc`] returned at `offset`.
    pub fn free(&self, offset: usize) -> Result<(), DsmError> {
        self.runtime.free(offset).map_err(remote_error)
    }

    /// Acquires cluster-wide lock `lock` (FIFO at its manager node).
    pub fn lock(&self, lock: u32) -> Result<(), DsmError> {
        self.runtime.lock(lock).map_err(remote_error)
    }

    /// Releases cluster-wide lock `lock`.
    pub fn unlock(&self, lock: u32) -> Result<(), DsmError> {
        self.runtime.unlock(lock).map_err(remote_error)
    }

    /// Waits until every node has reached barrier `barrier`.
    pub fn barrier(&self, barrier: u32) -> Result<(), DsmError> {
        self.runtime.barrier(barrier).map_err(remote_error)
    }

    /// Fetches pages before they are touched: for each region byte range in `wanted`, its
    /// pages with at least the access given, all requests at once (see
    /// [`crate::node::prefetch`]). A node about to read a neighbour's rows, or to write rows
    /// others hold copies of, pays one round trip instead of one fault per page. Returns at
    /// once: work on other data while the pages travel, then [`Prefetch::wait`]. A hint: it
    /// changes no result. A range past the region's end is refused with
    /// [`DsmError::PageOutOfRange`].
    ///
    /// ```no_run
    /// # fn f(dsm: &memlink_dsm::cluster::Dsm, above: usize, mine: usize) -> Result<(), memlink_dsm::DsmError> {
    /// use memlink_dsm::Access;
    /// const ROW: usize = 16 * 1024; // 2048 doubles: 4 pages
    /// // The neighbour's row to read and this node's edge row to write, in one round.
    /// let fetching = dsm.prefetch_start(&[
    ///     (above..above + ROW, Access::Read),
    ///     (mine..mine + ROW, Access::Write),
    /// ])?;
    /// // ... compute what needs neither ...
    /// fetching.wait()?;
    /// # Ok(()) }
    /// ```
    pub fn prefetch_start(
        &self,
        wanted: &[(std::ops::Range<usize>, Access)],
    ) -> Result<Prefetch<'_>, DsmError> {
        let pages = self.runtime.pages();
        let mut in_pages = Vec::with_capacity(wanted.len());
        for (bytes, access) in wanted.iter().filter(|(bytes, _)| !bytes.is_empty()) {
            let end = bytes.end.div_ceil(PAGE_SIZE);
            if end > pages as usize {
                return Err(DsmError::PageOutOfRange {
                    page: (end - 1).min(u32::MAX as usize) as u32,
                    pages,
                });
            }
            in_pages.push(((bytes.start / PAGE_SIZE) as u32..end as u32, *access));
        }
        self.runtime.prefetch_start(&in_pages).map_err(remote_error)
    }

    /// [`Dsm::prefetch_start`], then [`Prefetch::wait`].
    pub fn prefetch(&self, wanted: &[(std::ops::Range<usize>, Access)]) -> Result<(), DsmError> {
        self.prefetch_start(wanted)?.wait()
    }

    /// Faults served, messages and bytes sent by this node so far.
    pub fn stats(&self) -> NodeStats {
        self.runtime.stats()
    }

    /// The bytes of memory the region takes on this node now (see
    /// [`Mapping::resident_bytes`]): under a memory budget, at most the budget.
    pub fn resident_bytes(&self) -> Result<u64, DsmError> {
        Ok(self.mapping.resident_bytes()?)
    }

    /// The node runtime, for lower-level use.
    pub fn runtime(&self) -> &Arc<NodeRuntime> {
        &self.runtime
    }

    /// Leaves the cluster in order (a final barrier with every node) and unmaps the region.
    /// Returns this node's final statistics, or [`DsmError::NodeLost`] when the cluster lost
    /// a node before every node reached the final barrier (this node has left either way).
    pub fn leave(mut self) -> Result<NodeStats, DsmError> {
        let stats = self.runtime.stats();
        let final_barrier = self.runtime.shutdown();
        drop(self.faults.take());
        final_barrier.map_err(remote_error)?;
        Ok(stats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_remote_lost_node_stays_a_lost_node() {
        let text = DsmError::NodeLost {
            node: 2,
            reason: "connection closed (EOF)".into(),
        }
        .to_string();
        match remote_error(DsmError::Sync(text)) {
            DsmError::NodeLost { node, .. } => assert_eq!(node, 2),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            remote_error(DsmError::Sync("unlock of a lock not held".into())),
            DsmError::Sync(_)
        ));
    }
}
