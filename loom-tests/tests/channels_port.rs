//! Loom models of the port: many senders, one receiver, and the receive right moving.
#![cfg(memlink_loom)]

use loom::sync::Arc;
use loom::sync::atomic::{AtomicBool, Ordering};
use loom::thread;
use memlink_channels::WaitMode;
use memlink_channels::protocol::mpsc::MpscStorage;
use memlink_channels::wait::Deadline;
use memlink_loom_tests::death::at_every_step;

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

/// A sender killed at every step of its send (claim announced, tail claimed, value written,
/// published, announcement cleared), racing a live sender that sends two messages through a
/// three-cell port and a receiver that receives meanwhile; once the victim is reported dead,
/// the receiver drains the port, freeing a dead sender's claimed cell (`skip_dead_claim`):
/// the live sender's messages arrive exactly once, in order, the victim's at most once
/// (exactly once if its send returned Ok), and afterwards every cell can be filled and
/// emptied again.
#[test]
fn port_sender_killed_at_every_step_loses_no_cell() {
    let steps = at_every_step(|victim| {
        let storage = Arc::new(MpscStorage::<u32>::new(3, WaitMode::Spin, 1));
        let (dead_pid, live_pid) = (7u32, 8u32);
        let dying = storage.queue().connect_sender(dead_pid, |_| false).unwrap();
        let live = storage.queue().connect_sender(live_pid, |_| false).unwrap();
        let (s, v) = (Arc::clone(&storage), victim.clone());
        let killed = thread::spawn(move || v.run(|| s.queue().try_send(dying, 100).is_ok()));
        let s = Arc::clone(&storage);
        let sender = thread::spawn(move || {
            let q = s.queue();
            for v in 1..=2u32 {
                assert_eq!(
                    q.try_send(live, v),
                    Ok(()),
                    "three cells for three messages"
                );
            }
        });
        let q = storage.queue();
        let mut got: Vec<u32> = q.try_recv().into_iter().collect();
        let victim_sent = killed.join().unwrap();
        sender.join().unwrap();
        // Everyone is done; the victim is reported dead from now on.
        let is_dead = |pid: u32| pid == dead_pid;
        loop {
            if let Some(v) = q.try_recv() {
                got.push(v);
            } else if !q.skip_dead_claim(&is_dead) {
                break;
            }
        }
        let live_got: Vec<u32> = got.iter().copied().filter(|&v| v != 100).collect();
        assert_eq!(
            live_got,
            [1, 2],
            "live sender's messages lost or duplicated"
        );
        let victim_got = got.iter().filter(|&&v| v == 100).count();
        assert!(victim_got <= 1, "the victim's message arrived twice");
        if victim_sent == Some(true) {
            assert_eq!(victim_got, 1, "a sent message was lost");
        }
        for v in 10..13u32 {
            assert_eq!(q.try_send(live, v), Ok(()), "a cell was lost");
        }
        for v in 10..13u32 {
            assert_eq!(q.try_recv(), Some(v));
        }
    });
    assert!(steps > 5, "the sender was killed at only {steps} steps");
}
