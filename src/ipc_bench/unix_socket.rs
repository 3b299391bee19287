//! The unix stream socket baseline: a socketpair, two kernel copies per message.

use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;

use super::error::RunError;
use super::plan::{Plan, SizeTiming};
use super::stream::{Ends, ping_pong};

const NAME: &str = "unix-socket";

pub(crate) fn run(
    plan: &Plan,
    size_done: &mut dyn FnMut(usize),
) -> Result<Vec<SizeTiming>, RunError> {
    let setup = |e| RunError::setup(NAME, format!("socketpair failed: {e}"));
    let (client, server) = UnixStream::pair().map_err(setup)?;
    let client_write = client.try_clone().map_err(setup)?;
    let server_write = server.try_clone().map_err(setup)?;
    ping_pong(
        NAME,
        plan,
        Ends {
            read: OwnedFd::from(client),
            write: OwnedFd::from(client_write),
        },
        Ends {
            read: OwnedFd::from(server),
            write: OwnedFd::from(server_write),
        },
        size_done,
    )
}
