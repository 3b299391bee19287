//! Costs of the shared-reference schemes.

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]
//!
//! - `scheme2/plain_deref` vs `scheme2/resolve_deref`: summing 1024 u64 values reached
//!   through plain pointers vs through (segment id, offset) references translated by a
//!   TranslationTable (4 segments). Target: resolve within 2x of the plain deref.
//! - `scheme2_list/plain_pointer_walk` vs `scheme2_list/shared_ref_walk`: walking a
//!   1024-node linked list whose links are plain pointers vs shared references
//!   (latency-bound: every hop waits for the previous load).
//! - `capability/acquire_release_mapped`: acquire + release of a capability whose object
//!   is already mapped (another guard is held), against `capability/mutex_baseline`, an
//!   uncontended std Mutex lock + unlock. Target: under 100 ns.
//! - `capability/acquire_release_unmapped`: the same when each acquire maps and each
//!   release unmaps (mmap + munmap), for scale.

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use memlink::capability::capability::{Capability, Rights};
use memlink::capability::segment::Segment;
use memlink::capability::shared_ref::{SharedRef, TranslationTable};

const N: usize = 1024;
const SEGMENTS: usize = 4;

fn scheme2(c: &mut Criterion) {
    let mut table = TranslationTable::new();
    let mut ptrs: Vec<*const u64> = Vec::with_capacity(N);
    let mut refs: Vec<SharedRef> = Vec::with_capacity(N);
    let mut ids = Vec::new();
    for k in 0..SEGMENTS {
        let seg = Segment::create(&format!("bench-{k}"), N / SEGMENTS * 64).unwrap();
        ids.push((seg.id(), seg.payload_ptr()));
        table.insert(seg).unwrap();
    }
    for i in 0..N {
        let (id, base) = ids[i % SEGMENTS];
        // One value per cache line, so both variants touch the same lines.
        let offset = (i / SEGMENTS) * 64;
        // SAFETY: offset + 8 <= N / SEGMENTS * 64, inside the read-write payload.
        unsafe { (base.add(offset) as *mut u64).write(i as u64) };
        ptrs.push(base.wrapping_add(offset) as *const u64);
        refs.push(SharedRef::new(id, offset as u32));
    }
    let mut g = c.benchmark_group("scheme2");
    g.throughput(Throughput::Elements(N as u64));
    g.bench_function("plain_deref", |b| {
        b.iter(|| {
            let mut sum = 0u64;
            for &p in black_box(&ptrs) {
                // SAFETY: every pointer points at an initialised u64 in a live segment.
                sum = sum.wrapping_add(unsafe { p.read() });
            }
            sum
        })
    });
    g.bench_function("resolve_deref", |b| {
        b.iter(|| {
            let mut sum = 0u64;
            for &r in black_box(&refs) {
                let p = table.resolve::<u64>(r).unwrap();
                // SAFETY: resolve checked the bounds in a segment the table owns.
                sum = sum.wrapping_add(unsafe { p.read() });
            }
            sum
        })
    });
    g.finish();

    // A linked list through the same values: each step's address depends on the last
    // load, so this measures latency, where translation adds to every hop.
    // Node i links to node (i * 389 + 1) % N: one cycle through all N nodes.
    let link = |i: usize| (i * 389 + 1) % N;
    for i in 0..N {
        // SAFETY: slot i is an initialised u64 in a live read-write segment.
        unsafe { (ptrs[i] as *mut u64).write(ptrs[link(i)] as u64) };
    }
    let mut g = c.benchmark_group("scheme2_list");
    g.throughput(Throughput::Elements(N as u64));
    g.bench_function("plain_pointer_walk", |b| {
        b.iter(|| {
            let mut p = black_box(ptrs[0]);
            for _ in 0..N {
                // SAFETY: every slot holds the address of another slot (set above).
                p = unsafe { p.read() } as *const u64;
            }
            p
        })
    });
    // The same list with its links stored as shared references.
    for i in 0..N {
        let p = table.resolve::<u64>(refs[i]).unwrap();
        // SAFETY: resolve checked bounds; the slot is a u64 in a read-write segment.
        unsafe { p.write(refs[link(i)].raw()) };
    }
    g.bench_function("shared_ref_walk", |b| {
        b.iter(|| {
            let mut r = black_box(refs[0]);
            for _ in 0..N {
                let p = table.resolve::<u64>(r).unwrap();
                // SAFETY: resolve checked the bounds in a segment the table owns.
                r = SharedRef::from_raw(unsafe { p.read() });
            }
            r
        })
    });
    g.finish();
}

fn capability(c: &mut Criterion) {
    let seg = Segment::create("bench-cap", 4096).unwrap();
    let cap = Capability::<AtomicU64>::mint(&seg, 0, Rights::ALL).unwrap();
    let mut g = c.benchmark_group("capability");
    let lock = std::sync::Mutex::new(0u64);
    g.bench_function("mutex_baseline", |b| {
        b.iter(|| {
            let v = lock.lock().unwrap();
            black_box(*v)
        })
    });
    {
        let _keep_mapped = cap.acquire().unwrap();
        g.bench_function("acquire_release_mapped", |b| {
            b.iter(|| {
                let guard = cap.acquire().unwrap();
                black_box(guard.load(Ordering::Relaxed))
            })
        });
    }
    g.bench_function("acquire_release_unmapped", |b| {
        b.iter(|| {
            let guard = cap.acquire().unwrap();
            black_box(guard.load(Ordering::Relaxed))
        })
    });
    g.finish();
}

fn quick() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30)
}

criterion_group! {
    name = benches;
    config = quick();
    targets = scheme2, capability
}
criterion_main!(benches);
