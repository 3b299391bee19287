//! Ping-pong over a pair of byte streams (pipes, a unix socket): the kernel copies each
//! message twice, from the sender into a kernel buffer and from there to the receiver.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};

use super::error::RunError;
use super::pattern::{self, REPLY_BIT};
use super::peer::spawn_peer;
use super::plan::{Plan, SizeTiming, run_client, run_server};

/// The two directions as seen by one process: where it reads, where it writes.
pub(crate) struct Ends {
    pub(crate) read: OwnedFd,
    pub(crate) write: OwnedFd,
}

fn io<'a>(transport: &'static str, what: &'a str) -> impl Fn(std::io::Error) -> RunError + 'a {
    move |e| RunError::Transport {
        transport,
        detail: format!("{what} failed: {e}"),
    }
}

fn corrupt(transport: &'static str) -> impl Fn(pattern::PatternMismatch) -> RunError {
    move |mismatch| RunError::Corrupt {
        transport,
        mismatch,
    }
}

/// Runs the plan with the client on `client` and a forked server on `server`.
pub(crate) fn ping_pong(
    transport: &'static str,
    plan: &Plan,
    client: Ends,
    server: Ends,
    size_done: &mut dyn FnMut(usize),
) -> Result<Vec<SizeTiming>, RunError> {
    let max = plan.max_size();
    let close_in_child = [client.read.as_raw_fd(), client.write.as_raw_fd()];
    let server_plan = plan.clone();
    let peer = spawn_peer(transport, &close_in_child, move || {
        let mut rx = File::from(server.read);
        let mut tx = File::from(server.write);
        let mut buf = vec![0u8; max];
        run_server(&server_plan, |m| {
            let msg = &mut buf[..m.size];
            rx.read_exact(msg).map_err(io(transport, "receiving"))?;
            pattern::verify(msg, m.seq, m.check).map_err(corrupt(transport))?;
            pattern::fill(msg, m.seq | REPLY_BIT, m.check);
            tx.write_all(msg).map_err(io(transport, "replying"))
        })
        .map_err(|e| e.to_string())
    })?;
    let mut rx = File::from(client.read);
    let mut tx = File::from(client.write);
    let mut buf = vec![0u8; max];
    let result = run_client(plan, size_done, |m| {
        let msg = &mut buf[..m.size];
        pattern::fill(msg, m.seq, m.check);
        tx.write_all(msg).map_err(io(transport, "sending"))?;
        rx.read_exact(msg)
            .map_err(io(transport, "receiving the reply"))?;
        pattern::verify(msg, m.seq | REPLY_BIT, m.check).map_err(corrupt(transport))
    });
    peer.finish(result)
}
