//! Sorts an array in the region with tasks that spawn tasks: node 0 writes [`LEN`] (or
//! `--size`) pseudo-random integers into a `DsmVec` and spawns one task on the whole range;
//! a task partitions its range around a median of three, spawns a task for the left part,
//! sorts the right part itself the same way and joins the left; below [`CUTOFF`] elements a
//! task sorts its range in place. Every node checks the sorted array against a sequential
//! sort of its own.
//!
//! A task's argument is a [`Span`]: the region address of element 0 (the same on every
//! node) and its range. Its stack holds pointers into the region only; the join handles on
//! it are task ids, valid on any node.

use super::pseudo_random;
use super::tasks::{PoolSettings, TaskCounts, join_failed, run_tasks};
use crate::cluster::Dsm;
use crate::handles::{DsmVec, Shareable};
use crate::process::pool::{self, STACK_SIZE};
use crate::types::{DsmError, PAGE_SIZE};

/// The default number of elements (65536 u64: 128 pages).
pub const LEN: usize = 1 << 16;
/// The largest array (`--size`): 16 Mi elements, 128 MiB.
pub const MAX_LEN: usize = 1 << 24;
/// A range this short is sorted by the task that has it, without spawning.
pub const CUTOFF: usize = 4096;
/// The directory slot where node 0 publishes the array's offset.
const ARRAY_SLOT: usize = 1;
/// The directory slot where node 0 publishes the number of tasks that ran.
const TASKS_SLOT: usize = 2;

/// A task's range of the array.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    /// The address of element 0 in the region (the same on every node).
    pub base: u64,
    /// The first element of the range.
    pub lo: u64,
    /// One past the last.
    pub hi: u64,
}

// SAFETY: three u64s, repr(C), no padding; `base` is an address in the region, which is
// mapped at the same address on every node.
unsafe impl Shareable for Span {}

fn input(len: usize) -> Vec<u64> {
    pseudo_random(0x9a1c_5047, len)
}

/// Partitions `v` (at least 3 elements) around the median of its first, middle and last
/// elements; returns the pivot's final index: everything before it is <= the pivot,
/// everything after it >= the pivot.
fn partition(v: &mut [u64]) -> usize {
    let last = v.len() - 1;
    let mid = v.len() / 2;
    // Median of three to the end.
    if v[0] > v[mid] {
        v.swap(0, mid);
    }
    if v[mid] > v[last] {
        v.swap(mid, last);
    }
    if v[0] > v[mid] {
        v.swap(0, mid);
    }
    v.swap(mid, last);
    let pivot = v[last];
    let mut store = 0;
    for i in 0..last {
        if v[i] < pivot {
            v.swap(i, store);
            store += 1;
        }
    }
    v.swap(store, last);
    store
}

/// The task: sorts its span; returns the tasks that ran for it (itself included).
fn sort_span(s: Span) -> u64 {
    let len = (s.hi - s.lo) as usize;
    let at = |lo: u64, len: usize| {
        // SAFETY: node 0 gave the root task the whole array (len elements at base, in the
        // region, mapped at the same address on every node); a task's span lies inside its
        // parent's and the spans of running tasks never overlap (a parent's partition ends
        // before it spawns, and it only touches its right part until it joins the left).
        unsafe { std::slice::from_raw_parts_mut((s.base as *mut u64).add(lo as usize), len) }
    };
    if len <= CUTOFF {
        at(s.lo, len).sort_unstable();
        return 1;
    }
    let split = s.lo + partition(at(s.lo, len)) as u64;
    let left = Span { hi: split, ..s };
    let right = Span { lo: split + 1, ..s };
    match pool::spawn(sort_span, left) {
        Ok(handle) => {
            let mine = sort_span(right);
            // A failed child (it panicked, or its node was lost) counts as u64::MAX: the
            // check then fails with the array unsorted.
            let theirs = pool::join(handle).unwrap_or(u64::MAX / 4);
            1 + mine + theirs
        }
        // No room for another task: sort the left part here.
        Err(_) => 1 + sort_span(left) + sort_span(right),
    }
}

/// Refuses an array size outside 1..=[`MAX_LEN`].
pub fn check_size(len: usize) -> Result<(), String> {
    if (1..=MAX_LEN).contains(&len) {
        Ok(())
    } else {
        Err(format!(
            "quicksort --size is the number of elements, 1 to {MAX_LEN}; {len} is not"
        ))
    }
}

/// The shared pages a run of `len` elements needs: the directory, the array, and a task
/// block for every task that may be alive at once (at most 2 len / CUTOFF + 1).
pub fn pages_for(len: usize) -> u32 {
    let len = len.min(MAX_LEN);
    let array = (len * 8).div_ceil(PAGE_SIZE);
    let tasks = 2 * len / CUTOFF + 3;
    (1 + array + (tasks + 1) * (STACK_SIZE / PAGE_SIZE)) as u32
}

/// What one node of a quicksort run did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// Whether the array equals the sequential sort.
    pub verified: bool,
    /// The tasks that ran in all (node 0's count).
    pub tasks: u64,
    /// What this node's scheduler did.
    pub counts: TaskCounts,
    /// The parallel part (root spawn to its join).
    pub parallel: std::time::Duration,
}

/// Runs this node's part: node 0 fills the array and spawns the root task; every node
/// checks the result.
pub fn run(dsm: &Dsm, len: usize, settings: PoolSettings) -> Result<Outcome, DsmError> {
    check_size(len).map_err(DsmError::Config)?;
    let run = run_tasks(dsm, settings, |pool| {
        let data = DsmVec::<u64>::new_zeroed(dsm, len)?;
        for (i, v) in input(len).into_iter().enumerate() {
            data.set(i, v);
        }
        dsm.publish(ARRAY_SLOT, data.offset() as u64);
        let root = Span {
            base: data.as_ptr() as u64,
            lo: 0,
            hi: len as u64,
        };
        let handle = pool
            .spawn(sort_span, root)
            .map_err(|e| DsmError::Config(format!("quicksort: {e}")))?;
        let tasks = pool.join(handle).map_err(|e| join_failed("quicksort", e))?;
        dsm.publish(TASKS_SLOT, tasks);
        Ok(tasks)
    })?;
    let tasks = run.result.unwrap_or_else(|| dsm.lookup(TASKS_SLOT));
    let data = DsmVec::<u64>::attach(dsm, dsm.lookup(ARRAY_SLOT) as usize, len)?;
    let mut expect = input(len);
    expect.sort_unstable();
    Ok(Outcome {
        verified: data.to_vec() == expect,
        tasks,
        counts: run.counts,
        parallel: run.parallel,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_splits_around_the_pivot() {
        for len in [3usize, 4, 5, 17, 1000] {
            let mut v = input(len);
            let p = partition(&mut v);
            assert!(v[..p].iter().all(|x| *x <= v[p]), "len {len}");
            assert!(v[p + 1..].iter().all(|x| *x >= v[p]), "len {len}");
            let mut a = v.clone();
            a.sort_unstable();
            let mut b = input(len);
            b.sort_unstable();
            assert_eq!(a, b, "a permutation");
        }
        assert!(check_size(0).is_err() && check_size(MAX_LEN + 1).is_err());
        assert!(pages_for(LEN) > (LEN * 8 / PAGE_SIZE) as u32);
    }
}
