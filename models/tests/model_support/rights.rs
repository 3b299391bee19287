//! The coherence model with capabilities: the same cluster and steps as [`CoherenceModel`],
//! page 0 a range that node 0 minted (any further page stays public: the other models check
//! public pages), plus the capability steps. At start
//! node 0 holds the minted capability (read, write, grant) and node 2 one derived from it
//! (read, write, grant), every node knowing both; node 1 holds nothing. Any time later, node 2
//! derives a read-only capability for node 1 (once), and node 0 revokes node 2's capability,
//! and with it node 1's (once) (with [`RightsModel::derive`] and [`RightsModel::revoke`]); with
//! [`RightsModel::restrict`], node 2 restricts its own capability to read and grant (once,
//! while it is not revoked there); the rounds run among the faults and messages, in every
//! order.
//!
//! Every node faults on every page, for read and write, with or without the rights: a fault
//! the protocol refuses ends its thread's wait (the thread gets the protection fault).
//!
//! Checked, besides the coherence invariants: no node has more access to a page than the
//! capabilities it holds allow, counting a revoked one until its revocation has returned at
//! the minter; no grant or forward ever gives a node an access that no capability it ever
//! held allows; no fault is refused while the requester's right is recorded, unrevoked, at
//! every node; no page manager (central, fixed) or owner (dynamic) decides to give a node an
//! access its own table does not allow, nor node 2 write access once its restriction returned;
//! no acknowledged write is lost; every fault ends (served or refused).

use std::fmt;

use memlink_dsm::protocol::rights::{self, CapId, CapRecord};
use memlink_dsm::protocol::{Coherence, Message};
use memlink_dsm::{Access, ManagerKind, NodeId, PageNo};
use stateright::{Model, Property};

use super::{ClusterState, CoherenceModel, Step, invariants};

/// The page the capabilities cover.
pub const PROTECTED: PageNo = 0;

/// The capabilities of the scenario.
pub fn root() -> CapRecord {
    CapRecord {
        id: CapId::new(0, 1),
        parent: None,
        holder: 0,
        rights: rights::ALL,
        first: PROTECTED,
        pages: 1,
    }
}

/// Node 2's capability: read, write, grant, derived from node 0's.
pub fn node2() -> CapRecord {
    CapRecord {
        id: CapId::new(0, 2),
        parent: Some(CapId::new(0, 1)),
        holder: 2,
        rights: rights::ALL,
        first: PROTECTED,
        pages: 1,
    }
}

/// Node 1's capability: read only, derived by node 2 from its own.
pub fn node1() -> CapRecord {
    CapRecord {
        id: CapId::new(2, 1),
        parent: Some(CapId::new(0, 2)),
        holder: 1,
        rights: rights::READ,
        first: PROTECTED,
        pages: 1,
    }
}

/// The rights node 2 restricts its capability to (read and grant: a read-only capability it
/// derived for node 1 may be in flight, and stays within them).
pub const RESTRICTED: u8 = rights::READ | rights::GRANT;

/// The model: a [`CoherenceModel`] (one fault at a time per node, no budget, no hold) with
/// the capability steps.
#[derive(Clone, Copy, Debug)]
pub struct RightsModel {
    /// The cluster, pages and faults.
    pub base: CoherenceModel,
    /// Whether node 2 may restrict its capability (the restriction step).
    pub restrict: bool,
    /// Whether node 2 may derive node 1's capability (the derivation step).
    pub derive: bool,
    /// Whether node 0 may revoke node 2's capability (the revocation step).
    pub revoke: bool,
}

/// One state: the cluster, and how far the capability rounds got.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RightsState {
    /// The cluster.
    pub c: ClusterState,
    /// Node 2 started deriving node 1's capability.
    pub derived: bool,
    /// Node 0 started revoking node 2's capability.
    pub revoked: bool,
    /// The revocation returned at node 0 (every node acknowledged it).
    pub revoke_returned: bool,
    /// Node 2 restricted its capability to [`RESTRICTED`] (at once there).
    pub restricted: bool,
    /// The restriction returned at node 2 (every node acknowledged it).
    pub restrict_returned: bool,
}

/// A step of the model.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum RightsStep {
    /// A step of the coherence model.
    Coherence(Step),
    /// Node 2 derives node 1's read-only capability and sends it to every node.
    Derive,
    /// Node 0 revokes node 2's capability (and node 1's, derived from it).
    Revoke,
    /// Node 2 restricts its capability to [`RESTRICTED`].
    Restrict,
}

impl fmt::Display for RightsStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RightsStep::Coherence(s) => s.fmt(f),
            RightsStep::Derive => write!(f, "node 2 grants node 1 a read-only capability"),
            RightsStep::Revoke => write!(f, "node 0 revokes node 2's capability"),
            RightsStep::Restrict => write!(f, "node 2 restricts its capability to read, grant"),
        }
    }
}

/// Whether `c`'s table has `id`, unrevoked.
fn live(c: &Coherence, id: CapId) -> bool {
    c.rights().get(id).is_some_and(|(_, revoked)| !revoked)
}

impl RightsState {
    /// The capabilities `node` holds, as minted, among those some node recorded (whether
    /// revoked or not).
    fn held(&self, node: NodeId) -> impl Iterator<Item = CapRecord> + '_ {
        let recorded = |id| {
            self.c
                .sim
                .nodes
                .iter()
                .any(|n| n.rights().get(id).is_some())
        };
        [root(), node2(), node1()]
            .into_iter()
            .filter(move |r| r.holder == node && recorded(r.id))
    }

    /// The most access `node` may have to `page` by the capabilities it holds: those some
    /// node recorded, a revoked one counting until its revocation returned.
    pub fn upper(&self, node: NodeId, page: PageNo) -> Access {
        if page != PROTECTED {
            return Access::Write;
        }
        self.held(node)
            .filter(|r| r.parent.is_none() || !self.revoke_returned)
            .map(|mut r| {
                if self.restricted && r.id == node2().id {
                    r.rights = RESTRICTED;
                }
                r.access()
            })
            .max()
            .unwrap_or(Access::None)
    }

    /// The most access any capability `node` ever held gives it to `page`.
    pub fn ever(&self, node: NodeId, page: PageNo) -> Access {
        if page != PROTECTED {
            return Access::Write;
        }
        self.held(node)
            .map(|r| r.access())
            .max()
            .unwrap_or(Access::None)
    }

    /// Whether `node`'s right to `access` on `page` is recorded, unrevoked and unrestricted
    /// below it, at every node.
    pub fn surely_allowed(&self, node: NodeId, page: PageNo, access: Access) -> bool {
        if page != PROTECTED {
            return true;
        }
        [root(), node2(), node1()].into_iter().any(|r| {
            r.holder == node
                && self.c.sim.nodes.iter().all(|n| {
                    live(n, r.id)
                        && n.rights()
                            .get(r.id)
                            .is_some_and(|(r, _)| r.access() >= access)
                })
        })
    }
}

/// The access a message in flight gives its receiver, if it gives any.
fn gives(msg: &Message) -> Option<Access> {
    match *msg {
        Message::ReadForward { .. } => Some(Access::Read),
        Message::WriteForward { .. } => Some(Access::Write),
        Message::Grant { access, .. } | Message::HandOff { access, .. } => Some(access),
        _ => None,
    }
}

impl RightsModel {
    /// After a step: a refused fault ends its thread's wait; a refusal of a right every node
    /// knows is an error; a finished revocation is noted.
    fn settle(&self, s: &mut RightsState) {
        for (decider, node, page, access) in std::mem::take(&mut s.c.sim.refusals) {
            if s.surely_allowed(node, page, access) && s.c.error.is_none() {
                s.c.error = Some(format!(
                    "node {decider} refused node {node} {access:?} to page {page}, which its \
                     capability allows"
                ));
            }
        }
        for (node, page, _) in std::mem::take(&mut s.c.sim.denied) {
            s.c.waiting[node as usize][page as usize] = None;
        }
        for (node, cap) in std::mem::take(&mut s.c.sim.cap_done) {
            if node == 0 && cap == node2().id {
                s.revoke_returned = true;
            }
            if node == 2 && cap == node2().id {
                s.restrict_returned = true;
            }
        }
    }

    /// The messages `last` did not have in flight and `s` has that decide to give a node an
    /// access to the protected page (a manager's forward; a dynamic owner's grant): each
    /// must be allowed by its sender's table, and none may give node 2 write access once its
    /// restriction returned.
    fn decided_beyond(&self, last: &RightsState, s: &mut RightsState) {
        if s.c.error.is_some() {
            return;
        }
        for e in &s.c.sim.in_flight {
            if last.c.sim.in_flight.contains(e) || e.msg.page() != PROTECTED {
                continue;
            }
            let (to, access) = match (self.base.kind, e.msg) {
                (ManagerKind::Dynamic, Message::Grant { access, .. }) => (e.to, access),
                (ManagerKind::Dynamic, _) => continue,
                (_, Message::ReadForward { to, .. }) => (to, Access::Read),
                (_, Message::WriteForward { to, .. }) => (to, Access::Write),
                _ => continue,
            };
            let table = s.c.sim.nodes[e.from as usize]
                .rights()
                .allowed(to, PROTECTED);
            if access > table {
                s.c.error = Some(format!(
                    "node {} decided to give node {to} {access:?} access to page {PROTECTED}, \
                     which its own table allows only {table:?}",
                    e.from
                ));
            } else if to == 2 && access == Access::Write && s.restrict_returned {
                s.c.error = Some(format!(
                    "node {} decided to give node 2 write access to page {PROTECTED} after \
                     node 2's restriction to read returned",
                    e.from
                ));
            }
        }
    }

    /// Whether every fault ended and nothing is left to do.
    pub fn finished(&self, s: &RightsState) -> bool {
        let mut more = Vec::new();
        self.actions(s, &mut more);
        s.c.error.is_none()
            && more.is_empty()
            && s.c.sim.in_flight.is_empty()
            && s.c.waiting.iter().flatten().all(Option::is_none)
    }

    /// Why `property` does not hold in `s`, for counterexample reports.
    pub fn explain(&self, property: &str, s: &RightsState) -> String {
        let v = s.c.view(self.base.kind);
        let found = match property {
            "at most one writer per page" => invariants::single_writer(&v),
            "every read copy is in the copyset" => invariants::copies_in_copyset(&v),
            "no acknowledged write is lost" => invariants::no_lost_write(&v),
            "copysets stay exact" => invariants::copyset_exact(&v),
            "no access beyond the capabilities held" => self.beyond_rights(s),
            "no grant beyond any capability ever held" => self.granted_beyond(s),
            _ => Ok(()),
        };
        match (found, s.c.error.clone()) {
            (Err(e), _) | (Ok(()), Some(e)) => e,
            (Ok(()), None) => format!(
                "threads waiting {:?}, in flight {:?}",
                s.c.waiting, s.c.sim.in_flight
            ),
        }
    }

    fn beyond_rights(&self, s: &RightsState) -> Result<(), String> {
        for n in 0..self.base.nodes as NodeId {
            for page in 0..self.base.pages {
                let have = s.c.sim.access(n, page);
                if have > s.upper(n, page) {
                    return Err(format!(
                        "node {n} has {have:?} access to page {page}, its capabilities allow {:?}{}",
                        s.upper(n, page),
                        if s.revoke_returned {
                            " (after the revocation returned)"
                        } else {
                            ""
                        }
                    ));
                }
            }
        }
        Ok(())
    }

    fn granted_beyond(&self, s: &RightsState) -> Result<(), String> {
        for e in &s.c.sim.in_flight {
            let to = match e.msg {
                Message::ReadForward { to, .. } | Message::WriteForward { to, .. } => to,
                _ => e.to,
            };
            if let Some(a) = gives(&e.msg) {
                if a > s.ever(to, e.msg.page()) {
                    return Err(format!(
                        "{:?} from node {} gives node {to} {a:?} access to page {}, which no \
                         capability it held allows",
                        e.msg,
                        e.from,
                        e.msg.page()
                    ));
                }
            }
        }
        Ok(())
    }
}

impl Model for RightsModel {
    type State = RightsState;
    type Action = RightsStep;

    fn init_states(&self) -> Vec<RightsState> {
        let mut c = self.base.init_states().remove(0);
        c.sim.share(0, root()).expect("node 0 mints page 0");
        c.sim.settle().expect("every node records the mint");
        c.sim.share(0, node2()).expect("node 0 grants node 2");
        c.sim
            .settle()
            .expect("every node records node 2's capability");
        c.sim.cap_done.clear();
        vec![RightsState {
            c,
            derived: false,
            revoked: false,
            revoke_returned: false,
            restricted: false,
            restrict_returned: false,
        }]
    }

    fn actions(&self, s: &RightsState, actions: &mut Vec<RightsStep>) {
        if s.c.error.is_some() {
            return;
        }
        let mut base = Vec::new();
        self.base.actions(&s.c, &mut base);
        actions.extend(base.into_iter().map(RightsStep::Coherence));
        if self.derive && !s.derived {
            actions.push(RightsStep::Derive);
        }
        if self.revoke && !s.revoked {
            actions.push(RightsStep::Revoke);
        }
        if self.restrict && !s.restricted && live(&s.c.sim.nodes[2], node2().id) {
            actions.push(RightsStep::Restrict);
        }
    }

    fn next_state(&self, last: &RightsState, step: RightsStep) -> Option<RightsState> {
        let mut s = last.clone();
        match step {
            RightsStep::Coherence(step) => s.c = self.base.next_state(&last.c, step)?,
            RightsStep::Derive => {
                s.derived = true;
                if let Err(e) = s.c.sim.share(2, node1()) {
                    s.c.error = Some(format!("node 2: {e}"));
                }
            }
            RightsStep::Revoke => {
                s.revoked = true;
                if let Err(e) = s.c.sim.revoke(0, node2().id) {
                    s.c.error = Some(format!("node 0: {e}"));
                }
            }
            RightsStep::Restrict => {
                s.restricted = true;
                if let Err(e) = s.c.sim.restrict(2, node2().id, RESTRICTED) {
                    s.c.error = Some(format!("node 2: {e}"));
                }
            }
        }
        self.settle(&mut s);
        self.decided_beyond(last, &mut s);
        Some(s)
    }

    fn format_action(&self, step: &RightsStep) -> String {
        step.to_string()
    }

    fn properties(&self) -> Vec<Property<Self>> {
        vec![
            Property::always("the protocol accepts every step", |_, s: &RightsState| {
                s.c.error
                    .as_ref()
                    .is_none_or(|e| e.contains("read version") || e.contains("decided to give"))
            }),
            Property::always(
                "no decision beyond the decider's table or a returned restriction",
                |_, s: &RightsState| {
                    s.c.error
                        .as_ref()
                        .is_none_or(|e| !e.contains("decided to give"))
                },
            ),
            Property::always(
                "at most one writer per page",
                |m: &RightsModel, s: &RightsState| {
                    invariants::single_writer(&s.c.view(m.base.kind)).is_ok()
                },
            ),
            Property::always(
                "every read copy is in the copyset",
                |m: &RightsModel, s: &RightsState| {
                    invariants::copies_in_copyset(&s.c.view(m.base.kind)).is_ok()
                },
            ),
            Property::always("copysets stay exact", |m: &RightsModel, s: &RightsState| {
                invariants::copyset_exact(&s.c.view(m.base.kind)).is_ok()
            }),
            Property::always(
                "no acknowledged write is lost",
                |m: &RightsModel, s: &RightsState| {
                    s.c.error
                        .as_ref()
                        .is_none_or(|e| !e.contains("read version"))
                        && invariants::no_lost_write(&s.c.view(m.base.kind)).is_ok()
                },
            ),
            Property::always(
                "no access beyond the capabilities held",
                |m: &RightsModel, s: &RightsState| m.beyond_rights(s).is_ok(),
            ),
            Property::always(
                "no grant beyond any capability ever held",
                |m: &RightsModel, s: &RightsState| m.granted_beyond(s).is_ok(),
            ),
            // Every run that stops has ended every fault (served, or refused).
            Property::always("every fault ends", |m: &RightsModel, s: &RightsState| {
                let mut more = Vec::new();
                m.actions(s, &mut more);
                s.c.error.is_some()
                    || !more.is_empty()
                    || (s.c.sim.in_flight.is_empty()
                        && s.c.waiting.iter().flatten().all(Option::is_none))
            }),
        ]
    }
}
