//! Property test: random sequences of loan-and-send, loan-and-drop and port sends by 1 to 3
//! sender processes, received by this process in a random order of sources with samples held
//! and dropped at random, checked against a FIFO model: every message arrives exactly once,
//! in its sender's order, intact, and every slot ends up back in its pool.

use crate::fork;

use memlink_channels::protocol::loan::FREE;
use memlink_channels::{LoanChannel, Port, Region, Sample, TryRecvError, WaitMode};
use memlink_test_support::isolated;
use proptest::prelude::*;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

const SLOTS: u32 = 3;
const SLOT_SIZE: usize = 64;

#[derive(Debug, Clone, Copy)]
enum SenderOp {
    /// Loan a slot, write `len` bytes in place, send it.
    LoanSend { len: u8 },
    /// Loan a slot and drop it unsent (it must go back to the pool).
    LoanDrop,
    /// Send on the shared port.
    PortSend,
}

#[derive(Debug, Clone, Copy)]
enum ReceiverOp {
    /// Try to receive from loan channel `n % senders` and hold the sample.
    Loan(u8),
    /// Try to receive from the port.
    Port,
    /// Drop the oldest held sample.
    DropHeld,
}

fn sender_op() -> impl Strategy<Value = SenderOp> {
    prop_oneof![
        3 => (8u8..=SLOT_SIZE as u8).prop_map(|len| SenderOp::LoanSend { len }),
        1 => Just(SenderOp::LoanDrop),
        2 => Just(SenderOp::PortSend),
    ]
}

fn receiver_op() -> impl Strategy<Value = ReceiverOp> {
    prop_oneof![
        any::<u8>().prop_map(ReceiverOp::Loan),
        Just(ReceiverOp::Port),
        Just(ReceiverOp::DropHeld)
    ]
}

fn message(sender: usize, seq: u32) -> u64 {
    ((sender as u64) << 32) | seq as u64
}

fn fill(buf: &mut [u8], value: u64) {
    buf[..8].copy_from_slice(&value.to_ne_bytes());
    for (i, b) in buf[8..].iter_mut().enumerate() {
        *b = (value as u8).wrapping_add(i as u8);
    }
}

fn intact(buf: &[u8], value: u64) -> bool {
    buf.len() >= 8
        && buf[..8] == value.to_ne_bytes()
        && buf[8..]
            .iter()
            .enumerate()
            .all(|(i, &b)| b == (value as u8).wrapping_add(i as u8))
}

/// The sender process's work: run the script, return 0 if every operation succeeded.
fn run_sender(id: usize, script: &[SenderOp], ch: &LoanChannel, port: &Port<u64>) -> i32 {
    let (Ok(tx), Ok(ptx)) = (ch.sender(), port.sender()) else {
        return 2;
    };
    let (mut loan_seq, mut port_seq) = (0u32, 0u32);
    for op in script {
        match *op {
            SenderOp::LoanSend { len } => {
                let Ok(mut loan) = tx.loan() else { return 3 };
                let value = message(id, loan_seq);
                fill(&mut loan.as_mut_slice()[..len as usize], value);
                if loan.send(len as usize).is_err() {
                    return 4;
                }
                loan_seq += 1;
            }
            SenderOp::LoanDrop => {
                let Ok(loan) = tx.loan() else { return 5 };
                drop(loan);
            }
            SenderOp::PortSend => {
                if ptx.send(message(id, port_seq)).is_err() {
                    return 6;
                }
                port_seq += 1;
            }
        }
    }
    0
}

fn run_case(
    scripts: Vec<Vec<SenderOp>>,
    receiver_ops: Vec<ReceiverOp>,
) -> Result<(), TestCaseError> {
    let senders = scripts.len();
    let region = Arc::new(Region::create("proptest-channels", 1 << 18).unwrap());
    let channels: Vec<LoanChannel> = (0..senders)
        .map(|_| LoanChannel::create(&region, SLOTS, SLOT_SIZE, WaitMode::ADAPTIVE).unwrap())
        .collect();
    let (port, right) = Port::<u64>::create(&region, 128, WaitMode::ADAPTIVE).unwrap();
    let receivers: Vec<_> = channels.iter().map(|c| c.receiver().unwrap()).collect();
    // Our own send right keeps the port connected until every child has connected: a port
    // whose every connected sender left reports Disconnected.
    let keep_port_open = port.sender().unwrap();

    // The FIFO model: what each source must deliver, in order.
    let mut loan_model: Vec<VecDeque<(u64, usize)>> = vec![VecDeque::new(); senders];
    let mut port_model: Vec<VecDeque<u64>> = vec![VecDeque::new(); senders];
    for (id, script) in scripts.iter().enumerate() {
        let (mut l, mut p) = (0u32, 0u32);
        for op in script {
            match *op {
                SenderOp::LoanSend { len } => {
                    loan_model[id].push_back((message(id, l), len as usize));
                    l += 1;
                }
                SenderOp::LoanDrop => {}
                SenderOp::PortSend => {
                    port_model[id].push_back(message(id, p));
                    p += 1;
                }
            }
        }
    }
    let children: Vec<_> = scripts
        .iter()
        .enumerate()
        .map(|(id, script)| fork::child(|| run_sender(id, script, &channels[id], &port)))
        .collect();

    let mut held: VecDeque<(usize, Sample<'_>)> = VecDeque::new();
    let remaining = |lm: &Vec<VecDeque<(u64, usize)>>, pm: &Vec<VecDeque<u64>>| {
        lm.iter().map(VecDeque::len).sum::<usize>() + pm.iter().map(VecDeque::len).sum::<usize>()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut ops = receiver_ops.into_iter().cycle();
    // After an empty poll the next polls go round every source, so a source whose sender waits
    // on another source (a full pool) is not starved by the random order.
    let mut forced: Option<ReceiverOp> = None;
    let mut round = 0usize;
    let next_source = |round: &mut usize| {
        *round += 1;
        match *round % (senders + 1) {
            k if k == senders => ReceiverOp::Port,
            k => ReceiverOp::Loan(k as u8),
        }
    };
    while remaining(&loan_model, &port_model) > 0 {
        prop_assert!(
            Instant::now() < deadline,
            "receiver made no progress: a message was lost"
        );
        // A source that has nothing more to deliver passes the turn to one that has.
        let loans_left = |lm: &Vec<VecDeque<(u64, usize)>>, from: usize| {
            (0..senders)
                .map(|k| (from + k) % senders)
                .find(|&id| !lm[id].is_empty())
        };
        let port_left = port_model.iter().any(|q| !q.is_empty());
        let chosen = forced
            .take()
            .unwrap_or_else(|| ops.next().unwrap_or(ReceiverOp::Port));
        let op = match chosen {
            // Nothing to drop, or a source with nothing left: poll one that has messages left
            // (there is one: `remaining > 0`).
            ReceiverOp::DropHeld | ReceiverOp::Port if held.is_empty() && !port_left => {
                ReceiverOp::Loan(0)
            }
            ReceiverOp::DropHeld if held.is_empty() => ReceiverOp::Port,
            ReceiverOp::Port if !port_left => ReceiverOp::Loan(0),
            ReceiverOp::Loan(n) if loans_left(&loan_model, n as usize).is_none() => {
                ReceiverOp::Port
            }
            op => op,
        };
        match op {
            ReceiverOp::DropHeld => drop(held.pop_front()),
            ReceiverOp::Port => match right.try_recv() {
                Ok(v) => {
                    let id = (v >> 32) as usize;
                    prop_assert!(id < senders);
                    prop_assert_eq!(
                        port_model[id].pop_front(),
                        Some(v),
                        "port message out of order"
                    );
                }
                Err(TryRecvError::Empty) => {
                    // While nothing arrives, give back a held slot: its sender may need it.
                    drop(held.pop_front());
                    forced = Some(next_source(&mut round));
                    std::thread::yield_now();
                }
                Err(e) => prop_assert!(false, "port: {e}"),
            },
            ReceiverOp::Loan(n) => {
                let Some(id) = loans_left(&loan_model, n as usize) else {
                    continue;
                };
                // Never hold every slot of a pool: the sender could not make progress.
                if held.iter().filter(|(s, _)| *s == id).count() + 1 >= SLOTS as usize {
                    drop(held.pop_front());
                    continue;
                }
                match receivers[id].try_recv() {
                    Ok(sample) => {
                        let (value, len) = loan_model[id].pop_front().ok_or_else(|| {
                            TestCaseError::fail(format!(
                                "channel {id} delivered more than was sent"
                            ))
                        })?;
                        prop_assert_eq!(sample.len(), len);
                        prop_assert!(
                            intact(&sample, value),
                            "channel {} message {:#x} damaged",
                            id,
                            value
                        );
                        held.push_back((id, sample));
                    }
                    Err(TryRecvError::Empty) => {
                        drop(held.pop_front());
                        forced = Some(next_source(&mut round));
                        std::thread::yield_now();
                    }
                    Err(e) => prop_assert!(false, "loan channel {id}: {e}"),
                }
            }
        }
    }
    drop(held);
    for (id, child) in children.into_iter().enumerate() {
        prop_assert_eq!(fork::wait(child), 0, "sender {} failed", id);
    }
    drop(keep_port_open);
    for (id, ch) in channels.iter().enumerate() {
        prop_assert_eq!(
            receivers[id].try_recv().err(),
            Some(TryRecvError::Disconnected)
        );
        for slot in 0..SLOTS {
            prop_assert_eq!(
                ch.pool().slot_state(slot).0,
                FREE,
                "channel {} slot {} lost",
                id,
                slot
            );
        }
    }
    prop_assert_eq!(right.try_recv().err(), Some(TryRecvError::Disconnected));
    Ok(())
}

/// One isolated process runs the whole proptest run (every case), so forks are taken with no
/// other test thread holding a lock.
#[test]
fn random_sends_loans_and_drops_across_processes_match_fifo_model() {
    isolated(|| {
        let config = ProptestConfig {
            cases: 24,
            source_file: Some(file!()),
            ..ProptestConfig::default()
        };
        let strategy = (
            prop::collection::vec(prop::collection::vec(sender_op(), 0..24), 1..=3),
            prop::collection::vec(receiver_op(), 1..32),
        );
        let mut runner = proptest::test_runner::TestRunner::new(config);
        if let Err(e) = runner.run(&strategy, |(scripts, receiver_ops)| {
            run_case(scripts, receiver_ops)
        }) {
            panic!("{e}");
        }
    });
}
