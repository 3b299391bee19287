//! Capabilities across nodes, as the coherence protocol sees them: ranges of pages with
//! rights per node, recorded in a table that every node keeps, and consulted where the
//! protocol grants access (the page's manager; the owner, for the dynamic manager).
//!
//! A capability is a [`CapRecord`]: a range of pages, the node that holds it, its rights
//! (the bits of `memlink_capability::capability::Rights`: read, write, grant) and the
//! capability it was derived from. The node that allocates a range mints the first one (no
//! parent, held by itself); a holder with the grant right derives a narrower one for another
//! node. Either way the new record goes to every node ([`super::Message::Cap`]), and the
//! capability may be handed to its holder once every node acknowledged it
//! ([`super::Effect::CapDone`]): then whichever node grants a page knows the right.
//!
//! The minter revokes a capability ([`super::Message::Revoke`]): every node marks it and
//! everything derived from it revoked, lowers its own access to the pages to what its other
//! rights allow (keeping the contents of a page it owns or holds a copy of, so that no write
//! is lost: a *fenced* page), and acknowledges; once every node did, the revocation holds
//! everywhere (`CapDone` at the minter).
//!
//! A page that no record covers is public: every node may read and write it, as before
//! capabilities existed. A page that some record covers (even a revoked one) is protected:
//! a node may do with it only what its unrevoked records allow.

use std::collections::BTreeMap;

use super::manager::NodeSet;
use crate::types::{Access, NodeId, PageNo};

/// The read right (the bit of `memlink_capability::capability::Rights::READ`).
pub const READ: u8 = 1;
/// The write right (the bit of `memlink_capability::capability::Rights::WRITE`).
pub const WRITE: u8 = 2;
/// The grant right (the bit of `memlink_capability::capability::Rights::GRANT`).
pub const GRANT: u8 = 4;
/// Every right.
pub const ALL: u8 = READ | WRITE | GRANT;

/// The name of a capability, unique in the cluster: the node that made it (minted or derived
/// it) in the top 16 bits, a number that node never used before in the rest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CapId(pub u64);

impl CapId {
    /// The id `serial` of node `node`.
    pub fn new(node: NodeId, serial: u64) -> CapId {
        CapId(((node as u64) << 48) | (serial & ((1 << 48) - 1)))
    }

    /// The node that made it.
    pub fn maker(self) -> NodeId {
        (self.0 >> 48) as NodeId
    }
}

/// One capability: `holder` may do what `rights` allow to pages `first .. first + pages`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CapRecord {
    /// Its name.
    pub id: CapId,
    /// The capability it was derived from (`None`: minted by its holder).
    pub parent: Option<CapId>,
    /// The node that holds it.
    pub holder: NodeId,
    /// [`READ`], [`WRITE`], [`GRANT`] bits.
    pub rights: u8,
    /// The first page of the range.
    pub first: PageNo,
    /// The number of pages of the range.
    pub pages: u32,
}

impl CapRecord {
    /// Whether the range covers `page`.
    pub fn covers(&self, page: PageNo) -> bool {
        page >= self.first && page - self.first < self.pages
    }

    /// The most access the rights give.
    pub fn access(&self) -> Access {
        if self.rights & WRITE != 0 {
            Access::Write
        } else if self.rights & READ != 0 {
            Access::Read
        } else {
            Access::None
        }
    }

    /// The pages of the range.
    pub fn range(&self) -> std::ops::Range<PageNo> {
        self.first..self.first + self.pages
    }
}

/// The capabilities a node knows of, with whether each is revoked, indexed for the fault
/// path: minted ranges never overlap, and every record lies inside the minted range it
/// derives from, so the records that may cover a page are those of the one minted range
/// that covers it (a search in an ordered map, then that range's family).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct RightsTable {
    records: Vec<(CapRecord, bool)>,
    /// Position in `records` of each capability.
    by_id: BTreeMap<CapId, usize>,
    /// First page of each minted range → its page count and the positions in `records` of
    /// it and everything derived from it.
    families: BTreeMap<PageNo, (u32, Vec<usize>)>,
}

impl RightsTable {
    /// Every record, with whether it is revoked.
    pub fn records(&self) -> &[(CapRecord, bool)] {
        &self.records
    }

    /// The record of `id`, with whether it is revoked.
    pub fn get(&self, id: CapId) -> Option<(CapRecord, bool)> {
        self.by_id.get(&id).map(|&at| self.records[at])
    }

    /// The positions in `records` of the family of the minted range that covers `page`.
    fn family(&self, page: PageNo) -> Option<&[usize]> {
        let (&first, (pages, family)) = self.families.range(..=page).next_back()?;
        (page - first < *pages).then_some(family.as_slice())
    }

    /// Whether some record covers `page` (it is not public).
    pub fn protected(&self, page: PageNo) -> bool {
        self.family(page).is_some()
    }

    /// The most access `node` may have to `page`: Write for a public page; otherwise what
    /// its unrevoked records covering the page allow.
    pub fn allowed(&self, node: NodeId, page: PageNo) -> Access {
        let Some(family) = self.family(page) else {
            return Access::Write;
        };
        family
            .iter()
            .map(|&at| &self.records[at])
            .filter(|(r, revoked)| !revoked && r.holder == node && r.covers(page))
            .map(|(r, _)| r.access())
            .max()
            .unwrap_or(Access::None)
    }

    /// The node that minted the capability `id` derives from (its root's holder).
    pub fn minter(&self, id: CapId) -> Option<NodeId> {
        let mut at = self.get(id)?.0;
        // Parents are recorded before their children, so the chain is at most as long as
        // the table.
        for _ in 0..=self.records.len() {
            match at.parent {
                None => return Some(at.holder),
                Some(p) => at = self.get(p)?.0,
            }
        }
        None
    }

    /// Check `rec`, sent by `from`, against the table, a region of `region` pages and a
    /// cluster of `nodes`; record it (revoked when its parent is). A minted record names
    /// its sender as holder and overlaps no other minted range; a derived one names a
    /// parent held by its sender with the grant right, inside the parent's range, with no
    /// right the parent lacks.
    pub fn record(
        &mut self,
        from: NodeId,
        rec: CapRecord,
        region: u32,
        nodes: u16,
    ) -> Result<(), String> {
        if rec.holder >= nodes {
            return Err(format!(
                "capability {:?} names holder {}, outside the cluster of {nodes}",
                rec.id, rec.holder
            ));
        }
        if rec.id.maker() != from {
            return Err(format!(
                "capability {:?} from node {from}, which did not make it",
                rec.id
            ));
        }
        let end = rec.first.checked_add(rec.pages);
        if rec.pages == 0 || end.is_none_or(|e| e > region) {
            return Err(format!(
                "capability {:?} covers pages {}+{}, outside the region of {region} pages",
                rec.id, rec.first, rec.pages
            ));
        }
        if rec.rights & !ALL != 0 {
            return Err(format!(
                "capability {:?} has unknown rights {:#x}",
                rec.id, rec.rights
            ));
        }
        if self.get(rec.id).is_some() {
            return Err(format!("capability {:?} recorded twice", rec.id));
        }
        let revoked = match rec.parent {
            None => {
                if rec.holder != from {
                    return Err(format!(
                        "capability {:?} minted by node {from} for node {}",
                        rec.id, rec.holder
                    ));
                }
                let end = rec.first + rec.pages;
                if let Some((&first, (pages, _))) = self
                    .families
                    .range(..end)
                    .next_back()
                    .filter(|(first, (pages, _))| rec.first < **first + *pages)
                {
                    return Err(format!(
                        "capability {:?} minted over pages {}+{}, which pages {first}+{pages} \
                         minted before already cover",
                        rec.id, rec.first, rec.pages
                    ));
                }
                false
            }
            Some(pid) => {
                let Some((parent, revoked)) = self.get(pid) else {
                    return Err(format!(
                        "capability {:?} derived from unknown {pid:?}",
                        rec.id
                    ));
                };
                if parent.holder != from || parent.rights & GRANT == 0 {
                    return Err(format!(
                        "node {from} derives {:?} from {pid:?} without holding it with the grant right",
                        rec.id
                    ));
                }
                if rec.rights & !parent.rights != 0
                    || rec.first < parent.first
                    || rec.first + rec.pages > parent.first + parent.pages
                {
                    return Err(format!(
                        "capability {:?} is wider than {pid:?}, which it derives from",
                        rec.id
                    ));
                }
                revoked
            }
        };
        let at = self.records.len();
        self.records.push((rec, revoked));
        self.by_id.insert(rec.id, at);
        match rec.parent {
            None => {
                self.families.insert(rec.first, (rec.pages, vec![at]));
            }
            // The parent's range covers this one, so the family covering its first page is
            // the parent's.
            Some(_) => {
                if let Some((_, (_, family))) = self.families.range_mut(..=rec.first).next_back() {
                    family.push(at);
                }
            }
        }
        Ok(())
    }

    /// `from` revokes `id`: mark it and everything derived from it revoked. Only the minter
    /// of its root may. Returns the record of `id`.
    pub fn revoke(&mut self, from: NodeId, id: CapId) -> Result<CapRecord, String> {
        let Some((rec, _)) = self.get(id) else {
            return Err(format!("revocation of unknown capability {id:?}"));
        };
        if self.minter(id) != Some(from) {
            return Err(format!("node {from} revokes {id:?}, which it did not mint"));
        }
        // Children follow their parents in the table, and in the family of their minted
        // range: one pass over that family marks every descendant.
        let mut gone = vec![id];
        let family = self
            .family(rec.first)
            .map(<[usize]>::to_vec)
            .unwrap_or_default();
        for at in family {
            let (r, revoked) = &mut self.records[at];
            if r.id == id || r.parent.is_some_and(|p| gone.contains(&p)) {
                *revoked = true;
                if r.id != id {
                    gone.push(r.id);
                }
            }
        }
        Ok(rec)
    }
}

impl RightsTable {
    /// `from` restricts the capability `id` it holds to `rights` (a subset of its rights;
    /// never a widening): from then on the protocol serves `from` through it only what
    /// `rights` allow. Capabilities already derived from it keep theirs (the minter revokes
    /// them); new ones derive from the narrower rights. A revoked capability may be
    /// restricted too (the holder may not know of the revocation yet). Returns the narrowed
    /// record.
    pub fn restrict(&mut self, from: NodeId, id: CapId, rights: u8) -> Result<CapRecord, String> {
        let Some(&at) = self.by_id.get(&id) else {
            return Err(format!("restriction of unknown capability {id:?}"));
        };
        let rec = &mut self.records[at].0;
        if rec.holder != from {
            return Err(format!(
                "node {from} restricts {id:?}, which node {} holds",
                rec.holder
            ));
        }
        if rights & !rec.rights != 0 {
            return Err(format!(
                "node {from} widens {id:?} from rights {:#x} to {rights:#x}",
                rec.rights
            ));
        }
        rec.rights = rights;
        Ok(*rec)
    }
}

/// A round of messages about a capability under way at the node that started it: the nodes
/// whose acknowledgement is still expected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CapRound {
    /// The capability recorded or revoked.
    pub id: CapId,
    /// The first page of its range.
    pub first: PageNo,
    /// Acknowledgements still expected.
    pub waiting: NodeSet,
    /// The node to deliver the capability to once every node recorded it (a capability
    /// made for another node), if any.
    pub deliver_to: Option<NodeId>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ManagerKind;
    use crate::protocol::sim::SimCluster;

    fn minted(first: PageNo, pages: u32) -> CapRecord {
        CapRecord {
            id: CapId::new(0, 1),
            parent: None,
            holder: 0,
            rights: ALL,
            first,
            pages,
        }
    }

    fn derived(holder: NodeId, rights: u8) -> CapRecord {
        CapRecord {
            id: CapId::new(0, 10 + holder as u64),
            parent: Some(CapId::new(0, 1)),
            holder,
            rights,
            first: 0,
            pages: 1,
        }
    }

    /// Faults at `node` and delivers everything: whether the fault was refused.
    fn fault(c: &mut SimCluster, node: NodeId, page: PageNo, access: Access) -> bool {
        c.denied.clear();
        c.fault(node, page, access).unwrap();
        c.settle().unwrap();
        c.check().unwrap();
        c.denied.contains(&(node, page, access))
    }

    #[test]
    fn requests_beyond_the_rights_are_refused_by_every_manager() {
        for kind in [
            ManagerKind::Central,
            ManagerKind::Fixed,
            ManagerKind::Dynamic,
        ] {
            let mut c = SimCluster::new(4, 2, kind).unwrap();
            c.share(0, minted(0, 1)).unwrap();
            c.settle().unwrap();
            c.share(0, derived(1, READ)).unwrap();
            c.share(0, derived(2, READ | WRITE)).unwrap();
            c.settle().unwrap();
            assert!(fault(&mut c, 3, 0, Access::Read), "{kind:?}: never granted");
            assert!(!fault(&mut c, 1, 0, Access::Read), "{kind:?}: read right");
            assert!(fault(&mut c, 1, 0, Access::Write), "{kind:?}: read-only");
            assert!(!fault(&mut c, 2, 0, Access::Write), "{kind:?}: read-write");
            let v = c.write(2, 0).unwrap();
            assert!(!fault(&mut c, 1, 0, Access::Read));
            assert_eq!(c.read(1, 0).unwrap(), v, "{kind:?}");
            // The public page: everyone, as before.
            assert!(!fault(&mut c, 3, 1, Access::Write), "{kind:?}: public page");
        }
    }

    #[test]
    fn a_revocation_fences_every_holder_and_keeps_the_last_write() {
        for kind in [
            ManagerKind::Central,
            ManagerKind::Fixed,
            ManagerKind::Dynamic,
        ] {
            let mut c = SimCluster::new(3, 1, kind).unwrap();
            c.share(0, minted(0, 1)).unwrap();
            c.settle().unwrap();
            c.share(0, derived(2, ALL)).unwrap();
            c.settle().unwrap();
            let grandchild = CapRecord {
                id: CapId::new(2, 1),
                parent: Some(derived(2, ALL).id),
                holder: 1,
                rights: READ,
                first: 0,
                pages: 1,
            };
            c.share(2, grandchild).unwrap();
            c.settle().unwrap();
            assert!(!fault(&mut c, 2, 0, Access::Write));
            let v = c.write(2, 0).unwrap();
            assert!(!fault(&mut c, 1, 0, Access::Read));
            c.cap_done.clear();
            c.revoke(0, derived(2, ALL).id).unwrap();
            c.settle().unwrap();
            assert!(c.cap_done.contains(&(0, derived(2, ALL).id)), "{kind:?}");
            assert_eq!(c.access(1, 0), Access::None, "{kind:?}");
            assert_eq!(c.access(2, 0), Access::None, "{kind:?}");
            assert!(
                fault(&mut c, 1, 0, Access::Read),
                "{kind:?}: derived, revoked"
            );
            assert!(fault(&mut c, 2, 0, Access::Read), "{kind:?}: revoked");
            assert!(!fault(&mut c, 0, 0, Access::Read), "{kind:?}: the minter");
            assert_eq!(c.read(0, 0).unwrap(), v, "{kind:?}: the write survives");
        }
    }

    #[test]
    fn the_table_refuses_forged_and_widened_capabilities() {
        let mut t = RightsTable::default();
        t.record(0, minted(0, 2), 4, 3).unwrap();
        assert!(
            t.record(1, minted(2, 1), 4, 3).is_err(),
            "made by another node"
        );
        let mut wide = derived(1, READ);
        wide.pages = 3;
        assert!(t.record(0, wide, 4, 3).is_err(), "wider range");
        let mut outside = minted(3, 2);
        outside.id = CapId::new(0, 2);
        assert!(t.record(0, outside, 4, 3).is_err(), "outside the region");
        assert!(
            t.record(0, derived(3, READ), 4, 3).is_err(),
            "holder outside"
        );
        t.record(0, derived(1, READ), 4, 3).unwrap();
        let regrant = CapRecord {
            id: CapId::new(1, 1),
            parent: Some(derived(1, READ).id),
            holder: 2,
            rights: READ,
            first: 0,
            pages: 1,
        };
        assert!(t.record(1, regrant, 4, 3).is_err(), "no grant right");
        assert!(t.revoke(1, derived(1, READ).id).is_err(), "not the minter");
        assert_eq!(t.allowed(1, 0), Access::Read);
        assert_eq!(t.allowed(2, 0), Access::None);
        assert_eq!(t.allowed(2, 3), Access::Write, "public");
        t.revoke(0, CapId::new(0, 1)).unwrap();
        assert_eq!(t.allowed(1, 0), Access::None, "revoked with its parent");
    }
}
