//! BufferedChannel and Port between real processes: FIFO delivery, many senders, the receive
//! right moving to another process inside a message, and dead peers.

use crate::fork;

use memlink_channels::{
    BufferedChannel, Port, ReceiveRight, ReceiveRightToken, RecvError, RecvTimeoutError, Region,
    SendError, SendRight, TrySendError, WaitMode,
};
use memlink_test_support::isolated;
use std::sync::Arc;
use std::time::Duration;

/// 2000 values through 8 slots (two copies each): all arrive, in order; then Disconnected.
#[test]
fn buffered_processes_fifo() {
    isolated(|| {
        let region = Arc::new(Region::create("buffered", 1 << 16).unwrap());
        let ch = BufferedChannel::<[u64; 2]>::create(&region, 8, WaitMode::ADAPTIVE).unwrap();
        let rx = ch.receiver().unwrap();
        let child = fork::child(|| {
            let tx = ch.sender().unwrap();
            for i in 0..2000u64 {
                if tx.send([i, !i]).is_err() {
                    return 1;
                }
            }
            0
        });
        for i in 0..2000u64 {
            assert_eq!(rx.recv().unwrap(), [i, !i]);
        }
        assert_eq!(fork::wait(child), 0);
        assert_eq!(rx.recv(), Err(RecvError::Disconnected));
    });
}

/// A full buffer hands the value back; a dead receiver makes a blocked send Disconnected.
#[test]
fn buffered_full_and_dead_receiver() {
    isolated(|| {
        let region = Arc::new(Region::create("buffered-dead", 1 << 16).unwrap());
        let ch = BufferedChannel::<u64>::create(&region, 1, WaitMode::Block).unwrap();
        let tx = ch.sender().unwrap();
        tx.send(1).unwrap();
        assert_eq!(tx.try_send(2), Err(TrySendError::Full(2)));
        let child = fork::child(|| {
            let _rx = ch.receiver().unwrap();
            fork::die()
        });
        assert_eq!(fork::wait(child), 128 + libc::SIGKILL);
        assert_eq!(tx.send(3), Err(SendError::Disconnected(3)));
    });
}

/// Three sender processes, 300 messages each, into one port: every message exactly once, each
/// sender's in its order.
#[test]
fn port_many_sender_processes() {
    isolated(|| {
        let region = Arc::new(Region::create("port-many", 1 << 16).unwrap());
        let (port, right) = Port::<[u32; 2]>::create(&region, 16, WaitMode::ADAPTIVE).unwrap();
        // Our own sender keeps the port connected while the children come and go: a receiver
        // sees Disconnected once every sender that connected has left.
        let keep_open = port.sender().unwrap();
        let children: Vec<_> = (0..3u32)
            .map(|id| {
                let port = port.clone();
                fork::child(move || {
                    let tx = port.sender().unwrap();
                    for seq in 0..300u32 {
                        if tx.send([id, seq]).is_err() {
                            return 1;
                        }
                    }
                    0
                })
            })
            .collect();
        let mut next = [0u32; 3];
        for _ in 0..900 {
            let [id, seq] = right
                .recv_timeout(Duration::from_secs(60))
                .expect("no message for 60 s: a sender process failed or hung");
            assert_eq!(seq, next[id as usize], "sender {id}");
            next[id as usize] += 1;
        }
        for c in children {
            assert_eq!(fork::wait(c), 0);
        }
        assert_eq!(next, [300; 3]);
        drop(keep_open);
        assert_eq!(
            right.recv_timeout(Duration::from_secs(30)),
            Err(RecvTimeoutError::Disconnected)
        );
    });
}

/// A sender process killed between claiming a cell and publishing it (its claim made, its
/// message never written) does not stall the receiver: once the sender is seen dead its cell
/// is freed, and every message of a live sender process arrives, in order; then Disconnected.
/// The same with a receiver that only polls (`try_recv`).
#[test]
fn port_sender_killed_mid_send_does_not_stall_the_receiver() {
    isolated(|| {
        let region = Arc::new(Region::create("port-killed-mid-send", 1 << 16).unwrap());
        let (port, right) = Port::<u64>::create(&region, 4, WaitMode::Block).unwrap();
        let claim_and_die = |port: &Port<u64>| {
            let claimed = fork::Event::new();
            let dying = fork::child(|| {
                let tx = port.sender().unwrap();
                if !tx.claim_and_abandon() {
                    return 1;
                }
                claimed.set();
                fork::die()
            });
            assert!(claimed.wait(), "the dying sender did not claim a cell");
            assert_eq!(fork::wait(dying), 128 + libc::SIGKILL);
        };
        // Blocking receives: the dead cell comes first, the live sender's behind it.
        claim_and_die(&port);
        let live = {
            let port = port.clone();
            fork::child(move || {
                let tx = port.sender().unwrap();
                for i in 0..200u64 {
                    if tx.send(i).is_err() {
                        return 1;
                    }
                }
                0
            })
        };
        for i in 0..200u64 {
            assert_eq!(right.recv_timeout(Duration::from_secs(30)), Ok(i));
        }
        assert_eq!(fork::wait(live), 0);
        // Polling: a dead cell, then a message of ours.
        let ours = port.sender().unwrap();
        claim_and_die(&port);
        ours.send(1000).unwrap();
        assert_eq!(right.try_recv(), Ok(1000));
        drop(ours);
        assert_eq!(
            right.recv_timeout(Duration::from_secs(30)),
            Err(RecvTimeoutError::Disconnected)
        );
    });
}

/// A message type that carries capabilities: a send right and a receive right in transit.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct Handoff {
    reply_to: SendRight,
    right: ReceiveRightToken,
}

// SAFETY: repr(C) of two Shareable plain-data references (offsets and integers).
unsafe impl memlink_channels::Shareable for Handoff {}

/// The receive right of port P moves to another process inside a message: a sender queues 100
/// messages on P, we receive the first 40, send P's receive right to process D on D's own port
/// (whose send right D sent us inside a message on a third port), and D receives the other 60,
/// in order. A second claim of the same token fails.
#[test]
fn port_receive_right_moves_to_another_process() {
    isolated(|| {
        let region = Arc::new(Region::create("port-move", 1 << 16).unwrap());
        let (p, p_right) = Port::<u32>::create(&region, 128, WaitMode::Block).unwrap();
        let (hello, hello_right) = Port::<SendRight>::create(&region, 2, WaitMode::Block).unwrap();
        let sender = fork::child(|| {
            let tx = p.sender().unwrap();
            for v in 0..100u32 {
                if tx.send(v).is_err() {
                    return 1;
                }
            }
            0
        });
        let d = fork::child(|| {
            // D makes its own port and sends us its send right (a capability inside a message).
            let (mine, mine_right) = match Port::<Handoff>::create(&region, 2, WaitMode::Block) {
                Ok(p) => p,
                Err(_) => return 2,
            };
            let Ok(tx) = hello.sender() else { return 3 };
            if tx.send(mine.send_right()).is_err() {
                return 4;
            }
            let Ok(handoff) = mine_right.recv() else {
                return 5;
            };
            let Ok(moved) = ReceiveRight::<u32>::claim(&region, handoff.right) else {
                return 6;
            };
            for expected in 40..100u32 {
                match moved.recv() {
                    Ok(v) if v == expected => {}
                    _ => return 7,
                }
            }
            // Tell the parent we are done, on the port it named in the handoff.
            let Ok(back) = handoff.reply_to.open::<SendRight>(&region) else {
                return 8;
            };
            if back.send(mine.send_right()).is_err() {
                return 9;
            }
            0
        });
        for expected in 0..40u32 {
            assert_eq!(p_right.recv().unwrap(), expected);
        }
        let d_port = hello_right.recv().unwrap();
        let to_d = d_port.open::<Handoff>(&region).unwrap();
        let token = p_right.into_transfer();
        to_d.send(Handoff {
            reply_to: hello.send_right(),
            right: token,
        })
        .unwrap();
        hello_right.recv().unwrap();
        assert_eq!(fork::wait(d), 0);
        assert_eq!(fork::wait(sender), 0);
        assert!(
            ReceiveRight::<u32>::claim(&region, token).is_err(),
            "a right claimed twice"
        );
    });
}

/// The port's receiver is SIGKILLed while a sender waits for room: the sender gets
/// Disconnected and its message back.
#[test]
fn port_dead_receiver_disconnects_blocked_sender() {
    isolated(|| {
        let region = Arc::new(Region::create("port-dead", 1 << 16).unwrap());
        let (port, right) = Port::<u64>::create(&region, 2, WaitMode::Block).unwrap();
        let tx = port.sender().unwrap();
        tx.send(1).unwrap();
        tx.send(2).unwrap();
        let token = right.into_transfer();
        let child = fork::child(|| {
            let _right = ReceiveRight::<u64>::claim(&region, token).unwrap();
            fork::die()
        });
        assert_eq!(fork::wait(child), 128 + libc::SIGKILL);
        assert_eq!(tx.send(3), Err(SendError::Disconnected(3)));
    });
}
