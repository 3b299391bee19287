//! Rate-limited logging of refused connections: the first refusal is logged with its
//! address and reason, later ones are counted and summed up at most once per interval, so a
//! flood of connections costs a line per interval, not a line per connection.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::handshake::Refusal;

/// How often a summary of refusals is logged at most.
pub const LOG_INTERVAL: Duration = Duration::from_secs(5);

/// Counts refusals and says when to log them (the caller prints; see [`RefusalLog::refused`]
/// and [`RefusalLog::tick`]).
#[derive(Debug)]
pub struct RefusalLog {
    interval: Duration,
    /// When the current interval began; None until the first refusal was logged.
    since: Option<Instant>,
    counts: BTreeMap<&'static str, u64>,
    last: Option<(SocketAddr, Refusal)>,
    total: u64,
}

impl RefusalLog {
    /// A log that sums up at most once per `interval`.
    pub fn new(interval: Duration) -> RefusalLog {
        RefusalLog {
            interval,
            since: None,
            counts: BTreeMap::new(),
            last: None,
            total: 0,
        }
    }

    /// Every refusal counted so far.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Records a refusal at `now`; returns a line to log when this refusal starts a new
    /// interval (it is logged on its own), else counts it for the next summary.
    pub fn refused(&mut self, now: Instant, from: SocketAddr, why: Refusal) -> Option<String> {
        self.total += 1;
        let quiet = matches!(self.since, Some(t) if now.duration_since(t) < self.interval);
        if quiet || !self.counts.is_empty() {
            *self.counts.entry(why.kind()).or_default() += 1;
            self.last = Some((from, why));
            return self.tick(now);
        }
        self.since = Some(now);
        Some(format!("refused a connection from {from}: {why}"))
    }

    /// At `now`: the summary of the refusals counted since the last line, once the interval
    /// has passed and some were counted.
    pub fn tick(&mut self, now: Instant) -> Option<String> {
        let since = self.since?;
        if now.duration_since(since) < self.interval || self.counts.is_empty() {
            return None;
        }
        let n: u64 = self.counts.values().sum();
        let kinds = self
            .counts
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect::<Vec<_>>()
            .join(", ");
        let last = self
            .last
            .map(|(a, r)| format!("; last from {a}: {r}"))
            .unwrap_or_default();
        let line = format!(
            "refused {n} connections in the last {:.0?} ({kinds}){last}",
            now.duration_since(since)
        );
        self.counts.clear();
        self.since = Some(now);
        Some(line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_gives_one_line_per_interval() {
        let mut log = RefusalLog::new(Duration::from_secs(5));
        let t0 = Instant::now();
        let a: SocketAddr = "10.0.0.9:4000".parse().unwrap();
        assert!(
            log.refused(t0, a, Refusal::WrongKey)
                .unwrap()
                .contains("wrong cluster key")
        );
        let mut lines = 0;
        for i in 0..10_000u64 {
            let now = t0 + Duration::from_millis(i);
            let why = if i % 2 == 0 {
                Refusal::Malformed
            } else {
                Refusal::TooSlow
            };
            lines += log.refused(now, a, why).is_some() as u32;
            lines += log.tick(now).is_some() as u32;
        }
        // 10 s of refusals: a summary after 5 s and after 10 s (at most).
        assert!(lines <= 2, "{lines} lines");
        let last = log.tick(t0 + Duration::from_secs(20)).unwrap_or_default();
        assert!(lines == 2 || last.contains("bad frame"), "{last}");
        assert_eq!(log.total(), 10_001);
        // Quiet afterwards: nothing more to say.
        assert!(log.tick(t0 + Duration::from_secs(60)).is_none());
    }
}
