//! The code identities that peers told in their admission handshakes, kept for the life of
//! the process: which binary each node runs and where its code is loaded. A difference does
//! not keep two nodes from sharing pages; it refuses tasks that would migrate between them
//! ([`check`], used by the task pool and [`crate::cluster::Dsm::code_check`]).
//!
//! Keyed by cluster id and node id: several test clusters may run in one process.

use std::sync::Mutex;

use super::handshake::ClusterId;
use crate::process::identity::{CodeIdentity, CodeMismatch};
use crate::types::NodeId;

static PEERS: Mutex<Vec<(ClusterId, NodeId, CodeIdentity)>> = Mutex::new(Vec::new());

/// Records that `node` of `cluster` proved `code` in its handshake (replacing what an earlier
/// connection of the same node told).
pub fn record(cluster: ClusterId, node: NodeId, code: CodeIdentity) {
    let mut peers = PEERS.lock().unwrap_or_else(|p| p.into_inner());
    peers.retain(|(c, n, _)| !(*c == cluster && *n == node));
    peers.push((cluster, node, code));
}

/// What `node` of `cluster` told, if it connected over TCP.
pub fn told(cluster: ClusterId, node: NodeId) -> Option<CodeIdentity> {
    let peers = PEERS.lock().unwrap_or_else(|p| p.into_inner());
    peers
        .iter()
        .find(|(c, n, _)| *c == cluster && *n == node)
        .map(|(_, _, code)| *code)
}

/// Whether a task may migrate between this node (running `ours`) and `node` of `cluster`:
/// an error naming the difference if the node told another identity. A node that told
/// nothing (an in-process transport: the same process, the same code) passes.
pub fn check(cluster: ClusterId, ours: &CodeIdentity, node: NodeId) -> Result<(), CodeMismatch> {
    match told(cluster, node) {
        Some(theirs) => ours.check(node, &theirs),
        None => Ok(()),
    }
}
