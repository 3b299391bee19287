//! [`NodeConfigBuilder`]: a node's configuration from its id and the peers' addresses, with
//! defaults for everything else, checked when built.
//!
//! ```
//! use std::time::Duration;
//! use memlink_dsm::{ManagerKind, NodeConfig};
//!
//! let peers = vec!["10.0.0.1:7700".parse().unwrap(), "10.0.0.2:7700".parse().unwrap()];
//! let config = NodeConfig::builder(1, peers)
//!     .listen("0.0.0.0:7700".parse().unwrap()) // default: its own entry of the peers
//!     .pages(1024)                             // default: DEFAULT_PAGES
//!     .manager(ManagerKind::Dynamic)           // default: central
//!     .connect_timeout(Duration::from_secs(60)) // default: 30 s
//!     .memory_budget(16 << 20)                 // default: no limit
//!     .hold(Duration::from_micros(100))        // default: DEFAULT_HOLD
//!     .build()?;
//! assert_eq!(config.peers.len(), 2);
//! # Ok::<(), memlink_dsm::DsmError>(())
//! ```

use std::net::SocketAddr;
use std::time::Duration;

use crate::admission::Admission;
use crate::types::{DsmError, ManagerKind, NodeConfig, NodeId};

/// The region size of a builder that is not told one: 256 pages (1 MiB).
pub const DEFAULT_PAGES: u32 = 256;

/// How long a node built with the defaults keeps trying to reach its peers at start.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// The Δt hold of a node that is not told one (see [`NodeConfig::hold`]): zero, off. Chosen
/// from `memlink dsm bench --suite hold` and the apps (dsm/README.md): a hold pays where two
/// nodes write one page at once, and delays every hand-over at a lock or barrier by Δt.
pub const DEFAULT_HOLD: Duration = Duration::ZERO;

/// Builds a [`NodeConfig`]; made by [`NodeConfig::builder`].
#[derive(Clone, Debug)]
#[must_use = "a builder does nothing until build() is called"]
pub struct NodeConfigBuilder {
    id: NodeId,
    peers: Vec<SocketAddr>,
    listen: Option<SocketAddr>,
    pages: u32,
    manager: ManagerKind,
    connect_timeout: Duration,
    admission: Option<Admission>,
    memory_budget: Option<u64>,
    hold: Duration,
}

impl NodeConfig {
    /// A builder for node `id` of the cluster whose nodes listen at `peers` (index = node
    /// id, the same list on every node). Defaults: listen on `peers[id]`, [`DEFAULT_PAGES`]
    /// pages, the central manager, [`DEFAULT_CONNECT_TIMEOUT`], and the admission of
    /// [`Admission::from_env`] (the launcher's key, or loopback only).
    pub fn builder(id: NodeId, peers: Vec<SocketAddr>) -> NodeConfigBuilder {
        NodeConfigBuilder {
            id,
            peers,
            listen: None,
            pages: DEFAULT_PAGES,
            manager: ManagerKind::Central,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            admission: None,
            memory_budget: None,
            hold: DEFAULT_HOLD,
        }
    }
}

impl NodeConfigBuilder {
    /// The address to listen on (e.g. `0.0.0.0:7700` to accept on every interface).
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = Some(addr);
        self
    }

    /// The number of shared pages in the region (the same on every node).
    pub fn pages(mut self, pages: u32) -> Self {
        self.pages = pages;
        self
    }

    /// The page manager (the same on every node).
    pub fn manager(mut self, manager: ManagerKind) -> Self {
        self.manager = manager;
        self
    }

    /// How long to keep trying to reach the peers at start (a duration too long for the
    /// clock waits without end).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Who may connect (see [`crate::admission`]).
    pub fn admission(mut self, admission: Admission) -> Self {
        self.admission = Some(admission);
        self
    }

    /// The most bytes of the region this node may hold at once (rounded down to whole
    /// pages; see [`crate::replacement`]).
    pub fn memory_budget(mut self, bytes: u64) -> Self {
        self.memory_budget = Some(bytes);
        self
    }

    /// The Δt hold (zero: off).
    pub fn hold(mut self, hold: Duration) -> Self {
        self.hold = hold;
        self
    }

    /// The configuration; [`DsmError::Config`] when `id` is not an index of the peers, the
    /// region has no page, the memory budget holds fewer than
    /// [`crate::replacement::MIN_FRAMES`] pages, or the admission from the environment
    /// cannot be read.
    pub fn build(self) -> Result<NodeConfig, DsmError> {
        let Some(&own) = self.peers.get(self.id as usize) else {
            return Err(DsmError::Config(format!(
                "node id {} is not an index of the {} peers",
                self.id,
                self.peers.len()
            )));
        };
        if self.pages == 0 {
            return Err(DsmError::Config(
                "the shared region needs at least one page".into(),
            ));
        }
        if let Some(bytes) = self.memory_budget {
            crate::replacement::frames_for(bytes).map_err(DsmError::Config)?;
        }
        let admission = match self.admission {
            Some(a) => a,
            None => Admission::from_env().map_err(|e| DsmError::Config(e.to_string()))?,
        };
        Ok(NodeConfig {
            id: self.id,
            listen: self.listen.unwrap_or(own),
            peers: self.peers,
            pages: self.pages,
            manager: self.manager,
            connect_timeout: self.connect_timeout,
            admission,
            memory_budget: self.memory_budget,
            hold: self.hold,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peers(n: u16) -> Vec<SocketAddr> {
        (0..n)
            .map(|i| SocketAddr::from(([127, 0, 0, 1], 7000 + i)))
            .collect()
    }

    #[test]
    fn defaults_fill_what_is_not_said() {
        let c = NodeConfig::builder(1, peers(3))
            .admission(Admission::LoopbackOnly)
            .build()
            .unwrap();
        assert_eq!(c.id, 1);
        assert_eq!(c.listen, peers(3)[1]);
        assert_eq!(c.pages, DEFAULT_PAGES);
        assert_eq!(c.manager, ManagerKind::Central);
        assert_eq!(c.connect_timeout, DEFAULT_CONNECT_TIMEOUT);
        let c = NodeConfig::builder(0, peers(2))
            .listen("0.0.0.0:7000".parse().unwrap())
            .pages(9)
            .manager(ManagerKind::Fixed)
            .connect_timeout(Duration::MAX)
            .admission(Admission::Insecure)
            .build()
            .unwrap();
        assert_eq!(c.listen.to_string(), "0.0.0.0:7000");
        assert_eq!((c.pages, c.manager), (9, ManagerKind::Fixed));
        assert_eq!(c.admission, Admission::Insecure);
        assert_eq!((c.memory_budget, c.hold), (None, DEFAULT_HOLD));
        let c = NodeConfig::builder(0, peers(1))
            .memory_budget(1 << 20)
            .hold(Duration::from_millis(1))
            .admission(Admission::LoopbackOnly)
            .build()
            .unwrap();
        assert_eq!(c.memory_budget, Some(1 << 20));
        assert_eq!(c.hold, Duration::from_millis(1));
    }

    #[test]
    fn a_config_that_cannot_work_is_refused() {
        let e = NodeConfig::builder(3, peers(3)).build().unwrap_err();
        assert!(e.to_string().contains("node id 3"), "{e}");
        let e = NodeConfig::builder(0, peers(1))
            .pages(0)
            .build()
            .unwrap_err();
        assert!(e.to_string().contains("at least one page"), "{e}");
        assert!(NodeConfig::builder(0, Vec::new()).build().is_err());
        let e = NodeConfig::builder(0, peers(1))
            .memory_budget(4096)
            .build()
            .unwrap_err();
        assert!(e.to_string().contains("at least 4 pages"), "{e}");
    }
}
