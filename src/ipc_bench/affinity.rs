//! Optional CPU pinning of spinning pairs: the measuring process on one CPU, its peer on
//! another, so that two busy-waiting processes never time-share one CPU. Blocking pairs
//! stay unpinned: a process woken from a futex or a pipe should run on whichever CPU is
//! free, and pinning it to a busy one only adds a wait for that CPU.

use std::sync::Mutex;

/// The pinning chosen by [`pin`]: (client CPU, peer CPU, the mask to restore).
static PINNING: Mutex<Option<(usize, usize, libc::cpu_set_t)>> = Mutex::new(None);
/// Whether peers forked now pin themselves, and to which CPU.
static PEER_CPU: Mutex<Option<usize>> = Mutex::new(None);

fn one_cpu(cpu: usize) -> std::io::Result<libc::cpu_set_t> {
    if cpu >= 8 * size_of::<libc::cpu_set_t>() {
        return Err(std::io::Error::from_raw_os_error(libc::EINVAL));
    }
    // SAFETY: cpu_set_t is plain data; an all-zero set is valid (empty).
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `cpu` is below CPU_SETSIZE (checked above) and `set` is a valid set.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    Ok(set)
}

fn set_mask(set: &libc::cpu_set_t) -> std::io::Result<()> {
    // SAFETY: `set` is a valid cpu_set_t of the size passed; pid 0 is the calling thread.
    let rc = unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), set) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

fn current_mask() -> std::io::Result<libc::cpu_set_t> {
    // SAFETY: cpu_set_t is plain data; an all-zero set is valid.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a writable cpu_set_t of the size passed; pid 0 is this thread.
    let rc = unsafe { libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut set) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(set)
}

/// From now on, spinning transports run with the calling thread (the measuring side) on
/// CPU `client` and the forked peer on CPU `peer`. Checks that both CPUs can be used.
pub fn pin(client: usize, peer: usize) -> std::io::Result<()> {
    let original = current_mask()?;
    set_mask(&one_cpu(peer)?)?;
    set_mask(&one_cpu(client)?)?;
    set_mask(&original)?;
    *PINNING.lock().unwrap_or_else(|e| e.into_inner()) = Some((client, peer, original));
    Ok(())
}

/// Before a transport runs: pins (spinning) or restores the original mask (blocking).
pub(crate) fn apply(spinning: bool) -> std::io::Result<()> {
    let pinning = *PINNING.lock().unwrap_or_else(|e| e.into_inner());
    let Some((client, peer, original)) = pinning else {
        return Ok(());
    };
    let mut peer_cpu = PEER_CPU.lock().unwrap_or_else(|e| e.into_inner());
    if spinning {
        set_mask(&one_cpu(client)?)?;
        *peer_cpu = Some(peer);
    } else {
        set_mask(&original)?;
        *peer_cpu = None;
    }
    Ok(())
}

/// In a freshly forked peer: applies the pinning chosen for the current transport.
pub(crate) fn pin_peer() -> Result<(), String> {
    let cpu = *PEER_CPU.lock().unwrap_or_else(|e| e.into_inner());
    match cpu {
        None => Ok(()),
        Some(cpu) => one_cpu(cpu)
            .and_then(|set| set_mask(&set))
            .map_err(|e| format!("pinning the peer to CPU {cpu} failed: {e}")),
    }
}
