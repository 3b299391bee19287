//! Checking a channel's layout as `open` reads it from shared memory.
//!
//! A channel's layout (its sizes, its waiting mode and the offsets of its arrays) lives in the
//! region, where any process with write access could have changed it. `open` therefore reads
//! each field exactly once into a private copy, checks the copy (non-zero counts,
//! overflow-checked sizes, alignment, every array inside the region and apart from the others
//! and from the layout itself), and from then on uses only the copy: a peer that changes the
//! shared fields later changes nothing this process computes addresses from.

use crate::region::Region;
use crate::wait::WaitMode;
use std::fmt;
use std::ops::Range;

/// A field of a channel layout that failed its check in `open`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayoutError {
    /// The channel kind ("loan channel", "buffered channel", "port").
    pub channel: &'static str,
    /// The field that failed.
    pub field: &'static str,
    /// The value found there.
    pub found: u64,
    /// What the field must satisfy.
    pub rule: &'static str,
}

impl fmt::Display for LayoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the {} layout in the region is corrupt: `{}` = {:#x}, but it {}; a process with \
             write access to the region changed it, so the channel was not opened",
            self.channel, self.field, self.found, self.rule
        )
    }
}

impl std::error::Error for LayoutError {}

/// One field of a layout that `open` reads: its name, and where it is in the tagged layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    /// The field's name, as errors name it.
    pub name: &'static str,
    /// Byte offset from the start of the tagged layout (the kind tag).
    pub offset: usize,
    /// Width in bytes: 4 or 8.
    pub width: usize,
}

/// The fields of one channel kind's layout that `open` reads and that must never change after
/// `create`: they are covered by the layout's CRC-32 (`check`, after the kind tag).
#[derive(Debug)]
pub struct LayoutSpec {
    /// The channel kind, as errors name it.
    pub channel: &'static str,
    /// The kind tag.
    pub kind: u64,
    /// The sealed fields, in the order the check covers them.
    pub fields: &'static [Field],
    /// Size in bytes of the whole tagged layout (tag, check, fields and run-time state).
    pub len: usize,
}

/// Where the kind tag and the check are in every tagged layout.
pub(crate) const KIND_OFFSET: usize = 0;
/// See [`KIND_OFFSET`].
pub(crate) const CHECK_OFFSET: usize = 8;

/// A private copy of a layout's sealed fields, read once from shared memory.
#[derive(Debug, Clone)]
pub struct Snapshot {
    values: Vec<u64>,
    check: u64,
}

impl LayoutSpec {
    /// Reads every sealed field and the check once, with volatile loads (a peer may be
    /// writing them), into a private copy.
    ///
    /// # Safety
    /// `tagged` must point at `self.len` mapped, readable bytes, aligned to 8.
    pub(crate) unsafe fn snapshot(&self, tagged: *const u8) -> Snapshot {
        let read = |offset: usize, width: usize| -> u64 {
            // SAFETY: `offset + width <= len` for every field of a spec (checked by the
            // tests of each spec) and the caller guarantees `len` readable bytes; fields are
            // naturally aligned in their `repr(C)` structs.
            unsafe {
                let p = tagged.add(offset);
                if width == 4 {
                    std::ptr::read_volatile(p.cast::<u32>()) as u64
                } else {
                    std::ptr::read_volatile(p.cast::<u64>())
                }
            }
        };
        Snapshot {
            values: self
                .fields
                .iter()
                .map(|f| read(f.offset, f.width))
                .collect(),
            check: read(CHECK_OFFSET, 8),
        }
    }

    /// The check over the kind and `values` (one per sealed field).
    pub(crate) fn seal(&self, values: &[u64]) -> u64 {
        let mut words = Vec::with_capacity(values.len() + 1);
        words.push(self.kind);
        words.extend_from_slice(values);
        crate::checksum::crc32_words(&words) as u64
    }

    /// The field named `name`.
    pub fn field(&self, name: &str) -> Option<Field> {
        self.fields.iter().copied().find(|f| f.name == name)
    }
}

impl Snapshot {
    /// The value of sealed field number `index` (in the spec's order).
    pub(crate) fn get(&self, index: usize) -> u64 {
        self.values[index]
    }
}

/// Checks one layout's fields, naming the channel kind in every error.
pub(crate) struct LayoutCheck<'r> {
    region: &'r Region,
    channel: &'static str,
    /// Byte ranges (offsets in the region) already claimed by the layout and its arrays.
    taken: Vec<Range<u64>>,
}

impl<'r> LayoutCheck<'r> {
    /// Starts checking the layout of a channel of `spec` that occupies `layout` (offsets).
    pub(crate) fn new(region: &'r Region, spec: &LayoutSpec, layout: Range<u64>) -> Self {
        Self {
            region,
            channel: spec.channel,
            taken: vec![layout],
        }
    }

    /// The snapshot's check must match its fields: a field that passed its own bounds still
    /// differs from what `create` wrote if it does not.
    pub(crate) fn sealed(&self, spec: &LayoutSpec, snapshot: &Snapshot) -> Result<(), LayoutError> {
        if spec.seal(&snapshot.values) == snapshot.check {
            Ok(())
        } else {
            Err(self.error(
                "check",
                snapshot.check,
                "must be the CRC-32 of the kind and the sealed fields (one of them was changed)",
            ))
        }
    }

    /// The error for `field` holding `found`, which breaks `rule`.
    pub(crate) fn error(&self, field: &'static str, found: u64, rule: &'static str) -> LayoutError {
        LayoutError {
            channel: self.channel,
            field,
            found,
            rule,
        }
    }

    /// `count` must lie in `min..=max`.
    pub(crate) fn count(
        &self,
        field: &'static str,
        count: u64,
        min: u64,
        max: u64,
        rule: &'static str,
    ) -> Result<u64, LayoutError> {
        if (min..=max).contains(&count) {
            Ok(count)
        } else {
            Err(self.error(field, count, rule))
        }
    }

    /// A waiting-mode word must be one that `WaitMode::to_word` produces.
    pub(crate) fn mode(&self, field: &'static str, word: u32) -> Result<WaitMode, LayoutError> {
        let mode = WaitMode::from_word(word);
        if mode.to_word() == word {
            Ok(mode)
        } else {
            Err(self.error(
                field,
                word as u64,
                "must be a waiting mode (spin, block or adaptive)",
            ))
        }
    }

    /// An array of `count` elements of `elem` bytes aligned to `align` at region offset
    /// `offset`: checked for overflow, alignment, bounds and overlap with what was checked
    /// before. Returns its address in this process.
    pub(crate) fn array(
        &mut self,
        field: &'static str,
        offset: u64,
        count: u64,
        elem: usize,
        align: usize,
    ) -> Result<*mut u8, LayoutError> {
        let bytes = count
            .checked_mul(elem as u64)
            .ok_or_else(|| self.error(field, offset, "covers more bytes than 2^64"))?;
        if offset % align as u64 != 0 {
            return Err(self.error(field, offset, "must be aligned for its elements"));
        }
        let end = offset
            .checked_add(bytes)
            .ok_or_else(|| self.error(field, offset, "must not wrap past 2^64"))?;
        let (Ok(start), Ok(len)) = (usize::try_from(offset), usize::try_from(bytes)) else {
            return Err(self.error(field, offset, "must lie inside the region"));
        };
        let ptr = self
            .region
            .at_offset(start, len)
            .ok_or_else(|| self.error(field, offset, "must lie inside the region"))?;
        if bytes > 0 && self.taken.iter().any(|r| offset < r.end && r.start < end) {
            return Err(self.error(
                field,
                offset,
                "must not overlap the layout or its other arrays",
            ));
        }
        self.taken.push(offset..end);
        Ok(ptr)
    }
}
