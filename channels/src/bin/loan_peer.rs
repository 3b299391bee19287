//! memlink-loan-peer: two unrelated processes pass bulk data through a loan channel opened with
//! the named rendezvous (`named::serve` / `LoanChannel::connect`).
//!
//! ```text
//! memlink-loan-peer serve   <socket-path> [total-bytes] [slot-bytes]   # the sender
//! memlink-loan-peer connect <socket-path>                              # the receiver
//! ```
//!
//! The sender creates a region with a loan channel of 4 slots, serves it as "bulk" at the path,
//! waits for one receiver, and sends `total-bytes` (default 1 GiB) in slot-sized messages
//! (default 16 MiB). Each message starts with the address of its slot and its index; every
//! following 8-byte word is a function of (index, word position). The receiver checks every
//! word of every message and that it reads each one at the address the sender loaned, and
//! prints what it received. Either side exits with status 1 and a message on any failure.

use memlink_channels::{LoanChannel, Region, WaitMode, named};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

const SLOTS: u32 = 4;
const WAIT: Duration = Duration::from_secs(60);

/// Word `w` (counted from the start of the message) of message `index`.
fn pattern(index: u64, w: u64) -> u64 {
    (index << 40 ^ w).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ w
}

fn serve(path: &str, total: u64, slot: usize) -> Result<String, Box<dyn std::error::Error>> {
    if slot < 16 || slot % 8 != 0 {
        return Err("slot-bytes must be a multiple of 8, at least 16".into());
    }
    let region = Arc::new(Region::create(
        "loan-peer",
        SLOTS as usize * slot + (1 << 20),
    )?);
    let ch = LoanChannel::create(&region, SLOTS, slot, WaitMode::ADAPTIVE)?;
    let tx = ch.sender()?;
    let server = named::serve(path, &region, &[("bulk", ch.reference())])?;
    server.accept_timeout(WAIT)?;
    let (mut sent, mut index) = (0u64, 0u64);
    while sent < total {
        let len = (total - sent).min(slot as u64) as usize & !7;
        if len < 16 {
            break; // a tail too short for the address and index words is not sent
        }
        let mut loan = tx.loan()?;
        let addr = loan.as_ptr() as u64;
        let (_, words, _) = {
            // SAFETY: u64 has no invalid bit patterns; align_to_mut splits off any unaligned
            // edges (there are none: slots are page-aligned).
            unsafe { loan.as_mut_slice()[..len].align_to_mut::<u64>() }
        };
        words[0] = addr;
        words[1] = index;
        for (w, word) in words.iter_mut().enumerate().skip(2) {
            *word = pattern(index, w as u64);
        }
        loan.send(len).map_err(|e| e.to_string())?;
        sent += len as u64;
        index += 1;
    }
    Ok(format!("sent {sent} bytes in {index} messages"))
}

fn connect(path: &str) -> Result<String, Box<dyn std::error::Error>> {
    let ch = LoanChannel::connect(path, "bulk", WAIT)?;
    let rx = ch.receiver()?;
    let (mut received, mut index) = (0u64, 0u64);
    while let Ok(sample) = rx.recv() {
        // SAFETY: as in `serve`: u64 accepts every bit pattern; the slot is page-aligned.
        let (head, words, _) = unsafe { sample.align_to::<u64>() };
        if !head.is_empty() || words.len() < 2 {
            return Err(format!("message {index} is misaligned or short").into());
        }
        if words[0] != sample.as_ptr() as u64 {
            return Err(format!(
                "message {index} was loaned at {:#x} but is read at {:p}",
                words[0],
                sample.as_ptr()
            )
            .into());
        }
        if words[1] != index {
            return Err(format!("message {} arrived as number {index}", words[1]).into());
        }
        if let Some(w) = (2..words.len()).find(|&w| words[w] != pattern(index, w as u64)) {
            return Err(format!("message {index}: word {w} differs from what was sent").into());
        }
        received += sample.len() as u64;
        index += 1;
    }
    Ok(format!(
        "received {received} bytes in {index} messages, each at the address it was loaned at, every byte checked"
    ))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let number = |i: usize, default: u64| -> Result<u64, String> {
        args.get(i).map_or(Ok(default), |s| {
            s.parse().map_err(|_| format!("not a number: {s}"))
        })
    };
    let result = match args.first().map(String::as_str) {
        Some("serve") if args.len() >= 2 => number(2, 1 << 30)
            .and_then(|t| number(3, 16 << 20).map(|s| (t, s as usize)))
            .map_err(Into::into)
            .and_then(|(total, slot)| serve(&args[1], total, slot)),
        Some("connect") if args.len() == 2 => connect(&args[1]),
        _ => Err(
            "usage: memlink-loan-peer serve <socket-path> [total-bytes] [slot-bytes]\n       \
                  memlink-loan-peer connect <socket-path>"
                .into(),
        ),
    };
    match result {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("memlink-loan-peer: {e}");
            ExitCode::FAILURE
        }
    }
}
