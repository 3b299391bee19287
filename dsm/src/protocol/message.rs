//! The coherence protocol's messages and the effects a step asks the runtime to carry out.

use crate::types::{Access, NodeId, PageNo};

/// A coherence message between two nodes (possibly a node and itself).
///
/// Page contents are not part of a message: when a [`Message::Grant`] has `with_data`, the
/// runtime attaches the sender's current contents of the page at the moment it sends, and the
/// receiver installs them (see [`Effect::Install`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Message {
    /// Faulting node → page manager: I need a read copy.
    ReadRequest {
        /// The page.
        page: PageNo,
    },
    /// Faulting node → page manager: I need to write (ownership).
    WriteRequest {
        /// The page.
        page: PageNo,
    },
    /// Manager → owner: send a read copy to `to` (and keep only read access yourself).
    ReadForward {
        /// The page.
        page: PageNo,
        /// The node that asked.
        to: NodeId,
    },
    /// Manager → owner: hand the page's ownership to `to`; `send_data` is false when `to`
    /// already holds a current copy.
    WriteForward {
        /// The page.
        page: PageNo,
        /// The node that asked.
        to: NodeId,
        /// Whether the contents must travel.
        send_data: bool,
    },
    /// Manager → holder of a read copy: drop it.
    Invalidate {
        /// The page.
        page: PageNo,
    },
    /// Holder → manager: dropped.
    InvalidateAck {
        /// The page.
        page: PageNo,
    },
    /// Owner → requester: here is the access you asked for (and the contents, `with_data`).
    Grant {
        /// The page.
        page: PageNo,
        /// Read (a copy) or Write (ownership).
        access: Access,
        /// Whether the page contents travel with this message.
        with_data: bool,
    },
    /// Dynamic manager: a request for `access` by `requester`, sent to the probable owner
    /// and forwarded along the probable-owner chain until it reaches the owner.
    Request {
        /// The page.
        page: PageNo,
        /// The node that faulted.
        requester: NodeId,
        /// Read or Write.
        access: Access,
    },
    /// Requester → manager (central, fixed) or owner (dynamic, read copies): the transfer is
    /// done; the next request may be served.
    Confirm {
        /// The page.
        page: PageNo,
        /// The access the requester now has.
        access: Access,
    },
}

impl Message {
    /// The page the message is about.
    pub fn page(&self) -> PageNo {
        match *self {
            Message::ReadRequest { page }
            | Message::WriteRequest { page }
            | Message::ReadForward { page, .. }
            | Message::WriteForward { page, .. }
            | Message::Invalidate { page }
            | Message::InvalidateAck { page }
            | Message::Grant { page, .. }
            | Message::Request { page, .. }
            | Message::Confirm { page, .. } => page,
        }
    }

    /// Whether the runtime must attach the sender's page contents.
    pub fn carries_data(&self) -> bool {
        matches!(
            self,
            Message::Grant {
                with_data: true,
                ..
            }
        )
    }
}

/// What a protocol step asks the runtime to do, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Effect {
    /// Send `msg` to `to` (which may be this node: deliver it back to the state machine).
    /// When `msg.carries_data()`, attach this node's current contents of the page, read
    /// now, after every earlier effect of the step.
    Send {
        /// The destination.
        to: NodeId,
        /// The message.
        msg: Message,
    },
    /// Install the contents that came with the message being handled and give `access`.
    Install {
        /// The page.
        page: PageNo,
        /// The access to give.
        access: Access,
    },
    /// Change the local access of a page whose contents are current (or being dropped).
    SetAccess {
        /// The page.
        page: PageNo,
        /// The new access.
        access: Access,
    },
    /// A local fault on `page` may now be satisfied: wake the threads waiting for it.
    Served {
        /// The page.
        page: PageNo,
    },
}
