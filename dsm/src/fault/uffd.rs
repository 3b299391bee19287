//! The userfaultfd fault backend: the application view is registered for missing-page and
//! write-protect faults; the kernel parks a faulting thread and queues an event, which a service
//! thread reads and resolves through the [`FaultResolver`]. The resolver installs the page with
//! `UFFDIO_COPY` (fill and map in one step) or lifts write protection, which wakes the thread.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;
use std::thread::JoinHandle;

use super::userfaultfd::{UFFD_EVENT_PAGEFAULT, UFFD_PAGEFAULT_FLAG_WRITE, Userfaultfd};
use super::{FaultError, report_unservable};
use crate::mapping::Mapping;
use crate::types::{Access, DsmError, FaultResolver, PAGE_SIZE};

/// A running userfaultfd fault service for one mapping. Dropping it stops the service thread
/// (application threads must no longer touch the region).
#[derive(Debug)]
pub struct UffdService {
    stop_write: Option<OwnedFd>,
    thread: Option<JoinHandle<()>>,
}

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two fds into the two-element array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both fds are fresh and owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

impl UffdService {
    /// Starts the service thread for `mapping`, which must have been created for
    /// [`Backend::Uffd`](crate::Backend::Uffd).
    pub fn start(
        mapping: Arc<Mapping>,
        resolver: Arc<dyn FaultResolver>,
    ) -> Result<UffdService, FaultError> {
        let uffd = mapping
            .userfaultfd()
            .cloned()
            .ok_or(FaultError::WrongMapping)?;
        let (stop_read, stop_write) = pipe().map_err(FaultError::Thread)?;
        let thread = std::thread::Builder::new()
            .name("dsm-uffd".into())
            .spawn(move || serve(&uffd, &mapping, &*resolver, stop_read))
            .map_err(FaultError::Thread)?;
        Ok(UffdService {
            stop_write: Some(stop_write),
            thread: Some(thread),
        })
    }
}

fn serve(uffd: &Userfaultfd, mapping: &Mapping, resolver: &dyn FaultResolver, stop: OwnedFd) {
    let base = mapping.base() as usize;
    loop {
        let mut fds = [
            libc::pollfd {
                fd: uffd.raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: stop.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: poll reads and writes the two pollfd records of the live array.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
        if n < 0 {
            if io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            eprintln!(
                "memlink-dsm: poll on userfaultfd failed: {}",
                io::Error::last_os_error()
            );
            return;
        }
        if fds[1].revents != 0 {
            return;
        }
        if fds[0].revents & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0 {
            eprintln!("memlink-dsm: the userfaultfd reported an error; fault service ends");
            return;
        }
        if fds[0].revents & libc::POLLIN == 0 {
            continue;
        }
        let msg = match uffd.read_event() {
            Ok(Some(msg)) => msg,
            Ok(None) => continue,
            Err(e) => {
                eprintln!("memlink-dsm: reading userfaultfd failed: {e}");
                return;
            }
        };
        if msg.event != UFFD_EVENT_PAGEFAULT {
            continue;
        }
        let addr = msg.address as usize;
        let Some(page) = mapping.page_of(addr) else {
            continue;
        };
        let access = if msg.flags & UFFD_PAGEFAULT_FLAG_WRITE != 0 {
            Access::Write
        } else {
            Access::Read
        };
        if mapping.access(page) < access {
            match resolver.resolve_fault(page, access) {
                Ok(()) => {}
                // The node left: this is a stale event (the kernel may queue a fault again
                // when the waiting thread was woken before the page came); no application
                // thread uses the region any more.
                Err(DsmError::ShutDown) => {}
                // The rights do not allow this access. The faulting thread waits in the
                // kernel, out of reach of a signal of its own: the process gets the SIGSEGV.
                Err(DsmError::Denied { .. }) => {
                    eprintln!(
                        "memlink-dsm: {access:?} access at {addr:#x} (page {page}) refused: no \
                         capability allows it"
                    );
                    // SAFETY: resetting SIGSEGV to its default action and raising it ends the
                    // process, as the kernel's protection fault would.
                    unsafe {
                        libc::signal(libc::SIGSEGV, libc::SIG_DFL);
                        libc::raise(libc::SIGSEGV);
                    }
                }
                Err(e) => {
                    eprintln!("memlink-dsm: cannot serve a {access:?} fault on page {page}: {e}");
                    report_unservable(page);
                }
            }
        }
        // The resolver's UFFDIO_COPY or write-protect change woke the thread already, unless
        // the page was served before this event was read: wake it in any case.
        let start = base + page as usize * PAGE_SIZE;
        let _ = uffd.wake(start, PAGE_SIZE);
    }
}

impl Drop for UffdService {
    fn drop(&mut self) {
        drop(self.stop_write.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
