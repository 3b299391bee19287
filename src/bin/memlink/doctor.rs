//! `memlink doctor`: checks that this machine offers what memlink needs (the kernel
//! version, the page size, the mapping limit against a DSM region, the system calls) and
//! ends with one verdict line.

use std::process::ExitCode;

use clap::Args;

use memlink::ipc_bench::size::{format_size, parse_size};

/// Options of `memlink doctor`.
#[derive(Args)]
pub struct DoctorArgs {
    /// The DSM region to check vm.max_map_count against (binary suffixes K, M, G). The
    /// default is the region of `memlink dsm run` at its default sizes; `--region 256M`
    /// checks for jacobi at 4096 x 4096 (`memlink dsm scale --size 4096`).
    #[arg(long, value_name = "SIZE", default_value = "256K")]
    region: String,
}

/// The oldest kernel memlink is built and tested for (userfaultfd's user-mode-only flag).
const MIN_KERNEL: (u32, u32) = (5, 11);
/// The page size the DSM and the segments are laid out for.
const PAGE_SIZE: usize = 4096;
/// The most pages a DSM region holds (page numbers are 32-bit).
const MAX_REGION_PAGES: u64 = 1 << 32;

/// How one check came out.
enum Outcome {
    /// What memlink needs is there.
    Ok(String),
    /// Missing: memlink does not work here.
    Missing(String),
    /// Works, but something can fail later (said how to avoid it).
    Warn(String),
    /// Missing, and memlink uses a fallback that works without it.
    Fallback(String),
}

/// One check: what it checks, what needs it, and its outcome.
struct Check {
    feature: &'static str,
    needed_by: &'static str,
    outcome: Outcome,
}

pub fn run(args: DoctorArgs) -> ExitCode {
    let region = match parse_region(&args.region) {
        Ok(bytes) => bytes,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let checks = [
        Check {
            feature: "Linux 5.11 or newer",
            needed_by: "everything (userfaultfd user mode, pidfd, MAP_FIXED_NOREPLACE)",
            outcome: check_kernel(),
        },
        Check {
            feature: "4 KiB pages",
            needed_by: "segments, the DSM's page layout",
            outcome: check_page_size(),
        },
        Check {
            feature: "vm.max_map_count",
            needed_by: "the DSM region: one mapping per run of equally protected pages",
            outcome: check_max_map_count(region),
        },
        Check {
            feature: "memfd_create + seals",
            needed_by: "segments",
            outcome: probed(probe_memfd()),
        },
        Check {
            feature: "mmap MAP_FIXED_NOREPLACE",
            needed_by: "the shared window, DSM region",
            outcome: probed(probe_fixed_noreplace()),
        },
        Check {
            feature: "futex wait/wake",
            needed_by: "blocking channels, process descriptors",
            outcome: probed(probe_futex()),
        },
        Check {
            feature: "pidfd_open",
            needed_by: "peer liveness checks",
            outcome: probed(probe_pidfd()),
        },
        Check {
            feature: "unprivileged userfaultfd",
            needed_by: "DSM --backend uffd",
            outcome: check_userfaultfd(),
        },
    ];
    let (mut missing, mut warnings, mut fallbacks) = (Vec::new(), 0, 0);
    for check in &checks {
        let (tag, text) = match &check.outcome {
            Outcome::Ok(text) => ("ok", text),
            Outcome::Missing(text) => {
                missing.push(check.feature);
                ("MISSING", text)
            }
            Outcome::Warn(text) => {
                warnings += 1;
                ("WARN", text)
            }
            Outcome::Fallback(text) => {
                fallbacks += 1;
                ("fallback", text)
            }
        };
        println!("{tag:<9}{:<28} {}: {text}", check.feature, check.needed_by);
    }
    if !missing.is_empty() {
        println!(
            "verdict: memlink cannot run here: missing {}",
            missing.join(", ")
        );
        return ExitCode::FAILURE;
    }
    let mut notes = Vec::new();
    if warnings > 0 {
        notes.push(format!("{warnings} warning(s) above"));
    }
    if fallbacks > 0 {
        notes.push("the DSM uses --backend sigsegv".to_string());
    }
    if notes.is_empty() {
        println!("verdict: memlink can run here, every check passed");
    } else {
        println!("verdict: memlink can run here ({})", notes.join("; "));
    }
    ExitCode::SUCCESS
}

fn probed(result: Result<(), String>) -> Outcome {
    match result {
        Ok(()) => Outcome::Ok("works".into()),
        Err(why) => Outcome::Missing(why),
    }
}

/// `--region`: a size in bytes, at least one page, at most the 2^32 pages a region holds.
fn parse_region(text: &str) -> Result<usize, String> {
    let bytes = parse_size(text).map_err(|e| format!("--region {text}: {e}"))?;
    let pages = bytes.div_ceil(PAGE_SIZE) as u64;
    if pages > MAX_REGION_PAGES {
        return Err(format!(
            "--region {text}: a DSM region holds at most 2^32 pages (16384G)"
        ));
    }
    Ok(bytes)
}

/// The kernel release as (major, minor), from uname.
fn kernel_release() -> Result<(String, (u32, u32)), String> {
    // SAFETY: utsname is plain data; an all-zero value is valid.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `uts` is a writable utsname.
    if unsafe { libc::uname(&mut uts) } != 0 {
        return Err(last_os_error());
    }
    // SAFETY: uname filled `release` with a NUL-terminated string within the array.
    let release = unsafe { std::ffi::CStr::from_ptr(uts.release.as_ptr()) }
        .to_string_lossy()
        .into_owned();
    let version = parse_release(&release).ok_or_else(|| format!("cannot read {release:?}"))?;
    Ok((release, version))
}

/// `6.18.44-fc` -> (6, 18).
fn parse_release(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

fn check_kernel() -> Outcome {
    match kernel_release() {
        Ok((release, version)) if version >= MIN_KERNEL => Outcome::Ok(format!("Linux {release}")),
        Ok((release, _)) => Outcome::Missing(format!(
            "Linux {release} is older than {}.{}",
            MIN_KERNEL.0, MIN_KERNEL.1
        )),
        Err(why) => Outcome::Missing(why),
    }
}

fn check_page_size() -> Outcome {
    // SAFETY: sysconf has no memory inputs.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if size == PAGE_SIZE as libc::c_long {
        Outcome::Ok("4096 bytes".into())
    } else {
        Outcome::Missing(format!(
            "pages are {size} bytes here; memlink is laid out for 4096"
        ))
    }
}

fn check_max_map_count(region: usize) -> Outcome {
    let read = |path: &str| std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"));
    let limit: u64 = match read("/proc/sys/vm/max_map_count")
        .and_then(|t| t.trim().parse().map_err(|e| format!("{t:?}: {e}")))
    {
        Ok(limit) => limit,
        Err(why) => return Outcome::Warn(format!("cannot read the limit ({why})")),
    };
    // What the process maps besides the region (its binary, libraries, stacks, heap).
    let in_use = read("/proc/self/maps").map_or(0, |m| m.lines().count() as u64);
    let pages = region.div_ceil(PAGE_SIZE) as u64;
    // At worst every page of the region has a protection unlike its neighbours' (one
    // mapping each), plus the region's second, fill mapping.
    let worst = pages + 1 + in_use;
    let region = format_size(region);
    if worst <= limit {
        Outcome::Ok(format!(
            "{limit}, enough for a {region} region ({pages} pages) even if every page has its own mapping"
        ))
    } else {
        // The kernel takes at most INT_MAX.
        let advice = if worst <= i32::MAX as u64 {
            format!(
                "raise it with `sysctl -w vm.max_map_count={}` or use a smaller region",
                worst.next_power_of_two().min(i32::MAX as u64)
            )
        } else {
            "no vm.max_map_count is that large: use a smaller region".to_string()
        };
        Outcome::Warn(format!(
            "{limit} is below the {worst} mappings a {region} region ({pages} pages) needs at worst \
             (each page protected unlike its neighbours); a node that hits the limit fails with ENOMEM: {advice}"
        ))
    }
}

fn check_userfaultfd() -> Outcome {
    let sysctl = std::fs::read_to_string("/proc/sys/vm/unprivileged_userfaultfd")
        .map(|t| format!("vm.unprivileged_userfaultfd = {}", t.trim()))
        .unwrap_or_else(|_| "vm.unprivileged_userfaultfd absent".into());
    match probe_userfaultfd() {
        Ok(()) => Outcome::Ok(format!("user-mode-only userfaultfd opens ({sysctl})")),
        Err(why) => Outcome::Fallback(format!(
            "{why} ({sysctl}); the DSM's --backend sigsegv works without it"
        )),
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
