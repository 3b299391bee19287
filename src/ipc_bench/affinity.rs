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

/// Why [`pin`] refused a pinning.
#[derive(Debug)]
pub enum PinError {
    /// This process may not run on `cpu` (it does not exist, is offline, or is outside
    /// the CPUs this process is allowed: see `taskset -p $$` or `nproc`).
    Cpu {
        /// The CPU that could not be used.
        cpu: usize,
        /// What the kernel said.
        source: std::io::Error,
    },
    /// Reading or restoring this process's own CPU mask failed.
    Mask(std::io::Error),
}

impl std::fmt::Display for PinError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PinError::Cpu { cpu, source } => write!(
                f,
                "CPU {cpu} cannot be used ({source}); this process may run on CPUs {}",
                allowed_cpus()
            ),
            PinError::Mask(e) => write!(f, "reading or restoring the CPU mask failed: {e}"),
        }
    }
}

impl std::error::Error for PinError {}

/// The CPUs this process may run on, as a list like `0,1,4`, for error messages.
fn allowed_cpus() -> String {
    let Ok(mask) = current_mask() else {
        return "(unknown)".into();
    };
    let cpus: Vec<String> = (0..8 * size_of::<libc::cpu_set_t>())
        // SAFETY: `cpu` is below CPU_SETSIZE and `mask` is a valid set.
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &mask) })
        .map(|cpu| cpu.to_string())
        .collect();
    cpus.join(",")
}

/// From now on, spinning transports run with the calling thread (the measuring side) on
/// CPU `client` and the forked peer on CPU `peer`. Checks that both CPUs can be used and
/// names the first that cannot.
pub fn pin(client: usize, peer: usize) -> Result<(), PinError> {
    let original = current_mask().map_err(PinError::Mask)?;
    for cpu in [client, peer] {
        let tried = one_cpu(cpu).and_then(|set| set_mask(&set));
        set_mask(&original).map_err(PinError::Mask)?;
        tried.map_err(|source| PinError::Cpu { cpu, source })?;
    }
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
