//! The coherence invariants, stated over a view of a whole cluster (every node's
//! [`Coherence`], each node's page contents as version numbers, the last version written to
//! each page, the messages in flight), so that the stateright model and the simulator's random
//! schedules check the very same statements.

use memlink_dsm::protocol::sim::{Envelope, SimCluster};
use memlink_dsm::protocol::{Coherence, Message, PageState, Unwritten};
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
    /// The backing store: the version of each page last written back.
    pub store: &'a [u64],
    /// Per node: the versions of pages whose write-back failed there, kept until written.
    pub kept: &'a [Unwritten<u64>],
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
            store: &c.store,
            kept: &c.kept,
        }
    }

    fn pages(&self) -> u32 {
        self.latest.len() as u32
    }

    fn state(&self, node: usize, page: PageNo) -> PageState {
        self.nodes[node].page(page).unwrap_or(PageState::ABSENT)
    }

    /// Whether a message matching `f` is in flight.
    fn any_in_flight(&self, f: impl Fn(&Envelope) -> bool) -> bool {
        self.in_flight.iter().any(f)
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
                            || e.transaction().is_some_and(|t| {
                                t.requester == n as NodeId && t.access == Access::Read
                            })
                    })
                }
                ManagerKind::Dynamic => {
                    match (0..v.nodes.len()).find(|&o| v.state(o, page).owner) {
                        Some(o) => v.nodes[o]
                            .dynamic_entry(page)
                            .is_some_and(|e| e.copyset.contains(n as NodeId)),
                        // Or ownership passes with the copyset, in an Adopt.
                        None => {
                            s.pending == Some(Access::Write)
                                || v.any_in_flight(|e| match e.msg {
                                    Message::Adopt { page: p, copyset } => {
                                        p == page
                                            && (e.to == n as NodeId
                                                || copyset.contains(n as NodeId))
                                    }
                                    _ => false,
                                })
                        }
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
/// the owner holds the newest version (in memory, or in the backing store when it paged the
/// page out), and when no node owns the page the newest version is on its way (a write grant
/// or a hand-off carrying it, an Adopt to a node whose copy is current, or a refused hand-off
/// going back to the evicting node, which kept it).
pub fn no_lost_write(v: &ClusterView<'_>) -> Result<(), String> {
    for page in 0..v.pages() {
        let latest = v.latest[page as usize];
        let mut owned = false;
        for n in 0..v.nodes.len() {
            let s = v.state(n, page);
            let have = if s.paged_out() {
                // What a read from its store gets: the version it kept, if its write-back
                // failed.
                v.kept[n]
                    .get(page)
                    .copied()
                    .unwrap_or(v.store[page as usize])
            } else {
                v.contents[n][page as usize]
            };
            // A fenced page keeps its contents for when its rights come back: current too.
            if (s.access >= Access::Read || s.owner || s.fenced) && have != latest {
                return Err(format!(
                    "page {page}: node {n} ({:?}{}) holds version {have} but {latest} was written",
                    s.access,
                    if s.paged_out() {
                        ", owner, paged out"
                    } else if s.owner {
                        ", owner"
                    } else {
                        ""
                    }
                ));
            }
            owned |= s.owner;
        }
        if !owned {
            let current = |n: NodeId| v.contents[n as usize][page as usize] == latest;
            let travelling = v.any_in_flight(|e| match e.msg {
                Message::Grant {
                    page: p,
                    access: Access::Write,
                    with_data,
                } if p == page => {
                    if with_data {
                        e.data == Some(latest)
                    } else {
                        // The receiver's copy is current (readable, or fenced: kept).
                        let s = v.state(e.to as usize, page);
                        s.access >= Access::Read || s.fenced
                    }
                }
                Message::HandOff { page: p, .. } if p == page => e.data == Some(latest),
                Message::Adopt { page: p, .. } if p == page => current(e.to),
                Message::HandOffReply {
                    page: p,
                    accepted: false,
                } if p == page => current(e.to),
                _ => false,
            });
            // Central and fixed: ownership also travels as a WriteForward to an owner that has
            // not let go yet, but then that node still owns the page; so no owner means a
            // write grant, a hand-off or an Adopt is in flight.
            if !travelling {
                return Err(format!(
                    "page {page}: no node owns it and no message carries version {latest}"
                ));
            }
        }
    }
    Ok(())
}

/// Copysets are exact: the copyset's keeper (the page manager; the owner, for the dynamic
/// manager) lists only nodes that hold a copy or are about to have one or lose it: a node
/// that can read the page, holds it fenced (its rights shrank; the contents stay), is
/// evicting it (its frame still holds it), owns it (ownership
/// moving to a holder of a copy), or has an invalidation, its acknowledgement, or (dynamic)
/// its read grant in flight. A node that dropped its copy without the keeper hearing of it
/// breaks this.
pub fn copyset_exact(v: &ClusterView<'_>) -> Result<(), String> {
    for page in 0..v.pages() {
        let copyset = match v.kind {
            ManagerKind::Central | ManagerKind::Fixed => {
                let manager = v.nodes[0].manager_of(page) as usize;
                v.nodes[manager].manager_entry(page).map(|e| e.copyset)
            }
            ManagerKind::Dynamic => (0..v.nodes.len())
                .find(|&o| v.state(o, page).owner)
                .and_then(|o| v.nodes[o].dynamic_entry(page).map(|e| e.copyset)),
        };
        let Some(copyset) = copyset else { continue };
        for n in copyset.iter() {
            let s = v.state(n as usize, page);
            let explained = s.access >= Access::Read
                || s.evicting
                || s.owner
                || s.fenced
                || v.any_in_flight(|e| {
                    e.msg.page() == page
                        && match e.msg {
                            Message::Invalidate { .. } => e.to == n,
                            Message::InvalidateAck { .. } => e.from == n,
                            Message::Grant {
                                access: Access::Read,
                                ..
                            } => e.to == n,
                            _ => false,
                        }
                });
            if !explained {
                return Err(format!(
                    "page {page}: node {n} is in the copyset but holds no copy"
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
    copyset_exact(v)?;
    no_lost_write(v)
}
