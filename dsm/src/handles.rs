//! Typed handles on blocks of the shared region: [`DsmBox`] (one value) and [`DsmVec`] (a
//! fixed-length array), for [`Shareable`] types only, allocated first-fit by the cluster's
//! allocator and freed explicitly. A handle is a region offset: the same on every node, so a
//! node can [`attach`](DsmVec::attach) to a block another node allocated.
//!
//! ```no_run
//! # fn demo(dsm: &memlink_dsm::cluster::Dsm) -> Result<(), memlink_dsm::DsmError> {
//! use memlink_dsm::handles::DsmVec;
//! let v = DsmVec::<u64>::new_zeroed(dsm, 1024)?;
//! v.set(3, 42);
//! dsm.publish(0, v.offset() as u64); // other nodes: DsmVec::attach(dsm, offset, 1024)
//! assert_eq!(v.get(3), 42);
//! v.free(dsm)?;
//! # Ok(()) }
//! ```

use std::marker::PhantomData;

pub use memlink_capability::Shareable;

use crate::cluster::Dsm;
use crate::types::DsmError;

fn check_block<T>(dsm: &Dsm, offset: usize, len: usize) -> Result<(), DsmError> {
    let bytes = len
        .checked_mul(size_of::<T>())
        .and_then(|b| b.checked_add(offset));
    match bytes {
        Some(end) if end <= dsm.len() && offset % align_of::<T>() == 0 => Ok(()),
        _ => Err(DsmError::Config(format!(
            "a block of {len} x {} bytes at offset {offset} does not fit the region of {} bytes \
             (or is misaligned)",
            size_of::<T>(),
            dsm.len()
        ))),
    }
}

/// One `T` in the shared region.
#[derive(Debug)]
pub struct DsmBox<T: Shareable> {
    ptr: *mut T,
    offset: usize,
    _type: PhantomData<T>,
}

impl<T: Shareable> DsmBox<T> {
    /// Allocates a block for one `T` and writes `value` into it.
    pub fn new(dsm: &Dsm, value: T) -> Result<DsmBox<T>, DsmError> {
        let offset = dsm.alloc(size_of::<T>().max(1), align_of::<T>())?;
        let ptr = dsm.at::<T>(offset);
        // SAFETY: the block is freshly allocated for one T, aligned, inside the region; the
        // write faults the page in writable.
        unsafe { ptr.write(value) };
        Ok(DsmBox {
            ptr,
            offset,
            _type: PhantomData,
        })
    }

    /// A handle on the `T` that another node allocated at `offset`.
    pub fn attach(dsm: &Dsm, offset: usize) -> Result<DsmBox<T>, DsmError> {
        check_block::<T>(dsm, offset, 1)?;
        Ok(DsmBox {
            ptr: dsm.at::<T>(offset),
            offset,
            _type: PhantomData,
        })
    }

    /// The region offset of the value (the same on every node).
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// The value's address (the same on every node).
    pub fn as_ptr(&self) -> *mut T {
        self.ptr
    }

    /// Reads the value (a volatile copy: other nodes may change it between reads).
    pub fn get(&self) -> T
    where
        T: Copy,
    {
        // SAFETY: ptr points to an aligned T inside the region; T is Shareable, so every bit
        // pattern another node may have written is a valid T.
        unsafe { self.ptr.read_volatile() }
    }

    /// Overwrites the value.
    pub fn set(&self, value: T)
    where
        T: Copy,
    {
        // SAFETY: as in get; the write faults the page in writable.
        unsafe { self.ptr.write_volatile(value) }
    }

    /// Frees the block (only the node that allocated it, or one that knows nobody uses it).
    pub fn free(self, dsm: &Dsm) -> Result<(), DsmError> {
        dsm.free(self.offset)
    }
}

/// A fixed-length array of `T` in the shared region.
#[derive(Debug)]
pub struct DsmVec<T: Shareable> {
    ptr: *mut T,
    offset: usize,
    len: usize,
    _type: PhantomData<T>,
}

impl<T: Shareable + Copy> DsmVec<T> {
    /// Allocates `len` elements, all zero bits (valid for every Shareable type).
    pub fn new_zeroed(dsm: &Dsm, len: usize) -> Result<DsmVec<T>, DsmError> {
        let bytes = len
            .checked_mul(size_of::<T>())
            .ok_or(DsmError::OutOfMemory {
                requested: usize::MAX,
            })?;
        let offset = dsm.alloc(bytes.max(1), align_of::<T>())?;
        let ptr = dsm.at::<T>(offset);
        // SAFETY: the block holds `len` Ts, inside the region; zero bits are a valid T because
        // T is Shareable (every bit pattern is valid).
        unsafe { std::ptr::write_bytes(ptr, 0, len) };
        Ok(DsmVec {
            ptr,
            offset,
            len,
            _type: PhantomData,
        })
    }

    /// A handle on `len` elements that another node allocated at `offset`.
    pub fn attach(dsm: &Dsm, offset: usize, len: usize) -> Result<DsmVec<T>, DsmError> {
        check_block::<T>(dsm, offset, len)?;
        Ok(DsmVec {
            ptr: dsm.at::<T>(offset),
            offset,
            len,
            _type: PhantomData,
        })
    }

    /// The region offset of element 0 (the same on every node).
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the vector has no elements.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The address of element 0 (the same on every node).
    pub fn as_ptr(&self) -> *mut T {
        self.ptr
    }

    /// Reads element `i`; panics if `i >= len`, like slice indexing.
    pub fn get(&self, i: usize) -> T {
        assert!(
            i < self.len,
            "index {i} out of bounds for a DsmVec of {}",
            self.len
        );
        // SAFETY: i < len, so the element is inside the block; T is Shareable, so any bits
        // another node wrote form a valid T.
        unsafe { self.ptr.add(i).read_volatile() }
    }

    /// Writes element `i`; panics if `i >= len`.
    pub fn set(&self, i: usize, value: T) {
        assert!(
            i < self.len,
            "index {i} out of bounds for a DsmVec of {}",
            self.len
        );
        // SAFETY: as in get; the write faults the page in writable.
        unsafe { self.ptr.add(i).write_volatile(value) }
    }

    /// Copies the elements out.
    pub fn to_vec(&self) -> Vec<T> {
        (0..self.len).map(|i| self.get(i)).collect()
    }

    /// Frees the block.
    pub fn free(self, dsm: &Dsm) -> Result<(), DsmError> {
        dsm.free(self.offset)
    }
}
