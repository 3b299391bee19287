//! What a `memlink dsm` app run needs, checked before any node starts: a setting the app
//! would ignore is refused (naming the apps it applies to), a run that needs more memory than
//! this machine has available is refused (saying how much it needs, from the app's own
//! working set), and the default time limit grows with the work (said when it is long).

use std::process::ExitCode;
use std::time::Duration;

use memlink_dsm::Backend;
use memlink_dsm::apps::{App, jacobi};

use crate::dsm::ClusterArgs;

/// The time limit of a run that does little work.
const BASE_TIMEOUT: Duration = Duration::from_secs(120);

/// Grid points a node updates per second on a busy machine, deliberately low (a 2-core
/// machine shared with other work; this binary is both launcher and node).
const CELLS_PER_SECOND: f64 = if cfg!(debug_assertions) { 5e6 } else { 5e7 };

/// What a sweep costs besides its points: a barrier and the edge rows' faults.
const SWEEP_OVERHEAD: Duration = Duration::from_millis(5);

/// Refuses a run of `c` on `nodes` nodes of this host that cannot work (exit status 2, the
/// reason on stderr); returns its time limit: `timeout` seconds if given, else
/// [`BASE_TIMEOUT`] plus a generous estimate of the work.
pub(crate) fn check(
    who: &str,
    nodes: u16,
    c: &ClusterArgs,
    timeout: Option<u64>,
) -> Result<Duration, ExitCode> {
    let params = c.app_params();
    if let Err(e) = params.check_for(c.app) {
        eprintln!("{who}: {e}");
        return Err(ExitCode::from(2));
    }
    if let Some(missing) = params.missing_for(c.app) {
        eprintln!("{who}: {missing}");
        return Err(ExitCode::from(2));
    }
    if let Some(file) = &params.file {
        if let Err(e) = std::fs::File::open(file) {
            eprintln!("{who}: cannot read --file {}: {e}", file.display());
            return Err(ExitCode::from(2));
        }
    }
    let per_node = c.app.memory_per_node(&params, c.backend);
    let needed = per_node.saturating_mul(u64::from(nodes));
    if let Some(available) = mem_available() {
        if needed > available {
            let hint = match c.app {
                App::Jacobi => match largest_jacobi(available / u64::from(nodes), c.backend) {
                    Some(n) => format!("--size {n} or less fits"),
                    None => "use fewer --nodes".to_string(),
                },
                _ => "use fewer --nodes".to_string(),
            };
            eprintln!(
                "{who}: {} needs about {} per node, {} for {nodes} nodes on this host, but only \
                 {} is available (MemAvailable in /proc/meminfo); {hint}",
                describe(c),
                gib(per_node),
                gib(needed),
                gib(available)
            );
            return Err(ExitCode::from(2));
        }
    }
    if let Some(secs) = timeout {
        return Ok(Duration::from_secs(secs));
    }
    let work = work_estimate(nodes, c);
    let limit = BASE_TIMEOUT + Duration::from_secs(work.as_secs().saturating_add(1));
    if work > Duration::from_secs(60) {
        eprintln!(
            "{who}: {} on {nodes} nodes may take up to about {} s; giving up after {} s \
             (--timeout to change)",
            describe(c),
            work.as_secs(),
            limit.as_secs()
        );
    }
    Ok(limit)
}

/// The app and its size, as a person says it.
fn describe(c: &ClusterArgs) -> String {
    match c.app {
        App::Jacobi => {
            let n = c.size.map_or(jacobi::N, |s| s as usize);
            let sweeps = c.iters.map_or(jacobi::SWEEPS, |i| i as usize);
            format!("jacobi {n}x{n}, {sweeps} sweeps,")
        }
        other => other.to_string(),
    }
}

/// A generous estimate of the run's time: every node sweeps its band and then computes the
/// whole grid again for its check, the nodes sharing this host's CPUs.
fn work_estimate(nodes: u16, c: &ClusterArgs) -> Duration {
    if c.app != App::Jacobi {
        return Duration::ZERO;
    }
    let n = c.size.map_or(jacobi::N, |s| s as usize) as f64;
    let sweeps = c.iters.map_or(jacobi::SWEEPS, |i| i as usize) as f64;
    let nodes = f64::from(nodes);
    let cpus = std::thread::available_parallelism().map_or(1, |p| p.get()) as f64;
    let points = n * n * sweeps * (nodes + 1.0);
    let secs =
        points / (CELLS_PER_SECOND * nodes.min(cpus)) + sweeps * SWEEP_OVERHEAD.as_secs_f64();
    Duration::from_secs_f64(secs.min(1e9))
}

/// The largest jacobi grid side whose node fits in `bytes`, if any does (3 is the least).
fn largest_jacobi(bytes: u64, backend: Backend) -> Option<u32> {
    let fits = |n: u32| {
        let params = memlink_dsm::apps::AppParams {
            size: Some(n as usize),
            ..Default::default()
        };
        App::Jacobi.memory_per_node(&params, backend) <= bytes
    };
    if !fits(3) {
        return None;
    }
    let (mut lo, mut hi) = (3u32, 16384u32);
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        if fits(mid) { lo = mid } else { hi = mid - 1 }
    }
    Some(lo)
}

/// MemAvailable from /proc/meminfo, in bytes; None where it cannot be read.
fn mem_available() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib.saturating_mul(1024))
}

fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / f64::from(1u32 << 30))
}
