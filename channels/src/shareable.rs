//! Types that may be placed in shared memory: memlink-capability's marker, re-exported.
//!
//! Channels copy values byte for byte between processes, so they ask for `Shareable + Copy`.

pub use memlink_capability::Shareable;
