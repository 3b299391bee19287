// Control for the compile-fail cases: this one fails only on its last line, proving
// that reading through the read-only guard (load, and deref of a plain u64) compiles.
use memlink_capability::capability::{Capability, Rights};
use memlink_capability::segment::Segment;
use std::sync::atomic::{AtomicU64, Ordering};

fn main() {
    let seg = Segment::create("ui", 4096).unwrap();
    let atomic = Capability::<AtomicU64>::mint(&seg, 0, Rights::READ).unwrap();
    let _: u64 = atomic.acquire().unwrap().load(Ordering::Relaxed);
    let plain = Capability::<u64>::mint(&seg, 8, Rights::READ).unwrap();
    let _: u64 = *plain.acquire().unwrap();
    let writer = Capability::<AtomicU64>::mint(&seg, 0, Rights::ALL).unwrap();
    writer.acquire_write().unwrap().store(1, Ordering::Relaxed);
    compile_error!("everything above compiled");
}
