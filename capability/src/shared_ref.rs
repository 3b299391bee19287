//! Scheme 2, distinct logical addresses: a shared reference is a segment id and an
//! offset packed in 64 bits (zero is null), and each process resolves it through its
//! own [`TranslationTable`] from segment id to the address where *it* mapped the
//! segment. Resolving an unknown segment or an out-of-range offset is an error.

use std::fmt;

use crate::segment::{Segment, SegmentId};
use crate::shareable::Shareable;

/// A reference to a byte offset in a segment, meaningful in every process: the segment
/// id in the high 32 bits, the payload offset in the low 32 bits. Zero is null.
#[repr(transparent)]
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SharedRef(u64);

// SAFETY: a u64; every bit pattern is a valid (possibly dangling) reference that is only
// turned into an address through a bounds-checked TranslationTable lookup.
unsafe impl Shareable for SharedRef {}

impl fmt::Debug for SharedRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_null() {
            write!(f, "SharedRef(null)")
        } else {
            write!(f, "SharedRef({:08x}+{:#x})", self.0 >> 32, self.0 as u32)
        }
    }
}

impl SharedRef {
    /// The null reference.
    pub const NULL: SharedRef = SharedRef(0);

    /// The reference to `offset` in segment `id`.
    pub fn new(id: SegmentId, offset: u32) -> SharedRef {
        SharedRef((id.raw() << 32) | offset as u64)
    }

    /// Rebuilds a reference from its 64-bit form (as read from shared memory). Any value
    /// is accepted; bad ones fail when resolved.
    pub fn from_raw(raw: u64) -> SharedRef {
        SharedRef(raw)
    }

    /// The 64-bit form, for storing in shared memory.
    pub fn raw(self) -> u64 {
        self.0
    }

    /// Whether this is the null reference.
    pub fn is_null(self) -> bool {
        self.0 == 0
    }

    /// The segment part (`None` for null or for a raw value with a zero segment id).
    pub fn segment(self) -> Option<SegmentId> {
        SegmentId::from_raw(self.0 >> 32)
    }

    /// The payload offset part.
    pub fn offset(self) -> u32 {
        self.0 as u32
    }

    /// The reference `bytes` further into the same segment, or `None` on overflow.
    pub fn checked_add(self, bytes: u32) -> Option<SharedRef> {
        let off = self.offset().checked_add(bytes)?;
        Some(SharedRef((self.0 & !0xffff_ffff) | off as u64))
    }
}

/// Why resolving a [`SharedRef`] failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResolveError {
    /// The reference is null.
    Null,
    /// The reference names a segment this process has not attached (or a zero id).
    UnknownSegment(u64),
    /// The object would extend past the end of the segment's payload.
    OutOfRange {
        /// Offset of the object.
        offset: u32,
        /// Size of the object.
        size: usize,
        /// Payload length of the segment.
        payload_len: usize,
    },
    /// The offset is not aligned for the requested type.
    Misaligned {
        /// Offset of the object.
        offset: u32,
        /// Required alignment.
        align: usize,
    },
}

impl fmt::Display for ResolveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResolveError::Null => write!(f, "the shared reference is null"),
            ResolveError::UnknownSegment(id) => write!(
                f,
                "segment {id:08x} is not attached in this process; receive and insert it first"
            ),
            ResolveError::OutOfRange {
                offset,
                size,
                payload_len,
            } => write!(
                f,
                "object of {size} bytes at offset {offset:#x} does not fit in the segment's {payload_len} bytes"
            ),
            ResolveError::Misaligned { offset, align } => {
                write!(f, "offset {offset:#x} is not aligned to {align} bytes")
            }
        }
    }
}

impl std::error::Error for ResolveError {}

/// Why inserting a segment into a [`TranslationTable`] failed.
#[derive(Debug)]
pub enum InsertError {
    /// A segment with the same id is already in the table; the new one is handed back.
    Duplicate(Segment),
}

impl fmt::Display for InsertError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InsertError::Duplicate(s) => {
                write!(f, "segment {} is already in the translation table", s.id())
            }
        }
    }
}

impl std::error::Error for InsertError {}

/// One table slot: `key` packs the segment id (high 32 bits) with the payload length
/// (low 32 bits), in the same layout as a [`SharedRef`], so that one XOR and one compare
/// check a reference against it. `key == 0` marks an empty slot.
#[derive(Clone, Copy)]
#[repr(C, align(16))]
struct Slot {
    key: u64,
    base: *mut u8,
}

const EMPTY: Slot = Slot {
    key: 0,
    base: std::ptr::null_mut(),
};

/// This process's table from segment id to where it mapped that segment. It owns the
/// segments it translates, so a resolved address stays valid until the segment is
/// removed (which needs `&mut self`).
pub struct TranslationTable {
    /// Open addressing with linear probing; the length is a power of two, at most a
    /// quarter full.
    slots: Box<[Slot]>,
    mask: usize,
    segments: Vec<Segment>,
}

// SAFETY: the raw base pointers point into mappings owned by `segments`; they are only
// read, and the table gives out raw pointers whose use is the caller's protocol.
unsafe impl Send for TranslationTable {}
// SAFETY: as above; `&self` methods only read the slots.
unsafe impl Sync for TranslationTable {}

impl fmt::Debug for TranslationTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.segments.iter().map(|s| (s.id(), s.payload_ptr())))
            .finish()
    }
}

impl Default for TranslationTable {
    fn default() -> Self {
        Self::new()
    }
}

impl TranslationTable {
    /// An empty table.
    pub fn new() -> TranslationTable {
        TranslationTable {
            slots: vec![EMPTY; 16].into_boxed_slice(),
            mask: 15,
            segments: Vec::new(),
        }
    }

    /// Number of segments in the table.
    pub fn len(&self) -> usize {
        self.segments.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }

    /// Takes `segment` into the table; references to it now resolve in this process.
    pub fn insert(&mut self, segment: Segment) -> Result<SegmentId, InsertError> {
        let id = segment.id();
        if self.segment(id).is_some() {
            return Err(InsertError::Duplicate(segment));
        }
        self.segments.push(segment);
        // At most a quarter full, so nearly every segment sits in its home slot and
        // resolves on the fast path.
        if self.segments.len() * 4 > self.slots.len() {
            self.rebuild(self.slots.len() * 2);
        } else {
            let s = self.segments.last().expect("just pushed");
            Self::place(&mut self.slots, self.mask, s);
        }
        Ok(id)
    }

    /// Removes a segment; references to it stop resolving. Returns it, if present.
    pub fn remove(&mut self, id: SegmentId) -> Option<Segment> {
        let pos = self.segments.iter().position(|s| s.id() == id)?;
        let seg = self.segments.swap_remove(pos);
        self.rebuild(self.slots.len());
        Some(seg)
    }

    /// The segment with this id, if present.
    pub fn segment(&self, id: SegmentId) -> Option<&Segment> {
        self.segments.iter().find(|s| s.id() == id)
    }

    fn place(slots: &mut [Slot], mask: usize, s: &Segment) {
        let mut i = Self::home(s.id().raw(), mask);
        while slots[i].key != 0 {
            i = (i + 1) & mask;
        }
        slots[i] = Slot {
            key: (s.id().raw() << 32) | s.payload_len() as u64,
            base: s.payload_ptr(),
        };
    }

    fn rebuild(&mut self, capacity: usize) {
        let mut slots = vec![EMPTY; capacity].into_boxed_slice();
        let mask = capacity - 1;
        for s in &self.segments {
            Self::place(&mut slots, mask, s);
        }
        self.slots = slots;
        self.mask = mask;
    }

    #[inline(always)]
    fn home(id: u64, mask: usize) -> usize {
        // Segment ids are random, so their low bits already spread evenly.
        id as usize & mask
    }

    /// Whether `r` names a `T` that lies wholly inside the segment of `slot`, aligned.
    #[inline(always)]
    fn fits<T>(slot: &Slot, r: u64) -> bool {
        // One combined test, so the fast path has a single branch: any nonzero bit
        // means another segment, past the end, or misaligned.
        let other_segment = (slot.key ^ r) >> 32;
        let end = (r as u32 as u64) + std::mem::size_of::<T>() as u64;
        let past_end = (end > slot.key as u32 as u64) as u64;
        let misaligned = r & (std::mem::align_of::<T>() as u64 - 1);
        other_segment | past_end | misaligned == 0
    }

    /// Translates `r` to this process's address of a `T`, checking that the whole `T`
    /// lies inside the segment and is aligned.
    ///
    /// The result is valid while the segment stays in the table. Reading or writing
    /// through it is subject to the usual shared-memory rules (atomics for data that
    /// other processes write concurrently; writes fault if the segment is read-only).
    #[inline(always)]
    pub fn resolve<T: Shareable>(&self, r: SharedRef) -> Result<*mut T, ResolveError> {
        let raw = r.raw();
        let i = Self::home(raw >> 32, self.mask);
        // SAFETY: `mask` is `slots.len() - 1` and `slots.len()` is a power of two, so
        // `i <= mask` is in bounds.
        let slot = unsafe { self.slots.get_unchecked(i) };
        // A zero-sized T always takes the slow path, which rejects null and zero ids;
        // for any other T an empty slot (key 0) can never fit it.
        if std::mem::size_of::<T>() != 0 && Self::fits::<T>(slot, raw) {
            // SAFETY: `fits` checked offset + size <= payload length of this segment,
            // whose mapping the table owns, so the result stays inside it.
            return Ok(unsafe { slot.base.add(raw as u32 as usize) }.cast());
        }
        self.resolve_slow(raw)
    }

    /// Probing past the home slot, and every error.
    #[cold]
    #[inline(never)]
    fn resolve_slow<T: Shareable>(&self, raw: u64) -> Result<*mut T, ResolveError> {
        let id = raw >> 32;
        let offset = raw as u32;
        if raw == 0 {
            return Err(ResolveError::Null);
        }
        if id == 0 {
            return Err(ResolveError::UnknownSegment(0));
        }
        let mut i = Self::home(id, self.mask);
        loop {
            let s = &self.slots[i];
            if s.key == 0 {
                return Err(ResolveError::UnknownSegment(id));
            }
            if s.key >> 32 == id {
                let size = std::mem::size_of::<T>();
                let payload_len = s.key as u32 as usize;
                if (offset as usize)
                    .checked_add(size)
                    .is_none_or(|end| end > payload_len)
                {
                    return Err(ResolveError::OutOfRange {
                        offset,
                        size,
                        payload_len,
                    });
                }
                if offset as usize % std::mem::align_of::<T>() != 0 {
                    return Err(ResolveError::Misaligned {
                        offset,
                        align: std::mem::align_of::<T>(),
                    });
                }
                // SAFETY: offset + size <= payload length of this segment, whose mapping
                // the table owns.
                return Ok(unsafe { s.base.add(offset as usize) }.cast());
            }
            i = (i + 1) & self.mask;
        }
    }

    /// The shared reference for an address in this process, if it lies in a segment of
    /// the table.
    pub fn reference_to<T>(&self, ptr: *const T) -> Option<SharedRef> {
        let addr = ptr as usize;
        self.segments.iter().find_map(|s| {
            let base = s.payload_ptr() as usize;
            (addr >= base && addr < base + s.payload_len())
                .then(|| SharedRef::new(s.id(), (addr - base) as u32))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_checks_everything() {
        let mut t = TranslationTable::new();
        let seg = Segment::create("sr", 64).unwrap();
        let id = seg.id();
        let base = seg.payload_ptr() as usize;
        t.insert(seg).unwrap();
        let r = SharedRef::new(id, 8);
        assert_eq!(t.resolve::<u64>(r).unwrap() as usize, base + 8);
        assert_eq!(t.reference_to((base + 8) as *const u64), Some(r));
        assert_eq!(t.resolve::<u64>(SharedRef::NULL), Err(ResolveError::Null));
        assert!(matches!(
            t.resolve::<u64>(SharedRef::new(id, 60)),
            Err(ResolveError::OutOfRange { .. })
        ));
        assert!(matches!(
            t.resolve::<u64>(SharedRef::new(id, 4)),
            Err(ResolveError::Misaligned { .. })
        ));
        let other = SegmentId::from_raw(id.raw() ^ 1).unwrap();
        assert_eq!(
            t.resolve::<u8>(SharedRef::new(other, 0)),
            Err(ResolveError::UnknownSegment(other.raw()))
        );
        assert_eq!(
            t.resolve::<u8>(SharedRef::from_raw(5)),
            Err(ResolveError::UnknownSegment(0))
        );
        let seg = t.remove(id).unwrap();
        assert!(matches!(
            t.resolve::<u8>(r),
            Err(ResolveError::UnknownSegment(_))
        ));
        t.insert(seg).unwrap();
        let dup = Segment::attach(t.segment(id).unwrap().try_clone_fd().unwrap()).unwrap();
        assert!(matches!(t.insert(dup), Err(InsertError::Duplicate(_))));
    }
}
