//! The three ways to refer to shared objects, across two processes.
//!
//! ```sh
//! cargo run -p memlink-capability --example three_schemes            # starts its own peer
//! # or, from two shells (unrelated processes):
//! cargo run -p memlink-capability --example three_schemes -- serve /tmp/memlink-demo.sock
//! cargo run -p memlink-capability --example three_schemes -- connect /tmp/memlink-demo.sock
//! ```
//!
//! The server builds, in shared segments:
//! 1. a linked list with plain pointers inside a window reserved at the same base in
//!    both processes (scheme 1, coinciding logical addresses);
//! 2. a record holding a (segment id, offset) reference that each process translates
//!    with its own table (scheme 2, distinct logical addresses);
//! 3. a read-only capability for a counter, which the server then revokes (scheme 3).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use memlink_capability::capability::{AcquireError, Capability, Rights};
use memlink_capability::capability_transfer::{recv_capability, send_capability};
use memlink_capability::fd_passing::{recv_message, send_with_fds};
use memlink_capability::mapping::Protection;
use memlink_capability::rendezvous::{BindError, ConnectError, RendezvousListener, connect_within};
use memlink_capability::segment::Segment;
use memlink_capability::shared_ref::{SharedRef, TranslationTable};
use memlink_capability::window::{Window, WindowPtr};

type Error = Box<dyn std::error::Error>;

const WINDOW_BASE: usize = 0x6300_0000_0000;
const WINDOW_LEN: usize = 1 << 30;

#[repr(C)]
struct Node {
    value: u64,
    next: WindowPtr<Node>,
}

/// Runs the example; an error is printed for a person (Display, with the path it concerns).
fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("serve") => serve(args.get(2).ok_or("serve needs a socket path")?, None),
        Some("connect") => connect(args.get(2).ok_or("connect needs a socket path")?),
        None => {
            let path =
                std::env::temp_dir().join(format!("memlink-demo-{}.sock", std::process::id()));
            let path = path.to_str().ok_or("temp dir is not UTF-8")?.to_string();
            let exe = std::env::current_exe()?;
            serve(&path, Some(exe))
        }
        Some(other) => {
            Err(format!("unknown mode {other:?}; use serve PATH or connect PATH").into())
        }
    }
}

fn serve(path: &str, spawn_peer: Option<std::path::PathBuf>) -> Result<(), Error> {
    let listener = RendezvousListener::bind(path).map_err(|e| match e {
        BindError::Io(io) => format!("binding the rendezvous socket {path} failed: {io}"),
        other => other.to_string(),
    })?;
    println!("[server {}] listening on {path}", std::process::id());
    let mut child = match spawn_peer {
        Some(exe) => Some(
            std::process::Command::new(exe)
                .args(["connect", path])
                .spawn()?,
        ),
        None => None,
    };
    let stream = listener.accept()?;

    // Scheme 1: a list with plain pointers, in a segment mapped into the window.
    let window = Window::reserve(WINDOW_BASE, WINDOW_LEN)?;
    let list_seg = Segment::create("demo-list", 4096)?;
    let list = window.map_anywhere(&list_seg, Protection::ReadWrite)?;
    let nodes = list.as_ptr() as *mut Node;
    for i in 0..5 {
        let next = if i < 4 {
            WindowPtr::from_ptr(nodes.wrapping_add(i + 1))
        } else {
            WindowPtr::NULL
        };
        // SAFETY: 5 nodes of 16 bytes fit the 4096-byte read-write mapping.
        unsafe {
            nodes.add(i).write(Node {
                value: 10 * (i as u64 + 1),
                next,
            })
        };
    }
    println!(
        "[server] scheme 1: list head at {:p} (window offset {:#x})",
        nodes,
        list.offset()
    );

    // Scheme 2: a record at offset 256 of segment B, referenced from segment A.
    let mut table = TranslationTable::new();
    let seg_a = Segment::create("demo-a", 4096)?;
    let seg_b = Segment::create("demo-b", 4096)?;
    let (a_id, b_id) = (seg_a.id(), seg_b.id());
    table.insert(seg_a)?;
    table.insert(seg_b)?;
    let record = SharedRef::new(b_id, 256);
    // SAFETY: resolve checked bounds and alignment; both segments are read-write.
    unsafe {
        table.resolve::<u64>(record)?.write(0xC0FFEE);
        table
            .resolve::<u64>(SharedRef::new(a_id, 0))?
            .write(record.raw());
    }
    println!(
        "[server] scheme 2: {record:?} is at {:p} here",
        table.resolve::<u64>(record)?
    );

    let mut msg = Vec::new();
    for v in [window.base() as u64, list.offset() as u64, a_id.raw()] {
        msg.extend_from_slice(&v.to_le_bytes());
    }
    let seg_fds = [
        list_seg.as_fd(),
        table.segment(a_id).ok_or("a")?.as_fd(),
        table.segment(b_id).ok_or("b")?.as_fd(),
    ];
    send_with_fds(&stream, &msg, &seg_fds)?;

    // Scheme 3: a counter, passed on read-only, then revoked.
    let counter_seg = Segment::create("demo-counter", 4096)?;
    let counter = Capability::<AtomicU64>::mint(&counter_seg, 0, Rights::ALL)?;
    counter.acquire_write()?.store(42, Ordering::Release);
    send_capability(&stream, &counter.restrict(Rights::READ | Rights::GRANT)?)?;
    println!("[server] scheme 3: sent a read-only capability for the counter (42)");
    let mut byte = [0u8];
    (&stream).read_exact(&mut byte)?;
    let generation = counter_seg.revoke()?;
    println!("[server] scheme 3: revoked (generation now {generation})");
    (&stream).write_all(b"v")?;
    (&stream).read_exact(&mut byte)?;
    if let Some(child) = child.as_mut() {
        let status = child.wait()?;
        if !status.success() {
            return Err(format!("peer failed: {status}").into());
        }
    }
    println!("[server] done");
    Ok(())
}

fn connect(path: &str) -> Result<(), Error> {
    let stream: UnixStream =
        connect_within(path, Duration::from_secs(30)).map_err(|e| match e {
            ConnectError::Io(io) => {
                format!("connecting to the rendezvous socket {path} failed: {io}")
            }
            other => other.to_string(),
        })?;
    let me = std::process::id();
    let (msg, fds) = recv_message(&stream)?;
    let word = |i: usize| -> Result<u64, Error> {
        Ok(u64::from_le_bytes(msg[i * 8..i * 8 + 8].try_into()?))
    };
    let mut fds = fds.into_iter();

    // Scheme 1: same base, same offset, so the server's pointers work here unchanged.
    let window = Window::reserve(word(0)? as usize, WINDOW_LEN)?;
    let list_seg = Segment::attach(fds.next().ok_or("missing list segment")?)?;
    let list = window.map_at(&list_seg, word(1)? as usize, Protection::ReadOnly)?;
    let mut p = WindowPtr::from_ptr(list.as_ptr() as *const Node);
    let mut values = Vec::new();
    while !p.is_null() {
        // SAFETY: the list was built by the server before it sent the segment; every
        // pointer lies inside the window mapping at the same address as in the server.
        let node = unsafe { &*p.as_ptr() };
        values.push(node.value);
        p = node.next;
    }
    println!("[client {me}] scheme 1: walked the server's pointers: {values:?}");

    // Scheme 2: the same reference, translated to this process's own addresses.
    let mut table = TranslationTable::new();
    for fd in fds {
        table.insert(Segment::attach(fd)?)?;
    }
    let a_id = memlink_capability::segment::SegmentId::from_raw(word(2)?).ok_or("bad id")?;
    // SAFETY: resolve checked bounds and alignment of both u64s.
    let (record, value) = unsafe {
        let record = SharedRef::from_raw(table.resolve::<u64>(SharedRef::new(a_id, 0))?.read());
        (record, table.resolve::<u64>(record)?.read())
    };
    println!(
        "[client] scheme 2: {record:?} is at {:p} here and holds {value:#x}",
        table.resolve::<u64>(record)?
    );

    // Scheme 3: acquire the read-only capability, then see the revocation.
    let counter = recv_capability::<AtomicU64>(&stream)?;
    {
        let guard = counter.acquire()?;
        println!(
            "[client] scheme 3: rights {}, counter = {}, writable: {}",
            counter.rights(),
            guard.load(Ordering::Acquire),
            guard.as_mut_ptr().is_some()
        );
    }
    (&stream).write_all(b"r")?;
    let mut byte = [0u8];
    (&stream).read_exact(&mut byte)?;
    match counter.acquire() {
        Err(AcquireError::Revoked) => {
            println!("[client] scheme 3: acquire after revocation: Revoked")
        }
        Ok(_) => return Err("acquire succeeded after revocation".into()),
        Err(e) => return Err(e.into()),
    }
    (&stream).write_all(b"d")?;
    Ok(())
}
