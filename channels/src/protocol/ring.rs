//! The classic bounded buffer of k slots between one sender and one receiver: the message is
//! copied into a slot on send and out of it on receive (two copies). It is the baseline the
//! zero-copy channels are measured against.
//!
//! # A process killed at any step
//!
//! Cells have no owner: a cell is in use exactly while it lies in the window `[head, tail)`,
//! and each side moves its end of the window with one store. So nothing is ever reclaimed:
//! a sender killed before its store to `tail` leaves its value unsent (the cell it wrote is
//! outside the window and is written again by the next sender); killed after it, the value is
//! queued and delivered once. A receiver killed before its store to `head` has returned
//! nothing, and the next receiver reads the same value again (its one delivery); killed after
//! it, the value was delivered to the process that died. A new sender or receiver takes over
//! the endpoint once the old one is seen dead ([`EndpointRecord::connect`]), which orders the
//! dead process's last stores before the new one's loads.

use crate::protocol::endpoint::EndpointRecord;
use crate::protocol::view::{CellsHeader, View};
use crate::sync::{AtomicU64, Ordering, UnsafeCell, stop_point};
use crate::wait::{Deadline, WaitFailure, WaitMode, wait_for, wait_to_send};
use crossbeam_utils::CachePadded;
use std::mem::MaybeUninit;

/// The fixed part of a buffered channel in shared memory.
#[repr(C)]
#[derive(Debug)]
pub struct RingHeader {
    tail: CachePadded<AtomicU64>,
    head: CachePadded<AtomicU64>,
    /// The sender's endpoint record.
    pub sender: CachePadded<EndpointRecord>,
    /// The receiver's endpoint record.
    pub receiver: CachePadded<EndpointRecord>,
    capacity: u64,
    mode: u32,
}

impl RingHeader {
    /// A header for `capacity` slots.
    pub fn new(capacity: usize, mode: WaitMode) -> Self {
        Self {
            tail: CachePadded::new(AtomicU64::new(0)),
            head: CachePadded::new(AtomicU64::new(0)),
            sender: CachePadded::new(EndpointRecord::new()),
            receiver: CachePadded::new(EndpointRecord::new()),
            capacity: capacity.max(1) as u64,
            mode: mode.to_word(),
        }
    }
}

/// Byte offsets in [`RingHeader`] of its shape fields (capacity: u64, mode: u32), for
/// `open`, which reads them once by offset and checks them, and for tools that corrupt them on
/// purpose (tests, fuzzing).
pub const SHAPE_OFFSETS: (usize, usize) = (
    std::mem::offset_of!(RingHeader, capacity),
    std::mem::offset_of!(RingHeader, mode),
);

/// One slot of the buffer.
pub type RingCell<T> = UnsafeCell<MaybeUninit<T>>;

/// A view of one buffered channel.
pub type Ring<'a, T> = View<'a, RingHeader, RingCell<T>>;

impl CellsHeader for RingHeader {
    fn cell_count(&self) -> u64 {
        self.capacity
    }
    fn mode_word(&self) -> u32 {
        self.mode
    }
}

impl<'a, T: Copy> View<'a, RingHeader, RingCell<T>> {
    /// Copies `value` into a free slot, or hands it back if the buffer is full.
    pub fn try_send(&self, value: T) -> Result<(), T> {
        let h = self.header();
        stop_point();
        let tail = h.tail.load(Ordering::Relaxed);
        stop_point();
        if tail.wrapping_sub(h.head.load(Ordering::Acquire)) >= self.cell_count() {
            stop_point();
            return Err(value);
        }
        stop_point();
        // SAFETY: slot `tail` is free (the receiver moved head past it, Acquire above) and only
        // the single sender writes slots.
        self.cell(tail).with_mut(|p| unsafe { (*p).write(value) });
        stop_point();
        h.tail.store(tail.wrapping_add(1), Ordering::Release);
        stop_point();
        h.receiver.pcb.notify_for(self.mode());
        stop_point();
        Ok(())
    }

    /// Copies `value` into the buffer, waiting for room per the mode.
    pub fn send(
        &self,
        value: T,
        deadline: Deadline,
        gone: impl FnMut(bool) -> bool,
    ) -> Result<(), (T, WaitFailure)> {
        let me = &self.header().sender;
        wait_to_send(
            &me.pcb,
            self.mode(),
            deadline,
            value,
            |v| self.try_send(v),
            gone,
        )
    }

    /// Copies the oldest value out of the buffer, if any.
    pub fn try_recv(&self) -> Option<T> {
        let h = self.header();
        stop_point();
        let head = h.head.load(Ordering::Relaxed);
        stop_point();
        if h.tail.load(Ordering::Acquire) == head {
            stop_point();
            return None;
        }
        stop_point();
        // SAFETY: slot `head` was written and published by the sender (Acquire on tail above);
        // only the single receiver reads slots.
        let value = self.cell(head).with(|p| unsafe { (*p).assume_init_read() });
        stop_point();
        h.head.store(head.wrapping_add(1), Ordering::Release);
        stop_point();
        h.sender.pcb.notify_for(self.mode());
        stop_point();
        Some(value)
    }

    /// Copies the oldest value out, waiting per the mode.
    pub fn recv(
        &self,
        deadline: Deadline,
        gone: impl FnMut(bool) -> bool,
    ) -> Result<T, WaitFailure> {
        let me = &self.header().receiver;
        wait_for(&me.pcb, self.mode(), deadline, || self.try_recv(), gone)
    }
}

/// A buffered channel on the heap, for threads and loom models.
#[derive(Debug)]
pub struct RingStorage<T> {
    header: Box<RingHeader>,
    cells: Box<[RingCell<T>]>,
}

impl<T: Copy> RingStorage<T> {
    /// `capacity` slots, waiting per `mode`.
    pub fn new(capacity: usize, mode: WaitMode) -> Self {
        let header = Box::new(RingHeader::new(capacity, mode));
        let cells = (0..header.capacity)
            .map(|_| UnsafeCell::new(MaybeUninit::uninit()))
            .collect();
        Self { header, cells }
    }

    /// The protocol view.
    pub fn ring(&self) -> Ring<'_, T> {
        // SAFETY: header initialised and `capacity` cells allocated, borrowed from `self`.
        unsafe { Ring::from_raw(&*self.header, self.cells.as_ptr()) }
    }
}
