//! Busy-waiting on shared memory, with a periodic check that the peer still lives.

use super::error::RunError;
use super::peer::Peer;

/// Spins between liveness checks of the peer.
const SPINS_PER_CHECK: u32 = 1 << 16;

/// Spins until `ready()`; in the measuring process (`peer` given) fails with
/// [`RunError::PeerDied`] if the peer dies meanwhile. The peer side passes `None`: it is
/// killed with its parent (PR_SET_PDEATHSIG).
pub(crate) fn spin_until(
    transport: &'static str,
    peer: Option<&Peer>,
    mut ready: impl FnMut() -> bool,
) -> Result<(), RunError> {
    let mut spins = 0u32;
    while !ready() {
        std::hint::spin_loop();
        spins = spins.wrapping_add(1);
        if spins % SPINS_PER_CHECK == 0 && peer.is_some_and(|p| !p.is_alive()) {
            return Err(RunError::PeerDied { transport });
        }
    }
    Ok(())
}
