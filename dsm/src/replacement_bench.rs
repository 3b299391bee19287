//! The page-replacement benchmarks behind `memlink dsm bench --suite eviction` and
//! `--suite hold`: what each eviction class costs next to a remote read miss measured in the
//! same run, and what the Δt hold does to a page two nodes write alternately.
//!
//! - [`run_eviction_node`]: 2 nodes; node 1 (the prober) times, per sample on fresh pages, a
//!   read miss, the drop of the read copy it brought, the pass of ownership of a page it
//!   wrote and node 0 then read, the hand-off of an only copy to node 0, the write-back of
//!   an only copy, and the fault that reads that page back from its store.
//! - [`run_hold_node`]: 2 nodes write one page for a fixed time, the same word (true
//!   sharing) and then each its own half (false sharing), in batches of 16 writes with a
//!   yield of the CPU between batches; each node counts its writes and the times the page
//!   came to it.
//!
//! ```no_run
//! use memlink_dsm::replacement_bench::{eviction_pages, run_eviction_node};
//! use memlink_dsm::{Backend, NodeConfig};
//! # fn config(pages: u32) -> NodeConfig { unimplemented!() }
//! // In each of the 2 node processes:
//! if let Some(f) = run_eviction_node(config(eviction_pages(100)), Backend::Sigsegv, 100)? {
//!     println!("drop of a copy: {:.2} read misses", f.dropped_copy_us / f.read_miss_us);
//! }
//! # Ok::<(), memlink_dsm::DsmError>(())
//! ```

use std::time::{Duration, Instant};

use crate::atomic::DsmAtomic;
use crate::bench::median_us;
use crate::bench_phases::Phases;
use crate::cluster::Dsm;
use crate::types::{Backend, DsmError, EvictionStats, NodeConfig, NodeId, PAGE_SIZE};

/// The node that times the evictions.
pub const PROBER: NodeId = 1;
/// Fresh pages per eviction sample: a read miss then dropped, a passed page, a handed-off
/// page, a written-back page.
const PAGES_PER_SAMPLE: usize = 4;
const BARRIER_BASE: u32 = 1 << 21;
const SLOT_BLOCK: usize = 1;

/// The region (in pages) an eviction bench of `iters` samples needs.
pub fn eviction_pages(iters: usize) -> u32 {
    (PAGES_PER_SAMPLE * iters + 2) as u32
}

/// The prober's medians, in microseconds, and how many samples ran as the class meant.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct EvictionFigures {
    /// A read of a page whose only copy is at node 0 (the baseline).
    pub read_miss_us: f64,
    /// The eviction of a read copy (class 1: the copyset's keeper told, no data).
    pub dropped_copy_us: f64,
    /// The eviction of an owned page node 0 holds a copy of (class 2: ownership passed).
    pub passed_ownership_us: f64,
    /// The eviction of an only copy to node 0 (class 3: handed off, data moves).
    pub handed_off_us: f64,
    /// The eviction of an only copy to this node's store (class 3: written back).
    pub written_back_us: f64,
    /// A read fault on a page this node wrote back, served from its store.
    pub page_in_us: f64,
    /// Samples that ran as the class they were set up for, of all samples (per class).
    pub as_meant: f64,
}

crate::figures_line!(
    EvictionFigures,
    "memlink-dsm-eviction-bench",
    [
        read_miss_us,
        dropped_copy_us,
        passed_ownership_us,
        handed_off_us,
        written_back_us,
        page_in_us,
        as_meant,
    ]
);

fn elapsed_us(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e6
}

/// Times the eviction of `page`, once it can start: a transfer that just ended here may
/// still be confirmed (the dynamic owner serves one request at a time), so a page is not
/// always evictable the moment the last fault returns.
fn timed_eviction(dsm: &Dsm, page: u32, hand_off: bool) -> Result<f64, DsmError> {
    let waited = Instant::now();
    loop {
        let t = Instant::now();
        if dsm.runtime().evict_page(page, hand_off)? {
            return Ok(elapsed_us(t));
        }
        if waited.elapsed() > Duration::from_secs(10) {
            return Err(DsmError::Protocol(format!(
                "page {page} did not become evictable within 10 s"
            )));
        }
        std::thread::yield_now();
    }
}

/// Joins the 2-node eviction bench cluster (`config.pages` at least
/// [`eviction_pages`]`(iters)`, no memory budget, no hold), measures and leaves. Returns the
/// figures on the prober, `None` on node 0.
pub fn run_eviction_node(
    config: NodeConfig,
    backend: Backend,
    iters: usize,
) -> Result<Option<EvictionFigures>, DsmError> {
    if config.peers.len() != 2 || iters == 0 || config.pages < eviction_pages(iters) {
        return Err(DsmError::Config(format!(
            "the eviction bench runs on 2 nodes with at least {} pages for {iters} samples",
            eviction_pages(iters)
        )));
    }
    let dsm = Dsm::join(config, backend)?;
    let figures = measure_evictions(&dsm, iters)?;
    dsm.leave()?;
    Ok(figures)
}

fn measure_evictions(dsm: &Dsm, iters: usize) -> Result<Option<EvictionFigures>, DsmError> {
    let prober = dsm.id() == PROBER;
    let mut phases = Phases::new(dsm, BARRIER_BASE);
    let block = phases.shared_block(SLOT_BLOCK, PAGES_PER_SAMPLE * iters)?;
    // Sample i's pages: read-and-drop, passed, handed off, written back.
    let offset = |kind: usize, i: usize| block + (kind * iters + i) * PAGE_SIZE;
    let page_no = |off: usize| (off / PAGE_SIZE) as u32;
    let word = |off: usize| DsmAtomic::<u64>::attach(dsm, off);
    let rt = dsm.runtime();
    let class_runs = |before: EvictionStats, pick: fn(&EvictionStats) -> u64| {
        pick(&rt.eviction_stats()) - pick(&before)
    };
    let mut f = EvictionFigures::default();
    let mut meant = 0u64;
    if prober {
        // A read miss, then the drop of the copy it brought.
        let before = rt.eviction_stats();
        let (mut miss, mut drop) = (Vec::new(), Vec::new());
        for i in 0..iters {
            let w = word(offset(0, i))?;
            let t = Instant::now();
            std::hint::black_box(w.load(std::sync::atomic::Ordering::SeqCst));
            miss.push(elapsed_us(t));
            drop.push(timed_eviction(dsm, page_no(offset(0, i)), true)?);
        }
        meant += class_runs(before, |e| e.dropped_copies);
        f.read_miss_us = median_us(&mut miss);
        f.dropped_copy_us = median_us(&mut drop);
        // Owned pages: written here (the passed ones are read by node 0 next).
        for kind in 1..4 {
            for i in 0..iters {
                word(offset(kind, i))?.store(i as u64 + 1, std::sync::atomic::Ordering::SeqCst);
            }
        }
    }
    phases.next()?;
    if dsm.id() == 0 {
        for i in 0..iters {
            std::hint::black_box(word(offset(1, i))?.load(std::sync::atomic::Ordering::SeqCst));
        }
    }
    phases.next()?;
    if prober {
        let timed = |kind: usize, hand_off: bool| -> Result<Vec<f64>, DsmError> {
            let mut samples = Vec::with_capacity(iters);
            for i in 0..iters {
                samples.push(timed_eviction(dsm, page_no(offset(kind, i)), hand_off)?);
            }
            Ok(samples)
        };
        let before = rt.eviction_stats();
        f.passed_ownership_us = median_us(&mut timed(1, false)?);
        meant += class_runs(before, |e| e.passed_ownership);
        let before = rt.eviction_stats();
        f.handed_off_us = median_us(&mut timed(2, true)?);
        meant += class_runs(before, |e| e.handed_off);
        let before = rt.eviction_stats();
        f.written_back_us = median_us(&mut timed(3, false)?);
        meant += class_runs(before, |e| e.written_back);
        let mut page_in = Vec::with_capacity(iters);
        let mut intact = true;
        for i in 0..iters {
            let w = word(offset(3, i))?;
            let t = Instant::now();
            let v = w.load(std::sync::atomic::Ordering::SeqCst);
            page_in.push(elapsed_us(t));
            intact &= v == i as u64 + 1;
        }
        if !intact {
            return Err(DsmError::Protocol(
                "a page read back from the store lost its contents".into(),
            ));
        }
        f.page_in_us = median_us(&mut page_in);
        f.as_meant = meant as f64 / (4 * iters) as f64;
    }
    phases.next()?;
    Ok(prober.then_some(f))
}

/// One node's writes to the shared page in one sharing mode.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct HoldRun {
    /// Writes this node made.
    pub writes: u64,
    /// Times the page came to this node (its write faults served by the protocol).
    pub arrivals: u64,
    /// How long this node wrote, in seconds.
    pub secs: f64,
}

/// One node's runs: true sharing (both write one word) and false sharing (each its half).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct HoldFigures {
    /// The node.
    pub id: NodeId,
    /// Both nodes write the same word.
    pub true_sharing: HoldRun,
    /// Each node writes a word in its own half of the page.
    pub false_sharing: HoldRun,
}

const HOLD_PREFIX: &str = "memlink-dsm-hold-bench";

impl HoldFigures {
    /// One line for the launcher.
    pub fn to_line(&self) -> String {
        let (t, f) = (self.true_sharing, self.false_sharing);
        format!(
            "{HOLD_PREFIX} id={} true_writes={} true_arrivals={} true_secs={:.6} \
             false_writes={} false_arrivals={} false_secs={:.6}",
            self.id, t.writes, t.arrivals, t.secs, f.writes, f.arrivals, f.secs
        )
    }

    /// The figures in a node's output, if it printed them.
    pub fn find_in(output: &str) -> Option<HoldFigures> {
        let rest = output
            .lines()
            .find_map(|l| l.trim().strip_prefix(HOLD_PREFIX))?;
        let mut h = HoldFigures::default();
        let mut seen = 0;
        for field in rest.split_whitespace() {
            let (k, v) = field.split_once('=')?;
            match k {
                "id" => h.id = v.parse().ok()?,
                "true_writes" => h.true_sharing.writes = v.parse().ok()?,
                "true_arrivals" => h.true_sharing.arrivals = v.parse().ok()?,
                "true_secs" => h.true_sharing.secs = v.parse().ok()?,
                "false_writes" => h.false_sharing.writes = v.parse().ok()?,
                "false_arrivals" => h.false_sharing.arrivals = v.parse().ok()?,
                "false_secs" => h.false_sharing.secs = v.parse().ok()?,
                _ => return None,
            }
            seen += 1;
        }
        (seen == 7).then_some(h)
    }
}

/// Joins the 2-node hold bench cluster (its Δt is `config.hold`), writes the shared page for
/// `duration` in each sharing mode, and leaves; returns this node's counts.
pub fn run_hold_node(
    config: NodeConfig,
    backend: Backend,
    duration: Duration,
) -> Result<HoldFigures, DsmError> {
    if config.peers.len() != 2 {
        return Err(DsmError::Config("the hold bench runs on 2 nodes".into()));
    }
    let dsm = Dsm::join(config, backend)?;
    if dsm.id() == 0 {
        let page = dsm.alloc(PAGE_SIZE, PAGE_SIZE)?;
        dsm.publish(SLOT_BLOCK, page as u64);
    }
    dsm.barrier(BARRIER_BASE)?;
    let page = dsm.lookup(SLOT_BLOCK) as usize;
    let mine = page + dsm.id() as usize * (PAGE_SIZE / 2);
    let mut figures = HoldFigures {
        id: dsm.id(),
        ..HoldFigures::default()
    };
    for (round, at) in [(1u32, page), (2, mine)] {
        let word = DsmAtomic::<u64>::attach(&dsm, at)?;
        dsm.barrier(BARRIER_BASE + round)?;
        let faults = dsm.stats().write_faults;
        let start = Instant::now();
        let mut writes = 0u64;
        while start.elapsed() < duration {
            for _ in 0..16 {
                word.store(writes, std::sync::atomic::Ordering::Relaxed);
                writes += 1;
            }
            // Two writers spinning on a small host would starve the threads that move the
            // page (readers, fault service, the Δt clock): let them run when they can.
            std::thread::yield_now();
        }
        let run = HoldRun {
            writes,
            arrivals: dsm.stats().write_faults - faults,
            secs: start.elapsed().as_secs_f64(),
        };
        if round == 1 {
            figures.true_sharing = run;
        } else {
            figures.false_sharing = run;
        }
    }
    dsm.barrier(BARRIER_BASE + 10)?;
    dsm.leave()?;
    Ok(figures)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::figures_line::FiguresLine;

    #[test]
    fn figure_lines_round_trip() {
        let f = EvictionFigures {
            read_miss_us: 100.0,
            dropped_copy_us: 50.0,
            passed_ownership_us: 51.0,
            handed_off_us: 120.0,
            written_back_us: 60.0,
            page_in_us: 70.0,
            as_meant: 1.0,
        };
        assert_eq!(
            EvictionFigures::find_in(&format!("x\n{}\n", f.to_line())),
            Some(f)
        );
        let h = HoldFigures {
            id: 1,
            true_sharing: HoldRun {
                writes: 10,
                arrivals: 3,
                secs: 0.5,
            },
            false_sharing: HoldRun {
                writes: 20,
                arrivals: 4,
                secs: 0.25,
            },
        };
        assert_eq!(HoldFigures::find_in(&h.to_line()), Some(h));
        assert_eq!(HoldFigures::find_in("memlink-dsm-hold-bench id=1"), None);
        let p = PagerFigures {
            bytes: 1 << 30,
            rounds: 5,
            mmap_secs: 0.25,
            pager_secs: 0.5,
            ratio_median: 0.5,
            ratio_min: 0.25,
            ratio_max: 0.75,
            cpu_ratio_median: 0.625,
            cpu_ratio_min: 0.5,
            cpu_ratio_max: 1.5,
        };
        assert_eq!(
            PagerFigures::find_in(&format!("x\n{}\n", p.to_line())),
            Some(p)
        );
        assert_eq!(
            PagerFigures::find_in("memlink-dsm-pager-bench bytes=1"),
            None
        );
    }
}

/// Sequential read of a file through the file pager against a plain `mmap` of it, both from a
/// warm page cache, in one node process, alternately, [`PAGER_ROUNDS`] times (see
/// [`run_pager_node`]).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct PagerFigures {
    /// Bytes read per round.
    pub bytes: u64,
    /// Rounds (each a plain read, then a read through the pager).
    pub rounds: u32,
    /// Median seconds of the rounds to map the file and read it (a fresh mapping; an
    /// earlier read warmed the page cache).
    pub mmap_secs: f64,
    /// Median seconds of the rounds to read the region the file pager supplies (every page
    /// paged in from the node's store, i.e. a `data_request`, read ahead).
    pub pager_secs: f64,
    /// Median over the rounds of each round's throughput through the pager against its
    /// plain read (`mmap_secs / pager_secs` of the same round).
    pub ratio_median: f64,
    /// The lowest of those ratios.
    pub ratio_min: f64,
    /// The highest of those ratios.
    pub ratio_max: f64,
    /// Median over the rounds of the CPU time (all the process's threads, user and system)
    /// of the plain read against that of the read through the pager: the cost per byte,
    /// which a shared machine's load distorts less than the elapsed time.
    pub cpu_ratio_median: f64,
    /// The lowest of those CPU-time ratios.
    pub cpu_ratio_min: f64,
    /// The highest of those CPU-time ratios.
    pub cpu_ratio_max: f64,
}

/// Rounds of the pager bench: the plain read and the read through the pager alternate, so
/// that both see the same load on a shared machine.
pub const PAGER_ROUNDS: u32 = 5;

const PAGER_PREFIX: &str = "memlink-dsm-pager-bench";

impl PagerFigures {
    /// One line for the launcher.
    pub fn to_line(&self) -> String {
        format!(
            "{PAGER_PREFIX} bytes={} rounds={} mmap_secs={:.6} pager_secs={:.6} \
             ratio_median={:.4} ratio_min={:.4} ratio_max={:.4} cpu_ratio_median={:.4} \
             cpu_ratio_min={:.4} cpu_ratio_max={:.4}",
            self.bytes,
            self.rounds,
            self.mmap_secs,
            self.pager_secs,
            self.ratio_median,
            self.ratio_min,
            self.ratio_max,
            self.cpu_ratio_median,
            self.cpu_ratio_min,
            self.cpu_ratio_max
        )
    }

    /// The figures in a node's output, if it printed them.
    pub fn find_in(output: &str) -> Option<PagerFigures> {
        let rest = output
            .lines()
            .find_map(|l| l.trim().strip_prefix(PAGER_PREFIX))?;
        let mut f = PagerFigures::default();
        let mut seen = 0;
        for field in rest.split_whitespace() {
            let (k, v) = field.split_once('=')?;
            match k {
                "bytes" => f.bytes = v.parse().ok()?,
                "rounds" => f.rounds = v.parse().ok()?,
                "mmap_secs" => f.mmap_secs = v.parse().ok()?,
                "pager_secs" => f.pager_secs = v.parse().ok()?,
                "ratio_median" => f.ratio_median = v.parse().ok()?,
                "ratio_min" => f.ratio_min = v.parse().ok()?,
                "ratio_max" => f.ratio_max = v.parse().ok()?,
                "cpu_ratio_median" => f.cpu_ratio_median = v.parse().ok()?,
                "cpu_ratio_min" => f.cpu_ratio_min = v.parse().ok()?,
                "cpu_ratio_max" => f.cpu_ratio_max = v.parse().ok()?,
                _ => return None,
            }
            seen += 1;
        }
        (seen == 10).then_some(f)
    }
}

/// CPU seconds this process has used so far, all its threads, user and system (0 if the
/// kernel does not say).
fn process_cpu_secs() -> f64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes one `rusage` into the buffer, which holds one.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) } != 0 {
        return 0.0;
    }
    // SAFETY: zeroed, then filled by the successful call.
    let usage = unsafe { usage.assume_init() };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

/// The median, the lowest and the highest of `v` (zeros when empty).
fn spread(mut v: Vec<f64>) -> (f64, f64, f64) {
    let median = median_us(&mut v);
    (
        median,
        v.first().copied().unwrap_or(0.0),
        v.last().copied().unwrap_or(0.0),
    )
}

/// A sum of the `len` bytes at `src`, 8 at a time, each page copied out first (what a
/// sequential reader of a file does with it).
///
/// # Safety
/// `src..src + len` must stay mapped and readable (or served by a fault backend) for the
/// call, and only ever change a whole page at a time.
unsafe fn checksum(src: *const u8, len: usize) -> u64 {
    let mut page = [0u8; PAGE_SIZE];
    let mut sum = 0u64;
    let mut at = 0;
    while at < len {
        let n = PAGE_SIZE.min(len - at);
        // SAFETY: the caller keeps the range readable; `page` is a distinct local buffer.
        unsafe { std::ptr::copy_nonoverlapping(src.add(at), page.as_mut_ptr(), n) };
        page[n..].fill(0);
        for w in page.chunks_exact(8) {
            sum = sum.wrapping_add(u64::from_le_bytes(w.try_into().unwrap_or([0; 8])));
        }
        at += n;
    }
    sum
}

/// One node (`config`: a cluster of 1, with a memory budget) reads the file at `path`
/// sequentially, [`PAGER_ROUNDS`] times each way, alternately: through a plain mmap (a first
/// mapping warms the page cache, each round maps the file afresh), then through the region,
/// whose pages a [`crate::pager::FilePager`] supplies (each round reads every page from the
/// store again: the budget holds a small part of the file). Every sum must agree.
pub fn run_pager_node(
    config: NodeConfig,
    backend: Backend,
    path: &std::path::Path,
) -> Result<PagerFigures, DsmError> {
    let file = std::fs::File::open(path)?;
    let map = || {
        // SAFETY: a private read-only view of a file this bench made and nobody writes while
        // it runs; it is read through the slice only within this function.
        unsafe { memmap2::Mmap::map(&file) }
    };
    let plain = map()?;
    let len = plain.len();
    // SAFETY: `plain` maps `len` readable bytes for the call.
    let warm = unsafe { checksum(plain.as_ptr(), len) };
    drop(plain);
    let pager = crate::pager::FilePager::open(path, 0, None, crate::apps::wordcount::FIRST_PAGE)
        .map_err(|e| DsmError::Config(e.to_string()))?;
    let dsm = Dsm::join_with_store(
        config,
        backend,
        Box::new(crate::pager::PagerStore::new(pager)),
    )?;
    let base = crate::apps::wordcount::FIRST_PAGE as usize * PAGE_SIZE;
    if base + len > dsm.len() {
        return Err(DsmError::Config(
            "the region is smaller than the file".into(),
        ));
    }
    let (mut mmap_secs, mut pager_secs, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    let mut cpu_ratios = Vec::new();
    for _ in 0..PAGER_ROUNDS {
        let cpu = process_cpu_secs();
        let t = Instant::now();
        let plain = map()?;
        // SAFETY: as above.
        let sum = std::hint::black_box(unsafe { checksum(plain.as_ptr(), len) });
        drop(plain);
        let plain_secs = t.elapsed().as_secs_f64();
        let plain_cpu = process_cpu_secs() - cpu;
        if sum != warm {
            return Err(DsmError::Protocol(
                "the file changed while it was read".into(),
            ));
        }
        let cpu = process_cpu_secs();
        let t = Instant::now();
        // SAFETY: `base..base + len` lies inside the region (checked above), mapped for the
        // node's lifetime, its faults served; nobody writes it; a page only ever appears
        // whole.
        let through_pager =
            std::hint::black_box(unsafe { checksum(dsm.at::<u8>(base).cast_const(), len) });
        let paged_secs = t.elapsed().as_secs_f64();
        let paged_cpu = process_cpu_secs() - cpu;
        if through_pager != warm {
            return Err(DsmError::Protocol(
                "the region read through the pager differs from the file".into(),
            ));
        }
        mmap_secs.push(plain_secs);
        pager_secs.push(paged_secs);
        ratios.push(plain_secs / paged_secs);
        cpu_ratios.push(plain_cpu / paged_cpu.max(1e-9));
    }
    dsm.leave()?;
    // (median_us takes the median of samples in any unit.)
    let (ratio_median, ratio_min, ratio_max) = spread(ratios);
    let (cpu_ratio_median, cpu_ratio_min, cpu_ratio_max) = spread(cpu_ratios);
    Ok(PagerFigures {
        bytes: len as u64,
        rounds: PAGER_ROUNDS,
        mmap_secs: median_us(&mut mmap_secs),
        pager_secs: median_us(&mut pager_secs),
        ratio_median,
        ratio_min,
        ratio_max,
        cpu_ratio_median,
        cpu_ratio_min,
        cpu_ratio_max,
    })
}
