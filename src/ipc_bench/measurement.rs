//! One row of results: a transport at one size, summarised from its round trips.

use serde::{Deserialize, Serialize};

use super::plan::SizeTiming;

/// A transport's round-trip figures at one message size: one row of the table, one
/// object of the JSON (exactly these keys).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Measurement {
    /// The transport's name (`loan`, `sync`, `pipe`, ...).
    pub transport: String,
    /// Copies of the payload per one-way message.
    pub copies: u32,
    /// The message size in bytes.
    pub size_bytes: usize,
    /// How the waiting side waits: `spin` or `block`.
    pub wait: String,
    /// Median round trip (message there and reply back), in nanoseconds.
    pub rtt_ns_p50: u64,
    /// 99th-percentile round trip, in nanoseconds.
    pub rtt_ns_p99: u64,
    /// One-way messages per second over the timed ping-pong (two per round trip).
    pub msgs_per_s: f64,
    /// Payload gigabytes (10^9 bytes) per second: `msgs_per_s * size_bytes / 1e9`.
    pub gbps: f64,
}

/// The `q`-quantile (0..=1) of `sorted` (nearest rank).
fn quantile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

impl Measurement {
    /// Summarises the round trips of one size.
    pub fn from_timing(transport: &str, copies: u32, wait: &str, timing: &SizeTiming) -> Self {
        let mut sorted = timing.rtt_ns.clone();
        sorted.sort_unstable();
        let secs = timing.elapsed.as_secs_f64();
        let msgs_per_s = if secs > 0.0 {
            2.0 * timing.rtt_ns.len() as f64 / secs
        } else {
            0.0
        };
        Measurement {
            transport: transport.to_string(),
            copies,
            size_bytes: timing.size,
            wait: wait.to_string(),
            rtt_ns_p50: quantile(&sorted, 0.50),
            rtt_ns_p99: quantile(&sorted, 0.99),
            msgs_per_s,
            gbps: msgs_per_s * timing.size as f64 / 1e9,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn figures_follow_from_the_round_trips() {
        let timing = SizeTiming {
            size: 1000,
            rtt_ns: (1..=100).rev().collect(),
            elapsed: Duration::from_millis(1),
        };
        let m = Measurement::from_timing("pipe", 2, "block", &timing);
        assert_eq!(m.rtt_ns_p50, 50);
        assert_eq!(m.rtt_ns_p99, 99);
        assert!((m.msgs_per_s - 200_000.0).abs() < 1e-6);
        assert!((m.gbps - 0.2).abs() < 1e-9);
    }
}
