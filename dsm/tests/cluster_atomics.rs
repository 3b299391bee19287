//! `DsmAtomic` across 4 node processes, with each fault backend: every node adds to shared
//! counters at the same time (fetch_add on a u64, a compare_exchange loop on a u32, fetch_sub
//! on an i64, all on one page, and a u64 alone on another page) and no update is lost; an
//! offset outside the region or misaligned is refused.

use crate::support;

use std::sync::atomic::Ordering;

use memlink_dsm::atomic::DsmAtomic;
use memlink_dsm::cluster::Dsm;
use memlink_dsm::{Backend, DsmError, PAGE_SIZE};

/// Updates per node and counter.
const ROUNDS: u64 = 300;

/// Directory slots of the counters.
const SLOTS: [usize; 4] = [1, 2, 3, 4];

fn atomics(dsm: &Dsm) -> Result<bool, DsmError> {
    if dsm.id() == 0 {
        let adds = DsmAtomic::<u64>::new(dsm, 0)?;
        let cas = DsmAtomic::<u32>::new(dsm, 0)?;
        let subs = DsmAtomic::<i64>::new(dsm, 0)?;
        // A page of its own: a counter alone, next to none of the others.
        let block = dsm.alloc(PAGE_SIZE, PAGE_SIZE)?;
        let alone = DsmAtomic::<u64>::attach(dsm, block)?;
        alone.store(7, Ordering::SeqCst);
        for (slot, offset) in
            SLOTS
                .into_iter()
                .zip([adds.offset(), cas.offset(), subs.offset(), alone.offset()])
        {
            dsm.publish(slot, offset as u64);
        }
    }
    dsm.barrier(1)?;
    let at = |slot: usize| dsm.lookup(slot) as usize;
    let adds = DsmAtomic::<u64>::attach(dsm, at(SLOTS[0]))?;
    let cas = DsmAtomic::<u32>::attach(dsm, at(SLOTS[1]))?;
    let subs = DsmAtomic::<i64>::attach(dsm, at(SLOTS[2]))?;
    let alone = DsmAtomic::<u64>::attach(dsm, at(SLOTS[3]))?;
    for _ in 0..ROUNDS {
        adds.fetch_add(1, Ordering::SeqCst);
        let mut seen = cas.load(Ordering::SeqCst);
        while let Err(now) =
            cas.compare_exchange(seen, seen + 1, Ordering::SeqCst, Ordering::SeqCst)
        {
            seen = now;
        }
        subs.fetch_sub(2, Ordering::SeqCst);
        alone.fetch_add(3, Ordering::SeqCst);
    }
    dsm.barrier(2)?;
    let nodes = dsm.nodes() as u64;
    let got = (
        adds.load(Ordering::SeqCst),
        u64::from(cas.load(Ordering::SeqCst)),
        subs.load(Ordering::SeqCst),
        alone.load(Ordering::SeqCst),
    );
    let want = (
        nodes * ROUNDS,
        nodes * ROUNDS,
        -2 * (nodes * ROUNDS) as i64,
        7 + 3 * nodes * ROUNDS,
    );
    println!("node {}: counters {got:?}, expected {want:?}", dsm.id());
    // Every node reads before node 0 frees.
    dsm.barrier(3)?;
    let refused = DsmAtomic::<u64>::attach(dsm, dsm.len() - 4).is_err()
        && DsmAtomic::<u64>::attach(dsm, usize::MAX - 2).is_err()
        && DsmAtomic::<u64>::attach(dsm, at(SLOTS[3]) + 4).is_err();
    if dsm.id() == 0 {
        adds.free()?;
    }
    Ok(got == want && refused)
}

#[test]
fn node_main() {
    support::node_entry(&[("atomics", atomics)]);
}

#[test]
fn atomics_lose_no_update_on_4_nodes_with_sigsegv() {
    support::assert_cluster_verifies(4, "atomics", Backend::Sigsegv);
}

#[test]
fn atomics_lose_no_update_on_4_nodes_with_uffd() {
    support::assert_cluster_verifies(4, "atomics", Backend::Uffd);
}
