//! memlink's loan channel in the ping-pong: true zero copy. Each side borrows a slot of
//! a pool in a shared region, builds the message in place and sends only the slot's
//! index; the other side reads it in place and drops it, returning the slot.

use std::sync::Arc;

use memlink_channels::{LoanChannel, LoanReceiver, LoanSender, Region};

use super::Wait;
use super::error::RunError;
use super::pattern::{self, REPLY_BIT};
use super::peer::{Peer, ready_pair, spawn_peer};
use super::plan::{Msg, Plan, SizeTiming, run_client, run_server};
use super::wait_mode;

const NAME: &str = "loan";
/// Slots per direction: a ping-pong needs one in flight and one being returned.
const SLOTS: u32 = 2;

fn fail(detail: impl std::fmt::Display) -> RunError {
    RunError::Transport {
        transport: NAME,
        detail: detail.to_string(),
    }
}

fn send(tx: &LoanSender, seq: u64, m: Msg) -> Result<(), RunError> {
    let mut loan = tx.loan().map_err(fail)?;
    pattern::fill(&mut loan.as_mut_slice()[..m.size], seq, m.check);
    loan.send(m.size).map_err(fail)
}

fn receive(rx: &LoanReceiver, seq: u64, m: Msg) -> Result<(), RunError> {
    let sample = rx.recv().map_err(fail)?;
    if sample.len() != m.size {
        return Err(fail(format!(
            "message {} arrived with {} bytes instead of {}",
            m.seq,
            sample.len(),
            m.size
        )));
    }
    pattern::verify(&sample, seq, m.check).map_err(|mismatch| RunError::Corrupt {
        transport: NAME,
        mismatch,
    })
}

/// Runs the plan over two loan channels (ping and pong) whose slots hold the plan's
/// largest message.
pub(crate) fn run(
    plan: &Plan,
    wait: Wait,
    size_done: &mut (dyn FnMut(usize) + Send),
) -> Result<Vec<SizeTiming>, RunError> {
    let slot = plan.max_size().next_multiple_of(4096);
    let setup = |e: &dyn std::fmt::Display| RunError::setup(NAME, e);
    let region = Region::create("memlink-bench-loan", 2 * SLOTS as usize * slot + (1 << 20))
        .map_err(|e| setup(&e))?;
    let region = Arc::new(region);
    let mode = wait_mode(wait);
    let ping = LoanChannel::create(&region, SLOTS, slot, mode).map_err(|e| setup(&e))?;
    let pong = LoanChannel::create(&region, SLOTS, slot, mode).map_err(|e| setup(&e))?;
    let (ready, ready_wait) = ready_pair(NAME)?;
    let server_plan = plan.clone();
    let (s_ping, s_pong) = (ping.clone(), pong.clone());
    let mut peer = spawn_peer(NAME, &[ready_wait.fd()], move || {
        let rx = s_ping.receiver().map_err(|e| e.to_string())?;
        let tx = s_pong.sender().map_err(|e| e.to_string())?;
        ready.signal()?;
        run_server(&server_plan, |m| {
            receive(&rx, m.seq, m)?;
            send(&tx, m.seq | REPLY_BIT, m)
        })
        .map_err(|e| e.to_string())
    })?;
    let result = client(plan, &ping, &pong, ready_wait, &mut peer, size_done);
    peer.finish(result)
}

fn client(
    plan: &Plan,
    ping: &LoanChannel,
    pong: &LoanChannel,
    ready: super::peer::ReadyWait,
    peer: &mut Peer,
    size_done: &mut (dyn FnMut(usize) + Send),
) -> Result<Vec<SizeTiming>, RunError> {
    let tx = ping.sender().map_err(fail)?;
    let rx = pong.receiver().map_err(fail)?;
    ready.wait(peer)?;
    run_client(plan, size_done, |m| {
        send(&tx, m.seq, m)?;
        receive(&rx, m.seq | REPLY_BIT, m)
    })
}
