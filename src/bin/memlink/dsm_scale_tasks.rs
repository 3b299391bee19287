//! `memlink dsm scale-tasks`: nqueens with every task spawned on node 0, on 1 node with one
//! worker against N nodes with one worker each (the null tasks spread the tasks), with hints
//! and without, in one run. The three clusters run one after another in each round, so
//! whatever else the host does weighs on all of them alike; the speed-ups are ratios of
//! medians over the rounds. Beside them: the work requests refused, with hints and without.

use std::process::ExitCode;

use clap::Args;
use memlink_dsm::apps::{App, NodeReport};
use memlink_dsm::{Backend, ManagerKind};

use crate::dsm::ClusterArgs;
use crate::dsm_bench_print::round3;
use crate::dsm_scale::{median, run_rounds};

/// Arguments of `memlink dsm scale-tasks`.
#[derive(Args)]
pub struct ScaleTasksArgs {
    /// The number of node processes to compare with 1 (2 to 64).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(2..=64))]
    nodes: u16,
    /// The nqueens board side (1 to 16).
    #[arg(long, default_value_t = 13, value_parser = clap::value_parser!(u32).range(1..=16))]
    size: u32,
    /// Rounds of the three runs (1 node; N nodes with hints; N nodes without).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    rounds: u32,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
    /// Give up on one cluster (and kill its nodes) after this many seconds.
    #[arg(long, default_value_t = 300)]
    timeout: u64,
}

/// The three runs of a round: label, many nodes, hints.
const RUNS: [(&str, bool, bool); 3] = [
    ("1 node", false, true),
    ("N nodes, hints", true, true),
    ("N nodes, no hints", true, false),
];

/// Work requests and refusals summed over the nodes of a run.
fn requests(reports: &[NodeReport]) -> (u64, u64, u64) {
    reports
        .iter()
        .fold((0, 0, 0), |(req, refused, migrated), r| {
            let t = r.tasks.unwrap_or_default();
            (
                req + t.requests,
                refused + t.refused,
                migrated + t.migrated_in,
            )
        })
}

/// Runs `memlink dsm scale-tasks ...`.
pub fn run(a: ScaleTasksArgs) -> ExitCode {
    let timeout = std::time::Duration::from_secs(a.timeout);
    let runs = RUNS.map(|(label, many, hints)| {
        let cluster = ClusterArgs {
            app: App::Nqueens,
            backend: Backend::Sigsegv,
            manager: ManagerKind::Central,
            size: Some(a.size),
            iters: None,
            no_prefetch: false,
            memory_budget: None,
            hold_us: None,
            file: None,
            pager_socket: None,
            workers: Some(1),
            no_hints: !hints,
        };
        (label, if many { a.nodes } else { 1 }, cluster)
    });
    // (requests, refused, migrated) summed over the rounds.
    let mut asked = [(0u64, 0u64, 0u64); 3];
    let measure = |i: usize, reports: &[NodeReport]| {
        if !reports.iter().all(|r| r.verified) {
            return Err("the count is wrong");
        }
        let (req, refused, migrated) = requests(reports);
        asked[i].0 += req;
        asked[i].1 += refused;
        asked[i].2 += migrated;
        let wall = reports.iter().map(|r| r.wall_us).max().unwrap_or(0);
        Ok(wall as f64 / 1000.0)
    };
    let round_line = |round, [one, hints, no_hints]: [f64; 3]| {
        format!(
            "round {round}/{}: 1 node {one:.1} ms, {} nodes {hints:.1} ms with hints, \
             {no_hints:.1} ms without",
            a.rounds, a.nodes
        )
    };
    let ms = match run_rounds(
        "memlink dsm scale-tasks",
        a.rounds,
        &runs,
        timeout,
        measure,
        round_line,
    ) {
        Ok(ms) => ms,
        Err(code) => return code,
    };
    let medians = ms.each_ref().map(|m| median(m));
    let speedup = |i: usize| medians[0] / medians[i];
    let refused_share = |i: usize| {
        let (req, refused, _) = asked[i];
        if req == 0 {
            0.0
        } else {
            refused as f64 / req as f64
        }
    };
    if a.json {
        let obj = serde_json::json!({
            "app": "nqueens",
            "size": a.size,
            "nodes": a.nodes,
            "rounds": a.rounds,
            "one_node_ms": ms[0],
            "hints_ms": ms[1],
            "no_hints_ms": ms[2],
            "speedup_hints": round3(speedup(1)),
            "speedup_no_hints": round3(speedup(2)),
            "requests_hints": asked[1].0,
            "refused_hints": asked[1].1,
            "migrated_hints": asked[1].2,
            "requests_no_hints": asked[2].0,
            "refused_no_hints": asked[2].1,
            "migrated_no_hints": asked[2].2,
            "refused_share_hints": round3(refused_share(1)),
            "refused_share_no_hints": round3(refused_share(2)),
        });
        println!("{obj}");
    } else {
        println!(
            "nqueens {size} x {size}, every task spawned on node 0, one worker per node: ms, \
             median of {} rounds",
            a.rounds,
            size = a.size
        );
        for (i, (label, _, _)) in RUNS.iter().enumerate() {
            let label = label.replace('N', &a.nodes.to_string());
            let extra = if i == 0 {
                String::new()
            } else {
                format!(
                    "   speed-up {:.2}x; work requests {}, refused {} ({:.0}%), tasks migrated {}",
                    speedup(i),
                    asked[i].0,
                    asked[i].1,
                    100.0 * refused_share(i),
                    asked[i].2
                )
            };
            println!("  {label:<20} {:>9.1}{extra}", medians[i]);
        }
    }
    ExitCode::SUCCESS
}
