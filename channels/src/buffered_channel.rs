//! The buffered channel: k slots, two copies (sender to slot, slot to receiver). It is the
//! classic asynchronous channel and the baseline the zero-copy channels are compared with.

use crate::backing::{ChannelRef, Tagged, find, kind, place, place_array, read_layout};
use crate::error::{
    ConnectError, RecvError, RecvTimeoutError, SendError, SendTimeoutError, TryRecvError,
    TrySendError,
};
use crate::layout::{Field, LayoutSpec};
use crate::liveness::{PeerCache, current_pid, pid_is_alive};
use crate::protocol::ring::{Ring, RingCell, RingHeader, SHAPE_OFFSETS};
use crate::region::Region;
use crate::shareable::Shareable;
use crate::sync::UnsafeCell;
use crate::wait::{Deadline, WaitFailure, WaitMode};
use std::cell::RefCell;
use std::mem::MaybeUninit;
use std::sync::Arc;
use std::time::Duration;

#[repr(C)]
struct RingLayout {
    header: RingHeader,
    cells: u64,
    capacity: u64,
}

const fn at(field: usize) -> usize {
    std::mem::offset_of!(Tagged<RingLayout>, value) + field
}

/// The sealed fields of a buffered channel's layout, as `open` reads them.
pub static BUFFERED_LAYOUT: LayoutSpec = LayoutSpec {
    channel: "buffered channel",
    kind: kind::BUFFERED,
    fields: &[
        Field {
            name: "capacity",
            offset: at(std::mem::offset_of!(RingLayout, capacity)),
            width: 8,
        },
        Field {
            name: "header.capacity",
            offset: at(std::mem::offset_of!(RingLayout, header) + SHAPE_OFFSETS.0),
            width: 8,
        },
        Field {
            name: "mode",
            offset: at(std::mem::offset_of!(RingLayout, header) + SHAPE_OFFSETS.1),
            width: 4,
        },
        Field {
            name: "cells",
            offset: at(std::mem::offset_of!(RingLayout, cells)),
            width: 8,
        },
    ],
    len: size_of::<Tagged<RingLayout>>(),
};

/// A k-slot channel of `T` values in a shared region.
#[derive(Debug)]
pub struct BufferedChannel<T> {
    region: Arc<Region>,
    ring: Ring<'static, T>,
    reference: ChannelRef,
}

impl<T> Clone for BufferedChannel<T> {
    fn clone(&self) -> Self {
        Self {
            region: Arc::clone(&self.region),
            ring: self.ring,
            reference: self.reference,
        }
    }
}

fn dead(me: u32) -> impl Fn(u32) -> bool {
    move |pid| pid != me && !pid_is_alive(pid)
}

impl<T: Shareable + Copy> BufferedChannel<T> {
    /// Creates a channel with `capacity` slots in `region`.
    pub fn create(
        region: &Arc<Region>,
        capacity: usize,
        mode: WaitMode,
    ) -> Result<Self, ConnectError> {
        if capacity == 0 {
            return Err(ConnectError::BadParameter(
                "a buffered channel needs at least one slot",
            ));
        }
        let cells = place_array::<RingCell<T>>(region, capacity, 64, |_| {
            UnsafeCell::new(MaybeUninit::uninit())
        })?;
        let layout = RingLayout {
            header: RingHeader::new(capacity, mode),
            cells: region.offset_of(cells.cast()) as u64,
            capacity: capacity as u64,
        };
        let (layout, reference) = place(region, &BUFFERED_LAYOUT, layout)?;
        Self::from_layout(region, layout, reference)
    }

    /// Opens a channel created in `region` by another process.
    ///
    /// The layout is read once and checked (see [`crate::layout`]): a corrupt field is
    /// [`ConnectError::CorruptLayout`] naming it; the channel then uses its private copy.
    pub fn open(region: &Arc<Region>, reference: ChannelRef) -> Result<Self, ConnectError> {
        let layout = find::<RingLayout>(region, kind::BUFFERED, reference)
            .ok_or(ConnectError::BadReference)?;
        Self::from_layout(region, layout, reference)
    }

    fn from_layout(
        region: &Arc<Region>,
        layout: *mut RingLayout,
        reference: ChannelRef,
    ) -> Result<Self, ConnectError> {
        let spec = &BUFFERED_LAYOUT;
        // SAFETY: `layout` is what `place` or `find` returned for `region` and this layout.
        let (v, mut check) = unsafe { read_layout(region, spec, layout) };
        let capacity = check.count("capacity", v.get(0), 1, u64::MAX, "must be at least 1")?;
        if v.get(1) != capacity {
            return Err(check
                .error("header.capacity", v.get(1), "must equal `capacity`")
                .into());
        }
        let mode = v.get(2) as u32;
        check.mode("mode", mode)?;
        let cells = check.array(
            "cells",
            v.get(3),
            capacity,
            size_of::<RingCell<T>>(),
            align_of::<RingCell<T>>(),
        )?;
        check.sealed(spec, &v)?;
        // SAFETY: header placed by `create`; `capacity` cells inside the region (checked
        // above, apart from the layout), kept mapped by `self.region`. The view uses this
        // private, checked shape, never the header's shared copy.
        let ring =
            unsafe { Ring::with_shape(&raw const (*layout).header, cells.cast(), capacity, mode) };
        Ok(Self {
            region: Arc::clone(region),
            ring,
            reference,
        })
    }

    /// The reference other processes pass to [`BufferedChannel::open`].
    pub fn reference(&self) -> ChannelRef {
        self.reference
    }

    /// Takes the sending end in this process.
    pub fn sender(&self) -> Result<BufferedSender<T>, ConnectError> {
        let me = current_pid();
        self.ring
            .header()
            .sender
            .connect(me, dead(me))
            .map_err(|holder| ConnectError::EndpointTaken { holder })?;
        Ok(BufferedSender {
            ch: self.clone(),
            peer: RefCell::new(PeerCache::default()),
        })
    }

    /// Takes the receiving end in this process.
    pub fn receiver(&self) -> Result<BufferedReceiver<T>, ConnectError> {
        let me = current_pid();
        self.ring
            .header()
            .receiver
            .connect(me, dead(me))
            .map_err(|holder| ConnectError::EndpointTaken { holder })?;
        Ok(BufferedReceiver {
            ch: self.clone(),
            peer: RefCell::new(PeerCache::default()),
        })
    }
}

/// The sending end of a [`BufferedChannel`].
#[derive(Debug)]
pub struct BufferedSender<T: Shareable + Copy> {
    ch: BufferedChannel<T>,
    peer: RefCell<PeerCache>,
}

impl<T: Shareable + Copy> BufferedSender<T> {
    fn send_with(&self, value: T, deadline: Deadline) -> Result<(), (T, WaitFailure)> {
        let receiver = &self.ch.ring.header().receiver;
        let mut peer = self.peer.borrow_mut();
        if receiver.is_closed() {
            return Err((value, WaitFailure::Disconnected));
        }
        let gone =
            |thorough: bool| receiver.is_closed() || (thorough && peer.is_dead(receiver.pcb.pid()));
        self.ch.ring.send(value, deadline, gone)
    }

    /// Copies `value` into the buffer, waiting for room.
    pub fn send(&self, value: T) -> Result<(), SendError<T>> {
        self.send_with(value, Deadline::Never)
            .map_err(|(v, _)| SendError::Disconnected(v))
    }

    /// Copies `value` into the buffer if there is room.
    pub fn try_send(&self, value: T) -> Result<(), TrySendError<T>> {
        self.send_with(value, Deadline::Now)
            .map_err(|(v, f)| TrySendError::from_wait(f, v))
    }

    /// Copies `value` into the buffer, waiting at most `timeout` for room.
    pub fn send_timeout(&self, value: T, timeout: Duration) -> Result<(), SendTimeoutError<T>> {
        self.send_with(value, Deadline::after(timeout))
            .map_err(|(v, f)| SendTimeoutError::from_wait(f, v))
    }
}

impl<T: Shareable + Copy> Drop for BufferedSender<T> {
    fn drop(&mut self) {
        let h = self.ch.ring.header();
        h.sender.close(&h.receiver);
    }
}

/// The receiving end of a [`BufferedChannel`].
#[derive(Debug)]
pub struct BufferedReceiver<T: Shareable + Copy> {
    ch: BufferedChannel<T>,
    peer: RefCell<PeerCache>,
}

impl<T: Shareable + Copy> BufferedReceiver<T> {
    fn recv_with(&self, deadline: Deadline) -> Result<T, WaitFailure> {
        let sender = &self.ch.ring.header().sender;
        let mut peer = self.peer.borrow_mut();
        let gone =
            |thorough: bool| sender.is_closed() || (thorough && peer.is_dead(sender.pcb.pid()));
        self.ch.ring.recv(deadline, gone)
    }

    /// Copies the next value out of the buffer, waiting for one.
    pub fn recv(&self) -> Result<T, RecvError> {
        self.recv_with(Deadline::Never)
            .map_err(|_| RecvError::Disconnected)
    }

    /// Copies the next value out if there is one.
    pub fn try_recv(&self) -> Result<T, TryRecvError> {
        self.recv_with(Deadline::Now).map_err(TryRecvError::from)
    }

    /// Copies the next value out, waiting at most `timeout`.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<T, RecvTimeoutError> {
        self.recv_with(Deadline::after(timeout))
            .map_err(RecvTimeoutError::from)
    }
}

impl<T: Shareable + Copy> Drop for BufferedReceiver<T> {
    fn drop(&mut self) {
        let h = self.ch.ring.header();
        h.receiver.close(&h.sender);
    }
}
