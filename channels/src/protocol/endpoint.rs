//! One side of a channel as recorded in shared memory: its PCB (futex word and owner pid) and
//! whether it has been closed.

use crate::pcb::Pcb;
use crate::sync::{AtomicU32, Ordering};

/// The shared record of one endpoint (sender side or receiver side) of a channel.
#[repr(C)]
#[derive(Debug, Default)]
pub struct EndpointRecord {
    /// The process control block the endpoint sleeps on; its pid names the owner.
    pub pcb: Pcb,
    closed: AtomicU32,
}

impl EndpointRecord {
    /// An unowned, open record.
    pub fn new() -> Self {
        Self {
            pcb: Pcb::new(),
            closed: AtomicU32::new(0),
        }
    }

    /// Takes the endpoint for `pid`. Succeeds if nobody holds it, if its holder closed it, or if
    /// `is_dead(holder)` says the holder died; returns the pid that holds it otherwise.
    pub fn connect(&self, pid: u32, is_dead: impl Fn(u32) -> bool) -> Result<(), u32> {
        loop {
            let holder = self.pcb.pid();
            let free = holder == 0 || self.is_closed() || is_dead(holder);
            if !free {
                return Err(holder);
            }
            if self.pcb.claim(holder, pid) {
                self.closed.store(0, Ordering::SeqCst);
                return Ok(());
            }
        }
    }

    /// Marks the endpoint closed and wakes `peer` so that a waiting peer sees it.
    pub fn close(&self, peer: &EndpointRecord) {
        self.closed.store(1, Ordering::SeqCst);
        peer.pcb.notify();
    }

    /// Whether the endpoint was closed.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst) != 0
    }
}
