//! C = A x B on [`N`] x [`N`] matrices of wrapping 64-bit integers: node 0 writes A and B once,
//! every node reads them (read-shared pages: copies on every node, no invalidations) and
//! computes a band of C's rows.

use super::{pseudo_random, share};
use crate::cluster::Dsm;
use crate::handles::DsmVec;
use crate::types::DsmError;

/// The matrices' side (32 x 32 u64: 2 pages each).
pub const N: usize = 32;

fn inputs() -> (Vec<u64>, Vec<u64>) {
    let a = pseudo_random(0xa11, N * N)
        .into_iter()
        .map(|x| x % 1000)
        .collect();
    let b = pseudo_random(0xb22, N * N)
        .into_iter()
        .map(|x| x % 1000)
        .collect();
    (a, b)
}

fn dot(a: impl Fn(usize) -> u64, b: impl Fn(usize) -> u64, r: usize, c: usize) -> u64 {
    (0..N).fold(0u64, |acc, k| {
        acc.wrapping_add(a(r * N + k).wrapping_mul(b(k * N + c)))
    })
}

/// The whole product on one node, for the check.
pub fn sequential() -> Vec<u64> {
    let (a, b) = inputs();
    (0..N * N)
        .map(|i| dot(|j| a[j], |j| b[j], i / N, i % N))
        .collect()
}

/// Computes this node's rows of C; true if C equals the sequential product.
pub fn run(dsm: &Dsm) -> Result<bool, DsmError> {
    if dsm.id() == 0 {
        let (a_init, b_init) = inputs();
        let a = DsmVec::<u64>::new_zeroed(dsm, N * N)?;
        let b = DsmVec::<u64>::new_zeroed(dsm, N * N)?;
        let c = DsmVec::<u64>::new_zeroed(dsm, N * N)?;
        for i in 0..N * N {
            a.set(i, a_init[i]);
            b.set(i, b_init[i]);
        }
        dsm.publish(1, a.offset() as u64);
        dsm.publish(2, b.offset() as u64);
        dsm.publish(3, c.offset() as u64);
    }
    dsm.barrier(1)?;
    let a = DsmVec::<u64>::attach(dsm, dsm.lookup(1) as usize, N * N)?;
    let b = DsmVec::<u64>::attach(dsm, dsm.lookup(2) as usize, N * N)?;
    let c = DsmVec::<u64>::attach(dsm, dsm.lookup(3) as usize, N * N)?;
    for r in share(N, dsm.id(), dsm.nodes()) {
        for col in 0..N {
            c.set(r * N + col, dot(|i| a.get(i), |i| b.get(i), r, col));
        }
    }
    dsm.barrier(2)?;
    Ok(c.to_vec() == sequential())
}
