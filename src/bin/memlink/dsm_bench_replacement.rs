//! `memlink dsm bench --suite eviction` and `--suite hold`: the page-replacement figures of
//! `memlink_dsm::replacement_bench`, each set measured in one run and shown as ratios to its
//! baseline from that run (a remote read miss; the runs without a Δt hold).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use memlink_dsm::figures_line::FiguresLine;
use memlink_dsm::init::NodeOutput;
use memlink_dsm::replacement_bench::{
    self, EvictionFigures, HoldFigures, HoldRun, PagerFigures, eviction_pages, run_eviction_node,
    run_hold_node, run_pager_node,
};
use memlink_dsm::{NodeConfig, NodeId};

use crate::dsm_bench::{BenchArgs, Suite};
use crate::dsm_bench_cluster::{figures_of, launch_nodes, node_config, node_exit};
use crate::dsm_bench_print::{insert_vs_read_miss, json_object, print_table, round3};

/// The Δt values of the hold table, in microseconds.
const HOLDS_US: [u64; 3] = [0, 100, 1000];

/// Runs the suite: as a node when the launcher said so, else as the launcher.
pub(crate) fn run(a: &BenchArgs) -> ExitCode {
    if a.suite == Suite::Pager {
        return match (a.node_id, a.listen, &a.file) {
            (Some(_), Some(listen), Some(file)) => pager_node(a, listen, file),
            _ => pager(a),
        };
    }
    if a.nodes != 2 {
        eprintln!("memlink dsm bench: the eviction and hold suites run on 2 nodes (--nodes 2)");
        return ExitCode::from(2);
    }
    match (a.node_id, a.listen, a.peers.clone()) {
        (Some(id), Some(listen), Some(peers)) => run_node(a, id, listen, peers),
        _ if a.suite == Suite::Eviction => eviction(a),
        _ => hold(a),
    }
}

fn run_node(a: &BenchArgs, id: NodeId, listen: SocketAddr, peers: Vec<SocketAddr>) -> ExitCode {
    let iters = a.iters as usize;
    let config = match node_config(a, id, listen, peers, eviction_pages(iters)) {
        Ok(config) => NodeConfig {
            hold: Duration::from_micros(a.hold_us.unwrap_or(0)),
            ..config
        },
        Err(code) => return code,
    };
    let line = match a.suite {
        Suite::Eviction => {
            run_eviction_node(config, a.backend, iters).map(|f| f.map(|f| f.to_line()))
        }
        _ => run_hold_node(config, a.backend, Duration::from_millis(a.duration_ms))
            .map(|f| Some(f.to_line())),
    };
    node_exit(id, line)
}

/// Starts the 2 bench nodes (with Δt `hold_us`) and returns their outputs.
fn cluster(a: &BenchArgs, hold_us: u64) -> Result<Vec<NodeOutput>, ExitCode> {
    let suite = if a.suite == Suite::Eviction {
        "eviction"
    } else {
        "hold"
    };
    launch_nodes(a, suite, 2, |cmd| {
        cmd.args(["--duration-ms", &a.duration_ms.to_string()])
            .args(["--hold-us", &hold_us.to_string()]);
    })
}

fn eviction(a: &BenchArgs) -> ExitCode {
    let f: EvictionFigures =
        match cluster(a, 0).and_then(|o| figures_of(&o, replacement_bench::PROBER)) {
            Ok(f) => f,
            Err(code) => return code,
        };
    let ratio = |us: f64| us / f.read_miss_us;
    if a.json {
        let mut obj = json_object(a, "eviction");
        insert_vs_read_miss(&mut obj, f.named(), f.read_miss_us, &["as_meant"]);
        println!("{obj}");
    } else {
        println!(
            "DSM eviction bench: 2 nodes, manager {}, backend {}, median of {} samples each",
            a.manager, a.backend, a.iters
        );
        let rows = [
            (
                "read miss (the page is at another node): baseline",
                f.read_miss_us,
            ),
            ("evict a read copy (drop, keeper told)", f.dropped_copy_us),
            (
                "evict an owned replicated page (pass ownership)",
                f.passed_ownership_us,
            ),
            (
                "evict an only copy (hand off to a node with room)",
                f.handed_off_us,
            ),
            (
                "evict an only copy (write back to the store)",
                f.written_back_us,
            ),
            ("read fault served from this node's store", f.page_in_us),
        ]
        .map(|(label, us)| (label, us, Some(ratio(us))));
        print_table(52, ("/ read miss", 14), &rows);
        println!(
            "  samples that ran as the class they were set up for: {:.0}%",
            f.as_meant * 100.0
        );
    }
    ExitCode::SUCCESS
}

/// One row of the Δt table: the two nodes' runs in one mode.
fn rates(runs: [HoldRun; 2]) -> (f64, f64, f64) {
    let per_s = |r: HoldRun, n: u64| if r.secs > 0.0 { n as f64 / r.secs } else { 0.0 };
    let moved = per_s(runs[0], runs[0].arrivals) + per_s(runs[1], runs[1].arrivals);
    (
        per_s(runs[0], runs[0].writes),
        per_s(runs[1], runs[1].writes),
        moved,
    )
}

fn hold(a: &BenchArgs) -> ExitCode {
    // rows[mode][hold] = (ops/s node 0, ops/s node 1, pages moved/s)
    let mut rows = [[(0.0, 0.0, 0.0); 3]; 2];
    for (h, &hold_us) in HOLDS_US.iter().enumerate() {
        let outputs = match cluster(a, hold_us) {
            Ok(o) => o,
            Err(code) => return code,
        };
        let mut figures = [HoldFigures::default(); 2];
        for o in &outputs {
            match HoldFigures::find_in(&o.stdout) {
                Some(f) if (f.id as usize) < 2 => figures[f.id as usize] = f,
                _ => {
                    eprintln!("memlink dsm bench: node {} ended without its figures", o.id);
                    return ExitCode::FAILURE;
                }
            }
        }
        rows[0][h] = rates([figures[0].true_sharing, figures[1].true_sharing]);
        rows[1][h] = rates([figures[0].false_sharing, figures[1].false_sharing]);
    }
    let modes = ["true sharing", "false sharing"];
    if a.json {
        let mut list = Vec::new();
        for (m, mode) in modes.iter().enumerate() {
            let base = rows[m][0].0 + rows[m][0].1;
            for (h, &hold_us) in HOLDS_US.iter().enumerate() {
                let (n0, n1, moved) = rows[m][h];
                list.push(serde_json::json!({
                    "mode": mode,
                    "hold_us": hold_us,
                    "ops_per_s_node0": n0.round(),
                    "ops_per_s_node1": n1.round(),
                    "pages_moved_per_s": moved.round(),
                    "ops_vs_no_hold": round3((n0 + n1) / base),
                }));
            }
        }
        println!(
            "{}",
            serde_json::json!({
                "suite": "hold",
                "manager": a.manager.to_string(),
                "backend": a.backend.to_string(),
                "duration_ms": a.duration_ms,
                "runs": list,
            })
        );
    } else {
        println!(
            "DSM Δt bench: one page written alternately by 2 nodes for {} ms per run, manager \
             {}, backend {}",
            a.duration_ms, a.manager, a.backend
        );
        println!(
            "  {:<14} {:>8} {:>14} {:>14} {:>16} {:>14}",
            "", "Δt", "ops/s node 0", "ops/s node 1", "pages moved/s", "ops / Δt=0"
        );
        for (m, mode) in modes.iter().enumerate() {
            let base = rows[m][0].0 + rows[m][0].1;
            for (h, &hold_us) in HOLDS_US.iter().enumerate() {
                let (n0, n1, moved) = rows[m][h];
                println!(
                    "  {mode:<14} {:>8} {n0:>14.0} {n1:>14.0} {moved:>16.0} {:>14.2}",
                    format!("{hold_us} µs"),
                    (n0 + n1) / base
                );
            }
        }
    }
    ExitCode::SUCCESS
}

/// The pager suite's budget: the read streams through 16 MiB of frames.
const PAGER_BUDGET: u64 = 16 << 20;

fn pager_node(a: &BenchArgs, listen: SocketAddr, file: &std::path::Path) -> ExitCode {
    let len = match std::fs::metadata(file) {
        Ok(m) => m.len(),
        Err(e) => {
            eprintln!(
                "memlink dsm bench node 0: cannot read {}: {e}",
                file.display()
            );
            return ExitCode::from(2);
        }
    };
    let config = NodeConfig {
        id: 0,
        listen,
        peers: vec![listen],
        pages: memlink_dsm::apps::wordcount::pages_for(len),
        manager: a.manager,
        connect_timeout: Duration::from_secs(30),
        admission: memlink_dsm::admission::Admission::LoopbackOnly,
        memory_budget: Some(PAGER_BUDGET),
        hold: Duration::ZERO,
    };
    node_exit(
        0,
        run_pager_node(config, a.backend, file).map(|f| Some(f.to_line())),
    )
}

fn pager(a: &BenchArgs) -> ExitCode {
    let dir = std::env::temp_dir().join(format!("memlink-pager-bench-{}", std::process::id()));
    let file = dir.join("data");
    let made = std::fs::create_dir_all(&dir).and_then(|()| {
        use std::io::Write;
        let mut out = std::io::BufWriter::new(std::fs::File::create(&file)?);
        let chunk: Vec<u8> = (0..1 << 20).map(|i: u32| (i * 31 % 251) as u8).collect();
        for _ in 0..a.file_mb {
            out.write_all(&chunk)?;
        }
        out.flush()
    });
    if let Err(e) = made {
        eprintln!(
            "memlink dsm bench: cannot write the {} MiB file: {e}",
            a.file_mb
        );
        let _ = std::fs::remove_dir_all(&dir);
        return ExitCode::FAILURE;
    }
    let launched = launch_nodes(a, "pager", 1, |cmd| {
        cmd.arg("--file").arg(&file);
    });
    let _ = std::fs::remove_dir_all(&dir);
    let outputs = match launched {
        Ok(o) => o,
        Err(code) => return code,
    };
    let Some(f) = outputs
        .iter()
        .find_map(|o| PagerFigures::find_in(&o.stdout))
    else {
        eprintln!("memlink dsm bench: the node ended without its figures");
        return ExitCode::FAILURE;
    };
    let mib = f.bytes as f64 / f64::from(1u32 << 20);
    let (mmap, paged) = (mib / f.mmap_secs, mib / f.pager_secs);
    if a.json {
        println!(
            "{}",
            serde_json::json!({
                "suite": "pager",
                "backend": a.backend.to_string(),
                "file_mib": round3(mib),
                "rounds": f.rounds,
                "mmap_mib_per_s": round3(mmap),
                "pager_mib_per_s": round3(paged),
                "pager_vs_mmap": round3(f.ratio_median),
                "pager_vs_mmap_min": round3(f.ratio_min),
                "pager_vs_mmap_max": round3(f.ratio_max),
                "cpu_pager_vs_mmap": round3(f.cpu_ratio_median),
                "cpu_pager_vs_mmap_min": round3(f.cpu_ratio_min),
                "cpu_pager_vs_mmap_max": round3(f.cpu_ratio_max),
            })
        );
    } else {
        println!(
            "DSM pager bench: a {mib:.0} MiB file read sequentially on one node (budget {} MiB), \
             backend {}, {} rounds alternating a plain read and a read through the pager",
            PAGER_BUDGET >> 20,
            a.backend,
            f.rounds
        );
        println!("  plain mmap (warm page cache):  {mmap:>10.1} MiB/s (median)");
        println!("  through the file pager:        {paged:>10.1} MiB/s (median)");
        println!(
            "  pager / mmap = {:.3} (median of the rounds' ratios; range {:.3} - {:.3})",
            f.ratio_median, f.ratio_min, f.ratio_max
        );
        println!(
            "  CPU time per byte, mmap / pager = {:.3} (median; range {:.3} - {:.3})",
            f.cpu_ratio_median, f.cpu_ratio_min, f.cpu_ratio_max
        );
    }
    ExitCode::SUCCESS
}
