//! SyncChannel between real processes (fork), in both arrival orders, with every waiting mode,
//! and with a sender killed by SIGKILL mid-rendezvous.

use crate::fork;

use memlink_channels::{RecvError, Region, SendError, SyncChannel, WaitMode};
use memlink_test_support::isolated;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

const SENDER_WAITING: u32 = 1;
const RECEIVER_WAITING: u32 = 2;

fn phase(ch: &SyncChannel<u64>) -> u32 {
    ch.descriptor().wait.load(Ordering::Acquire) & 3
}

fn wait_phase(ch: &SyncChannel<u64>, wanted: u32) {
    while phase(ch) != wanted {
        std::thread::yield_now();
    }
}

/// 100 rendezvous where the receiver is first, then 100 where the sender is first (each side
/// waits to see the other's offer in the shared descriptor before arriving): every message
/// arrives once, in order, copied from the child's message variable into our target.
fn both_orders(mode: WaitMode) {
    let region = Arc::new(Region::create("sync-orders", 1 << 16).unwrap());
    let ch = SyncChannel::<u64>::create(&region, mode).unwrap();
    let rx = ch.receiver().unwrap();
    let mut target = region.alloc(0u64).unwrap();
    let child = fork::child(|| {
        let tx = ch.sender().unwrap();
        let mut msg = region.alloc(0u64).unwrap();
        for i in 0..200u64 {
            *msg = i * 3 + 1;
            if i < 100 {
                wait_phase(&ch, RECEIVER_WAITING);
            }
            if tx.send(&msg).is_err() {
                return 1;
            }
        }
        0
    });
    for i in 0..200u64 {
        if i >= 100 {
            wait_phase(&ch, SENDER_WAITING);
        }
        rx.recv(&mut target).unwrap();
        assert_eq!(*target, i * 3 + 1);
    }
    assert_eq!(fork::wait(child), 0);
}

#[test]
fn sync_processes_both_orders_spin() {
    isolated(|| {
        both_orders(WaitMode::Spin);
    });
}

#[test]
fn sync_processes_both_orders_block() {
    isolated(|| {
        both_orders(WaitMode::Block);
    });
}

#[test]
fn sync_processes_both_orders_adaptive() {
    isolated(|| {
        both_orders(WaitMode::ADAPTIVE);
    });
}

/// The receiver waits; the sender process is SIGKILLed while the receiver's offer is published:
/// the receiver gets Disconnected (within the liveness period, not the generous test deadline),
/// and a new sender can then take over the channel.
#[test]
fn sync_sender_killed_mid_rendezvous_disconnects_receiver() {
    isolated(|| {
        let region = Arc::new(Region::create("sync-kill", 1 << 16).unwrap());
        let ch = SyncChannel::<u64>::create(&region, WaitMode::Block).unwrap();
        let rx = ch.receiver().unwrap();
        let mut target = region.alloc(0u64).unwrap();
        let child = fork::child(|| {
            let _tx = ch.sender().unwrap();
            wait_phase(&ch, RECEIVER_WAITING);
            fork::die()
        });
        let got = rx.recv_timeout(&mut target, Duration::from_secs(30));
        assert_eq!(got, Err(memlink_channels::RecvTimeoutError::Disconnected));
        assert_eq!(fork::wait(child), 128 + libc::SIGKILL);
        // The dead sender's end can be taken over.
        let tx = ch.sender().unwrap();
        let msg = region.alloc(42u64).unwrap();
        let child = fork::child(|| {
            let mut t = region.alloc(0u64).unwrap();
            match rx.recv(&mut t) {
                Ok(()) if *t == 42 => 0,
                _ => 1,
            }
        });
        tx.send(&msg).unwrap();
        assert_eq!(fork::wait(child), 0);
    });
}

/// The receiver process is SIGKILLed while the sender waits: the sender gets Disconnected.
#[test]
fn sync_receiver_killed_disconnects_sender() {
    isolated(|| {
        let region = Arc::new(Region::create("sync-kill-rx", 1 << 16).unwrap());
        let ch = SyncChannel::<u64>::create(&region, WaitMode::ADAPTIVE).unwrap();
        let tx = ch.sender().unwrap();
        let msg = region.alloc(5u64).unwrap();
        let child = fork::child(|| {
            let _rx = ch.receiver().unwrap();
            wait_phase(&ch, SENDER_WAITING);
            fork::die()
        });
        match tx.send_timeout(&msg, Duration::from_secs(30)) {
            Err(memlink_channels::SendTimeoutError::Disconnected(m)) => assert_eq!(*m, 5),
            other => panic!("expected Disconnected, got {other:?}"),
        }
        assert_eq!(fork::wait(child), 128 + libc::SIGKILL);
    });
}

/// Variables outside the region cannot be reached by another process: refused, handed back.
#[test]
fn sync_refuses_private_variables() {
    let region = Arc::new(Region::create("sync-private", 1 << 16).unwrap());
    let ch = SyncChannel::<u64>::create(&region, WaitMode::Spin).unwrap();
    let tx = ch.sender().unwrap();
    let rx = ch.receiver().unwrap();
    let private = 9u64;
    assert_eq!(tx.send(&private), Err(SendError::NotShared(&9)));
    let mut t = 0u64;
    assert_eq!(rx.recv(&mut t), Err(RecvError::NotShared));
}

/// try_recv with nobody waiting is Empty; after the sender drops, Disconnected.
#[test]
fn sync_try_and_timeout_variants() {
    let region = Arc::new(Region::create("sync-try", 1 << 16).unwrap());
    let ch = SyncChannel::<u64>::create(&region, WaitMode::Block).unwrap();
    let rx = ch.receiver().unwrap();
    let tx = ch.sender().unwrap();
    let mut t = region.alloc(0u64).unwrap();
    assert_eq!(
        rx.try_recv(&mut t),
        Err(memlink_channels::TryRecvError::Empty)
    );
    assert_eq!(
        rx.recv_timeout(&mut t, Duration::from_millis(5)),
        Err(memlink_channels::RecvTimeoutError::Timeout)
    );
    let m = region.alloc(1u64).unwrap();
    assert!(matches!(
        tx.try_send(&m),
        Err(memlink_channels::TrySendError::Full(_))
    ));
    drop(tx);
    assert_eq!(
        rx.try_recv(&mut t),
        Err(memlink_channels::TryRecvError::Disconnected)
    );
    assert_eq!(rx.recv(&mut t), Err(RecvError::Disconnected));
}

/// Between threads a local channel takes stack variables: one copy from the sender's stack
/// straight into the receiver's stack.
#[test]
fn sync_local_threads_stack_variables() {
    let ch = SyncChannel::<[u64; 4]>::local(WaitMode::ADAPTIVE);
    let tx = ch.sender().unwrap();
    let rx = ch.receiver().unwrap();
    let t = std::thread::spawn(move || {
        for i in 0..1000u64 {
            let msg = [i, i + 1, i + 2, i + 3];
            tx.send(&msg).unwrap();
        }
    });
    let mut target = [0u64; 4];
    for i in 0..1000u64 {
        rx.recv(&mut target).unwrap();
        assert_eq!(target, [i, i + 1, i + 2, i + 3]);
    }
    t.join().unwrap();
}
