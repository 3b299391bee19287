// A READ capability's guard used to dereference to `&AtomicU64`; this store then faulted.
use memlink_capability::capability::{Capability, Rights};
use memlink_capability::segment::Segment;
use std::sync::atomic::{AtomicU64, Ordering};

fn main() {
    let seg = Segment::create("ui", 4096).unwrap();
    let cap = Capability::<AtomicU64>::mint(&seg, 0, Rights::READ).unwrap();
    cap.acquire().unwrap().store(1, Ordering::Relaxed);
}
