//! Acquire and release of a capability whose object is already here, local
//! (memlink-capability: map and unmap the object) against across nodes (memlink-dsm: the
//! DSM capability of a one-node cluster whose pages are present; the guard withdraws the
//! page's access on release and gives it back on acquire, without messages). The issue asks
//! the DSM one to stay within 2x of the local one; compare the two lines of one run.
//!
//! - `capability/acquire_release/local`: `Capability::acquire` + drop, one page object.
//! - `capability/acquire_release/dsm`: `DsmCapability::acquire` + drop, one page object.

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use std::hint::black_box;
use std::net::TcpListener;

use criterion::{Criterion, criterion_group, criterion_main};
use memlink::capability::capability::{Capability, Rights};
use memlink::capability::segment::Segment;
use memlink::dsm::admission::Admission;
use memlink::dsm::capability::DsmCapability;
use memlink::dsm::cluster::Dsm;
use memlink::dsm::mapping::DEFAULT_BASE;
use memlink::dsm::{Backend, NodeConfig};

type Table = [u64; 512];

fn one_node() -> Dsm {
    let addr = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port");
    let config = NodeConfig::builder(0, vec![addr])
        .listen(addr)
        .pages(16)
        .admission(Admission::LoopbackOnly)
        .build()
        .expect("config");
    Dsm::join_at(config, Backend::Sigsegv, DEFAULT_BASE + 5 * (1 << 30)).expect("join")
}

fn acquire_release(c: &mut Criterion) {
    let mut g = c.benchmark_group("capability/acquire_release");
    let seg = Segment::create("bench-cap", 2 * 4096).expect("segment");
    let local = Capability::<Table>::mint(&seg, 4096, Rights::ALL).expect("mint");
    g.bench_function("local", |b| {
        b.iter(|| {
            let guard = local.acquire().expect("acquire");
            black_box(guard[3])
        })
    });
    let dsm = one_node();
    let cap = DsmCapability::mint(&dsm, [7u64; 512]).expect("mint");
    g.bench_function("dsm", |b| {
        b.iter(|| {
            let guard = cap.acquire().expect("acquire");
            black_box(guard[3])
        })
    });
    g.finish();
    drop(cap);
    dsm.leave().expect("leave");
}

criterion_group!(benches, acquire_release);
criterion_main!(benches);
