//! `memlink dsm bench --suite migration`: the task migration figures of
//! `memlink_dsm::migration_bench` (a suspended task with a 64 KiB stack, from suspension on
//! one node to running on the other), shown as ratios to a remote read miss measured in the
//! same run. The 2 nodes start with address-space randomisation off, so both load the code
//! at the same address (a migrating task's saved context holds code addresses).

use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitCode};
use std::time::Duration;

use memlink_dsm::figures_line::FiguresLine;
use memlink_dsm::init::launch;
use memlink_dsm::migration_bench::{
    MAX_SAMPLES, MigrationFigures, REPORTER, migration_pages, run_migration_node,
};
use memlink_dsm::{DsmError, NodeConfig, NodeId};

use crate::dsm_bench::BenchArgs;

/// Runs the suite: as a node when the launcher said so, else as the launcher.
pub(crate) fn run(a: &BenchArgs) -> ExitCode {
    if a.nodes != 2 || a.iters as usize > MAX_SAMPLES {
        eprintln!(
            "memlink dsm bench: the migration suite runs on 2 nodes (--nodes 2) with at most \
             {MAX_SAMPLES} samples (--iters)"
        );
        return ExitCode::from(2);
    }
    match (a.node_id, a.listen, a.peers.clone()) {
        (Some(id), Some(listen), Some(peers)) => run_node(a, id, listen, peers),
        _ => run_cluster(a),
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
        pages: migration_pages(iters),
        manager: a.manager,
        connect_timeout: Duration::from_secs(30),
        admission,
        memory_budget: None,
        hold: memlink_dsm::config::DEFAULT_HOLD,
    };
    match run_migration_node(config, a.backend, iters) {
        Ok(figures) => {
            if let Some(f) = figures {
                println!("{}", f.to_line());
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

/// Address-space randomisation off in the child `cmd` starts.
fn same_load_address(cmd: &mut Command) {
    // SAFETY: the closure runs in the forked child before exec and makes only the
    // async-signal-safe personality syscall, allocating nothing.
    unsafe {
        cmd.pre_exec(|| {
            let now = libc::personality(0xffff_ffff);
            if now == -1 || libc::personality((now | libc::ADDR_NO_RANDOMIZE) as _) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

fn run_cluster(a: &BenchArgs) -> ExitCode {
    let exe = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("memlink dsm bench: cannot find my own executable to start the nodes: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outputs = launch(2, Duration::from_secs(a.timeout), |slot| {
        let mut cmd = Command::new(&exe);
        cmd.args(["dsm", "bench", "--suite", "migration"])
            .args(["--node-id", &slot.id.to_string()])
            .args(["--listen", &slot.listen.to_string()])
            .args(["--peers", &slot.peers_arg()])
            .args(["--manager", &a.manager.to_string()])
            .args(["--backend", &a.backend.to_string()])
            .args(["--iters", &a.iters.to_string()]);
        same_load_address(&mut cmd);
        cmd
    });
    let outputs = match outputs {
        Ok(o) => o,
        Err(e) => {
            eprintln!("memlink dsm bench: {e}");
            return crate::dsm::launch_failure_status(&e);
        }
    };
    let Some(f) = outputs
        .iter()
        .find(|o| o.id == REPORTER)
        .and_then(|o| MigrationFigures::find_in(&o.stdout))
    else {
        eprintln!("memlink dsm bench: node 0 ended without its figures");
        return ExitCode::FAILURE;
    };
    let ratio = |us: f64| us / f.read_miss_us;
    if a.json {
        let mut obj = serde_json::json!({
            "suite": "migration",
            "manager": a.manager.to_string(),
            "backend": a.backend.to_string(),
            "iters": a.iters,
        });
        for (k, v) in f.named() {
            obj[k] = serde_json::json!(round3(v));
            if k != "read_miss_us" {
                obj[format!("{}_vs_read_miss", k.trim_end_matches("_us"))] =
                    serde_json::json!(round3(ratio(v)));
            }
        }
        println!("{obj}");
    } else {
        println!(
            "DSM migration bench: 2 nodes, manager {}, backend {}, median of {} samples each",
            a.manager, a.backend, a.iters
        );
        println!("  {:<60} {:>9} {:>12}", "", "µs", "/ read miss");
        for (label, us) in [
            (
                "read miss (the page is at another node): baseline",
                f.read_miss_us,
            ),
            (
                "task with a 64 KiB stack: suspended here to running there",
                f.migrate_us,
            ),
            (
                "the same, and its 40 KiB of written stack read back there",
                f.migrate_and_touch_us,
            ),
        ] {
            println!("  {label:<60} {us:>9.1} {:>12.2}", ratio(us));
        }
    }
    ExitCode::SUCCESS
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}
