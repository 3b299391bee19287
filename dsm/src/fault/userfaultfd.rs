//! The raw userfaultfd interface: the syscall, its ioctls and its event record, declared here
//! because libc does not carry them. Only what the DSM uses: MISSING and write-protect modes,
//! `UFFDIO_COPY`, `UFFDIO_WRITEPROTECT` and `UFFDIO_WAKE`.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// `UFFD_API`: the only API version.
const UFFD_API: u64 = 0xAA;
/// Faults from kernel mode are not handled (no privilege needed).
const UFFD_USER_MODE_ONLY: libc::c_int = 1;

/// Write-protect faults on shmem (memfd) mappings.
const UFFD_FEATURE_WP_HUGETLBFS_SHMEM: u64 = 1 << 12;
/// Write-protect faults are reported with `UFFD_PAGEFAULT_FLAG_WP`.
const UFFD_FEATURE_PAGEFAULT_FLAG_WP: u64 = 1 << 0;

const UFFDIO_REGISTER_MODE_MISSING: u64 = 1;
const UFFDIO_REGISTER_MODE_WP: u64 = 2;
const UFFDIO_COPY_MODE_WP: u64 = 2;
const UFFDIO_WRITEPROTECT_MODE_WP: u64 = 1;

/// The event type of a page fault in [`UffdMsg::event`].
pub const UFFD_EVENT_PAGEFAULT: u8 = 0x12;
/// The faulting access was a write.
pub const UFFD_PAGEFAULT_FLAG_WRITE: u64 = 1;
/// The fault hit a write-protected page.
pub const UFFD_PAGEFAULT_FLAG_WP: u64 = 2;

const fn iowr(nr: u64, size: usize) -> u64 {
    (3 << 30) | ((size as u64) << 16) | (0xAA << 8) | nr
}
const fn ior(nr: u64, size: usize) -> u64 {
    (2 << 30) | ((size as u64) << 16) | (0xAA << 8) | nr
}

#[repr(C)]
struct UffdioApi {
    api: u64,
    features: u64,
    ioctls: u64,
}
#[repr(C)]
#[derive(Clone, Copy)]
struct UffdioRange {
    start: u64,
    len: u64,
}
#[repr(C)]
struct UffdioRegister {
    range: UffdioRange,
    mode: u64,
    ioctls: u64,
}
#[repr(C)]
struct UffdioCopy {
    dst: u64,
    src: u64,
    len: u64,
    mode: u64,
    copy: i64,
}
#[repr(C)]
struct UffdioWriteprotect {
    range: UffdioRange,
    mode: u64,
}

const UFFDIO_API: u64 = iowr(0x3F, size_of::<UffdioApi>());
const UFFDIO_REGISTER: u64 = iowr(0x00, size_of::<UffdioRegister>());
const UFFDIO_WAKE: u64 = ior(0x02, size_of::<UffdioRange>());
const UFFDIO_COPY: u64 = iowr(0x03, size_of::<UffdioCopy>());
const UFFDIO_WRITEPROTECT: u64 = iowr(0x06, size_of::<UffdioWriteprotect>());

/// One event read from a userfaultfd (`struct uffd_msg`, 32 bytes).
#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub struct UffdMsg {
    /// The event type ([`UFFD_EVENT_PAGEFAULT`], ...).
    pub event: u8,
    reserved1: u8,
    reserved2: u16,
    reserved3: u32,
    /// For a page fault: `UFFD_PAGEFAULT_FLAG_*`.
    pub flags: u64,
    /// For a page fault: the faulting address.
    pub address: u64,
    feat: u64,
}

/// An open userfaultfd, negotiated and ready to register ranges.
#[derive(Debug)]
pub struct Userfaultfd {
    fd: OwnedFd,
}

fn check(ret: libc::c_int) -> io::Result<()> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Runs an ioctl again while it fails with EAGAIN (the address space was changing) or EINTR.
fn retrying(mut ioctl: impl FnMut() -> libc::c_int) -> io::Result<()> {
    loop {
        match check(ioctl()) {
            Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN) | Some(libc::EINTR)) => {
                std::thread::yield_now();
            }
            other => return other,
        }
    }
}

impl Userfaultfd {
    /// Opens a userfaultfd for user-mode faults only (no privilege needed) and negotiates
    /// write-protect support on shmem mappings.
    pub fn open() -> io::Result<Userfaultfd> {
        // SAFETY: userfaultfd takes only flags and returns a new fd or -1.
        let raw = unsafe {
            libc::syscall(
                libc::SYS_userfaultfd,
                libc::O_CLOEXEC | libc::O_NONBLOCK | UFFD_USER_MODE_ONLY,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: raw is a fresh fd that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw as RawFd) };
        let mut api = UffdioApi {
            api: UFFD_API,
            features: UFFD_FEATURE_WP_HUGETLBFS_SHMEM | UFFD_FEATURE_PAGEFAULT_FLAG_WP,
            ioctls: 0,
        };
        // SAFETY: UFFDIO_API reads and writes one UffdioApi, which `api` is.
        check(unsafe { libc::ioctl(fd.as_raw_fd(), UFFDIO_API as _, &mut api) })?;
        Ok(Userfaultfd { fd })
    }

    /// Registers `[start, start + len)` for missing-page and write-protect faults.
    pub fn register(&self, start: usize, len: usize) -> io::Result<()> {
        let mut reg = UffdioRegister {
            range: UffdioRange {
                start: start as u64,
                len: len as u64,
            },
            mode: UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_WP,
            ioctls: 0,
        };
        // SAFETY: UFFDIO_REGISTER reads and writes one UffdioRegister, which `reg` is; the
        // kernel checks that the range is a mapping of ours.
        check(unsafe { libc::ioctl(self.fd.as_raw_fd(), UFFDIO_REGISTER as _, &mut reg) })
    }

    /// Atomically fills the missing page at `dst` with `PAGE_SIZE` bytes from `src` and maps
    /// it, write-protected when `write_protect`; wakes the threads waiting on it.
    pub fn copy(&self, dst: usize, src: &[u8], write_protect: bool) -> io::Result<()> {
        retrying(|| {
            let mut copy = UffdioCopy {
                dst: dst as u64,
                src: src.as_ptr() as u64,
                len: src.len() as u64,
                mode: if write_protect {
                    UFFDIO_COPY_MODE_WP
                } else {
                    0
                },
                copy: 0,
            };
            // SAFETY: UFFDIO_COPY reads src.len() bytes from `src` (a live slice) and writes
            // only the `copy` field of the struct we pass.
            unsafe { libc::ioctl(self.fd.as_raw_fd(), UFFDIO_COPY as _, &mut copy) }
        })
    }

    /// Sets or clears write protection on present pages of `[start, start + len)`; clearing
    /// wakes the threads waiting on a write-protect fault there.
    pub fn write_protect(&self, start: usize, len: usize, protect: bool) -> io::Result<()> {
        retrying(|| {
            let mut wp = UffdioWriteprotect {
                range: UffdioRange {
                    start: start as u64,
                    len: len as u64,
                },
                mode: if protect {
                    UFFDIO_WRITEPROTECT_MODE_WP
                } else {
                    0
                },
            };
            // SAFETY: UFFDIO_WRITEPROTECT reads one UffdioWriteprotect, which `wp` is.
            unsafe { libc::ioctl(self.fd.as_raw_fd(), UFFDIO_WRITEPROTECT as _, &mut wp) }
        })
    }

    /// Wakes the threads waiting on a fault in `[start, start + len)` so that they retry it.
    pub fn wake(&self, start: usize, len: usize) -> io::Result<()> {
        let mut range = UffdioRange {
            start: start as u64,
            len: len as u64,
        };
        // SAFETY: UFFDIO_WAKE reads one UffdioRange, which `range` is.
        check(unsafe { libc::ioctl(self.fd.as_raw_fd(), UFFDIO_WAKE as _, &mut range) })
    }

    /// The raw descriptor, for poll.
    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Reads one event without blocking (poll first). `Ok(None)` when there was none.
    pub fn read_event(&self) -> io::Result<Option<UffdMsg>> {
        let mut msg = UffdMsg::default();
        // SAFETY: we read at most size_of::<UffdMsg>() bytes into `msg`, a plain repr(C)
        // record for which every bit pattern is valid.
        let n = unsafe {
            libc::read(
                self.fd.as_raw_fd(),
                (&mut msg as *mut UffdMsg).cast(),
                size_of::<UffdMsg>(),
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::EINTR) | Some(libc::EAGAIN) => Ok(None),
                _ => Err(e),
            };
        }
        if n as usize != size_of::<UffdMsg>() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "short read from userfaultfd",
            ));
        }
        Ok(Some(msg))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ioctl_numbers_match_the_kernel_headers() {
        assert_eq!(UFFDIO_API, 0xc018aa3f);
        assert_eq!(UFFDIO_REGISTER, 0xc020aa00);
        assert_eq!(UFFDIO_WAKE, 0x8010aa02);
        assert_eq!(UFFDIO_COPY, 0xc028aa03);
        assert_eq!(UFFDIO_WRITEPROTECT, 0xc018aa06);
        assert_eq!(size_of::<UffdMsg>(), 32);
    }
}
