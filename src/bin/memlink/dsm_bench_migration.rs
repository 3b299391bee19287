//! `memlink dsm bench --suite migration`: the task migration figures of
//! `memlink_dsm::migration_bench` (a suspended task with a 64 KiB stack, from suspension on
//! one node to running on the other), shown as ratios to a remote read miss measured in the
//! same run. The 2 nodes start with address-space randomisation off, so both load the code
//! at the same address (a migrating task's saved context holds code addresses).

use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitCode};

use memlink_dsm::NodeId;
use memlink_dsm::figures_line::FiguresLine;
use memlink_dsm::migration_bench::{
    MAX_SAMPLES, MigrationFigures, REPORTER, migration_pages, run_migration_node,
};

use crate::dsm_bench::BenchArgs;
use crate::dsm_bench_cluster::{figures_of, launch_nodes, node_config, node_exit};
use crate::dsm_bench_print::{insert_vs_read_miss, json_object, print_table};

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
    let config = match node_config(a, id, listen, peers, migration_pages(iters)) {
        Ok(config) => config,
        Err(code) => return code,
    };
    node_exit(
        id,
        run_migration_node(config, a.backend, iters).map(|f| f.map(|f| f.to_line())),
    )
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
    let outputs = launch_nodes(a, "migration", 2, same_load_address);
    let f: MigrationFigures = match outputs.and_then(|o| figures_of(&o, REPORTER)) {
        Ok(f) => f,
        Err(code) => return code,
    };
    let ratio = |us: f64| us / f.read_miss_us;
    if a.json {
        let mut obj = json_object(a, "migration");
        insert_vs_read_miss(&mut obj, f.named(), f.read_miss_us, &[]);
        println!("{obj}");
    } else {
        println!(
            "DSM migration bench: 2 nodes, manager {}, backend {}, median of {} samples each",
            a.manager, a.backend, a.iters
        );
        print_table(
            60,
            ("/ read miss", 12),
            &[
                (
                    "read miss (the page is at another node): baseline",
                    f.read_miss_us,
                    Some(ratio(f.read_miss_us)),
                ),
                (
                    "task with a 64 KiB stack: suspended here to running there",
                    f.migrate_us,
                    Some(ratio(f.migrate_us)),
                ),
                (
                    "the same, and its 40 KiB of written stack read back there",
                    f.migrate_and_touch_us,
                    Some(ratio(f.migrate_and_touch_us)),
                ),
            ],
        );
    }
    ExitCode::SUCCESS
}
