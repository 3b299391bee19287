//! The payload of a [`FrameKind::Lost`](super::FrameKind::Lost) frame: the sender tells a peer
//! that a node was lost. A node that sees a peer die tells every other peer before it fails
//! itself, so a survivor learns which node died before it sees the connection of a survivor
//! that left because of the death, and its error names the node that died.
//!
//! ```text
//! offset size field
//!  0     2    node    the lost node (little-endian), one of the cluster's nodes
//!  2     n    reason  what was seen, UTF-8, at most MAX_REASON bytes
//! ```
//!
//! The payload comes from a peer: it is decoded only after its length, the node id (against
//! the cluster's node count) and the text have been checked; a bad notice is a bad frame and
//! the connection that sent it is dropped.

use std::fmt;

use crate::types::NodeId;

/// The longest reason a notice carries, in bytes; a longer one is cut when encoded.
pub const MAX_REASON: usize = 256;

/// A decoded notice: `node` was lost, for `reason`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LostNotice {
    /// The node the sender lost.
    pub node: NodeId,
    /// What the sender saw.
    pub reason: String,
}

/// A notice that cannot be accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NoticeError {
    /// The payload is shorter than the node id.
    Short(usize),
    /// The reason is longer than [`MAX_REASON`].
    Long(usize),
    /// The named node is not one of the cluster's.
    NotInCluster {
        /// The node named.
        node: NodeId,
        /// The cluster's node count.
        nodes: usize,
    },
    /// The reason is not UTF-8.
    NotText,
}

impl fmt::Display for NoticeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NoticeError::Short(n) => write!(f, "lost-node notice of {n} bytes has no node id"),
            NoticeError::Long(n) => write!(
                f,
                "lost-node notice carries a reason of {n} bytes, over the limit of {MAX_REASON}"
            ),
            NoticeError::NotInCluster { node, nodes } => write!(
                f,
                "lost-node notice names node {node}, not one of the cluster's {nodes} nodes"
            ),
            NoticeError::NotText => write!(f, "lost-node notice reason is not UTF-8 text"),
        }
    }
}

impl std::error::Error for NoticeError {}

impl LostNotice {
    /// The payload telling that `node` was lost for `reason` (cut to [`MAX_REASON`] bytes at a
    /// character boundary).
    pub fn encode(node: NodeId, reason: &str) -> Vec<u8> {
        let mut end = reason.len().min(MAX_REASON);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        let mut payload = Vec::with_capacity(2 + end);
        payload.extend_from_slice(&node.to_le_bytes());
        payload.extend_from_slice(&reason.as_bytes()[..end]);
        payload
    }

    /// Decode and check a notice from a cluster of `nodes` nodes.
    pub fn decode(payload: &[u8], nodes: usize) -> Result<LostNotice, NoticeError> {
        let Some((id, reason)) = payload.split_first_chunk::<2>() else {
            return Err(NoticeError::Short(payload.len()));
        };
        let node = NodeId::from_le_bytes(*id);
        if node as usize >= nodes {
            return Err(NoticeError::NotInCluster { node, nodes });
        }
        if reason.len() > MAX_REASON {
            return Err(NoticeError::Long(reason.len()));
        }
        let reason = std::str::from_utf8(reason).map_err(|_| NoticeError::NotText)?;
        Ok(LostNotice {
            node,
            reason: reason.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_notice_round_trips_and_long_reasons_are_cut_at_a_character() {
        let n = LostNotice::decode(&LostNotice::encode(2, "connection closed (EOF)"), 3).unwrap();
        assert_eq!(
            n,
            LostNotice {
                node: 2,
                reason: "connection closed (EOF)".into()
            }
        );
        let long = "é".repeat(MAX_REASON);
        let n = LostNotice::decode(&LostNotice::encode(0, &long), 1).unwrap();
        assert!(n.reason.len() <= MAX_REASON && long.starts_with(&n.reason));
    }

    #[test]
    fn bad_notices_are_refused() {
        assert_eq!(LostNotice::decode(&[1], 3), Err(NoticeError::Short(1)));
        assert_eq!(
            LostNotice::decode(&LostNotice::encode(3, ""), 3),
            Err(NoticeError::NotInCluster { node: 3, nodes: 3 })
        );
        let mut long = LostNotice::encode(1, "");
        long.extend(std::iter::repeat_n(b'x', MAX_REASON + 1));
        assert_eq!(
            LostNotice::decode(&long, 3),
            Err(NoticeError::Long(MAX_REASON + 1))
        );
        assert_eq!(
            LostNotice::decode(&[1, 0, 0xff, 0xfe], 3),
            Err(NoticeError::NotText)
        );
    }
}
