//! What every `memlink dsm bench` suite does around its measurement: a node process's
//! configuration and its end (its figures line, or the exit status of its error), and the
//! launcher's start of the node processes and search for the figures in their output.

use std::net::SocketAddr;
use std::process::{Command, ExitCode};
use std::time::Duration;

use memlink_dsm::figures_line::FiguresLine;
use memlink_dsm::init::{NodeOutput, launch};
use memlink_dsm::{DsmError, NodeConfig, NodeId};

use crate::dsm_bench::BenchArgs;

/// A bench node's configuration: the suite's manager, `pages`, the admission the launcher put
/// in the environment, the default Δt hold and no memory budget (a suite changes what it
/// needs). Exit status 2 after saying why when the environment's admission is unusable.
pub(crate) fn node_config(
    a: &BenchArgs,
    id: NodeId,
    listen: SocketAddr,
    peers: Vec<SocketAddr>,
    pages: u32,
) -> Result<NodeConfig, ExitCode> {
    let admission = memlink_dsm::admission::Admission::from_env().map_err(|e| {
        eprintln!("memlink dsm bench node {id}: {e}");
        ExitCode::from(2)
    })?;
    Ok(NodeConfig {
        id,
        listen,
        peers,
        pages,
        manager: a.manager,
        connect_timeout: Duration::from_secs(30),
        admission,
        memory_budget: None,
        hold: memlink_dsm::config::DEFAULT_HOLD,
    })
}

/// A bench node's end: prints its figures line (if this node reports one) and succeeds, or
/// says what failed and exits with the status of a lost node or of another DSM error.
pub(crate) fn node_exit(id: NodeId, line: Result<Option<String>, DsmError>) -> ExitCode {
    match line {
        Ok(line) => {
            if let Some(line) = line {
                println!("{line}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("memlink dsm bench node {id}: {e}");
            ExitCode::from(match e {
                DsmError::NodeLost { .. } => memlink_dsm::apps::EXIT_NODE_LOST as u8,
                _ => memlink_dsm::apps::EXIT_DSM_ERROR as u8,
            })
        }
    }
}

/// Starts `nodes` node processes of `suite` (this executable, with the suite's manager,
/// backend and samples; `more` adds a suite's own arguments) and returns their outputs, or
/// says why the cluster failed and returns the exit status.
pub(crate) fn launch_nodes(
    a: &BenchArgs,
    suite: &str,
    nodes: usize,
    more: impl Fn(&mut Command),
) -> Result<Vec<NodeOutput>, ExitCode> {
    let exe = std::env::current_exe().map_err(|e| {
        eprintln!("memlink dsm bench: cannot find my own executable to start the nodes: {e}");
        ExitCode::FAILURE
    })?;
    launch(nodes, Duration::from_secs(a.timeout), |slot| {
        let mut cmd = Command::new(&exe);
        cmd.args(["dsm", "bench", "--suite", suite])
            .args(["--node-id", &slot.id.to_string()])
            .args(["--listen", &slot.listen.to_string()])
            .args(["--peers", &slot.peers_arg()])
            .args(["--manager", &a.manager.to_string()])
            .args(["--backend", &a.backend.to_string()])
            .args(["--iters", &a.iters.to_string()]);
        more(&mut cmd);
        cmd
    })
    .map_err(|e| {
        // The error names the failed node and quotes every node's last lines.
        eprintln!("memlink dsm bench: {e}");
        crate::dsm::launch_failure_status(&e)
    })
}

/// The figures node `id` printed, or a failure after saying that it printed none.
pub(crate) fn figures_of<F: FiguresLine>(
    outputs: &[NodeOutput],
    id: NodeId,
) -> Result<F, ExitCode> {
    outputs
        .iter()
        .find(|o| o.id == id)
        .and_then(|o| F::find_in(&o.stdout))
        .ok_or_else(|| {
            eprintln!("memlink dsm bench: node {id} ended without its figures");
            ExitCode::FAILURE
        })
}
