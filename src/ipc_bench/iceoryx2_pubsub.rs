//! iceoryx2 publish-subscribe in the same two-process ping-pong: a `ping` service from
//! the client to the server and a `pong` service back, `[u8]` slices loaned from
//! iceoryx2's shared-memory pool (zero copies), subscribers polled (spin).

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU32, Ordering};

use iceoryx2::port::publisher::Publisher;
use iceoryx2::port::subscriber::Subscriber;
use iceoryx2::port::update_connections::UpdateConnections;
use iceoryx2::prelude::*;

use super::error::RunError;
use super::pattern::{self, REPLY_BIT};
use super::peer::{Peer, pipe_pair, spawn_peer};
use super::plan::{Msg, Plan, SizeTiming, run_client, run_server};
use super::spin_wait::spin_until;

const NAME: &str = "iceoryx2";

/// Distinguishes the services of successive runs in one process.
static RUN: AtomicU32 = AtomicU32::new(0);

fn fail(detail: impl std::fmt::Debug) -> RunError {
    RunError::Transport {
        transport: NAME,
        detail: format!("{detail:?}"),
    }
}

/// One side's ports: a publisher on its outgoing service, a subscriber on the other.
struct Side {
    publisher: Publisher<ipc::Service, [u8], ()>,
    subscriber: Subscriber<ipc::Service, [u8], ()>,
    _node: Node<ipc::Service>,
}

fn open_side(prefix: &str, out: &str, inbound: &str, max: usize) -> Result<Side, RunError> {
    // Defaults are what the benchmark wants; do not warn about the missing config file.
    set_log_level(LogLevel::Error);
    let node = NodeBuilder::new()
        .signal_handling_mode(SignalHandlingMode::Disabled)
        .create::<ipc::Service>()
        .map_err(fail)?;
    let service = |name: &str| {
        let name: ServiceName = format!("{prefix}/{name}")
            .as_str()
            .try_into()
            .map_err(fail)?;
        node.service_builder(&name)
            .publish_subscribe::<[u8]>()
            .max_publishers(1)
            .max_subscribers(1)
            .history_size(0)
            .subscriber_max_buffer_size(1)
            .enable_safe_overflow(true)
            .open_or_create()
            .map_err(fail)
    };
    let out_service = service(out)?;
    let in_service = service(inbound)?;
    let publisher = out_service
        .publisher_builder()
        .initial_max_slice_len(max)
        .max_loaned_samples(1)
        .create()
        .map_err(fail)?;
    let subscriber = in_service
        .subscriber_builder()
        .buffer_size(1)
        .create()
        .map_err(fail)?;
    Ok(Side {
        publisher,
        subscriber,
        _node: node,
    })
}

impl Side {
    fn send(&self, seq: u64, m: Msg) -> Result<(), RunError> {
        let sample = self.publisher.loan_slice_uninit(m.size).map_err(fail)?;
        // SAFETY: the slice lies in iceoryx2's data segment, a shared-memory file the
        // kernel zero-filled when it was created and that only ever holds bytes written
        // since, so every byte is initialised; its Rust type is MaybeUninit only because
        // iceoryx2 cannot know that.
        let mut sample = unsafe { sample.assume_init() };
        pattern::fill(sample.payload_mut(), seq, m.check);
        sample.send().map_err(fail)?;
        Ok(())
    }

    fn receive(&self, seq: u64, m: Msg, peer: Option<&Peer>) -> Result<(), RunError> {
        let mut got = None;
        let mut error = None;
        spin_until(NAME, peer, || match self.subscriber.receive() {
            Ok(Some(sample)) => {
                got = Some(sample);
                true
            }
            Ok(None) => false,
            Err(e) => {
                error = Some(e);
                true
            }
        })?;
        if let Some(e) = error {
            return Err(fail(e));
        }
        let sample = got.ok_or_else(|| fail("no sample"))?;
        let payload = sample.payload();
        if payload.len() != m.size {
            return Err(fail(format!(
                "message {} arrived with {} bytes instead of {}",
                m.seq,
                payload.len(),
                m.size
            )));
        }
        pattern::verify(payload, seq, m.check).map_err(|mismatch| RunError::Corrupt {
            transport: NAME,
            mismatch,
        })
    }
}

fn sync_byte(read: &mut File) -> Result<(), RunError> {
    let mut b = [0u8; 1];
    read.read_exact(&mut b)
        .map_err(|e| fail(format!("start-up handshake failed: {e}")))
}

pub(crate) fn run(
    plan: &Plan,
    size_done: &mut dyn FnMut(usize),
) -> Result<Vec<SizeTiming>, RunError> {
    let max = plan.max_size();
    let prefix = format!(
        "memlink-bench/{}/{}",
        std::process::id(),
        RUN.fetch_add(1, Ordering::Relaxed)
    );
    let setup = |e: std::io::Error| RunError::Setup {
        transport: NAME,
        detail: e.to_string(),
    };
    let (ready_r, ready_w) = pipe_pair().map_err(setup)?;
    let (go_r, go_w) = pipe_pair().map_err(setup)?;
    let server_plan = plan.clone();
    let server_prefix = prefix.clone();
    let peer = spawn_peer(NAME, &[ready_r.as_raw_fd(), go_w.as_raw_fd()], move || {
        let serve = || -> Result<(), RunError> {
            let side = open_side(&server_prefix, "pong", "ping", max)?;
            File::from(ready_w)
                .write_all(b"r")
                .map_err(|e| fail(e.to_string()))?;
            sync_byte(&mut File::from(go_r))?;
            side.publisher.update_connections().map_err(fail)?;
            run_server(&server_plan, |m| {
                side.receive(m.seq, m, None)?;
                side.send(m.seq | REPLY_BIT, m)
            })
        };
        serve().map_err(|e| e.to_string())
    })?;
    let result = (|| {
        sync_byte(&mut File::from(ready_r))?;
        let side = open_side(&prefix, "ping", "pong", max)?;
        side.publisher.update_connections().map_err(fail)?;
        File::from(go_w)
            .write_all(b"g")
            .map_err(|e| fail(e.to_string()))?;
        run_client(plan, size_done, |m| {
            side.send(m.seq, m)?;
            side.receive(m.seq | REPLY_BIT, m, Some(&peer))
        })
    })();
    peer.finish(result)
}
