//! `memlink dsm scale`: jacobi's sweeps on 1 node against N nodes, with prefetch and with
//! faults only, in one run. The three clusters run one after another in each round, so
//! whatever else the host does weighs on all of them alike; the speed-ups are ratios of
//! medians over the rounds, and the median of the per-round ratios is printed beside them.

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use memlink_dsm::apps::{App, NodeReport};
use memlink_dsm::{Backend, ManagerKind};

use crate::dsm::{ClusterArgs, parse_backend, parse_manager, run_cluster};
use crate::dsm_bench_print::round3;

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

/// The median of `values` (the mean of the middle two for an even count).
pub(crate) fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Runs `rounds` rounds of the clusters `runs` (each a label, its nodes and its arguments),
/// one after another in each round, and returns every run's measures in the order of the
/// rounds. `measure` takes a run's index and its nodes' reports and returns the run's measure,
/// or why the run failed (said with the round and the label, and `command` fails); after each
/// round `round_line` gets its measures, for a line on stderr.
pub(crate) fn run_rounds<const N: usize>(
    command: &str,
    rounds: u32,
    runs: &[(&str, u16, ClusterArgs); N],
    timeout: Duration,
    mut measure: impl FnMut(usize, &[NodeReport]) -> Result<f64, &'static str>,
    round_line: impl Fn(u32, [f64; N]) -> String,
) -> Result<[Vec<f64>; N], ExitCode> {
    let mut measures: [Vec<f64>; N] = std::array::from_fn(|_| Vec::new());
    for round in 1..=rounds {
        for (i, (label, nodes, cluster)) in runs.iter().enumerate() {
            let reports = run_cluster(command, *nodes, cluster, timeout)?;
            match measure(i, &reports) {
                Ok(m) => measures[i].push(m),
                Err(why) => {
                    eprintln!("{command}: round {round}, {label}: {why}");
                    return Err(ExitCode::FAILURE);
                }
            }
        }
        let line = round_line(round, measures.each_ref().map(|m| m[m.len() - 1]));
        eprintln!("{line}");
    }
    Ok(measures)
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
        pager_socket: None,
        workers: None,
        no_hints: false,
    };
    let timeout = match crate::dsm_plan::check("memlink dsm scale", a.nodes, &largest, a.timeout) {
        Ok(timeout) => timeout,
        Err(code) => return code,
    };
    let runs: [_; 3] = std::array::from_fn(|i| {
        let (label, many) = RUNS[i];
        let cluster = ClusterArgs {
            no_prefetch: i == 2,
            ..largest.clone()
        };
        (label, if many { a.nodes } else { 1 }, cluster)
    });
    let measure = |_: usize, reports: &[NodeReport]| {
        if !reports.iter().all(|r| r.verified) {
            return Err("the grid did not verify");
        }
        let us = reports.iter().filter_map(|r| r.steady_us).max();
        us.map(|us| us as f64 / 1000.0)
            .ok_or("no steady time reported")
    };
    let round_line = |round, [one, prefetch, faults_only]: [f64; 3]| {
        format!(
            "round {round}/{}: 1 node {one:.1} ms, {} nodes {prefetch:.1} ms with prefetch, \
             {faults_only:.1} ms faults only",
            a.rounds, a.nodes
        )
    };
    // steady[run][round], in milliseconds.
    let steady = match run_rounds(
        "memlink dsm scale",
        a.rounds,
        &runs,
        timeout,
        measure,
        round_line,
    ) {
        Ok(steady) => steady,
        Err(code) => return code,
    };
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
