//! `memlink doctor`: probes the kernel features memlink relies on.

use std::process::ExitCode;

/// One probe: its name, what needs it, and its outcome.
struct Probe {
    feature: &'static str,
    needed_by: &'static str,
    outcome: Result<(), String>,
}

pub fn run() -> ExitCode {
    let probes = [
        Probe {
            feature: "memfd_create + seals",
            needed_by: "segments",
            outcome: probe_memfd(),
        },
        Probe {
            feature: "mmap MAP_FIXED_NOREPLACE",
            needed_by: "the shared window, DSM region",
            outcome: probe_fixed_noreplace(),
        },
        Probe {
            feature: "futex wait/wake",
            needed_by: "blocking channels, process descriptors",
            outcome: probe_futex(),
        },
        Probe {
            feature: "pidfd_open",
            needed_by: "peer liveness checks",
            outcome: probe_pidfd(),
        },
        Probe {
            feature: "userfaultfd (UFFD_USER_MODE_ONLY)",
            needed_by: "DSM --backend uffd (sigsegv works without it)",
            outcome: probe_userfaultfd(),
        },
    ];
    let mut required_missing = false;
    for probe in &probes {
        match &probe.outcome {
            Ok(()) => println!("ok       {:<36} {}", probe.feature, probe.needed_by),
            Err(why) => {
                println!("MISSING  {:<36} {}: {why}", probe.feature, probe.needed_by);
                if !probe.feature.starts_with("userfaultfd") {
                    required_missing = true;
                }
            }
        }
    }
    if required_missing {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn last_os_error() -> String {
    std::io::Error::last_os_error().to_string()
}

fn probe_memfd() -> Result<(), String> {
    // SAFETY: the name is a NUL-terminated literal; memfd_create has no other inputs.
    let fd = unsafe {
        libc::memfd_create(
            c"memlink-doctor".as_ptr(),
            libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING,
        )
    };
    if fd < 0 {
        return Err(last_os_error());
    }
    // SAFETY: fd is a memfd we own; F_ADD_SEALS takes an int flag set.
    let sealed = unsafe {
        libc::fcntl(
            fd,
            libc::F_ADD_SEALS,
            libc::F_SEAL_SHRINK | libc::F_SEAL_GROW,
        )
    };
    let result = if sealed < 0 {
        Err(last_os_error())
    } else {
        Ok(())
    };
    // SAFETY: fd is ours and closed exactly once.
    unsafe { libc::close(fd) };
    result
}

fn probe_fixed_noreplace() -> Result<(), String> {
    const LEN: usize = 1 << 16;
    // SAFETY: an anonymous PROT_NONE reservation touches no existing mapping.
    let first = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            LEN,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if first == libc::MAP_FAILED {
        return Err(last_os_error());
    }
    // SAFETY: MAP_FIXED_NOREPLACE over our own reservation must fail with EEXIST and
    // never replace it; on success (an old kernel ignoring the flag) we unmap below.
    let second = unsafe {
        libc::mmap(
            first,
            LEN,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE,
            -1,
            0,
        )
    };
    let errno = std::io::Error::last_os_error().raw_os_error();
    let result = if second == libc::MAP_FAILED && errno == Some(libc::EEXIST) {
        Ok(())
    } else {
        Err("the kernel ignored MAP_FIXED_NOREPLACE (needs Linux 4.17+)".to_string())
    };
    // SAFETY: `first` is our own reservation of LEN bytes; no references into it exist.
    unsafe { libc::munmap(first, LEN) };
    result
}

fn probe_futex() -> Result<(), String> {
    let word = std::sync::atomic::AtomicU32::new(1);
    // SAFETY: FUTEX_WAKE on a live, aligned u32 wakes nobody and reads nothing else.
    let woken = unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE,
            1,
            std::ptr::null::<libc::timespec>(),
        )
    };
    if woken < 0 {
        Err(last_os_error())
    } else {
        Ok(())
    }
}

fn probe_pidfd() -> Result<(), String> {
    // SAFETY: pidfd_open on our own pid with no flags returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, libc::getpid(), 0) };
    if fd < 0 {
        return Err(last_os_error());
    }
    // SAFETY: fd is the pidfd just opened, closed exactly once.
    unsafe { libc::close(fd as libc::c_int) };
    Ok(())
}

fn probe_userfaultfd() -> Result<(), String> {
    const UFFD_USER_MODE_ONLY: libc::c_int = 1;
    // SAFETY: userfaultfd takes only flags and returns a new fd or -1.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_userfaultfd,
            libc::O_CLOEXEC | libc::O_NONBLOCK | UFFD_USER_MODE_ONLY,
        )
    };
    if fd < 0 {
        return Err(last_os_error());
    }
    // SAFETY: fd is the userfaultfd just opened, closed exactly once.
    unsafe { libc::close(fd as libc::c_int) };
    Ok(())
}
