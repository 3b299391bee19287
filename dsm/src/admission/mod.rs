//! Admission: who may join a cluster, and how that is checked.
//!
//! Every connection between two nodes proves, before any other frame is read, that both ends
//! hold the cluster key: a mutual HMAC-SHA256 challenge-response with fresh random nonces
//! from both sides ([`handshake`]), one round trip more than a plain Hello exchange. The
//! proof also binds both node ids and the cluster id (a hash of the peers list, node count,
//! page count and manager), so a node is admitted only as the id the handshake proved, only
//! once, and only into the cluster it was configured for. A refused peer is told why, so its
//! error reads "rejected by node 0: wrong cluster key" rather than a network fault.
//!
//! - [`key`]: the cluster key and its file (`memlink dsm keygen`, `--key-file`,
//!   [`KEY_FILE_ENV`]);
//! - [`handshake`]: the handshake as a pure state machine (also fuzzed); it also carries
//!   each node's code identity, kept by [`peer_codes`] (a difference refuses tasks, not
//!   pages);
//! - [`gate`]: the handshake over TCP: [`dial`], and the [`Gate`] that admits the
//!   connections a listener accepts at a bounded cost (one thread, bounded pending
//!   connections, a deadline, rate-limited logging: [`log`]).
//!
//! Trust boundary: everything a peer sends before it is admitted is untrusted and parsed
//! only by [`handshake`] (fixed-size messages, length checked before anything is read into
//! a fixed buffer). Once admitted, a peer is a node of the cluster: it holds the key. The
//! traffic is authenticated at connection set-up, not encrypted and not integrity-protected
//! frame by frame: across networks you do not trust, run the cluster inside a VPN such as
//! WireGuard.

pub mod gate;
pub mod handshake;
pub mod key;
pub mod log;
pub mod peer_codes;

pub use gate::{
    AdmitError, Gate, HANDSHAKE_DEADLINE, MAX_PENDING, admit_accepted, admit_dialled, dial,
};
pub use handshake::{ClusterId, Handshake, Refusal};
pub use key::{ClusterKey, KEY_FILE_ENV, KeyError, TempKeyFile};

/// Who may connect to a node ([`crate::NodeConfig::admission`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Every connection proves knowledge of this cluster key (the same on every node).
    Key(ClusterKey),
    /// No key, which is allowed only while the node listens on and dials loopback addresses
    /// (a cluster on one host; any local user could still join it). A node configured so
    /// with another address refuses to start.
    LoopbackOnly,
    /// No key on any address: anyone who can reach the node's port can join the cluster. The
    /// node says so on stderr when it starts. Only inside a network you trust.
    Insecure,
}

impl Admission {
    /// The key in the file named by [`KEY_FILE_ENV`] when that variable is set (as the local
    /// launcher sets it for its nodes), else [`Admission::LoopbackOnly`].
    pub fn from_env() -> Result<Admission, KeyError> {
        match ClusterKey::from_env() {
            Some(key) => key.map(Admission::Key),
            None => Ok(Admission::LoopbackOnly),
        }
    }

    /// The key, if any.
    pub fn key(&self) -> Option<&ClusterKey> {
        match self {
            Admission::Key(k) => Some(k),
            _ => None,
        }
    }

    /// Checks that a node listening on `listen` and dialling `peers` may run with this
    /// admission; Ok(Some(warning)) for [`Admission::Insecure`] off loopback.
    pub fn check(
        &self,
        listen: std::net::SocketAddr,
        peers: &[std::net::SocketAddr],
    ) -> Result<Option<String>, String> {
        let off_loopback = std::iter::once(&listen)
            .chain(peers)
            .find(|a| !a.ip().is_loopback());
        match (self, off_loopback) {
            (Admission::Key(_), _) | (_, None) => Ok(None),
            (Admission::LoopbackOnly, Some(addr)) => Err(format!(
                "{addr} is not a loopback address and this node has no cluster key: anyone who \
                 can reach it could join the cluster. Give every node the same key file \
                 (--key-file, made by `memlink dsm keygen`), or run with --insecure inside a \
                 network you trust"
            )),
            (Admission::Insecure, Some(addr)) => Ok(Some(format!(
                "--insecure: no cluster key; anyone who can reach {addr} can join this \
                 cluster and read or write its memory"
            ))),
        }
    }
}
