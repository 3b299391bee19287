//! Scheme 3, dynamic capabilities: a capability names a typed object in a segment
//! (segment, offset, the type's size) with rights. [`Capability::acquire`] maps the
//! object with the protection its rights allow and returns a guard; dropping the last
//! guard unmaps it. Rights can be restricted, never widened; the segment's owner revokes
//! every capability minted from it by bumping the segment's generation, after which
//! acquire fails with [`AcquireError::Revoked`]. Capabilities travel between processes
//! with [`send_capability`](crate::capability_transfer::send_capability).
//!
//! The rights are enforced by the kernel where it can: a capability without
//! [`Rights::WRITE`] holds a descriptor opened read-only, so neither its own mappings nor
//! any mapping its holder makes by hand can be writable.
//!
//! ```
//! use memlink_capability::capability::{Capability, Rights};
//! use memlink_capability::segment::Segment;
//! use std::sync::atomic::{AtomicU64, Ordering};
//!
//! let seg = Segment::create("doc-cap", 4096).unwrap();
//! let cap = Capability::<AtomicU64>::mint(&seg, 64, Rights::ALL).unwrap();
//! cap.acquire_write().unwrap().store(7, Ordering::Relaxed);
//! let reader = cap.restrict(Rights::READ).unwrap();
//! assert_eq!(reader.acquire().unwrap().load(Ordering::Relaxed), 7);
//! seg.revoke().unwrap();
//! assert!(reader.acquire().is_err());
//! ```

use std::fmt;
use std::marker::PhantomData;
use std::ops::Deref;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::Ordering;

pub use zerocopy::Immutable;

use crate::guard_count::{GuardAcquireError, GuardCount};
use crate::mapping::{MapError, Mapping, PAGE, Placement, Protection};
use crate::segment::{
    AttachError, HEADER_LEN, HeaderCheck, Segment, SegmentId, check_header, generation_of,
    generation_word_for,
};
use crate::shareable::Shareable;

/// What a capability allows: a set of [`Rights::READ`], [`Rights::WRITE`], [`Rights::GRANT`].
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rights(u32);

impl Rights {
    /// No rights.
    pub const NONE: Rights = Rights(0);
    /// Map and read the object.
    pub const READ: Rights = Rights(1);
    /// Map the object writable.
    pub const WRITE: Rights = Rights(2);
    /// Pass the capability on to another process.
    pub const GRANT: Rights = Rights(4);
    /// Read, write and grant.
    pub const ALL: Rights = Rights(7);

    /// The rights with these bits, or `None` if unknown bits are set.
    pub fn from_bits(bits: u32) -> Option<Rights> {
        (bits & !Self::ALL.0 == 0).then_some(Rights(bits))
    }

    /// The raw bits.
    pub fn bits(self) -> u32 {
        self.0
    }

    /// Whether every right in `other` is in `self`.
    pub fn contains(self, other: Rights) -> bool {
        self.0 & other.0 == other.0
    }

    /// The rights in both.
    pub fn intersection(self, other: Rights) -> Rights {
        Rights(self.0 & other.0)
    }

    /// `self` without the rights in `other`.
    pub fn without(self, other: Rights) -> Rights {
        Rights(self.0 & !other.0)
    }
}

impl std::ops::BitOr for Rights {
    type Output = Rights;
    fn bitor(self, rhs: Rights) -> Rights {
        Rights(self.0 | rhs.0)
    }
}

impl fmt::Debug for Rights {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Rights {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = if self.contains(Rights::READ) {
            'r'
        } else {
            '-'
        };
        let w = if self.contains(Rights::WRITE) {
            'w'
        } else {
            '-'
        };
        let g = if self.contains(Rights::GRANT) {
            'g'
        } else {
            '-'
        };
        write!(f, "{r}{w}{g}")
    }
}

/// Why [`Capability::mint`] (or rebuilding a received capability) failed.
#[derive(Debug)]
pub enum MintError {
    /// The type has size zero: there is nothing to map.
    ZeroSized,
    /// The object does not fit in the segment's payload.
    OutOfRange {
        /// Offset of the object.
        offset: usize,
        /// Size of the object.
        size: usize,
        /// Payload length of the segment.
        payload_len: usize,
    },
    /// The offset is not aligned for the type.
    Misaligned {
        /// Offset of the object.
        offset: usize,
        /// Required alignment.
        align: usize,
    },
    /// WRITE was asked for but the segment (or received descriptor) is read-only.
    WriteOnReadOnly,
    /// The segment header failed its checks.
    Attach(AttachError),
    /// The generation to expect is not a valid one (zero or wider than 32 bits).
    InvalidGeneration {
        /// The value given.
        found: u64,
    },
    /// Duplicating or reopening the descriptor failed.
    Io(std::io::Error),
}

impl fmt::Display for MintError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MintError::ZeroSized => write!(f, "cannot make a capability for a zero-sized type"),
            MintError::OutOfRange {
                offset,
                size,
                payload_len,
            } => write!(
                f,
                "object of {size} bytes at offset {offset:#x} does not fit in the segment's {payload_len} bytes"
            ),
            MintError::Misaligned { offset, align } => {
                write!(f, "offset {offset:#x} is not aligned to {align} bytes")
            }
            MintError::WriteOnReadOnly => write!(
                f,
                "the segment is held read-only, so a capability from it cannot carry WRITE"
            ),
            MintError::Attach(e) => write!(f, "{e}"),
            MintError::InvalidGeneration { found } => write!(
                f,
                "generation {found} is not a valid segment generation (1 to 2^32 - 1)"
            ),
            MintError::Io(e) => write!(f, "duplicating the segment descriptor failed: {e}"),
        }
    }
}

impl std::error::Error for MintError {}

/// Why [`Capability::acquire`] failed.
#[derive(Debug)]
pub enum AcquireError {
    /// The owner revoked the capability (the segment's generation moved on).
    Revoked,
    /// The segment header's generation word fails its check: someone overwrote it.
    CorruptGeneration {
        /// The word found.
        found: u64,
    },
    /// The capability lacks the READ right.
    NoReadRight,
    /// [`Capability::acquire_write`] on a capability without the WRITE right.
    NoWriteRight,
    /// Mapping the object failed.
    Map(MapError),
}

impl fmt::Display for AcquireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AcquireError::Revoked => write!(
                f,
                "the capability was revoked by the segment's owner; ask the owner for a new one"
            ),
            AcquireError::CorruptGeneration { found } => write!(
                f,
                "the segment header field generation holds {found:#018x}, which fails its check: the header was overwritten"
            ),
            AcquireError::NoReadRight => write!(f, "the capability does not carry the READ right"),
            AcquireError::NoWriteRight => write!(
                f,
                "the capability does not carry the WRITE right; acquire() it for reading"
            ),
            AcquireError::Map(e) => write!(f, "mapping the object failed: {e}"),
        }
    }
}

impl std::error::Error for AcquireError {}

/// Why [`Capability::restrict`] failed.
#[derive(Debug)]
pub enum RestrictError {
    /// The requested rights are not a subset of the held ones: rights never widen.
    Widening {
        /// Rights held.
        held: Rights,
        /// Rights requested.
        requested: Rights,
    },
    /// Narrowing the rights where they are kept failed: reopening the segment's descriptor
    /// read-only (a local capability), or telling the cluster (a DSM capability).
    Io(std::io::Error),
}

impl fmt::Display for RestrictError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RestrictError::Widening { held, requested } => write!(
                f,
                "cannot restrict rights {held} to {requested}: rights can only be narrowed"
            ),
            RestrictError::Io(e) => write!(
                f,
                "narrowing the rights failed (reopening the segment read-only, or telling the \
                 DSM cluster): {e}"
            ),
        }
    }
}

impl std::error::Error for RestrictError {}

struct CapInner {
    fd: OwnedFd,
    header: HeaderCheck,
    offset: usize,
    rights: Rights,
    generation: u64,
    /// The generation word that means "not revoked": generation plus its check.
    expected_word: u64,
    /// Start of the mapped pages inside the payload, and the mapped length.
    page_start: usize,
    map_len: usize,
    guards: GuardCount<Mapping>,
}

impl CapInner {
    /// Why the generation word differs from the expected one: a valid later generation
    /// (revoked) or a word that fails its check (overwritten).
    #[cold]
    fn revoked_or_corrupt(&self) -> AcquireError {
        let word = self.header.generation_word().load(Ordering::Acquire);
        match generation_of(word, self.header.fields.checksum) {
            Some(_) => AcquireError::Revoked,
            None => AcquireError::CorruptGeneration { found: word },
        }
    }

    fn map_object(&self) -> Result<(Mapping, usize), MapError> {
        let protection = if self.rights.contains(Rights::WRITE) {
            Protection::ReadWrite
        } else {
            Protection::ReadOnly
        };
        let m = Mapping::map(
            self.fd.as_fd(),
            HEADER_LEN + self.page_start,
            self.map_len,
            protection,
            Placement::Anywhere,
        )?;
        let addr = m.as_ptr() as usize;
        Ok((m, addr))
    }
}

/// A capability for one `T` in a segment. Clones in the same process share one mapping
/// and one guard count.
pub struct Capability<T> {
    inner: Arc<CapInner>,
    _type: PhantomData<fn() -> T>,
}

impl<T> Clone for Capability<T> {
    fn clone(&self) -> Self {
        Capability {
            inner: Arc::clone(&self.inner),
            _type: PhantomData,
        }
    }
}

impl<T> fmt::Debug for Capability<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Capability")
            .field("segment", &self.inner.header.fields.id)
            .field("offset", &self.inner.offset)
            .field("rights", &self.inner.rights)
            .field("generation", &self.inner.generation)
            .field("guards", &self.inner.guards.guards())
            .finish()
    }
}

impl<T: Shareable> Capability<T> {
    /// Makes a capability for the `T` at payload `offset` of `segment` with `rights`.
    /// The capability is valid until the segment's owner revokes (see [`Segment::revoke`]).
    pub fn mint(segment: &Segment, offset: usize, rights: Rights) -> Result<Self, MintError> {
        if rights.contains(Rights::WRITE) && segment.protection() != Protection::ReadWrite {
            return Err(MintError::WriteOnReadOnly);
        }
        let fd = if rights.contains(Rights::WRITE) {
            segment.try_clone_fd()
        } else {
            segment.read_only_fd()
        }
        .map_err(MintError::Io)?;
        let generation = segment.generation().map_err(MintError::Attach)?;
        Self::from_parts(fd, segment.id(), offset, rights, generation)
    }

    /// Rebuilds a capability from its parts, checking the header, the id, the range and
    /// that the descriptor's access covers the rights.
    pub(crate) fn from_parts(
        fd: OwnedFd,
        id: SegmentId,
        offset: usize,
        rights: Rights,
        generation: u64,
    ) -> Result<Self, MintError> {
        let size = std::mem::size_of::<T>();
        let align = std::mem::align_of::<T>();
        if size == 0 {
            return Err(MintError::ZeroSized);
        }
        let header = check_header(fd.as_fd()).map_err(MintError::Attach)?;
        if header.fields.id != id {
            return Err(MintError::Attach(AttachError::InvalidId {
                found: id.raw(),
            }));
        }
        if offset
            .checked_add(size)
            .is_none_or(|end| end > header.fields.payload_len)
        {
            return Err(MintError::OutOfRange {
                offset,
                size,
                payload_len: header.fields.payload_len,
            });
        }
        if offset % align != 0 {
            return Err(MintError::Misaligned { offset, align });
        }
        if rights.contains(Rights::WRITE) && header.protection != Protection::ReadWrite {
            return Err(MintError::WriteOnReadOnly);
        }
        let expected_word = u32::try_from(generation)
            .ok()
            .filter(|g| *g != 0)
            .map(|g| generation_word_for(g, header.fields.checksum))
            .ok_or(MintError::InvalidGeneration { found: generation })?;
        let page_start = offset / PAGE * PAGE;
        let map_len = (offset + size).div_ceil(PAGE) * PAGE - page_start;
        Ok(Capability {
            inner: Arc::new(CapInner {
                fd,
                header,
                offset,
                rights,
                generation,
                expected_word,
                page_start,
                map_len,
                guards: GuardCount::new(),
            }),
            _type: PhantomData,
        })
    }

    /// Maps the object (unless a guard already has) and returns a guard for it. Fails
    /// with [`AcquireError::Revoked`] once the owner has revoked.
    #[inline]
    pub fn acquire(&self) -> Result<CapGuard<'_, T>, AcquireError> {
        let inner = &*self.inner;
        if !inner.rights.contains(Rights::READ) {
            return Err(AcquireError::NoReadRight);
        }
        let base = inner
            .guards
            .acquire(inner.header.generation_word(), inner.expected_word, || {
                inner.map_object()
            })
            .map_err(|e| match e {
                GuardAcquireError::Revoked => inner.revoked_or_corrupt(),
                GuardAcquireError::Map(e) => AcquireError::Map(e),
            })?;
        Ok(CapGuard {
            cap: self,
            ptr: (base + (inner.offset - inner.page_start)) as *mut T,
        })
    }

    /// Like [`acquire`](Self::acquire), for writing: needs [`Rights::WRITE`], and the guard
    /// dereferences to `&T` whatever `T` is (the mapping is read-write).
    #[inline]
    pub fn acquire_write(&self) -> Result<WriteGuard<'_, T>, AcquireError> {
        if !self.inner.rights.contains(Rights::WRITE) {
            return Err(AcquireError::NoWriteRight);
        }
        self.acquire().map(WriteGuard)
    }

    /// A capability for the same object with `rights` (which must be a subset of the held
    /// rights). Dropping WRITE reopens the descriptor read-only, so the new capability
    /// cannot be turned back into a writable one.
    pub fn restrict(&self, rights: Rights) -> Result<Capability<T>, RestrictError> {
        let held = self.inner.rights;
        if !held.contains(rights) {
            return Err(RestrictError::Widening {
                held,
                requested: rights,
            });
        }
        let fd = if rights.contains(Rights::WRITE) {
            self.inner.fd.try_clone()
        } else {
            crate::segment::reopen_read_only(self.inner.fd.as_fd())
        }
        .map_err(RestrictError::Io)?;
        Self::from_parts(
            fd,
            self.inner.header.fields.id,
            self.inner.offset,
            rights,
            self.inner.generation,
        )
        .map_err(|e| RestrictError::Io(std::io::Error::other(e.to_string())))
    }
}

/// The shape every capability of memlink shares, local ([`Capability`]) or across the nodes
/// of a DSM (`memlink_dsm::capability::DsmCapability`): acquire a guard (read, or write with
/// the WRITE right), release by dropping it, restrict (never widen), see the rights held and
/// whether the owner revoked it. Read guards follow the same rule everywhere: they
/// dereference to `&T` only for [`Immutable`] types and [`load`](CapGuard::load) atomics.
pub trait Acquire {
    /// The guard of a read acquisition.
    type Guard<'a>
    where
        Self: 'a;
    /// The guard of a write acquisition.
    type WriteGuard<'a>
    where
        Self: 'a;
    /// Why an acquisition failed.
    type Error: std::error::Error;

    /// Makes the object accessible for reading while the guard lives.
    fn acquire(&self) -> Result<Self::Guard<'_>, Self::Error>;
    /// Makes the object accessible for writing (needs [`Rights::WRITE`]).
    fn acquire_write(&self) -> Result<Self::WriteGuard<'_>, Self::Error>;
    /// The same object with fewer rights.
    fn restrict(&self, rights: Rights) -> Result<Self, RestrictError>
    where
        Self: Sized;
    /// The rights held.
    fn rights(&self) -> Rights;
    /// Whether the owner revoked it.
    fn is_revoked(&self) -> bool;
}

impl<T: Shareable> Acquire for Capability<T> {
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
        Capability::acquire(self)
    }
    fn acquire_write(&self) -> Result<WriteGuard<'_, T>, AcquireError> {
        Capability::acquire_write(self)
    }
    fn restrict(&self, rights: Rights) -> Result<Self, RestrictError> {
        Capability::restrict(self, rights)
    }
    fn rights(&self) -> Rights {
        Capability::rights(self)
    }
    fn is_revoked(&self) -> bool {
        Capability::is_revoked(self)
    }
}

impl<T> Capability<T> {
    /// The rights this capability carries.
    pub fn rights(&self) -> Rights {
        self.inner.rights
    }

    /// The segment the object lives in.
    pub fn segment_id(&self) -> SegmentId {
        self.inner.header.fields.id
    }

    /// The object's offset in the segment payload.
    pub fn offset(&self) -> usize {
        self.inner.offset
    }

    /// The generation the capability was minted at.
    pub fn generation(&self) -> u64 {
        self.inner.generation
    }

    /// Whether the owner has revoked it.
    pub fn is_revoked(&self) -> bool {
        self.inner.header.generation_word().load(Ordering::Acquire) != self.inner.expected_word
    }

    /// Whether the object is mapped in this process now (some guard is alive).
    pub fn is_mapped(&self) -> bool {
        self.inner.guards.is_mapped()
    }

    /// Number of live guards in this process.
    pub fn guards(&self) -> usize {
        self.inner.guards.guards()
    }

    /// The descriptor backing the capability (read-only unless it carries WRITE).
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.inner.fd.as_fd()
    }
}

/// A live acquisition of a capability for reading: the object is mapped while any guard
/// lives. It dereferences to `&T` only for types without interior mutability
/// ([`Immutable`]): a shared reference to an atomic or a cell in a read-only mapping
/// would let safe code store through it and fault. Atomics are read with
/// [`load`](CapGuard::load); writing needs [`Capability::acquire_write`].
pub struct CapGuard<'a, T> {
    cap: &'a Capability<T>,
    ptr: *mut T,
}

impl<T> fmt::Debug for CapGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CapGuard")
            .field("ptr", &self.ptr)
            .field("rights", &self.cap.rights())
            .finish()
    }
}

impl<T> CapGuard<'_, T> {
    /// The object's address in this process.
    pub fn as_ptr(&self) -> *const T {
        self.ptr
    }

    /// The object's address for writing, if the capability carries WRITE.
    pub fn as_mut_ptr(&self) -> Option<*mut T> {
        self.cap
            .rights()
            .contains(Rights::WRITE)
            .then_some(self.ptr)
    }
}

impl<T: Shareable + Sync + Immutable> Deref for CapGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard keeps the mapping alive (guard count > 0); the object lies
        // inside it, is aligned (checked at mint), T: Shareable is valid for any bytes,
        // and T: Immutable has no UnsafeCell, so nothing can store through the `&T`
        // (the mapping may be read-only).
        unsafe { &*self.ptr }
    }
}

impl<T: AtomicRead> CapGuard<'_, T> {
    /// Loads the atomic's value; never writes, so it is sound on a read-only mapping.
    #[inline]
    pub fn load(&self, order: Ordering) -> T::Value {
        // SAFETY: as in `deref`: mapped, in range, aligned; AtomicRead::load_shared only
        // performs an atomic load, which does not write the (possibly read-only) page.
        unsafe { T::load_shared(self.ptr, order) }
    }
}

/// A live acquisition of a capability that carries [`Rights::WRITE`]: the object is
/// mapped read-write, so the guard dereferences to `&T` for every shareable `T`,
/// atomics included.
pub struct WriteGuard<'a, T>(CapGuard<'a, T>);

impl<T> fmt::Debug for WriteGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("WriteGuard").field(&self.0).finish()
    }
}

impl<T> WriteGuard<'_, T> {
    /// The object's address in this process (mapped read-write).
    pub fn as_ptr(&self) -> *mut T {
        self.0.ptr
    }
}

impl<T: Shareable + Sync> Deref for WriteGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard keeps the mapping alive; the object lies inside it and is
        // aligned (checked at mint); the capability carries WRITE, so the mapping is
        // read-write and stores through interior mutability cannot fault; T: Shareable
        // is valid for any bytes and mutated concurrently only through atomics.
        unsafe { &*self.0.ptr }
    }
}

mod sealed {
    pub trait Sealed {}
}

/// Atomics that a read-only guard can load from: the load is a plain atomic read that
/// never writes the page (which a compare-exchange based load of a wider type would).
pub trait AtomicRead: Shareable + sealed::Sealed {
    /// The value type.
    type Value;
    /// Loads the value at `ptr`.
    ///
    /// # Safety
    ///
    /// `ptr` must be aligned and point into a live (possibly read-only) mapping.
    unsafe fn load_shared(ptr: *const Self, order: Ordering) -> Self::Value;
}

macro_rules! atomic_read {
    ($($a:ty => $v:ty),* $(,)?) => {
        $(
            impl sealed::Sealed for $a {}
            impl AtomicRead for $a {
                type Value = $v;
                #[inline]
                unsafe fn load_shared(ptr: *const Self, order: Ordering) -> $v {
                    // SAFETY: the caller guarantees an aligned pointer into a live
                    // mapping; `load` reads without writing.
                    unsafe { (*ptr).load(order) }
                }
            }
        )*
    };
}

atomic_read!(
    std::sync::atomic::AtomicU8 => u8,
    std::sync::atomic::AtomicU16 => u16,
    std::sync::atomic::AtomicU32 => u32,
    std::sync::atomic::AtomicU64 => u64,
    std::sync::atomic::AtomicUsize => usize,
    std::sync::atomic::AtomicI8 => i8,
    std::sync::atomic::AtomicI16 => i16,
    std::sync::atomic::AtomicI32 => i32,
    std::sync::atomic::AtomicI64 => i64,
    std::sync::atomic::AtomicIsize => isize,
);

impl<T> Drop for CapGuard<'_, T> {
    fn drop(&mut self) {
        self.cap.inner.guards.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    #[test]
    fn guards_share_one_mapping_and_last_drop_unmaps() {
        let seg = Segment::create("cap", 3 * 4096).unwrap();
        let cap = Capability::<AtomicU64>::mint(&seg, 4096 + 8, Rights::ALL).unwrap();
        assert!(!cap.is_mapped());
        let g1 = cap.acquire().unwrap();
        let g2 = cap.clone().acquire().map(|g| g.as_ptr()).unwrap();
        assert!(cap.is_mapped());
        assert_eq!(g1.as_ptr(), g2);
        cap.acquire_write().unwrap().store(5, Ordering::Relaxed);
        // SAFETY: payload is 3 pages, offset 4096 + 8 is inside and 8-aligned.
        let direct = unsafe { &*(seg.payload_ptr().add(4096 + 8) as *const AtomicU64) };
        assert_eq!(direct.load(Ordering::Relaxed), 5);
        drop(g1);
        assert!(!cap.is_mapped());
        assert_eq!(cap.guards(), 0);
    }

    #[test]
    fn rights_never_widen_and_read_only_maps_read_only() {
        let seg = Segment::create("cap2", 4096).unwrap();
        let cap = Capability::<u64>::mint(&seg, 0, Rights::READ | Rights::GRANT).unwrap();
        assert!(matches!(
            cap.restrict(Rights::ALL),
            Err(RestrictError::Widening { .. })
        ));
        assert!(cap.acquire().unwrap().as_mut_ptr().is_none());
        let none = cap.restrict(Rights::GRANT).unwrap();
        assert!(matches!(none.acquire(), Err(AcquireError::NoReadRight)));
        assert!(matches!(
            Capability::<u64>::mint(&seg, 4, Rights::READ),
            Err(MintError::Misaligned { .. })
        ));
        assert!(matches!(
            Capability::<u64>::mint(&seg, 4090, Rights::READ),
            Err(MintError::OutOfRange { .. })
        ));
    }

    #[test]
    fn revoke_fails_later_acquires_even_when_mapped() {
        let seg = Segment::create("cap3", 4096).unwrap();
        let cap = Capability::<u32>::mint(&seg, 0, Rights::ALL).unwrap();
        let g = cap.acquire().unwrap();
        assert_eq!(seg.revoke(), Ok(2));
        assert!(cap.is_revoked());
        assert!(matches!(cap.acquire(), Err(AcquireError::Revoked)));
        assert_eq!(cap.guards(), 1);
        drop(g);
        assert!(matches!(cap.acquire(), Err(AcquireError::Revoked)));
        assert!(!cap.is_mapped());
        // A capability minted after the revocation works.
        assert!(
            Capability::<u32>::mint(&seg, 0, Rights::READ)
                .unwrap()
                .acquire()
                .is_ok()
        );
    }
}
