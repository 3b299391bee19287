//! The migration benchmark behind `memlink dsm bench --suite migration`: how long a
//! suspended task with a 64 KiB stack takes from its suspension on one node to running on
//! the other, next to a remote read miss measured in the same run (the goal: within 3x).
//!
//! 2 nodes, each with a [`TaskPool`] of one worker. Node 1 first times read misses on fresh
//! pages whose only copy is at node 0 (the baseline) and publishes their median. Node 0
//! then spawns one task that shuttles between the two nodes: before each move it writes
//! every page of [`DIRTY_STACK`] bytes of its own stack (so they are held, written, on the
//! node it leaves), reads the clock (CLOCK_MONOTONIC, one clock for every process of the
//! host), calls [`crate::process::pool::migrate`], and reads the clock again as soon as it
//! runs on the other node; then it reads its whole stack back there (all of it arrived).
//! The samples stay on the task's stack, which moves with it; the task returns the medians.
//! The nodes must load the code at the same address (see [`crate::process::identity`]):
//! the launcher starts them with address-space randomisation off.
//!
//! ```no_run
//! use memlink_dsm::migration_bench::{migration_pages, run_migration_node};
//! use memlink_dsm::{Backend, NodeConfig};
//! # fn config(pages: u32) -> NodeConfig { unimplemented!() }
//! // In each of the 2 node processes:
//! if let Some(f) = run_migration_node(config(migration_pages(200)), Backend::Sigsegv, 200)? {
//!     println!("migration: {:.2} read misses", f.migrate_us / f.read_miss_us);
//! }
//! # Ok::<(), memlink_dsm::DsmError>(())
//! ```

use std::time::Instant;

use crate::bench::median_us;
use crate::cluster::Dsm;
use crate::handles::Shareable;
use crate::process::pool::{TaskPool, current_node, migrate};
use crate::types::{Backend, DsmError, NodeConfig, NodeId, PAGE_SIZE};

/// The node that spawns the task, joins it and reports.
pub const REPORTER: NodeId = 0;
/// The bytes of its stack the task writes before each move.
pub const DIRTY_STACK: usize = 40 * 1024;
/// The most samples one run takes (they live on the task's stack).
pub const MAX_SAMPLES: usize = 500;
const BARRIER_BASE: u32 = 1 << 22;
const SLOT_BLOCK: usize = 1;
const SLOT_READ_MISS: usize = 2;

/// The region (in pages) a migration bench of `iters` samples needs: a fresh page per read
/// miss, the task's block (aligned to its size) and the directory.
pub fn migration_pages(iters: usize) -> u32 {
    (iters + 2 * crate::process::pool::STACK_SIZE / PAGE_SIZE + 2) as u32
}

/// The reporter's medians, in microseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct MigrationFigures {
    /// A read of a page whose only copy is at the other node (the baseline).
    pub read_miss_us: f64,
    /// A task from its suspension on one node to running on the other.
    pub migrate_us: f64,
    /// The same, until it has also read back the [`DIRTY_STACK`] bytes of its stack there.
    pub migrate_and_touch_us: f64,
}

crate::figures_line!(
    MigrationFigures,
    "memlink-dsm-migration",
    [read_miss_us, migrate_us, migrate_and_touch_us]
);

/// The shuttle task's medians, in nanoseconds.
#[derive(Clone, Copy, Debug, Default)]
#[repr(C)]
struct ShuttleMedians {
    migrate_ns: u64,
    migrate_and_touch_ns: u64,
    /// Moves that did not land on the node asked for (0 in a correct run).
    astray: u64,
}

// SAFETY: plain integers.
unsafe impl Shareable for ShuttleMedians {}

/// CLOCK_MONOTONIC in nanoseconds: the same clock in every process of the host.
fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a live timespec; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(ts.tv_nsec as u64)
}

fn median_ns(samples: &mut [u32]) -> u64 {
    samples.sort_unstable();
    samples.get(samples.len() / 2).map_or(0, |&v| u64::from(v))
}

/// The task: `iters` moves between nodes 0 and 1 (see the module documentation).
fn shuttle(iters: u64) -> ShuttleMedians {
    let n = (iters as usize).min(MAX_SAMPLES);
    let mut stack = [0u8; DIRTY_STACK];
    let mut moved = [0u32; MAX_SAMPLES];
    let mut touched = [0u32; MAX_SAMPLES];
    let mut astray = 0;
    for i in 0..n {
        for p in (0..DIRTY_STACK).step_by(PAGE_SIZE) {
            stack[p] = stack[p].wrapping_add(i as u8 | 1);
        }
        std::hint::black_box(&mut stack);
        let to = 1 - current_node().unwrap_or(0).min(1);
        let t0 = monotonic_ns();
        if migrate(to).is_err() {
            astray += 1;
            continue;
        }
        let t1 = monotonic_ns();
        let mut sum = 0u8;
        for p in (0..DIRTY_STACK).step_by(PAGE_SIZE) {
            // SAFETY: `p` < DIRTY_STACK: a byte of `stack`, alive.
            sum = sum.wrapping_add(unsafe { std::ptr::read_volatile(&raw const stack[p]) });
        }
        std::hint::black_box(sum);
        let t2 = monotonic_ns();
        astray += u64::from(current_node() != Some(to));
        moved[i] = t1.saturating_sub(t0).min(u64::from(u32::MAX)) as u32;
        touched[i] = t2.saturating_sub(t0).min(u64::from(u32::MAX)) as u32;
    }
    ShuttleMedians {
        migrate_ns: median_ns(&mut moved[..n]),
        migrate_and_touch_ns: median_ns(&mut touched[..n]),
        astray,
    }
}

/// Joins the 2-node bench cluster of `config` (its `pages` at least
/// [`migration_pages`]`(iters)`), measures with `iters` samples (at most [`MAX_SAMPLES`])
/// and leaves. Returns the figures on node 0, `None` on node 1.
pub fn run_migration_node(
    config: NodeConfig,
    backend: Backend,
    iters: usize,
) -> Result<Option<MigrationFigures>, DsmError> {
    if config.peers.len() != 2 {
        return Err(DsmError::Config(
            "the migration bench runs on 2 nodes".into(),
        ));
    }
    if iters == 0 || iters > MAX_SAMPLES || config.pages < migration_pages(iters) {
        return Err(DsmError::Config(format!(
            "the migration bench takes 1 to {MAX_SAMPLES} samples on at least {} pages; \
             asked {iters} samples on {} pages",
            migration_pages(iters),
            config.pages
        )));
    }
    let dsm = Dsm::join(config, backend)?;
    let figures = measure(&dsm, iters)?;
    dsm.leave()?;
    Ok(figures)
}

fn measure(dsm: &Dsm, iters: usize) -> Result<Option<MigrationFigures>, DsmError> {
    let pool = TaskPool::start(dsm, 1)?;
    let me = dsm.id();
    if me == 0 {
        let block = dsm.alloc(iters * PAGE_SIZE, PAGE_SIZE)?;
        for i in 0..iters {
            // SAFETY: page i of the block just allocated, in the region.
            unsafe { dsm.at::<u8>(block + i * PAGE_SIZE).write_volatile(1) };
        }
        dsm.publish(SLOT_BLOCK, block as u64);
    }
    dsm.barrier(BARRIER_BASE)?;
    if me == 1 {
        let block = dsm.lookup(SLOT_BLOCK) as usize;
        let mut miss = Vec::with_capacity(iters);
        for i in 0..iters {
            let p = dsm.at::<u8>(block + i * PAGE_SIZE);
            let t = Instant::now();
            // SAFETY: page i of node 0's block, in the region; the read faults it in.
            let v = unsafe { p.read_volatile() };
            miss.push(t.elapsed().as_secs_f64() * 1e6);
            std::hint::black_box(v);
        }
        dsm.publish(SLOT_READ_MISS, median_us(&mut miss).to_bits());
    }
    dsm.barrier(BARRIER_BASE + 1)?;
    let mut figures = None;
    if me == REPORTER {
        let read_miss_us = f64::from_bits(dsm.lookup(SLOT_READ_MISS));
        let h = pool
            .spawn(shuttle, iters as u64)
            .map_err(|e| DsmError::Config(e.to_string()))?;
        let m = pool
            .join(h)
            .map_err(|e| DsmError::Config(format!("the shuttle task failed: {e}")))?;
        if m.astray != 0 {
            return Err(DsmError::Protocol(format!(
                "{} of {iters} moves of the shuttle task failed or landed elsewhere",
                m.astray
            )));
        }
        figures = Some(MigrationFigures {
            read_miss_us,
            migrate_us: m.migrate_ns as f64 / 1e3,
            migrate_and_touch_us: m.migrate_and_touch_ns as f64 / 1e3,
        });
    }
    dsm.barrier(BARRIER_BASE + 2)?;
    drop(pool);
    Ok(figures)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::figures_line::FiguresLine;

    #[test]
    fn figure_lines_round_trip() {
        let f = MigrationFigures {
            read_miss_us: 40.25,
            migrate_us: 90.5,
            migrate_and_touch_us: 130.0,
        };
        assert_eq!(MigrationFigures::parse_line(&f.to_line()), Some(f));
        assert_eq!(MigrationFigures::find_in("x\n"), None);
        assert_eq!(
            MigrationFigures::parse_line("memlink-dsm-migration migrate_us=1"),
            None
        );
    }
}
