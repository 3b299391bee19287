//! Fault backends: catch application accesses to pages this node may not access yet, have the
//! [`FaultResolver`] (the node runtime) make them accessible, and let the access retry.
//!
//! - [`SigsegvService`]: `mprotect` + a SIGSEGV handler that only records the fault and waits
//!   on a futex for a service thread. Works everywhere.
//! - [`UffdService`]: userfaultfd through the raw syscall with `UFFD_USER_MODE_ONLY` (no
//!   privilege needed); missing-page and write-protect faults; `UFFDIO_COPY` fills and maps.
//!
//! Both serve faults on one service thread per node. A fault that cannot be served (the
//! cluster lost a node) cannot be returned to the faulting instruction: the error is printed and
//! the process exits with [`UNSERVABLE_FAULT_EXIT`].

pub mod sigsegv;
pub mod uffd;
pub mod userfaultfd;

use std::fmt;
use std::io;
use std::sync::Arc;

use crate::mapping::Mapping;
use crate::types::{Backend, FaultResolver, PageNo};
pub use sigsegv::SigsegvService;
pub use uffd::UffdService;

/// The exit status of a node process whose page fault could not be served (a peer was lost).
pub const UNSERVABLE_FAULT_EXIT: i32 = 3;

/// Why a fault backend could not start.
#[derive(Debug)]
pub enum FaultError {
    /// The SIGSEGV handler could not be installed.
    Signal(io::Error),
    /// The service thread (or its stop pipe) could not be created.
    Thread(io::Error),
    /// The process already serves the maximum number of regions.
    TooManyRegions {
        /// The maximum.
        max: usize,
    },
    /// The userfaultfd backend needs a mapping created for [`Backend::Uffd`].
    WrongMapping,
}

impl fmt::Display for FaultError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FaultError::Signal(e) => write!(f, "cannot install the SIGSEGV handler: {e}"),
            FaultError::Thread(e) => write!(f, "cannot start the fault service thread: {e}"),
            FaultError::TooManyRegions { max } => write!(
                f,
                "this process already serves {max} DSM regions; leave one before joining again"
            ),
            FaultError::WrongMapping => write!(
                f,
                "the userfaultfd backend needs a mapping created with Backend::Uffd"
            ),
        }
    }
}

impl std::error::Error for FaultError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            FaultError::Signal(e) | FaultError::Thread(e) => Some(e),
            _ => None,
        }
    }
}

/// A running fault service of either backend; stops when dropped.
#[derive(Debug)]
pub enum FaultService {
    /// The SIGSEGV backend.
    Sigsegv(SigsegvService),
    /// The userfaultfd backend.
    Uffd(UffdService),
}

impl FaultService {
    /// Starts the backend `mapping` was created for, resolving its faults with `resolver`.
    pub fn start(
        mapping: Arc<Mapping>,
        resolver: Arc<dyn FaultResolver>,
    ) -> Result<FaultService, FaultError> {
        Ok(match mapping.backend() {
            Backend::Sigsegv => FaultService::Sigsegv(SigsegvService::start(mapping, resolver)?),
            Backend::Uffd => FaultService::Uffd(UffdService::start(mapping, resolver)?),
        })
    }
}

/// Reports a fault that cannot be served and ends the process (async-signal-safe: only
/// `write` and `_exit`).
pub(crate) fn report_unservable(page: PageNo) -> ! {
    let mut buf = [0u8; 128];
    let prefix = b"memlink-dsm: page fault on page ";
    let suffix = b" cannot be served (a node or a pager is lost); exiting\n";
    let mut n = 0;
    buf[..prefix.len()].copy_from_slice(prefix);
    n += prefix.len();
    let mut digits = [0u8; 10];
    let mut d = 0;
    let mut v = page;
    loop {
        digits[d] = b'0' + (v % 10) as u8;
        d += 1;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    while d > 0 {
        d -= 1;
        buf[n] = digits[d];
        n += 1;
    }
    buf[n..n + suffix.len()].copy_from_slice(suffix);
    n += suffix.len();
    // SAFETY: write and _exit are async-signal-safe; `buf[..n]` is initialised.
    unsafe {
        libc::write(2, buf.as_ptr().cast(), n);
        libc::_exit(UNSERVABLE_FAULT_EXIT);
    }
}
