//! The port queue: many senders (in many processes), one receiver, bounded. It is Vyukov's
//! bounded queue: each cell carries a sequence number that says whose turn it is, so senders
//! claim positions with one compare-and-swap on the tail and never write the same cell.
//!
//! The receive right is a word (generation, holder pid): releasing it bumps the generation and
//! leaves no holder; another process claims it with the generation it was told in a message.
//!
//! A sender killed between claiming a cell and publishing it would stall the receiver at that
//! cell for good. So each registered sender announces the position it is about to claim in its
//! entry of `claims` before its compare-and-swap on the tail, and clears it once the cell is
//! published. A receiver stuck at an unpublished, claimed cell whose only announcers are dead
//! frees the cell without a value ([`View::skip_dead_claim`]) and goes on: the dead sender's
//! message is lost (it was never complete), nobody else's is. A live announcer keeps the
//! receiver waiting: it may be the owner, preempted before it publishes.
//!
//! # A process killed at any step
//!
//! | where the sender dies               | what is left                  | what happens               |
//! |-------------------------------------|-------------------------------|----------------------------|
//! | before announcing, or announced but | maybe a stale announcement    | nothing claimed; the entry |
//! | before its compare-and-swap wins    | of a position it never owned  | is reused once `head` has  |
//! |                                     |                               | passed that position       |
//! | after claiming, before publishing   | a claimed cell, announced     | the receiver frees it      |
//! |                                     |                               | (`skip_dead_claim`): that  |
//! |                                     |                               | message is lost, no other  |
//! | after publishing                    | a published cell (and maybe   | delivered once; the stale  |
//! |                                     | its announcement)             | announcement is ignored    |
//!
//! The receiver's step that hands a message out is its store to `head`, after it read the
//! value and gave the cell back (turn `pos + capacity`). The receive right belongs to one
//! process; if it dies, the port has no receiver any more (as in Mach, its senders get
//! `Disconnected`), so what is queued is lost with it, and no cell can be lost or doubled
//! for anyone else. A process killed in [`View::connect_sender`] leaves at most an entry
//! holding its pid, reused like any dead sender's.

use crate::pcb::Pcb;
use crate::protocol::endpoint::EndpointRecord;
use crate::protocol::view::{CellsHeader, View};
use crate::sync::{AtomicU32, AtomicU64, Ordering, UnsafeCell, stop_point};
use crate::wait::{Deadline, WaitFailure, WaitMode, wait_for, wait_to_send};
use crossbeam_utils::CachePadded;
use std::mem::MaybeUninit;

/// How many sender processes a port tracks for liveness.
pub const MAX_SENDERS: usize = 32;

/// The fixed part of a port in shared memory.
#[repr(C)]
#[derive(Debug)]
pub struct PortHeader {
    tail: CachePadded<AtomicU64>,
    head: CachePadded<AtomicU64>,
    /// The receiver's endpoint record (shared by every successive holder of the right).
    pub receiver: CachePadded<EndpointRecord>,
    /// Senders waiting for room sleep here.
    pub senders_pcb: CachePadded<Pcb>,
    right: AtomicU64,
    senders: [AtomicU32; MAX_SENDERS],
    /// `claims[i]`: 1 + the position sender `i` is claiming or filling; 0 when it is not.
    claims: [AtomicU64; MAX_SENDERS],
    connects: AtomicU32,
    capacity: u64,
    mode: u32,
}

/// Byte offsets in [`PortHeader`] of its shape fields (capacity: u64, mode: u32), for
/// `open`, which reads them once by offset and checks them, and for tools that corrupt them on
/// purpose (tests, fuzzing).
pub const SHAPE_OFFSETS: (usize, usize) = (
    std::mem::offset_of!(PortHeader, capacity),
    std::mem::offset_of!(PortHeader, mode),
);

/// One cell: the turn counter and the value.
#[derive(Debug)]
pub struct PortCell<T> {
    seq: AtomicU64,
    value: UnsafeCell<MaybeUninit<T>>,
}

impl<T> PortCell<T> {
    /// The cell at position `index`, empty.
    pub fn new(index: u64) -> Self {
        Self {
            seq: AtomicU64::new(index),
            value: UnsafeCell::new(MaybeUninit::uninit()),
        }
    }
}

impl PortHeader {
    /// A header for `capacity` cells (at least 2: with one cell the turn that means "full at
    /// position p" equals "free at position p + 1", a race the loom model found), receive right
    /// held by `receiver_pid`.
    pub fn new(capacity: usize, mode: WaitMode, receiver_pid: u32) -> Self {
        let receiver = EndpointRecord::new();
        receiver.pcb.set_pid(receiver_pid);
        Self {
            tail: CachePadded::new(AtomicU64::new(0)),
            head: CachePadded::new(AtomicU64::new(0)),
            receiver: CachePadded::new(receiver),
            senders_pcb: CachePadded::new(Pcb::new()),
            right: AtomicU64::new(receiver_pid as u64),
            senders: std::array::from_fn(|_| AtomicU32::new(0)),
            claims: std::array::from_fn(|_| AtomicU64::new(0)),
            connects: AtomicU32::new(0),
            capacity: capacity.max(2) as u64,
            mode: mode.to_word(),
        }
    }

    /// Number of cells.
    pub fn capacity(&self) -> usize {
        self.capacity as usize
    }
}

/// The receive right's state: generation and holder pid (0: in transit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RightState {
    /// Bumped at every release.
    pub generation: u32,
    /// The holder, 0 while the right travels.
    pub holder: u32,
}

/// A view of one port.
pub type Mpsc<'a, T> = View<'a, PortHeader, PortCell<T>>;

impl CellsHeader for PortHeader {
    fn cell_count(&self) -> u64 {
        self.capacity
    }
    fn mode_word(&self) -> u32 {
        self.mode
    }
}

impl<'a, T: Copy> View<'a, PortHeader, PortCell<T>> {
    /// Claims the next free cell for registered sender `sender` (announcing the claim
    /// first); its position, or `None` if the port is full.
    fn claim(&self, sender: usize) -> Option<u64> {
        let h = self.header();
        let claims = &h.claims[sender];
        stop_point();
        let mut pos = h.tail.load(Ordering::Relaxed);
        loop {
            stop_point();
            let seq = self.cell(pos).seq.load(Ordering::Acquire);
            if seq == pos {
                // Announced before the claim; the Release of the winning CAS below (and of
                // every later CAS on the tail: a release sequence) carries it to a receiver
                // that sees the tail moved past `pos`.
                stop_point();
                claims.store(pos.wrapping_add(1), Ordering::Relaxed);
                stop_point();
                match h.tail.compare_exchange_weak(
                    pos,
                    pos.wrapping_add(1),
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => return Some(pos),
                    Err(now) => pos = now,
                }
            } else if seq < pos {
                stop_point();
                claims.store(0, Ordering::Relaxed);
                return None;
            } else {
                stop_point();
                // Someone claimed `pos` already, so the tail has moved past it (the claim's
                // CAS precedes the turn we read). A tail still at `pos` means a peer wrote a
                // turn that no claim made: treat the port as full rather than spin forever.
                let now = h.tail.load(Ordering::Relaxed);
                if now == pos {
                    claims.store(0, Ordering::Relaxed);
                    return None;
                }
                pos = now;
            }
        }
    }

    /// Enqueues `value` from registered sender `sender` (its [`View::connect_sender`] index),
    /// or hands it back if the port is full.
    pub fn try_send(&self, sender: usize, value: T) -> Result<(), T> {
        let h = self.header();
        let Some(pos) = self.claim(sender) else {
            return Err(value);
        };
        let cell = self.cell(pos);
        stop_point();
        // SAFETY: winning the CAS on `tail` at `pos` while the cell's turn is `pos` makes this
        // sender the only writer of the cell until it publishes `pos + 1` (a receiver frees a
        // claimed cell only when this sender is dead).
        cell.value.with_mut(|p| unsafe { (*p).write(value) });
        stop_point();
        cell.seq.store(pos.wrapping_add(1), Ordering::Release);
        stop_point();
        h.claims[sender].store(0, Ordering::Release);
        stop_point();
        h.receiver.pcb.notify_for(self.mode());
        stop_point();
        Ok(())
    }

    /// Claims a cell for `sender` and abandons it unpublished, as a sender killed between
    /// the two steps does; `false` if the port was full. For tests of
    /// [`View::skip_dead_claim`] (loom models and killed processes).
    #[doc(hidden)]
    pub fn claim_and_abandon(&self, sender: usize) -> bool {
        self.claim(sender).is_some()
    }

    /// The receiver, stuck at an unpublished cell: if the cell was claimed and everyone who
    /// announced that claim is dead (`is_dead`), frees it without a value and moves on.
    /// Returns whether it did (the next receive looks at the next cell). Only the holder of
    /// the receive right may call it.
    pub fn skip_dead_claim(&self, is_dead: &dyn Fn(u32) -> bool) -> bool {
        let h = self.header();
        let pos = h.head.load(Ordering::Relaxed);
        let cell = self.cell(pos);
        if cell.seq.load(Ordering::Acquire) != pos || h.tail.load(Ordering::Acquire) <= pos {
            return false; // published, or nobody claimed it yet
        }
        let announcers: Vec<usize> = (0..MAX_SENDERS)
            .filter(|&i| h.claims[i].load(Ordering::Acquire) == pos.wrapping_add(1))
            .collect();
        let dead = |i: usize| {
            let pid = h.senders[i].load(Ordering::Acquire);
            pid == 0 || is_dead(pid)
        };
        // The owner announced `pos + 1` before its claim and clears it only after publishing,
        // so it is among the announcers unless it published already (then the CAS below
        // fails). A live announcer may be the owner: wait for it.
        if announcers.is_empty() || !announcers.iter().all(|&i| dead(i)) {
            return false;
        }
        if cell
            .seq
            .compare_exchange(
                pos,
                pos.wrapping_add(self.cell_count()),
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_err()
        {
            return false;
        }
        for i in announcers {
            h.claims[i].store(0, Ordering::Release);
        }
        h.head.store(pos.wrapping_add(1), Ordering::Release);
        h.senders_pcb.notify_for(self.mode());
        true
    }

    /// Enqueues `value` from registered sender `sender`, waiting for room per the mode.
    pub fn send(
        &self,
        sender: usize,
        value: T,
        deadline: Deadline,
        gone: impl FnMut(bool) -> bool,
    ) -> Result<(), (T, WaitFailure)> {
        wait_to_send(
            &self.header().senders_pcb,
            self.mode(),
            deadline,
            value,
            |v| self.try_send(sender, v),
            gone,
        )
    }

    /// Dequeues the oldest value, if one is complete. Only the holder of the receive right
    /// may call it.
    pub fn try_recv(&self) -> Option<T> {
        let h = self.header();
        let pos = h.head.load(Ordering::Acquire);
        let cell = self.cell(pos);
        if cell.seq.load(Ordering::Acquire) != pos.wrapping_add(1) {
            return None;
        }
        // SAFETY: the cell's turn is `pos + 1`: its sender finished writing (Release, read with
        // Acquire above) and only the single receiver reads it.
        let value = cell.value.with(|p| unsafe { (*p).assume_init_read() });
        cell.seq
            .store(pos.wrapping_add(self.cell_count()), Ordering::Release);
        h.head.store(pos.wrapping_add(1), Ordering::Release);
        h.senders_pcb.notify_for(self.mode());
        Some(value)
    }

    /// Dequeues the oldest value, waiting per the mode.
    pub fn recv(
        &self,
        deadline: Deadline,
        gone: impl FnMut(bool) -> bool,
    ) -> Result<T, WaitFailure> {
        wait_for(
            &self.header().receiver.pcb,
            self.mode(),
            deadline,
            || self.try_recv(),
            gone,
        )
    }

    /// The receive right's current state.
    pub fn right(&self) -> RightState {
        let w = self.header().right.load(Ordering::Acquire);
        RightState {
            generation: (w >> 32) as u32,
            holder: w as u32,
        }
    }

    /// Gives up the receive right held by `holder`: it is now in transit, claimable with the
    /// returned generation. `None` if `holder` does not hold it.
    pub fn release_right(&self, holder: u32) -> Option<u32> {
        let h = self.header();
        let now = h.right.load(Ordering::Acquire);
        if now as u32 != holder || holder == 0 {
            return None;
        }
        let generation = ((now >> 32) as u32).wrapping_add(1);
        h.right
            .compare_exchange(
                now,
                (generation as u64) << 32,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .ok()?;
        Some(generation)
    }

    /// Claims a receive right in transit at `generation` for `pid`.
    pub fn claim_right(&self, generation: u32, pid: u32) -> bool {
        let h = self.header();
        let ok = h
            .right
            .compare_exchange(
                (generation as u64) << 32,
                ((generation as u64) << 32) | pid as u64,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok();
        if ok {
            h.receiver.pcb.set_pid(pid);
        }
        ok
    }

    /// Registers a sender process; returns its table index, or `None` if the table is full of
    /// live senders (`is_dead` says which recorded pids died). The entry of a dead sender
    /// whose announced claim the receiver has not passed yet is not reused: the receiver
    /// needs it to free that cell.
    pub fn connect_sender(&self, pid: u32, is_dead: impl Fn(u32) -> bool) -> Option<usize> {
        let h = self.header();
        for (i, entry) in h.senders.iter().enumerate() {
            let cur = entry.load(Ordering::Acquire);
            // A dead sender's announcement matters while the receiver has not passed it.
            let claim = h.claims[i].load(Ordering::Acquire);
            let settled = claim == 0 || claim - 1 < h.head.load(Ordering::Acquire);
            let free = cur == 0 || (is_dead(cur) && settled);
            if free
                && entry
                    .compare_exchange(cur, pid, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
            {
                h.connects.fetch_add(1, Ordering::SeqCst);
                return Some(i);
            }
        }
        None
    }

    /// Unregisters the sender at table index `index` and wakes the receiver.
    pub fn disconnect_sender(&self, index: usize) {
        let h = self.header();
        if let Some(entry) = h.senders.get(index) {
            entry.store(0, Ordering::SeqCst);
        }
        h.receiver.pcb.notify();
    }

    /// Whether every sender that ever connected is gone (none connected: not gone). With
    /// `is_dead`, recorded senders that died count as gone.
    pub fn senders_gone(&self, is_dead: Option<&dyn Fn(u32) -> bool>) -> bool {
        let h = self.header();
        if h.connects.load(Ordering::SeqCst) == 0 {
            return false;
        }
        h.senders.iter().all(|e| {
            let pid = e.load(Ordering::SeqCst);
            pid == 0 || is_dead.is_some_and(|dead| dead(pid))
        })
    }
}

/// A port on the heap, for threads and loom models.
#[derive(Debug)]
pub struct MpscStorage<T> {
    header: Box<PortHeader>,
    cells: Box<[PortCell<T>]>,
}

impl<T: Copy> MpscStorage<T> {
    /// `capacity` cells, waiting per `mode`, receive right held by `receiver_pid`.
    pub fn new(capacity: usize, mode: WaitMode, receiver_pid: u32) -> Self {
        let header = Box::new(PortHeader::new(capacity, mode, receiver_pid));
        let cells = (0..header.capacity).map(PortCell::new).collect();
        Self { header, cells }
    }

    /// The protocol view.
    pub fn queue(&self) -> Mpsc<'_, T> {
        // SAFETY: header initialised, `capacity` cells each created with its index.
        unsafe { Mpsc::from_raw(&*self.header, self.cells.as_ptr()) }
    }
}
