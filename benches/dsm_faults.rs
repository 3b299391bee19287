//! The cost of one page fault served locally, per fault backend.

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]
//!
//! - `dsm_fault/read/{sigsegv,uffd}`: a read of a page without access; the resolver installs a
//!   read-only copy from memory (sigsegv: fill view copy + mprotect; uffd: UFFDIO_COPY with
//!   write protection).
//! - `dsm_fault/write/{sigsegv,uffd}`: a write to a read-only page; the resolver upgrades it
//!   (sigsegv: mprotect; uffd: UFFDIO_WRITEPROTECT off).
//! - `dsm_fault/touch_mapped`: the same read on a page that is already readable: the floor.
//!
//! Only the faulting access is timed; re-protecting the pages between rounds is not. No network:
//! this is the backend's own cost, the `local_fault_us` floor of a remote miss.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, criterion_group, criterion_main};
use memlink::dsm::fault::FaultService;
use memlink::dsm::mapping::{DEFAULT_BASE, Mapping};
use memlink::dsm::{Access, Backend, DsmError, FaultResolver, LocalPages, PAGE_SIZE, PageNo};

const PAGES: u32 = 256;

/// Serves every fault from a page of bytes in memory, as node-local as it gets.
struct LocalResolver {
    mapping: Arc<Mapping>,
    contents: Vec<u8>,
}

impl FaultResolver for LocalResolver {
    fn resolve_fault(&self, page: PageNo, access: Access) -> Result<(), DsmError> {
        let now = self.mapping.access(page);
        if now >= access {
            return Ok(());
        }
        if now == Access::None {
            self.mapping.install_page(page, &self.contents, access)?;
        } else {
            self.mapping.set_access(page, access)?;
        }
        Ok(())
    }
}

fn setup(slot: usize, backend: Backend) -> (Arc<Mapping>, FaultService) {
    let mapping = Mapping::create(DEFAULT_BASE + slot * (1 << 30), PAGES, backend).expect("map");
    let resolver = Arc::new(LocalResolver {
        mapping: mapping.clone(),
        contents: vec![7u8; PAGE_SIZE],
    });
    let service = FaultService::start(mapping.clone(), resolver).expect("fault service");
    (mapping, service)
}

fn read(mapping: &Mapping, page: u32) -> u8 {
    // SAFETY: the page is inside the region; the fault backend makes it readable.
    unsafe { std::ptr::read_volatile(mapping.base().add(page as usize * PAGE_SIZE + 64)) }
}

fn write(mapping: &Mapping, page: u32) {
    // SAFETY: the page is inside the region; the fault backend makes it writable.
    unsafe { std::ptr::write_volatile(mapping.base().add(page as usize * PAGE_SIZE + 64), 9) }
}

/// A read whose value the optimiser must keep.
fn read_kept(mapping: &Mapping, page: u32) {
    std::hint::black_box(read(mapping, page));
}

/// Adds benchmark `name` to `group`: `access` on every page after `prepare` (see `timed`).
fn bench_access(
    group: &mut BenchmarkGroup<'_, WallTime>,
    name: String,
    mapping: &Mapping,
    prepare: impl Fn(&Mapping, u32),
    access: impl Fn(&Mapping, u32),
) {
    group.bench_function(name, |b| {
        b.iter_custom(|iters| timed(mapping, iters, &prepare, &access))
    });
}

/// Times `access` on every page after `prepare` set every page up (untimed), batch by batch.
fn timed(
    mapping: &Mapping,
    iters: u64,
    prepare: impl Fn(&Mapping, u32),
    access: impl Fn(&Mapping, u32),
) -> Duration {
    let mut total = Duration::ZERO;
    let mut done = 0;
    while done < iters {
        let batch = (iters - done).min(PAGES as u64) as u32;
        for p in 0..batch {
            prepare(mapping, p);
        }
        let start = Instant::now();
        for p in 0..batch {
            access(mapping, p);
        }
        total += start.elapsed();
        done += batch as u64;
    }
    total
}

fn faults(c: &mut Criterion) {
    let mut g = c.benchmark_group("dsm_fault");
    g.measurement_time(Duration::from_secs(3));
    for (slot, backend) in [(0, Backend::Sigsegv), (1, Backend::Uffd)] {
        let (mapping, _service) = setup(slot, backend);
        bench_access(
            &mut g,
            format!("read/{backend}"),
            &mapping,
            |m, p| m.set_access(p, Access::None).expect("invalidate"),
            read_kept,
        );
        bench_access(
            &mut g,
            format!("write/{backend}"),
            &mapping,
            |m, p| {
                if m.access(p) == Access::None {
                    read(m, p);
                } else {
                    m.set_access(p, Access::Read).expect("downgrade");
                }
            },
            write,
        );
        if backend == Backend::Sigsegv {
            bench_access(
                &mut g,
                "touch_mapped".to_owned(),
                &mapping,
                |m, p| {
                    if m.access(p) == Access::None {
                        read(m, p);
                    }
                },
                read_kept,
            );
        }
    }
    g.finish();
}

criterion_group!(benches, faults);
criterion_main!(benches);
