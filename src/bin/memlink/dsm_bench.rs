//! `memlink dsm bench`: starts a local cluster whose nodes run the DSM benchmark of
//! `memlink_dsm::bench`, measures the local fault floor in this process, and prints the
//! medians (one JSON object with `--json`).

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use memlink_dsm::bench::{self, BenchFigures, PROBER};
use memlink_dsm::figures_line::FiguresLine;
use memlink_dsm::{Backend, ManagerKind, NodeId};

use crate::dsm_bench_cluster::{figures_of, launch_nodes, node_config, node_exit};
use crate::dsm_bench_print::round3;

/// Arguments of `memlink dsm bench`.
#[derive(Args)]
pub struct BenchArgs {
    /// What to measure: faults (misses, invalidations, prefetch, locks, barriers, connection
    /// set-up), eviction (each eviction class against a remote read miss, on 2 nodes) or
    /// hold (a page written alternately by 2 nodes, true and false sharing, with a Δt hold of
    /// 0, 100 µs and 1 ms) or pager (a sequential read of a file through the file pager
    /// against a plain mmap of it, one node) or capability (a read miss through a capability
    /// and a revocation against a public read miss and an invalidation) or migration (a task
    /// with a 64 KiB stack moved to another node against a remote read miss, on 2 nodes).
    #[arg(long, value_enum, default_value = "faults")]
    pub(crate) suite: Suite,
    /// The number of node processes (2 to 64); a write invalidates nodes - 1 read copies.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(2..=64))]
    pub(crate) nodes: u16,
    /// Which page manager locates page owners: central, fixed or dynamic.
    #[arg(long, default_value = "central", value_parser = parse_manager)]
    pub(crate) manager: ManagerKind,
    /// How page faults are caught: sigsegv or uffd.
    #[arg(long, default_value = "sigsegv", value_parser = parse_backend)]
    pub(crate) backend: Backend,
    /// Samples per figure (each figure is their median).
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u32).range(1..=20_000))]
    pub(crate) iters: u32,
    /// The hold suite: how long each node writes in each run, in milliseconds.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    pub(crate) duration_ms: u64,
    /// The pager suite: the size of the file read, in MiB.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..=65_536))]
    pub(crate) file_mb: u64,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub(crate) json: bool,
    /// Give up (and kill every node) after this many seconds.
    #[arg(long, default_value_t = 120)]
    pub(crate) timeout: u64,
    /// Run as node ID of a bench cluster (used by the launcher).
    #[arg(long, hide = true, requires_all = ["listen", "peers"])]
    pub(crate) node_id: Option<NodeId>,
    /// This node's listen address (with --node-id).
    #[arg(long, hide = true)]
    pub(crate) listen: Option<SocketAddr>,
    /// Every node's address (with --node-id).
    #[arg(long, hide = true, value_delimiter = ',')]
    pub(crate) peers: Option<Vec<SocketAddr>>,
    /// The node's Δt hold in microseconds (with --node-id, hold suite).
    #[arg(long, hide = true)]
    pub(crate) hold_us: Option<u64>,
    /// The file the node reads (with --node-id, pager suite).
    #[arg(long, hide = true)]
    pub(crate) file: Option<std::path::PathBuf>,
}

/// The measurements `memlink dsm bench` can make.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Suite {
    /// Misses, invalidations, prefetch, locks, barriers, connection set-up.
    Faults,
    /// Each eviction class against a remote read miss.
    Eviction,
    /// The Δt table: a page written alternately by two nodes.
    Hold,
    /// A file read through the file pager against a plain mmap.
    Pager,
    /// A read miss through a capability and a revocation, against a public read miss and
    /// an invalidation of as many copies.
    Capability,
    /// A suspended task with a 64 KiB stack moved to another node, against a read miss.
    Migration,
}

fn parse_backend(s: &str) -> Result<Backend, String> {
    s.parse::<Backend>().map_err(|e| e.to_string())
}

fn parse_manager(s: &str) -> Result<ManagerKind, String> {
    s.parse::<ManagerKind>().map_err(|e| e.to_string())
}

/// Runs `memlink dsm bench ...`.
pub fn run(a: BenchArgs) -> ExitCode {
    if a.suite == Suite::Capability {
        return crate::dsm_bench_capability::run(&a);
    }
    if a.suite == Suite::Migration {
        return crate::dsm_bench_migration::run(&a);
    }
    if a.suite != Suite::Faults {
        return crate::dsm_bench_replacement::run(&a);
    }
    match (a.node_id, a.listen, a.peers.clone()) {
        (Some(id), Some(listen), Some(peers)) => run_node(&a, id, listen, peers),
        _ => run_cluster(&a),
    }
}

fn run_node(a: &BenchArgs, id: NodeId, listen: SocketAddr, peers: Vec<SocketAddr>) -> ExitCode {
    let iters = a.iters as usize;
    let config = match node_config(a, id, listen, peers, bench::bench_pages(iters)) {
        Ok(config) => config,
        Err(code) => return code,
    };
    node_exit(
        id,
        bench::run_node(config, a.backend, iters).map(|f| f.map(|f| f.to_line())),
    )
}

fn run_cluster(a: &BenchArgs) -> ExitCode {
    // The local fault floor is sampled in this process (no node runs then), half before the
    // cluster and half after it, so that a slow phase of the host weighs on it too.
    let local_faults = |n: usize| {
        bench::local_fault_samples(a.backend, n.max(1)).map_err(|e| {
            eprintln!(
                "memlink dsm bench: cannot measure a local {} fault: {e}",
                a.backend
            );
            ExitCode::FAILURE
        })
    };
    let mut faults = match local_faults(a.iters as usize / 2) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let outputs = launch_nodes(a, "faults", a.nodes as usize, |cmd| {
        cmd.args(["--nodes", &a.nodes.to_string()]);
    });
    let f: BenchFigures = match outputs.and_then(|o| figures_of(&o, PROBER)) {
        Ok(f) => f,
        Err(code) => return code,
    };
    match local_faults(a.iters as usize - a.iters as usize / 2) {
        Ok(s) => faults.extend(s),
        Err(code) => return code,
    }
    let local_fault_us = bench::median_us(&mut faults);
    // Connection set-up with and without admission, in this process, after the cluster.
    let setup = match memlink_dsm::connect_bench::measure(a.iters as usize) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("memlink dsm bench: cannot measure connection set-up: {e}");
            return ExitCode::FAILURE;
        }
    };
    let floor = f.tcp_4k_rtt_us + local_fault_us;
    let ratio = f.read_miss_us / floor;
    // The prefetch of PREFETCH_PAGES pages against that many read misses one after another.
    let prefetch_ratio = f.prefetch_8_pages_us / (bench::PREFETCH_PAGES as f64 * f.read_miss_us);
    if a.json {
        let mut obj = serde_json::json!({
            "nodes": a.nodes,
            "manager": a.manager.to_string(),
            "backend": a.backend.to_string(),
            "iters": a.iters,
            "invalidated_copies": a.nodes - 1,
            "local_fault_us": round3(local_fault_us),
            "read_miss_vs_floor": round3(ratio),
            "prefetch_vs_read_misses": round3(prefetch_ratio),
        });
        for (k, v) in f.named().into_iter().chain(setup.named()) {
            obj[k] = serde_json::json!(round3(v));
        }
        obj["admission_extra_round_trips"] = serde_json::json!(round3(setup.extra_round_trips()));
        println!("{obj}");
    } else {
        println!(
            "DSM bench: {} nodes, manager {}, backend {}, median of {} samples each",
            a.nodes, a.manager, a.backend, a.iters
        );
        for (k, v) in f.named() {
            println!("  {:<44} {v:>9.1} µs", label(k, a.nodes));
        }
        println!(
            "  {:<44} {local_fault_us:>9.1} µs",
            label("local_fault_us", a.nodes)
        );
        println!("  read miss / (TCP round trip + local fault) = {ratio:.2}");
        println!(
            "  prefetch of {} pages / {} read misses one by one = {prefetch_ratio:.2}",
            bench::PREFETCH_PAGES,
            bench::PREFETCH_PAGES
        );
        println!(
            "Connection set-up (loopback, median of {} each):",
            a.iters.max(3)
        );
        for (k, v) in setup.named() {
            println!("  {:<44} {v:>9.1} µs", label(k, a.nodes));
        }
        println!(
            "  (admission - handshake without key) / round trip = {:.2} (extra round trips)",
            setup.extra_round_trips()
        );
    }
    ExitCode::SUCCESS
}

/// What a figure of the table measures, in words (`--json` keeps the keys).
fn label(key: &str, nodes: u16) -> String {
    let others = nodes - 1;
    match key {
        "tcp_4k_rtt_us" => "raw TCP round trip, 4 KiB each way".into(),
        "read_miss_us" => "read miss (the page is at another node)".into(),
        "write_miss_us" => "write miss (ownership and data move here)".into(),
        "invalidation_us" => format!(
            "write invalidating {others} read {}",
            if others == 1 { "copy" } else { "copies" }
        ),
        "lock_free_us" => "lock + unlock, nobody waiting".into(),
        "lock_contended_us" => format!("lock + unlock, {nodes} nodes contending"),
        "barrier_us" => format!("barrier of {nodes} nodes"),
        "prefetch_8_pages_us" => format!("prefetch of {} remote pages", bench::PREFETCH_PAGES),
        "local_fault_us" => "fault served locally (no network)".into(),
        "connect_round_trip_us" => "1-byte round trip on an open connection".into(),
        "tcp_connect_us" => "raw TCP connect".into(),
        "open_handshake_us" => "connect + handshake, no key (1 round trip)".into(),
        "admission_us" => "connect + admission, key (2 round trips)".into(),
        "admission_compute_us" => "admission's HMACs and checks alone (no I/O)".into(),
        other => other.into(),
    }
}
