//! Where a channel's shared structures live, and how to place them there.

use crate::layout::{LayoutCheck, LayoutSpec, Snapshot};
use crate::region::{AllocError, Region};
use std::sync::Arc;

/// A tag written in front of every channel placed in a region, checked when a process opens
/// the channel from a [`ChannelRef`].
#[repr(C)]
pub(crate) struct Tagged<T> {
    /// The kind tag (at [`crate::layout::KIND_OFFSET`]).
    pub(crate) kind: u64,
    /// CRC-32 of the kind and the sealed fields (at [`crate::layout::CHECK_OFFSET`]).
    pub(crate) check: u64,
    /// The channel's layout.
    pub(crate) value: T,
}

const _: () = assert!(std::mem::offset_of!(Tagged<u64>, kind) == crate::layout::KIND_OFFSET);
const _: () = assert!(std::mem::offset_of!(Tagged<u64>, check) == crate::layout::CHECK_OFFSET);

/// A reference to a channel inside a region, meaningful in every process that maps the region
/// (reference scheme 2: an offset translated by each process's own base). It is plain data, so
/// it can travel inside a message.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelRef {
    /// Offset of the channel from the region's base.
    pub offset: u64,
    /// The kind tag of the channel.
    pub kind: u64,
}

// SAFETY: two integers; an offset, not a pointer, so it means the same in every process.
unsafe impl crate::Shareable for ChannelRef {}

/// Kind tags.
pub(crate) mod kind {
    pub const SYNC: u64 = 0x6d6c_5359_4e43_0001;
    pub const LOAN: u64 = 0x6d6c_4c4f_414e_0001;
    pub const BUFFERED: u64 = 0x6d6c_4255_4646_0001;
    pub const PORT: u64 = 0x6d6c_504f_5254_0001;
}

/// Places `value` in `region` behind the kind tag of `spec` and the check over its sealed
/// fields; returns a pointer to the value and its ref.
pub(crate) fn place<T>(
    region: &Region,
    spec: &LayoutSpec,
    value: T,
) -> Result<(*mut T, ChannelRef), AllocError> {
    debug_assert_eq!(spec.len, size_of::<Tagged<T>>());
    let kind = spec.kind;
    let p = region
        .alloc_bytes(size_of::<Tagged<T>>(), align_of::<Tagged<T>>().max(128))?
        .cast::<Tagged<T>>();
    // SAFETY: fresh, aligned, in-bounds space for one `Tagged<T>` that nobody else uses yet.
    unsafe {
        p.write(Tagged {
            kind,
            check: 0,
            value,
        })
    };
    // SAFETY: `p` holds the `Tagged<T>` just written (`spec.len` bytes, aligned).
    let snapshot = unsafe { spec.snapshot(p.cast()) };
    let values: Vec<u64> = (0..spec.fields.len()).map(|i| snapshot.get(i)).collect();
    // SAFETY: as above; no other process knows the layout's offset yet.
    unsafe { (*p).check = spec.seal(&values) };
    let offset = region.offset_of(p.cast()) as u64;
    // SAFETY: `p` is valid; taking the address of a field.
    let value = unsafe { &raw mut (*p).value };
    Ok((value, ChannelRef { offset, kind }))
}

/// Finds the value behind `r` in `region`, checking bounds, alignment and the kind tag (the
/// caller then checks the layout's fields: [`crate::layout`]).
pub(crate) fn find<T>(region: &Region, kind: u64, r: ChannelRef) -> Option<*mut T> {
    if r.kind != kind || r.offset % align_of::<Tagged<T>>() as u64 != 0 {
        return None;
    }
    let p = region
        .at_offset(r.offset as usize, size_of::<Tagged<T>>())?
        .cast::<Tagged<T>>();
    // SAFETY: in bounds and aligned (checked); the kind word is plain data.
    let tag = unsafe { std::ptr::read_volatile(&raw const (*p).kind) };
    // SAFETY: as above, taking a field address.
    (tag == kind).then(|| unsafe { &raw mut (*p).value })
}

/// Reads the layout of `spec` that holds `value` once, into a private snapshot that the checks
/// and the channel then use (a peer may change the original), and starts checking it.
///
/// # Safety
/// `value` is what [`place`] or [`find`] returned for `region` and a layout of `spec`: it lies
/// in a tagged layout of `spec.len` bytes (bounds, alignment and tag checked) inside the
/// region that `region` keeps mapped.
pub(crate) unsafe fn read_layout<'r, T>(
    region: &'r Region,
    spec: &LayoutSpec,
    value: *mut T,
) -> (Snapshot, LayoutCheck<'r>) {
    let span = layout_span(region, value);
    // SAFETY: the tagged layout of `spec.len` bytes starts at `span.start`, inside the mapped
    // region (this function's contract).
    let snapshot = unsafe { spec.snapshot(region.base().add(span.start as usize)) };
    (snapshot, LayoutCheck::new(region, spec, span))
}

/// The bytes (as region offsets) that the tagged layout holding `value` occupies.
fn layout_span<T>(region: &Region, value: *mut T) -> std::ops::Range<u64> {
    let start = region.offset_of(value.cast()) - std::mem::offset_of!(Tagged<T>, value);
    start as u64..(start + size_of::<Tagged<T>>()) as u64
}

/// Allocates `n` elements made by `make` in `region`, aligned to a cache line.
pub(crate) fn place_array<T>(
    region: &Region,
    n: usize,
    align: usize,
    make: impl Fn(usize) -> T,
) -> Result<*mut T, AllocError> {
    let p = region
        .alloc_bytes(size_of::<T>().max(1) * n, align_of::<T>().max(align))?
        .cast::<T>();
    for i in 0..n {
        // SAFETY: fresh in-bounds space for `n` elements; element `i` is written once.
        unsafe { p.add(i).write(make(i)) };
    }
    Ok(p)
}

/// Keeps a channel's memory alive in this process.
#[derive(Debug, Clone)]
pub(crate) enum Backing {
    /// In a shared region (threads or processes).
    Region(Arc<Region>),
    /// On this process's heap (threads only), with the creator's pid.
    Local {
        /// Keeps the heap allocation alive.
        _keep: Arc<dyn std::any::Any + Send + Sync>,
        /// The creator's pid.
        pid: u32,
    },
}

impl Backing {
    /// Whether a peer could reach `len` bytes at `ptr`.
    pub(crate) fn reachable(&self, ptr: *const u8, len: usize) -> bool {
        match self {
            Backing::Region(region) => region.contains(ptr, len),
            Backing::Local { .. } => true,
        }
    }

    /// Whether this process may use the channel (a local channel is only valid in its creator).
    pub(crate) fn usable_here(&self) -> bool {
        match self {
            Backing::Region(_) => true,
            Backing::Local { pid, .. } => *pid == crate::liveness::current_pid(),
        }
    }
}
