//! The SIGSEGV fault backend: application pages are protected with `mprotect`; an access the
//! protection forbids raises SIGSEGV, whose handler only records the faulting page and access
//! in a lock-free slot and sleeps on a futex until the service thread has resolved it through
//! the [`FaultResolver`]; then the faulting instruction is retried.
//!
//! The handler is installed once per process (`SA_SIGINFO | SA_ONSTACK`, so it runs on the
//! thread's alternate stack when there is one) and serves every registered region; a fault
//! outside every region goes to the handler that was there before (Rust's stack-overflow
//! handler, or the default action), so a real segmentation fault still crashes the process.

use std::io;
use std::sync::atomic::{AtomicPtr, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;

use super::{FaultError, report_unservable};
use crate::fault_slots::{FaultSlots, Outcome, SLOTS};
use crate::mapping::Mapping;
use crate::types::{Access, DsmError, FaultResolver, PAGE_SIZE};

/// What the handler needs of one region: its bounds, its page table and its mailbox.
struct Registered {
    start: usize,
    len: usize,
    mapping: Arc<Mapping>,
    slots: FaultSlots,
}

/// One entry of the process-wide registry, read by the handler without locks.
struct Entry {
    registered: AtomicPtr<Registered>,
    /// Handlers currently using `registered`; unregistering waits for zero.
    users: AtomicU32,
}

const MAX_REGIONS: usize = 16;

#[allow(clippy::declare_interior_mutable_const)]
const EMPTY: Entry = Entry {
    registered: AtomicPtr::new(std::ptr::null_mut()),
    users: AtomicU32::new(0),
};
static REGISTRY: [Entry; MAX_REGIONS] = [EMPTY; MAX_REGIONS];

/// The handler that was installed before ours (set once, before ours is installed).
static PREVIOUS: OnceLock<libc::sigaction> = OnceLock::new();
/// Serialises registration and installation (never taken by the handler).
static INSTALL: Mutex<()> = Mutex::new(());
/// Faults served by the handler since the process started (for tests and stats).
static SERVED: AtomicUsize = AtomicUsize::new(0);

/// A running SIGSEGV fault service for one mapping. Dropping it stops the service thread and
/// unregisters the region (application threads must no longer touch it).
pub struct SigsegvService {
    index: usize,
    registered: *mut Registered,
    thread: Option<JoinHandle<()>>,
}

// SAFETY: `registered` points to a heap record owned by this service, which only the handler
// (through the registry) and the service thread read; dropping it is synchronised in Drop.
unsafe impl Send for SigsegvService {}
// SAFETY: as above; no method mutates through `registered`.
unsafe impl Sync for SigsegvService {}

impl std::fmt::Debug for SigsegvService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigsegvService")
            .field("index", &self.index)
            .finish()
    }
}

/// Decodes whether the faulting access was a write, where the architecture tells.
///
/// # Safety
/// `context` must be the `ucontext_t` pointer handed to a SA_SIGINFO handler for a SIGSEGV.
unsafe fn fault_was_write(context: *mut libc::c_void) -> Option<bool> {
    #[cfg(all(target_arch = "x86_64", target_env = "gnu"))]
    {
        let uc = context.cast::<libc::ucontext_t>();
        // SAFETY: the caller passes the kernel's ucontext for this signal; REG_ERR holds the
        // page-fault error code, whose bit 1 is set for a write access.
        let err = unsafe { (*uc).uc_mcontext.gregs[libc::REG_ERR as usize] };
        Some(err & 2 != 0)
    }
    #[cfg(all(target_arch = "aarch64", target_os = "linux"))]
    {
        const ESR_MAGIC: u32 = 0x4553_5201;
        let uc = context.cast::<libc::ucontext_t>();
        // SAFETY: the caller passes the kernel's ucontext; its mcontext ends with the
        // 16-aligned __reserved area of context records, each headed by (magic, size), ended
        // by a zero magic; the ESR record holds the exception syndrome, whose bit 6 (WnR) is
        // set for a write data abort.
        unsafe {
            let pstate = std::ptr::addr_of!((*uc).uc_mcontext.pstate) as usize;
            let mut rec = (pstate + 8 + 15) & !15;
            let end = rec + 4096;
            while rec + 8 <= end {
                let magic = *(rec as *const u32);
                let size = *((rec + 4) as *const u32) as usize;
                if magic == 0 || size < 8 {
                    break;
                }
                if magic == ESR_MAGIC {
                    let esr = *((rec + 8) as *const u64);
                    return Some(esr & (1 << 6) != 0);
                }
                rec += size;
            }
        }
        None
    }
    #[cfg(not(any(
        all(target_arch = "x86_64", target_env = "gnu"),
        all(target_arch = "aarch64", target_os = "linux")
    )))]
    {
        let _ = context;
        None
    }
}

/// Finds the registered region holding `addr` and counts this handler as its user.
fn enter(addr: usize) -> Option<(&'static Entry, &'static Registered)> {
    for entry in &REGISTRY {
        let ptr = entry.registered.load(Ordering::Acquire);
        if ptr.is_null() {
            continue;
        }
        entry.users.fetch_add(1, Ordering::AcqRel);
        if entry.registered.load(Ordering::Acquire) != ptr {
            entry.users.fetch_sub(1, Ordering::AcqRel);
            continue;
        }
        // SAFETY: `ptr` is non-null and still registered after we counted ourselves as a
        // user, and unregistering waits for users to drop to zero before freeing it.
        let reg = unsafe { &*ptr };
        if addr >= reg.start && addr < reg.start + reg.len {
            return Some((entry, reg));
        }
        entry.users.fetch_sub(1, Ordering::AcqRel);
    }
    None
}

extern "C" fn handle_sigsegv(
    sig: libc::c_int,
    info: *mut libc::siginfo_t,
    context: *mut libc::c_void,
) {
    // SAFETY: the kernel passes a valid siginfo for a SA_SIGINFO handler; si_addr is the
    // faulting address for SIGSEGV.
    let addr = unsafe { (*info).si_addr() } as usize;
    let Some((entry, reg)) = enter(addr) else {
        // SAFETY: same arguments as we received, for the previous handler.
        unsafe { chain(sig, info, context) };
        return;
    };
    let page = ((addr - reg.start) / PAGE_SIZE) as u32;
    let current = reg.mapping.access(page);
    // SAFETY: `context` is the ucontext of this SIGSEGV.
    let access = match unsafe { fault_was_write(context) } {
        Some(true) => Access::Write,
        Some(false) => Access::Read,
        // Unknown: a read first; a fault on a readable page can only be a write.
        None if current >= Access::Read => Access::Write,
        None => Access::Read,
    };
    // A read that faulted on a page that is readable is in fact a write (decode mismatch).
    let access = if access == Access::Read && current >= Access::Read {
        Access::Write
    } else {
        access
    };
    if current >= access {
        // Served meanwhile by another thread's fault: retry the instruction.
        entry.users.fetch_sub(1, Ordering::AcqRel);
        return;
    }
    let outcome = reg.slots.post_and_wait(page, access);
    entry.users.fetch_sub(1, Ordering::AcqRel);
    match outcome {
        Outcome::Served => {
            SERVED.fetch_add(1, Ordering::Relaxed);
        }
        Outcome::Failed => report_unservable(page),
        // The rights do not allow this access: the protection fault the kernel would give,
        // to the previous handler or the default action (death by SIGSEGV at `addr`).
        // SAFETY: the arguments the kernel passed to this handler.
        Outcome::Denied => unsafe { chain(sig, info, context) },
    }
}

/// Hands a fault outside every region to the previous handler, or to the default action.
///
/// # Safety
/// The arguments must be those the kernel passed to our SA_SIGINFO handler.
unsafe fn chain(sig: libc::c_int, info: *mut libc::siginfo_t, context: *mut libc::c_void) {
    let Some(prev) = PREVIOUS.get() else {
        restore_default(sig);
        return;
    };
    let handler = prev.sa_sigaction;
    if handler == libc::SIG_DFL || handler == libc::SIG_IGN {
        // Returning re-executes the faulting instruction, which now takes the default action
        // (the process dies of SIGSEGV, as without us).
        restore_default(sig);
    } else if prev.sa_flags & libc::SA_SIGINFO != 0 {
        // SAFETY: the previous handler was installed with SA_SIGINFO, so it has this signature.
        let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
            unsafe { std::mem::transmute(handler) };
        f(sig, info, context);
    } else {
        // SAFETY: a handler installed without SA_SIGINFO takes only the signal number.
        let f: extern "C" fn(libc::c_int) = unsafe { std::mem::transmute(handler) };
        f(sig);
    }
}

fn restore_default(sig: libc::c_int) {
    // SAFETY: a zeroed sigaction with SIG_DFL is a valid argument; sigaction is
    // async-signal-safe.
    unsafe {
        let mut dfl: libc::sigaction = std::mem::zeroed();
        dfl.sa_sigaction = libc::SIG_DFL;
        libc::sigaction(sig, &dfl, std::ptr::null_mut());
    }
}

/// Installs our handler once per process, keeping the previous one for chaining.
fn install_handler() -> io::Result<()> {
    if PREVIOUS.get().is_some() {
        return Ok(());
    }
    // SAFETY: zeroed sigaction records are valid; we only read the current SIGSEGV action.
    let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: querying the current action with a null new action changes nothing.
    if unsafe { libc::sigaction(libc::SIGSEGV, std::ptr::null(), &mut old) } < 0 {
        return Err(io::Error::last_os_error());
    }
    let _ = PREVIOUS.set(old);
    // SAFETY: a zeroed sigaction is valid; we fill in our handler, an empty mask and flags.
    let mut new: libc::sigaction = unsafe { std::mem::zeroed() };
    let handler: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
        handle_sigsegv;
    new.sa_sigaction = handler as usize;
    new.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK | libc::SA_RESTART;
    // SAFETY: sa_mask is a valid sigset_t inside `new`.
    unsafe { libc::sigemptyset(&mut new.sa_mask) };
    // SAFETY: `new` is fully initialised and its handler is async-signal-safe.
    if unsafe { libc::sigaction(libc::SIGSEGV, &new, std::ptr::null_mut()) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

impl SigsegvService {
    /// Registers `mapping`'s region with the process's SIGSEGV handler (installing it on first
    /// use) and starts the service thread that resolves its faults with `resolver`.
    pub fn start(
        mapping: Arc<Mapping>,
        resolver: Arc<dyn FaultResolver>,
    ) -> Result<SigsegvService, FaultError> {
        let _guard = INSTALL.lock().unwrap_or_else(|p| p.into_inner());
        install_handler().map_err(FaultError::Signal)?;
        let index = REGISTRY
            .iter()
            .position(|e| e.registered.load(Ordering::Acquire).is_null())
            .ok_or(FaultError::TooManyRegions { max: MAX_REGIONS })?;
        let registered = Box::into_raw(Box::new(Registered {
            start: mapping.base() as usize,
            len: mapping.len(),
            mapping: mapping.clone(),
            slots: FaultSlots::new(SLOTS),
        }));
        let shared = SharedPtr(registered);
        let thread = std::thread::Builder::new()
            .name("dsm-sigsegv".into())
            .spawn(move || {
                let shared = shared;
                // SAFETY: the record lives until Drop, which joins this thread first.
                let reg = unsafe { &*shared.0 };
                while reg.slots.serve_posted(|page, access| {
                    match resolver.resolve_fault(page, access) {
                        Ok(()) => Outcome::Served,
                        Err(DsmError::Denied { .. }) => Outcome::Denied,
                        Err(e) => {
                            eprintln!(
                                "memlink-dsm: cannot serve a {access:?} fault on page {page}: {e}"
                            );
                            Outcome::Failed
                        }
                    }
                }) {}
            })
            .map_err(FaultError::Thread)?;
        REGISTRY[index]
            .registered
            .store(registered, Ordering::Release);
        Ok(SigsegvService {
            index,
            registered,
            thread: Some(thread),
        })
    }

    /// The number of faults served by SIGSEGV handlers in this process so far.
    pub fn served_in_process() -> usize {
        SERVED.load(Ordering::Relaxed)
    }
}

struct SharedPtr(*mut Registered);
// SAFETY: the record is only read through shared references, by the handler and the service
// thread, and freed after both are done with it.
unsafe impl Send for SharedPtr {}

impl Drop for SigsegvService {
    fn drop(&mut self) {
        let entry = &REGISTRY[self.index];
        entry
            .registered
            .store(std::ptr::null_mut(), Ordering::Release);
        // SAFETY: the record is alive until the end of this function.
        let reg = unsafe { &*self.registered };
        reg.slots.stop();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        while entry.users.load(Ordering::Acquire) != 0 {
            std::thread::yield_now();
        }
        // SAFETY: the record came from Box::into_raw in start; it is unregistered, its service
        // thread has ended and no handler uses it any more.
        drop(unsafe { Box::from_raw(self.registered) });
    }
}
