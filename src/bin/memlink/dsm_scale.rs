//! `memlink dsm scale`: jacobi's sweeps on 1 node against N nodes, with prefetch and with
//! faults only, in one run. The three clusters run one after another in each round, so
//! whatever else the host does weighs on all of them alike; the speed-ups are ratios of
//! medians over the rounds, and the median of the per-round ratios is printed beside them.

use std::process::ExitCode;

use clap::Args;
use memlink_dsm::apps::App;
use memlink_dsm::{Backend, ManagerKind};

use crate::dsm::{ClusterArgs, parse_backend, parse_manager, run_cluster};

/// Arguments of `memlink dsm scale`.
#[derive(Args)]
pub struct ScaleArgs {
    /// The number of node processes to compare with 1 (2 to 64).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(2..=64))]
    nodes: u16,
    /// jacobi's grid side (a multiple of 512 gives every row its own pages).
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u32).range(3..=16384))]
    size: u32,
    /// jacobi's sweeps.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    iters: u32,
    /// Rounds of the three runs (1 node; N nodes with prefetch; N nodes, faults only).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=100))]
    rounds: u32,
    /// Which page manager locates page owners: central, fixed or dynamic.
    #[arg(long, default_value = "central", value_parser = parse_manager)]
    manager: ManagerKind,
    /// How page faults are caught: sigsegv or uffd.
    #[arg(long, default_value = "sigsegv", value_parser = parse_backend)]
    backend: Backend,
    /// Print one JSON object (the steady times of every run, the medians and the speed-ups)
    /// instead of the table.
    #[arg(long)]
    json: bool,
    /// Give up on one cluster (and kill its nodes) after this many seconds (default: 120 plus
    /// an estimate of the work, said when that is long).
    #[arg(long)]
    timeout: Option<u64>,
}

/// The three runs of a round.
const RUNS: [(&str, bool); 3] = [
    ("1 node", false),
    ("N nodes, prefetch", true),
    ("N nodes, faults only", true),
];

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Runs `memlink dsm scale ...`.
pub fn run(a: ScaleArgs) -> ExitCode {
    // The largest of the runs: N nodes on this host.
    let largest = ClusterArgs {
        app: App::Jacobi,
        backend: a.backend,
        manager: a.manager,
        size: Some(a.size),
        iters: Some(a.iters),
        no_prefetch: false,
        memory_budget: None,
        hold_us: None,
        file: None,
        workers: None,
        no_hints: false,
    };
    let timeout = match crate::dsm_plan::check("memlink dsm scale", a.nodes, &largest, a.timeout) {
        Ok(timeout) => timeout,
        Err(code) => return code,
    };
    // steady[run][round], in milliseconds.
    let mut steady: [Vec<f64>; 3] = Default::default();
    for round in 1..=a.rounds {
        for (i, &(label, many)) in RUNS.iter().enumerate() {
            let cluster = ClusterArgs {
                app: App::Jacobi,
                backend: a.backend,
                manager: a.manager,
                size: Some(a.size),
                iters: Some(a.iters),
                no_prefetch: i == 2,
                memory_budget: None,
                hold_us: None,
                file: None,
                workers: None,
                no_hints: false,
            };
            let nodes = if many { a.nodes } else { 1 };
            let reports = match run_cluster("memlink dsm scale", nodes, &cluster, timeout) {
                Ok(reports) => reports,
                Err(code) => return code,
            };
            if !reports.iter().all(|r| r.verified) {
                eprintln!("memlink dsm scale: round {round}, {label}: the grid did not verify");
                return ExitCode::FAILURE;
            }
            let Some(us) = reports.iter().filter_map(|r| r.steady_us).max() else {
                eprintln!("memlink dsm scale: round {round}, {label}: no steady time reported");
                return ExitCode::FAILURE;
            };
            steady[i].push(us as f64 / 1000.0);
        }
        eprintln!(
            "round {round}/{}: 1 node {:.1} ms, {} nodes {:.1} ms with prefetch, {:.1} ms faults only",
            a.rounds,
            steady[0][round as usize - 1],
            a.nodes,
            steady[1][round as usize - 1],
            steady[2][round as usize - 1]
        );
    }
    let medians = steady.each_ref().map(|s| median(s));
    let per_round = |i: usize| -> Vec<f64> {
        steady[0]
            .iter()
            .zip(&steady[i])
            .map(|(one, many)| one / many)
            .collect()
    };
    let speedup = |i: usize| medians[0] / medians[i];
    if a.json {
        let obj = serde_json::json!({
            "app": "jacobi",
            "nodes": a.nodes,
            "size": a.size,
            "iters": a.iters,
            "rounds": a.rounds,
            "manager": a.manager.to_string(),
            "backend": a.backend.to_string(),
            "one_node_ms": steady[0],
            "prefetch_ms": steady[1],
            "faults_only_ms": steady[2],
            "speedup_prefetch": round3(speedup(1)),
            "speedup_faults_only": round3(speedup(2)),
            "speedup_prefetch_per_round": per_round(1).into_iter().map(round3).collect::<Vec<_>>(),
        });
        println!("{obj}");
    } else {
        println!(
            "jacobi {size} x {size}, {} sweeps, manager {}, backend {}: steady ms, median of {} rounds",
            a.iters,
            a.manager,
            a.backend,
            a.rounds,
            size = a.size
        );
        for (i, (label, _)) in RUNS.iter().enumerate() {
            let label = label.replace('N', &a.nodes.to_string());
            let ratio = if i == 0 {
                String::new()
            } else {
                format!(
                    "   speed-up {:.2}x (per round: median {:.2}x)",
                    speedup(i),
                    median(&per_round(i))
                )
            };
            println!("  {label:<22} {:>9.1}{ratio}", medians[i]);
        }
    }
    ExitCode::SUCCESS
}
