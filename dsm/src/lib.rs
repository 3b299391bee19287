//! memlink-dsm: a page-coherent distributed shared memory across node processes.

pub mod types;
pub use types::*;
pub mod protocol;
pub mod remote;

#[cfg(not(memlink_loom))]
pub mod fault;
#[cfg(not(memlink_loom))]
pub mod mapping;
