//! The pipe baseline: one pipe each way, two kernel copies per message.

use super::error::RunError;
use super::peer::pipe_pair;
use super::plan::{Plan, SizeTiming};
use super::stream::{Ends, ping_pong};

const NAME: &str = "pipe";

pub(crate) fn run(
    plan: &Plan,
    size_done: &mut dyn FnMut(usize),
) -> Result<Vec<SizeTiming>, RunError> {
    let setup = |e| RunError::setup(NAME, format!("pipe2 failed: {e}"));
    let (to_server_r, to_server_w) = pipe_pair().map_err(setup)?;
    let (to_client_r, to_client_w) = pipe_pair().map_err(setup)?;
    ping_pong(
        NAME,
        plan,
        Ends {
            read: to_client_r,
            write: to_server_w,
        },
        Ends {
            read: to_server_r,
            write: to_client_w,
        },
        size_done,
    )
}
