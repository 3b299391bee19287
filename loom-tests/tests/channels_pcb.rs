//! Loom models of the process control block's wake word: an event count plus an asleep bit,
//! where only a waiter that set the bit sleeps in FUTEX_WAIT and only a waker that saw it calls
//! FUTEX_WAKE. The loom futex really blocks, so a lost wake-up is a deadlock loom reports.
#![cfg(memlink_loom)]

use loom::sync::Arc;
use loom::sync::atomic::{AtomicU32, Ordering};
use loom::thread;
use memlink_channels::Pcb;
use memlink_channels::WaitMode;
use memlink_channels::wait::{Deadline, wait_for};

/// Waits in Block mode until `flag` holds at least `at_least`, returning what it saw.
fn block_until(pcb: &Pcb, flag: &AtomicU32, at_least: u32) -> u32 {
    wait_for(
        pcb,
        WaitMode::Block,
        Deadline::Never,
        || {
            let v = flag.load(Ordering::Acquire);
            (v >= at_least).then_some(v)
        },
        |_| false,
    )
    .unwrap()
}

/// One waiter, one waker, in every interleaving: the waiter always wakes and sees the value.
#[test]
fn pcb_single_waiter_is_never_lost() {
    loom::model(|| {
        let pcb = Arc::new(Pcb::new());
        let flag = Arc::new(AtomicU32::new(0));
        let (p, f) = (Arc::clone(&pcb), Arc::clone(&flag));
        let waker = thread::spawn(move || {
            f.store(7, Ordering::Release);
            p.notify();
        });
        assert_eq!(block_until(&pcb, &flag, 1), 7);
        waker.join().unwrap();
    });
}

/// Two waiters share one block (a port's senders do) and one notify must wake both: the second
/// waiter may find the asleep bit already set by the first and sleep on it.
#[test]
fn pcb_shared_by_two_waiters_wakes_both() {
    loom::model(|| {
        let pcb = Arc::new(Pcb::new());
        let flag = Arc::new(AtomicU32::new(0));
        let waiters: Vec<_> = (0..2)
            .map(|_| {
                let (p, f) = (Arc::clone(&pcb), Arc::clone(&flag));
                thread::spawn(move || block_until(&p, &f, 1))
            })
            .collect();
        flag.store(1, Ordering::Release);
        pcb.notify();
        for w in waiters {
            assert_eq!(w.join().unwrap(), 1);
        }
    });
}

/// Two events in a row to one waiter that waits for each in turn (a ping-pong's shape): the
/// second notify must not be absorbed by a bit left over from the first sleep.
#[test]
fn pcb_two_events_in_a_row_both_seen() {
    loom::model(|| {
        let pcb = Arc::new(Pcb::new());
        let flag = Arc::new(AtomicU32::new(0));
        let (p, f) = (Arc::clone(&pcb), Arc::clone(&flag));
        let waker = thread::spawn(move || {
            for v in 1..=2 {
                f.store(v, Ordering::Release);
                p.notify();
            }
        });
        assert!(block_until(&pcb, &flag, 1) >= 1);
        assert_eq!(block_until(&pcb, &flag, 2), 2);
        waker.join().unwrap();
    });
}
