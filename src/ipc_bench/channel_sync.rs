//! memlink's synchronous channel in the ping-pong: one copy per message. The sender's
//! message variable and the receiver's target variable live in a shared region; the
//! second party to arrive copies straight from one to the other.

use std::sync::Arc;

use memlink_channels::{Region, SyncChannel, SyncReceiver, SyncSender};

use super::error::RunError;
use super::pattern::{self, REPLY_BIT};
use super::peer::{ReadyWait, ready_pair, spawn_peer};
use super::per_size_runner::{OneSize, SizedPingPong};
use super::plan::{SizeTiming, run_client, run_server};
use super::wait_mode;

const NAME: &str = "sync";

fn fail(detail: impl std::fmt::Display) -> RunError {
    RunError::Transport {
        transport: NAME,
        detail: detail.to_string(),
    }
}

/// A `[u8; N]` variable carved out of the shared region.
struct RegionVar<const N: usize>(*mut [u8; N]);

impl<const N: usize> RegionVar<N> {
    fn new(region: &Region) -> Result<Self, RunError> {
        let p = region.alloc_bytes(N, 64).map_err(fail)?;
        Ok(RegionVar(p.cast()))
    }

    fn get(&mut self) -> &mut [u8; N] {
        // SAFETY: the N bytes were reserved for this variable alone by the region's
        // allocator (never handed out twice, never freed while the region lives, and the
        // region outlives the run); the memfd is zero-filled, so they hold a valid
        // [u8; N]; the peer writes them only inside a `recv` that borrows this variable
        // mutably, so no other reference exists while this one is used.
        unsafe { &mut *self.0 }
    }
}

/// One side's ends and variables.
struct Side<const N: usize> {
    tx: SyncSender<[u8; N]>,
    rx: SyncReceiver<[u8; N]>,
    out: RegionVar<N>,
    into: RegionVar<N>,
}

impl<const N: usize> Side<N> {
    fn send(&mut self, seq: u64, check: pattern::Check) -> Result<(), RunError> {
        let out = self.out.get();
        pattern::fill(out, seq, check);
        self.tx.send(out).map_err(fail)
    }

    fn receive(&mut self, seq: u64, check: pattern::Check) -> Result<(), RunError> {
        let into = self.into.get();
        self.rx.recv(into).map_err(fail)?;
        pattern::verify(into, seq, check).map_err(|mismatch| RunError::Corrupt {
            transport: NAME,
            mismatch,
        })
    }
}

fn side<const N: usize>(
    region: &Region,
    tx: &SyncChannel<[u8; N]>,
    rx: &SyncChannel<[u8; N]>,
) -> Result<Side<N>, RunError> {
    Ok(Side {
        tx: tx.sender().map_err(fail)?,
        rx: rx.receiver().map_err(fail)?,
        out: RegionVar::new(region)?,
        into: RegionVar::new(region)?,
    })
}

/// The sync channel's ping-pong, one pair of processes and channels per size (the
/// channel's message type is `[u8; size]`).
pub(crate) struct SyncPingPong;

impl SizedPingPong for SyncPingPong {
    const NAME: &'static str = NAME;

    fn run_sized<const N: usize>(one: OneSize<'_>) -> Result<Vec<SizeTiming>, RunError> {
        ping_pong::<N>(one)
    }
}

fn ping_pong<const N: usize>(one: OneSize<'_>) -> Result<Vec<SizeTiming>, RunError> {
    let region = Region::create("memlink-bench-sync", 4 * N + (1 << 20))
        .map_err(|e| RunError::setup(NAME, e))?;
    let region = Arc::new(region);
    let mode = wait_mode(one.wait);
    let ping = SyncChannel::<[u8; N]>::create(&region, mode).map_err(fail)?;
    let pong = SyncChannel::<[u8; N]>::create(&region, mode).map_err(fail)?;
    let (ready, ready_wait) = ready_pair(NAME)?;
    let server_plan = one.plan.clone();
    let server_region = Arc::clone(&region);
    let (s_ping, s_pong) = (ping.clone(), pong.clone());
    let mut peer = spawn_peer(NAME, &[ready_wait.fd()], move || {
        let serve = || {
            let mut me = side(&server_region, &s_pong, &s_ping)?;
            ready.signal().map_err(fail)?;
            run_server(&server_plan, |m| {
                me.receive(m.seq, m.check)?;
                me.send(m.seq | REPLY_BIT, m.check)
            })
        };
        serve().map_err(|e| e.to_string())
    })?;
    let mut client = |ready: ReadyWait, peer: &mut super::peer::Peer| {
        let mut me = side(&region, &ping, &pong)?;
        ready.wait(peer)?;
        run_client(one.plan, one.size_done, |m| {
            me.send(m.seq, m.check)?;
            me.receive(m.seq | REPLY_BIT, m.check)
        })
    };
    let result = client(ready_wait, &mut peer);
    peer.finish(result)
}
