//! LoanChannel between real processes: zero copy (the receiver reads at the address the sender
//! wrote), 16 MiB slots, back-pressure, and a sender SIGKILLed while holding loans.

use crate::fork;

use memlink_channels::protocol::loan::FREE;
use memlink_channels::{LoanChannel, LoanError, RecvTimeoutError, Region, TryRecvError, WaitMode};
use memlink_test_support::isolated;
use std::sync::Arc;
use std::time::Duration;

/// 200 messages through a 4-slot pool: each arrives once, in order, with its bytes, at the
/// very address where the child built it; afterwards every slot is back in the pool.
#[test]
fn loan_processes_zero_copy_in_place() {
    isolated(|| {
        let region = Arc::new(Region::create("loan-zero-copy", 1 << 20).unwrap());
        let ch = LoanChannel::create(&region, 4, 4096, WaitMode::ADAPTIVE).unwrap();
        let rx = ch.receiver().unwrap();
        let child = fork::child(|| {
            let tx = ch.sender().unwrap();
            for i in 0..200u64 {
                let mut loan = tx.loan().unwrap();
                let addr = loan.as_ptr() as u64;
                let buf = loan.as_mut_slice();
                buf[..8].copy_from_slice(&addr.to_ne_bytes());
                buf[8..16].copy_from_slice(&i.to_ne_bytes());
                buf[16..100].fill(i as u8);
                if loan.send(100).is_err() {
                    return 1;
                }
            }
            0
        });
        for i in 0..200u64 {
            let sample = rx.recv().unwrap();
            assert_eq!(sample.len(), 100);
            let written_at = u64::from_ne_bytes(sample[..8].try_into().unwrap());
            assert_eq!(
                written_at,
                sample.as_ptr() as u64,
                "the message moved: not zero copy"
            );
            assert_eq!(u64::from_ne_bytes(sample[8..16].try_into().unwrap()), i);
            assert!(sample[16..100].iter().all(|&b| b == i as u8));
        }
        assert_eq!(fork::wait(child), 0);
        assert_eq!(rx.try_recv().unwrap_err(), TryRecvError::Disconnected);
        for slot in 0..4 {
            assert_eq!(ch.pool().slot_state(slot).0, FREE);
        }
    });
}

/// Two 16 MiB slots: a full 16 MiB message built in place by the child is read intact.
#[test]
fn loan_processes_16_mib_slots() {
    isolated(|| {
        const MIB16: usize = 16 << 20;
        let region = Arc::new(Region::create("loan-16mib", 2 * MIB16 + (1 << 16)).unwrap());
        let ch = LoanChannel::create(&region, 2, MIB16, WaitMode::Block).unwrap();
        let rx = ch.receiver().unwrap();
        let child = fork::child(|| {
            let tx = ch.sender().unwrap();
            for round in 0..3u32 {
                let mut loan = tx.loan().unwrap();
                for (i, b) in loan.as_mut_slice().iter_mut().enumerate() {
                    *b = (i as u32).wrapping_mul(31).wrapping_add(round) as u8;
                }
                if loan.send(MIB16).is_err() {
                    return 1;
                }
            }
            0
        });
        for round in 0..3u32 {
            let sample = rx.recv().unwrap();
            assert_eq!(sample.len(), MIB16);
            let bad = sample
                .iter()
                .enumerate()
                .position(|(i, &b)| b != (i as u32).wrapping_mul(31).wrapping_add(round) as u8);
            assert_eq!(bad, None, "round {round}: byte mismatch");
        }
        assert_eq!(fork::wait(child), 0);
    });
}

/// Back-pressure chosen by the caller: try_loan reports Exhausted, loan_timeout times out, and
/// a returned slot is loanable again.
#[test]
fn loan_backpressure_error_or_block() {
    let region = Arc::new(Region::create("loan-bp", 1 << 16).unwrap());
    let ch = LoanChannel::create(&region, 2, 64, WaitMode::Block).unwrap();
    let tx = ch.sender().unwrap();
    let rx = ch.receiver().unwrap();
    let a = tx.loan().unwrap();
    let b = tx.loan().unwrap();
    assert_eq!(tx.try_loan().unwrap_err(), LoanError::Exhausted);
    assert_eq!(
        tx.loan_timeout(Duration::from_millis(5)).unwrap_err(),
        LoanError::Exhausted
    );
    a.send(1).unwrap();
    drop(b);
    let c = tx.try_loan().unwrap();
    let sample = rx.recv().unwrap();
    assert_eq!(tx.try_loan().unwrap_err(), LoanError::Exhausted);
    drop(sample);
    let d = tx.try_loan().unwrap();
    drop((c, d));
}

/// A sender process holding both slots is SIGKILLed: the waiting receiver gets Disconnected,
/// and the dead process's loans are reclaimed so a new sender can use the whole pool.
#[test]
fn loan_sender_killed_mid_loan_slots_reclaimed() {
    isolated(|| {
        let region = Arc::new(Region::create("loan-kill", 1 << 16).unwrap());
        let ch = LoanChannel::create(&region, 2, 64, WaitMode::Block).unwrap();
        let rx = ch.receiver().unwrap();
        let holding = fork::Event::new();
        let child = fork::child(|| {
            let tx = ch.sender().unwrap();
            let _a = tx.loan().unwrap();
            let _b = tx.loan().unwrap();
            holding.set();
            // Wait until killed (a pipe nobody writes to again).
            fork::Event::new().wait();
            0
        });
        assert!(holding.wait());
        assert_eq!(rx.try_recv().unwrap_err(), TryRecvError::Empty);
        fork::kill(child);
        assert_eq!(fork::wait(child), 128 + libc::SIGKILL);
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(30)).unwrap_err(),
            RecvTimeoutError::Disconnected
        );
        let tx = ch.sender().unwrap();
        let first = tx.try_loan().unwrap();
        let second = tx.try_loan().unwrap();
        assert_ne!(first.slot(), second.slot());
    });
}

/// The receiver process dies holding a sample: its slot is reclaimed for the sender.
#[test]
fn loan_receiver_killed_holding_sample_slot_reclaimed() {
    isolated(|| {
        let region = Arc::new(Region::create("loan-kill-rx", 1 << 16).unwrap());
        let ch = LoanChannel::create(&region, 1, 64, WaitMode::Block).unwrap();
        let tx = ch.sender().unwrap();
        let holding = fork::Event::new();
        let child = fork::child(|| {
            let rx = ch.receiver().unwrap();
            let _sample = rx.recv().unwrap();
            holding.set();
            fork::die()
        });
        tx.loan().unwrap().send(8).unwrap();
        assert!(holding.wait());
        assert_eq!(fork::wait(child), 128 + libc::SIGKILL);
        // The only slot was held by the dead receiver: reclaimed, not lost.
        assert_eq!(tx.reclaim(), 1);
        assert!(tx.try_loan().is_ok());
    });
}
