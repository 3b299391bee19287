//! The coherence protocol as a pure state machine: sequential consistency, single writer /
//! multiple readers, write-invalidate, an owner and a copyset per page, and IVY's three
//! managers: central (node 0 manages every page), fixed distributed (page `p` is managed by
//! node `p % nodes`), and dynamic distributed ([`dynamic`]: no manager, requests follow
//! probable owners; the owner keeps the copyset).
//!
//! Each node runs one [`Coherence`]: local faults ([`Coherence::fault`]) and messages
//! ([`Coherence::handle`]) go in, [`Effect`]s come out (messages to send, page installs and
//! access changes, served faults). No I/O happens here; the node runtime carries out the
//! effects, and [`sim::SimCluster`] drives several nodes in memory with messages delivered
//! in any order.
//!
//! A write fault at W, with owner O and copyset C, managed by M:
//! ```text
//! W -> M  WriteRequest            (M serves one request per page at a time, FIFO)
//! M -> c  Invalidate   for c in C\{W};   c -> M  InvalidateAck
//! M -> O  WriteForward{to: W, send_data: W has no current copy}
//! O -> W  Grant{Write, contents if send_data}  (O drops its access first)
//! W -> M  Confirm      (M records owner W, empty copyset, serves the next request)
//! ```
//! A read fault is the same without invalidations: ReadForward, Grant{Read} (the owner keeps
//! a read copy), Confirm (M adds R to the copyset).
//!
//! Capabilities ([`rights`]): ranges of pages with rights per node, recorded at every node.
//! The manager (central, fixed) or the owner (dynamic) answers a request beyond the
//! requester's rights with [`Message::Refused`] instead of serving it (the requester's fault
//! ends with [`Effect::Denied`]); a revocation fences the pages of every node that loses its
//! rights (access gone, contents kept), in one round of messages. Pages outside every range
//! are public, as before.
//!
//! ```
//! use memlink_dsm::protocol::sim::SimCluster;
//! use memlink_dsm::{Access, ManagerKind};
//!
//! let mut c = SimCluster::new(3, 2, ManagerKind::Central).unwrap();
//! c.fault(1, 0, Access::Write).unwrap();          // node 1 wants to write page 0
//! while !c.in_flight.is_empty() {
//!     c.deliver(c.in_flight.len() - 1).unwrap();  // deliver newest first
//! }
//! let v = c.write(1, 0).unwrap();
//! c.fault(2, 0, Access::Read).unwrap();
//! while !c.in_flight.is_empty() { c.deliver(0).unwrap(); }
//! assert_eq!(c.read(2, 0).unwrap(), v);            // node 2 sees node 1's write
//! assert_eq!(c.access(1, 0), Access::Read);        // the writer was downgraded
//! c.check().unwrap();
//! ```

pub mod codec;
pub mod coherence;
pub mod dynamic;
pub mod manager;
pub mod message;
pub mod rights;
pub mod sim;
pub mod unwritten;

pub use coherence::{Coherence, MAX_NODES, PageState, ProtocolError};
pub use manager::{ManagerEntry, NodeSet, Transaction};
pub use message::{Effect, Message};
pub use rights::{CapId, CapRecord, RightsTable};
pub use unwritten::Unwritten;

#[cfg(test)]
mod tests;
