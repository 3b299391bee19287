//! Sorts [`LEN`] pseudo-random integers: node 0 writes them, every node sorts its chunk in
//! place, node 0 merges the sorted chunks into the output, and every node checks the output
//! against a sequential sort.

use super::{pseudo_random, share};
use crate::cluster::Dsm;
use crate::handles::DsmVec;
use crate::types::DsmError;

/// The number of elements (4096 u64: 8 pages per array).
pub const LEN: usize = 4096;

fn input() -> Vec<u64> {
    pseudo_random(0x5047, LEN)
}

/// Sorts, merges and checks; true if the output equals the sequential sort.
pub fn run(dsm: &Dsm) -> Result<bool, DsmError> {
    if dsm.id() == 0 {
        let data = DsmVec::<u64>::new_zeroed(dsm, LEN)?;
        let out = DsmVec::<u64>::new_zeroed(dsm, LEN)?;
        for (i, v) in input().into_iter().enumerate() {
            data.set(i, v);
        }
        dsm.publish(1, data.offset() as u64);
        dsm.publish(2, out.offset() as u64);
    }
    dsm.barrier(1)?;
    let data = DsmVec::<u64>::attach(dsm, dsm.lookup(1) as usize, LEN)?;
    let out = DsmVec::<u64>::attach(dsm, dsm.lookup(2) as usize, LEN)?;
    let mine = share(LEN, dsm.id(), dsm.nodes());
    let mut chunk: Vec<u64> = mine.clone().map(|i| data.get(i)).collect();
    chunk.sort_unstable();
    for (i, v) in mine.zip(chunk) {
        data.set(i, v);
    }
    dsm.barrier(2)?;
    if dsm.id() == 0 {
        let mut heads: Vec<std::ops::Range<usize>> = (0..dsm.nodes())
            .map(|n| share(LEN, n as u16, dsm.nodes()))
            .collect();
        for slot in 0..LEN {
            let next = heads
                .iter()
                .enumerate()
                .filter(|(_, r)| !r.is_empty())
                .min_by_key(|(_, r)| data.get(r.start))
                .map(|(n, _)| n);
            let Some(n) = next else { break };
            out.set(slot, data.get(heads[n].start));
            heads[n].start += 1;
        }
    }
    dsm.barrier(3)?;
    let mut expect = input();
    expect.sort_unstable();
    Ok(out.to_vec() == expect)
}
