//! Scheme 3 across processes: a capability passed along three processes with restrict
//! and revoke, a read-only capability whose write faults in a child, a child killed
//! while holding a capability, and nothing left behind in /dev/shm.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::child_process::{dev_shm_entries, fork_child, isolated, kill9, wait_child};
use memlink_capability::capability::{AcquireError, Capability, RestrictError, Rights};
use memlink_capability::capability_transfer::{SendCapError, recv_capability, send_capability};
use memlink_capability::segment::Segment;

fn signal_byte(mut s: &UnixStream, b: u8) {
    s.write_all(&[b]).unwrap();
}

fn await_byte(mut s: &UnixStream) -> u8 {
    // A peer that never answers fails the test instead of hanging it.
    s.set_read_timeout(Some(crate::child_process::DEADLINE))
        .expect("set a read timeout");
    let mut b = [0u8];
    s.read_exact(&mut b).unwrap();
    b[0]
}

#[test]
fn capability_passes_three_processes_with_restrict_and_revoke() {
    isolated(|| {
        let seg = Segment::create("cap-chain", 4096).unwrap();
        let cap = Capability::<AtomicU64>::mint(&seg, 128, Rights::ALL).unwrap();
        let (p0_to_p1, p1_from_p0) = UnixStream::pair().unwrap();
        let (p1_to_p2, p2_from_p1) = UnixStream::pair().unwrap();
        let (p0_ctl, p2_ctl) = UnixStream::pair().unwrap();

        // P1: receives the full capability, writes, passes on a read-only granting copy.
        let p1 = fork_child(|| {
            let cap = recv_capability::<AtomicU64>(&p1_from_p0).unwrap();
            if cap.rights() != Rights::ALL {
                return 2;
            }
            cap.acquire_write().unwrap().store(41, Ordering::Release);
            let ro = cap.restrict(Rights::READ | Rights::GRANT).unwrap();
            send_capability(&p1_to_p2, &ro).unwrap();
            0
        });
        // P2: receives the read-only copy, cannot widen it, cannot pass on a non-granting
        // copy, and after P0 revokes can no longer acquire it.
        let p2 = fork_child(|| {
            let cap = recv_capability::<AtomicU64>(&p2_from_p1).unwrap();
            if cap.rights() != Rights::READ | Rights::GRANT {
                return 2;
            }
            {
                let g = cap.acquire().unwrap();
                if g.load(Ordering::Acquire) != 41 || g.as_mut_ptr().is_some() {
                    return 3;
                }
            }
            if !matches!(
                cap.restrict(Rights::ALL),
                Err(RestrictError::Widening { .. })
            ) {
                return 4;
            }
            let read_only = cap.restrict(Rights::READ).unwrap();
            if !matches!(
                send_capability(&p2_ctl, &read_only),
                Err(SendCapError::NoGrantRight)
            ) {
                return 5;
            }
            signal_byte(&p2_ctl, b'r');
            if await_byte(&p2_ctl) != b'v' {
                return 6;
            }
            if !matches!(cap.acquire(), Err(AcquireError::Revoked)) {
                return 7;
            }
            if !matches!(read_only.acquire(), Err(AcquireError::Revoked)) {
                return 8;
            }
            0
        });
        send_capability(&p0_to_p1, &cap).unwrap();
        assert_eq!(await_byte(&p0_ctl), b'r');
        assert_eq!(cap.acquire().unwrap().load(Ordering::Acquire), 41);
        assert_eq!(seg.revoke(), Ok(2));
        signal_byte(&p0_ctl, b'v');
        assert_eq!(wait_child(p1), Ok(0));
        assert_eq!(wait_child(p2), Ok(0));
        assert!(matches!(cap.acquire(), Err(AcquireError::Revoked)));
    });
}

#[test]
fn write_through_read_only_capability_faults_in_child() {
    isolated(|| {
        let seg = Segment::create("cap-ro-fault", 4096).unwrap();
        let cap = Capability::<AtomicU64>::mint(&seg, 0, Rights::ALL).unwrap();
        cap.acquire_write().unwrap().store(7, Ordering::Relaxed);
        let (tx, rx) = UnixStream::pair().unwrap();
        let child = fork_child(|| {
            let ro = recv_capability::<AtomicU64>(&rx).unwrap();
            let g = ro.acquire().unwrap();
            if g.load(Ordering::Relaxed) != 7 {
                return 2;
            }
            // The guard refuses a write pointer; bypass it with a raw cast: the page is
            // mapped PROT_READ from a read-only descriptor, so the store must fault.
            let raw = g.as_ptr() as *mut u64;
            // SAFETY: deliberately unsound for the test: this store must kill the process
            // with SIGSEGV before it can modify anything.
            unsafe { std::ptr::write_volatile(raw, 99) };
            3
        });
        send_capability(&tx, &cap.restrict(Rights::READ | Rights::GRANT).unwrap()).unwrap();
        assert_eq!(wait_child(child), Err(libc::SIGSEGV));
        assert_eq!(cap.acquire().unwrap().load(Ordering::Relaxed), 7);
    });
}

#[test]
fn child_killed_while_holding_capability_leaves_segment_usable_and_nothing_in_dev_shm() {
    isolated(|| {
        let before = dev_shm_entries();
        let seg = Segment::create("cap-kill", 4096).unwrap();
        let cap = Capability::<AtomicU64>::mint(&seg, 64, Rights::ALL).unwrap();
        let (tx, rx) = UnixStream::pair().unwrap();
        let child = fork_child(|| {
            let cap = recv_capability::<AtomicU64>(&rx).unwrap();
            let g = cap.acquire_write().unwrap();
            g.store(1234, Ordering::Release);
            // Segments of its own, which must vanish with it.
            let _own: Vec<Segment> = (0..3)
                .map(|k| Segment::create(&format!("child-{k}"), 4096).unwrap())
                .collect();
            signal_byte(&rx, b'h');
            // Hold the guard until killed.
            await_byte(&rx);
            drop(g);
            0
        });
        send_capability(&tx, &cap).unwrap();
        assert_eq!(await_byte(&tx), b'h');
        kill9(child);
        assert_eq!(wait_child(child), Err(libc::SIGKILL));
        // The write the child made while holding the guard is there, and the capability
        // still works for us, revocation included.
        assert_eq!(cap.acquire().unwrap().load(Ordering::Acquire), 1234);
        assert_eq!(seg.revoke(), Ok(2));
        assert!(matches!(cap.acquire(), Err(AcquireError::Revoked)));
        drop(cap);
        drop(seg);
        // Other programs on the machine may use /dev/shm meanwhile; nothing of ours may be there.
        let ours: Vec<String> = dev_shm_entries()
            .difference(&before)
            .filter(|n| n.contains("memlink") || n.contains("cap-kill") || n.contains("child-"))
            .cloned()
            .collect();
        assert!(ours.is_empty(), "left behind in /dev/shm: {ours:?}");
    });
}
