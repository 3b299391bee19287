//! A small shared segment holding the words the raw floors ping-pong on.

use memlink_capability::Segment;

use super::error::RunError;

/// A segment, created before the fork, so both processes map the same page.
pub(crate) struct SharedWords {
    segment: Segment,
}

impl SharedWords {
    /// A zero-filled shared area of at least `len` bytes, for `transport`.
    pub(crate) fn create(transport: &'static str, len: usize) -> Result<SharedWords, RunError> {
        let segment = Segment::create(transport, len).map_err(|e| RunError::setup(transport, e))?;
        Ok(SharedWords { segment })
    }

    /// A reference to the `T` at the start of the area.
    ///
    /// # Safety
    ///
    /// `T` must fit in the area, need at most page alignment, and be valid when
    /// zero-filled and under concurrent access from other processes (atomics only).
    pub(crate) unsafe fn get<T>(&self) -> &T {
        debug_assert!(size_of::<T>() <= self.segment.payload_len());
        // SAFETY: the payload is page-aligned and at least size_of::<T>() long (caller),
        // and T is made of atomics valid for any shared bytes (caller); the mapping lives
        // as long as `self.segment`, which outlives the returned borrow.
        unsafe { &*(self.segment.payload_ptr() as *const T) }
    }
}
