//! `memlink demo`: real processes pass checked messages through each channel kind and
//! the pipe/socket baselines; a table compares copies, latency and throughput.

use std::process::ExitCode;

use clap::Args;

use memlink::ipc_bench::size::format_size;
use memlink::ipc_bench::{Measurement, Plan, Transport, Wait, format_table};

use crate::bench::{WaitArg, run_with_progress};

/// Options of the demo.
#[derive(Args)]
pub struct DemoArgs {
    /// A short run (fewer sizes and round trips), for tests and slow machines.
    #[arg(long)]
    quick: bool,
    /// How memlink's channels wait.
    #[arg(long, value_enum, default_value = "spin")]
    wait: WaitArg,
}

/// The transports the demo shows, in order.
const SHOWN: [Transport; 5] = [
    Transport::Loan,
    Transport::Sync,
    Transport::Buffered,
    Transport::Pipe,
    Transport::UnixSocket,
];

fn p50(rows: &[Measurement], transport: Transport, size: usize) -> Option<u64> {
    rows.iter()
        .find(|m| m.transport == transport.name() && m.size_bytes == size)
        .map(|m| m.rtt_ns_p50)
}

pub fn run(args: DemoArgs) -> ExitCode {
    let (sizes, iters) = if args.quick {
        (vec![64, 64 << 10], 200)
    } else {
        (vec![64, 4 << 10, 1 << 20], 3_000)
    };
    let mut plan = Plan::new(sizes.clone(), iters);
    plan.byte_budget = 512 << 20;
    let wait = Wait::from(args.wait);
    let sizes_text: Vec<String> = sizes.iter().map(|&s| format_size(s)).collect();
    println!(
        "memlink demo: for each transport, this process forks a peer and they play ping-pong\n\
         with messages of {}; every message carries a pattern made from its sequence number\n\
         and is checked on arrival (warm-up: every byte; timed: head, middle and tail).\n\
         copies = copies of the payload per one-way message; rtt = round trip (there and back);\n\
         GB/s = payload delivered per second (a zero-copy message is delivered by reference,\n\
         so its GB/s is not bounded by memory bandwidth).\n",
        sizes_text.join(", ")
    );
    let rows = match run_with_progress(&SHOWN, &plan, wait) {
        Ok(rows) => rows,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    print!("{}", format_table(&rows));
    let checked: usize = rows
        .iter()
        .map(|m| plan.iters_for(m.size_bytes) + plan.warmup_for(m.size_bytes))
        .sum();
    println!("\nall {checked} round trips verified in both directions.");
    let big = *sizes.last().unwrap_or(&64);
    if let Some(loan) = p50(&rows, Transport::Loan, big) {
        let faster: Vec<String> = SHOWN[1..]
            .iter()
            .filter_map(|&t| p50(&rows, t, big).map(|other| (t, other)))
            .map(|(t, other)| format!("{t} {:.1}x", other as f64 / loan.max(1) as f64))
            .collect();
        println!(
            "at {}, round trip relative to the loan channel (zero copies): {}.",
            format_size(big),
            faster.join(", ")
        );
    }
    ExitCode::SUCCESS
}
