//! memlink-channels: the synchronous zero-copy channel, loan channels, the two-copy
//! buffered baseline and many-sender ports.
//!
//! * [`SyncChannel`]: the rendezvous of seed 001. The descriptor holds a wait flag, a length,
//!   `val_ref` and `PCB_ref`, and no buffer; the second party to arrive copies straight from
//!   the sender's message variable into the receiver's target variable.
//! * [`LoanChannel`]: true zero copy. The sender borrows a slot of a pool in shared memory,
//!   builds the message in place and sends its reference; the receiver reads it in place at the
//!   same address; dropping the sample returns the slot.
//! * [`BufferedChannel`]: the classic k-slot channel with two copies, the baseline.
//! * [`Port`]: many senders in many processes, one receiver; the receive right moves between
//!   processes inside a message.
//!
//! Every channel waits per its [`WaitMode`]: spin, block on a futex in the waiter's process
//! control block ([`Pcb`]), or spin then block. A peer that closes or dies (even by SIGKILL)
//! ends a waiting operation with `Disconnected`, within about [`wait::LIVENESS_PERIOD`] when
//! blocked.
//!
//! The lock-free protocols are in [`protocol`], written over [`sync`]'s atomics so that the
//! loom models in loom-tests/ check the code that runs over shared memory.

pub mod pcb;
pub mod protocol;
pub mod shareable;
pub mod sync;
pub mod wait;

#[cfg(not(memlink_loom))]
mod backing;
#[cfg(not(memlink_loom))]
mod buffered_channel;
#[cfg(not(memlink_loom))]
mod checksum;
#[cfg(not(memlink_loom))]
pub mod error;
#[cfg(not(memlink_loom))]
pub mod fuzzing;
#[cfg(not(memlink_loom))]
pub mod layout;
#[cfg(not(memlink_loom))]
pub mod liveness;
#[cfg(not(memlink_loom))]
mod loan_channel;
#[cfg(not(memlink_loom))]
pub mod named;
#[cfg(not(memlink_loom))]
pub mod pingpong;
#[cfg(not(memlink_loom))]
mod port;
#[cfg(not(memlink_loom))]
pub mod region;
#[cfg(not(memlink_loom))]
mod sync_channel;
#[cfg(not(memlink_loom))]
pub mod tamper;

pub use pcb::Pcb;
pub use shareable::Shareable;
pub use wait::{Deadline, WaitMode};

#[cfg(not(memlink_loom))]
pub use backing::ChannelRef;
#[cfg(not(memlink_loom))]
pub use buffered_channel::{BufferedChannel, BufferedReceiver, BufferedSender};
#[cfg(not(memlink_loom))]
pub use error::{
    ConnectError, LoanError, RecvError, RecvTimeoutError, SendError, SendTimeoutError,
    TryRecvError, TrySendError,
};
#[cfg(not(memlink_loom))]
pub use layout::LayoutError;
#[cfg(not(memlink_loom))]
pub use loan_channel::{Loan, LoanChannel, LoanReceiver, LoanSender, Sample};
#[cfg(not(memlink_loom))]
pub use port::{Port, PortSender, ReceiveRight, ReceiveRightToken, SendRight};
#[cfg(not(memlink_loom))]
pub use region::{AllocError, HeaderField, Region, RegionError, SharedVar};
#[cfg(not(memlink_loom))]
pub use sync_channel::{SyncChannel, SyncReceiver, SyncSender};

/// The README's examples, compiled and run as doctests (`cargo test --doc -p memlink-channels`).
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
