//! Changing a region's header or a channel's layout the way a process with write access to the
//! region could, for the tests and fuzz targets that check [`Region::attach`] and the
//! channels' `open`. Nothing here is needed to use channels; everything here only writes
//! inside the region it is given.

use crate::backing::{ChannelRef, kind};
use crate::buffered_channel::BUFFERED_LAYOUT;
use crate::layout::{CHECK_OFFSET, LayoutSpec};
use crate::loan_channel::LOAN_LAYOUT;
use crate::port::PORT_LAYOUT;
use crate::region::{Region, header_offsets};
use crate::sync_channel::SYNC_LAYOUT;
use memlink_capability::mapping::Protection;
use memlink_capability::segment::Segment;
use std::sync::atomic::{AtomicU64, Ordering};

/// The layout description of a channel kind tag, if it has sealed fields.
pub fn layout_spec(kind_tag: u64) -> Option<&'static LayoutSpec> {
    match kind_tag {
        kind::LOAN => Some(&LOAN_LAYOUT),
        kind::BUFFERED => Some(&BUFFERED_LAYOUT),
        kind::PORT => Some(&PORT_LAYOUT),
        kind::SYNC => Some(&SYNC_LAYOUT),
        _ => None,
    }
}

/// The tagged layout `r` names, as a pointer to its first byte, if it lies in `region`.
fn layout_ptr(region: &Region, r: ChannelRef) -> Option<(*mut u8, &'static LayoutSpec)> {
    let spec = layout_spec(r.kind)?;
    if r.offset % 8 != 0 {
        return None;
    }
    let p = region.at_offset(usize::try_from(r.offset).ok()?, spec.len)?;
    Some((p, spec))
}

/// The size in bytes of the tagged layout `r` names (tag, check, fields and run-time state).
pub fn layout_len(r: ChannelRef) -> Option<usize> {
    layout_spec(r.kind).map(|s| s.len)
}

/// XORs byte `index` of the tagged layout `r` names with `mask`; false if out of range.
pub fn flip_layout_byte(region: &Region, r: ChannelRef, index: usize, mask: u8) -> bool {
    let Some((p, spec)) = layout_ptr(region, r) else {
        return false;
    };
    if index >= spec.len {
        return false;
    }
    // SAFETY: `index < spec.len` and the layout's `spec.len` bytes lie in the mapped region;
    // a volatile byte access, as a peer process would make.
    unsafe {
        let b = p.add(index);
        b.write_volatile(b.read_volatile() ^ mask);
    }
    true
}

/// Writes `value` into the sealed field `name` ("slots", "cells", ..., or "check") of the
/// layout `r` names, without updating the check; false if there is no such field.
pub fn write_field(region: &Region, r: ChannelRef, name: &str, value: u64) -> bool {
    let Some((p, spec)) = layout_ptr(region, r) else {
        return false;
    };
    let (offset, width) = match (name, spec.field(name)) {
        ("check", _) => (CHECK_OFFSET, 8),
        (_, Some(f)) => (f.offset, f.width),
        _ => return false,
    };
    // SAFETY: the field lies inside the layout's bytes, in the mapped region, naturally
    // aligned; volatile, as a peer process's store.
    unsafe {
        if width == 4 {
            p.add(offset).cast::<u32>().write_volatile(value as u32);
        } else {
            p.add(offset).cast::<u64>().write_volatile(value);
        }
    }
    true
}

/// Reads the sealed field `name` (or "check") of the layout `r` names.
pub fn read_field(region: &Region, r: ChannelRef, name: &str) -> Option<u64> {
    let (p, spec) = layout_ptr(region, r)?;
    let (offset, width) = match (name, spec.field(name)) {
        ("check", _) => (CHECK_OFFSET, 8),
        (_, Some(f)) => (f.offset, f.width),
        _ => return None,
    };
    // SAFETY: as in `write_field`.
    Some(unsafe {
        if width == 4 {
            p.add(offset).cast::<u32>().read_volatile() as u64
        } else {
            p.add(offset).cast::<u64>().read_volatile()
        }
    })
}

/// Recomputes the check of the layout `r` names from its current fields, as a peer that knows
/// the format would after changing them; false if `r` names no sealed layout.
pub fn reseal(region: &Region, r: ChannelRef) -> bool {
    let Some((p, spec)) = layout_ptr(region, r) else {
        return false;
    };
    // SAFETY: the layout's `spec.len` bytes lie in the mapped region, aligned to 8.
    let snapshot = unsafe { spec.snapshot(p) };
    let values: Vec<u64> = (0..spec.fields.len()).map(|i| snapshot.get(i)).collect();
    write_field(region, r, "check", spec.seal(&values))
}

/// Write access to a region's header through a second mapping of its segment (anywhere in
/// this process), as another process holding the descriptor has it.
#[derive(Debug)]
pub struct HeaderWriter {
    segment: Segment,
}

impl HeaderWriter {
    /// Maps the segment behind `fd` (a region's descriptor) for header edits.
    pub fn new(fd: std::os::fd::OwnedFd) -> Option<HeaderWriter> {
        let segment = Segment::attach(fd).ok()?;
        (segment.protection() == Protection::ReadWrite && segment.payload_capacity() >= 128)
            .then_some(HeaderWriter { segment })
    }

    fn word(&self, offset: usize) -> &AtomicU64 {
        debug_assert!(offset % 8 == 0 && offset + 8 <= header_offsets::END);
        // SAFETY: the payload is mapped read-write for at least 128 bytes (checked in `new`),
        // page-aligned; `offset` is a multiple of 8 inside the header.
        unsafe { &*self.segment.payload_ptr().add(offset).cast::<AtomicU64>() }
    }

    /// The header's first 128 bytes.
    pub fn bytes(&self) -> [u8; 128] {
        let mut out = [0u8; 128];
        for (i, b) in out.iter_mut().enumerate() {
            // SAFETY: inside the 128 mapped header bytes (see `word`).
            *b = unsafe { self.segment.payload_ptr().add(i).read_volatile() };
        }
        out
    }

    /// Overwrites the header's first `bytes.len()` (at most 128) bytes.
    pub fn set_bytes(&self, bytes: &[u8]) {
        for (i, &b) in bytes.iter().take(128).enumerate() {
            // SAFETY: inside the 128 mapped header bytes (see `word`).
            unsafe { self.segment.payload_ptr().add(i).write_volatile(b) };
        }
    }

    /// The 64-bit word at `offset` (one of [`header_offsets`]).
    pub fn read(&self, offset: usize) -> u64 {
        self.word(offset).load(Ordering::Acquire)
    }

    /// Stores `value` at `offset` (one of [`header_offsets`]).
    pub fn write(&self, offset: usize, value: u64) {
        self.word(offset).store(value, Ordering::Release);
    }

    /// Recomputes the header's check from its magic, base and length.
    pub fn reseal(&self) {
        let check = crate::checksum::crc32_words(&[
            self.read(header_offsets::MAGIC),
            self.read(header_offsets::BASE),
            self.read(header_offsets::LEN),
        ]);
        self.write(header_offsets::CHECK, check as u64);
    }

    /// Stores `cursor` with a matching CRC-16, as the allocator would.
    pub fn write_cursor(&self, cursor: u64) {
        let cursor = cursor & ((1 << 48) - 1);
        self.write(
            header_offsets::CURSOR,
            cursor | (crate::checksum::crc16_48(cursor) as u64) << 48,
        );
    }
}
