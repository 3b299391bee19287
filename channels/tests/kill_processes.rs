//! Senders SIGKILLed at random moments, a thousand times per channel and waiting mode: no
//! message is lost or delivered twice, and afterwards every slot (cell) of the channel can be
//! obtained again. The kill moment is a number of receive-loop iterations of the parent drawn
//! from a seeded generator (printed, so a failure can be replayed with `MEMLINK_KILL_SEED`);
//! no sleep synchronises anything.

use crate::fork;

use memlink_channels::{
    LoanChannel, Port, Region, TryRecvError, TrySendError, WaitMode, protocol::loan::FREE,
};
use memlink_test_support::isolated;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A bound on waiting for a live sender's next message (it must never be reached).
const DEADLINE: Duration = Duration::from_secs(60);

/// Polls `try_recv` until a message comes, yielding the core in between (with spin waits on
/// two busy cores, a spinning receiver would keep the sender it waits for off the CPU).
fn until_received<M>(mut try_recv: impl FnMut() -> Option<M>) -> M {
    let start = Instant::now();
    loop {
        if let Some(message) = try_recv() {
            return message;
        }
        assert!(start.elapsed() < DEADLINE, "a live sender sent nothing");
        std::thread::yield_now();
    }
}

const KILLS: u32 = 1000;
const SLOTS: u32 = 8;
const SLOT_SIZE: usize = 64;

/// splitmix64: a small, seeded, reproducible generator.
struct Rng(u64);

impl Rng {
    fn seeded(test: &str) -> Rng {
        let seed = std::env::var("MEMLINK_KILL_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0x6c6f_616e_6b69_6c6c);
        println!("{test}: seed {seed} (set MEMLINK_KILL_SEED to replay)");
        Rng(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// When the parent kills the child: after it received `first` messages (waiting for each, so
/// the child is sending), then `iterations` more turns of its loop, receiving in them or not:
/// receiving keeps the child sending (kills land in loan and send), holding back lets the pool
/// fill up (kills land in the wait for a slot).
struct KillMoment {
    first: u64,
    iterations: u64,
    receive: bool,
}

fn kill_moment(rng: &mut Rng) -> KillMoment {
    KillMoment {
        first: rng.below(12),
        iterations: rng.below(4000),
        receive: rng.below(4) != 0,
    }
}

/// The message with sequence number `seq`: the number, then `seq % 56` bytes of `seq as u8`.
fn message_len(seq: u64) -> usize {
    8 + (seq % 56) as usize
}

fn check_message(bytes: &[u8], expected: u64) {
    assert!(bytes.len() >= 8, "message of {} bytes", bytes.len());
    let seq = u64::from_ne_bytes(bytes[..8].try_into().unwrap());
    assert_eq!(
        seq, expected,
        "message {seq} where {expected} was due: lost or duplicated"
    );
    assert_eq!(bytes.len(), message_len(seq), "message {seq}: wrong length");
    assert!(
        bytes[8..].iter().all(|&b| b == seq as u8),
        "message {seq}: wrong bytes"
    );
}

/// A loan-channel sender process is SIGKILLed `KILLS` times at random moments while the
/// parent receives: every message arrives once, in order, intact; after each kill a new sender
/// obtains all `SLOTS` slots.
fn loan_sender_killed_at_random(mode: WaitMode, test: &str) {
    let mut rng = Rng::seeded(test);
    let region = Arc::new(Region::create("loan-kill-random", 1 << 20).unwrap());
    let ch = LoanChannel::create(&region, SLOTS, SLOT_SIZE, mode).unwrap();
    let rx = ch.receiver().unwrap();
    let connected = fork::Event::new();
    let mut next = 0u64;
    let mut received_per_kill = Vec::with_capacity(KILLS as usize);
    for kill in 0..KILLS {
        let first = next;
        let child = fork::child(|| {
            let Ok(tx) = ch.sender() else { return 2 };
            connected.set();
            let mut seq = first;
            loop {
                let Ok(mut loan) = tx.loan() else { return 3 };
                let len = message_len(seq);
                let buf = loan.as_mut_slice();
                buf[..8].copy_from_slice(&seq.to_ne_bytes());
                buf[8..len].fill(seq as u8);
                if loan.send(len).is_err() {
                    return 4;
                }
                seq += 1;
            }
        });
        assert!(connected.wait(), "kill {kill}: the sender did not connect");
        let moment = kill_moment(&mut rng);
        for _ in 0..moment.first {
            check_message(&until_received(|| rx.try_recv().ok()), next);
            next += 1;
        }
        for _ in 0..moment.iterations {
            if moment.receive
                && let Ok(sample) = rx.try_recv()
            {
                check_message(&sample, next);
                next += 1;
            }
            std::hint::spin_loop();
        }
        fork::kill(child);
        assert_eq!(fork::wait(child), 128 + libc::SIGKILL, "kill {kill}");
        // Whatever the dead sender published is delivered, once.
        loop {
            match rx.try_recv() {
                Ok(sample) => {
                    check_message(&sample, next);
                    next += 1;
                }
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
                Err(e) => panic!("kill {kill}: {e}"),
            }
        }
        received_per_kill.push(next - first);
        // Every slot can be loaned again.
        let tx = ch.sender().unwrap();
        let loans: Vec<_> = (0..SLOTS)
            .map(|i| {
                tx.try_loan().unwrap_or_else(|e| {
                    panic!(
                        "kill {kill}: slot {i} of {SLOTS} not obtainable ({e}); states {:?}",
                        (0..SLOTS)
                            .map(|s| ch.pool().slot_state(s))
                            .collect::<Vec<_>>()
                    )
                })
            })
            .collect();
        drop(loans);
        drop(tx);
    }
    for slot in 0..SLOTS {
        assert_eq!(ch.pool().slot_state(slot).0, FREE);
    }
    let idle = received_per_kill.iter().filter(|&&n| n == 0).count();
    println!(
        "{test}: {KILLS} kills, {next} messages received exactly once, {idle} kills before a \
         first message"
    );
}

#[test]
fn loan_sender_killed_at_random_spin() {
    isolated(|| loan_sender_killed_at_random(WaitMode::Spin, "loan spin"));
}

#[test]
fn loan_sender_killed_at_random_block() {
    isolated(|| loan_sender_killed_at_random(WaitMode::Block, "loan block"));
}

/// A port sender process is SIGKILLed `KILLS` times at random moments while the parent
/// receives: every message that was published arrives once, in order (a message whose sender
/// died before publishing it is lost with its sender); after each kill a new sender fills
/// every cell of the port.
fn port_sender_killed_at_random(mode: WaitMode, test: &str) {
    const CAPACITY: usize = 8;
    let mut rng = Rng::seeded(test);
    let region = Arc::new(Region::create("port-kill-random", 1 << 20).unwrap());
    let (port, right) = Port::<u64>::create(&region, CAPACITY, mode).unwrap();
    let connected = fork::Event::new();
    let mut next = 0u64;
    for kill in 0..KILLS {
        let first = next;
        let child = fork::child(|| {
            let Ok(tx) = port.sender() else { return 2 };
            connected.set();
            let mut seq = first;
            loop {
                if tx.send(seq).is_err() {
                    return 3;
                }
                seq += 1;
            }
        });
        assert!(connected.wait(), "kill {kill}: the sender did not connect");
        let moment = kill_moment(&mut rng);
        for _ in 0..moment.first {
            assert_eq!(
                until_received(|| right.try_recv().ok()),
                next,
                "kill {kill}"
            );
            next += 1;
        }
        for _ in 0..moment.iterations {
            if moment.receive
                && let Ok(seq) = right.try_recv()
            {
                assert_eq!(seq, next, "kill {kill}: lost or duplicated");
                next += 1;
            }
            std::hint::spin_loop();
        }
        fork::kill(child);
        assert_eq!(fork::wait(child), 128 + libc::SIGKILL, "kill {kill}");
        loop {
            match right.try_recv() {
                Ok(seq) => {
                    assert_eq!(seq, next, "kill {kill}: lost or duplicated");
                    next += 1;
                }
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
                Err(e) => panic!("kill {kill}: {e}"),
            }
        }
        // Every cell can be filled again, and each value comes out once.
        let tx = port.sender().unwrap();
        for i in 0..CAPACITY as u64 {
            match tx.try_send(u64::MAX - i) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => panic!("kill {kill}: cell {i} of {CAPACITY} lost"),
                Err(e) => panic!("kill {kill}: {e}"),
            }
        }
        for i in 0..CAPACITY as u64 {
            assert_eq!(right.try_recv(), Ok(u64::MAX - i), "kill {kill}");
        }
        drop(tx);
    }
    println!("{test}: {KILLS} kills, {next} messages received exactly once");
}

#[test]
fn port_sender_killed_at_random_spin() {
    isolated(|| port_sender_killed_at_random(WaitMode::Spin, "port spin"));
}

#[test]
fn port_sender_killed_at_random_block() {
    isolated(|| port_sender_killed_at_random(WaitMode::Block, "port block"));
}
