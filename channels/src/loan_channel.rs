//! The loan channel: true zero copy between processes.
//!
//! The sender borrows a slot of a bounded pool that lives in a shared [`Region`], writes the
//! message in place and sends only the slot's index; the receiver gets a [`Sample`] that reads
//! the message in place, at the same address the sender wrote it (the region is mapped at the
//! same address everywhere); dropping the sample returns the slot. When every slot is taken,
//! the caller chooses the back-pressure: [`LoanSender::loan`] waits (per the channel's
//! [`WaitMode`]) and [`LoanSender::try_loan`] fails with [`LoanError::Exhausted`]. Slots loaned
//! or held by a process that died are taken back ([`LoanSender::reclaim`], also done
//! automatically while waiting for a slot), except a message a dead sender had already sent
//! or a dead receiver had not yet taken: that one stays queued and is delivered once. A process
//! SIGKILLed at any instruction of loan, send, receive, drop or reclaim loses no slot and makes
//! no message arrive twice (see [`crate::protocol::loan`] for the slot states).

use crate::backing::{ChannelRef, Tagged, find, kind, place, place_array, read_layout};
use crate::error::{ConnectError, LoanError, RecvError, RecvTimeoutError, SendError, TryRecvError};
use crate::layout::{Field, LayoutSpec};
use crate::liveness::{PeerCache, current_pid, pid_is_alive};
use crate::protocol::loan::{LoanHeader, LoanPool, SHAPE_OFFSETS, SlotMeta};
use crate::region::Region;
use crate::sync::AtomicU32;
use crate::wait::{Deadline, WaitFailure, WaitMode};
use std::cell::RefCell;
use std::sync::Arc;
use std::time::Duration;

#[repr(C)]
struct LoanLayout {
    header: LoanHeader,
    ring: u64,
    meta: u64,
    data: u64,
}

const fn at(field: usize) -> usize {
    std::mem::offset_of!(Tagged<LoanLayout>, value) + field
}

/// The sealed fields of a loan channel's layout, as `open` reads them.
pub static LOAN_LAYOUT: LayoutSpec = LayoutSpec {
    channel: "loan channel",
    kind: kind::LOAN,
    fields: &[
        Field {
            name: "slots",
            offset: at(std::mem::offset_of!(LoanLayout, header) + SHAPE_OFFSETS.0),
            width: 4,
        },
        Field {
            name: "mode",
            offset: at(std::mem::offset_of!(LoanLayout, header) + SHAPE_OFFSETS.1),
            width: 4,
        },
        Field {
            name: "slot_size",
            offset: at(std::mem::offset_of!(LoanLayout, header) + SHAPE_OFFSETS.2),
            width: 8,
        },
        Field {
            name: "ring",
            offset: at(std::mem::offset_of!(LoanLayout, ring)),
            width: 8,
        },
        Field {
            name: "meta",
            offset: at(std::mem::offset_of!(LoanLayout, meta)),
            width: 8,
        },
        Field {
            name: "data",
            offset: at(std::mem::offset_of!(LoanLayout, data)),
            width: 8,
        },
    ],
    len: size_of::<Tagged<LoanLayout>>(),
};

/// A zero-copy channel of byte messages up to `slot_size`, with a pool of `slots` slots.
#[derive(Debug, Clone)]
pub struct LoanChannel {
    region: Arc<Region>,
    pool: LoanPool<'static>,
    reference: ChannelRef,
}

fn dead(me: u32) -> impl Fn(u32) -> bool {
    move |pid| pid != me && !pid_is_alive(pid)
}

impl LoanChannel {
    /// Creates a channel in `region` with `slots` slots of `slot_size` bytes each (slot memory
    /// is page aligned; 16 MiB slots are fine given a region large enough).
    pub fn create(
        region: &Arc<Region>,
        slots: u32,
        slot_size: usize,
        mode: WaitMode,
    ) -> Result<Self, ConnectError> {
        if slots == 0 || slot_size == 0 {
            return Err(ConnectError::BadParameter(
                "a loan channel needs at least one slot of at least one byte",
            ));
        }
        let n = slots as usize;
        let ring = place_array(region, n, 64, |_| AtomicU32::new(0))?;
        let meta = place_array(region, n, 64, |_| SlotMeta::default())?;
        let data_len = slot_size
            .checked_mul(n)
            .ok_or(ConnectError::BadParameter("slots * slot_size overflows"))?;
        let data = region.alloc_bytes(data_len, 4096)?;
        let layout = LoanLayout {
            header: LoanHeader::new(slots, slot_size, mode),
            ring: region.offset_of(ring.cast()) as u64,
            meta: region.offset_of(meta.cast()) as u64,
            data: region.offset_of(data) as u64,
        };
        let (layout, reference) = place(region, &LOAN_LAYOUT, layout)?;
        Self::from_layout(region, layout, reference)
    }

    /// Opens a channel created in `region` by another process.
    ///
    /// The layout is read from the region once and checked (see [`crate::layout`]): a field
    /// that another process with write access corrupted is [`ConnectError::CorruptLayout`]
    /// naming it. The channel then uses only its private copy of the layout.
    pub fn open(region: &Arc<Region>, reference: ChannelRef) -> Result<Self, ConnectError> {
        let layout =
            find::<LoanLayout>(region, kind::LOAN, reference).ok_or(ConnectError::BadReference)?;
        Self::from_layout(region, layout, reference)
    }

    fn from_layout(
        region: &Arc<Region>,
        layout: *mut LoanLayout,
        reference: ChannelRef,
    ) -> Result<Self, ConnectError> {
        let spec = &LOAN_LAYOUT;
        // SAFETY: `layout` is what `place` or `find` returned for `region` and this layout.
        let (v, mut check) = unsafe { read_layout(region, spec, layout) };
        let slots = check.count("slots", v.get(0), 1, u32::MAX as u64, "must be at least 1")?;
        let slot_size = check.count(
            "slot_size",
            v.get(2),
            1,
            isize::MAX as u64,
            "must be at least 1",
        )?;
        if slot_size.checked_mul(slots).is_none() {
            return Err(check
                .error("slot_size", slot_size, "times `slots` must not exceed 2^64")
                .into());
        }
        let mode = v.get(1) as u32;
        check.mode("mode", mode)?;
        let ring = check.array(
            "ring",
            v.get(3),
            slots,
            size_of::<AtomicU32>(),
            align_of::<AtomicU32>(),
        )?;
        let meta = check.array(
            "meta",
            v.get(4),
            slots,
            size_of::<SlotMeta>(),
            align_of::<SlotMeta>(),
        )?;
        let data = check.array("data", v.get(5), slots, slot_size as usize, 1)?;
        check.sealed(spec, &v)?;
        // SAFETY: the header was placed by `create` (in `layout`); `ring` and `meta` hold
        // `slots` elements and `data` `slots * slot_size` bytes, all inside the region (checked
        // above, apart from each other and from the layout), which `self.region` keeps mapped.
        // Their contents are atomics and bytes, valid whatever a peer wrote there. The view
        // uses this private, checked shape, never the header's shared copy.
        let pool = unsafe {
            LoanPool::with_shape(
                &raw const (*layout).header,
                ring.cast(),
                meta.cast(),
                data,
                slots as u32,
                slot_size as usize,
                mode,
            )
        };
        Ok(Self {
            region: Arc::clone(region),
            pool,
            reference,
        })
    }

    /// The reference other processes pass to [`LoanChannel::open`].
    pub fn reference(&self) -> ChannelRef {
        self.reference
    }

    /// The region the channel lives in.
    pub fn region(&self) -> &Arc<Region> {
        &self.region
    }

    /// The protocol view (slot states, for diagnostics and tests).
    pub fn pool(&self) -> LoanPool<'_> {
        self.pool
    }

    /// Size of each slot in bytes: the largest message.
    pub fn slot_size(&self) -> usize {
        self.pool.slot_size()
    }

    /// Takes the sending end in this process.
    pub fn sender(&self) -> Result<LoanSender, ConnectError> {
        let me = current_pid();
        self.pool
            .header()
            .sender
            .connect(me, dead(me))
            .map_err(|holder| ConnectError::EndpointTaken { holder })?;
        Ok(LoanSender {
            ch: self.clone(),
            peer: RefCell::new(PeerCache::default()),
            pid: me,
        })
    }

    /// Takes the receiving end in this process.
    pub fn receiver(&self) -> Result<LoanReceiver, ConnectError> {
        let me = current_pid();
        self.pool
            .header()
            .receiver
            .connect(me, dead(me))
            .map_err(|holder| ConnectError::EndpointTaken { holder })?;
        Ok(LoanReceiver {
            ch: self.clone(),
            peer: RefCell::new(PeerCache::default()),
            pid: me,
        })
    }
}

/// The sending end of a [`LoanChannel`].
#[derive(Debug)]
pub struct LoanSender {
    ch: LoanChannel,
    peer: RefCell<PeerCache>,
    pid: u32,
}

impl LoanSender {
    fn loan_with(&self, deadline: Deadline) -> Result<Loan<'_>, LoanError> {
        let pool = self.ch.pool;
        let receiver = &pool.header().receiver;
        let me = self.pid;
        let mut peer = self.peer.borrow_mut();
        let gone = |thorough: bool| {
            if thorough {
                pool.reclaim(dead(me));
            }
            receiver.is_closed() || (thorough && peer.is_dead(receiver.pcb.pid()))
        };
        if matches!(deadline, Deadline::Now) {
            if let Some(slot) = pool.try_loan(me) {
                return Ok(Loan { sender: self, slot });
            }
            // Before reporting exhaustion, take back what dead processes held.
            pool.reclaim(dead(me));
        }
        match pool.loan(me, deadline, gone) {
            Ok(slot) => Ok(Loan { sender: self, slot }),
            Err(WaitFailure::Disconnected) => Err(LoanError::Disconnected),
            Err(WaitFailure::TimedOut) => Err(LoanError::Exhausted),
        }
    }

    /// Borrows a slot, waiting (per the channel's mode) while the pool is exhausted.
    pub fn loan(&self) -> Result<Loan<'_>, LoanError> {
        self.loan_with(Deadline::Never)
    }

    /// Borrows a slot, or fails with [`LoanError::Exhausted`] at once if none is free.
    pub fn try_loan(&self) -> Result<Loan<'_>, LoanError> {
        self.loan_with(Deadline::Now)
    }

    /// Borrows a slot, waiting at most `timeout`.
    pub fn loan_timeout(&self, timeout: Duration) -> Result<Loan<'_>, LoanError> {
        self.loan_with(Deadline::after(timeout))
    }

    /// Returns to the pool every slot loaned or held by a process that died, except slots still
    /// queued (sent, not yet taken by a live receiver); returns how many.
    pub fn reclaim(&self) -> usize {
        self.ch.pool.reclaim(dead(self.pid))
    }
}

impl Drop for LoanSender {
    fn drop(&mut self) {
        let h = self.ch.pool.header();
        h.sender.close(&h.receiver);
    }
}

/// A slot borrowed from the pool: write the message in place, then [`Loan::send`] it.
/// Dropping an unsent loan returns the slot.
#[derive(Debug)]
pub struct Loan<'a> {
    sender: &'a LoanSender,
    slot: u32,
}

impl Loan<'_> {
    /// The whole slot, to build the message in.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        let pool = self.sender.ch.pool;
        // SAFETY: the slot is LOANED to us: no one else reads or writes it until we send or
        // drop the loan, and it spans `slot_size` bytes of the mapped region.
        unsafe { std::slice::from_raw_parts_mut(pool.slot_ptr(self.slot), pool.slot_size()) }
    }

    /// The slot's address: the receiver will read the message at this same address.
    pub fn as_ptr(&self) -> *const u8 {
        self.sender.ch.pool.slot_ptr(self.slot)
    }

    /// The slot's index in the pool.
    pub fn slot(&self) -> u32 {
        self.slot
    }

    /// Sends the first `len` bytes of the slot (clamped to the slot size); only the slot's
    /// index travels. If the receiver closed its end, the loan is handed back. (A receiver that
    /// died without closing is seen by the sender's next waiting operation; the message stays
    /// queued for a receiver that takes over.)
    pub fn send(self, len: usize) -> Result<(), SendError<Self>> {
        let pool = self.sender.ch.pool;
        let receiver = &pool.header().receiver;
        if receiver.is_closed() {
            return Err(SendError::Disconnected(self));
        }
        pool.send(self.slot, len.min(pool.slot_size()));
        std::mem::forget(self);
        Ok(())
    }
}

impl Drop for Loan<'_> {
    fn drop(&mut self) {
        self.sender.ch.pool.release(self.slot);
    }
}

/// The receiving end of a [`LoanChannel`].
#[derive(Debug)]
pub struct LoanReceiver {
    ch: LoanChannel,
    peer: RefCell<PeerCache>,
    pid: u32,
}

impl LoanReceiver {
    fn recv_with(&self, deadline: Deadline) -> Result<Sample<'_>, WaitFailure> {
        let pool = self.ch.pool;
        let sender = &pool.header().sender;
        let mut peer = self.peer.borrow_mut();
        let gone =
            |thorough: bool| sender.is_closed() || (thorough && peer.is_dead(sender.pcb.pid()));
        let (slot, len) = pool.recv(self.pid, deadline, gone)?;
        Ok(Sample {
            receiver: self,
            slot,
            len,
        })
    }

    /// Receives the next message, waiting per the channel's mode.
    pub fn recv(&self) -> Result<Sample<'_>, RecvError> {
        self.recv_with(Deadline::Never)
            .map_err(|_| RecvError::Disconnected)
    }

    /// Receives the next message if one is there.
    pub fn try_recv(&self) -> Result<Sample<'_>, TryRecvError> {
        self.recv_with(Deadline::Now).map_err(TryRecvError::from)
    }

    /// Receives the next message, waiting at most `timeout`.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Sample<'_>, RecvTimeoutError> {
        self.recv_with(Deadline::after(timeout))
            .map_err(RecvTimeoutError::from)
    }
}

impl Drop for LoanReceiver {
    fn drop(&mut self) {
        let h = self.ch.pool.header();
        h.receiver.close(&h.sender);
    }
}

/// A received message, read in place in the sender's slot. Dropping it returns the slot.
#[derive(Debug)]
pub struct Sample<'a> {
    receiver: &'a LoanReceiver,
    slot: u32,
    len: usize,
}

impl Sample<'_> {
    /// The slot's index in the pool.
    pub fn slot(&self) -> u32 {
        self.slot
    }
}

impl std::ops::Deref for Sample<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: the slot is HELD by us: the sender wrote `len` bytes before sending (made
        // visible by the Acquire in `try_recv`) and no one writes it until we drop the sample.
        unsafe { std::slice::from_raw_parts(self.receiver.ch.pool.slot_ptr(self.slot), self.len) }
    }
}

impl Drop for Sample<'_> {
    fn drop(&mut self) {
        self.receiver.ch.pool.release(self.slot);
    }
}
