//! loom model: the guard count of capability acquire/release. While a guard is held the
//! mapping exists; at most one mapping exists at a time; when every guard is gone the
//! mapping is gone.

#![cfg(memlink_loom)]

use loom::sync::Arc;
use loom::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use memlink_capability::guard_count::GuardCount;

/// Stands in for a Mapping: counts live instances.
struct FakeMapping {
    live: Arc<AtomicUsize>,
}

impl Drop for FakeMapping {
    fn drop(&mut self) {
        self.live.fetch_sub(1, Ordering::SeqCst);
    }
}

struct World {
    guards: GuardCount<FakeMapping>,
    live: Arc<AtomicUsize>,
    maps: AtomicUsize,
    generation: AtomicU64,
}

impl World {
    fn new() -> World {
        World {
            guards: GuardCount::new(),
            live: Arc::new(AtomicUsize::new(0)),
            maps: AtomicUsize::new(0),
            generation: AtomicU64::new(1),
        }
    }

    fn acquire(&self) -> Result<usize, ()> {
        self.guards
            .acquire(&self.generation, 1, || {
                let n = self.live.fetch_add(1, Ordering::SeqCst);
                assert_eq!(n, 0, "two mappings alive at once");
                let k = self.maps.fetch_add(1, Ordering::SeqCst) + 1;
                Ok::<_, ()>((
                    FakeMapping {
                        live: Arc::clone(&self.live),
                    },
                    0x1000 * k,
                ))
            })
            .map_err(|_| ())
    }

    fn hold(&self) {
        let addr = self.acquire().unwrap();
        assert_ne!(addr, 0, "guard got no address");
        assert_eq!(
            self.live.load(Ordering::SeqCst),
            1,
            "guard without a mapping"
        );
        self.guards.release();
    }
}

#[test]
fn two_threads_acquire_and_release() {
    loom::model(|| {
        let w = Arc::new(World::new());
        let w2 = Arc::clone(&w);
        let t = loom::thread::spawn(move || w2.hold());
        w.hold();
        t.join().unwrap();
        assert_eq!(w.guards.guards(), 0);
        assert_eq!(
            w.live.load(Ordering::SeqCst),
            0,
            "mapping leaked after the last release"
        );
    });
}

#[test]
fn release_to_zero_races_reacquire() {
    loom::model(|| {
        let w = Arc::new(World::new());
        // Main holds a guard; the other thread acquires and releases twice while main
        // drops its guard, so "last release" races "slow acquire" both ways.
        w.acquire().unwrap();
        let w2 = Arc::clone(&w);
        let t = loom::thread::spawn(move || {
            w2.hold();
            w2.hold();
        });
        w.guards.release();
        t.join().unwrap();
        assert_eq!(w.guards.guards(), 0);
        assert_eq!(w.live.load(Ordering::SeqCst), 0);
    });
}
