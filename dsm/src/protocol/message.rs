//! The coherence protocol's messages and the effects a step asks the runtime to carry out.

use super::manager::NodeSet;
use super::rights::{CapId, CapRecord};
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
    /// done; the next request may be served. Also ends an ownership move: the adopting node
    /// → the manager (central, fixed) or the old owner (dynamic) after [`Message::Adopt`]
    /// (access Read); after a hand-off, the evicting node → the manager (central, fixed) with
    /// the access the receiver took, or None when it refused.
    Confirm {
        /// The page.
        page: PageNo,
        /// The access the requester now has.
        access: Access,
    },
    /// Evicting node → manager (central, fixed): this node wants its frame of the page back.
    /// The manager answers with [`Message::EvictReply`] according to what the node is then:
    /// a holder of a copy drops it; an owner passes ownership to a holder of a copy, or hands
    /// the only copy off to `hand_off`, or writes it back to the backing store.
    Evict {
        /// The page.
        page: PageNo,
        /// A node believed to have a free frame, for a page with no other copy.
        hand_off: Option<NodeId>,
    },
    /// Manager (central, fixed) or owner (dynamic, to a holder that asked to drop its copy):
    /// how the eviction goes on.
    EvictReply {
        /// The page.
        page: PageNo,
        /// What the evicting node does now.
        outcome: EvictOutcome,
    },
    /// Ownership without the contents, to a node holding a current read copy (the old owner
    /// evicts its copy). Dynamic manager: `copyset` is the rest of the copies, which the new
    /// owner keeps from now on (empty for the other managers, whose manager keeps it).
    Adopt {
        /// The page.
        page: PageNo,
        /// The other read copies.
        copyset: NodeSet,
    },
    /// Evicting owner → a node with a free frame: take the only copy of the page (contents
    /// attached) and its ownership, with `access`; or refuse (the receiver is full).
    HandOff {
        /// The page.
        page: PageNo,
        /// The access the evicting node had.
        access: Access,
    },
    /// Receiver of a [`Message::HandOff`] → the evicting node: whether it took the page.
    HandOffReply {
        /// The page.
        page: PageNo,
        /// True: the receiver owns the page now; false: it had no room, the sender still
        /// owns it (and writes it back).
        accepted: bool,
    },
    /// The maker of a capability → every other node: record it (see [`super::rights`]).
    Cap {
        /// The capability.
        record: CapRecord,
    },
    /// The minter → every other node: revoke `cap` and everything derived from it.
    Revoke {
        /// The capability.
        cap: CapId,
        /// The first page of its range.
        first: PageNo,
    },
    /// The holder of a capability → every other node: it holds `cap` with `rights` only
    /// from now on (a restriction, never a widening).
    Restrict {
        /// The capability.
        cap: CapId,
        /// The first page of its range.
        first: PageNo,
        /// The rights left ([`super::rights::READ`], ...).
        rights: u8,
    },
    /// The maker of a capability → its holder, once every node recorded it: the capability
    /// is the holder's now (the message is the carrier, as a port right in Mach).
    Deliver {
        /// The capability.
        cap: CapId,
        /// The first page of its range.
        first: PageNo,
    },
    /// → the node that sent a [`Message::Cap`], [`Message::Revoke`] or
    /// [`Message::Restrict`]: done here.
    CapAck {
        /// The capability.
        cap: CapId,
        /// The first page of its range.
        first: PageNo,
    },
    /// Manager (central, fixed) or owner (dynamic) → requester: the request asks for more
    /// than the requester's rights allow; it is not served.
    Refused {
        /// The page.
        page: PageNo,
        /// The access asked for.
        access: Access,
    },
    /// Owner → requester (Mach's `memory_object_data_error`): the owner's backing store (its
    /// pager) could not provide the page's contents, so the request for `access` is not
    /// served; nothing changed hands. Central and fixed managers: the requester ends the
    /// manager's transaction with a [`Message::Confirm`] of access None.
    DataError {
        /// The page.
        page: PageNo,
        /// The access asked for.
        access: Access,
    },
}

/// How an eviction goes on (see [`Message::EvictReply`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EvictOutcome {
    /// Drop the frame: a copy left the copyset (or was invalidated meanwhile).
    Drop,
    /// Pass ownership to this holder of a current copy ([`Message::Adopt`]), then drop.
    PassTo(NodeId),
    /// Hand the only copy off to this node ([`Message::HandOff`]).
    HandOffTo(NodeId),
    /// Write the only copy back to the backing store and drop the frame; stay the owner
    /// (of a page that is paged out).
    WriteBack,
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
            | Message::Confirm { page, .. }
            | Message::Evict { page, .. }
            | Message::EvictReply { page, .. }
            | Message::Adopt { page, .. }
            | Message::HandOff { page, .. }
            | Message::HandOffReply { page, .. }
            | Message::Refused { page, .. }
            | Message::DataError { page, .. } => page,
            Message::Cap { record } => record.first,
            Message::Revoke { first, .. }
            | Message::Restrict { first, .. }
            | Message::CapAck { first, .. }
            | Message::Deliver { first, .. } => first,
        }
    }

    /// Whether the runtime must attach the sender's page contents.
    pub fn carries_data(&self) -> bool {
        matches!(
            self,
            Message::Grant {
                with_data: true,
                ..
            } | Message::HandOff { .. }
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
    /// Like [`Effect::Send`], but the contents attached come from the backing store: this
    /// node owns the page and has paged it out.
    SendStored {
        /// The destination.
        to: NodeId,
        /// The message (it carries data).
        msg: Message,
    },
    /// Read the page back from the backing store into this node's memory and give `access`
    /// (this node owns the page, paged out).
    PageIn {
        /// The page.
        page: PageNo,
        /// The access to give.
        access: Access,
    },
    /// Write this node's contents of the page to the backing store (before
    /// [`Effect::Evicted`] drops them, or after [`super::Coherence::clean`] made them
    /// read-only: local threads may read the page meanwhile, never write it). Never asked for a page that is clean
    /// ([`super::PageState::clean`]): its eviction ends as [`EvictClass::DroppedClean`].
    WriteBack {
        /// The page.
        page: PageNo,
    },
    /// The eviction of `page` is done: its frame is free and its contents here are gone
    /// (the page has no access here).
    Evicted {
        /// The page.
        page: PageNo,
        /// Which class of eviction it was.
        class: EvictClass,
    },
    /// The Δt hold of `page` starts: call [`super::Coherence::hold_expired`] after Δt.
    Hold {
        /// The page.
        page: PageNo,
    },
    /// The local fault on `page` for `access` was refused: this node's rights do not allow
    /// it. The threads waiting for it get the protection fault.
    Denied {
        /// The page.
        page: PageNo,
        /// The access that was refused.
        access: Access,
    },
    /// `pager_data_unlock`: a local fault on `page` wants `access`, which the pager's lock
    /// of the page here forbids ([`super::Coherence::data_lock`]). Ask the pager; its answer,
    /// a `data_lock` of the page, serves or refuses the fault.
    DataUnlock {
        /// The page.
        page: PageNo,
        /// The access the fault wants.
        access: Access,
    },
    /// Capability `cap` was delivered to this node ([`Message::Deliver`]): hand it to the
    /// application.
    Received {
        /// The capability.
        cap: CapId,
    },
    /// Every node recorded (or revoked) capability `cap`: the round this node started is
    /// over.
    CapDone {
        /// The capability.
        cap: CapId,
    },
    /// The local fault on `page` failed: the contents could not be read from the backing
    /// store (the pager) of node `owner` (this node, or the owner that sent
    /// [`Message::DataError`]). The threads waiting for it get the pager's error; the page
    /// is as it was before the fault, and a later fault asks again.
    DataError {
        /// The page.
        page: PageNo,
        /// The node whose store failed.
        owner: NodeId,
    },
    /// A local fault on `page` may now be satisfied: wake the threads waiting for it.
    /// Also ends an eviction that did not free the frame (the node got the page's ownership
    /// meanwhile): the runtime picks another page.
    Served {
        /// The page.
        page: PageNo,
    },
}

/// The seed's eviction classes, cheapest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EvictClass {
    /// A read copy of a page owned elsewhere: dropped, the copyset told.
    DroppedCopy,
    /// A replicated page this node owned: ownership passed to a holder of a copy.
    PassedOwnership,
    /// The only copy: handed off to a node with a free frame, with its ownership.
    HandedOff,
    /// The only copy: written back to the backing store (this node stays its owner).
    WrittenBack,
    /// The only copy, unchanged since it came from the backing store: dropped without a
    /// write (this node stays its owner; the store still holds the contents).
    DroppedClean,
}
