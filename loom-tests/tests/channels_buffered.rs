//! Loom model of the buffered (two-copy) ring: k slots between one sender and one receiver.
#![cfg(memlink_loom)]

use loom::sync::Arc;
use loom::thread;
use memlink_channels::WaitMode;
use memlink_channels::protocol::ring::RingStorage;
use memlink_channels::wait::{Deadline, WaitFailure};

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
