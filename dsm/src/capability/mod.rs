//! Capabilities across nodes: scheme 3 of memlink-capability (a typed object with rights
//! read, write, grant; acquire a guard, release by dropping it, restrict, revoke) extended to
//! the shared region of a DSM cluster, with Mach's port rights carried in messages.
//!
//! - [`DsmCapability::mint`]: the node that allocates a range (whole pages of the region)
//!   writes the value and mints the first capability, with every right; from then on the
//!   range is protected at every node (the protocol's table, [`crate::protocol::rights`]).
//! - [`DsmCapability::restrict`]: the same range with fewer rights (never more). The protocol
//!   keeps one set of rights per capability and node: restricting narrows what every page's
//!   manager (or owner) serves this node through the capability, for every handle of it
//!   here, at every node before it returns.
//! - [`DsmCapability::send`]: with the GRANT right only, a copy with some of the held rights
//!   is recorded at every node and delivered to one in a protocol message (the message is the
//!   carrier); that node takes it with [`DsmCapability::receive`].
//! - [`DsmCapability::acquire`] / [`acquire_write`](DsmCapability::acquire_write): the range
//!   becomes accessible with the protection the rights allow, while the guard lives; dropping
//!   the last guard withdraws this node's access (the contents stay for the protocol).
//! - [`DsmCapability::revoke`]: the minter ends every node's access through a capability and
//!   everything derived from it, in one round of messages; later acquires fail with
//!   [`AcquireError::Revoked`].
//!
//! The rights are enforced by the protocol, not by this module: the page's manager (or, with
//! the dynamic manager, its owner) refuses a read or write request beyond the requester's
//! rights, whatever the requester's runtime does, and the faulting thread gets SIGSEGV at
//! the faulting address, as from the kernel. Pages outside every minted range stay public.
//!
//! Trust boundary: peers are admitted with the cluster key and run this protocol; a peer's
//! capability messages are checked against the table (a derived capability needs a parent
//! its sender holds with the grant right, no wider than it; only the minter revokes). A page
//! granted before a revocation reached the granting node is still delivered to a node that
//! lost its rights (an honest node fences it at once): revocation ends access from the moment
//! it returns, it cannot take back bytes already sent.
//!
//! ```no_run
//! # fn demo(dsm: &memlink_dsm::cluster::Dsm) -> Result<(), Box<dyn std::error::Error>> {
//! use memlink_dsm::capability::{DsmCapability, Rights};
//! use std::time::Duration;
//! if dsm.id() == 0 {
//!     let table = DsmCapability::mint(dsm, [7u64; 16])?;
//!     let copy = table.send(1, Rights::READ)?;       // node 1 may read, nothing more
//!     assert_eq!(table.acquire()?[3], 7);
//!     table.revoke_sent(copy)?;                       // node 1's access ends here
//! } else if dsm.id() == 1 {
//!     let table = DsmCapability::<[u64; 16]>::receive(dsm, Duration::from_secs(10))?;
//!     let sum: u64 = table.acquire()?.iter().sum();   // acquire_write() fails: NoWriteRight
//!     # let _ = sum;
//! }
//! # Ok(()) }
//! ```

mod error;

use std::fmt;
use std::marker::PhantomData;
use std::ops::Deref;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

pub use memlink_capability::Shareable;
pub use memlink_capability::capability::{Acquire, AtomicRead, Immutable, RestrictError, Rights};

pub use error::{AcquireError, MintError, ReceiveError, RevokeError, SendError};

use crate::cluster::Dsm;
use crate::node::NodeRuntime;
use crate::protocol::rights::{CapId, CapRecord};
use crate::types::{Access, DsmError, FaultResolver, NodeId, PAGE_SIZE, PageNo};

/// Capability ids this process made (the node id makes them unique in the cluster).
static NEXT_SERIAL: AtomicU64 = AtomicU64::new(1);

/// Held while this process sends or restricts a capability: a restriction never overtakes a
/// capability this node derived from the same one and is still recording at the others
/// (which would find its parent narrower than itself).
static ROUNDS: Mutex<()> = Mutex::new(());

fn rounds() -> MutexGuard<'static, ()> {
    ROUNDS.lock().unwrap_or_else(|p| p.into_inner())
}

fn new_id(node: NodeId) -> CapId {
    CapId::new(node, NEXT_SERIAL.fetch_add(1, Ordering::Relaxed))
}

fn rights_bits(r: Rights) -> u8 {
    r.bits() as u8
}

/// A capability for one `T` in the shared region of a DSM cluster: its range (whole pages),
/// its rights, and the protocol record that the cluster enforces.
pub struct DsmCapability<T> {
    runtime: Arc<NodeRuntime>,
    ptr: *mut T,
    record: CapRecord,
    rights: Rights,
    /// Live guards on this node for this capability and its clones and restrictions.
    guards: Arc<AtomicUsize>,
    _type: PhantomData<T>,
}

impl<T> Clone for DsmCapability<T> {
    fn clone(&self) -> Self {
        DsmCapability {
            runtime: self.runtime.clone(),
            ptr: self.ptr,
            record: self.record,
            rights: self.rights,
            guards: self.guards.clone(),
            _type: PhantomData,
        }
    }
}

impl<T> fmt::Debug for DsmCapability<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DsmCapability")
            .field("id", &self.record.id)
            .field("offset", &(self.record.first as usize * PAGE_SIZE))
            .field("len", &size_of::<T>())
            .field("rights", &self.rights)
            .finish()
    }
}

impl<T: Shareable> DsmCapability<T> {
    /// Allocate whole pages of the region for `value`, write it there, and mint the first
    /// capability of the range (read, write, grant), recorded at every node before this
    /// returns. From then on only holders of a capability reach the range.
    pub fn mint(dsm: &Dsm, value: T) -> Result<DsmCapability<T>, MintError> {
        let bytes = size_of::<T>().max(1).next_multiple_of(PAGE_SIZE);
        let offset = dsm.alloc(bytes, PAGE_SIZE).map_err(MintError::Alloc)?;
        let ptr = dsm.at::<T>(offset);
        // SAFETY: the block was just allocated for this T (page-aligned, inside the region,
        // public until the mint below); the write faults the pages in writable.
        unsafe { ptr.write(value) };
        let me = dsm.id();
        let record = CapRecord {
            id: new_id(me),
            parent: None,
            holder: me,
            rights: rights_bits(Rights::ALL),
            first: (offset / PAGE_SIZE) as PageNo,
            pages: (bytes / PAGE_SIZE) as u32,
        };
        dsm.runtime()
            .share_capability(record)
            .map_err(MintError::Node)?;
        Ok(Self::from_record(dsm, record))
    }

    /// The next capability another node sent to this one, as a capability for a `T`,
    /// waiting up to `timeout`.
    pub fn receive(dsm: &Dsm, timeout: Duration) -> Result<DsmCapability<T>, ReceiveError> {
        let record = dsm
            .runtime()
            .receive_capability(timeout)
            .map_err(ReceiveError::Node)?
            .ok_or(ReceiveError::Timeout)?;
        let range = record.pages as usize * PAGE_SIZE;
        if range < size_of::<T>() {
            return Err(ReceiveError::TooSmall {
                range,
                size: size_of::<T>(),
            });
        }
        Ok(Self::from_record(dsm, record))
    }

    /// This node's capability for the `T` at region offset `offset` (the first page of a
    /// range it was granted), or [`AcquireError::NotGranted`].
    pub fn held(dsm: &Dsm, offset: usize) -> Result<DsmCapability<T>, AcquireError> {
        let me = dsm.id();
        let page = (offset / PAGE_SIZE) as PageNo;
        let found = dsm.runtime().with_rights(|t| {
            t.records()
                .iter()
                .filter(|(r, _)| r.holder == me && r.first == page && offset % PAGE_SIZE == 0)
                .filter(|(r, _)| r.pages as usize * PAGE_SIZE >= size_of::<T>())
                .max_by_key(|(r, revoked)| (!revoked, r.rights))
                .copied()
        });
        match found {
            Some((_, true)) => Err(AcquireError::Revoked),
            Some((record, false)) => Ok(Self::from_record(dsm, record)),
            None => Err(AcquireError::NotGranted { offset }),
        }
    }

    fn from_record(dsm: &Dsm, record: CapRecord) -> DsmCapability<T> {
        DsmCapability {
            runtime: dsm.runtime().clone(),
            ptr: dsm.at::<T>(record.first as usize * PAGE_SIZE),
            record,
            rights: Rights::from_bits(record.rights as u32).unwrap_or(Rights::NONE),
            guards: Arc::new(AtomicUsize::new(0)),
            _type: PhantomData,
        }
    }

    /// The region offset of the object (the same on every node).
    pub fn offset(&self) -> usize {
        self.record.first as usize * PAGE_SIZE
    }

    /// The protocol's name of this capability.
    pub fn id(&self) -> CapId {
        self.record.id
    }

    /// The node that minted the range.
    pub fn minter(&self) -> Option<NodeId> {
        self.runtime.with_rights(|t| t.minter(self.record.id))
    }

    /// The rights this capability carries: those of this handle, less what a restriction
    /// of the capability on this node took away since.
    pub fn rights(&self) -> Rights {
        let recorded = self
            .runtime
            .with_rights(|t| t.get(self.record.id).map(|(r, _)| r.rights));
        match recorded {
            Some(bits) => self
                .rights
                .intersection(Rights::from_bits(u32::from(bits)).unwrap_or(Rights::NONE)),
            None => self.rights,
        }
    }

    /// Whether the minter revoked it (or one it derives from), as this node knows.
    pub fn is_revoked(&self) -> bool {
        self.runtime
            .with_rights(|t| t.get(self.record.id).is_none_or(|(_, revoked)| revoked))
    }

    /// The same range with `rights`, a subset of the held rights. The protocol enforces it:
    /// this node's rights through the capability are narrowed at every node before this
    /// returns (for every handle of the capability on this node), so a page's manager or
    /// owner refuses this node anything beyond `rights`, whatever its threads touch. A
    /// failure of the cluster meanwhile is [`RestrictError::Io`].
    pub fn restrict(&self, rights: Rights) -> Result<DsmCapability<T>, RestrictError> {
        let held = self.rights();
        if !held.contains(rights) {
            return Err(RestrictError::Widening {
                held,
                requested: rights,
            });
        }
        let _round = rounds();
        let id = self.record.id;
        let narrower = self.runtime.with_rights(|t| {
            t.get(id)
                .is_some_and(|(r, revoked)| !revoked && r.rights & !rights_bits(rights) != 0)
        });
        if narrower {
            self.runtime
                .restrict_capability(id, rights_bits(rights))
                .map_err(|e| RestrictError::Io(std::io::Error::other(e)))?;
        }
        let mut c = self.clone();
        c.rights = rights;
        Ok(c)
    }

    /// Send node `to` a capability for the range with `rights` (a subset of the held ones):
    /// it is recorded at every node, then delivered to `to` in a message, which takes it with
    /// [`DsmCapability::receive`]. Needs the GRANT right. Returns the id of the copy, which
    /// the minter may [`revoke_sent`](DsmCapability::revoke_sent).
    pub fn send(&self, to: NodeId, rights: Rights) -> Result<CapId, SendError> {
        let _round = rounds();
        let held = self.rights();
        if !held.contains(Rights::GRANT) {
            return Err(SendError::NotGrantable);
        }
        if !held.contains(rights) {
            return Err(SendError::RightsExceeded {
                held,
                requested: rights,
            });
        }
        let nodes = self.runtime.nodes();
        if to as usize >= nodes {
            return Err(SendError::UnknownNode { node: to, nodes });
        }
        if self.is_revoked() {
            return Err(SendError::Revoked);
        }
        let record = CapRecord {
            id: new_id(self.runtime.id()),
            parent: Some(self.record.id),
            holder: to,
            rights: rights_bits(rights),
            ..self.record
        };
        self.runtime
            .share_capability(record)
            .map_err(SendError::Node)?;
        Ok(record.id)
    }

    /// Revoke this capability and everything derived from it, at every node (only the
    /// minter may). Returns once every node's access through them has ended.
    pub fn revoke(&self) -> Result<(), RevokeError> {
        self.revoke_sent(self.record.id)
    }

    /// Revoke `sent`, a capability derived from this range (see [`DsmCapability::send`]),
    /// and everything derived from it, at every node (only the minter may).
    pub fn revoke_sent(&self, sent: CapId) -> Result<(), RevokeError> {
        let (minter, revoked) = self.runtime.with_rights(|t| {
            (
                t.minter(sent),
                t.get(sent).is_some_and(|(_, revoked)| revoked),
            )
        });
        match minter {
            Some(m) if m == self.runtime.id() => {}
            Some(minter) => return Err(RevokeError::NotMinter { minter }),
            None => {
                return Err(RevokeError::Node(DsmError::Protocol(format!(
                    "no capability {sent:?} is known here"
                ))));
            }
        }
        if revoked {
            return Err(RevokeError::Revoked);
        }
        self.runtime
            .revoke_capability(sent)
            .map_err(RevokeError::Node)
    }

    /// Make the range accessible for reading while the guard lives.
    pub fn acquire(&self) -> Result<CapGuard<'_, T>, AcquireError> {
        if !self.rights().contains(Rights::READ) {
            return Err(AcquireError::NoReadRight);
        }
        self.enter(Access::Read)?;
        Ok(CapGuard { cap: self })
    }

    /// Make the range accessible for writing while the guard lives (needs WRITE).
    pub fn acquire_write(&self) -> Result<WriteGuard<'_, T>, AcquireError> {
        if !self.rights().contains(Rights::WRITE) {
            return Err(AcquireError::NoWriteRight);
        }
        self.enter(Access::Write)?;
        Ok(WriteGuard(CapGuard { cap: self }))
    }

    /// Count a guard and bring the pages in with `access` (a page whose contents are here
    /// becomes readable again without a message).
    fn enter(&self, access: Access) -> Result<(), AcquireError> {
        if self.is_revoked() {
            return Err(AcquireError::Revoked);
        }
        self.guards.fetch_add(1, Ordering::AcqRel);
        let r = self.bring_in(access);
        if r.is_err() {
            self.leave();
        }
        r
    }

    fn bring_in(&self, access: Access) -> Result<(), AcquireError> {
        let (first, pages) = (self.record.first, self.record.pages);
        self.runtime
            .return_pages(first, pages)
            .map_err(AcquireError::Node)?;
        for page in first..first + pages {
            match self.runtime.resolve_fault(page, access) {
                Ok(()) => {}
                Err(DsmError::Denied { .. }) if self.is_revoked() => {
                    return Err(AcquireError::Revoked);
                }
                Err(e) => return Err(AcquireError::Node(e)),
            }
        }
        Ok(())
    }

    /// A guard ends: the last one withdraws this node's access to the range.
    fn leave(&self) {
        if self.guards.fetch_sub(1, Ordering::AcqRel) == 1 {
            // A failure here is the node's failure, which every later operation reports.
            let _ = self
                .runtime
                .withdraw_pages(self.record.first, self.record.pages);
        }
    }
}

impl<T: Shareable> Acquire for DsmCapability<T> {
    type Guard<'a>
        = CapGuard<'a, T>
    where
        T: 'a;
    type WriteGuard<'a>
        = WriteGuard<'a, T>
    where
        T: 'a;
    type Error = AcquireError;

    fn acquire(&self) -> Result<CapGuard<'_, T>, AcquireError> {
        DsmCapability::acquire(self)
    }
    fn acquire_write(&self) -> Result<WriteGuard<'_, T>, AcquireError> {
        DsmCapability::acquire_write(self)
    }
    fn restrict(&self, rights: Rights) -> Result<Self, RestrictError> {
        DsmCapability::restrict(self, rights)
    }
    fn rights(&self) -> Rights {
        DsmCapability::rights(self)
    }
    fn is_revoked(&self) -> bool {
        DsmCapability::is_revoked(self)
    }
}

/// A live acquisition for reading: the range is readable here while any guard lives. As
/// with the local capability, it dereferences to `&T` only for types without interior
/// mutability ([`Immutable`]), and atomics are read with [`load`](CapGuard::load).
pub struct CapGuard<'a, T: Shareable> {
    cap: &'a DsmCapability<T>,
}

impl<T: Shareable> fmt::Debug for CapGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CapGuard")
            .field("ptr", &self.cap.ptr)
            .field("rights", &self.cap.rights)
            .finish()
    }
}

impl<T: Shareable> CapGuard<'_, T> {
    /// The object's address (the same on every node).
    pub fn as_ptr(&self) -> *const T {
        self.cap.ptr
    }
}

impl<T: Shareable + Sync + Immutable> Deref for CapGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the object lies in the region, which stays mapped while the Dsm lives
        // (the capability holds its runtime), page-aligned; T: Shareable is valid for any
        // bytes, T: Immutable has no UnsafeCell, so nothing stores through the `&T` (the
        // pages may be read-only); a page the protocol takes away faults back in on access.
        unsafe { &*self.cap.ptr }
    }
}

impl<T: AtomicRead> CapGuard<'_, T> {
    /// Loads the atomic's value; never writes, so it is sound on a read-only page.
    pub fn load(&self, order: Ordering) -> T::Value {
        // SAFETY: as in `deref`: in the region and aligned; load_shared only reads.
        unsafe { T::load_shared(self.cap.ptr, order) }
    }
}

impl<T: Shareable> Drop for CapGuard<'_, T> {
    fn drop(&mut self) {
        self.cap.leave();
    }
}

/// A live acquisition for writing (the capability carries WRITE): it dereferences to `&T`
/// for every shareable `T`, atomics included.
pub struct WriteGuard<'a, T: Shareable>(CapGuard<'a, T>);

impl<T: Shareable> fmt::Debug for WriteGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("WriteGuard").field(&self.0).finish()
    }
}

impl<T: Shareable> WriteGuard<'_, T> {
    /// The object's address, for writing.
    pub fn as_ptr(&self) -> *mut T {
        self.0.cap.ptr
    }
}

impl<T: Shareable + Sync> Deref for WriteGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: as for CapGuard; the capability carries WRITE and the pages were brought
        // in writable, so a store through interior mutability faults (if the protocol took
        // the page meanwhile) and is served, never refused, while the rights last.
        unsafe { &*self.0.cap.ptr }
    }
}
