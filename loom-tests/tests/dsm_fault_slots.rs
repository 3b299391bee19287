//! Loom models of the DSM fault mailbox (`memlink_dsm::fault_slots`): the handler side of the
//! SIGSEGV backend posts a fault and sleeps on a futex; the service thread serves it and wakes
//! it. Lost wake-ups show up as loom deadlocks.
#![cfg(memlink_loom)]

use loom::sync::Arc;
use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::thread;
use memlink_dsm::Access;
use memlink_dsm::fault_slots::{FaultSlots, Outcome};

/// Two threads fault at once (one slot each); the service thread serves each fault exactly
/// once and both faulting threads wake up with `Served`.
#[test]
fn two_faults_are_each_served_once_and_woken() {
    loom::model(|| {
        let slots = Arc::new(FaultSlots::new(2));
        let served = Arc::new(AtomicUsize::new(0));
        let faulting: Vec<_> = [(1u32, Access::Read), (2, Access::Write)]
            .into_iter()
            .map(|(page, access)| {
                let slots = Arc::clone(&slots);
                thread::spawn(move || slots.post_and_wait(page, access))
            })
            .collect();
        let mut seen = Vec::new();
        while seen.len() < 2 {
            slots.serve_posted(|page, access| {
                seen.push((page, access));
                served.fetch_add(1, Ordering::Relaxed);
                Outcome::Served
            });
        }
        for t in faulting {
            assert_eq!(t.join().unwrap(), Outcome::Served);
        }
        seen.sort();
        assert_eq!(seen, vec![(1, Access::Read), (2, Access::Write)]);
        assert_eq!(served.load(Ordering::Relaxed), 2);
    });
}

/// More faulting threads than slots: the second waits for the slot to come free, and both are
/// served.
#[test]
fn a_full_mailbox_makes_the_next_fault_wait_for_a_slot() {
    loom::model(|| {
        let slots = Arc::new(FaultSlots::new(1));
        let faulting: Vec<_> = [1u32, 2]
            .into_iter()
            .map(|page| {
                let slots = Arc::clone(&slots);
                thread::spawn(move || slots.post_and_wait(page, Access::Read))
            })
            .collect();
        let mut served = 0;
        while served < 2 {
            slots.serve_posted(|_, _| {
                served += 1;
                Outcome::Served
            });
        }
        for t in faulting {
            assert_eq!(t.join().unwrap(), Outcome::Served);
        }
    });
}

/// Stopping the service while a fault is posted never leaves the faulting thread asleep: it
/// wakes with Served (if it was served first) or Failed.
#[test]
fn stop_never_strands_a_posted_fault() {
    loom::model(|| {
        let slots = Arc::new(FaultSlots::new(1));
        let poster = {
            let slots = Arc::clone(&slots);
            thread::spawn(move || slots.post_and_wait(7, Access::Read))
        };
        let stopper = {
            let slots = Arc::clone(&slots);
            thread::spawn(move || slots.stop())
        };
        while slots.serve_posted(|_, _| Outcome::Served) {}
        stopper.join().unwrap();
        let outcome = poster.join().unwrap();
        assert!(matches!(outcome, Outcome::Served | Outcome::Failed));
    });
}
