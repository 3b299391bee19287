//! Ports, after Mach: many senders in many processes, one receiver, a bounded queue in a
//! shared [`Region`]. The receive right is a capability: [`ReceiveRight::into_transfer`] gives
//! it up and returns a [`ReceiveRightToken`], plain data that travels inside a message (on this
//! or another port) to the process that [`ReceiveRight::claim`]s it. Send rights travel the same
//! way as [`SendRight`]s. Any [`Shareable`] message type can carry such rights as fields.

use crate::backing::{ChannelRef, Tagged, find, kind, place, place_array, read_layout};
use crate::error::{
    ConnectError, RecvError, RecvTimeoutError, SendError, SendTimeoutError, TryRecvError,
    TrySendError,
};
use crate::layout::{Field, LayoutSpec};
use crate::liveness::{PeerCache, current_pid, pid_is_alive};
use crate::protocol::mpsc::{Mpsc, PortCell, PortHeader, SHAPE_OFFSETS};
use crate::region::Region;
use crate::shareable::Shareable;
use crate::wait::{Deadline, WaitFailure, WaitMode};
use std::cell::RefCell;
use std::sync::Arc;
use std::time::Duration;

#[repr(C)]
struct PortLayout {
    header: PortHeader,
    cells: u64,
}

const fn at(field: usize) -> usize {
    std::mem::offset_of!(Tagged<PortLayout>, value) + field
}

/// The sealed fields of a port's layout, as `open` reads them.
pub static PORT_LAYOUT: LayoutSpec = LayoutSpec {
    channel: "port",
    kind: kind::PORT,
    fields: &[
        Field {
            name: "capacity",
            offset: at(std::mem::offset_of!(PortLayout, header) + SHAPE_OFFSETS.0),
            width: 8,
        },
        Field {
            name: "mode",
            offset: at(std::mem::offset_of!(PortLayout, header) + SHAPE_OFFSETS.1),
            width: 4,
        },
        Field {
            name: "cells",
            offset: at(std::mem::offset_of!(PortLayout, cells)),
            width: 8,
        },
    ],
    len: size_of::<Tagged<PortLayout>>(),
};

/// A port in a shared region carrying `T` messages.
#[derive(Debug)]
pub struct Port<T> {
    region: Arc<Region>,
    queue: Mpsc<'static, T>,
    reference: ChannelRef,
}

impl<T> Clone for Port<T> {
    fn clone(&self) -> Self {
        Self {
            region: Arc::clone(&self.region),
            queue: self.queue,
            reference: self.reference,
        }
    }
}

/// The right to send to a port, as plain data that can travel inside a message.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendRight {
    /// The port.
    pub port: ChannelRef,
}

/// A receive right in transit: whoever holds this token (received in a message) may claim the
/// right once; the generation makes older tokens useless.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceiveRightToken {
    /// The port.
    pub port: ChannelRef,
    /// The generation the right was released at.
    pub generation: u32,
    /// Padding, zero.
    pub reserved: u32,
}

// SAFETY: offsets and integers, meaningful in every process that maps the region.
unsafe impl Shareable for SendRight {}
// SAFETY: as above.
unsafe impl Shareable for ReceiveRightToken {}

impl<T: Shareable + Copy> Port<T> {
    /// Creates a port with room for `capacity` queued messages; the calling process holds the
    /// receive right.
    pub fn create(
        region: &Arc<Region>,
        capacity: usize,
        mode: WaitMode,
    ) -> Result<(Self, ReceiveRight<T>), ConnectError> {
        if capacity == 0 {
            return Err(ConnectError::BadParameter(
                "a port needs room for at least one message",
            ));
        }
        let capacity = capacity.max(2);
        let cells = place_array(region, capacity, 64, |i| PortCell::<T>::new(i as u64))?;
        let layout = PortLayout {
            header: PortHeader::new(capacity, mode, current_pid()),
            cells: region.offset_of(cells.cast()) as u64,
        };
        let (layout, reference) = place(region, &PORT_LAYOUT, layout)?;
        let port = Self::from_layout(region, layout, reference)?;
        let right = ReceiveRight {
            port: port.clone(),
            pid: current_pid(),
        };
        Ok((port, right))
    }

    /// Opens a port created in `region` by another process.
    ///
    /// The layout is read once and checked (see [`crate::layout`]): a corrupt field is
    /// [`ConnectError::CorruptLayout`] naming it; the port then uses its private copy.
    pub fn open(region: &Arc<Region>, reference: ChannelRef) -> Result<Self, ConnectError> {
        let layout =
            find::<PortLayout>(region, kind::PORT, reference).ok_or(ConnectError::BadReference)?;
        Self::from_layout(region, layout, reference)
    }

    fn from_layout(
        region: &Arc<Region>,
        layout: *mut PortLayout,
        reference: ChannelRef,
    ) -> Result<Self, ConnectError> {
        let spec = &PORT_LAYOUT;
        // SAFETY: `layout` is what `place` or `find` returned for `region` and this layout.
        let (v, mut check) = unsafe { read_layout(region, spec, layout) };
        let capacity = check.count("capacity", v.get(0), 2, u64::MAX, "must be at least 2")?;
        let mode = v.get(1) as u32;
        check.mode("mode", mode)?;
        let cells = check.array(
            "cells",
            v.get(2),
            capacity,
            size_of::<PortCell<T>>(),
            align_of::<PortCell<T>>(),
        )?;
        check.sealed(spec, &v)?;
        // SAFETY: header placed by `create`; `capacity` cells inside the region (checked
        // above, apart from the layout), kept mapped by `self.region`. A cell's turn counter
        // is an atomic, valid whatever a peer wrote; a wrong one only stalls or reorders this
        // port's messages. The view uses this private, checked shape.
        let queue =
            unsafe { Mpsc::with_shape(&raw const (*layout).header, cells.cast(), capacity, mode) };
        Ok(Self {
            region: Arc::clone(region),
            queue,
            reference,
        })
    }

    /// The port's send right, to hand to other processes inside messages.
    pub fn send_right(&self) -> SendRight {
        SendRight {
            port: self.reference,
        }
    }

    /// Registers this process as a sender.
    pub fn sender(&self) -> Result<PortSender<T>, ConnectError> {
        let me = current_pid();
        let index = self
            .queue
            .connect_sender(me, |pid| pid != me && !pid_is_alive(pid))
            .ok_or(ConnectError::TooManySenders)?;
        Ok(PortSender {
            port: self.clone(),
            index,
            peer: RefCell::new(PeerCache::default()),
        })
    }
}

impl SendRight {
    /// Opens a sender on the port this right names.
    pub fn open<T: Shareable + Copy>(
        &self,
        region: &Arc<Region>,
    ) -> Result<PortSender<T>, ConnectError> {
        Port::<T>::open(region, self.port)?.sender()
    }
}

/// One sender of a [`Port`]; many may exist, in many processes.
#[derive(Debug)]
pub struct PortSender<T: Shareable + Copy> {
    port: Port<T>,
    index: usize,
    peer: RefCell<PeerCache>,
}

impl<T: Shareable + Copy> PortSender<T> {
    fn send_with(&self, value: T, deadline: Deadline) -> Result<(), (T, WaitFailure)> {
        let q = self.port.queue;
        let receiver = &q.header().receiver;
        if receiver.is_closed() {
            return Err((value, WaitFailure::Disconnected));
        }
        let mut peer = self.peer.borrow_mut();
        let gone =
            |thorough: bool| receiver.is_closed() || (thorough && peer.is_dead(q.right().holder));
        q.send(self.index, value, deadline, gone)
    }

    /// Queues `value`, waiting for room.
    pub fn send(&self, value: T) -> Result<(), SendError<T>> {
        self.send_with(value, Deadline::Never)
            .map_err(|(v, _)| SendError::Disconnected(v))
    }

    /// Queues `value` if there is room.
    pub fn try_send(&self, value: T) -> Result<(), TrySendError<T>> {
        self.send_with(value, Deadline::Now)
            .map_err(|(v, f)| TrySendError::from_wait(f, v))
    }

    /// Queues `value`, waiting at most `timeout` for room.
    pub fn send_timeout(&self, value: T, timeout: Duration) -> Result<(), SendTimeoutError<T>> {
        self.send_with(value, Deadline::after(timeout))
            .map_err(|(v, f)| SendTimeoutError::from_wait(f, v))
    }
}

impl<T: Shareable + Copy> PortSender<T> {
    /// Claims a cell and abandons it unpublished, as a sender killed between the two steps
    /// does; false if the port was full. For tests of the receiver's recovery from such a
    /// sender (see `protocol::mpsc`), not for applications.
    #[doc(hidden)]
    pub fn claim_and_abandon(&self) -> bool {
        self.port.queue.claim_and_abandon(self.index)
    }
}

impl<T: Shareable + Copy> Drop for PortSender<T> {
    fn drop(&mut self) {
        self.port.queue.disconnect_sender(self.index);
    }
}

/// The receive right of a [`Port`]: exactly one exists; it can move to another process.
#[derive(Debug)]
pub struct ReceiveRight<T: Shareable + Copy> {
    port: Port<T>,
    pid: u32,
}

impl<T: Shareable + Copy> ReceiveRight<T> {
    /// Claims a receive right sent to this process as a token inside a message.
    pub fn claim(region: &Arc<Region>, token: ReceiveRightToken) -> Result<Self, ConnectError> {
        let port = Port::<T>::open(region, token.port)?;
        let me = current_pid();
        if !port.queue.claim_right(token.generation, me) {
            return Err(ConnectError::RightNotAvailable);
        }
        port.queue
            .header()
            .receiver
            .connect(me, |_| true)
            .map_err(|holder| ConnectError::EndpointTaken { holder })?;
        Ok(Self { port, pid: me })
    }

    /// Gives up the right: messages keep queueing, and the process that claims the returned
    /// token (sent to it inside a message) receives them, in order.
    pub fn into_transfer(self) -> ReceiveRightToken {
        let generation = self.port.queue.release_right(self.pid).unwrap_or(0);
        // Dropping `self` now leaves the receiving end open: we no longer hold the right.
        ReceiveRightToken {
            port: self.port.reference,
            generation,
            reserved: 0,
        }
    }

    /// The port this right receives from.
    pub fn port(&self) -> &Port<T> {
        &self.port
    }

    /// Whether `pid` is a sender process that died (this receiver is alive).
    fn is_dead(&self, pid: u32) -> bool {
        pid != self.pid && !pid_is_alive(pid)
    }

    fn recv_with(&self, deadline: Deadline) -> Result<T, WaitFailure> {
        let q = self.port.queue;
        let is_dead = |pid: u32| self.is_dead(pid);
        let gone = |thorough: bool| {
            // With the liveness checks: a sender killed between claiming the next cell and
            // publishing it would stall this receiver; its cell is freed and the wait goes on.
            if thorough && q.skip_dead_claim(&is_dead) {
                return false;
            }
            q.senders_gone(thorough.then_some(&is_dead as &dyn Fn(u32) -> bool))
        };
        q.recv(deadline, gone)
    }

    /// Receives the next message, waiting for one. Fails with `Disconnected` once every sender
    /// that ever connected has left (dropped its [`PortSender`] or died) and the queue is empty;
    /// before any sender connects it waits. Keep a sender of your own while senders come and go.
    pub fn recv(&self) -> Result<T, RecvError> {
        self.recv_with(Deadline::Never)
            .map_err(|_| RecvError::Disconnected)
    }

    /// Receives the next message if one is queued.
    pub fn try_recv(&self) -> Result<T, TryRecvError> {
        loop {
            match self.recv_with(Deadline::Now) {
                // The next cell may be one a killed sender claimed and never published.
                Err(WaitFailure::TimedOut)
                    if self.port.queue.skip_dead_claim(&|pid| self.is_dead(pid)) => {}
                other => return other.map_err(TryRecvError::from),
            }
        }
    }

    /// Receives the next message, waiting at most `timeout`.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<T, RecvTimeoutError> {
        self.recv_with(Deadline::after(timeout))
            .map_err(RecvTimeoutError::from)
    }
}

impl<T: Shareable + Copy> Drop for ReceiveRight<T> {
    fn drop(&mut self) {
        let q = self.port.queue;
        if q.right().holder == self.pid {
            let h = q.header();
            h.receiver.close(&h.receiver);
            h.senders_pcb.notify();
        }
    }
}
