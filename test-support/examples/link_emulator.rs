//! A slow, lossy Ethernet hub in user space, for kernels without `tc netem` (sch_netem):
//! it creates TAP devices, and every frame that enters one leaves through each of the others
//! after a fixed delay, unless it is dropped (each copy with the given probability). Move the
//! TAP devices into network namespaces and they are those hosts' links: a one-way delay of D
//! gives a round trip of 2 D between any two hosts, as `tc netem delay D` on every host's
//! link does. `scripts/netns-cluster.sh` uses it when `tc netem` is not available.
//!
//! ```text
//! link_emulator --delay-us 1000 --loss-percent 1 tap0 tap1 tap2
//! ```
//! Prints `ready` on stdout once the devices exist; runs until killed. Frames to a device
//! that is down are dropped (as on a cut cable). Every second in which it forwarded frames it
//! prints how late it forwarded them past their due time (`late_us median=.. max=..`): the
//! emulator's own latency on top of the delay. Its timer slack is 1 ns (not the default
//! 50 µs), so it wakes when a frame is due.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

/// The largest frame a TAP device hands over (MTU 1500 plus headers, with room to spare).
const FRAME_MAX: usize = 65_536;
/// At most this many frames wait per device; beyond it a frame is dropped (a full queue).
const QUEUE_MAX: usize = 10_000;

struct Port {
    tap: File,
    queue: VecDeque<(Instant, Vec<u8>)>,
}

fn open_tap(name: &str) -> io::Result<File> {
    let tap = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")?;
    // SAFETY: an all-zero ifreq is a valid value of this plain C struct.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    if name.len() >= req.ifr_name.len() {
        return Err(io::Error::other(format!(
            "device name {name:?} is too long"
        )));
    }
    for (dst, src) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *dst = src as libc::c_char;
    }
    req.ifr_ifru.ifru_flags = (libc::IFF_TAP | libc::IFF_NO_PI) as libc::c_short;
    // SAFETY: TUNSETIFF reads and writes one ifreq, which `req` is, on the open tun device.
    if unsafe { libc::ioctl(tap.as_raw_fd(), libc::TUNSETIFF, &mut req) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(tap)
}

/// A small xorshift generator: the drops need no more than that.
struct Dice(u64);

impl Dice {
    fn roll(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn usage() -> ! {
    eprintln!("usage: link_emulator --delay-us N --loss-percent P TAP TAP [TAP...]");
    std::process::exit(2)
}

fn main() -> io::Result<()> {
    let mut args = std::env::args().skip(1);
    let (mut delay_us, mut loss, mut names) = (0u64, 0f64, Vec::new());
    while let Some(a) = args.next() {
        match a.as_str() {
            "--delay-us" => {
                delay_us = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| usage())
            }
            "--loss-percent" => {
                loss = args
                    .next()
                    .and_then(|v| v.parse::<f64>().ok())
                    .unwrap_or_else(|| usage())
                    / 100.0
            }
            _ => names.push(a),
        }
    }
    if names.len() < 2 || !(0.0..=1.0).contains(&loss) {
        usage();
    }
    let delay = Duration::from_micros(delay_us);
    let mut ports = names
        .iter()
        .map(|n| {
            open_tap(n).map(|tap| Port {
                tap,
                queue: VecDeque::new(),
            })
        })
        .collect::<io::Result<Vec<_>>>()?;
    // Wake when the next frame is due, not up to 50 µs later (the default slack a timer may
    // be deferred by, which would lengthen every delay).
    // SAFETY: PR_SET_TIMERSLACK takes a plain integer and changes only this thread's slack.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong, 0, 0, 0) };
    let seed = std::process::id() as u64 ^ Instant::now().elapsed().as_nanos() as u64;
    let mut dice = Dice(seed | 1);
    println!("ready");
    io::stdout().flush()?;
    let mut buf = vec![0u8; FRAME_MAX];
    let mut late_us: Vec<u64> = Vec::new();
    let mut reported = Instant::now();
    loop {
        if reported.elapsed() >= Duration::from_secs(1) {
            if !late_us.is_empty() {
                late_us.sort_unstable();
                println!(
                    "late_us median={} max={} frames={}",
                    late_us[late_us.len() / 2],
                    late_us[late_us.len() - 1],
                    late_us.len()
                );
                io::stdout().flush()?;
                late_us.clear();
            }
            reported = Instant::now();
        }
        // Sleep until a frame arrives or the next queued one is due.
        let now = Instant::now();
        let next_due = ports
            .iter()
            .filter_map(|p| p.queue.front().map(|(t, _)| *t))
            .min();
        let wait = next_due.map(|t| t.saturating_duration_since(now));
        let mut fds: Vec<libc::pollfd> = ports
            .iter()
            .map(|p| libc::pollfd {
                fd: p.tap.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        let ts = wait.map(|w| libc::timespec {
            tv_sec: w.as_secs() as libc::time_t,
            tv_nsec: w.subsec_nanos() as libc::c_long,
        });
        let ts_ptr = ts
            .as_ref()
            .map_or(std::ptr::null(), |t| t as *const libc::timespec);
        // SAFETY: `fds` is a live array of fds.len() pollfds on open descriptors; `ts_ptr` is
        // null or points at `ts`, alive for the call; no signal mask is passed.
        let rc = unsafe {
            libc::ppoll(
                fds.as_mut_ptr(),
                fds.len() as libc::nfds_t,
                ts_ptr,
                std::ptr::null(),
            )
        };
        if rc < 0 && io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            return Err(io::Error::last_os_error());
        }
        let arrived = Instant::now();
        for i in 0..ports.len() {
            if fds[i].revents & libc::POLLIN == 0 {
                continue;
            }
            let n = match ports[i].tap.read(&mut buf) {
                Ok(n) => n,
                Err(_) => continue,
            };
            for (j, port) in ports.iter_mut().enumerate() {
                if j != i && dice.roll() >= loss && port.queue.len() < QUEUE_MAX {
                    port.queue.push_back((arrived + delay, buf[..n].to_vec()));
                }
            }
        }
        let now = Instant::now();
        for port in &mut ports {
            while port.queue.front().is_some_and(|(t, _)| *t <= now) {
                if let Some((due, frame)) = port.queue.pop_front() {
                    // A device that is down refuses the frame: it is lost, as on a cut link.
                    let _ = port.tap.write(&frame);
                    late_us.push(due.elapsed().as_micros() as u64);
                }
            }
        }
    }
}
