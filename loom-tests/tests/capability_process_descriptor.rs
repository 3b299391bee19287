//! loom model: futex block/wake on the shared process descriptor never loses a wake-up.
//! The futex is loom's model (a waiter re-checks the word and sleeps under the model
//! lock), so a lost wake-up shows up as a deadlock.

#![cfg(memlink_loom)]

use loom::sync::Arc;
use loom::sync::atomic::{AtomicU32, Ordering};
use memlink_capability::process::{BlockOutcome, ProcessDescriptor};

fn block_until(d: &ProcessDescriptor, done: impl Fn() -> bool) {
    while !done() {
        let out = d.block_with(None, || true, || false);
        assert_eq!(out, BlockOutcome::Woken);
    }
}

#[test]
fn wake_is_never_lost() {
    loom::model(|| {
        let d = Arc::new(ProcessDescriptor::new(1));
        let flag = Arc::new(AtomicU32::new(0));
        let (d2, flag2) = (Arc::clone(&d), Arc::clone(&flag));
        let waker = loom::thread::spawn(move || {
            flag2.store(1, Ordering::Release);
            d2.wake();
        });
        block_until(&d, || flag.load(Ordering::Acquire) == 1);
        waker.join().unwrap();
    });
}

#[test]
fn two_wakers_two_events() {
    loom::model(|| {
        let d = Arc::new(ProcessDescriptor::new(1));
        let events = Arc::new(AtomicU32::new(0));
        let wakers: Vec<_> = (0..2)
            .map(|_| {
                let (d, events) = (Arc::clone(&d), Arc::clone(&events));
                loom::thread::spawn(move || {
                    events.fetch_add(1, Ordering::Release);
                    d.wake();
                })
            })
            .collect();
        block_until(&d, || events.load(Ordering::Acquire) == 2);
        for w in wakers {
            w.join().unwrap();
        }
    });
}
