//! loom model: revocation (generation bump) racing acquire. An acquire either succeeds
//! (it read the old generation: it is ordered before the revocation) or fails with
//! Revoked; any acquire that starts after the revocation fails; a failed acquire leaves
//! no guard and no mapping behind.

#![cfg(memlink_loom)]

use loom::sync::Arc;
use loom::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use memlink_capability::guard_count::{GuardAcquireError, GuardCount};

struct FakeMapping(Arc<AtomicUsize>);

impl Drop for FakeMapping {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn acquire(
    g: &GuardCount<FakeMapping>,
    generation: &AtomicU64,
    live: &Arc<AtomicUsize>,
) -> Result<usize, GuardAcquireError<()>> {
    g.acquire(generation, 1, || {
        live.fetch_add(1, Ordering::SeqCst);
        Ok((FakeMapping(Arc::clone(live)), 0x1000))
    })
}

#[test]
fn revoke_races_acquire() {
    loom::model(|| {
        let g = Arc::new(GuardCount::<FakeMapping>::new());
        let generation = Arc::new(AtomicU64::new(1));
        let live = Arc::new(AtomicUsize::new(0));
        // A guard is already held, so the racing acquire takes the lock-free fast path
        // in some interleavings and the slow path in others.
        acquire(&g, &generation, &live).unwrap();
        let (g2, gen2, live2) = (Arc::clone(&g), Arc::clone(&generation), Arc::clone(&live));
        let racer = loom::thread::spawn(move || {
            let r = acquire(&g2, &gen2, &live2);
            if r.is_ok() {
                g2.release();
            }
            r.is_ok()
        });
        // The owner revokes, then drops its own guard.
        generation.fetch_add(1, Ordering::AcqRel);
        assert_eq!(
            acquire(&g, &generation, &live),
            Err(GuardAcquireError::Revoked)
        );
        g.release();
        let _racer_succeeded = racer.join().unwrap();
        assert_eq!(
            acquire(&g, &generation, &live),
            Err(GuardAcquireError::Revoked)
        );
        assert_eq!(g.guards(), 0, "a failed acquire left a guard behind");
        assert_eq!(live.load(Ordering::SeqCst), 0, "mapping leaked");
    });
}

#[test]
fn acquire_after_revoke_in_other_thread_fails() {
    loom::model(|| {
        let g = Arc::new(GuardCount::<FakeMapping>::new());
        let generation = Arc::new(AtomicU64::new(1));
        let live = Arc::new(AtomicUsize::new(0));
        let revoked = Arc::new(AtomicUsize::new(0));
        let (gen2, revoked2) = (Arc::clone(&generation), Arc::clone(&revoked));
        let owner = loom::thread::spawn(move || {
            gen2.fetch_add(1, Ordering::AcqRel);
            revoked2.store(1, Ordering::Release);
        });
        let saw_revoke_first = revoked.load(Ordering::Acquire) == 1;
        let r = acquire(&g, &generation, &live);
        if saw_revoke_first {
            assert_eq!(r, Err(GuardAcquireError::Revoked));
        }
        if r.is_ok() {
            g.release();
        }
        owner.join().unwrap();
        assert_eq!(live.load(Ordering::SeqCst), 0);
    });
}
