//! [`DsmAtomic`]: a typed atomic in the shared region, allocated by the cluster's allocator
//! and used like a std atomic on every node, with no `unsafe` at the call site.
//!
//! Its operations are the std atomic's, on the region's page: the coherence protocol brings
//! the page to this node first (read access for a load, the only writable copy for a store
//! or a read-modify-write), so every operation happens on the one current copy of the page,
//! in one order that every node agrees on (the DSM is sequentially consistent; use `SeqCst`
//! to keep the CPU from reordering a node's own accesses). A `fetch_add` is atomic across
//! nodes: a page is taken away only after its write access is revoked, so an instruction
//! that started on it completes before its contents move. Each operation on a page another
//! node wrote last costs a fault and a round trip: an atomic is for flags, counters and
//! hand-offs, not for data hammered by every node at once.
//!
//! ```no_run
//! # fn demo(dsm: &memlink_dsm::cluster::Dsm) -> Result<(), memlink_dsm::DsmError> {
//! use std::sync::atomic::Ordering;
//! use memlink_dsm::atomic::DsmAtomic;
//!
//! if dsm.id() == 0 {
//!     let hits = DsmAtomic::<u64>::new(dsm, 0)?;   // allocated in the region
//!     dsm.publish(1, hits.offset() as u64);         // where the others find it
//! }
//! dsm.barrier(1)?;
//! let hits = DsmAtomic::<u64>::attach(dsm, dsm.lookup(1) as usize)?;
//! hits.fetch_add(1, Ordering::SeqCst);              // counted once per node, exactly
//! dsm.barrier(2)?;
//! assert_eq!(hits.load(Ordering::SeqCst), dsm.nodes() as u64);
//! # Ok(()) }
//! ```
//!
//! If the cluster fails, an operation whose page cannot be fetched cannot return an error
//! (it is a plain memory access): the node exits, as for any unservable fault
//! ([`crate::fault::UNSERVABLE_FAULT_EXIT`]).

use std::ops::Deref;
use std::sync::atomic::{
    AtomicI32, AtomicI64, AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering,
};

use crate::cluster::Dsm;
use crate::types::DsmError;

mod sealed {
    pub trait Sealed {}
}

/// An integer type with a std atomic counterpart (u8, u32, u64, i32, i64, usize): every bit
/// pattern is a valid value, so an atomic attached anywhere in the region is sound to read.
pub trait AtomicValue: Copy + sealed::Sealed {
    /// The std atomic type (`AtomicU64` for `u64`, ...).
    type Atomic: Sync;
    /// `atomic.store(value, SeqCst)`.
    fn store(atomic: &Self::Atomic, value: Self);
}

macro_rules! atomic_value {
    ($($value:ty => $atomic:ty),* $(,)?) => {$(
        impl sealed::Sealed for $value {}
        impl AtomicValue for $value {
            type Atomic = $atomic;
            fn store(atomic: &$atomic, value: $value) {
                atomic.store(value, Ordering::SeqCst);
            }
        }
    )*};
}

atomic_value! {
    u8 => AtomicU8,
    u32 => AtomicU32,
    u64 => AtomicU64,
    i32 => AtomicI32,
    i64 => AtomicI64,
    usize => AtomicUsize,
}

/// An atomic `T` in the shared region of `dsm`; dereferences to the std atomic
/// (`DsmAtomic<u64>` to `AtomicU64`). It borrows the [`Dsm`], so it cannot outlive the
/// mapping.
pub struct DsmAtomic<'dsm, T: AtomicValue> {
    atomic: &'dsm T::Atomic,
    offset: usize,
    dsm: &'dsm Dsm,
}

impl<T: AtomicValue> std::fmt::Debug for DsmAtomic<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DsmAtomic")
            .field("type", &std::any::type_name::<T>())
            .field("offset", &self.offset)
            .finish()
    }
}

impl<'dsm, T: AtomicValue> DsmAtomic<'dsm, T> {
    /// Allocates an atomic in the region (cluster-wide first fit) holding `value`.
    pub fn new(dsm: &'dsm Dsm, value: T) -> Result<Self, DsmError> {
        let size = size_of::<T::Atomic>();
        let offset = dsm.alloc(size, align_of::<T::Atomic>())?;
        let atomic = Self::attach(dsm, offset)?;
        T::store(&atomic, value);
        Ok(atomic)
    }

    /// The atomic that a node allocated at region offset `offset` (from [`DsmAtomic::offset`],
    /// passed on through [`Dsm::publish`] or a structure in the region). Refused when the
    /// offset is misaligned or the atomic would not lie wholly inside the region.
    pub fn attach(dsm: &'dsm Dsm, offset: usize) -> Result<Self, DsmError> {
        let size = size_of::<T::Atomic>();
        let fits = offset.checked_add(size).is_some_and(|end| end <= dsm.len());
        if !fits || offset % align_of::<T::Atomic>() != 0 {
            return Err(DsmError::Config(format!(
                "no {}-byte atomic at region offset {offset}: the region has {} bytes and the \
                 offset must be a multiple of {}",
                size,
                dsm.len(),
                align_of::<T::Atomic>()
            )));
        }
        // SAFETY: [offset, offset + size) lies inside the region (checked above), which stays
        // mapped, readable and writable through faults, for as long as `dsm` is borrowed; the
        // address is aligned for T::Atomic (checked above); every bit pattern is a valid
        // value of these integer atomics, whatever was written there before; and a std
        // atomic may be shared between threads, the DSM keeping its page coherent between
        // nodes.
        let atomic = unsafe { &*dsm.at::<T::Atomic>(offset) };
        Ok(DsmAtomic {
            atomic,
            offset,
            dsm,
        })
    }

    /// Its region offset: the same on every node.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// Returns its block to the allocator (only once no node uses it any more).
    pub fn free(self) -> Result<(), DsmError> {
        self.dsm.free(self.offset)
    }
}

impl<T: AtomicValue> Deref for DsmAtomic<'_, T> {
    type Target = T::Atomic;

    fn deref(&self) -> &T::Atomic {
        self.atomic
    }
}
