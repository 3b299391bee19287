//! Loom model of the buffered (two-copy) ring: k slots between one sender and one receiver.
#![cfg(memlink_loom)]

use loom::sync::Arc;
use loom::thread;
use memlink_channels::WaitMode;
use memlink_channels::protocol::ring::RingStorage;
use memlink_channels::wait::{Deadline, WaitFailure};
use memlink_loom_tests::death::at_every_step;

/// Three values through a one-slot ring: every value arrives once, in order; the sender
/// waits for room and the receiver for data without a lost wake-up. The slot is a loom cell,
/// so a missing Release/Acquire pair shows up as a data race.
fn three_values(mode: WaitMode) {
    loom::model(move || {
        let storage = Arc::new(RingStorage::<u64>::new(1, mode));
        let tx = Arc::clone(&storage);
        let sender = thread::spawn(move || {
            let ring = tx.ring();
            for v in 1..=3u64 {
                ring.send(v, Deadline::Never, |_| false).unwrap();
            }
        });
        let ring = storage.ring();
        for expected in 1..=3u64 {
            assert_eq!(ring.recv(Deadline::Never, |_| false), Ok(expected));
        }
        sender.join().unwrap();
        assert_eq!(ring.try_recv(), None);
    });
}

#[test]
fn ring_spin_in_order_exactly_once() {
    three_values(WaitMode::Spin);
}

#[test]
fn ring_block_no_lost_wakeup() {
    three_values(WaitMode::Block);
}

/// A sender blocked on a full ring gets its value back with Disconnected when the receiver
/// closes.
#[test]
fn ring_disconnect_while_sender_waits() {
    loom::model(|| {
        let storage = Arc::new(RingStorage::<u64>::new(1, WaitMode::Block));
        let rx = Arc::clone(&storage);
        let ring = storage.ring();
        ring.try_send(1).unwrap();
        let closer = thread::spawn(move || {
            let h = rx.ring().header();
            h.receiver.close(&h.sender);
        });
        let receiver = &ring.header().receiver;
        let got = ring.send(2, Deadline::Never, |_| receiver.is_closed());
        assert_eq!(got, Err((2, WaitFailure::Disconnected)));
        closer.join().unwrap();
    });
}

/// Receives everything queued.
fn drain(ring: &memlink_channels::protocol::ring::Ring<'_, u64>) -> Vec<u64> {
    std::iter::from_fn(|| ring.try_recv()).collect()
}

/// A sender killed at every step of two sends into a three-cell ring while the receiver
/// receives; once the victim is reported dead a new sender sends a third value, then the
/// receiver drains: it gets the victim's values that were published (a prefix; both if its
/// sends returned), once each, in order, then the new sender's; afterwards every cell can be
/// filled again.
#[test]
fn ring_sender_killed_at_every_step_loses_no_cell() {
    let steps = at_every_step(|victim| {
        let storage = Arc::new(RingStorage::<u64>::new(3, WaitMode::Spin));
        let (s, v) = (Arc::clone(&storage), victim.clone());
        let killed = thread::spawn(move || {
            let ring = s.ring();
            v.run(|| {
                for value in 1..=2u64 {
                    ring.try_send(value).expect("room for two values");
                }
            })
            .is_some()
        });
        let s = Arc::clone(&storage);
        let receiver = thread::spawn(move || s.ring().try_recv());
        let finished = killed.join().unwrap();
        let ring = storage.ring();
        ring.try_send(3).expect("the successor finds room");
        let mut got: Vec<u64> = receiver.join().unwrap().into_iter().collect();
        got.extend(drain(&ring));
        let published = got.len() as u64 - 1;
        let expected: Vec<u64> = (1..=published).chain([3]).collect();
        assert_eq!(got, expected, "lost, duplicated or out of order");
        if finished {
            assert_eq!(published, 2, "a sent value was lost");
        }
        for v in 10..13u64 {
            assert_eq!(ring.try_send(v), Ok(()), "a cell was lost");
        }
    });
    assert!(steps > 5, "the sender was killed at only {steps} steps");
}

/// A receiver killed at every step of two receives (two values queued in a three-cell ring)
/// while the sender sends a third; then a new receiver takes over: the victim returned a
/// prefix, the new receiver gets the rest once each, in order (at most the value delivered to
/// the victim as it died missing); afterwards every cell can be filled again.
#[test]
fn ring_receiver_killed_at_every_step_loses_no_cell() {
    let steps = at_every_step(|victim| {
        let storage = Arc::new(RingStorage::<u64>::new(3, WaitMode::Spin));
        let ring = storage.ring();
        for value in 1..=2u64 {
            ring.try_send(value).unwrap();
        }
        let (s, v) = (Arc::clone(&storage), victim.clone());
        let killed = thread::spawn(move || {
            let ring = s.ring();
            let returned = std::cell::Cell::new(0u64);
            v.run(|| {
                for expected in 1..=2u64 {
                    assert_eq!(ring.try_recv(), Some(expected));
                    returned.set(expected);
                }
            });
            returned.get()
        });
        let s = Arc::clone(&storage);
        let sender = thread::spawn(move || s.ring().try_send(3).expect("room for a third"));
        let victim_got = killed.join().unwrap();
        sender.join().unwrap();
        let got = drain(&ring);
        let first = got[0];
        assert!(
            first == victim_got + 1 || first == victim_got + 2,
            "victim returned up to {victim_got}, the new receiver got {got:?}"
        );
        assert_eq!(got, (first..=3).collect::<Vec<_>>(), "duplicated or lost");
        for v in 10..13u64 {
            assert_eq!(ring.try_send(v), Ok(()), "a cell was lost");
        }
    });
    assert!(steps > 5, "the receiver was killed at only {steps} steps");
}
