//! What the DSM benches share: the block of fresh pages node 0 allocates for all nodes, and
//! the numbered barriers that separate a bench's phases.

use crate::cluster::Dsm;
use crate::types::{DsmError, PAGE_SIZE};

/// The barriers between a bench's phases: each [`Phases::next`] waits at the next id after
/// the bench's base, so every node walks the same sequence of ids.
pub(crate) struct Phases<'a> {
    dsm: &'a Dsm,
    last: u32,
}

impl<'a> Phases<'a> {
    /// Phases whose barriers take the ids after `base`.
    pub(crate) fn new(dsm: &'a Dsm, base: u32) -> Self {
        Self { dsm, last: base }
    }

    /// Waits until every node reaches this phase's barrier.
    pub(crate) fn next(&mut self) -> Result<(), DsmError> {
        self.last += 1;
        self.dsm.barrier(self.last)
    }

    /// The first phase: node 0 allocates `pages` fresh pages and publishes them in directory
    /// slot `slot`; after the barrier every node returns the block's address.
    pub(crate) fn shared_block(&mut self, slot: usize, pages: usize) -> Result<usize, DsmError> {
        if self.dsm.id() == 0 {
            let block = self.dsm.alloc(pages * PAGE_SIZE, PAGE_SIZE)?;
            self.dsm.publish(slot, block as u64);
        }
        self.next()?;
        Ok(self.dsm.lookup(slot) as usize)
    }
}
