//! `memlink dsm bench --suite capability`: the figures of `memlink_dsm::capability_bench`
//! (a read miss through a capability, a revocation), measured in one run and shown as ratios
//! to their baselines from that run (a read miss on a public page; an invalidation of as many
//! copies).

use std::net::SocketAddr;
use std::process::{Command, ExitCode};
use std::time::Duration;

use memlink_dsm::capability_bench::{CapabilityFigures, capability_pages, run_capability_node};
use memlink_dsm::figures_line::FiguresLine;
use memlink_dsm::init::launch;
use memlink_dsm::{DsmError, NodeConfig, NodeId};

use crate::dsm_bench::BenchArgs;

/// Runs the suite: as a node when the launcher said so, else as the launcher.
pub(crate) fn run(a: &BenchArgs) -> ExitCode {
    match (a.node_id, a.listen, a.peers.clone()) {
        (Some(id), Some(listen), Some(peers)) => run_node(a, id, listen, peers),
        _ => launcher(a),
    }
}

fn run_node(a: &BenchArgs, id: NodeId, listen: SocketAddr, peers: Vec<SocketAddr>) -> ExitCode {
    let iters = a.iters as usize;
    let admission = match memlink_dsm::admission::Admission::from_env() {
        Ok(admission) => admission,
        Err(e) => {
            eprintln!("memlink dsm bench node {id}: {e}");
            return ExitCode::from(2);
        }
    };
    let config = NodeConfig {
        id,
        listen,
        peers,
        pages: capability_pages(iters),
        manager: a.manager,
        connect_timeout: Duration::from_secs(30),
        admission,
        memory_budget: None,
        hold: Duration::ZERO,
    };
    match run_capability_node(config, a.backend, iters) {
        Ok(Some(f)) => {
            println!("{}", f.to_line());
            ExitCode::SUCCESS
        }
        Ok(None) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("memlink dsm bench node {id}: {e}");
            ExitCode::from(match e {
                DsmError::NodeLost { .. } => memlink_dsm::apps::EXIT_NODE_LOST as u8,
                _ => memlink_dsm::apps::EXIT_DSM_ERROR as u8,
            })
        }
    }
}

fn launcher(a: &BenchArgs) -> ExitCode {
    let exe = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("memlink dsm bench: cannot find my own executable to start the nodes: {e}");
            return ExitCode::FAILURE;
        }
    };
    let launched = launch(a.nodes as usize, Duration::from_secs(a.timeout), |slot| {
        let mut cmd = Command::new(&exe);
        cmd.args(["dsm", "bench", "--suite", "capability"])
            .args(["--node-id", &slot.id.to_string()])
            .args(["--listen", &slot.listen.to_string()])
            .args(["--peers", &slot.peers_arg()])
            .args(["--nodes", &a.nodes.to_string()])
            .args(["--manager", &a.manager.to_string()])
            .args(["--backend", &a.backend.to_string()])
            .args(["--iters", &a.iters.to_string()]);
        cmd
    });
    let outputs = match launched {
        Ok(o) => o,
        Err(e) => {
            eprintln!("memlink dsm bench: {e}");
            return crate::dsm::launch_failure_status(&e);
        }
    };
    let Some(f) = outputs
        .iter()
        .find(|o| o.id == 0)
        .and_then(|o| CapabilityFigures::find_in(&o.stdout))
    else {
        eprintln!("memlink dsm bench: node 0 ended without its figures");
        return ExitCode::FAILURE;
    };
    let read_ratio = f.cap_read_miss_us / f.read_miss_us;
    let acquire_ratio = f.cap_acquire_us / f.read_miss_us;
    let revoke_ratio = f.revoke_us / f.invalidation_us;
    let others = a.nodes - 1;
    if a.json {
        let mut obj = serde_json::json!({
            "suite": "capability",
            "nodes": a.nodes,
            "manager": a.manager.to_string(),
            "backend": a.backend.to_string(),
            "iters": a.iters,
            "cap_read_miss_vs_read_miss": round3(read_ratio),
            "cap_acquire_vs_read_miss": round3(acquire_ratio),
            "revoke_vs_invalidation": round3(revoke_ratio),
        });
        for (k, v) in f.named() {
            if k != "nodes" {
                obj[k] = serde_json::json!(round3(v));
            }
        }
        println!("{obj}");
    } else {
        println!(
            "DSM capability bench: {} nodes, manager {}, backend {}, median of {} samples each",
            a.nodes, a.manager, a.backend, a.iters
        );
        println!("  {:<58} {:>9} {:>10}", "", "µs", "ratio");
        println!(
            "  {:<58} {:>9.1}",
            "read miss on a public page: baseline", f.read_miss_us
        );
        println!(
            "  {:<58} {:>9.1} {read_ratio:>10.2}",
            "read miss on a range held through a capability", f.cap_read_miss_us
        );
        println!(
            "  {:<58} {:>9.1} {acquire_ratio:>10.2}",
            "acquire + read of such a range (the guard brings it in)", f.cap_acquire_us
        );
        println!(
            "  {:<58} {:>9.1}",
            format!("write invalidating {others} read copies: baseline"),
            f.invalidation_us
        );
        println!(
            "  {:<58} {:>9.1} {revoke_ratio:>10.2}",
            format!("revoke of a capability {others} nodes hold"),
            f.revoke_us
        );
    }
    ExitCode::SUCCESS
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}
