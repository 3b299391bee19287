//! memlink-capability: shared memory segments, the shared address window, the three
//! shared-reference schemes (coinciding addresses, translated references, dynamic
//! capabilities) and the shared process descriptor.
//!
//! Layout:
//! - [`sync`]: atomics and futex, swapped for loom's under `--cfg memlink_loom`;
//! - [`futex`]: cross-process futex wait/wake;
//! - [`shareable`]: the [`Shareable`] marker for types allowed in shared memory;
//! - [`process`]: the process descriptor (futex word + owner pid);
//! - [`segment`], [`mapping`]: sealed memfd segments and their mappings;
//! - [`liveness`]: pidfd-based peer liveness;
//! - [`fd_passing`], [`rendezvous`]: bytes + descriptors over unix sockets, and finding
//!   a peer by socket path;
//! - [`window`]: scheme 1, a window reserved at the same base in every process;
//! - [`shared_ref`]: scheme 2, (segment id, offset) references and translation tables;
//! - [`capability`], [`guard_count`], [`capability_transfer`]: scheme 3, capabilities
//!   with rights, acquire/release guards, revocation, and passing them between processes.

pub mod futex;
pub mod guard_count;
pub mod process;
pub mod shareable;
pub mod sync;

#[cfg(not(memlink_loom))]
pub mod capability;
#[cfg(not(memlink_loom))]
pub mod capability_transfer;
#[cfg(not(memlink_loom))]
pub mod fd_passing;
#[cfg(not(memlink_loom))]
pub mod fuzz_bodies;
#[cfg(not(memlink_loom))]
pub mod liveness;
#[cfg(not(memlink_loom))]
pub mod mapping;
#[cfg(not(memlink_loom))]
pub mod rendezvous;
#[cfg(not(memlink_loom))]
pub mod segment;
#[cfg(not(memlink_loom))]
pub mod shared_ref;
#[cfg(not(memlink_loom))]
pub mod window;

pub use process::{BlockOutcome, ProcessDescriptor};
pub use shareable::Shareable;

#[cfg(not(memlink_loom))]
pub use liveness::PeerLiveness;
#[cfg(not(memlink_loom))]
pub use mapping::{MapError, Mapping, Protection};
#[cfg(not(memlink_loom))]
pub use segment::{AttachError, CreateError, Segment, SegmentId};
