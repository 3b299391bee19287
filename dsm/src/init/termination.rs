//! SIGINT and SIGTERM sent to a launcher while it runs node processes: caught, and handed to
//! every running [`launch`](super::launch), which passes the signal on to its nodes, waits
//! for them and returns [`LaunchError::Interrupted`](super::LaunchError::Interrupted).
//!
//! The handler only writes the signal number into a pipe (async-signal-safe); a dispatcher
//! thread reads it and calls each subscriber. The handlers are installed while at least one
//! launch subscribes and the process's previous dispositions are restored when the last one
//! ends, so outside launches SIGINT and SIGTERM do what they did before. A signal caught just
//! as the last launch ended is raised again under the restored disposition, never lost.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};

/// The signals a launcher passes on to its nodes.
pub const FORWARDED: [libc::c_int; 2] = [libc::SIGINT, libc::SIGTERM];

type Notify = Box<dyn Fn(libc::c_int) + Send>;

struct Registry {
    subscribers: Vec<(u64, Notify)>,
    next_id: u64,
    /// The dispositions in place before the first subscriber, while handlers are installed.
    saved: Option<[libc::sigaction; FORWARDED.len()]>,
}

// SAFETY: `libc::sigaction` is plain data (a handler address, a mask, flags); the registry is
// only reached through its mutex.
unsafe impl Send for Registry {}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    subscribers: Vec::new(),
    next_id: 0,
    saved: None,
});

/// The write end of the signal pipe, for the handler (-1 before the pipe exists).
static WAKE_FD: AtomicI32 = AtomicI32::new(-1);

/// The pipe and its dispatcher thread, created once and kept for the life of the process (so
/// the handler never writes to a descriptor that was closed and reused).
static PIPE: OnceLock<io::Result<()>> = OnceLock::new();

fn registry() -> MutexGuard<'static, Registry> {
    REGISTRY.lock().unwrap_or_else(|p| p.into_inner())
}

extern "C" fn on_signal(sig: libc::c_int) {
    // SAFETY: __errno_location returns this thread's errno slot; saving and restoring it keeps
    // the interrupted code's errno intact across the write below.
    let errno = unsafe { *libc::__errno_location() };
    let fd = WAKE_FD.load(Ordering::Relaxed);
    if fd >= 0 {
        let byte = sig as u8;
        // SAFETY: write is async-signal-safe; `fd` is the pipe's non-blocking write end, which
        // is never closed, and `byte` is a live one-byte buffer. A full pipe drops the byte:
        // signals already queued there stand for it.
        unsafe { libc::write(fd, (&raw const byte).cast(), 1) };
    }
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = errno };
}

fn start_pipe() -> io::Result<()> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` is a live array of the two ints pipe2 fills.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 just created both descriptors and nothing else owns them.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: fcntl on a descriptor this function owns only changes its flags.
    if unsafe { libc::fcntl(write.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) } != 0 {
        return Err(io::Error::last_os_error());
    }
    std::thread::Builder::new()
        .name("memlink-launch-signals".into())
        .spawn(move || dispatch(read))?;
    // The write end lives as long as the process: the handler may use it at any time.
    WAKE_FD.store(
        std::mem::ManuallyDrop::new(write).as_raw_fd(),
        Ordering::SeqCst,
    );
    Ok(())
}

/// Reads caught signals from the pipe and hands each to every subscriber.
fn dispatch(read: OwnedFd) {
    loop {
        let mut byte = 0u8;
        // SAFETY: `read` is the pipe's open read end, owned by this thread; `byte` is a live
        // one-byte buffer.
        let n = unsafe { libc::read(read.as_raw_fd(), (&raw mut byte).cast(), 1) };
        if n != 1 {
            if n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return;
        }
        let sig = libc::c_int::from(byte);
        let reg = registry();
        if reg.subscribers.is_empty() {
            // Caught as the last launch ended: its disposition is restored now (under this
            // lock), so raising it again does what the process would have done.
            drop(reg);
            // SAFETY: raise only sends a signal to this process.
            unsafe { libc::raise(sig) };
            continue;
        }
        for (_, notify) in &reg.subscribers {
            notify(sig);
        }
    }
}

/// A launch's subscription; dropping it unsubscribes (and restores the dispositions after
/// the last one).
pub(super) struct Subscription {
    id: u64,
}

/// Calls `notify` with every SIGINT or SIGTERM the process receives until the subscription
/// is dropped.
pub(super) fn subscribe(notify: impl Fn(libc::c_int) + Send + 'static) -> io::Result<Subscription> {
    if let Err(e) = PIPE.get_or_init(start_pipe) {
        return Err(io::Error::new(e.kind(), e.to_string()));
    }
    let mut reg = registry();
    if reg.saved.is_none() {
        reg.saved = Some(install()?);
    }
    let id = reg.next_id;
    reg.next_id += 1;
    reg.subscribers.push((id, Box::new(notify)));
    Ok(Subscription { id })
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut reg = registry();
        reg.subscribers.retain(|(id, _)| *id != self.id);
        if reg.subscribers.is_empty() {
            if let Some(saved) = reg.saved.take() {
                restore(&saved);
            }
        }
    }
}

/// Installs the handler for every forwarded signal; returns the previous dispositions.
fn install() -> io::Result<[libc::sigaction; FORWARDED.len()]> {
    // SAFETY: an all-zero sigaction is a valid value (SIG_DFL, empty mask, no flags).
    let mut saved: [libc::sigaction; FORWARDED.len()] = unsafe { std::mem::zeroed() };
    // SAFETY: as above; the fields are set below.
    let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
    action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    action.sa_flags = libc::SA_RESTART;
    // SAFETY: sa_mask is a live sigset_t of this struct.
    unsafe { libc::sigemptyset(&mut action.sa_mask) };
    for (i, sig) in FORWARDED.into_iter().enumerate() {
        // SAFETY: `action` and `saved[i]` are live sigaction structs; on_signal only does
        // async-signal-safe work.
        if unsafe { libc::sigaction(sig, &action, &mut saved[i]) } != 0 {
            let e = io::Error::last_os_error();
            restore(&saved[..i]);
            return Err(e);
        }
    }
    Ok(saved)
}

fn restore(saved: &[libc::sigaction]) {
    for (sig, old) in FORWARDED.into_iter().zip(saved) {
        // SAFETY: `old` is a disposition sigaction returned for `sig` earlier.
        unsafe { libc::sigaction(sig, old, std::ptr::null_mut()) };
    }
}

/// The signal's name, for messages.
pub fn signal_name(sig: libc::c_int) -> String {
    match sig {
        libc::SIGINT => "SIGINT".into(),
        libc::SIGTERM => "SIGTERM".into(),
        libc::SIGKILL => "SIGKILL".into(),
        other => format!("signal {other}"),
    }
}
