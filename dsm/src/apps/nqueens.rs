//! Counts the solutions of the n-queens problem with tasks: node 0 spawns one task per
//! placement of the queens of the first [`SPLIT_ROWS`] rows (about n² tasks of irregular
//! sizes: a placement that blocks more of the board prunes more), every idle node's null
//! task asks for work, and node 0 joins them all and adds the counts. Every node checks the
//! total against a sequential count of its own.
//!
//! A task's argument is a [`Placement`] (plain integers: it is copied into the task's block
//! in the region) and its result a count; it keeps nothing outside its own stack.

use super::tasks::{PoolSettings, TaskCounts, join_failed, run_tasks};
use crate::cluster::Dsm;
use crate::handles::Shareable;
use crate::process::pool::STACK_SIZE;
use crate::types::{DsmError, PAGE_SIZE};

/// The default board side.
pub const N: usize = 10;
/// The largest board side (the columns and diagonals are 32-bit masks; 16 already takes
/// minutes sequentially).
pub const MAX_N: usize = 16;
/// The rows placed before the tasks are spawned: one task per valid placement of them.
pub const SPLIT_ROWS: usize = 2;
/// The directory slot where node 0 publishes the count.
const RESULT_SLOT: usize = 1;

/// Queens placed on the first rows of an n x n board: the columns and diagonals they attack
/// in the next row.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placement {
    /// The board side.
    pub n: u32,
    /// The next row to fill.
    pub row: u32,
    /// Columns taken.
    pub cols: u32,
    /// Columns attacked along down-right diagonals in the next row.
    pub down: u32,
    /// Columns attacked along down-left diagonals in the next row.
    pub up: u32,
}

// SAFETY: five u32s, repr(C), no padding, no pointers: every bit pattern is a value and it
// means the same on every node.
unsafe impl Shareable for Placement {}

impl Placement {
    fn empty(n: usize) -> Placement {
        Placement {
            n: n as u32,
            row: 0,
            cols: 0,
            down: 0,
            up: 0,
        }
    }

    fn all(&self) -> u32 {
        if self.n >= 32 {
            u32::MAX
        } else {
            (1u32 << self.n) - 1
        }
    }

    /// The placements of one more queen, in the next row.
    fn children(&self) -> impl Iterator<Item = Placement> + '_ {
        let all = self.all();
        let mut free = all & !(self.cols | self.down | self.up);
        std::iter::from_fn(move || {
            if free == 0 {
                return None;
            }
            let bit = free & free.wrapping_neg();
            free ^= bit;
            Some(Placement {
                n: self.n,
                row: self.row + 1,
                cols: self.cols | bit,
                down: ((self.down | bit) << 1) & all,
                up: (self.up | bit) >> 1,
            })
        })
    }
}

/// The solutions that complete `p` (sequential, depth first).
pub fn count_from(p: Placement) -> u64 {
    if p.row >= p.n {
        return 1;
    }
    p.children().map(count_from).sum()
}

/// The solutions of the n x n board, sequentially.
pub fn count_sequential(n: usize) -> u64 {
    count_from(Placement::empty(n))
}

/// The valid placements of the first `rows` rows: the tasks' arguments.
pub fn placements(n: usize, rows: usize) -> Vec<Placement> {
    let mut level = vec![Placement::empty(n)];
    for _ in 0..rows.min(n) {
        level = level.iter().flat_map(Placement::children).collect();
    }
    level
}

/// The task: the solutions that complete its placement.
fn solve(p: Placement) -> u64 {
    count_from(p)
}

/// Refuses a board side outside 1..=[`MAX_N`].
pub fn check_size(n: usize) -> Result<(), String> {
    if (1..=MAX_N).contains(&n) {
        Ok(())
    } else {
        Err(format!(
            "nqueens --size is the board side, 1 to {MAX_N} (16 takes minutes); {n} is not"
        ))
    }
}

/// The shared pages a run on an n x n board needs: the directory and one task block per
/// placement of the first rows, all spawned at once.
pub fn pages_for(n: usize) -> u32 {
    let tasks = placements(n.min(MAX_N), SPLIT_ROWS).len().max(1);
    (tasks * STACK_SIZE / PAGE_SIZE + 2 * STACK_SIZE / PAGE_SIZE + 1) as u32
}

/// What one node of an nqueens run did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// Whether the count matched the sequential count.
    pub verified: bool,
    /// The solutions counted by the tasks.
    pub count: u64,
    /// What this node's scheduler did.
    pub counts: TaskCounts,
    /// The parallel part (spawn to last join).
    pub parallel: std::time::Duration,
}

/// Runs this node's part on an n x n board; node 0 spawns a task per placement of the
/// first rows and joins them; every node checks node 0's total.
pub fn run(dsm: &Dsm, n: usize, settings: PoolSettings) -> Result<Outcome, DsmError> {
    check_size(n).map_err(DsmError::Config)?;
    let run = run_tasks(dsm, settings, |pool| {
        let handles = placements(n, SPLIT_ROWS)
            .into_iter()
            .map(|p| pool.spawn(solve, p))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| DsmError::Config(format!("nqueens: {e}")))?;
        let mut total = 0u64;
        for h in handles {
            total += pool.join(h).map_err(|e| join_failed("nqueens", e))?;
        }
        dsm.publish(RESULT_SLOT, total);
        Ok(total)
    })?;
    // Node 0 published before the barrier that ended run_tasks.
    let count = run.result.unwrap_or_else(|| dsm.lookup(RESULT_SLOT));
    Ok(Outcome {
        verified: count == count_sequential(n),
        count,
        counts: run.counts,
        parallel: run.parallel,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_match_the_known_numbers() {
        let known = [1u64, 0, 0, 2, 10, 4, 40, 92, 352, 724];
        for (i, k) in known.iter().enumerate() {
            let n = i + 1;
            assert_eq!(count_sequential(n), *k, "n = {n}");
            let split: u64 = placements(n, SPLIT_ROWS).into_iter().map(count_from).sum();
            assert_eq!(split, *k, "n = {n}, split");
        }
        // Irregular: the tasks of an 8 x 8 board do not all count the same.
        let sizes: Vec<u64> = placements(8, SPLIT_ROWS)
            .into_iter()
            .map(count_from)
            .collect();
        assert_eq!(sizes.len(), 42);
        assert!(sizes.iter().min() != sizes.iter().max(), "{sizes:?}");
        assert!(check_size(0).is_err() && check_size(17).is_err() && check_size(16).is_ok());
    }
}
