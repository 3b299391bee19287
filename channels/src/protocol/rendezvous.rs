//! The synchronous zero-copy rendezvous of seed 001: a descriptor with a wait flag, a length,
//! `val_ref` and `PCB_ref`, and no message buffer.
//!
//! Whoever arrives first publishes a reference to its variable (the sender's message variable
//! or the receiver's target variable) and its PCB, then waits. The second to arrive copies
//! straight from the message variable into the target variable (the only copy), marks the
//! rendezvous done and wakes the first through its PCB.
//!
//! The wait flag is one 32-bit word: a 30-bit generation and a 2-bit phase (`EMPTY`,
//! `SENDER_WAITING`, `RECEIVER_WAITING`, `CLAIMED`). `CLAIMED` is a short exclusive phase in
//! which the first arriver fills the descriptor or the second arriver copies. Completing a
//! rendezvous sets the phase back to `EMPTY` and bumps the generation; the waiter is done when
//! the generation moved past the one it published in.

use crate::pcb::Pcb;
use crate::protocol::endpoint::EndpointRecord;
use crate::sync::{AtomicU32, AtomicU64, Ordering, spin_hint};
use crate::wait::{Deadline, WaitFailure, WaitMode, wait_for};
use crossbeam_utils::CachePadded;

const EMPTY: u32 = 0;
const SENDER_WAITING: u32 = 1;
const RECEIVER_WAITING: u32 = 2;
const CLAIMED: u32 = 3;
const PHASE_MASK: u32 = 3;
const SPINS_PER_LIVENESS_CHECK: u32 = 1 << 14;

fn flag(generation: u32, phase: u32) -> u32 {
    (generation << 2) | phase
}

fn generation(flag: u32) -> u32 {
    flag >> 2
}

/// Which side of the rendezvous a caller is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Offers a message variable.
    Sender,
    /// Offers a target variable.
    Receiver,
}

impl Role {
    fn waiting_phase(self) -> u32 {
        match self {
            Role::Sender => SENDER_WAITING,
            Role::Receiver => RECEIVER_WAITING,
        }
    }

    fn peer(self) -> Role {
        match self {
            Role::Sender => Role::Receiver,
            Role::Receiver => Role::Sender,
        }
    }
}

/// The channel descriptor of the seed, field for field.
#[repr(C)]
#[derive(Debug)]
pub struct SyncDescriptor {
    /// The wait flag: generation and phase (who waits, if anyone).
    pub wait: AtomicU32,
    /// Length in bytes of the waiting party's variable.
    pub length: AtomicU64,
    /// Shared reference (an address valid in every participant) to the waiting party's
    /// message or target variable.
    pub val_ref: AtomicU64,
    /// Shared reference to the waiting party's PCB.
    pub pcb_ref: AtomicU64,
}

/// A synchronous channel in shared memory: the descriptor and the two endpoint records.
#[repr(C)]
#[derive(Debug)]
pub struct SyncShared {
    desc: CachePadded<SyncDescriptor>,
    sender: CachePadded<EndpointRecord>,
    receiver: CachePadded<EndpointRecord>,
    mode: AtomicU32,
}

/// One side's offer in a rendezvous: its role, and the variable it sends from (sender) or
/// receives into (receiver).
#[derive(Debug, Clone, Copy)]
pub struct Offer {
    /// Which side this is.
    pub role: Role,
    /// The variable: readable (sender) or writable (receiver) bytes.
    pub var: *mut u8,
    /// Its length in bytes.
    pub len: usize,
}

enum Arrival {
    /// We were second and completed the rendezvous.
    Completed,
    /// We were first and published our variable in this generation.
    Published(u32),
}

impl SyncShared {
    /// A fresh channel with no one waiting.
    pub fn new(mode: WaitMode) -> Self {
        Self {
            desc: CachePadded::new(SyncDescriptor {
                wait: AtomicU32::new(flag(0, EMPTY)),
                length: AtomicU64::new(0),
                val_ref: AtomicU64::new(0),
                pcb_ref: AtomicU64::new(0),
            }),
            sender: CachePadded::new(EndpointRecord::new()),
            receiver: CachePadded::new(EndpointRecord::new()),
            mode: AtomicU32::new(mode.to_word()),
        }
    }

    /// The waiting policy chosen at creation, as the shared word says now. A peer with write
    /// access may change that word: callers read it once (checked against the layout's seal)
    /// and pass their private copy to [`SyncShared::transfer`].
    pub fn mode(&self) -> WaitMode {
        WaitMode::from_word(self.mode.load(Ordering::Relaxed))
    }

    /// Where the mode word is, in bytes from the start of the channel (for the layout's seal).
    pub const MODE_OFFSET: usize = std::mem::offset_of!(SyncShared, mode);

    /// The descriptor (for inspection).
    pub fn descriptor(&self) -> &SyncDescriptor {
        &self.desc
    }

    /// The shared record of one side.
    pub fn endpoint(&self, role: Role) -> &EndpointRecord {
        match role {
            Role::Sender => &self.sender,
            Role::Receiver => &self.receiver,
        }
    }

    /// Performs one rendezvous as `role`: the sender offers `len` bytes at `var`, the receiver
    /// offers `len` writable bytes at `var`. Exactly one copy of `min(len, peer len)` bytes is
    /// made, by whichever side arrives second.
    ///
    /// `gone(thorough)` tells whether the peer closed or died (see [`wait_for`]). On `Err` no
    /// byte was copied, except when the peer died in the middle of copying (`Disconnected`).
    ///
    /// # Safety
    /// `var` must point to `len` bytes that are readable (sender) or writable (receiver), that
    /// the caller does not touch until this returns, and that the peer can reach at the same
    /// address (same process, or shared memory mapped at the same address in both). At most one
    /// caller per role may be inside `transfer` at a time.
    pub unsafe fn transfer(
        &self,
        role: Role,
        var: *mut u8,
        len: usize,
        deadline: Deadline,
        gone: impl FnMut(bool) -> bool,
    ) -> Result<(), WaitFailure> {
        let mode = self.mode();
        // SAFETY: forwarded from this function's contract.
        unsafe {
            self.transfer_within(Offer { role, var, len }, mode, deadline, gone, &|_, _| true)
        }
    }

    /// [`SyncShared::transfer`] for a descriptor in shared memory, where a peer may have
    /// written anything into `val_ref`: the copy goes through the peer's variable only if
    /// `reachable(val_ref, n)` says those bytes are shared memory of this channel (for a
    /// region: inside it). A descriptor that fails the check, or whose `PCB_ref` is not the
    /// peer endpoint's PCB, is never copied through: the call fails with `Disconnected`.
    /// `mode` is the caller's private copy of the waiting policy, never re-read from the
    /// shared word.
    ///
    /// # Safety
    /// As for [`SyncShared::transfer`]; `reachable` must only accept memory that stays mapped,
    /// readable and writable, while this call runs.
    pub unsafe fn transfer_within(
        &self,
        offer: Offer,
        mode: WaitMode,
        deadline: Deadline,
        mut gone: impl FnMut(bool) -> bool,
        reachable: &dyn Fn(*const u8, usize) -> bool,
    ) -> Result<(), WaitFailure> {
        // SAFETY: forwarded from this function's contract.
        let arrival = unsafe { self.arrive(offer, mode, deadline, &mut gone, reachable) }?;
        let role = offer.role;
        let generation = match arrival {
            Arrival::Completed => return Ok(()),
            Arrival::Published(generation) => generation,
        };
        let wait = &self.desc.wait;
        let done = || (self::generation(wait.load(Ordering::Acquire)) != generation).then_some(());
        let me = self.endpoint(role);
        let failure = match wait_for(&me.pcb, mode, deadline, done, &mut gone) {
            Ok(()) => return Ok(()),
            Err(failure) => failure,
        };
        // Withdraw our offer, unless the peer already claimed it: then it is copying right now
        // and we wait for it to finish.
        let mine = flag(generation, role.waiting_phase());
        let mut spins = 0u32;
        loop {
            let now = wait.load(Ordering::Acquire);
            if self::generation(now) != generation {
                return Ok(());
            }
            if now == mine {
                if wait
                    .compare_exchange(
                        now,
                        flag(generation, EMPTY),
                        Ordering::AcqRel,
                        Ordering::Acquire,
                    )
                    .is_ok()
                {
                    return Err(failure);
                }
                continue;
            }
            spins = spins.wrapping_add(1);
            if spins % SPINS_PER_LIVENESS_CHECK == 0 && gone(true) {
                return Err(WaitFailure::Disconnected);
            }
            spin_hint();
        }
    }

    /// First half of a rendezvous: publish (first) or copy and wake (second).
    ///
    /// # Safety
    /// As for [`SyncShared::transfer`].
    unsafe fn arrive(
        &self,
        offer: Offer,
        mode: WaitMode,
        deadline: Deadline,
        gone: &mut impl FnMut(bool) -> bool,
        reachable: &dyn Fn(*const u8, usize) -> bool,
    ) -> Result<Arrival, WaitFailure> {
        let Offer { role, var, len } = offer;
        let wait = &self.desc.wait;
        let mut spins = 0u32;
        loop {
            let now = wait.load(Ordering::Acquire);
            let generation = generation(now);
            let phase = now & PHASE_MASK;
            if phase == EMPTY {
                if matches!(deadline, Deadline::Now) {
                    // A try-operation only succeeds with a peer already waiting.
                    return Err(if gone(false) {
                        WaitFailure::Disconnected
                    } else {
                        WaitFailure::TimedOut
                    });
                }
                let claimed = flag(generation, CLAIMED);
                if wait
                    .compare_exchange(now, claimed, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
                {
                    let me = self.endpoint(role);
                    self.desc.length.store(len as u64, Ordering::Relaxed);
                    self.desc.val_ref.store(var as u64, Ordering::Relaxed);
                    self.desc
                        .pcb_ref
                        .store(&me.pcb as *const Pcb as u64, Ordering::Relaxed);
                    wait.store(flag(generation, role.waiting_phase()), Ordering::Release);
                    return Ok(Arrival::Published(generation));
                }
                continue;
            }
            if phase == role.peer().waiting_phase() {
                let claimed = flag(generation, CLAIMED);
                if wait
                    .compare_exchange(now, claimed, Ordering::Acquire, Ordering::Relaxed)
                    .is_err()
                {
                    continue;
                }
                let peer_len = self.desc.length.load(Ordering::Relaxed) as usize;
                let peer_var = self.desc.val_ref.load(Ordering::Relaxed) as *mut u8;
                let peer_pcb = self.desc.pcb_ref.load(Ordering::Relaxed) as *const Pcb;
                let n = len.min(peer_len);
                let peer_record = &self.endpoint(role.peer()).pcb as *const Pcb;
                if peer_var.is_null() || peer_pcb != peer_record || !reachable(peer_var, n) {
                    // A torn or forged descriptor: never copy through it, never wake through
                    // it. Leave the rendezvous as it was.
                    wait.store(now, Ordering::Release);
                    return Err(WaitFailure::Disconnected);
                }
                let (src, dst) = match role {
                    Role::Sender => (var as *const u8, peer_var),
                    Role::Receiver => (peer_var as *const u8, var),
                };
                // SAFETY: our side is valid per this function's contract; the peer's side was
                // published by the peer under the same contract and stays valid until the
                // generation changes, which only we do, below. The two never overlap: they
                // are distinct variables of the two parties.
                unsafe { std::ptr::copy_nonoverlapping(src, dst, n) };
                wait.store(
                    flag(generation.wrapping_add(1) & (u32::MAX >> 2), EMPTY),
                    Ordering::Release,
                );
                // SAFETY: `peer_pcb` is the peer's endpoint record inside this same shared
                // channel (checked above), which outlives this call because we hold a handle.
                unsafe { (*peer_pcb).notify_for(mode) };
                return Ok(Arrival::Completed);
            }
            // CLAIMED: the peer is filling the descriptor or copying; it is a few stores away.
            spins = spins.wrapping_add(1);
            if spins % SPINS_PER_LIVENESS_CHECK == 0 && gone(true) {
                return Err(WaitFailure::Disconnected);
            }
            spin_hint();
        }
    }
}
