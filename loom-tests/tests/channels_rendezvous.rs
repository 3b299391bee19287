//! Loom models of the synchronous zero-copy rendezvous (seed 001's descriptor).
#![cfg(memlink_loom)]

use loom::sync::Arc;
use loom::thread;
use memlink_channels::WaitMode;
use memlink_channels::protocol::rendezvous::{Role, SyncShared};
use memlink_channels::wait::{Deadline, WaitFailure};

fn send(ch: &SyncShared, value: u64) -> Result<(), WaitFailure> {
    let mut msg = value;
    let gone = |_| ch.endpoint(Role::Receiver).is_closed();
    // SAFETY: `msg` is a live local that we do not touch until the rendezvous returns, and the
    // receiver is a thread of this process.
    unsafe {
        ch.transfer(
            Role::Sender,
            (&raw mut msg).cast(),
            8,
            Deadline::Never,
            gone,
        )
    }
}

fn recv(ch: &SyncShared) -> Result<u64, WaitFailure> {
    let mut target = 0u64;
    let gone = |_| ch.endpoint(Role::Sender).is_closed();
    // SAFETY: as in `send`, for the target variable.
    unsafe {
        ch.transfer(
            Role::Receiver,
            (&raw mut target).cast(),
            8,
            Deadline::Never,
            gone,
        )
    }?;
    Ok(target)
}

/// Two messages, both arrival orders explored by loom: each delivered exactly once, in order,
/// with the value the sender wrote (one copy, straight into the target).
fn two_messages(mode: WaitMode) {
    loom::model(move || {
        let ch = Arc::new(SyncShared::new(mode));
        let tx = Arc::clone(&ch);
        let sender = thread::spawn(move || {
            send(&tx, 11).unwrap();
            send(&tx, 22).unwrap();
        });
        assert_eq!(recv(&ch).unwrap(), 11);
        assert_eq!(recv(&ch).unwrap(), 22);
        sender.join().unwrap();
    });
}

#[test]
fn rendezvous_spin_delivers_exactly_once_in_order() {
    two_messages(WaitMode::Spin);
}

#[test]
fn rendezvous_block_has_no_lost_wakeup() {
    two_messages(WaitMode::Block);
}

#[test]
fn rendezvous_adaptive() {
    two_messages(WaitMode::Adaptive { spins: 1 });
}

/// A receiver blocked on an empty channel returns Disconnected when the sender closes; it
/// never hangs (a lost wake-up would be a loom deadlock).
#[test]
fn rendezvous_disconnect_while_waiting() {
    loom::model(|| {
        let ch = Arc::new(SyncShared::new(WaitMode::Block));
        let tx = Arc::clone(&ch);
        let closer = thread::spawn(move || {
            tx.endpoint(Role::Sender).close(tx.endpoint(Role::Receiver));
        });
        assert_eq!(recv(&ch), Err(WaitFailure::Disconnected));
        closer.join().unwrap();
        // After the withdrawal the descriptor is free again: a new sender can rendezvous.
        assert_eq!(
            ch.descriptor()
                .wait
                .load(loom::sync::atomic::Ordering::SeqCst)
                & 3,
            0
        );
    });
}

/// A sender racing with a receiver's close either delivers (the receiver was there) or gets
/// Disconnected; never both, never a hang.
#[test]
fn rendezvous_send_races_close() {
    loom::model(|| {
        let ch = Arc::new(SyncShared::new(WaitMode::Block));
        let rx = Arc::clone(&ch);
        let receiver = thread::spawn(move || {
            let got = recv(&rx);
            rx.endpoint(Role::Receiver).close(rx.endpoint(Role::Sender));
            got
        });
        let sent = send(&ch, 7);
        let got = receiver.join().unwrap();
        assert_eq!(got, Ok(7));
        assert_eq!(sent, Ok(()));
    });
}
