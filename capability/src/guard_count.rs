//! The lock-free heart of capability acquire/release: a count of live guards over a
//! lazily created mapping, with a generation check for revocation.
//!
//! - acquire, fast path: if at least one guard is live, the mapping exists; increment
//!   the count with a CAS that never starts from zero, then check the generation.
//! - acquire, slow path (count zero): under the lock, check the generation, create the
//!   mapping if the last release already dropped it (or reuse it if that release has
//!   not got the lock yet), then increment.
//! - release: decrement; whoever takes the count to zero takes the lock and, if the
//!   count is still zero, drops the mapping (unmaps).
//!
//! The same code runs under loom (`--cfg memlink_loom`) in loom-tests/, with a test
//! type in place of the mapping.

use crate::sync::{AtomicU64, AtomicUsize, Mutex, Ordering};

/// Why an acquire through a [`GuardCount`] failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuardAcquireError<E> {
    /// The generation moved on: the capability was revoked.
    Revoked,
    /// Creating the mapping failed.
    Map(E),
}

/// A count of live guards over a mapping `M` that exists while the count is nonzero.
#[derive(Debug)]
pub struct GuardCount<M> {
    count: AtomicUsize,
    /// Address of the live mapping (valid whenever `count > 0`).
    addr: AtomicUsize,
    slot: Mutex<Option<M>>,
}

impl<M> Default for GuardCount<M> {
    fn default() -> Self {
        Self::new()
    }
}

impl<M> GuardCount<M> {
    /// No guards, no mapping.
    pub fn new() -> GuardCount<M> {
        GuardCount {
            count: AtomicUsize::new(0),
            addr: AtomicUsize::new(0),
            slot: Mutex::new(None),
        }
    }

    /// Takes a guard: returns the mapping's address. `map` creates the mapping (and
    /// returns its address) when none exists. Fails with `Revoked` when `generation`
    /// no longer holds `expected`; a failed acquire leaves no guard behind.
    #[inline]
    pub fn acquire<E>(
        &self,
        generation: &AtomicU64,
        expected: u64,
        map: impl FnOnce() -> Result<(M, usize), E>,
    ) -> Result<usize, GuardAcquireError<E>> {
        let mut c = self.count.load(Ordering::Relaxed);
        while c > 0 {
            match self
                .count
                .compare_exchange_weak(c, c + 1, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => {
                    if generation.load(Ordering::Acquire) != expected {
                        self.release();
                        return Err(GuardAcquireError::Revoked);
                    }
                    return Ok(self.addr.load(Ordering::Relaxed));
                }
                Err(now) => c = now,
            }
        }
        self.acquire_slow(generation, expected, map)
    }

    #[cold]
    fn acquire_slow<E>(
        &self,
        generation: &AtomicU64,
        expected: u64,
        map: impl FnOnce() -> Result<(M, usize), E>,
    ) -> Result<usize, GuardAcquireError<E>> {
        let mut slot = self.slot.lock().unwrap_or_else(|p| p.into_inner());
        if generation.load(Ordering::Acquire) != expected {
            return Err(GuardAcquireError::Revoked);
        }
        if slot.is_none() {
            let (m, addr) = map().map_err(GuardAcquireError::Map)?;
            *slot = Some(m);
            self.addr.store(addr, Ordering::Relaxed);
        }
        // Publishes `addr` to fast-path acquirers (their CAS reads this increment).
        self.count.fetch_add(1, Ordering::AcqRel);
        Ok(self.addr.load(Ordering::Relaxed))
    }

    /// Gives a guard back; the last one drops the mapping.
    #[inline]
    pub fn release(&self) {
        if self.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.release_last();
        }
    }

    #[cold]
    fn release_last(&self) {
        let mut slot = self.slot.lock().unwrap_or_else(|p| p.into_inner());
        // A slow acquire may have revived the mapping before we got the lock.
        if self.count.load(Ordering::Acquire) == 0 {
            // Unmap under the lock: a slow acquire waiting for it maps afresh only after
            // the old mapping is gone, so at most one mapping exists at a time.
            self.addr.store(0, Ordering::Relaxed);
            *slot = None;
        }
    }

    /// Number of live guards.
    pub fn guards(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    /// Whether the mapping currently exists.
    pub fn is_mapped(&self) -> bool {
        self.slot
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }
}
