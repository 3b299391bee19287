//! The types shared by every part of the DSM: node and page names, access levels, the
//! configuration of a node, its statistics, its error type, and the two traits at the seam
//! between the node runtime (network and protocol) and the memory mapping (pages and faults).

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

/// The id of a node in the cluster: its index in [`NodeConfig::peers`].
pub type NodeId = u16;

/// The number of a page of the shared region: page `p` covers region offsets
/// `p * PAGE_SIZE .. (p + 1) * PAGE_SIZE`.
pub type PageNo = u32;

/// The coherence unit of the DSM, in bytes.
pub const PAGE_SIZE: usize = 4096;

/// What a node may do with its local copy of a page.
///
/// Ordered: `None < Read < Write`, so "at least read" is `access >= Access::Read`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Access {
    /// No valid copy here: any access faults.
    None,
    /// A read copy: reads proceed, writes fault.
    Read,
    /// The only copy, writable: this node is the owner.
    Write,
}

/// How page faults are caught on a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Backend {
    /// `mprotect` protection and a SIGSEGV handler that waits for the protocol.
    Sigsegv,
    /// `userfaultfd` (user-mode faults only, no root needed), filled with `UFFDIO_COPY`.
    Uffd,
}

/// Which of IVY's page managers locates the owner of a page.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ManagerKind {
    /// One manager (node 0) for every page.
    Central,
    /// Each page's manager is fixed by its number: `page % nodes`.
    Fixed,
    /// No manager: requests follow each node's probable owner of the page.
    Dynamic,
}

/// A name that is not one of the accepted spellings of a [`Backend`] or [`ManagerKind`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseKindError {
    /// What was being parsed ("backend" or "manager").
    pub what: &'static str,
    /// The text that did not parse.
    pub got: String,
    /// The accepted spellings.
    pub expected: &'static str,
}

impl fmt::Display for ParseKindError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown {} {:?}: expected one of {}",
            self.what, self.got, self.expected
        )
    }
}

impl std::error::Error for ParseKindError {}

impl FromStr for Backend {
    type Err = ParseKindError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "sigsegv" => Ok(Backend::Sigsegv),
            "uffd" => Ok(Backend::Uffd),
            _ => Err(ParseKindError {
                what: "backend",
                got: s.to_string(),
                expected: "sigsegv, uffd",
            }),
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Sigsegv => "sigsegv",
            Backend::Uffd => "uffd",
        })
    }
}

impl FromStr for ManagerKind {
    type Err = ParseKindError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "central" => Ok(ManagerKind::Central),
            "fixed" => Ok(ManagerKind::Fixed),
            "dynamic" => Ok(ManagerKind::Dynamic),
            _ => Err(ParseKindError {
                what: "manager",
                got: s.to_string(),
                expected: "central, fixed, dynamic",
            }),
        }
    }
}

impl fmt::Display for ManagerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ManagerKind::Central => "central",
            ManagerKind::Fixed => "fixed",
            ManagerKind::Dynamic => "dynamic",
        })
    }
}

/// Everything that can go wrong in a DSM operation.
#[derive(Debug)]
pub enum DsmError {
    /// A peer died or its connection broke: the cluster cannot continue.
    NodeLost {
        /// The peer that was lost.
        node: NodeId,
        /// What was seen (EOF, reset, a bad frame, ...).
        reason: String,
    },
    /// A peer could not be reached at start before the connect timeout.
    Unreachable {
        /// The peer that did not answer.
        node: NodeId,
        /// The address that was tried.
        addr: String,
    },
    /// A peer refused this node at admission (wrong cluster key, another cluster, its id
    /// taken, ...).
    Rejected {
        /// The node that refused.
        by: NodeId,
        /// Why.
        reason: String,
    },
    /// What answered at a peer's address failed this node's admission checks.
    NotAdmitted {
        /// The peer that was dialled.
        node: NodeId,
        /// Its address.
        addr: String,
        /// What failed.
        reason: String,
    },
    /// A peer sent something the protocol does not allow.
    Protocol(String),
    /// An operating-system error (listen, accept, read, write).
    Io(std::io::Error),
    /// The shared region has no free block of `requested` bytes.
    OutOfMemory {
        /// The size that was asked for, in bytes.
        requested: usize,
    },
    /// `free` of an offset that is not the start of an allocated block.
    InvalidFree {
        /// The offset that was passed to `free`.
        offset: usize,
    },
    /// A page number outside the shared region.
    PageOutOfRange {
        /// The page that was asked for.
        page: PageNo,
        /// The number of pages in the region.
        pages: u32,
    },
    /// The configuration cannot work (own id not among the peers, zero pages, ...).
    Config(String),
    /// A lock or barrier used against its rules (unlock of a lock not held, ...).
    Sync(String),
    /// This node has shut down; no more operations are served.
    ShutDown,
    /// The protocol refused a fault: this node's capabilities (see [`crate::capability`])
    /// or its pager's lock of the page (`data_lock`, see [`crate::pager`]) do not allow
    /// `access` to `page`.
    Denied {
        /// The page.
        page: PageNo,
        /// The access refused.
        access: Access,
    },
    /// The pager that pages of the region come from is gone (its process died, or closed
    /// the connection): the faults that waited on it, and the node, cannot go on.
    PagerLost {
        /// The pager's name.
        pager: String,
        /// What was seen.
        reason: String,
    },
    /// The pager that pages of the region come from did not answer a call in time.
    PagerTimeout {
        /// The pager's name.
        pager: String,
        /// How long the node waited.
        after: std::time::Duration,
    },
    /// A fault on `page` failed because the backing store (pager) of the node that owns
    /// it could not provide its contents (Mach's `data_error`); this node and the cluster go
    /// on, and a later fault asks again.
    PageUnavailable {
        /// The page.
        page: PageNo,
        /// The node whose store failed.
        owner: NodeId,
        /// What it said, when it was this node.
        reason: String,
    },
    /// A fault needed a frame, and every frame this node could free holds a page whose
    /// write-back to the backing store (its pager's `data_write`) failed: those pages stay
    /// in this node's memory, nothing is lost, and a later fault, eviction or clean writes
    /// them again; only this fault failed.
    WriteBackFailed {
        /// A page whose write-back failed (the lowest, when there are several).
        page: PageNo,
        /// What the store (pager) said.
        reason: String,
    },
}

impl fmt::Display for DsmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DsmError::NodeLost { node, reason } => write!(
                f,
                "lost node {node} ({reason}); the cluster cannot continue: restart all nodes"
            ),
            DsmError::Unreachable { node, addr } => write!(
                f,
                "node {node} at {addr} could not be reached before the connect timeout: \
                 check that it runs, that the address is right and that no firewall blocks it"
            ),
            DsmError::Rejected { by, reason } => write!(f, "rejected by node {by}: {reason}"),
            DsmError::NotAdmitted { node, addr, reason } => write!(
                f,
                "what answers at {addr} for node {node} failed admission ({reason}): it is not \
                 a node of this cluster, or it holds another cluster key"
            ),
            DsmError::Protocol(what) => write!(
                f,
                "protocol violation: {what} (are all nodes running the same memlink version?)"
            ),
            DsmError::Io(e) => write!(f, "I/O error: {e}"),
            DsmError::OutOfMemory { requested } => write!(
                f,
                "out of shared memory: no free block of {requested} bytes; \
                 free something or start the cluster with more pages"
            ),
            DsmError::InvalidFree { offset } => write!(
                f,
                "free of offset {offset}, which is not the start of an allocated block"
            ),
            DsmError::PageOutOfRange { page, pages } => write!(
                f,
                "page {page} is outside the shared region of {pages} pages"
            ),
            DsmError::Config(what) => write!(f, "bad node configuration: {what}"),
            DsmError::Sync(what) => write!(f, "synchronization error: {what}"),
            DsmError::ShutDown => write!(f, "this node has shut down"),
            DsmError::Denied { page, access } => write!(
                f,
                "{access:?} access to page {page} refused: this node holds no capability that \
                 allows it (ask the range's minter, or a holder with the grant right, for one), \
                 or its pager locked the page (data_lock) and refused to unlock it"
            ),
            DsmError::PagerLost { pager, reason } => write!(
                f,
                "the pager {pager:?} is gone ({reason}); the pages it serves cannot be read \
                 or written back: restart it and the nodes that use it"
            ),
            DsmError::PagerTimeout { pager, after } => write!(
                f,
                "the pager {pager:?} did not answer within {after:?}; check that it runs and \
                 is not stuck, or give it a longer timeout"
            ),
            DsmError::PageUnavailable {
                page,
                owner,
                reason,
            } => write!(
                f,
                "page {page} could not be read from the pager of node {owner}, its owner \
                 ({reason}); the other pages and the nodes go on: fix or restart that pager \
                 and fault again"
            ),
            DsmError::WriteBackFailed { page, reason } => write!(
                f,
                "no frame for the fault: page {page} could not be written back to this \
                 node's backing store ({reason}), so it and the other pages whose write-back \
                 failed stay in memory (nothing is lost); fix the store or pager and fault \
                 again: the next fault, eviction or clean writes them"
            ),
        }
    }
}

impl std::error::Error for DsmError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DsmError::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<std::io::Error> for DsmError {
    fn from(e: std::io::Error) -> Self {
        DsmError::Io(e)
    }
}

/// How one node joins the cluster.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// This node's id: its index in `peers`.
    pub id: NodeId,
    /// The address this node listens on for its peers.
    pub listen: SocketAddr,
    /// The listen address of every node, this one included; index = node id.
    pub peers: Vec<SocketAddr>,
    /// The number of shared pages in the region.
    pub pages: u32,
    /// Which page manager the cluster uses (the same on every node).
    pub manager: ManagerKind,
    /// How long to keep retrying to reach the peers at start.
    pub connect_timeout: Duration,
    /// Who may connect: the cluster key every connection proves (see [`crate::admission`]).
    pub admission: crate::admission::Admission,
    /// The most bytes of the region this node holds at once (whole pages, at least
    /// [`crate::replacement::MIN_FRAMES`]); `None`: no limit. Past it, pages are evicted in
    /// the seed's order (see [`crate::replacement`]).
    pub memory_budget: Option<u64>,
    /// The Δt hold: a page that arrives here (or whose access goes up) stays at least this
    /// long before a request takes it away or lowers its access; zero turns it off.
    pub hold: Duration,
}

/// What a node has done so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NodeStats {
    /// Faults for read access served by the protocol.
    pub read_faults: u64,
    /// Faults for write access served by the protocol.
    pub write_faults: u64,
    /// Messages (frames) sent by this node.
    pub messages: u64,
    /// Bytes sent by this node, frame headers included.
    pub bytes: u64,
    /// What page replacement did here (all zero without a memory budget).
    pub evictions: EvictionStats,
}

/// What page replacement did on one node: its evictions by class, the hand-offs it was
/// offered, and its traffic with its backing store.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvictionStats {
    /// Read copies dropped (the copyset's keeper told; no data moved).
    pub dropped_copies: u64,
    /// Owned replicated pages whose ownership passed to a holder of a copy.
    pub passed_ownership: u64,
    /// Only copies handed off to another node.
    pub handed_off: u64,
    /// Only copies written back to the backing store (a pager's `data_write`).
    pub written_back: u64,
    /// Only copies dropped without a write: unchanged since they came from the store.
    pub dropped_clean: u64,
    /// Hand-offs from other nodes that this node took.
    pub hand_offs_accepted: u64,
    /// Hand-offs from other nodes that this node refused (no free frame).
    pub hand_offs_refused: u64,
    /// Pages read back from the backing store (to use here or to send).
    pub paged_in: u64,
    /// Write-backs to the backing store that failed (the page was kept in memory, and
    /// written again later).
    pub write_backs_failed: u64,
}

impl EvictionStats {
    /// Every counter with its name, in a fixed order (the names report lines and JSON use).
    pub fn named(&self) -> [(&'static str, u64); 9] {
        [
            ("dropped_copies", self.dropped_copies),
            ("passed_ownership", self.passed_ownership),
            ("handed_off", self.handed_off),
            ("written_back", self.written_back),
            ("dropped_clean", self.dropped_clean),
            ("hand_offs_accepted", self.hand_offs_accepted),
            ("hand_offs_refused", self.hand_offs_refused),
            ("paged_in", self.paged_in),
            ("write_backs_failed", self.write_backs_failed),
        ]
    }

    /// Sets the counter that [`EvictionStats::named`] calls `name`; `false` for any other name.
    pub fn set(&mut self, name: &str, value: u64) -> bool {
        let counter = match name {
            "dropped_copies" => &mut self.dropped_copies,
            "passed_ownership" => &mut self.passed_ownership,
            "handed_off" => &mut self.handed_off,
            "written_back" => &mut self.written_back,
            "dropped_clean" => &mut self.dropped_clean,
            "hand_offs_accepted" => &mut self.hand_offs_accepted,
            "hand_offs_refused" => &mut self.hand_offs_refused,
            "paged_in" => &mut self.paged_in,
            "write_backs_failed" => &mut self.write_backs_failed,
            _ => return false,
        };
        *counter = value;
        true
    }
}

impl std::fmt::Display for EvictionStats {
    /// For people: "dropped copies 3, passed ownership 0, ...".
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, (name, value)) in self.named().iter().enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            write!(f, "{sep}{} {value}", name.replace('_', " "))?;
        }
        Ok(())
    }
}

/// The local memory of a node, as the node runtime sees it.
///
/// Implemented by the mapping (dsm-runtime); the node runtime calls it to move page contents
/// and to change what application threads may do with a page.
pub trait LocalPages: Send + Sync {
    /// Copy the current contents of `page` into `out` (PAGE_SIZE bytes), e.g. to send it.
    fn read_page(&self, page: PageNo, out: &mut [u8]);
    /// Fill `page` with `data` and then make it accessible with `access`, atomically for app
    /// threads (fill through the private view, then change protection / UFFDIO_COPY). An
    /// error (the kernel refused a protection change: mapping limit, memory) leaves the page
    /// inaccessible or as it was; the node cannot keep its pages coherent and fails.
    fn install_page(&self, page: PageNo, data: &[u8], access: Access) -> std::io::Result<()>;
    /// Change the access of a page whose contents are already current here (downgrade on a
    /// remote read, invalidate on a remote write, upgrade when ownership arrives without data).
    /// Errors as for [`LocalPages::install_page`].
    fn set_access(&self, page: PageNo, access: Access) -> std::io::Result<()>;
    /// Give up the frame of `page`: no access, and its contents are no longer needed (an
    /// eviction ended), so the memory behind it may be returned to the system. The default
    /// only takes the access away.
    fn release_page(&self, page: PageNo) -> std::io::Result<()> {
        self.set_access(page, Access::None)
    }
    /// [`LocalPages::install_page`] for the run of pages from `first`, `data` holding their
    /// contents one after the other (a multiple of `PAGE_SIZE` bytes), each with `access`
    /// (a read-ahead). An implementation may do it in fewer system calls; the default goes
    /// page by page.
    fn install_run(&self, first: PageNo, data: &[u8], access: Access) -> std::io::Result<()> {
        for (i, contents) in data.chunks(PAGE_SIZE).enumerate() {
            self.install_page(first.saturating_add(i as PageNo), contents, access)?;
        }
        Ok(())
    }
    /// Make the run of `count` pages from `first` readable (and only readable) with the
    /// bytes of `file` from byte `offset` on, without copying them: the pages of the run
    /// show the file's pages themselves (a read-ahead of clean pages a file pager keeps,
    /// [`crate::replacement::BackingStore::mapped_file`]). Every later change of such a
    /// page (write access, an install, a release) first gives it back its own memory, with
    /// the file's bytes copied in where its contents must stay. `Ok(false)` (the default):
    /// this implementation cannot, and the caller installs a copy.
    fn map_file_run(
        &self,
        first: PageNo,
        count: u32,
        file: std::os::fd::BorrowedFd<'_>,
        offset: u64,
    ) -> std::io::Result<bool> {
        let _ = (first, count, file, offset);
        Ok(false)
    }
    /// [`LocalPages::release_page`] for the `count` pages from `first`.
    fn release_run(&self, first: PageNo, count: u32) -> std::io::Result<()> {
        for page in first..first.saturating_add(count) {
            self.release_page(page)?;
        }
        Ok(())
    }
}

/// Serves page faults; implemented by the node runtime (dsm-core).
///
/// Fault backends call it from their service thread.
pub trait FaultResolver: Send + Sync {
    /// Block until `page` is accessible here with at least `access`; `Err(NodeLost)` if the
    /// cluster failed.
    fn resolve_fault(&self, page: PageNo, access: Access) -> Result<(), DsmError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_is_ordered() {
        assert!(Access::None < Access::Read);
        assert!(Access::Read < Access::Write);
        assert_eq!(Access::Read.max(Access::Write), Access::Write);
    }

    #[test]
    fn kinds_parse_and_print() {
        for m in [
            ManagerKind::Central,
            ManagerKind::Fixed,
            ManagerKind::Dynamic,
        ] {
            assert_eq!(m.to_string().parse::<ManagerKind>(), Ok(m));
        }
        for b in [Backend::Sigsegv, Backend::Uffd] {
            assert_eq!(b.to_string().parse::<Backend>(), Ok(b));
        }
        let e = "paxos".parse::<ManagerKind>().unwrap_err();
        assert!(e.to_string().contains("central, fixed, dynamic"));
    }

    #[test]
    fn errors_name_what_to_do() {
        let e = DsmError::Unreachable {
            node: 2,
            addr: "127.0.0.1:7002".into(),
        };
        let text = e.to_string();
        assert!(text.contains("node 2") && text.contains("127.0.0.1:7002"));
        let e = DsmError::NodeLost {
            node: 1,
            reason: "connection reset".into(),
        };
        assert!(e.to_string().contains("lost node 1"));
    }
}
