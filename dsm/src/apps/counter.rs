//! Lock-protected increments: every node adds 1 to one shared counter [`INCREMENTS`] times,
//! each time under cluster lock [`LOCK`]; the total must be exactly `nodes * INCREMENTS`.

use crate::cluster::Dsm;
use crate::handles::DsmBox;
use crate::types::DsmError;

/// Increments per node.
pub const INCREMENTS: u64 = 40;
/// The lock that protects the counter.
pub const LOCK: u32 = 1;

/// Runs this node's increments; true if the final count is exact.
pub fn run(dsm: &Dsm) -> Result<bool, DsmError> {
    if dsm.id() == 0 {
        let counter = DsmBox::new(dsm, 0u64)?;
        dsm.publish(1, counter.offset() as u64);
    }
    dsm.barrier(1)?;
    let counter = DsmBox::<u64>::attach(dsm, dsm.lookup(1) as usize)?;
    for _ in 0..INCREMENTS {
        dsm.lock(LOCK)?;
        let v = counter.get();
        counter.set(v + 1);
        dsm.unlock(LOCK)?;
    }
    dsm.barrier(2)?;
    let total = counter.get();
    Ok(total == INCREMENTS * dsm.nodes() as u64)
}
