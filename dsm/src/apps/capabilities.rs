//! Capabilities across nodes, step by step (`memlink dsm run --nodes 4 --app capabilities`):
//! node 0 publishes a table and mints its capability; it grants node 1 a read-only copy and
//! node 2 a read-write-grant one; node 2 writes the table, grants node 3 a read-only copy and
//! restricts its own to read (which the protocol enforces: its write is refused; a read-only
//! restriction cannot be passed on); every holder reads node 2's
//! write; writes beyond the rights are refused, by the API (`NoWriteRight`) and by the
//! protocol (the page's manager refuses the fault); a node beyond the fourth, never granted,
//! is refused even a read; node 0 revokes, and every later acquire fails with `Revoked` and
//! every fault is refused. Each step is checked and printed; `verified` only if all held.

use crate::capability::{AcquireError, DsmCapability, RestrictError, Rights, SendError};
use crate::cluster::Dsm;
use crate::types::{Access, DsmError, FaultResolver, PAGE_SIZE};

/// The table node 0 publishes: one page of numbers.
pub type Table = [u64; 512];

/// The directory slot where node 0 publishes the table's offset.
pub const SLOT: usize = 1;

/// How long a node waits for the capability sent to it.
const WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// What node 2 writes into the table's first entry.
const WRITTEN: u64 = 99;

fn step(dsm: &Dsm, ok: bool, what: &str) -> bool {
    println!(
        "node {}: {what}: {}",
        dsm.id(),
        if ok { "ok" } else { "FAILED" }
    );
    ok
}

fn error(e: impl std::fmt::Display) -> DsmError {
    DsmError::Protocol(e.to_string())
}

/// Whether the protocol refuses `access` to the table's page to this node (asked as its
/// fault handler asks, without touching the page: a refused touch is SIGSEGV).
fn refused(dsm: &Dsm, offset: usize, access: Access) -> bool {
    let page = (offset / PAGE_SIZE) as u32;
    matches!(
        dsm.runtime().resolve_fault(page, access),
        Err(DsmError::Denied { .. })
    )
}

/// Runs this node's part (4 nodes or more); true if every step checked.
pub fn run(dsm: &Dsm) -> Result<bool, DsmError> {
    if dsm.nodes() < 4 {
        return Err(DsmError::Config(format!(
            "the capabilities app needs 4 nodes (minter, reader, writer, restricted copy), \
             not {}: run it with --nodes 4",
            dsm.nodes()
        )));
    }
    let me = dsm.id();
    let mut ok = true;
    let cap: Option<DsmCapability<Table>> = match me {
        0 => {
            let c = DsmCapability::mint(dsm, [7u64; 512]).map_err(error)?;
            dsm.publish(SLOT, c.offset() as u64);
            ok &= step(dsm, true, "minted the table");
            c.send(1, Rights::READ).map_err(error)?;
            ok &= step(dsm, true, "granted node 1 read");
            c.send(2, Rights::ALL).map_err(error)?;
            ok &= step(dsm, true, "granted node 2 read, write, grant");
            Some(c)
        }
        // Nodes 1 and 2 get theirs from node 0, node 3 its copy from node 2.
        1..=3 => Some(DsmCapability::receive(dsm, WAIT).map_err(error)?),
        _ => None,
    };
    if let (2, Some(cap)) = (me, &cap) {
        {
            let w = cap.acquire_write().map_err(error)?;
            // SAFETY: the write guard makes the table writable here; no other node writes it.
            unsafe { (*w.as_ptr())[0] = WRITTEN };
        }
        ok &= step(dsm, true, "wrote the table");
        cap.send(3, Rights::READ).map_err(error)?;
        ok &= step(dsm, true, "granted node 3 a read-only copy");
        // Node 2 is done writing: it restricts its own capability to read, at every node.
        let read_only = cap.restrict(Rights::READ).map_err(error)?;
        ok &= step(
            dsm,
            matches!(
                read_only.send(3, Rights::READ),
                Err(SendError::NotGrantable)
            ),
            "a read-only restriction cannot be passed on",
        );
        ok &= step(
            dsm,
            matches!(cap.acquire_write(), Err(AcquireError::NoWriteRight)),
            "after the restriction, no handle of it here writes (NoWriteRight)",
        );
        let offset = cap.offset();
        ok &= step(
            dsm,
            refused(dsm, offset, Access::Write),
            "a write beyond the restricted rights is refused by the protocol",
        );
    }
    dsm.barrier(1)?;
    let offset = dsm.lookup(SLOT) as usize;
    match &cap {
        Some(cap) if me != 0 => {
            let seen = cap.acquire().map_err(error)?[0];
            ok &= step(dsm, seen == WRITTEN, "reads node 2's write");
        }
        Some(_) => {}
        None => {
            ok &= step(
                dsm,
                matches!(
                    DsmCapability::<Table>::held(dsm, offset),
                    Err(AcquireError::NotGranted { .. })
                ),
                "holds no capability for the table",
            );
            ok &= step(
                dsm,
                refused(dsm, offset, Access::Read),
                "a read, never granted, is refused by the protocol",
            );
        }
    }
    if let (1 | 3, Some(cap)) = (me, &cap) {
        ok &= step(
            dsm,
            matches!(cap.acquire_write(), Err(AcquireError::NoWriteRight)),
            "acquire_write on a read-only capability fails (NoWriteRight)",
        );
        ok &= step(
            dsm,
            refused(dsm, offset, Access::Write),
            "a write beyond the rights is refused by the protocol",
        );
        ok &= step(
            dsm,
            matches!(cap.send(0, Rights::READ), Err(SendError::NotGrantable)),
            "a capability without GRANT is not sent",
        );
        ok &= step(
            dsm,
            matches!(
                cap.restrict(Rights::ALL),
                Err(RestrictError::Widening { .. })
            ),
            "rights never widen",
        );
    }
    dsm.barrier(2)?;
    if let (0, Some(cap)) = (me, &cap) {
        cap.revoke().map_err(error)?;
        ok &= step(dsm, true, "revoked the table's capability (and every copy)");
    }
    dsm.barrier(3)?;
    if let Some(cap) = &cap {
        ok &= step(
            dsm,
            matches!(cap.acquire(), Err(AcquireError::Revoked)),
            "acquire after the revocation fails (Revoked)",
        );
    }
    ok &= step(
        dsm,
        refused(dsm, offset, Access::Read),
        "every fault after the revocation is refused",
    );
    dsm.barrier(4)?;
    Ok(ok)
}
