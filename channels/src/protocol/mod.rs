//! The lock-free protocols of the channels, written over `#[repr(C)]` structures of atomics
//! from [`crate::sync`]. The same code runs over a shared memory region (the public channel
//! types place these structures in a [`crate::Region`]) and over heap objects under loom
//! (`*Storage` types), where loom-tests/ checks it.

pub mod endpoint;
pub mod loan;
pub mod mpsc;
pub mod rendezvous;
pub mod ring;
pub mod view;
