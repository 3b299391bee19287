//! A Jacobi stencil on a [`N`] x [`N`] grid with fixed borders: each sweep sets every inner
//! point to the mean of its four neighbours in the previous grid. Node `i` computes a band of
//! rows; a barrier separates sweeps, so the bands' edge rows travel between nodes as pages.

use super::{pseudo_random, share};
use crate::cluster::Dsm;
use crate::handles::DsmVec;
use crate::types::DsmError;

/// The grid's side (64 x 64 doubles: 8 pages per grid, 8 rows per page).
pub const N: usize = 64;
/// The number of sweeps.
pub const SWEEPS: usize = 10;

fn initial() -> Vec<f64> {
    pseudo_random(0x1ac0b1, N * N)
        .into_iter()
        .map(|x| (x % 1000) as f64 / 10.0)
        .collect()
}

fn cell(prev: impl Fn(usize) -> f64, r: usize, c: usize) -> f64 {
    0.25 * (prev((r - 1) * N + c)
        + prev((r + 1) * N + c)
        + prev(r * N + c - 1)
        + prev(r * N + c + 1))
}

/// The whole computation on one node, for the check.
pub fn sequential() -> Vec<f64> {
    let mut a = initial();
    let mut b = a.clone();
    for _ in 0..SWEEPS {
        for r in 1..N - 1 {
            for c in 1..N - 1 {
                b[r * N + c] = cell(|i| a[i], r, c);
            }
        }
        std::mem::swap(&mut a, &mut b);
    }
    a
}

/// Runs this node's bands; true if the final grid equals the sequential one bit for bit.
pub fn run(dsm: &Dsm) -> Result<bool, DsmError> {
    if dsm.id() == 0 {
        let a = DsmVec::<f64>::new_zeroed(dsm, N * N)?;
        let b = DsmVec::<f64>::new_zeroed(dsm, N * N)?;
        for (i, v) in initial().into_iter().enumerate() {
            a.set(i, v);
            b.set(i, v);
        }
        dsm.publish(1, a.offset() as u64);
        dsm.publish(2, b.offset() as u64);
    }
    dsm.barrier(1)?;
    let grids = [
        DsmVec::<f64>::attach(dsm, dsm.lookup(1) as usize, N * N)?,
        DsmVec::<f64>::attach(dsm, dsm.lookup(2) as usize, N * N)?,
    ];
    let rows = share(N - 2, dsm.id(), dsm.nodes());
    for sweep in 0..SWEEPS {
        let (src, dst) = (&grids[sweep % 2], &grids[(sweep + 1) % 2]);
        for r in rows.start + 1..rows.end + 1 {
            for c in 1..N - 1 {
                dst.set(r * N + c, cell(|i| src.get(i), r, c));
            }
        }
        dsm.barrier(10 + sweep as u32)?;
    }
    let result = grids[SWEEPS % 2].to_vec();
    let expect = sequential();
    Ok(result
        .iter()
        .zip(&expect)
        .all(|(a, b)| a.to_bits() == b.to_bits()))
}
