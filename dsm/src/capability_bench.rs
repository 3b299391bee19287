//! The capability benchmark behind `memlink dsm bench --suite capability`: what the rights
//! cost on the protocol's paths, each next to its baseline without capabilities measured in
//! the same run, sample by sample alternately so that whatever else the host runs weighs on
//! both alike.
//!
//! - A read miss on a one-page range node 1 holds through a read-only capability (a read of
//!   the page, whose only copy is at node 0: the fault goes to the manager, which looks the
//!   rights up) against a read miss on a public page (the same, without rights). The issue
//!   asks for 1.1x. Beside it, `acquire()` and a read of such a range (the guard brings the
//!   page in without a signal).
//! - Node 0 revoking a one-page capability that every other node holds and has acquired (the
//!   `nodes - 1` copies are fenced at their nodes, in one round of messages) against node 0
//!   writing a public page every other node holds a read copy of (the `nodes - 1` copies are
//!   invalidated). The issue asks for 1.5x.
//!
//! ```no_run
//! use memlink_dsm::capability_bench::{capability_pages, run_capability_node};
//! use memlink_dsm::{Backend, NodeConfig};
//! # fn config(pages: u32) -> NodeConfig { unimplemented!() }
//! // In each node process of the cluster (2 nodes or more):
//! if let Some(f) = run_capability_node(config(capability_pages(100)), Backend::Sigsegv, 100)? {
//!     println!("revoke / invalidation: {:.2}", f.revoke_us / f.invalidation_us);
//! }
//! # Ok::<(), memlink_dsm::DsmError>(())
//! ```

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::atomic::DsmAtomic;
use crate::bench::median_us;
use crate::bench_phases::Phases;
use crate::capability::{DsmCapability, Rights};
use crate::cluster::Dsm;
use crate::types::{Backend, DsmError, NodeConfig, NodeId, PAGE_SIZE};

/// The node that times the read misses (node 0 times the revocations and invalidations).
pub const PROBER: NodeId = 1;
/// Directory slot of the block of public pages.
const SLOT_BLOCK: usize = 1;
const BARRIER_BASE: u32 = 1 << 22;
/// How long a node waits for a capability sent to it.
const WAIT: Duration = Duration::from_secs(30);

/// One page of the region, as a capability's object.
type Page = [u64; PAGE_SIZE / 8];

/// The region (in pages) a capability bench of `iters` samples needs: per sample a public
/// page read, a public page invalidated, two ranges read through a capability and a range
/// revoked, plus the directory and the allocator's room.
pub fn capability_pages(iters: usize) -> u32 {
    (5 * iters + 16) as u32
}

/// Medians, in microseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CapabilityFigures {
    /// Node 1 reads a public page whose only copy is at node 0 (the baseline of the next).
    pub read_miss_us: f64,
    /// Node 1 reads a one-page range it holds a read-only capability for, whose only copy
    /// is at node 0 (a plain fault: the manager looks the rights up).
    pub cap_read_miss_us: f64,
    /// Node 1 acquires such a range and reads it (the guard brings the page in).
    pub cap_acquire_us: f64,
    /// Node 0 writes a public page every other node holds a read copy of (the baseline of
    /// the next).
    pub invalidation_us: f64,
    /// Node 0 revokes a capability every other node holds and has acquired.
    pub revoke_us: f64,
    /// The nodes of the run.
    pub nodes: f64,
}

crate::figures_line!(
    CapabilityFigures,
    "memlink-dsm-capability-bench",
    [
        read_miss_us,
        cap_read_miss_us,
        cap_acquire_us,
        invalidation_us,
        revoke_us,
        nodes,
    ]
);

fn elapsed_us(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e6
}

fn error(e: impl std::fmt::Display) -> DsmError {
    DsmError::Protocol(e.to_string())
}

/// Joins the bench cluster (2 nodes or more, `config.pages` at least
/// [`capability_pages`]`(iters)`), measures and leaves. Returns the figures on node 0 (the
/// prober's read misses reach it through the directory), `None` on the others.
pub fn run_capability_node(
    config: NodeConfig,
    backend: Backend,
    iters: usize,
) -> Result<Option<CapabilityFigures>, DsmError> {
    if config.peers.len() < 2 || iters == 0 || config.pages < capability_pages(iters) {
        return Err(DsmError::Config(format!(
            "the capability bench runs on 2 nodes or more with at least {} pages for {iters} \
             samples",
            capability_pages(iters)
        )));
    }
    let dsm = Dsm::join(config, backend)?;
    let figures = measure(&dsm, iters)?;
    dsm.leave()?;
    Ok(figures)
}

fn measure(dsm: &Dsm, iters: usize) -> Result<Option<CapabilityFigures>, DsmError> {
    let me = dsm.id();
    let nodes = dsm.nodes();
    let mut phases = Phases::new(dsm, BARRIER_BASE);
    let block = phases.shared_block(SLOT_BLOCK, 2 * iters)?;
    // Public pages: 0..iters read by the prober, iters..2*iters invalidated by node 0.
    let public = |i: usize| block + i * PAGE_SIZE;
    let mut f = CapabilityFigures {
        nodes: nodes as f64,
        ..CapabilityFigures::default()
    };

    // Read misses: node 0 mints two one-page ranges per sample and sends the prober a
    // read-only capability for each; the prober reads a public page, reads the first range
    // (a plain fault, as any access to a range held through a capability) and acquires and
    // reads the second (the capability API's way in: no signal, the guard asks for it).
    if me == 0 {
        for _ in 0..2 * iters {
            let cap = DsmCapability::mint(dsm, [0u64; PAGE_SIZE / 8]).map_err(error)?;
            cap.send(PROBER, Rights::READ).map_err(error)?;
        }
    }
    if me == PROBER {
        let mut caps = Vec::with_capacity(2 * iters);
        for _ in 0..2 * iters {
            caps.push(DsmCapability::<Page>::receive(dsm, WAIT).map_err(error)?);
        }
        let mut plain = Vec::with_capacity(iters);
        let (mut faulted, mut acquired) = (Vec::with_capacity(iters), Vec::with_capacity(iters));
        for (i, pair) in caps.chunks_exact(2).enumerate() {
            let word = DsmAtomic::<u64>::attach(dsm, public(i))?;
            let t = Instant::now();
            let v = word.load(Ordering::SeqCst);
            plain.push(elapsed_us(t));
            std::hint::black_box(v);
            let word = DsmAtomic::<u64>::attach(dsm, pair[0].offset())?;
            let t = Instant::now();
            let v = word.load(Ordering::SeqCst);
            faulted.push(elapsed_us(t));
            std::hint::black_box(v);
            let t = Instant::now();
            let guard = pair[1].acquire().map_err(error)?;
            let v = guard[7];
            acquired.push(elapsed_us(t));
            std::hint::black_box(v);
            drop(guard);
        }
        for (slot, v) in [
            median_us(&mut plain),
            median_us(&mut faulted),
            median_us(&mut acquired),
        ]
        .into_iter()
        .enumerate()
        {
            dsm.publish(SLOT_BLOCK + 1 + slot, v.to_bits());
        }
    }
    phases.next()?;
    if me == 0 {
        f.read_miss_us = f64::from_bits(dsm.lookup(SLOT_BLOCK + 1));
        f.cap_read_miss_us = f64::from_bits(dsm.lookup(SLOT_BLOCK + 2));
        f.cap_acquire_us = f64::from_bits(dsm.lookup(SLOT_BLOCK + 3));
    }

    // Revocations and invalidations, alternately: every other node reads public page
    // iters + i and acquires range i (node 0 minted it and sent each a read-only capability);
    // node 0 writes the page, then revokes the range; each holder then finds it revoked.
    let (mut inval, mut revoke) = (Vec::with_capacity(iters), Vec::with_capacity(iters));
    for i in 0..iters {
        let word = DsmAtomic::<u64>::attach(dsm, public(iters + i))?;
        let minted = if me == 0 {
            let cap = DsmCapability::mint(dsm, [i as u64; PAGE_SIZE / 8]).map_err(error)?;
            for n in 1..nodes as NodeId {
                cap.send(n, Rights::READ).map_err(error)?;
            }
            Some(cap)
        } else {
            None
        };
        let held = if me == 0 {
            None
        } else {
            Some(DsmCapability::<Page>::receive(dsm, WAIT).map_err(error)?)
        };
        let guard = match &held {
            Some(cap) => {
                std::hint::black_box(word.load(Ordering::SeqCst));
                let guard = cap.acquire().map_err(error)?;
                if guard[1] != i as u64 {
                    return Err(error(format!("range {i} reads {}, not {i}", guard[1])));
                }
                Some(guard)
            }
            None => None,
        };
        phases.next()?;
        if let Some(cap) = &minted {
            let t = Instant::now();
            word.store(i as u64, Ordering::SeqCst);
            inval.push(elapsed_us(t));
            let t = Instant::now();
            cap.revoke().map_err(error)?;
            revoke.push(elapsed_us(t));
        }
        phases.next()?;
        if let Some(cap) = &held {
            if !cap.is_revoked() {
                return Err(error(format!(
                    "range {i} is not revoked after the revocation"
                )));
            }
        }
        drop(guard);
    }
    if me == 0 {
        f.invalidation_us = median_us(&mut inval);
        f.revoke_us = median_us(&mut revoke);
    }
    phases.next()?;
    Ok((me == 0).then_some(f))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::figures_line::FiguresLine;

    #[test]
    fn figure_lines_round_trip() {
        let f = CapabilityFigures {
            read_miss_us: 100.5,
            cap_read_miss_us: 101.25,
            cap_acquire_us: 90.5,
            invalidation_us: 200.0,
            revoke_us: 150.125,
            nodes: 4.0,
        };
        let line = format!("noise\n{}\nmore", f.to_line());
        assert_eq!(CapabilityFigures::find_in(&line), Some(f));
        assert_eq!(CapabilityFigures::find_in("nothing here"), None);
    }
}
