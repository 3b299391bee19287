//! One error type per capability operation, each saying what to do about it.

use std::fmt;

use memlink_capability::capability::Rights;

use crate::types::{DsmError, NodeId};

/// Why [`DsmCapability::mint`](super::DsmCapability::mint) failed.
#[derive(Debug)]
pub enum MintError {
    /// The value does not fit in the region (or the region has no room for it).
    Alloc(DsmError),
    /// The cluster failed while the other nodes were told.
    Node(DsmError),
}

impl fmt::Display for MintError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MintError::Alloc(e) => write!(f, "no room for the capability's range: {e}"),
            MintError::Node(e) => write!(f, "minting failed: {e}"),
        }
    }
}

impl std::error::Error for MintError {}

/// Why [`DsmCapability::acquire`](super::DsmCapability::acquire) (or `acquire_write`, or
/// finding this node's capability for a range) failed.
#[derive(Debug)]
pub enum AcquireError {
    /// This node holds no capability for the range: it was never granted one.
    NotGranted {
        /// The region offset asked for.
        offset: usize,
    },
    /// The minter revoked the capability (or one it derives from).
    Revoked,
    /// The capability lacks the READ right.
    NoReadRight,
    /// `acquire_write` on a capability without the WRITE right.
    NoWriteRight,
    /// The protocol refused the pages, or the cluster failed.
    Node(DsmError),
}

impl fmt::Display for AcquireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AcquireError::NotGranted { offset } => write!(
                f,
                "this node holds no capability for region offset {offset}: ask a holder with \
                 the grant right to send one"
            ),
            AcquireError::Revoked => write!(
                f,
                "the capability was revoked by its minter; ask the minter for a new one"
            ),
            AcquireError::NoReadRight => write!(f, "the capability does not carry the READ right"),
            AcquireError::NoWriteRight => write!(
                f,
                "the capability does not carry the WRITE right; acquire() it for reading"
            ),
            AcquireError::Node(e) => write!(f, "acquiring the range failed: {e}"),
        }
    }
}

impl std::error::Error for AcquireError {}

/// Why [`DsmCapability::send`](super::DsmCapability::send) failed.
#[derive(Debug)]
pub enum SendError {
    /// The capability lacks the GRANT right: it cannot be passed on.
    NotGrantable,
    /// The rights asked for the copy are not all held: rights never widen.
    RightsExceeded {
        /// Rights held.
        held: Rights,
        /// Rights asked for.
        requested: Rights,
    },
    /// The capability was revoked.
    Revoked,
    /// No such node in the cluster.
    UnknownNode {
        /// The node asked for.
        node: NodeId,
        /// The cluster size.
        nodes: usize,
    },
    /// The cluster failed (or refused the capability) while the nodes were told.
    Node(DsmError),
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::NotGrantable => write!(
                f,
                "the capability does not carry the GRANT right, so it cannot be sent; ask its \
                 minter for one that does"
            ),
            SendError::RightsExceeded { held, requested } => write!(
                f,
                "cannot send rights {requested} from a capability holding {held}: rights can \
                 only be narrowed"
            ),
            SendError::Revoked => write!(f, "the capability was revoked by its minter"),
            SendError::UnknownNode { node, nodes } => {
                write!(f, "node {node} is not in the cluster of {nodes} nodes")
            }
            SendError::Node(e) => write!(f, "sending the capability failed: {e}"),
        }
    }
}

impl std::error::Error for SendError {}

/// Why [`DsmCapability::revoke`](super::DsmCapability::revoke) failed.
#[derive(Debug)]
pub enum RevokeError {
    /// Only the node that minted the range revokes its capabilities.
    NotMinter {
        /// The node that minted it.
        minter: NodeId,
    },
    /// The capability was revoked already.
    Revoked,
    /// The cluster failed while the nodes were told.
    Node(DsmError),
}

impl fmt::Display for RevokeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RevokeError::NotMinter { minter } => write!(
                f,
                "only node {minter}, which minted the range, can revoke its capabilities"
            ),
            RevokeError::Revoked => write!(f, "the capability was revoked already"),
            RevokeError::Node(e) => write!(f, "revoking failed: {e}"),
        }
    }
}

impl std::error::Error for RevokeError {}

/// Why [`DsmCapability::receive`](super::DsmCapability::receive) failed.
#[derive(Debug)]
pub enum ReceiveError {
    /// No capability arrived in time.
    Timeout,
    /// The capability that arrived covers fewer bytes than the type asked for.
    TooSmall {
        /// The bytes the range covers.
        range: usize,
        /// The size of the type asked for.
        size: usize,
    },
    /// The cluster failed.
    Node(DsmError),
}

impl fmt::Display for ReceiveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReceiveError::Timeout => write!(
                f,
                "no capability arrived in time: has a holder with the grant right sent one?"
            ),
            ReceiveError::TooSmall { range, size } => write!(
                f,
                "the capability covers {range} bytes, fewer than the {size} bytes of the type \
                 asked for: receive it as the type it was minted with"
            ),
            ReceiveError::Node(e) => write!(f, "receiving a capability failed: {e}"),
        }
    }
}

impl std::error::Error for ReceiveError {}
