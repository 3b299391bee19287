//! Loom models of the port: many senders, one receiver, and the receive right moving.
#![cfg(memlink_loom)]

use loom::sync::Arc;
use loom::sync::atomic::{AtomicBool, Ordering};
use loom::thread;
use memlink_channels::WaitMode;
use memlink_channels::protocol::mpsc::MpscStorage;
use memlink_channels::wait::Deadline;

/// Two senders racing for the tail of a two-cell port: every message is received exactly
/// once, and the blocking receiver never sleeps through a wake-up (senders waiting for room
/// are modelled in `port_fifo_across_wraparound`). (With one cell this model fails with a
/// data race on the cell: see `PortHeader::new`.)
#[test]
fn port_mpsc_exactly_once_per_sender_fifo() {
    loom::model(|| {
        let storage = Arc::new(MpscStorage::<(u32, u32)>::new(2, WaitMode::Block, 1));
        let senders: Vec<_> = (0..2u32)
            .map(|id| {
                let s = Arc::clone(&storage);
                let index = s.queue().connect_sender(10 + id, |_| false).unwrap();
                thread::spawn(move || {
                    let q = s.queue();
                    for seq in 0..1u32 {
                        q.send(index, (id, seq), Deadline::Never, |_| false)
                            .unwrap();
                    }
                })
            })
            .collect();
        let q = storage.queue();
        let mut next = [0u32; 2];
        for _ in 0..2 {
            let (id, seq) = q.recv(Deadline::Never, |_| false).unwrap();
            assert_eq!(
                seq, next[id as usize],
                "sender {id} out of order or duplicated"
            );
            next[id as usize] += 1;
        }
        for s in senders {
            s.join().unwrap();
        }
        assert_eq!(next, [1, 1]);
        assert_eq!(q.try_recv(), None);
    });
}

/// The receive right moves from one receiver to another while a sender sends: the right is
/// claimed exactly once, and the two receivers together get every message once, in order.
#[test]
fn port_receive_right_moves() {
    loom::model(|| {
        let storage = Arc::new(MpscStorage::<u32>::new(2, WaitMode::Spin, 1));
        let s = Arc::clone(&storage);
        let index = s.queue().connect_sender(10, |_| false).unwrap();
        let sender = thread::spawn(move || {
            let q = s.queue();
            for v in 0..2u32 {
                q.send(index, v, Deadline::Never, |_| false).unwrap();
            }
        });
        let q = storage.queue();
        let first = q.recv(Deadline::Never, |_| false).unwrap();
        let generation = q.release_right(1).unwrap();
        // Two processes race to claim the token: exactly one wins and receives the rest.
        let s2 = Arc::clone(&storage);
        let other = thread::spawn(move || {
            let q = s2.queue();
            q.claim_right(generation, 2)
                .then(|| q.recv(Deadline::Never, |_| false).unwrap())
        });
        let mine = q
            .claim_right(generation, 3)
            .then(|| q.recv(Deadline::Never, |_| false).unwrap());
        let theirs = other.join().unwrap();
        sender.join().unwrap();
        let second = match (mine, theirs) {
            (Some(v), None) | (None, Some(v)) => v,
            (a, b) => panic!("right claimed by both or neither: {a:?} {b:?}"),
        };
        assert_eq!((first, second), (0, 1));
    });
}

/// The receiver blocked on an empty port returns Disconnected when its last sender leaves.
#[test]
fn port_disconnect_while_waiting() {
    loom::model(|| {
        let storage = Arc::new(MpscStorage::<u32>::new(1, WaitMode::Block, 1));
        let q = storage.queue();
        let index = q.connect_sender(5, |_| false).unwrap();
        let s = Arc::clone(&storage);
        let leaver = thread::spawn(move || s.queue().disconnect_sender(index));
        let got = q.recv(Deadline::Never, |_| q.senders_gone(None));
        assert!(got.is_err());
        leaver.join().unwrap();
    });
}

/// One sender, three messages through a two-cell port, the cells wrapping around: per-sender
/// FIFO order and exactly-once delivery across the wrap.
#[test]
fn port_fifo_across_wraparound() {
    loom::model(|| {
        let storage = Arc::new(MpscStorage::<u32>::new(2, WaitMode::Block, 1));
        let s = Arc::clone(&storage);
        let index = s.queue().connect_sender(10, |_| false).unwrap();
        let sender = thread::spawn(move || {
            let q = s.queue();
            for v in 0..3u32 {
                q.send(index, v, Deadline::Never, |_| false).unwrap();
            }
        });
        let q = storage.queue();
        for expected in 0..3u32 {
            assert_eq!(q.recv(Deadline::Never, |_| false), Ok(expected));
        }
        sender.join().unwrap();
    });
}

/// A sender killed between claiming a cell and publishing it (`claim_and_abandon`, then its
/// death noticed), racing a live sender that sends two messages through a three-cell port
/// (the dead cell first, between or after them): the receiver frees the dead sender's cell (`skip_dead_claim`) and gets the live sender's
/// messages exactly once, in order; it never frees a cell the live sender owns (that would be
/// a data race on the cell, or a lost or duplicated message).
#[test]
fn port_cell_of_a_dead_sender_is_skipped() {
    loom::model(|| {
        let storage = Arc::new(MpscStorage::<u32>::new(3, WaitMode::Block, 1));
        let (dead_pid, live_pid) = (7u32, 8u32);
        let dying = storage.queue().connect_sender(dead_pid, |_| false).unwrap();
        let live = storage.queue().connect_sender(live_pid, |_| false).unwrap();
        let dead = Arc::new(AtomicBool::new(false));
        let (s, d) = (Arc::clone(&storage), Arc::clone(&dead));
        let killed = thread::spawn(move || {
            s.queue().claim_and_abandon(dying);
            d.store(true, Ordering::SeqCst); // the kernel reports the death from now on
        });
        let s = Arc::clone(&storage);
        let sender = thread::spawn(move || {
            let q = s.queue();
            for v in 1..=2u32 {
                q.send(live, v, Deadline::Never, |_| false).unwrap();
            }
        });
        let q = storage.queue();
        let is_dead = |pid: u32| pid == dead_pid && dead.load(Ordering::SeqCst);
        let mut got = Vec::new();
        while got.len() < 2 {
            if let Some(v) = q.try_recv() {
                got.push(v);
            } else if !q.skip_dead_claim(&is_dead) {
                thread::yield_now();
            }
        }
        killed.join().unwrap();
        sender.join().unwrap();
        assert_eq!(got, [1, 2]);
        assert_eq!(q.try_recv(), None);
    });
}
