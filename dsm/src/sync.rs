//! The synchronization manager (pure state): locks with a FIFO queue of waiters, and
//! barriers, kept at the node that manages them and driven by messages, never by
//! test-and-set over shared pages (which would make the page bounce between nodes).
//!
//! A waiter `W` is whatever the caller needs to answer later: the runtime stores the
//! request's reply handle, a test stores a name. The manager of lock or barrier `x` in a
//! cluster of `n` nodes is node `x % n` ([`manager_of`]).
//!
//! ```
//! use memlink_dsm::sync::SyncManager;
//! let mut m = SyncManager::new();
//! assert_eq!(m.lock(7, 1, "a"), Some("a"));     // free: granted at once
//! assert_eq!(m.lock(7, 2, "b"), None);          // held: b waits
//! assert_eq!(m.unlock(7, 1).unwrap(), Some("b")); // b is granted on unlock
//! ```

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;

use crate::types::NodeId;

/// The node that manages lock or barrier `id` in a cluster of `nodes`.
pub fn manager_of(id: u32, nodes: usize) -> NodeId {
    (id as usize % nodes.max(1)) as NodeId
}

/// A synchronization request that breaks the rules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SyncError {
    /// `node` unlocked a lock it does not hold.
    NotHolder {
        /// The lock.
        lock: u32,
        /// The node that tried to unlock.
        node: NodeId,
        /// The node that holds it, if any.
        holder: Option<NodeId>,
    },
    /// `node` arrived twice at a barrier in the same round.
    DoubleArrival {
        /// The barrier.
        barrier: u32,
        /// The node.
        node: NodeId,
    },
}

impl fmt::Display for SyncError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SyncError::NotHolder { lock, node, holder } => match holder {
                Some(h) => write!(f, "node {node} unlocked lock {lock}, which node {h} holds"),
                None => write!(f, "node {node} unlocked lock {lock}, which nobody holds"),
            },
            SyncError::DoubleArrival { barrier, node } => write!(
                f,
                "node {node} arrived twice at barrier {barrier} in one round"
            ),
        }
    }
}

impl std::error::Error for SyncError {}

#[derive(Clone, Debug)]
struct LockState<W> {
    holder: Option<NodeId>,
    queue: VecDeque<(NodeId, W)>,
}

#[derive(Clone, Debug)]
struct BarrierState<W> {
    arrived: Vec<(NodeId, W)>,
}

/// The locks and barriers one node manages.
#[derive(Clone, Debug)]
pub struct SyncManager<W> {
    locks: HashMap<u32, LockState<W>>,
    barriers: HashMap<u32, BarrierState<W>>,
}

impl<W> Default for SyncManager<W> {
    fn default() -> Self {
        SyncManager {
            locks: HashMap::new(),
            barriers: HashMap::new(),
        }
    }
}

impl<W> SyncManager<W> {
    /// No lock held, no barrier waited on.
    pub fn new() -> Self {
        Self::default()
    }

    /// `node` asks for `lock`: `Some(waiter)` when granted at once, `None` when queued.
    pub fn lock(&mut self, lock: u32, node: NodeId, waiter: W) -> Option<W> {
        let st = self.locks.entry(lock).or_insert_with(|| LockState {
            holder: None,
            queue: VecDeque::new(),
        });
        if st.holder.is_none() {
            st.holder = Some(node);
            Some(waiter)
        } else {
            st.queue.push_back((node, waiter));
            None
        }
    }

    /// `node` releases `lock`; the next waiter in FIFO order, if any, now holds it and is
    /// returned to be answered.
    pub fn unlock(&mut self, lock: u32, node: NodeId) -> Result<Option<W>, SyncError> {
        let holder = self.locks.get(&lock).and_then(|s| s.holder);
        if holder != Some(node) {
            return Err(SyncError::NotHolder { lock, node, holder });
        }
        let Some(st) = self.locks.get_mut(&lock) else {
            return Err(SyncError::NotHolder { lock, node, holder });
        };
        match st.queue.pop_front() {
            Some((next, w)) => {
                st.holder = Some(next);
                Ok(Some(w))
            }
            None => {
                self.locks.remove(&lock);
                Ok(None)
            }
        }
    }

    /// The holder of `lock`, if any.
    pub fn holder(&self, lock: u32) -> Option<NodeId> {
        self.locks.get(&lock).and_then(|s| s.holder)
    }

    /// `node` arrives at `barrier` of `parties` nodes: when it is the last, every waiter of
    /// the round (its own included) is returned to be released, and the barrier resets.
    /// A second arrival of `node` in one round is refused and its waiter handed back.
    pub fn arrive(
        &mut self,
        barrier: u32,
        node: NodeId,
        parties: usize,
        waiter: W,
    ) -> Result<Vec<W>, (SyncError, W)> {
        let st = self
            .barriers
            .entry(barrier)
            .or_insert_with(|| BarrierState {
                arrived: Vec::new(),
            });
        if st.arrived.iter().any(|(n, _)| *n == node) {
            return Err((SyncError::DoubleArrival { barrier, node }, waiter));
        }
        st.arrived.push((node, waiter));
        if st.arrived.len() >= parties {
            let done = self
                .barriers
                .remove(&barrier)
                .map(|s| s.arrived)
                .unwrap_or_default();
            return Ok(done.into_iter().map(|(_, w)| w).collect());
        }
        Ok(Vec::new())
    }

    /// The first wait here that cannot end without a node of `gone` (nodes that left the
    /// cluster): a barrier with arrivals that one of them has not arrived at, a lock one of
    /// them holds while others queue for it, or a lock one of them queues for (it would be
    /// granted and never released). Names the node and the wait.
    pub fn waits_on(&self, gone: &HashSet<NodeId>) -> Option<(NodeId, String)> {
        for (b, st) in &self.barriers {
            let missing = gone
                .iter()
                .find(|g| !st.arrived.iter().any(|(n, _)| n == *g));
            if let Some(&g) = missing {
                return Some((g, format!("barrier {b}")));
            }
        }
        for (l, st) in &self.locks {
            if let Some(h) = st.holder.filter(|h| gone.contains(h))
                && !st.queue.is_empty()
            {
                return Some((h, format!("lock {l}, which it holds")));
            }
            if let Some((q, _)) = st.queue.iter().find(|(n, _)| gone.contains(n)) {
                return Some((*q, format!("lock {l}, which it queued for")));
            }
        }
        None
    }

    /// Every waiter of every lock and barrier, removed (to fail them when the cluster fails).
    pub fn drain_waiters(&mut self) -> Vec<W> {
        let mut out = Vec::new();
        for (_, st) in self.locks.drain() {
            out.extend(st.queue.into_iter().map(|(_, w)| w));
        }
        for (_, st) in self.barriers.drain() {
            out.extend(st.arrived.into_iter().map(|(_, w)| w));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_that_need_a_departed_node_are_found() {
        let gone: HashSet<NodeId> = [2].into_iter().collect();
        let mut m = SyncManager::new();
        assert_eq!(m.waits_on(&gone), None, "nothing waits");
        assert_eq!(m.lock(1, 2, 'a'), Some('a'));
        assert_eq!(m.waits_on(&gone), None, "a held lock nobody waits for");
        assert_eq!(m.lock(1, 0, 'b'), None);
        assert_eq!(
            m.waits_on(&gone),
            Some((2, "lock 1, which it holds".into()))
        );
        let mut m = SyncManager::new();
        assert_eq!(m.lock(1, 0, 'a'), Some('a'));
        assert_eq!(m.lock(1, 2, 'b'), None);
        assert_eq!(
            m.waits_on(&gone),
            Some((2, "lock 1, which it queued for".into()))
        );
        let mut m = SyncManager::new();
        assert_eq!(m.arrive(7, 2, 3, 'a').unwrap(), vec![]);
        assert_eq!(m.arrive(7, 0, 3, 'b').unwrap(), vec![]);
        assert_eq!(m.waits_on(&gone), None, "the departed node arrived already");
        let mut m = SyncManager::new();
        assert_eq!(m.arrive(7, 0, 3, 'a').unwrap(), vec![]);
        assert_eq!(m.waits_on(&gone), Some((2, "barrier 7".into())));
    }

    #[test]
    fn lock_waiters_are_served_in_fifo_order() {
        let mut m = SyncManager::new();
        assert_eq!(m.lock(1, 0, 'a'), Some('a'));
        assert_eq!(m.lock(1, 2, 'b'), None);
        assert_eq!(m.lock(1, 1, 'c'), None);
        assert_eq!(m.lock(2, 1, 'x'), Some('x'), "another lock is independent");
        assert_eq!(m.unlock(1, 0).unwrap(), Some('b'));
        assert_eq!(m.holder(1), Some(2));
        assert_eq!(m.unlock(1, 2).unwrap(), Some('c'));
        assert_eq!(m.unlock(1, 1).unwrap(), None);
        assert_eq!(m.holder(1), None);
    }

    #[test]
    fn unlock_by_a_non_holder_is_refused() {
        let mut m = SyncManager::new();
        assert!(matches!(
            m.unlock(3, 1),
            Err(SyncError::NotHolder { holder: None, .. })
        ));
        m.lock(3, 0, ());
        let e = m.unlock(3, 1).unwrap_err();
        assert!(e.to_string().contains("node 0 holds"));
        assert_eq!(m.holder(3), Some(0));
    }

    #[test]
    fn barrier_releases_everyone_on_the_last_arrival_and_resets() {
        let mut m = SyncManager::new();
        for round in 0..3 {
            assert!(m.arrive(9, 0, 3, (round, 0)).unwrap().is_empty());
            assert!(m.arrive(9, 2, 3, (round, 2)).unwrap().is_empty());
            assert!(m.arrive(9, 2, 3, (round, 9)).is_err(), "twice in one round");
            let mut out = m.arrive(9, 1, 3, (round, 1)).unwrap();
            out.sort();
            assert_eq!(out, vec![(round, 0), (round, 1), (round, 2)]);
        }
    }

    #[test]
    fn managers_are_spread_over_the_nodes() {
        assert_eq!(manager_of(0, 4), 0);
        assert_eq!(manager_of(5, 4), 1);
        assert_eq!(manager_of(5, 1), 0);
    }
}
