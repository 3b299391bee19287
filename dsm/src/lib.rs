//! memlink-dsm: a page-coherent distributed shared memory across node processes.

pub mod types;
pub use types::*;
pub mod admission;
pub mod alloc;
#[cfg(not(memlink_loom))]
pub mod atomic;
pub mod config;
pub use config::NodeConfigBuilder;
#[cfg(not(memlink_loom))]
pub mod migration_bench;
#[cfg(not(memlink_loom))]
pub mod node;
pub mod process;
pub mod protocol;
pub mod remote;
#[cfg(not(memlink_loom))]
pub mod rendezvous;
pub mod replacement;
#[cfg(not(memlink_loom))]
pub mod replacement_bench;
pub mod sync;
#[cfg(not(memlink_loom))]
pub use node::NodeRuntime;

#[cfg(not(memlink_loom))]
pub mod apps;
#[cfg(not(memlink_loom))]
pub mod bench;
#[cfg(not(memlink_loom))]
mod bench_phases;
#[cfg(not(memlink_loom))]
pub mod capability;
#[cfg(not(memlink_loom))]
pub mod capability_bench;
#[cfg(not(memlink_loom))]
pub mod cluster;
#[cfg(not(memlink_loom))]
pub mod connect_bench;
#[cfg(not(memlink_loom))]
pub mod fault;
pub mod fault_slots;
pub mod figures_line;
#[cfg(not(memlink_loom))]
pub mod fuzzing;
#[cfg(not(memlink_loom))]
pub mod handles;
pub mod hostlist;
#[cfg(not(memlink_loom))]
pub mod init;
pub mod launcher_env;
#[cfg(not(memlink_loom))]
pub mod mapping;
pub mod pager;
pub mod peer_addr;
