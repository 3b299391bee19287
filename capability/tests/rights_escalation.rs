//! A holder of a capability cannot gain rights it was not given. A child that received a
//! READ|GRANT capability drops to an unprivileged uid and tries every route open to it
//! (reopening /proc/self/fd/N read-write, fchmod, a writable MAP_SHARED mapping, mprotect
//! of its read-only mapping, a dup, write(2), /proc/self/mem, the owner's /proc entries,
//! process_vm_writev and ptrace of the owner, and passing the descriptor on to a
//! grandchild that tries all of it again): every route fails and the owner's value is
//! unchanged. Controls show what the routes do when they are open: a child that stays
//! root reopens the memfd read-write and changes the value; a frozen segment refuses
//! writable mappings even to root.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::child_process::{fork_child, isolated, wait_child};
use memlink_capability::capability::{Capability, Rights};
use memlink_capability::capability_transfer::{recv_capability, send_capability};
use memlink_capability::fd_passing::{recv_message, send_with_fds};
use memlink_capability::segment::Segment;

const NOBODY: libc::uid_t = 65534;
const OWNER_VALUE: u64 = 0x0123_4567_89ab_cdef;
const ATTACK_VALUE: u64 = 0xbad0_bad0_bad0_bad0;
const OBJECT_OFFSET: usize = 64;

/// What the owner tells the attacker besides the capability: its pid, the number of its
/// read-write memfd descriptor and the address of the value in its address space.
#[derive(Clone, Copy)]
struct OwnerFacts {
    pid: u32,
    rw_fd: RawFd,
    value_addr: u64,
}

impl OwnerFacts {
    fn encode(self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[..4].copy_from_slice(&self.pid.to_le_bytes());
        b[4..8].copy_from_slice(&self.rw_fd.to_le_bytes());
        b[8..].copy_from_slice(&self.value_addr.to_le_bytes());
        b
    }

    fn decode(b: &[u8]) -> OwnerFacts {
        OwnerFacts {
            pid: u32::from_le_bytes(b[..4].try_into().unwrap()),
            rw_fd: i32::from_le_bytes(b[4..8].try_into().unwrap()),
            value_addr: u64::from_le_bytes(b[8..16].try_into().unwrap()),
        }
    }
}

/// Drops to uid/gid `NOBODY` with no supplementary groups and no capabilities, then makes
/// the process dumpable again (as an attacker would, so /proc/self works as usual).
fn drop_privileges() {
    // SAFETY: plain syscalls on this (single-threaded, forked) process's credentials.
    unsafe {
        assert_eq!(libc::setgroups(0, std::ptr::null()), 0, "setgroups");
        assert_eq!(libc::setgid(NOBODY), 0, "setgid");
        assert_eq!(libc::setuid(NOBODY), 0, "setuid");
        assert_eq!(
            libc::prctl(libc::PR_SET_DUMPABLE, 1, 0, 0, 0),
            0,
            "dumpable"
        );
        assert_eq!(libc::geteuid(), NOBODY);
    }
}

/// The memfd descriptors in this process's table, found as an attacker would: by reading
/// the /proc/self/fd links.
fn memfds_in_table() -> Vec<RawFd> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc/self/fd").unwrap() {
        let e = e.unwrap();
        if let Ok(target) = std::fs::read_link(e.path()) {
            if target.to_string_lossy().starts_with("/memfd:memlink") {
                out.push(e.file_name().to_string_lossy().parse().unwrap());
            }
        }
    }
    out
}

fn open_path(path: &str, flags: libc::c_int) -> Option<OwnedFd> {
    let c = CString::new(path).unwrap();
    // SAFETY: `c` is a valid C string.
    let fd = unsafe { libc::open(c.as_ptr(), flags | libc::O_CLOEXEC) };
    // SAFETY: a non-negative result is a fresh descriptor we own.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Maps the page holding the object through `fd`; None if the kernel refuses.
fn map_object_page(fd: RawFd, prot: libc::c_int, flags: libc::c_int) -> Option<*mut u8> {
    let page_off = (4096 + OBJECT_OFFSET / 4096 * 4096) as libc::off_t;
    // SAFETY: a fresh mapping chosen by the kernel; aliases nothing of ours.
    let p = unsafe { libc::mmap(std::ptr::null_mut(), 4096, prot, flags, fd, page_off) };
    (p != libc::MAP_FAILED).then_some(p.cast())
}

/// Writes the attack value through a mapping that the kernel let us make writable.
fn write_through(page: *mut u8) {
    // SAFETY: `page` is a writable mapping of at least 4096 bytes; the object lies at
    // OBJECT_OFFSET % 4096, 8-aligned.
    unsafe {
        (*(page.add(OBJECT_OFFSET % 4096) as *const AtomicU64))
            .store(ATTACK_VALUE, Ordering::SeqCst)
    };
}

/// Tries to write to the segment behind `fd` by every route; returns the routes that
/// worked (each of them also wrote the attack value, so the owner would see it).
fn try_every_route(fd: RawFd, guard_page: Option<*mut u8>, owner: OwnerFacts) -> Vec<String> {
    let mut opened = Vec::new();
    let shared_rw = libc::PROT_READ | libc::PROT_WRITE;
    // 1. Reopen through /proc/self/fd, read-write and write-only.
    for (name, flags) in [
        ("reopen O_RDWR", libc::O_RDWR),
        ("reopen O_WRONLY", libc::O_WRONLY),
    ] {
        if let Some(f) = open_path(&format!("/proc/self/fd/{fd}"), flags) {
            opened.push(name.to_string());
            if let Some(p) = map_object_page(f.as_raw_fd(), shared_rw, libc::MAP_SHARED) {
                write_through(p);
            }
        }
    }
    // 2. Make the file writable for us, then reopen.
    // SAFETY: fchmod on a descriptor we hold.
    if unsafe { libc::fchmod(fd, 0o666) } == 0 {
        opened.push("fchmod 0666".into());
    }
    // 3. A writable shared mapping straight from the descriptor and from a dup of it.
    // SAFETY: dup of a descriptor we hold.
    let dup = unsafe { OwnedFd::from_raw_fd(libc::dup(fd)) };
    for (name, f) in [
        ("mmap shared rw", fd),
        ("mmap shared rw (dup)", dup.as_raw_fd()),
    ] {
        if let Some(p) = map_object_page(f, shared_rw, libc::MAP_SHARED) {
            opened.push(name.into());
            write_through(p);
        }
    }
    // 4. mprotect of a read-only shared mapping we made, and of the capability's own.
    let mut ro_pages = Vec::new();
    if let Some(p) = map_object_page(dup.as_raw_fd(), libc::PROT_READ, libc::MAP_SHARED) {
        ro_pages.push(("mprotect own ro mapping", p));
    }
    if let Some(p) = guard_page {
        ro_pages.push(("mprotect the guard's mapping", p));
    }
    for (name, p) in ro_pages {
        // SAFETY: `p` is a page-aligned mapping of 4096 bytes (or more) in this process.
        if unsafe { libc::mprotect(p.cast(), 4096, shared_rw) } == 0 {
            opened.push(name.into());
            write_through(p);
        }
    }
    // 5. write(2) on the descriptor.
    let v = ATTACK_VALUE.to_le_bytes();
    let at = (4096 + OBJECT_OFFSET) as libc::off_t;
    // SAFETY: pwrite from an 8-byte buffer.
    if unsafe { libc::pwrite(fd, v.as_ptr().cast(), 8, at) } == 8 {
        opened.push("pwrite".into());
    }
    // 6. /proc/self/mem (FOLL_FORCE) over the read-only mapping of the guard.
    if let (Some(p), Some(mem)) = (guard_page, open_path("/proc/self/mem", libc::O_RDWR)) {
        let addr = p as usize + OBJECT_OFFSET % 4096;
        // SAFETY: pwrite from an 8-byte buffer to /proc/self/mem.
        if unsafe { libc::pwrite(mem.as_raw_fd(), v.as_ptr().cast(), 8, addr as libc::off_t) } == 8
        {
            opened.push("/proc/self/mem".into());
        }
    }
    // 7. The owner's own descriptor and memory through its /proc entry.
    if let Some(f) = open_path(
        &format!("/proc/{}/fd/{}", owner.pid, owner.rw_fd),
        libc::O_RDWR,
    ) {
        opened.push("reopen owner's fd".into());
        if let Some(p) = map_object_page(f.as_raw_fd(), shared_rw, libc::MAP_SHARED) {
            write_through(p);
        }
    }
    if let Some(mem) = open_path(&format!("/proc/{}/mem", owner.pid), libc::O_RDWR) {
        opened.push("owner's /proc/pid/mem".into());
        // SAFETY: pwrite from an 8-byte buffer.
        unsafe {
            libc::pwrite(
                mem.as_raw_fd(),
                v.as_ptr().cast(),
                8,
                owner.value_addr as libc::off_t,
            )
        };
    }
    // 8. process_vm_writev and ptrace of the owner.
    let local = libc::iovec {
        iov_base: v.as_ptr() as *mut libc::c_void,
        iov_len: 8,
    };
    let remote = libc::iovec {
        iov_base: owner.value_addr as *mut libc::c_void,
        iov_len: 8,
    };
    // SAFETY: one local and one remote iovec; the kernel checks the remote side.
    if unsafe { libc::process_vm_writev(owner.pid as libc::pid_t, &local, 1, &remote, 1, 0) } == 8 {
        opened.push("process_vm_writev".into());
    }
    // SAFETY: PTRACE_SEIZE takes no memory arguments; on success we detach right away.
    if unsafe { libc::ptrace(libc::PTRACE_SEIZE, owner.pid as libc::pid_t, 0, 0) } == 0 {
        opened.push("ptrace owner".into());
        // SAFETY: as above.
        unsafe { libc::ptrace(libc::PTRACE_DETACH, owner.pid as libc::pid_t, 0, 0) };
    }
    opened
}

/// Closes, in a forked child, its copy of the parent's end of a socket pair, so that the
/// child sees end-of-file when the parent goes away instead of waiting forever.
fn close_inherited(parent_end: &UnixStream) {
    // SAFETY: this forked child never uses `parent_end` and leaves with _exit, which runs
    // no destructor that could close the number again.
    unsafe { libc::close(parent_end.as_raw_fd()) };
}

fn report(who: &str, opened: &[String]) -> i32 {
    for r in opened {
        eprintln!("{who}: route open: {r}");
    }
    opened.len() as i32
}

/// Runs the attacker: receives the capability, tries every route, passes the descriptor
/// on (raw and as a capability) to a grandchild that tries again. Exit code: the number
/// of routes that worked, in both processes.
fn attacker(from_owner: &UnixStream, unprivileged: bool) -> i32 {
    if unprivileged {
        drop_privileges();
    }
    let (to_grandchild, grandchild_end) = UnixStream::pair().unwrap();
    // The grandchild is forked before anything arrives, so it holds only what it is sent.
    let grandchild = fork_child(|| {
        close_inherited(&to_grandchild);
        grandchild_end
            .set_read_timeout(Some(crate::child_process::DEADLINE))
            .unwrap();
        let (facts, _) = recv_message(&grandchild_end).unwrap();
        let owner = OwnerFacts::decode(&facts);
        let (_, raw) = recv_message(&grandchild_end).unwrap();
        let cap = recv_capability::<u64>(&grandchild_end).unwrap();
        let g = cap.acquire().unwrap();
        let page = (g.as_ptr() as usize / 4096 * 4096) as *mut u8;
        let mut opened = try_every_route(raw[0].as_raw_fd(), Some(page), owner);
        opened.extend(try_every_route(cap_fd(), Some(page), owner));
        report("grandchild", &opened)
    });
    drop(grandchild_end);
    let cap = recv_capability::<u64>(from_owner).unwrap();
    assert_eq!(cap.rights(), Rights::READ | Rights::GRANT);
    let (facts, _) = recv_message(from_owner).unwrap();
    let owner = OwnerFacts::decode(&facts);
    let g = cap.acquire().unwrap();
    assert_eq!(*g, OWNER_VALUE);
    let page = (g.as_ptr() as usize / 4096 * 4096) as *mut u8;
    let fds = memfds_in_table();
    assert_eq!(
        fds.len(),
        1,
        "the attacker holds exactly the capability's memfd"
    );
    let opened = try_every_route(fds[0], Some(page), owner);
    let mine = report("child", &opened);
    send_with_fds(&to_grandchild, &owner.encode(), &[]).unwrap();
    // SAFETY: fds[0] is open in this process for the duration of the call.
    let raw = unsafe { std::os::fd::BorrowedFd::borrow_raw(fds[0]) };
    send_with_fds(&to_grandchild, b"fd", &[raw]).unwrap();
    send_capability(&to_grandchild, &cap).unwrap();
    drop(g);
    match wait_child(grandchild) {
        Ok(n) => mine + n,
        Err(sig) => panic!("grandchild killed by signal {sig}"),
    }
}

/// The memfd the grandchild's capability holds (the only memfd it has besides the raw one
/// it was sent, which comes first in the table).
fn cap_fd() -> RawFd {
    *memfds_in_table().iter().max().unwrap()
}

/// Creates the owner's segment and value, sends a READ|GRANT capability and the owner's
/// facts to the attacker, waits for it; returns the attacker's exit code and the value.
fn run_owner(name: &str, unprivileged: bool) -> (i32, u64) {
    let (owner_end, attacker_end) = UnixStream::pair().unwrap();
    let child = fork_child(|| {
        close_inherited(&owner_end);
        attacker_end
            .set_read_timeout(Some(crate::child_process::DEADLINE))
            .unwrap();
        attacker(&attacker_end, unprivileged)
    });
    drop(attacker_end);
    // Created after the fork: the attacker holds only what it is sent.
    let seg = Segment::create(name, 4096).unwrap();
    let cap = Capability::<AtomicU64>::mint(&seg, OBJECT_OFFSET, Rights::ALL).unwrap();
    cap.acquire_write()
        .unwrap()
        .store(OWNER_VALUE, Ordering::SeqCst);
    let value = cap.acquire_write().unwrap().as_ptr() as u64;
    send_capability(
        &owner_end,
        &cap.restrict(Rights::READ | Rights::GRANT).unwrap(),
    )
    .unwrap();
    let facts = OwnerFacts {
        pid: std::process::id(),
        rw_fd: seg.as_fd().as_raw_fd(),
        value_addr: value,
    };
    // Keep the owner's writable mapping alive while the attacker runs.
    let keep = cap.acquire_write().unwrap();
    send_with_fds(&owner_end, &facts.encode(), &[]).unwrap();
    let code = match wait_child(child) {
        Ok(n) => n,
        Err(sig) => panic!("attacker killed by signal {sig}"),
    };
    let now = keep.load(Ordering::SeqCst);
    (code, now)
}

#[test]
fn unprivileged_holder_of_a_read_capability_cannot_write() {
    isolated(|| {
        let (routes_open, value) = run_owner("rights", true);
        assert_eq!(routes_open, 0, "some route gave write access (see stderr)");
        assert_eq!(value, OWNER_VALUE, "the owner's value changed");
    });
}

#[test]
fn frozen_segment_refuses_writable_mappings_even_to_root() {
    isolated(|| {
        let seg = Segment::create_frozen("rights-frozen", 4096, |_| {}).unwrap();
        assert!(seg.is_frozen());
        // The creator's own mapping stays writable.
        // SAFETY: the payload is mapped read-write in this process; offset 64 is inside.
        unsafe {
            (*(seg.payload_ptr().add(OBJECT_OFFSET) as *const AtomicU64))
                .store(OWNER_VALUE, Ordering::SeqCst)
        };
        let (owner_end, attacker_end) = UnixStream::pair().unwrap();
        let child = fork_child(|| {
            // Stays root: CAP_DAC_OVERRIDE opens the memfd read-write, but the seal holds.
            let (_, fds) = recv_message(&attacker_end).unwrap();
            let fd = fds[0].as_raw_fd();
            let rw = open_path(&format!("/proc/self/fd/{fd}"), libc::O_RDWR)
                .expect("root may reopen the memfd read-write");
            let mut opened = 0;
            for f in [fd, rw.as_raw_fd()] {
                let shared_rw = libc::PROT_READ | libc::PROT_WRITE;
                if let Some(p) = map_object_page(f, shared_rw, libc::MAP_SHARED) {
                    write_through(p);
                    opened += 1;
                }
                if let Some(p) = map_object_page(f, libc::PROT_READ, libc::MAP_SHARED) {
                    // SAFETY: a 4096-byte mapping made just above.
                    if unsafe { libc::mprotect(p.cast(), 4096, shared_rw) } == 0 {
                        write_through(p);
                        opened += 1;
                    }
                }
                let v = ATTACK_VALUE.to_le_bytes();
                let at = (4096 + OBJECT_OFFSET) as libc::off_t;
                // SAFETY: pwrite from an 8-byte buffer.
                if unsafe { libc::pwrite(f, v.as_ptr().cast(), 8, at) } == 8 {
                    opened += 1;
                }
            }
            opened
        });
        drop(attacker_end);
        // Even the owner's read-write descriptor is sent: the seal, not the mode, holds.
        send_with_fds(&owner_end, b"fd", &[seg.as_fd()]).unwrap();
        assert_eq!(wait_child(child), Ok(0), "a write route was open");
        // SAFETY: as above.
        let now = unsafe {
            (*(seg.payload_ptr().add(OBJECT_OFFSET) as *const AtomicU64)).load(Ordering::SeqCst)
        };
        assert_eq!(now, OWNER_VALUE);
        // WRITE cannot be minted from a frozen segment.
        assert!(Capability::<AtomicU64>::mint(&seg, OBJECT_OFFSET, Rights::ALL).is_err());
    });
}

#[test]
fn control_a_root_holder_reopens_the_memfd_read_write() {
    // What the mode bits do not stop: root (CAP_DAC_OVERRIDE) reopens /proc/self/fd/N
    // read-write and changes the owner's value. This also shows that the routes above
    // really detect a write when one is possible.
    isolated(|| {
        let (routes_open, value) = run_owner("rights-root", false);
        assert!(routes_open > 0, "root should have found a route");
        assert_eq!(value, ATTACK_VALUE);
    });
}
