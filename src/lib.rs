//! memlink: shared-memory parallel programming on Linux.
//!
//! This facade re-exports the layers:
//! - [`capability`]: segments, the shared window, shared references and capabilities;
//! - [`channels`]: zero-copy synchronous channels, loan channels, the buffered baseline, ports;
//! - [`dsm`]: a page-coherent distributed shared memory across node processes.

pub use memlink_capability as capability;
pub use memlink_channels as channels;
pub use memlink_dsm as dsm;

#[cfg(not(memlink_loom))]
pub mod ipc_bench;

/// The README's Rust examples, compiled as doctests so that they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
mod readme_examples {}
