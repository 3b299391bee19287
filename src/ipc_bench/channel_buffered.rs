//! memlink's buffered channel in the ping-pong: the classic k-slot ring with two copies
//! per message (sender's value into a ring cell, ring cell out to the receiver), the
//! baseline that the zero-copy channels are measured against.
//!
//! Its values travel by value (`[u8; N]`), so large sizes need a large stack: each size
//! runs on a thread whose stack fits several messages, and the peer is forked from it.

use std::sync::Arc;

use memlink_channels::{BufferedChannel, BufferedReceiver, BufferedSender, Region};

use super::error::RunError;
use super::pattern::{self, REPLY_BIT};
use super::peer::{Peer, ReadyWait, ready_pair, spawn_peer};
use super::per_size_runner::{OneSize, SizedPingPong};
use super::plan::{Msg, SizeTiming, run_client, run_server};
use super::wait_mode;

const NAME: &str = "buffered";
/// Ring cells per direction.
const CAPACITY: usize = 2;

fn fail(detail: impl std::fmt::Display) -> RunError {
    RunError::Transport {
        transport: NAME,
        detail: detail.to_string(),
    }
}

/// A stack for values of `n` bytes: the by-value API moves each message through a few
/// frames (many more without optimisation, where every layer keeps its own copy).
fn stack_for(n: usize) -> usize {
    let copies = if cfg!(debug_assertions) { 40 } else { 8 };
    copies * n + (16 << 20)
}

fn send<const N: usize>(
    tx: &BufferedSender<[u8; N]>,
    msg: &mut [u8; N],
    seq: u64,
    m: Msg,
) -> Result<(), RunError> {
    pattern::fill(msg, seq, m.check);
    tx.send(*msg).map_err(fail)
}

fn receive<const N: usize>(
    rx: &BufferedReceiver<[u8; N]>,
    seq: u64,
    m: Msg,
) -> Result<(), RunError> {
    let got = rx.recv().map_err(fail)?;
    pattern::verify(&got, seq, m.check).map_err(|mismatch| RunError::Corrupt {
        transport: NAME,
        mismatch,
    })
}

/// Runs `f` on a thread with a stack for `n`-byte values (the peer forked there gets a
/// copy of that stack), and returns its result.
fn on_big_stack<R: Send>(
    n: usize,
    f: impl FnOnce() -> Result<R, RunError> + Send,
) -> Result<R, RunError> {
    std::thread::scope(|s| {
        std::thread::Builder::new()
            .name("memlink-bench-buffered".into())
            .stack_size(stack_for(n))
            .spawn_scoped(s, f)
            .map_err(|e| {
                RunError::setup(
                    NAME,
                    format!(
                        "starting a thread with a {} byte stack failed: {e}",
                        stack_for(n)
                    ),
                )
            })?
            .join()
            .unwrap_or_else(|_| Err(fail("the benchmark thread panicked")))
    })
}

/// The buffered channel's ping-pong, one pair of processes and channels per size (the
/// channel's value type is `[u8; size]`), each size on a thread with a stack for it.
pub(crate) struct BufferedPingPong;

impl SizedPingPong for BufferedPingPong {
    const NAME: &'static str = NAME;

    fn run_sized<const N: usize>(one: OneSize<'_>) -> Result<Vec<SizeTiming>, RunError> {
        on_big_stack(N, move || ping_pong::<N>(one))
    }
}

fn ping_pong<const N: usize>(one: OneSize<'_>) -> Result<Vec<SizeTiming>, RunError> {
    let region = Region::create(
        "memlink-bench-buffered",
        2 * CAPACITY * (N + 64) + (1 << 20),
    )
    .map_err(|e| RunError::setup(NAME, e))?;
    let region = Arc::new(region);
    let mode = wait_mode(one.wait);
    let ping = BufferedChannel::<[u8; N]>::create(&region, CAPACITY, mode).map_err(fail)?;
    let pong = BufferedChannel::<[u8; N]>::create(&region, CAPACITY, mode).map_err(fail)?;
    let (ready, ready_wait) = ready_pair(NAME)?;
    let server_plan = one.plan.clone();
    let (s_ping, s_pong) = (ping.clone(), pong.clone());
    let mut peer = spawn_peer(NAME, &[ready_wait.fd()], move || {
        let serve = || {
            let rx = s_ping.receiver().map_err(fail)?;
            let tx = s_pong.sender().map_err(fail)?;
            ready.signal().map_err(fail)?;
            let mut msg = Box::new([0u8; N]);
            run_server(&server_plan, |m| {
                receive(&rx, m.seq, m)?;
                send(&tx, &mut msg, m.seq | REPLY_BIT, m)
            })
        };
        serve().map_err(|e| e.to_string())
    })?;
    let mut client = |ready: ReadyWait, peer: &mut Peer| {
        let tx = ping.sender().map_err(fail)?;
        let rx = pong.receiver().map_err(fail)?;
        ready.wait(peer)?;
        let mut msg = Box::new([0u8; N]);
        run_client(one.plan, one.size_done, |m| {
            send(&tx, &mut msg, m.seq, m)?;
            receive(&rx, m.seq | REPLY_BIT, m)
        })
    };
    let result = client(ready_wait, &mut peer);
    peer.finish(result)
}
