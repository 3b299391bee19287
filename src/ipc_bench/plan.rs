//! What a run measures, and the loops both processes follow.
//!
//! The measuring process (the client) and its forked peer (the server) walk the same
//! [`Plan`]: for each size, warm-up messages whose every byte is written and checked,
//! then timed messages whose stamps are checked (see [`super::pattern`]). Sequence
//! numbers run on across sizes, so a message left over from one size fails the next.

use std::time::{Duration, Instant};

use super::error::RunError;
use super::pattern::Check;

/// How many round trips to make at each size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Message sizes in bytes, ascending, each at least 8.
    pub sizes: Vec<usize>,
    /// Timed round trips at small sizes.
    pub iters: usize,
    /// Bytes one direction may move at one size: large messages get fewer round trips
    /// (never fewer than [`Plan::MIN_ITERS`]) so that 16 MiB through a pipe stays quick.
    pub byte_budget: usize,
}

impl Plan {
    /// The fewest timed round trips at any size.
    pub const MIN_ITERS: usize = 20;

    /// A plan for `sizes` with `iters` round trips at small sizes and the default budget
    /// of 1 GiB per size.
    pub fn new(sizes: Vec<usize>, iters: usize) -> Plan {
        Plan {
            sizes,
            iters,
            byte_budget: 1 << 30,
        }
    }

    /// Timed round trips at `size`.
    pub fn iters_for(&self, size: usize) -> usize {
        (self.byte_budget / size.max(1))
            .min(self.iters)
            .max(Self::MIN_ITERS.min(self.iters))
            .max(1)
    }

    /// Warm-up round trips at `size` (every byte checked).
    pub fn warmup_for(&self, size: usize) -> usize {
        (self.iters_for(size) / 10).clamp(2, 200)
    }

    /// The largest size.
    pub fn max_size(&self) -> usize {
        self.sizes.iter().copied().max().unwrap_or(8)
    }
}

/// One message of the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Msg {
    /// Its sequence number (from 1; a reply carries it with [`super::pattern::REPLY_BIT`]).
    pub seq: u64,
    /// Its length in bytes.
    pub size: usize,
    /// How much of it is written and checked.
    pub check: Check,
}

/// The round-trip times measured at one size.
#[derive(Debug, Clone)]
pub struct SizeTiming {
    /// The message size.
    pub size: usize,
    /// Each timed round trip, in nanoseconds, in order.
    pub rtt_ns: Vec<u64>,
    /// Wall time of the timed round trips together.
    pub elapsed: Duration,
}

fn messages(plan: &Plan) -> impl Iterator<Item = (usize, Msg, bool)> + '_ {
    let mut seq = 0u64;
    plan.sizes.iter().enumerate().flat_map(move |(i, &size)| {
        let warm = plan.warmup_for(size);
        let timed = plan.iters_for(size);
        let first = seq;
        seq += (warm + timed) as u64;
        (0..warm + timed).map(move |n| {
            let check = if n < warm { Check::Full } else { Check::Stamps };
            let msg = Msg {
                seq: first + n as u64 + 1,
                size,
                check,
            };
            (i, msg, n >= warm)
        })
    })
}

/// The client's loop: one `round_trip` per message of the plan, timed after warm-up;
/// `size_done` is told each finished size.
pub(crate) fn run_client(
    plan: &Plan,
    size_done: &mut dyn FnMut(usize),
    mut round_trip: impl FnMut(Msg) -> Result<(), RunError>,
) -> Result<Vec<SizeTiming>, RunError> {
    let mut out: Vec<SizeTiming> = plan
        .sizes
        .iter()
        .map(|&size| SizeTiming {
            size,
            rtt_ns: Vec::with_capacity(plan.iters_for(size).min(1 << 20)),
            elapsed: Duration::ZERO,
        })
        .collect();
    let mut current = 0;
    let mut started: Option<Instant> = None;
    for (i, msg, timed) in messages(plan) {
        if i != current {
            if let Some(t) = started.take() {
                out[current].elapsed = t.elapsed();
            }
            size_done(plan.sizes[current]);
            current = i;
        }
        if timed {
            let t0 = Instant::now();
            started.get_or_insert(t0);
            round_trip(msg)?;
            out[i].rtt_ns.push(t0.elapsed().as_nanos() as u64);
        } else {
            round_trip(msg)?;
        }
    }
    if let Some(t) = started.take() {
        out[current].elapsed = t.elapsed();
    }
    if !plan.sizes.is_empty() {
        size_done(plan.sizes[current]);
    }
    Ok(out)
}

/// The server's loop: one `echo` per message of the plan, in the client's order.
pub(crate) fn run_server(
    plan: &Plan,
    mut echo: impl FnMut(Msg) -> Result<(), RunError>,
) -> Result<(), RunError> {
    for (_, msg, _) in messages(plan) {
        echo(msg)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_sizes_get_fewer_round_trips_but_never_too_few() {
        let plan = Plan::new(vec![8, 1 << 20, 16 << 20], 10_000);
        assert_eq!(plan.iters_for(8), 10_000);
        assert_eq!(plan.iters_for(1 << 20), 1024);
        assert_eq!(plan.iters_for(16 << 20), 64);
        let tiny = Plan::new(vec![8], 3);
        assert_eq!(tiny.iters_for(8), 3);
    }

    #[test]
    fn client_and_server_walk_the_same_messages() {
        let plan = Plan::new(vec![8, 64], 30);
        let mut server = Vec::new();
        run_server(&plan, |m| {
            server.push(m);
            Ok(())
        })
        .unwrap();
        let mut client = Vec::new();
        let mut done = Vec::new();
        let timings = run_client(&plan, &mut |s| done.push(s), |m| {
            client.push(m);
            Ok(())
        })
        .unwrap();
        assert_eq!(client, server);
        assert_eq!(done, vec![8, 64]);
        assert_eq!(timings[0].rtt_ns.len(), 30);
        let seqs: Vec<u64> = client.iter().map(|m| m.seq).collect();
        assert_eq!(seqs, (1..=client.len() as u64).collect::<Vec<_>>());
    }
}
