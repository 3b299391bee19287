//! The DSM benchmark behind `memlink dsm bench`: what a remote read miss, a write miss, an
//! invalidation, a lock and a barrier cost, next to the floors measured in the same run (a raw
//! TCP 4 KiB round trip between two node processes, and a fault of the backend served from
//! local memory).
//!
//! A bench cluster has at least 2 nodes. Node 0 starts as the owner of every page (as in every
//! cluster); node 1 is the prober that times each operation; the other nodes hold read copies
//! (to be invalidated) and take part in locks and barriers. [`run_node`] is the body of each
//! node process and returns the prober's medians; [`local_fault_us`] measures the local floor
//! in whichever process calls it.
//!
//! ```no_run
//! use memlink_dsm::bench::{BenchFigures, bench_pages, local_fault_us, run_node};
//! use memlink_dsm::{Backend, ManagerKind, NodeConfig};
//! # fn config(pages: u32) -> NodeConfig { unimplemented!() }
//! let iters = 200;
//! let floor = local_fault_us(Backend::Sigsegv, iters)?;
//! // In each node process of the cluster:
//! if let Some(probe) = run_node(config(bench_pages(iters)), Backend::Sigsegv, iters)? {
//!     println!("read miss {:.1} us, local fault {floor:.1} us", probe.read_miss_us);
//! }
//! # Ok::<(), memlink_dsm::DsmError>(())
//! ```

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use crate::atomic::DsmAtomic;
use crate::bench_phases::Phases;
use crate::cluster::Dsm;
use crate::fault::FaultService;
use crate::mapping::{Mapping, base_from_env};
use crate::types::{Access, Backend, DsmError, FaultResolver, LocalPages, NodeConfig, PAGE_SIZE};
use crate::types::{NodeId, PageNo};

/// The node that times the operations.
pub const PROBER: NodeId = 1;
/// The first lock id the bench uses (application locks should stay below it).
const LOCK_BASE: u32 = 1 << 20;
/// The first barrier id the bench uses.
const BARRIER_BASE: u32 = 1 << 20;
/// Directory slots: the block of probe pages and the raw TCP echo port.
const SLOT_BLOCK: usize = 1;
const SLOT_ECHO_PORT: usize = 2;

/// Pages one prefetch sample fetches.
pub const PREFETCH_PAGES: usize = 8;

/// Fresh pages per iteration: a read miss, a write miss, an invalidation and one prefetch.
const PAGES_PER_ITER: usize = 3 + PREFETCH_PAGES;

/// The region size (in pages) a bench cluster of `iters` iterations needs: fresh pages for
/// every sample (see `PAGES_PER_ITER`) plus the directory.
pub fn bench_pages(iters: usize) -> u32 {
    (PAGES_PER_ITER * iters + 2) as u32
}

/// The prober's medians, in microseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct BenchFigures {
    /// A raw TCP round trip of 4 KiB each way between node 1 and node 0 (both processes).
    pub tcp_4k_rtt_us: f64,
    /// A read of a page whose only copy is at another node.
    pub read_miss_us: f64,
    /// A write to a page this node has no copy of (ownership and data move here).
    pub write_miss_us: f64,
    /// A write to a page this node and every other node hold a read copy of: the other
    /// `nodes - 1` copies are invalidated.
    pub invalidation_us: f64,
    /// Acquire + release of a lock that another node acquired and released last, nobody
    /// waiting.
    pub lock_free_us: f64,
    /// Acquire + release of one lock that every node hammers at once.
    pub lock_contended_us: f64,
    /// One barrier of every node.
    pub barrier_us: f64,
    /// A prefetch of [`PREFETCH_PAGES`] pages whose only copies are at another node, for
    /// reading, in one call (compare with that many read misses one after another).
    pub prefetch_8_pages_us: f64,
}

crate::figures_line!(
    BenchFigures,
    "memlink-dsm-bench",
    [
        tcp_4k_rtt_us,
        read_miss_us,
        write_miss_us,
        invalidation_us,
        lock_free_us,
        lock_contended_us,
        barrier_us,
        prefetch_8_pages_us,
    ]
);

/// The median of `samples` in microseconds (0 for none).
pub fn median_us(samples: &mut [f64]) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

fn elapsed_us(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e6
}

/// The byte the bench probes at `offset` (in the block node 0 allocated for it).
fn probe_byte(dsm: &Dsm, offset: usize) -> Result<DsmAtomic<'_, u8>, DsmError> {
    DsmAtomic::attach(dsm, offset)
}

/// Joins the bench cluster described by `config` (whose `pages` must be at least
/// [`bench_pages`]`(iters)`), runs every measurement with `iters` samples each and leaves.
/// Returns the figures on the prober (node 1), `None` on the other nodes.
pub fn run_node(
    config: NodeConfig,
    backend: Backend,
    iters: usize,
) -> Result<Option<BenchFigures>, DsmError> {
    if config.peers.len() < 2 {
        return Err(DsmError::Config(
            "the DSM bench needs at least 2 nodes (a remote miss needs another node)".into(),
        ));
    }
    if iters == 0 || (config.pages as usize) < bench_pages(iters) as usize {
        return Err(DsmError::Config(format!(
            "{iters} iterations need at least {} pages, the cluster has {}",
            bench_pages(iters),
            config.pages
        )));
    }
    // The raw TCP echo runs at node 0's own address, so that on real hosts it crosses the
    // same network as the DSM's messages.
    let node0 = config.peers[0].ip();
    let dsm = Dsm::join(config, backend)?;
    let figures = measure(&dsm, iters, node0)?;
    dsm.leave()?;
    Ok(figures)
}

fn measure(dsm: &Dsm, iters: usize, node0: IpAddr) -> Result<Option<BenchFigures>, DsmError> {
    let id = dsm.id();
    let nodes = dsm.nodes();
    let prober = id == PROBER;
    let mut echo = None;
    if id == 0 {
        let listener = TcpListener::bind((node0, 0))?;
        dsm.publish(SLOT_ECHO_PORT, listener.local_addr()?.port() as u64);
        echo = Some(std::thread::spawn(move || echo_4k(listener)));
    }
    let mut phases = Phases::new(dsm, BARRIER_BASE);
    let block = phases.shared_block(SLOT_BLOCK, PAGES_PER_ITER * iters)?;
    let page = |i: usize| block + i * PAGE_SIZE;
    let mut f = BenchFigures::default();

    // Read misses (pages 0..iters, owned by node 0, never touched here), each right after a
    // raw 4 KiB TCP round trip between this process and node 0's: the floor and the miss are
    // sampled alternately, so that whatever else the host runs weighs on both alike.
    if prober {
        let port = dsm.lookup(SLOT_ECHO_PORT) as u16;
        let mut tcp = RoundTrips::connect(SocketAddr::new(node0, port))?;
        let (mut rtt, mut miss) = (Vec::with_capacity(iters), Vec::with_capacity(iters));
        for i in 0..iters {
            rtt.push(tcp.sample()?);
            let byte = probe_byte(dsm, page(i))?;
            let t = Instant::now();
            let v = byte.load(Ordering::SeqCst);
            miss.push(elapsed_us(t));
            std::hint::black_box(v);
        }
        f.tcp_4k_rtt_us = median_us(&mut rtt);
        f.read_miss_us = median_us(&mut miss);
    }
    phases.next()?;
    if let Some(echo) = echo.take() {
        let _ = echo.join();
    }

    // Write misses: pages iters..2*iters, owned by node 0, never touched here.
    if prober {
        let mut s = Vec::with_capacity(iters);
        for i in iters..2 * iters {
            let byte = probe_byte(dsm, page(i))?;
            let t = Instant::now();
            byte.store(1, Ordering::SeqCst);
            s.push(elapsed_us(t));
        }
        f.write_miss_us = median_us(&mut s);
    }
    phases.next()?;

    // Invalidations: every node reads pages 2*iters..3*iters, then the prober writes them.
    for i in 2 * iters..3 * iters {
        std::hint::black_box(probe_byte(dsm, page(i))?.load(Ordering::SeqCst));
    }
    phases.next()?;
    if prober {
        let mut s = Vec::with_capacity(iters);
        for i in 2 * iters..3 * iters {
            let byte = probe_byte(dsm, page(i))?;
            let t = Instant::now();
            byte.store(2, Ordering::SeqCst);
            s.push(elapsed_us(t));
        }
        f.invalidation_us = median_us(&mut s);
    }
    phases.next()?;

    // Prefetches: pages 3*iters.., owned by node 0, never touched here, PREFETCH_PAGES at a
    // time in one call.
    if prober {
        let mut s = Vec::with_capacity(iters);
        for i in 0..iters {
            let first = page(3 * iters + i * PREFETCH_PAGES);
            let t = Instant::now();
            dsm.prefetch(&[(first..first + PREFETCH_PAGES * PAGE_SIZE, Access::Read)])?;
            s.push(elapsed_us(t));
        }
        f.prefetch_8_pages_us = median_us(&mut s);
    }
    phases.next()?;

    // Uncontended locks held last elsewhere: node 0 takes and drops lock i, then the prober
    // does. Node 0 manages each of them.
    let lock_of = |i: usize| bench_lock(i, nodes);
    if id == 0 {
        for i in 0..iters {
            dsm.lock(lock_of(i))?;
            dsm.unlock(lock_of(i))?;
        }
    }
    phases.next()?;
    if prober {
        let mut s = Vec::with_capacity(iters);
        for i in 0..iters {
            let t = Instant::now();
            dsm.lock(lock_of(i))?;
            dsm.unlock(lock_of(i))?;
            s.push(elapsed_us(t));
        }
        f.lock_free_us = median_us(&mut s);
    }
    phases.next()?;

    // A contended lock: every node takes and drops the same lock `iters` times.
    let contended = lock_of(iters);
    let mut s = Vec::with_capacity(iters);
    for _ in 0..iters {
        let t = Instant::now();
        dsm.lock(contended)?;
        dsm.unlock(contended)?;
        s.push(elapsed_us(t));
    }
    f.lock_contended_us = median_us(&mut s);
    phases.next()?;

    // Barriers of every node.
    let mut s = Vec::with_capacity(iters);
    for _ in 0..iters {
        let t = Instant::now();
        phases.next()?;
        s.push(elapsed_us(t));
    }
    f.barrier_us = median_us(&mut s);
    Ok(prober.then_some(f))
}

/// The bench's lock number `i` in a cluster of `nodes`: a multiple of `nodes`, so that node 0
/// manages it (a lock's manager is `lock % nodes`) and the prober's requests cross the network.
fn bench_lock(i: usize, nodes: usize) -> u32 {
    ((LOCK_BASE as usize).next_multiple_of(nodes) + i * nodes) as u32
}

/// Echoes 4 KiB messages until the peer closes.
fn echo_4k(listener: TcpListener) {
    let Ok((mut s, _)) = listener.accept() else {
        return;
    };
    let _ = s.set_nodelay(true);
    let mut buf = vec![0u8; PAGE_SIZE];
    while s.read_exact(&mut buf).is_ok() {
        if s.write_all(&buf).is_err() {
            return;
        }
    }
}

/// A TCP connection to the echo server, for timing 4 KiB round trips.
struct RoundTrips {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl RoundTrips {
    /// Connects (TCP_NODELAY) and warms the connection up with a few round trips.
    fn connect(addr: SocketAddr) -> Result<RoundTrips, DsmError> {
        let stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        let mut rt = RoundTrips {
            stream,
            buf: vec![1u8; PAGE_SIZE],
        };
        for _ in 0..10 {
            rt.sample()?;
        }
        Ok(rt)
    }

    /// One timed 4 KiB round trip, in microseconds.
    fn sample(&mut self) -> Result<f64, DsmError> {
        let t = Instant::now();
        self.stream.write_all(&self.buf)?;
        self.stream.read_exact(&mut self.buf)?;
        Ok(elapsed_us(t))
    }
}

/// Serves every fault from a page of bytes in memory: a fault's cost with no network.
struct LocalResolver {
    mapping: Arc<Mapping>,
    contents: Vec<u8>,
}

impl FaultResolver for LocalResolver {
    fn resolve_fault(&self, page: PageNo, access: Access) -> Result<(), DsmError> {
        if self.mapping.access(page) < access {
            self.mapping.install_page(page, &self.contents, access)?;
        }
        Ok(())
    }
}

/// The median cost of a read fault of `backend` served locally (the page installed from
/// memory, read-only), over `iters` fresh pages, in microseconds. It maps its own region at
/// the cluster's base, so call it in a process that has not joined a cluster (or after
/// leaving).
pub fn local_fault_us(backend: Backend, iters: usize) -> Result<f64, DsmError> {
    local_fault_samples(backend, iters).map(|mut s| median_us(&mut s))
}

/// The `iters` samples behind [`local_fault_us`], in microseconds.
pub fn local_fault_samples(backend: Backend, iters: usize) -> Result<Vec<f64>, DsmError> {
    let base = base_from_env().map_err(|e| DsmError::Config(e.to_string()))?;
    let pages = iters.max(1) as u32;
    let mapping =
        Mapping::create(base, pages, backend).map_err(|e| DsmError::Config(e.to_string()))?;
    let resolver = Arc::new(LocalResolver {
        mapping: mapping.clone(),
        contents: vec![7u8; PAGE_SIZE],
    });
    let service = FaultService::start(mapping.clone(), resolver)
        .map_err(|e| DsmError::Config(e.to_string()))?;
    let mut s = Vec::with_capacity(iters);
    for p in 0..pages as usize {
        let ptr = mapping.base().wrapping_add(p * PAGE_SIZE + 64);
        let t = Instant::now();
        // SAFETY: the page lies inside the region just mapped (p < pages); the fault service
        // makes it readable before the read completes.
        let v = unsafe { std::ptr::read_volatile(ptr) };
        s.push(elapsed_us(t));
        std::hint::black_box(v);
    }
    drop(service);
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::figures_line::FiguresLine;

    #[test]
    fn figure_lines_round_trip() {
        let f = BenchFigures {
            tcp_4k_rtt_us: 20.5,
            read_miss_us: 40.25,
            write_miss_us: 41.0,
            invalidation_us: 60.0,
            lock_free_us: 50.0,
            lock_contended_us: 90.0,
            barrier_us: 30.0,
            prefetch_8_pages_us: 70.0,
        };
        let text = format!("noise\n{}\n", f.to_line());
        assert_eq!(BenchFigures::find_in(&text), Some(f));
        assert_eq!(
            BenchFigures::parse_line("memlink-dsm-bench read_miss_us=1"),
            None
        );
        assert_eq!(median_us(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median_us(&mut []), 0.0);
    }

    #[test]
    fn bench_locks_are_managed_by_node_0() {
        for nodes in 2..=9 {
            for i in [0, 1, 7, 500] {
                let lock = bench_lock(i, nodes);
                assert_eq!(
                    crate::sync::manager_of(lock, nodes),
                    0,
                    "{nodes} nodes, lock {i}"
                );
            }
        }
    }
}
