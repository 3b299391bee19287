//! The synchronous zero-copy channel of seed 001, for threads and processes.
//!
//! The descriptor ([`SyncDescriptor`]) holds a wait flag, a length, `val_ref` and `PCB_ref`,
//! and no message buffer. `send(&msg)` and `recv(&mut target)` meet: whoever comes first
//! publishes the address of its variable and sleeps (or spins) on its PCB; the second copies
//! the message straight from the sender's variable into the receiver's target, once, and wakes
//! the first.
//!
//! Reaching the other process's variable uses reference scheme 1 (coinciding addresses):
//! between processes the channel lives in a [`Region`] mapped at the same address everywhere,
//! and the message and target variables must live there too (allocate them with
//! [`Region::alloc`]); `val_ref` is then a plain address valid in both processes. A variable
//! outside the region is refused with `NotShared` instead of being read through a dangling
//! address. Between threads, [`SyncChannel::local`] accepts any variable, stack included.

use crate::backing::{Backing, ChannelRef, Tagged, find, kind, place, read_layout};
use crate::error::{
    ConnectError, RecvError, RecvTimeoutError, SendError, SendTimeoutError, TryRecvError,
    TrySendError,
};
use crate::layout::{Field, LayoutSpec};
use crate::liveness::{PeerCache, current_pid, pid_is_alive};
use crate::protocol::rendezvous::{Offer, Role, SyncDescriptor, SyncShared};
use crate::region::Region;
use crate::shareable::Shareable;
use crate::wait::{Deadline, WaitFailure, WaitMode};
use std::cell::RefCell;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

/// A synchronous channel's layout: its waiting mode is sealed (read once by `open` into a
/// private copy, covered by the layout's check). The descriptor's pointers change at every
/// rendezvous, so they are checked at every use instead: `val_ref` must lie in the region,
/// `PCB_ref` must be the peer's record.
pub static SYNC_LAYOUT: LayoutSpec = LayoutSpec {
    channel: "synchronous channel",
    kind: kind::SYNC,
    fields: &[Field {
        name: "mode",
        offset: std::mem::offset_of!(Tagged<SyncShared>, value) + SyncShared::MODE_OFFSET,
        width: 4,
    }],
    len: size_of::<Tagged<SyncShared>>(),
};

/// A synchronous zero-copy channel carrying values of type `T`; hand out one
/// [`SyncSender`] and one [`SyncReceiver`].
#[derive(Debug)]
pub struct SyncChannel<T> {
    backing: Backing,
    shared: *const SyncShared,
    reference: Option<ChannelRef>,
    /// The waiting mode: this process's private copy, never re-read from shared memory.
    mode: WaitMode,
    _t: PhantomData<fn(T) -> T>,
}

impl<T> Clone for SyncChannel<T> {
    fn clone(&self) -> Self {
        Self {
            backing: self.backing.clone(),
            shared: self.shared,
            reference: self.reference,
            mode: self.mode,
            _t: PhantomData,
        }
    }
}

// SAFETY: the channel points at atomics in memory kept alive by `backing`.
unsafe impl<T> Send for SyncChannel<T> {}
// SAFETY: as above; all shared state is atomic.
unsafe impl<T> Sync for SyncChannel<T> {}

struct LocalSync(SyncShared);

impl<T: Shareable + Copy> SyncChannel<T> {
    /// Creates a channel in `region`, usable by every process that maps it (forked children
    /// inherit it; others attach the region and [`SyncChannel::open`] it).
    pub fn create(region: &Arc<Region>, mode: WaitMode) -> Result<Self, ConnectError> {
        let (shared, reference) = place(region, &SYNC_LAYOUT, SyncShared::new(mode))?;
        Ok(Self::in_region(region, shared, reference, mode))
    }

    /// The channel whose shared part `shared` lies in `region`, placed there at `reference`.
    fn in_region(
        region: &Arc<Region>,
        shared: *const SyncShared,
        reference: ChannelRef,
        mode: WaitMode,
    ) -> Self {
        Self {
            backing: Backing::Region(Arc::clone(region)),
            shared,
            reference: Some(reference),
            mode,
            _t: PhantomData,
        }
    }

    /// Creates a channel on the heap for the threads of this process; variables anywhere
    /// (stack included) may be sent and received.
    pub fn local(mode: WaitMode) -> Self {
        let keep = Arc::new(LocalSync(SyncShared::new(mode)));
        let shared = &keep.0 as *const SyncShared;
        Self {
            backing: Backing::Local {
                _keep: keep,
                pid: current_pid(),
            },
            shared,
            reference: None,
            mode,
            _t: PhantomData,
        }
    }

    /// Opens a channel created in `region` by another process, from its reference. The waiting
    /// mode is read once and checked against the layout's seal; a changed or invalid mode is
    /// [`ConnectError::CorruptLayout`] naming the field.
    pub fn open(region: &Arc<Region>, reference: ChannelRef) -> Result<Self, ConnectError> {
        let shared =
            find::<SyncShared>(region, kind::SYNC, reference).ok_or(ConnectError::BadReference)?;
        let spec = &SYNC_LAYOUT;
        // SAFETY: `shared` is what `place` or `find` returned for `region` and this layout.
        let (v, check) = unsafe { read_layout(region, spec, shared) };
        let mode = check.mode("mode", v.get(0) as u32)?;
        check.sealed(spec, &v)?;
        Ok(Self::in_region(region, shared, reference, mode))
    }

    /// The waiting mode this process uses: chosen by `create`, read once by `open`.
    pub fn mode(&self) -> WaitMode {
        self.mode
    }

    /// The reference other processes pass to [`SyncChannel::open`] (`None` for local channels).
    pub fn reference(&self) -> Option<ChannelRef> {
        self.reference
    }

    fn shared(&self) -> &SyncShared {
        // SAFETY: `shared` points into memory kept alive by `self.backing`.
        unsafe { &*self.shared }
    }

    /// The seed's descriptor (wait flag, length, val_ref, PCB_ref), for inspection.
    pub fn descriptor(&self) -> &SyncDescriptor {
        self.shared().descriptor()
    }

    fn connect(&self, role: Role) -> Result<(), ConnectError> {
        if !self.backing.usable_here() {
            return Err(ConnectError::BadReference);
        }
        let me = current_pid();
        self.shared()
            .endpoint(role)
            .connect(me, |pid| pid != me && !pid_is_alive(pid))
            .map_err(|holder| ConnectError::EndpointTaken { holder })
    }

    /// Takes the sending end in this process.
    pub fn sender(&self) -> Result<SyncSender<T>, ConnectError> {
        self.connect(Role::Sender)?;
        Ok(SyncSender {
            ch: self.clone(),
            peer: RefCell::new(PeerCache::default()),
        })
    }

    /// Takes the receiving end in this process.
    pub fn receiver(&self) -> Result<SyncReceiver<T>, ConnectError> {
        self.connect(Role::Receiver)?;
        Ok(SyncReceiver {
            ch: self.clone(),
            peer: RefCell::new(PeerCache::default()),
        })
    }

    fn transfer(
        &self,
        role: Role,
        var: *mut u8,
        deadline: Deadline,
        peer: &RefCell<PeerCache>,
    ) -> Result<(), WaitFailure> {
        let shared = self.shared();
        let other = shared.endpoint(match role {
            Role::Sender => Role::Receiver,
            Role::Receiver => Role::Sender,
        });
        let mut peer = peer.borrow_mut();
        let gone =
            |thorough: bool| other.is_closed() || (thorough && peer.is_dead(other.pcb.pid()));
        let backing = &self.backing;
        let reachable = |ptr: *const u8, len: usize| backing.reachable(ptr, len);
        // SAFETY: `var` is a `T` borrowed by the caller for the whole call (shared for send,
        // exclusive for recv) and `reachable` checked that the peer can reach it; the single
        // endpoint per role is `!Sync`, so one caller per role is inside `transfer`. The
        // peer's variable is used only if it lies in the region `backing` keeps mapped.
        unsafe {
            shared.transfer_within(
                Offer {
                    role,
                    var,
                    len: size_of::<T>(),
                },
                self.mode,
                deadline,
                gone,
                &reachable,
            )
        }
    }

    fn close(&self, role: Role) {
        let shared = self.shared();
        let (me, other) = match role {
            Role::Sender => (
                shared.endpoint(Role::Sender),
                shared.endpoint(Role::Receiver),
            ),
            Role::Receiver => (
                shared.endpoint(Role::Receiver),
                shared.endpoint(Role::Sender),
            ),
        };
        me.close(other);
    }
}

/// The sending end of a [`SyncChannel`].
#[derive(Debug)]
pub struct SyncSender<T: Shareable + Copy> {
    ch: SyncChannel<T>,
    peer: RefCell<PeerCache>,
}

/// The receiving end of a [`SyncChannel`].
#[derive(Debug)]
pub struct SyncReceiver<T: Shareable + Copy> {
    ch: SyncChannel<T>,
    peer: RefCell<PeerCache>,
}

impl<T: Shareable + Copy> SyncSender<T> {
    fn send_with<'a>(&self, msg: &'a T, deadline: Deadline) -> Result<(), (WaitFailure, &'a T)> {
        let var = (msg as *const T).cast_mut().cast::<u8>();
        self.ch
            .transfer(Role::Sender, var, deadline, &self.peer)
            .map_err(|f| (f, msg))
    }

    fn reachable(&self, msg: &T) -> bool {
        self.ch
            .backing
            .reachable((msg as *const T).cast(), size_of::<T>())
    }

    /// Sends `msg`: waits for the receiver, then the message is copied once, from `msg`
    /// straight into the receiver's target variable.
    pub fn send<'a>(&self, msg: &'a T) -> Result<(), SendError<&'a T>> {
        if !self.reachable(msg) {
            return Err(SendError::NotShared(msg));
        }
        self.send_with(msg, Deadline::Never)
            .map_err(|(_, m)| SendError::Disconnected(m))
    }

    /// Sends `msg` only if the receiver is already waiting.
    pub fn try_send<'a>(&self, msg: &'a T) -> Result<(), TrySendError<&'a T>> {
        if !self.reachable(msg) {
            return Err(TrySendError::NotShared(msg));
        }
        self.send_with(msg, Deadline::Now)
            .map_err(|(f, m)| TrySendError::from_wait(f, m))
    }

    /// Sends `msg`, waiting at most `timeout` for the receiver.
    pub fn send_timeout<'a>(
        &self,
        msg: &'a T,
        timeout: Duration,
    ) -> Result<(), SendTimeoutError<&'a T>> {
        if !self.reachable(msg) {
            return Err(SendTimeoutError::NotShared(msg));
        }
        self.send_with(msg, Deadline::after(timeout))
            .map_err(|(f, m)| SendTimeoutError::from_wait(f, m))
    }
}

impl<T: Shareable + Copy> SyncReceiver<T> {
    fn recv_with(&self, target: &mut T, deadline: Deadline) -> Result<(), WaitFailure> {
        let var = (target as *mut T).cast::<u8>();
        self.ch.transfer(Role::Receiver, var, deadline, &self.peer)
    }

    fn reachable(&self, target: &T) -> bool {
        self.ch
            .backing
            .reachable((target as *const T).cast(), size_of::<T>())
    }

    /// Receives into `target`: waits for the sender; the message is copied once, from the
    /// sender's variable straight into `target`.
    pub fn recv(&self, target: &mut T) -> Result<(), RecvError> {
        if !self.reachable(target) {
            return Err(RecvError::NotShared);
        }
        self.recv_with(target, Deadline::Never)
            .map_err(|_| RecvError::Disconnected)
    }

    /// Receives into `target` only if a sender is already waiting.
    pub fn try_recv(&self, target: &mut T) -> Result<(), TryRecvError> {
        if !self.reachable(target) {
            return Err(TryRecvError::NotShared);
        }
        self.recv_with(target, Deadline::Now)
            .map_err(TryRecvError::from)
    }

    /// Receives into `target`, waiting at most `timeout`.
    pub fn recv_timeout(&self, target: &mut T, timeout: Duration) -> Result<(), RecvTimeoutError> {
        if !self.reachable(target) {
            return Err(RecvTimeoutError::NotShared);
        }
        self.recv_with(target, Deadline::after(timeout))
            .map_err(RecvTimeoutError::from)
    }
}

impl<T: Shareable + Copy> Drop for SyncSender<T> {
    fn drop(&mut self) {
        self.ch.close(Role::Sender);
    }
}

impl<T: Shareable + Copy> Drop for SyncReceiver<T> {
    fn drop(&mut self) {
        self.ch.close(Role::Receiver);
    }
}
