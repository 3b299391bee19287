//! Capabilities across node processes (the capabilities app): rights enforced by the protocol,
//! capabilities sent in messages, restricted, revoked cluster-wide; a node that was never
//! granted a range cannot read it, and a node that restricted its capability to read cannot
//! write it (the page's manager refuses the fault and the thread gets SIGSEGV at the
//! faulting address, which the test sees in the child); pages fenced by a released guard are
//! evicted under a memory budget, their contents kept.

use crate::support;

use std::time::Duration;

use memlink_dsm::capability::{AcquireError, DsmCapability, Rights};
use memlink_dsm::cluster::Dsm;
use memlink_dsm::init::{LaunchError, launch};
use memlink_dsm::{Access, Backend, DsmError, FaultResolver, ManagerKind, PAGE_SIZE};

type Table = [u64; 512];

/// The directory slot where node 0 publishes the table's offset.
const SLOT: usize = 1;

fn check(ok: bool, what: &str) -> bool {
    if !ok {
        println!("check failed: {what}");
    }
    ok
}

/// Whether the protocol refuses `access` to the table's first page to this node.
fn refused(dsm: &Dsm, offset: usize, access: Access) -> bool {
    let page = (offset / PAGE_SIZE) as u32;
    matches!(
        dsm.runtime().resolve_fault(page, access),
        Err(DsmError::Denied { .. })
    )
}

/// Node 0 mints a table and publishes where it is; node 1, never granted, finds no
/// capability for it, the protocol refuses its read, and its plain read of the table ends
/// in SIGSEGV at the table's address (its own handler, installed before joining, prints the
/// address and exits 42).
fn never_granted(dsm: &Dsm) -> Result<bool, DsmError> {
    if dsm.id() == 0 {
        let c =
            DsmCapability::mint(dsm, [5u64; 512]).map_err(|e| DsmError::Protocol(e.to_string()))?;
        dsm.publish(SLOT, c.offset() as u64);
        dsm.barrier(1)?;
        // Node 1 dies of its fault: this barrier never completes.
        let _ = dsm.barrier(2);
        return Ok(true);
    }
    dsm.barrier(1)?;
    let offset = dsm.lookup(SLOT) as usize;
    let mut ok = check(
        matches!(
            DsmCapability::<Table>::held(dsm, offset),
            Err(AcquireError::NotGranted { .. })
        ),
        "a node never granted holds no capability",
    );
    ok &= check(
        refused(dsm, offset, Access::Read),
        "the manager refuses a read by a node never granted",
    );
    if !ok {
        return Ok(false);
    }
    let addr = dsm.at::<u64>(offset);
    println!("touching {:#x}", addr as usize);
    // SAFETY: deliberately reading a page this node has no right to: the protocol refuses
    // it and the thread gets SIGSEGV, which this process's handler reports and exits on.
    let v = unsafe { std::ptr::read_volatile(addr) };
    println!("read {v}: the protection did not hold");
    Ok(false)
}

/// Node 0 mints a table and sends node 1 a capability with every right; node 1 restricts it
/// to read. The restriction binds the protocol, not only node 1's handles: `acquire_write`
/// fails, the page's manager refuses node 1's write fault, and its plain write to the table
/// (with a read guard live, so the page is readable) ends in SIGSEGV at the table's address
/// (the handler prints it and exits 42).
fn restricted_write(dsm: &Dsm) -> Result<bool, DsmError> {
    let err = |e: &dyn std::fmt::Display| DsmError::Protocol(e.to_string());
    if dsm.id() == 0 {
        let c = DsmCapability::mint(dsm, [5u64; 512]).map_err(|e| err(&e))?;
        c.send(1, Rights::ALL).map_err(|e| err(&e))?;
        dsm.barrier(1)?;
        // Node 1 dies of its fault: this barrier never completes.
        let _ = dsm.barrier(2);
        return Ok(true);
    }
    let cap = DsmCapability::<Table>::receive(dsm, Duration::from_secs(30)).map_err(|e| err(&e))?;
    dsm.barrier(1)?;
    let read_only = cap.restrict(Rights::READ).map_err(|e| err(&e))?;
    let mut ok = check(
        read_only.rights() == Rights::READ && cap.rights() == Rights::READ,
        "the restriction narrows every handle of the capability here",
    );
    ok &= check(
        matches!(cap.acquire_write(), Err(AcquireError::NoWriteRight)),
        "acquire_write after the restriction fails (NoWriteRight)",
    );
    ok &= check(
        refused(dsm, cap.offset(), Access::Write),
        "the manager refuses a write beyond the restricted rights",
    );
    let guard = read_only.acquire().map_err(|e| err(&e))?;
    ok &= check(guard[3] == 5, "the restricted capability still reads");
    if !ok {
        return Ok(false);
    }
    let addr = dsm.at::<u64>(cap.offset());
    println!("touching {:#x}", addr as usize);
    // SAFETY: deliberately writing a page this node's rights no longer let it write: the
    // protocol refuses it and the thread gets SIGSEGV, which this process's handler reports.
    unsafe { std::ptr::write_volatile(addr, 6) };
    println!("wrote: the restriction did not hold");
    drop(guard);
    Ok(false)
}

/// Pages node 1 writes through capabilities under a budget of [`BUDGET_FRAMES`] frames.
const FENCED_PAGES: usize = 24;
/// Node 1's memory budget, in pages.
const BUDGET_FRAMES: u64 = 8;

fn word(page: usize, i: usize) -> u64 {
    ((page as u64) << 32) | i as u64
}

/// Under a memory budget far below what it touches, node 1 writes [`FENCED_PAGES`] one-page
/// ranges it holds read-write capabilities for, dropping each guard (the page stays, fenced:
/// owned here, no local access), and reads them all back; node 0 then reads them all. The
/// fenced pages must be evicted (written back or handed off) for the next ones to come in,
/// and their contents must survive.
fn fenced_eviction(dsm: &Dsm) -> Result<bool, DsmError> {
    let err = |e: &dyn std::fmt::Display| DsmError::Protocol(e.to_string());
    let caps: Vec<DsmCapability<Table>> = if dsm.id() == 0 {
        (0..FENCED_PAGES)
            .map(|_| {
                let c = DsmCapability::mint(dsm, [0u64; 512]).map_err(|e| err(&e))?;
                c.send(1, Rights::READ | Rights::WRITE)
                    .map_err(|e| err(&e))?;
                Ok(c)
            })
            .collect::<Result<_, DsmError>>()?
    } else {
        (0..FENCED_PAGES)
            .map(|_| DsmCapability::receive(dsm, Duration::from_secs(30)).map_err(|e| err(&e)))
            .collect::<Result<_, DsmError>>()?
    };
    dsm.barrier(1)?;
    let mut ok = true;
    if dsm.id() == 1 {
        for (p, cap) in caps.iter().enumerate() {
            let w = cap.acquire_write().map_err(|e| err(&e))?;
            for i in 0..512 {
                // SAFETY: the write guard makes the page writable here; no other node writes.
                unsafe { (*w.as_ptr())[i] = word(p, i) };
            }
        }
        let stats = dsm.runtime().eviction_stats();
        ok &= check(
            stats.written_back + stats.handed_off + stats.passed_ownership > 0,
            "fenced pages were evicted to make room",
        );
        for (p, cap) in caps.iter().enumerate() {
            let g = cap.acquire().map_err(|e| err(&e))?;
            ok &= check(
                (0..512).all(|i| g[i] == word(p, i)),
                "node 1 reads back what it wrote",
            );
        }
    }
    dsm.barrier(2)?;
    if dsm.id() == 0 {
        for (p, cap) in caps.iter().enumerate() {
            let g = cap.acquire().map_err(|e| err(&e))?;
            ok &= check(
                (0..512).all(|i| g[i] == word(p, i)),
                "node 0 reads what node 1 wrote",
            );
        }
    }
    dsm.barrier(3)?;
    Ok(ok)
}

/// The test process's own SIGSEGV handler (in the child that is node 1 of `never_granted`):
/// prints `SIGSEGV at 0x...` and exits 42. Async-signal-safe: formats into a stack buffer,
/// then `write` and `_exit`.
extern "C" fn report_segv(_: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo to an SA_SIGINFO handler.
    let addr = unsafe { (*info).si_addr() } as usize;
    let mut buf = *b"SIGSEGV at 0x0000000000000000\n";
    for i in 0..16 {
        let nibble = (addr >> (60 - 4 * i)) & 0xf;
        buf[13 + i] = b"0123456789abcdef"[nibble];
    }
    // SAFETY: write and _exit are async-signal-safe; buf is a live stack buffer.
    unsafe {
        libc::write(1, buf.as_ptr().cast(), buf.len());
        libc::_exit(42);
    }
}

fn install_report_segv() {
    // SAFETY: a zeroed sigaction is valid; we set an SA_SIGINFO handler with an empty mask.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        let handler: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
            report_segv;
        sa.sa_sigaction = handler as usize;
        sa.sa_flags = libc::SA_SIGINFO;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(libc::SIGSEGV, &sa, std::ptr::null_mut());
    }
}

#[test]
fn node_main() {
    // The faulting node's own handler goes in before the DSM's, which chains to it.
    if std::env::var(support::NODE_ENV)
        .is_ok_and(|s| s.contains("|never_granted|") || s.contains("|restricted_write|"))
    {
        install_report_segv();
    }
    support::node_entry(&[
        ("never_granted", never_granted),
        ("restricted_write", restricted_write),
        ("fenced_eviction", fenced_eviction),
    ]);
}

/// The capabilities app (`memlink dsm run --app capabilities`): node 0 mints a table and
/// grants node 1 read and node 2 read-write-grant; node 2 writes and grants node 3 a read-only
/// copy; reads see the write, writes beyond the rights are refused by the API and by the
/// protocol, a read-only holder cannot pass its capability on; node 0 revokes and every
/// later access fails everywhere. A fifth node, never granted, is refused even a read.
#[test]
fn rights_are_enforced_sent_restricted_and_revoked_on_4_and_5_nodes() {
    support::assert_cluster_verifies(4, "capabilities", Backend::Sigsegv);
    support::assert_cluster_verifies(5, "capabilities", Backend::Uffd);
}

/// The same with the dynamic manager: the pages' owners, not a manager, check the rights.
#[test]
fn rights_are_enforced_by_the_owners_under_the_dynamic_manager() {
    let outputs = launch(4, support::DEADLINE, |slot| {
        support::node_command_with_manager(
            slot,
            "capabilities",
            Backend::Sigsegv,
            ManagerKind::Dynamic,
        )
    })
    .unwrap_or_else(|e| panic!("rights under the dynamic manager: {e}"));
    for out in outputs {
        assert!(out.stdout.contains("verified: true"), "{out:?}");
    }
}

#[test]
fn a_node_never_granted_a_range_cannot_read_it() {
    assert_node1_faults_where_it_touched("never granted", "never_granted", ManagerKind::Central);
}

/// A restriction is enforced by the protocol: the node that restricted its capability to read
/// is refused a write by the page's manager, and its plain write gets SIGSEGV at the address.
#[test]
fn a_write_beyond_restricted_rights_is_refused() {
    for manager in [ManagerKind::Central, ManagerKind::Dynamic] {
        let what = format!("{manager}: restricted write");
        assert_node1_faults_where_it_touched(&what, "restricted_write", manager);
    }
}

/// Runs `body` on 2 nodes under `manager` (SIGSEGV backend) and asserts that node 1 ended in
/// its SIGSEGV handler (status 42) with a fault at the address it printed as `touching 0x..`;
/// `what` names the case in a failure.
fn assert_node1_faults_where_it_touched(what: &str, body: &str, manager: ManagerKind) {
    let outputs = launch(2, support::DEADLINE, |slot| {
        support::node_command_with_manager(slot, body, Backend::Sigsegv, manager)
    });
    let node1 = match outputs {
        Err(LaunchError::NodeFailed { outputs, .. }) => outputs
            .into_iter()
            .find(|o| o.id == 1)
            .expect("node 1's output"),
        other => panic!("{what}: node 1 was not stopped by its fault: {other:?}"),
    };
    assert_eq!(
        node1.status.code(),
        Some(42),
        "{what}: node 1 did not end in its SIGSEGV handler: {node1:?}"
    );
    let touched = node1
        .stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("touching 0x"))
        .unwrap_or_else(|| panic!("{what}: node 1 never touched the range: {node1:?}"));
    let want = format!("SIGSEGV at 0x{touched:0>16}");
    assert!(
        node1.stdout.contains(&want),
        "{what}: node 1 did not get SIGSEGV at 0x{touched}: {node1:?}"
    );
}

/// Pages fenced by a released guard are evicted under a memory budget, and their contents
/// survive (node 1 reads them back from where the eviction put them, node 0 reads them too).
#[test]
fn fenced_pages_are_evicted_under_a_memory_budget() {
    for (manager, backend) in [
        (ManagerKind::Central, Backend::Sigsegv),
        (ManagerKind::Dynamic, Backend::Uffd),
    ] {
        let what = format!("fenced eviction ({manager}, {backend})");
        support::launch_verified(&what, 2, |slot| {
            let mut cmd =
                support::node_command_with_manager(slot, "fenced_eviction", backend, manager);
            cmd.env(
                support::BUDGET_ENV,
                (BUDGET_FRAMES * PAGE_SIZE as u64).to_string(),
            );
            cmd
        });
    }
}

/// With userfaultfd the faulting thread waits in the kernel, out of reach of a signal of its
/// own: the refused read ends the process with SIGSEGV.
#[test]
fn a_node_never_granted_a_range_cannot_read_it_with_uffd() {
    use std::os::unix::process::ExitStatusExt;
    let outputs = launch(2, support::DEADLINE, |slot| {
        support::node_command(slot, "never_granted", Backend::Uffd)
    });
    let node1 = match outputs {
        Err(LaunchError::NodeFailed { outputs, .. }) => outputs
            .into_iter()
            .find(|o| o.id == 1)
            .expect("node 1's output"),
        other => panic!("the never-granted node was not stopped by its fault: {other:?}"),
    };
    assert_eq!(
        node1.status.signal(),
        Some(libc::SIGSEGV),
        "node 1 did not die of SIGSEGV: {node1:?}"
    );
    assert!(node1.stdout.contains("touching 0x"), "{node1:?}");
    assert!(node1.stderr.contains("refused"), "{node1:?}");
}
