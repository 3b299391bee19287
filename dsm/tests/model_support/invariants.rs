//! The coherence invariants, stated over a view of a whole cluster (every node's
//! [`Coherence`], each node's page contents as version numbers, the last version written to
//! each page, the messages in flight), so that the stateright model and the simulator's random
//! schedules check the very same statements.

use memlink_dsm::protocol::sim::{Envelope, SimCluster};
use memlink_dsm::protocol::{Coherence, Message, PageState};
use memlink_dsm::{Access, ManagerKind, NodeId, PageNo};

/// A cluster at one instant.
#[derive(Clone, Copy)]
pub struct ClusterView<'a> {
    /// The manager every node runs.
    pub kind: ManagerKind,
    /// Each node's protocol state.
    pub nodes: &'a [Coherence],
    /// `contents[node][page]`: the version in that node's memory.
    pub contents: &'a [Vec<u64>],
    /// The last version written (by a completed write) to each page.
    pub latest: &'a [u64],
    /// The messages sent and not yet delivered.
    pub in_flight: &'a [Envelope],
}

impl<'a> ClusterView<'a> {
    /// The view of a simulated cluster.
    pub fn of_sim(c: &'a SimCluster, kind: ManagerKind) -> ClusterView<'a> {
        ClusterView {
            kind,
            nodes: &c.nodes,
            contents: &c.contents,
            latest: &c.latest,
            in_flight: &c.in_flight,
        }
    }

    fn pages(&self) -> u32 {
        self.latest.len() as u32
    }

    fn state(&self, node: usize, page: PageNo) -> PageState {
        self.nodes[node].page(page).unwrap_or(PageState {
            access: Access::None,
            owner: false,
            pending: None,
        })
    }
}

/// At most one node owns a page, at most one node may write it, and nobody reads it while
/// somebody may write it.
pub fn single_writer(v: &ClusterView<'_>) -> Result<(), String> {
    for page in 0..v.pages() {
        let states: Vec<_> = (0..v.nodes.len()).map(|n| v.state(n, page)).collect();
        let writers = states.iter().filter(|s| s.access == Access::Write).count();
        let readers = states.iter().filter(|s| s.access == Access::Read).count();
        let owners = states.iter().filter(|s| s.owner).count();
        if writers > 1 || (writers == 1 && readers > 0) || owners > 1 {
            return Err(format!(
                "page {page}: {writers} writers, {readers} readers, {owners} owners"
            ));
        }
    }
    Ok(())
}

/// Every node holding a read copy (other than the owner) is in the copyset that the protocol
/// keeps for the page, allowing for the transitions in flight:
///
/// - central and fixed managers: the copyset is the page manager's; a reader is in it, or the
///   manager's current transaction is that reader's read request (its Confirm, which adds it,
///   is on its way). A copy being invalidated stays in the copyset until its ack arrives.
/// - dynamic manager: the copyset is the owner's; a reader is in it, or there is no owner
///   because ownership is travelling to this very reader (its copy is current and the other
///   copies were invalidated before the owner let go).
pub fn copies_in_copyset(v: &ClusterView<'_>) -> Result<(), String> {
    for page in 0..v.pages() {
        for n in 0..v.nodes.len() {
            let s = v.state(n, page);
            if s.access != Access::Read || s.owner {
                continue;
            }
            let listed = match v.kind {
                ManagerKind::Central | ManagerKind::Fixed => {
                    let manager = v.nodes[0].manager_of(page) as usize;
                    v.nodes[manager].manager_entry(page).is_some_and(|e| {
                        e.copyset.contains(n as NodeId)
                            || e.busy.is_some_and(|t| {
                                t.requester == n as NodeId && t.access == Access::Read
                            })
                    })
                }
                ManagerKind::Dynamic => {
                    match (0..v.nodes.len()).find(|&o| v.state(o, page).owner) {
                        Some(o) => v.nodes[o]
                            .dynamic_entry(page)
                            .is_some_and(|e| e.copyset.contains(n as NodeId)),
                        None => s.pending == Some(Access::Write),
                    }
                }
            };
            if !listed {
                return Err(format!(
                    "page {page}: node {n} holds a read copy but is not in the copyset"
                ));
            }
        }
    }
    Ok(())
}

/// No acknowledged write is lost: every node that may read a page holds its newest version,
/// the owner holds the newest version, and when no node owns the page the newest version is
/// on its way (a write grant carrying it, or going to a node whose copy is current).
pub fn no_lost_write(v: &ClusterView<'_>) -> Result<(), String> {
    for page in 0..v.pages() {
        let latest = v.latest[page as usize];
        let mut owned = false;
        for n in 0..v.nodes.len() {
            let s = v.state(n, page);
            let have = v.contents[n][page as usize];
            if (s.access >= Access::Read || s.owner) && have != latest {
                return Err(format!(
                    "page {page}: node {n} ({:?}{}) holds version {have} but {latest} was written",
                    s.access,
                    if s.owner { ", owner" } else { "" }
                ));
            }
            owned |= s.owner;
        }
        if !owned {
            let travelling = v.in_flight.iter().any(|e| match e.msg {
                Message::Grant {
                    page: p,
                    access: Access::Write,
                    with_data,
                } if p == page => {
                    if with_data {
                        e.data == Some(latest)
                    } else {
                        v.state(e.to as usize, page).access >= Access::Read
                    }
                }
                _ => false,
            });
            // Central and fixed: ownership also travels as a WriteForward to an owner that has
            // not let go yet, but then that node still owns the page; so no owner means a
            // write grant is in flight.
            if !travelling {
                return Err(format!(
                    "page {page}: no node owns it and no write grant carries version {latest}"
                ));
            }
        }
    }
    Ok(())
}

/// Every invariant, the first broken one described.
pub fn all(v: &ClusterView<'_>) -> Result<(), String> {
    single_writer(v)?;
    copies_in_copyset(v)?;
    no_lost_write(v)
}
