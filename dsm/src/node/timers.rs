//! The node runtime's clock: one thread that fires the Δt holds ([`crate::protocol::Effect::Hold`]:
//! the page's waiting requests are handled when its Δt is over), reads ahead in the
//! background ([`NodeRuntime::read_ahead_fired`]) and, every
//! [`BROADCAST_INTERVAL`], sends this node's free-frame count to its peers when it changed
//! (the seed's occasional broadcast; no reply is awaited).
//!
//! The thread holds only a weak reference to the runtime and ends when the runtime is gone or
//! [`Timers::stop`] is called. Lock order: the runtime's state lock may be held while a hold
//! is scheduled here, so the thread never takes the state lock while it holds its own.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use super::NodeRuntime;
use crate::types::PageNo;

/// How often a node's free-frame count goes to its peers (when it changed).
pub const BROADCAST_INTERVAL: Duration = Duration::from_millis(100);

#[derive(Default)]
struct Due {
    holds: BinaryHeap<Reverse<(Instant, PageNo)>>,
    /// A read-ahead to run in the background: its marker page and window (the latest only).
    read_ahead: Option<(PageNo, u32)>,
    stopped: bool,
}

/// The pending holds, shared by the runtime (which schedules them) and the clock thread.
#[derive(Default)]
pub(super) struct Timers {
    due: Mutex<Due>,
    changed: Condvar,
}

impl Timers {
    fn lock(&self) -> MutexGuard<'_, Due> {
        self.due.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Fire the hold of `page` at `at`.
    pub(super) fn schedule(&self, page: PageNo, at: Instant) {
        let mut due = self.lock();
        let earliest = due.holds.peek().is_none_or(|Reverse((t, _))| at < *t);
        due.holds.push(Reverse((at, page)));
        drop(due);
        if earliest {
            self.changed.notify_one();
        }
    }

    /// Read ahead in the background the run after `marker` ([`NodeRuntime::read_ahead_fired`]),
    /// as soon as the thread gets to it; replaces one not started yet.
    pub(super) fn read_ahead(&self, marker: PageNo, window: u32) {
        self.lock().read_ahead = Some((marker, window));
        self.changed.notify_one();
    }

    /// End the clock thread (pending holds are dropped: the node is leaving).
    pub(super) fn stop(&self) {
        self.lock().stopped = true;
        self.changed.notify_one();
    }

    /// Start the clock thread of `runtime`.
    pub(super) fn start(timers: Arc<Timers>, runtime: Weak<NodeRuntime>) -> std::io::Result<()> {
        // Not joined: the last reference to the runtime may be dropped on this very thread.
        std::thread::Builder::new()
            .name("memlink-dsm-clock".into())
            .spawn(move || timers.run(&runtime))
            .map(drop)
    }

    fn run(&self, runtime: &Weak<NodeRuntime>) {
        let mut next_broadcast = Instant::now();
        loop {
            let (fired, broadcast, read_ahead) = {
                let mut due = self.lock();
                loop {
                    if due.stopped {
                        return;
                    }
                    let now = Instant::now();
                    let mut fired = Vec::new();
                    while let Some(&Reverse((at, page))) = due.holds.peek() {
                        if at > now {
                            break;
                        }
                        due.holds.pop();
                        fired.push(page);
                    }
                    let broadcast = now >= next_broadcast;
                    let read_ahead = due.read_ahead.take();
                    if !fired.is_empty() || broadcast || read_ahead.is_some() {
                        break (fired, broadcast, read_ahead);
                    }
                    let wake = due
                        .holds
                        .peek()
                        .map_or(next_broadcast, |Reverse((at, _))| (*at).min(next_broadcast));
                    due = self
                        .changed
                        .wait_timeout(due, wake.saturating_duration_since(now))
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
            };
            let Some(rt) = runtime.upgrade() else {
                return;
            };
            for page in fired {
                rt.hold_fired(page);
            }
            if let Some((marker, window)) = read_ahead {
                rt.read_ahead_fired(marker, window);
            }
            if broadcast {
                rt.broadcast_free_frames();
                next_broadcast = Instant::now() + BROADCAST_INTERVAL;
            }
        }
    }
}
