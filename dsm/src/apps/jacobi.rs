//! A Jacobi stencil on an n x n grid with fixed borders (default [`N`] x [`N`], [`SWEEPS`]
//! sweeps; [`run_sized`] takes any size): each sweep sets every inner point to the mean of its
//! four neighbours in the previous grid. Node `i` initialises and computes a band of rows; a
//! barrier separates sweeps, so only the bands' edge rows travel between nodes as pages. The
//! grids start on a page boundary, so with n a multiple of 512 every row starts a page and two
//! bands never share one.

use std::time::{Duration, Instant};

/// How long a node's part of a Jacobi run took.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// Allocation, initialisation of the node's band (its pages move here from node 0) and
    /// the sweeps; not the check.
    pub total: Duration,
    /// The sweeps alone (from the barrier after initialisation to the last one).
    pub sweeps: Duration,
}

use super::{pseudo_random, share};
use crate::cluster::Dsm;
use crate::types::{Access, Backend, DsmError, PAGE_SIZE};

/// The default grid side (64 x 64 doubles: 8 pages per grid, 8 rows per page).
pub const N: usize = 64;
/// The largest grid side `memlink dsm` takes.
pub const MAX_N: usize = 16384;
/// The default number of sweeps.
pub const SWEEPS: usize = 10;
/// The barriers the sweeps alternate between.
const SWEEP_BARRIERS: [u32; 2] = [10, 11];

/// The shared pages a cluster needs to run an `n` x `n` grid: two grids, each on its own pages,
/// plus the directory page.
pub fn pages_for(n: usize) -> u32 {
    let grid = (n * n * size_of::<f64>()).div_ceil(PAGE_SIZE);
    (2 * grid + 2) as u32
}

/// The bytes one node of an `n` x `n` run may hold at once: the whole shared region (node 0
/// starts as the owner of every page, so every page of both grids is resident there; the
/// others end up with most of it, since the check reads the whole final grid), with `uffd`
/// the last contents of the pages it gave away (kept aside for the runtime), and the two grids
/// of the sequential computation it checks against.
pub fn working_set_bytes(n: usize, backend: Backend) -> u64 {
    let grid = (n as u64).saturating_mul(n as u64).saturating_mul(8);
    let region = u64::from(pages_for(n)).saturating_mul(PAGE_SIZE as u64);
    let kept_aside = match backend {
        Backend::Uffd => region,
        Backend::Sigsegv => 0,
    };
    region
        .saturating_add(kept_aside)
        .saturating_add(grid.saturating_mul(2))
}

/// Row `r` of the starting grid.
fn initial_row(n: usize, r: usize) -> Vec<f64> {
    pseudo_random(0x1ac0b1 ^ ((r as u64) << 20) ^ n as u64, n)
        .into_iter()
        .map(|x| (x % 1000) as f64 / 10.0)
        .collect()
}

/// One row of a sweep: `out[c]` (inner columns) from the rows above, at and below it.
fn stencil_row(up: &[f64], mid: &[f64], down: &[f64], out: &mut [f64]) {
    let n = out.len();
    for c in 1..n - 1 {
        out[c] = 0.25 * (up[c] + down[c] + mid[c - 1] + mid[c + 1]);
    }
}

/// The whole computation on one node, for the check.
pub fn sequential(n: usize, sweeps: usize) -> Vec<f64> {
    let mut a: Vec<f64> = (0..n).flat_map(|r| initial_row(n, r)).collect();
    let mut b = a.clone();
    for _ in 0..sweeps {
        for r in 1..n - 1 {
            let row = |r: usize| &a[r * n..(r + 1) * n];
            stencil_row(row(r - 1), row(r), row(r + 1), &mut b[r * n..(r + 1) * n]);
        }
        std::mem::swap(&mut a, &mut b);
    }
    a
}

/// Runs this node's band of the default grid; true if the final grid equals the sequential
/// computation bit for bit.
pub fn run(dsm: &Dsm) -> Result<bool, DsmError> {
    run_sized(dsm, N, SWEEPS, true).map(|(verified, _)| verified)
}

/// Runs this node's band of an `n` x `n` grid (n >= 3) for `sweeps` sweeps. Returns whether
/// the final grid equals the sequential computation bit for bit, and how long the parallel
/// part took. With `prefetch`, each sweep starts by fetching, in one round, the rows it
/// needs from its neighbours (to read) and its own edge rows (to write, taking them back
/// from the neighbours' read copies); without it, each of those pages is one fault.
pub fn run_sized(
    dsm: &Dsm,
    n: usize,
    sweeps: usize,
    prefetch: bool,
) -> Result<(bool, Timing), DsmError> {
    if n < 3 {
        return Err(DsmError::Config(format!(
            "a Jacobi grid needs a side of at least 3, not {n}"
        )));
    }
    let start = Instant::now();
    let bytes = n * n * size_of::<f64>();
    if dsm.id() == 0 {
        let a = dsm.alloc(bytes, PAGE_SIZE)?;
        let b = dsm.alloc(bytes, PAGE_SIZE)?;
        dsm.publish(1, a as u64);
        dsm.publish(2, b as u64);
    }
    dsm.barrier(1)?;
    let offsets = [dsm.lookup(1) as usize, dsm.lookup(2) as usize];
    let grids = offsets.map(|offset| dsm.at::<f64>(offset));
    let band = share(n - 2, dsm.id(), dsm.nodes());
    let rows = band.start + 1..band.end + 1;
    // This node initialises its rows (the first and last node also the border rows) in both
    // grids.
    let first = if band.start == 0 { 0 } else { rows.start };
    let last = if band.end == n - 2 { n } else { rows.end };
    for r in first..last {
        let row = initial_row(n, r);
        for g in grids {
            // SAFETY: row r lies inside the grid block node 0 allocated (n x n f64s, never
            // freed while the app runs); rows first..last are this node's alone, and no other
            // thread of this process touches the block.
            let dst = unsafe { std::slice::from_raw_parts_mut(g.add(r * n), n) };
            dst.copy_from_slice(&row);
        }
    }
    dsm.barrier(SWEEP_BARRIERS[1])?;
    let sweeps_start = Instant::now();
    for sweep in 0..sweeps {
        let (src, dst) = (grids[sweep % 2], grids[(sweep + 1) % 2]);
        // The pages this sweep needs from elsewhere, requested in one round: the neighbours'
        // rows next to the band (their owners wrote them last sweep) to read, and the band's
        // own edge rows to write (the neighbours read them last sweep, so they hold copies).
        // Rows outside the grid's inner part are this node's own borders: nothing to fetch.
        let fetching = if prefetch && !rows.is_empty() {
            let row_bytes = n * size_of::<f64>();
            let row_at = |grid: usize, r: usize| {
                let start = offsets[grid] + r * row_bytes;
                start..start + row_bytes
            };
            let (from, to) = (sweep % 2, (sweep + 1) % 2);
            Some(dsm.prefetch_start(&[
                (row_at(from, rows.start - 1), Access::Read),
                (row_at(from, rows.end), Access::Read),
                (row_at(to, rows.start), Access::Write),
                (row_at(to, rows.end - 1), Access::Write),
            ])?)
        } else {
            None
        };
        if !rows.is_empty() {
            // SAFETY: both grids are n x n f64 blocks inside the region (see above). During a
            // sweep no node writes `src` (sweeps are separated by barriers), so a shared view of
            // it is sound; rows `rows` of `dst` are written by this node only, and this view
            // covers nothing else. The DSM brings pages in, coherent, before they are touched
            // (prefetched or faulted).
            let (src, dst) = unsafe {
                (
                    std::slice::from_raw_parts(src, n * n),
                    std::slice::from_raw_parts_mut(dst.add(rows.start * n), rows.len() * n),
                )
            };
            let row = |r: usize| &src[r * n..(r + 1) * n];
            let mut compute = |i: usize| {
                let r = rows.start + i;
                stencil_row(row(r - 1), row(r), row(r + 1), &mut dst[i * n..(i + 1) * n]);
            };
            // The inner rows need nothing from elsewhere: they run while the pages travel.
            let last = rows.len() - 1;
            (1..last).for_each(&mut compute);
            if let Some(fetching) = fetching {
                fetching.wait()?;
            }
            compute(0);
            if last > 0 {
                compute(last);
            }
        }
        dsm.barrier(SWEEP_BARRIERS[sweep % 2])?;
    }
    let took = Timing {
        total: start.elapsed(),
        sweeps: sweeps_start.elapsed(),
    };
    // The check reads the whole final grid (every other node's rows travel here too).
    let expect = sequential(n, sweeps);
    // SAFETY: the final grid (see above); every node is past the last barrier, so nobody
    // writes it any more.
    let result = unsafe { std::slice::from_raw_parts(grids[sweeps % 2], n * n) };
    let verified = result
        .iter()
        .zip(&expect)
        .all(|(a, b)| a.to_bits() == b.to_bits());
    Ok((verified, took))
}
