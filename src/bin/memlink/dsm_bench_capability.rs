//! `memlink dsm bench --suite capability`: the figures of `memlink_dsm::capability_bench`
//! (a read miss through a capability, a revocation), measured in one run and shown as ratios
//! to their baselines from that run (a read miss on a public page; an invalidation of as many
//! copies).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use memlink_dsm::capability_bench::{CapabilityFigures, capability_pages, run_capability_node};
use memlink_dsm::figures_line::FiguresLine;
use memlink_dsm::{NodeConfig, NodeId};

use crate::dsm_bench::BenchArgs;
use crate::dsm_bench_cluster::{figures_of, launch_nodes, node_config, node_exit};
use crate::dsm_bench_print::{json_object, print_table, round3};

/// Runs the suite: as a node when the launcher said so, else as the launcher.
pub(crate) fn run(a: &BenchArgs) -> ExitCode {
    match (a.node_id, a.listen, a.peers.clone()) {
        (Some(id), Some(listen), Some(peers)) => run_node(a, id, listen, peers),
        _ => launcher(a),
    }
}

fn run_node(a: &BenchArgs, id: NodeId, listen: SocketAddr, peers: Vec<SocketAddr>) -> ExitCode {
    let iters = a.iters as usize;
    let config = match node_config(a, id, listen, peers, capability_pages(iters)) {
        Ok(config) => NodeConfig {
            hold: Duration::ZERO,
            ..config
        },
        Err(code) => return code,
    };
    node_exit(
        id,
        run_capability_node(config, a.backend, iters).map(|f| f.map(|f| f.to_line())),
    )
}

fn launcher(a: &BenchArgs) -> ExitCode {
    let outputs = launch_nodes(a, "capability", a.nodes as usize, |cmd| {
        cmd.args(["--nodes", &a.nodes.to_string()]);
    });
    let f: CapabilityFigures = match outputs.and_then(|o| figures_of(&o, 0)) {
        Ok(f) => f,
        Err(code) => return code,
    };
    let read_ratio = f.cap_read_miss_us / f.read_miss_us;
    let acquire_ratio = f.cap_acquire_us / f.read_miss_us;
    let revoke_ratio = f.revoke_us / f.invalidation_us;
    let others = a.nodes - 1;
    if a.json {
        let mut obj = json_object(a, "capability");
        obj["nodes"] = serde_json::json!(a.nodes);
        obj["cap_read_miss_vs_read_miss"] = serde_json::json!(round3(read_ratio));
        obj["cap_acquire_vs_read_miss"] = serde_json::json!(round3(acquire_ratio));
        obj["revoke_vs_invalidation"] = serde_json::json!(round3(revoke_ratio));
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
        let invalidation = format!("write invalidating {others} read copies: baseline");
        let revoke = format!("revoke of a capability {others} nodes hold");
        print_table(
            58,
            ("ratio", 10),
            &[
                ("read miss on a public page: baseline", f.read_miss_us, None),
                (
                    "read miss on a range held through a capability",
                    f.cap_read_miss_us,
                    Some(read_ratio),
                ),
                (
                    "acquire + read of such a range (the guard brings it in)",
                    f.cap_acquire_us,
                    Some(acquire_ratio),
                ),
                (&invalidation, f.invalidation_us, None),
                (&revoke, f.revoke_us, Some(revoke_ratio)),
            ],
        );
    }
    ExitCode::SUCCESS
}
