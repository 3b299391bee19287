// A shareable struct with an atomic inside has interior mutability too: no `&Counter`
// from a read guard.
use memlink_capability::Shareable;
use memlink_capability::capability::{Capability, Rights};
use memlink_capability::segment::Segment;
use std::sync::atomic::{AtomicU64, Ordering};

#[repr(C)]
struct Counter {
    hits: AtomicU64,
}

// SAFETY: repr(C), one atomic: valid for any bytes, no process-local handles.
unsafe impl Shareable for Counter {}

fn main() {
    let seg = Segment::create("ui", 4096).unwrap();
    let cap = Capability::<Counter>::mint(&seg, 0, Rights::READ).unwrap();
    let guard = cap.acquire().unwrap();
    let counter: &Counter = &guard;
    counter.hits.fetch_add(1, Ordering::Relaxed);
}
