//! What every transport offers: numbered peers, sending a frame to one of them, and a
//! stream of events (frames in, peers lost or left).

use std::fmt;

use super::frame::Frame;
use crate::types::NodeId;

/// Something that happened on a transport, delivered in order on its event channel.
#[derive(Debug)]
pub enum TransportEvent {
    /// A validated frame arrived from `from`.
    Frame {
        /// The sending node.
        from: NodeId,
        /// The frame.
        frame: Frame,
    },
    /// The connection to `node` broke (EOF without a Leave, reset, or a bad frame from it).
    Lost {
        /// The peer whose connection broke.
        node: NodeId,
        /// What was seen.
        reason: String,
    },
    /// `node` left the cluster in order (it sent Leave).
    Left {
        /// The peer that left.
        node: NodeId,
    },
}

/// A frame that could not be sent; the frame is handed back.
#[derive(Debug)]
pub struct SendError {
    /// The node the frame was for.
    pub to: NodeId,
    /// Why it could not be sent.
    pub reason: String,
    /// The frame, handed back.
    pub frame: Frame,
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "could not send to node {}: {}", self.to, self.reason)
    }
}

impl std::error::Error for SendError {}

/// Frames between numbered nodes; each implementation also hands out a receiver of
/// [`TransportEvent`]s when it is built.
pub trait Transport: Send + Sync {
    /// This node's id.
    fn id(&self) -> NodeId;
    /// The number of nodes, this one included.
    fn nodes(&self) -> usize;
    /// Send `frame` to `to` (not to this node itself). Frames to one peer arrive in order.
    fn send(&self, to: NodeId, frame: Frame) -> Result<(), SendError>;
    /// Frames and bytes sent so far (headers included).
    fn sent(&self) -> (u64, u64);
    /// Tell every peer this node leaves (a Leave frame), then close the connections.
    fn close(&self);
}
