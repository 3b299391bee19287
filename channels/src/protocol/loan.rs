//! The loan protocol: a bounded pool of slots, a ring of sent slot indices, and slot states.
//!
//! State and owner pid share one 64-bit word per slot, so a slot whose owner died is taken back
//! with one compare-and-swap that fails if anyone changed the slot meanwhile. The ring holds
//! the indices of sent slots between `head` (the receiver's) and `tail` (the sender's): the
//! *window* `[head, tail)`. It never overflows: it holds only queued slots, at most as many as
//! the pool has.
//!
//! # States, owners, and what [`LoanPool::reclaim`] does when the owner died
//!
//! | word            | who owns the slot                                   | owner dead: reclaim |
//! |-----------------|-----------------------------------------------------|---------------------|
//! | `FREE`, 0       | the pool                                            | (nothing to do)     |
//! | `LOANED`, s     | sender `s` while the slot is outside the window: it | outside the window: |
//! |                 | builds the message; the queue once `s` published it | frees it; inside:   |
//! |                 | (ring entry, then `tail`), until a receiver takes it| leaves it queued    |
//! | `HELD`, r       | receiver `r`, which marked it before moving `head`  | outside the window: |
//! |                 | past it and reads it in place until it drops it; the| frees it; inside:   |
//! |                 | queue while its entry is still at `head`            | leaves it queued    |
//!
//! The state never changes at send: publishing is the sender's single store to `tail`, so
//! there is no moment at which a slot is neither the sender's nor in the window (a sender
//! killed before that store leaves a `LOANED` slot outside the window, which reclaim frees;
//! killed after it, the message is queued and delivered). Likewise the receiver marks a slot
//! `HELD` before its single store to `head` hands the message over: killed before that store,
//! the slot is still in the window and the next receiver takes it again (the dead one never
//! returned it), after it the message was delivered and reclaim frees the slot. So a slot is
//! always either free, owned by a live process, or in the window, and each message is handed
//! out by exactly one store to `head`.
//!
//! Why reclaim's window test is exact: only the owner of a slot puts it in the window (sender)
//! or moves `head` past it (receiver). Once the owner is dead (its death is observed first,
//! which orders all its stores before reclaim's loads), the slot's position relative to the
//! window can only change by a live receiver taking it, and that receiver marks it `HELD`
//! before moving `head`: reclaim's compare-and-swap then fails. A process killed inside
//! reclaim leaves every slot either unchanged or freed by its one compare-and-swap.
//!
//! Everything here is shared with the peer and untrusted: a ring entry naming no slot is
//! skipped, and reclaim looks at no more than `slots` ring entries.

use crate::protocol::endpoint::EndpointRecord;
use crate::sync::{AtomicU32, AtomicU64, Ordering, stop_point};
use crate::wait::{Deadline, WaitFailure, WaitMode, wait_for};
use crossbeam_utils::CachePadded;
use std::marker::PhantomData;

/// Slot state: in the pool.
pub const FREE: u32 = 0;
/// Slot state: loaned to the sender (and, once its index is in the ring window, queued).
pub const LOANED: u32 = 1;
/// Slot state: taken by the receiver, read in place.
pub const HELD: u32 = 3;

fn word(owner: u32, state: u32) -> u64 {
    ((owner as u64) << 32) | state as u64
}

/// The fixed part of a loan channel in shared memory.
#[repr(C)]
#[derive(Debug)]
pub struct LoanHeader {
    tail: CachePadded<AtomicU64>,
    head: CachePadded<AtomicU64>,
    /// The sender's endpoint record.
    pub sender: CachePadded<EndpointRecord>,
    /// The receiver's endpoint record.
    pub receiver: CachePadded<EndpointRecord>,
    slots: u32,
    mode: u32,
    slot_size: u64,
}

impl LoanHeader {
    /// Number of slots.
    pub fn slots(&self) -> u32 {
        self.slots
    }

    /// Size of each slot in bytes.
    pub fn slot_size(&self) -> usize {
        self.slot_size as usize
    }

    /// A header for `slots` slots of `slot_size` bytes.
    pub fn new(slots: u32, slot_size: usize, mode: WaitMode) -> Self {
        Self {
            tail: CachePadded::new(AtomicU64::new(0)),
            head: CachePadded::new(AtomicU64::new(0)),
            sender: CachePadded::new(EndpointRecord::new()),
            receiver: CachePadded::new(EndpointRecord::new()),
            slots,
            mode: mode.to_word(),
            slot_size: slot_size as u64,
        }
    }
}

/// Byte offsets in [`LoanHeader`] of its shape fields (slots: u32, mode: u32, slot size:
/// u64), for `open`, which reads them once by offset and checks them, and for tools that
/// corrupt them on purpose (tests, fuzzing).
pub const SHAPE_OFFSETS: (usize, usize, usize) = (
    std::mem::offset_of!(LoanHeader, slots),
    std::mem::offset_of!(LoanHeader, mode),
    std::mem::offset_of!(LoanHeader, slot_size),
);

/// Per-slot bookkeeping: state and owner in one word, and the message length.
#[repr(C)]
#[derive(Debug)]
pub struct SlotMeta {
    state: AtomicU64,
    len: AtomicU64,
}

impl Default for SlotMeta {
    fn default() -> Self {
        Self {
            state: AtomicU64::new(word(0, FREE)),
            len: AtomicU64::new(0),
        }
    }
}

/// A view of one loan channel: header, ring, slot metadata and slot memory.
#[derive(Debug, Clone, Copy)]
pub struct LoanPool<'a> {
    header: *const LoanHeader,
    ring: *const AtomicU32,
    meta: *const SlotMeta,
    data: *mut u8,
    /// Private copies of the header's shape: read once when the view is built, never again
    /// (in shared memory a peer could change the originals).
    slots: u32,
    slot_size: usize,
    mode: WaitMode,
    _life: PhantomData<&'a LoanHeader>,
}

// SAFETY: the view only points at shared-memory structures made of atomics and at slot memory
// whose exclusive use is handed around by the protocol.
unsafe impl Send for LoanPool<'_> {}
// SAFETY: as above.
unsafe impl Sync for LoanPool<'_> {}

impl<'a> LoanPool<'a> {
    /// Builds a view.
    ///
    /// # Safety
    /// `header` must be initialised; `ring` and `meta` must point at `header.slots` initialised
    /// elements; `data` at `slots * slot_size` bytes; all valid and used by no other protocol
    /// for `'a`.
    pub unsafe fn from_raw(
        header: *const LoanHeader,
        ring: *const AtomicU32,
        meta: *const SlotMeta,
        data: *mut u8,
    ) -> Self {
        // SAFETY: `header` is initialised (this function's contract).
        let h = unsafe { &*header };
        let (slots, slot_size, mode) = (h.slots, h.slot_size as usize, h.mode);
        // SAFETY: forwarded from this function's contract, with the header's own shape.
        unsafe { Self::with_shape(header, ring, meta, data, slots, slot_size, mode) }
    }

    /// Builds a view with a shape the caller read and checked once (`open` over shared
    /// memory); the view never reads the header's shape fields.
    ///
    /// # Safety
    /// As for [`LoanPool::from_raw`], with `slots` (at least 1) and `slot_size` in place of
    /// the header's: `ring` and `meta` hold `slots` elements, `data` `slots * slot_size` bytes.
    pub unsafe fn with_shape(
        header: *const LoanHeader,
        ring: *const AtomicU32,
        meta: *const SlotMeta,
        data: *mut u8,
        slots: u32,
        slot_size: usize,
        mode: u32,
    ) -> Self {
        LoanPool {
            header,
            ring,
            meta,
            data,
            slots: slots.max(1),
            slot_size,
            mode: WaitMode::from_word(mode),
            _life: PhantomData,
        }
    }

    /// The header.
    pub fn header(&self) -> &'a LoanHeader {
        // SAFETY: valid for 'a per `from_raw`.
        unsafe { &*self.header }
    }

    fn meta(&self, slot: u32) -> &'a SlotMeta {
        debug_assert!(slot < self.slots);
        // SAFETY: reduced modulo `slots` (every caller passes a slot below it already);
        // `meta` holds `slots` elements valid for 'a.
        unsafe { &*self.meta.add((slot % self.slots) as usize) }
    }

    fn ring(&self, index: u64) -> &'a AtomicU32 {
        // SAFETY: the index is reduced modulo `slots`; `ring` holds `slots` elements.
        unsafe { &*self.ring.add((index % self.slots as u64) as usize) }
    }

    /// Number of slots in the pool.
    pub fn slots(&self) -> u32 {
        self.slots
    }

    /// Size of each slot in bytes.
    pub fn slot_size(&self) -> usize {
        self.slot_size
    }

    /// The waiting policy.
    pub fn mode(&self) -> WaitMode {
        self.mode
    }

    /// Address of a slot's memory, the same in every process sharing it.
    pub fn slot_ptr(&self, slot: u32) -> *mut u8 {
        // SAFETY: reduced modulo `slots` (callers pass a slot below it), so the offset stays
        // inside the `slots * slot_size` bytes, whose product does not overflow.
        unsafe { self.data.add((slot % self.slots) as usize * self.slot_size) }
    }

    /// State and owner of a slot (for tests and diagnostics).
    pub fn slot_state(&self, slot: u32) -> (u32, u32) {
        let w = self.meta(slot).state.load(Ordering::Acquire);
        ((w & 0xffff_ffff) as u32, (w >> 32) as u32)
    }

    /// Takes a free slot for `owner` without waiting.
    pub fn try_loan(&self, owner: u32) -> Option<u32> {
        let slot = (0..self.slots()).find(|&slot| {
            stop_point();
            self.meta(slot)
                .state
                .compare_exchange(
                    word(0, FREE),
                    word(owner, LOANED),
                    Ordering::Acquire,
                    Ordering::Relaxed,
                )
                .is_ok()
        });
        stop_point();
        slot
    }

    /// Takes a free slot, waiting for one per the pool's mode (back-pressure).
    pub fn loan(
        &self,
        owner: u32,
        deadline: Deadline,
        gone: impl FnMut(bool) -> bool,
    ) -> Result<u32, WaitFailure> {
        let me = &self.header().sender;
        wait_for(
            &me.pcb,
            self.mode(),
            deadline,
            || self.try_loan(owner),
            gone,
        )
    }

    /// Sends loaned `slot` holding `len` bytes: passes only its index. The slot stays
    /// `LOANED`; the store to `tail` alone publishes it (see the module doc).
    pub fn send(&self, slot: u32, len: usize) {
        let meta = self.meta(slot);
        let header = self.header();
        stop_point();
        meta.len.store(len as u64, Ordering::Relaxed);
        stop_point();
        let tail = header.tail.load(Ordering::Relaxed);
        stop_point();
        self.ring(tail).store(slot, Ordering::Relaxed);
        stop_point();
        header.tail.store(tail.wrapping_add(1), Ordering::Release);
        stop_point();
        header.receiver.pcb.notify_for(self.mode());
        stop_point();
    }

    /// Takes the oldest sent slot for `owner` without waiting; returns it and its length.
    /// The slot is marked `HELD` before `head` moves past it: the store to `head` is the
    /// moment of delivery (see the module doc).
    pub fn try_recv(&self, owner: u32) -> Option<(u32, usize)> {
        let header = self.header();
        stop_point();
        let head = header.head.load(Ordering::Relaxed);
        stop_point();
        if header.tail.load(Ordering::Acquire) == head {
            stop_point();
            return None;
        }
        stop_point();
        let slot = self.ring(head).load(Ordering::Relaxed);
        if slot >= self.slots {
            // Not a slot of this pool: a peer wrote garbage into the ring. Skip the entry.
            stop_point();
            header.head.store(head.wrapping_add(1), Ordering::Release);
            stop_point();
            return None;
        }
        let meta = self.meta(slot);
        stop_point();
        meta.state.store(word(owner, HELD), Ordering::Relaxed);
        stop_point();
        let len = (meta.len.load(Ordering::Relaxed) as usize).min(self.slot_size);
        stop_point();
        header.head.store(head.wrapping_add(1), Ordering::Release);
        stop_point();
        Some((slot, len))
    }

    /// Takes the oldest sent slot, waiting per the pool's mode.
    pub fn recv(
        &self,
        owner: u32,
        deadline: Deadline,
        gone: impl FnMut(bool) -> bool,
    ) -> Result<(u32, usize), WaitFailure> {
        let me = &self.header().receiver;
        wait_for(
            &me.pcb,
            self.mode(),
            deadline,
            || self.try_recv(owner),
            gone,
        )
    }

    /// Returns a loaned or held slot to the pool and wakes a sender waiting for one.
    pub fn release(&self, slot: u32) {
        stop_point();
        self.meta(slot)
            .state
            .store(word(0, FREE), Ordering::Release);
        stop_point();
        self.header().sender.pcb.notify_for(self.mode());
        stop_point();
    }

    /// Whether `slot` is in the ring window `[head, tail)`: sent and not yet handed out.
    fn is_queued(&self, slot: u32) -> bool {
        let header = self.header();
        stop_point();
        let tail = header.tail.load(Ordering::Acquire);
        stop_point();
        let head = header.head.load(Ordering::Acquire);
        // Untrusted: a window longer than the pool is corrupt; look at `slots` entries at most.
        let queued = tail.wrapping_sub(head).min(self.slots() as u64);
        (0..queued).any(|i| {
            stop_point();
            self.ring(head.wrapping_add(i)).load(Ordering::Relaxed) == slot
        })
    }

    /// Takes back every slot whose owner `is_dead` says died and that is not queued (see the
    /// module doc: a dead sender's unpublished loan, a dead receiver's delivered sample).
    /// Returns how many slots went back to the pool. Any process may call it, any number
    /// of times, concurrently with the live sender and receiver.
    pub fn reclaim(&self, is_dead: impl Fn(u32) -> bool) -> usize {
        let mut freed = 0;
        for slot in 0..self.slots() {
            let meta = self.meta(slot);
            stop_point();
            let w = meta.state.load(Ordering::Acquire);
            let (state, owner) = ((w & 0xffff_ffff) as u32, (w >> 32) as u32);
            // The death is observed before the window is read, so the dead owner's stores
            // to the ring, `tail` and `head` are all visible.
            if (state == LOANED || state == HELD)
                && owner != 0
                && is_dead(owner)
                && !self.is_queued(slot)
                && {
                    stop_point();
                    meta.state
                        .compare_exchange(w, word(0, FREE), Ordering::AcqRel, Ordering::Relaxed)
                        .is_ok()
                }
            {
                freed += 1;
            }
        }
        stop_point();
        if freed > 0 {
            self.header().sender.pcb.notify();
        }
        stop_point();
        freed
    }
}

/// A loan channel on the heap, for threads of one process and for loom models.
#[derive(Debug)]
pub struct LoanStorage {
    header: Box<LoanHeader>,
    ring: Box<[AtomicU32]>,
    meta: Box<[SlotMeta]>,
    data: Box<[std::cell::UnsafeCell<u8>]>,
}

impl LoanStorage {
    /// `slots` slots of `slot_size` bytes, waiting per `mode`.
    pub fn new(slots: u32, slot_size: usize, mode: WaitMode) -> Self {
        let slots = slots.max(1);
        Self {
            header: Box::new(LoanHeader::new(slots, slot_size, mode)),
            ring: (0..slots).map(|_| AtomicU32::new(0)).collect(),
            meta: (0..slots).map(|_| SlotMeta::default()).collect(),
            data: (0..slots as usize * slot_size)
                .map(|_| std::cell::UnsafeCell::new(0))
                .collect(),
        }
    }

    /// The protocol view of this storage.
    pub fn pool(&self) -> LoanPool<'_> {
        let data = if self.data.is_empty() {
            std::ptr::NonNull::<u8>::dangling().as_ptr()
        } else {
            self.data[0].get()
        };
        // SAFETY: every part was initialised by `new` with `slots` elements and
        // `slots * slot_size` data bytes, and lives as long as the borrow of `self`.
        unsafe { LoanPool::from_raw(&*self.header, self.ring.as_ptr(), self.meta.as_ptr(), data) }
    }
}
