//! Page replacement under a per-node memory budget, in the seed's order (004: "page
//! replacement"), and the pieces the node runtime drives it with.
//!
//! A node with a budget of `B` bytes holds at most `B / PAGE_SIZE` pages of the region (its
//! *frames*; a page counts from the moment it is asked for until its eviction ends). When a
//! fault needs a frame and none is free, the runtime picks a victim and runs the protocol's
//! [`crate::protocol::Coherence::evict`], which goes, cheapest first:
//!
//! 1. a read copy of a page owned elsewhere is dropped, the copyset's keeper told (no data
//!    moves);
//! 2. a page this node owns and others hold copies of passes its ownership to one of them (a
//!    small message; the page does not move);
//! 3. an only copy is handed off to a node believed to have a free frame ([`PeerFrames`],
//!    from counts piggybacked on every coherence message and an occasional broadcast); when
//!    none has room, or it refuses, the page is written back to this node's
//!    [`BackingStore`], and this node, still its owner, serves later faults from there.
//!
//! Within a class the least recently used page goes first ([`Lru`]): recency is what the
//! runtime sees, the last fault on or arrival of a page (a fault backend sees faults, not
//! every load and store). A page inside its Δt hold is never a victim.
//!
//! The counters of what ran are [`crate::types::EvictionStats`], in every node's statistics.

mod free_frames;
mod lru;
mod store;

pub use free_frames::{PeerFrames, UNLIMITED};
pub use lru::{Class, Lru};
pub use store::{BackingStore, FileStore, STORE_DIR_ENV, StoreError};

use crate::types::PAGE_SIZE;

/// The fewest frames a budget may give: one instruction can touch four pages (a move between
/// two operands that each straddle a page boundary), and it must be able to hold them all at
/// once, or it would fault forever.
pub const MIN_FRAMES: u32 = 4;

/// The frames a budget of `bytes` gives (whole pages, rounded down), or why it is too small.
pub fn frames_for(bytes: u64) -> Result<u32, String> {
    let frames = (bytes / PAGE_SIZE as u64).min(u32::MAX as u64) as u32;
    if frames < MIN_FRAMES {
        return Err(format!(
            "a memory budget of {bytes} bytes holds {frames} pages; at least {MIN_FRAMES} pages \
             ({} bytes) are needed, because one instruction may touch {MIN_FRAMES} pages",
            MIN_FRAMES as usize * PAGE_SIZE
        ));
    }
    Ok(frames)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_round_down_to_pages_and_refuse_too_few() {
        assert_eq!(frames_for(16 << 20), Ok(4096));
        assert_eq!(frames_for(4 * PAGE_SIZE as u64 + 100), Ok(4));
        let e = frames_for(3 * PAGE_SIZE as u64).unwrap_err();
        assert!(e.contains("at least 4 pages"), "{e}");
        assert_eq!(frames_for(u64::MAX), Ok(u32::MAX));
    }
}
