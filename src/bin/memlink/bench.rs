//! `memlink bench ipc`: round trips between two processes over every transport, as a
//! table, JSON and an SVG plot.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};

use memlink::ipc_bench::size::{format_size, parse_sizes};
use memlink::ipc_bench::{
    MAX_MESSAGE, Measurement, Plan, RunError, Transport, Wait, format_table, measure, plot_svg,
};

/// Which benchmark to run.
#[derive(Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    which: BenchKind,
}

#[derive(Subcommand)]
enum BenchKind {
    /// Ping-pong between two processes over memlink's channels (loan: 0 copies, sync:
    /// 1 copy, buffered: 2 copies), pipes, a unix socket, iceoryx2 (if built with
    /// --features iceoryx2) and the raw floors (a cache-line and a futex ping-pong).
    Ipc(IpcArgs),
}

/// How the memlink channels wait.
#[derive(Clone, Copy, ValueEnum)]
pub enum WaitArg {
    /// Busy-wait (lowest latency, burns a core per waiting side).
    Spin,
    /// Sleep on a futex (a context switch per wait).
    Block,
}

impl From<WaitArg> for Wait {
    fn from(w: WaitArg) -> Wait {
        match w {
            WaitArg::Spin => Wait::Spin,
            WaitArg::Block => Wait::Block,
        }
    }
}

/// The most timed round trips per size (each is kept, 8 bytes, for the percentiles).
const MAX_ITERS: usize = 100_000_000;

#[derive(Args)]
struct IpcArgs {
    /// Message sizes, comma-separated, with binary suffixes K, M (at least 8 bytes, at
    /// most the 16 MiB loan slot).
    #[arg(long, default_value = "8,64,4K,64K,1M,16M")]
    sizes: String,
    /// How memlink's channels wait.
    #[arg(long, value_enum, default_value = "spin")]
    wait: WaitArg,
    /// Timed round trips per size (large sizes get fewer: at most 1 GiB per direction,
    /// never fewer than 20).
    #[arg(long, default_value_t = 10_000)]
    iters: usize,
    /// Write the results as a JSON array to this file.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Plot median round trip against size (log-log SVG) to this file.
    #[arg(long, value_name = "FILE.svg")]
    plot: Option<PathBuf>,
    /// Pin spinning pairs: this process on one CPU, its peer on another (`--pin 0,1`),
    /// so two busy-waiting processes never time-share a CPU. Blocking pairs stay unpinned.
    #[arg(long, value_name = "CPU,CPU")]
    pin: Option<String>,
    /// Transports to run, comma-separated (default: every one in this build).
    #[arg(long, value_delimiter = ',', value_name = "NAME,...")]
    transports: Option<Vec<String>>,
}

pub fn run(args: BenchArgs) -> ExitCode {
    match args.which {
        BenchKind::Ipc(a) => match ipc(a) {
            Ok(()) => ExitCode::SUCCESS,
            Err(msg) => {
                eprintln!("error: {msg}");
                ExitCode::from(2)
            }
        },
    }
}

/// Parses a transport list, refusing unknown names and transports not in this build.
pub fn parse_transports(names: Option<&[String]>) -> Result<Vec<Transport>, String> {
    let Some(names) = names else {
        return Ok(Transport::ALL
            .into_iter()
            .filter(|t| t.is_built())
            .collect());
    };
    let mut out = Vec::new();
    for name in names {
        let name = name.trim();
        let t = Transport::from_name(name).ok_or_else(|| {
            let known: Vec<&str> = Transport::ALL.iter().map(|t| t.name()).collect();
            format!(
                "unknown transport {name:?}: choose from {}",
                known.join(", ")
            )
        })?;
        if !t.is_built() {
            return Err(format!(
                "transport {name} is not part of this build: rebuild with `cargo build --release --features {name}`"
            ));
        }
        if !out.contains(&t) {
            out.push(t);
        }
    }
    if out.is_empty() {
        return Err("no transports given".into());
    }
    Ok(out)
}

/// Measures the cache-line floor again after the run and warns if the machine's speed
/// changed meanwhile (a virtual machine whose host moved its vCPUs, frequency scaling):
/// ratios between transports measured before and after such a change mean little.
fn check_stability(rows: &[Measurement], plan: &Plan) -> Result<(), String> {
    let Some(before) = rows
        .iter()
        .find(|m| m.transport == Transport::CacheLine.name())
        .map(|m| m.rtt_ns_p50)
    else {
        return Ok(());
    };
    let again = Plan::new(vec![8], plan.iters.min(20_000));
    let after = measure(Transport::CacheLine, &again, Wait::Spin, &mut |_| {})
        .map_err(|e| e.to_string())?
        .first()
        .map_or(before, |m| m.rtt_ns_p50);
    let ratio = after.max(before) as f64 / before.min(after).max(1) as f64;
    if ratio > 1.5 {
        eprintln!(
            "warning: the cache-line floor measured {before} ns during the run and {after} ns after it: \
             this machine changed speed meanwhile, so ratios between transports of this run are unreliable; run again"
        );
    } else {
        eprintln!(
            "stability check: cache-line floor {before} ns during the run, {after} ns after it"
        );
    }
    Ok(())
}

/// Parses `--pin A,B` into two distinct CPU numbers.
fn parse_pin(text: &str) -> Result<(usize, usize), String> {
    let bad = || format!("--pin {text:?}: give two different CPU numbers, like --pin 0,1");
    let (a, b) = text.split_once(',').ok_or_else(bad)?;
    let a: usize = a.trim().parse().map_err(|_| bad())?;
    let b: usize = b.trim().parse().map_err(|_| bad())?;
    if a == b {
        return Err(bad());
    }
    Ok((a, b))
}

/// Checks, before a run of minutes, that its result can be written to `path` at the end:
/// the file opens for writing (an existing one is left as it is until then), or, if it
/// does not exist, it can be created in its folder (the probe file is removed again).
pub fn check_writable(path: &std::path::Path) -> Result<(), String> {
    if path.is_dir() {
        return Err("is a folder; give a file name".into());
    }
    if path.exists() {
        return std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .map(drop)
            .map_err(|e| format!("cannot be written: {e}"));
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| format!("cannot be created: {e}"))?;
    std::fs::remove_file(path).map_err(|e| format!("cannot be created: {e}"))
}

/// Refuses sizes a chosen transport cannot carry.
pub fn check_sizes(transports: &[Transport], sizes: &[usize]) -> Result<(), String> {
    for &t in transports {
        if let Some(&bad) = sizes.iter().find(|&&s| !t.supports_size(s)) {
            return Err(format!(
                "transport {t} carries fixed-size [u8; N] values and is built for the powers of two from 8 B to 16 MiB; {} ({bad} bytes) is not one: pick such sizes or leave {t} out of --transports",
                format_size(bad)
            ));
        }
    }
    Ok(())
}

/// Runs each transport over `plan` with a progress bar on stderr.
pub fn run_with_progress(
    transports: &[Transport],
    plan: &Plan,
    wait: Wait,
) -> Result<Vec<Measurement>, RunError> {
    let steps: usize = transports
        .iter()
        .map(|t| if t.is_floor() { 1 } else { plan.sizes.len() })
        .sum();
    let bar = ProgressBar::new(steps as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} {msg} [{elapsed}]")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut rows = Vec::new();
    for &t in transports {
        let first = plan.sizes.first().copied().unwrap_or(8);
        bar.set_message(format!("{t} {}", format_size(first)));
        let plan_t = plan.clone();
        let next: Vec<usize> = plan_t.sizes.iter().skip(1).copied().collect();
        let mut k = 0;
        let result = measure(t, &plan_t, wait, &mut |_done| {
            bar.inc(1);
            if let Some(&s) = next.get(k) {
                bar.set_message(format!("{t} {}", format_size(s)));
            }
            k += 1;
        });
        match result {
            Ok(r) => rows.extend(r),
            Err(e) => {
                bar.abandon();
                return Err(e);
            }
        }
    }
    bar.finish_and_clear();
    Ok(rows)
}

fn ipc(a: IpcArgs) -> Result<(), String> {
    let sizes = parse_sizes(&a.sizes, MAX_MESSAGE).map_err(|e| e.to_string())?;
    if a.iters == 0 || a.iters > MAX_ITERS {
        return Err(format!(
            "--iters {}: give from 1 to {MAX_ITERS} round trips per size",
            a.iters
        ));
    }
    let transports = parse_transports(a.transports.as_deref())?;
    check_sizes(&transports, &sizes)?;
    if let Some(p) = &a.plot {
        if p.extension().is_none_or(|e| e != "svg") {
            return Err(format!(
                "--plot {}: the plot is an SVG file; give a name ending in .svg",
                p.display()
            ));
        }
    }
    for (flag, path) in [("--json", &a.json), ("--plot", &a.plot)] {
        if let Some(path) = path {
            check_writable(path).map_err(|e| format!("{flag} {}: {e}", path.display()))?;
        }
    }
    if let Some(cpus) = &a.pin {
        let (client, peer) = parse_pin(cpus)?;
        memlink::ipc_bench::pin(client, peer).map_err(|e| format!("--pin {cpus}: {e}"))?;
    }
    let wait = Wait::from(a.wait);
    let plan = Plan::new(sizes, a.iters);
    let rows = run_with_progress(&transports, &plan, wait).map_err(|e| e.to_string())?;
    print!("{}", format_table(&rows));
    if transports.contains(&Transport::CacheLine) {
        check_stability(&rows, &plan)?;
    }
    if let Some(path) = &a.json {
        let json = serde_json::to_string_pretty(&rows).map_err(|e| e.to_string())?;
        std::fs::write(path, json + "\n")
            .map_err(|e| format!("writing {} failed: {e}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    if let Some(path) = &a.plot {
        plot_svg(&rows, path).map_err(|e| format!("{}: {e}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}
