//! What a node believes about its peers' free page frames, as the seed suggests: every
//! coherence message carries its sender's count, and an occasional broadcast (no reply)
//! brings the exact counts to everyone. The belief picks the node an only copy is handed
//! off to; a stale belief costs one refused hand-off (and the refusal carries the truth).

use crate::types::NodeId;

/// The count a node without a memory budget reports: it always has room.
pub const UNLIMITED: u32 = u32::MAX;

/// The last free-frame count heard from each node.
#[derive(Clone, Debug)]
pub struct PeerFrames {
    me: NodeId,
    free: Vec<u32>,
}

impl PeerFrames {
    /// Beliefs of node `me` in a cluster of `nodes`: nothing heard yet, so no peer is
    /// believed to have room.
    pub fn new(me: NodeId, nodes: usize) -> PeerFrames {
        PeerFrames {
            me,
            free: vec![0; nodes],
        }
    }

    /// Node `from` said it has `free` free frames (ignored for a node outside the cluster).
    pub fn heard(&mut self, from: NodeId, free: u32) {
        if let Some(f) = self.free.get_mut(from as usize) {
            *f = free;
        }
    }

    /// What was last heard from `node`.
    pub fn believed(&self, node: NodeId) -> u32 {
        self.free.get(node as usize).copied().unwrap_or(0)
    }

    /// The peer to hand a page off to: the one believed to have the most free frames, if any
    /// has one. The belief drops by one, so that several hand-offs before the next news
    /// spread over the peers instead of all going to one.
    pub fn hand_off_target(&mut self) -> Option<NodeId> {
        let me = self.me as usize;
        let (best, &free) = self
            .free
            .iter()
            .enumerate()
            .filter(|&(n, _)| n != me)
            .max_by_key(|&(n, &f)| (f, std::cmp::Reverse(n)))?;
        if free == 0 {
            return None;
        }
        if free != UNLIMITED {
            self.free[best] = free - 1;
        }
        Some(best as NodeId)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_offs_go_where_room_is_believed_and_spread() {
        let mut peers = PeerFrames::new(1, 4);
        assert_eq!(peers.hand_off_target(), None, "nothing heard: no target");
        peers.heard(0, 2);
        peers.heard(2, 1);
        peers.heard(1, 100); // this node itself is never a target
        peers.heard(9, 5); // outside the cluster: ignored
        assert_eq!(peers.hand_off_target(), Some(0));
        // Now 0 and 2 are believed to have one each: the lower id first.
        assert_eq!(peers.hand_off_target(), Some(0));
        assert_eq!(peers.hand_off_target(), Some(2));
        assert_eq!(peers.hand_off_target(), None);
        peers.heard(3, UNLIMITED);
        for _ in 0..3 {
            assert_eq!(peers.hand_off_target(), Some(3));
        }
        assert_eq!(peers.believed(3), UNLIMITED);
    }
}
