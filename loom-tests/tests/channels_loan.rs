//! Loom models of the loan channel: slots loaned, sent by reference, read in place, returned.
#![cfg(memlink_loom)]

use loom::sync::Arc;
use loom::sync::atomic::{AtomicBool, Ordering};
use loom::thread;
use memlink_channels::WaitMode;
use memlink_channels::protocol::loan::{FREE, LoanStorage};
use memlink_channels::wait::{Deadline, WaitFailure};

const SENDER: u32 = 1;
const RECEIVER: u32 = 2;

/// Per-slot "someone holds this" flags kept by the model, outside the protocol.
struct Holders([AtomicBool; 2]);

impl Holders {
    fn new() -> Self {
        Holders([AtomicBool::new(false), AtomicBool::new(false)])
    }
    fn take(&self, slot: u32) {
        assert!(
            !self.0[slot as usize].swap(true, Ordering::AcqRel),
            "slot {slot} handed out twice"
        );
    }
    fn put(&self, slot: u32) {
        self.0[slot as usize].store(false, Ordering::Release);
    }
}

/// Three messages through two slots: the third loan must wait for a slot the receiver returns
/// (back-pressure), no slot is ever held by two parties, every message arrives once, in order,
/// at the address it was written, and at the end every slot is free again.
fn three_messages(mode: WaitMode) {
    loom::model(move || {
        let storage = Arc::new(LoanStorage::new(2, 8, mode));
        let holders = Arc::new(Holders::new());
        let (tx, th) = (Arc::clone(&storage), Arc::clone(&holders));
        let sender = thread::spawn(move || {
            let pool = tx.pool();
            for value in 1..=3u64 {
                let slot = pool.loan(SENDER, Deadline::Never, |_| false).unwrap();
                th.take(slot);
                // SAFETY: the slot is loaned to us, 8 bytes, aligned for u64 (slot size 8).
                unsafe { pool.slot_ptr(slot).cast::<u64>().write(value) };
                th.put(slot);
                pool.send(slot, 8);
            }
        });
        let pool = storage.pool();
        for expected in 1..=3u64 {
            let (slot, len) = pool.recv(RECEIVER, Deadline::Never, |_| false).unwrap();
            holders.take(slot);
            assert_eq!(len, 8);
            // SAFETY: the slot is held by us; the sender wrote it before sending.
            let got = unsafe { pool.slot_ptr(slot).cast::<u64>().read() };
            assert_eq!(got, expected);
            holders.put(slot);
            pool.release(slot);
        }
        sender.join().unwrap();
        for slot in 0..2 {
            assert_eq!(pool.slot_state(slot).0, FREE, "slot {slot} lost");
        }
    });
}

#[test]
fn loan_spin_exactly_once_no_double_handout() {
    three_messages(WaitMode::Spin);
}

#[test]
fn loan_block_backpressure_has_no_lost_wakeup() {
    three_messages(WaitMode::Block);
}

/// A receiver blocked on an empty pool gets Disconnected when the sender closes.
#[test]
fn loan_disconnect_while_waiting() {
    loom::model(|| {
        let storage = Arc::new(LoanStorage::new(1, 8, WaitMode::Block));
        let tx = Arc::clone(&storage);
        let closer = thread::spawn(move || {
            let h = tx.pool().header();
            h.sender.close(&h.receiver);
        });
        let pool = storage.pool();
        let sender = &pool.header().sender;
        let got = pool.recv(RECEIVER, Deadline::Never, |_| sender.is_closed());
        assert_eq!(got, Err(WaitFailure::Disconnected));
        closer.join().unwrap();
    });
}

/// Reclaiming the slots of a dead owner races with a live sender's loan: the dead owner's slot
/// comes back exactly once, and the live sender's loan is never taken from it.
#[test]
fn loan_reclaim_races_live_loan() {
    const DEAD: u32 = 9;
    loom::model(|| {
        let storage = Arc::new(LoanStorage::new(2, 8, WaitMode::Spin));
        let pool = storage.pool();
        let dead_slot = pool.try_loan(DEAD).unwrap();
        let tx = Arc::clone(&storage);
        let live =
            thread::spawn(move || tx.pool().loan(SENDER, Deadline::Never, |_| false).unwrap());
        let freed = pool.reclaim(|pid| pid == DEAD);
        let live_slot = live.join().unwrap();
        assert_eq!(freed, 1);
        assert_eq!(
            pool.slot_state(live_slot),
            (memlink_channels::protocol::loan::LOANED, SENDER)
        );
        let other = if live_slot == dead_slot {
            1 - dead_slot
        } else {
            dead_slot
        };
        assert_eq!(pool.slot_state(other).0, FREE);
    });
}
