//! The `memlink` command-line tool.

mod bench;
mod demo;
mod doctor;
mod dsm;
mod dsm_bench;
mod dsm_bench_capability;
mod dsm_bench_cluster;
mod dsm_bench_migration;
mod dsm_bench_print;
mod dsm_bench_replacement;
mod dsm_pager;
mod dsm_plan;
mod dsm_scale;
mod dsm_scale_tasks;

use clap::{Parser, Subcommand};

/// memlink: shared-memory parallel programming on Linux.
///
/// Processes pass messages through shared memory with one copy (synchronous channels)
/// or none (loan channels), hold references to shared objects (same-address windows,
/// translated references, revocable capabilities), and share one address space across
/// machines as a page-coherent distributed shared memory.
#[derive(Parser)]
#[command(name = "memlink", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check that this machine offers what memlink needs (Linux 5.11+, 4 KiB pages,
    /// vm.max_map_count for a DSM region, memfd, sealing, fixed mappings, futex, pidfd,
    /// userfaultfd or its fallback) and end with one verdict line.
    Doctor(doctor::DoctorArgs),
    /// Measure: `memlink bench ipc` times round trips between two processes over
    /// memlink's channels, pipes, sockets and the raw floors.
    Bench(bench::BenchArgs),
    /// Show memlink at work: real processes pass checked messages through every channel
    /// kind and the pipe/socket baselines, then a table compares them.
    Demo(demo::DemoArgs),
    /// Distributed shared memory: `memlink dsm run` starts a local cluster and runs an app;
    /// `memlink dsm node` runs one node of a multi-host cluster; `bench` and `scale` measure;
    /// `pager` serves a file to the nodes as their external pager.
    Dsm(dsm::DsmArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Doctor(a) => doctor::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Demo(a) => demo::run(a),
        Command::Dsm(a) => dsm::run(a),
    }
}
