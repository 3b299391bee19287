//! The bodies of the fuzz targets in `channels/fuzz` (cargo-fuzz, nightly), as plain functions
//! so that the stable test suite runs them too (it replays the committed corpus).
//!
//! Each body takes arbitrary bytes, applies them to a scratch region the way a process with
//! write access could (a region header, or a channel layout and its run-time state), then runs
//! what another process would: `Region::attach` and an allocation, or `open` and a round of
//! try-operations. It panics only when an invariant breaks: an accepted header mapped
//! somewhere other than it names, a slot or cell outside the region, a received length past
//! the slot. Memory errors show up as crashes (a fault outside the mapping).

use crate::backing::ChannelRef;
use crate::region::{Region, header_offsets};
use crate::tamper::{self, HeaderWriter};
use crate::{BufferedChannel, LoanChannel, Port, ReceiveRight, ReceiveRightToken, WaitMode};
use std::cell::RefCell;
use std::sync::Arc;

/// Bytes in each scratch region (small, so that restoring it for every input is cheap).
const SCRATCH: usize = 8 << 10;

/// Reads little-endian integers off the front of the input; zeros once it runs out.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }

    fn u64(&mut self) -> u64 {
        let mut w = [0u8; 8];
        for b in &mut w {
            *b = self.byte();
        }
        u64::from_le_bytes(w)
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A region, its pristine bytes, and a channel reference in it.
struct Scratch<C> {
    region: Arc<Region>,
    pristine: Vec<u8>,
    reference: ChannelRef,
    extra: C,
}

impl<C> Scratch<C> {
    fn new(make: impl FnOnce(&Arc<Region>) -> (ChannelRef, C)) -> Self {
        let region = Arc::new(Region::create("fuzz", SCRATCH).expect("scratch region"));
        let (reference, extra) = make(&region);
        // SAFETY: the region's `len` bytes are mapped and only this thread uses them.
        let pristine = unsafe { std::slice::from_raw_parts(region.base(), region.len()) }.to_vec();
        Scratch {
            region,
            pristine,
            reference,
            extra,
        }
    }

    fn restore(&self) {
        // SAFETY: as in `new`: the region is this thread's alone, `pristine` has its length.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.pristine.as_ptr(),
                self.region.base(),
                self.pristine.len(),
            )
        };
    }

    /// Applies edits from `input` to the channel's layout: sealed fields, raw bytes of the
    /// layout (run-time state), words anywhere in the region (arrays, ring entries, lengths),
    /// and a reseal (a peer that knows the format).
    fn tamper(&self, input: &mut Input<'_>, edits: usize) {
        let r = self.reference;
        let spec = tamper::layout_spec(r.kind).expect("a sealed layout");
        for _ in 0..edits {
            if input.is_empty() {
                break;
            }
            match input.byte() % 5 {
                0 => {
                    let f = spec.fields[input.byte() as usize % spec.fields.len()];
                    tamper::write_field(&self.region, r, f.name, input.u64());
                }
                1 => {
                    let i = input.u64() as usize % spec.len;
                    tamper::flip_layout_byte(&self.region, r, i, input.byte());
                }
                2 => {
                    let offset = (128 + input.u64() as usize % (self.region.len() - 136)) & !7;
                    let value = input.u64();
                    if let Some(p) = self.region.at_offset(offset, 8) {
                        // SAFETY: 8 aligned bytes inside the region, used by this thread only.
                        unsafe { p.cast::<u64>().write_volatile(value) };
                    }
                }
                3 => {
                    tamper::reseal(&self.region, r);
                }
                _ => {
                    let f = spec.fields[input.byte() as usize % spec.fields.len()];
                    let value = input.byte() as u64;
                    tamper::write_field(&self.region, r, f.name, value);
                    tamper::reseal(&self.region, r);
                }
            }
        }
    }

    fn assert_inside(&self, ptr: *const u8, len: usize, what: &str) {
        assert!(
            self.region.contains(ptr, len),
            "{what} at {ptr:?}+{len} is outside the region"
        );
    }
}

thread_local! {
    static LOAN: RefCell<Option<Scratch<()>>> = const { RefCell::new(None) };
    static BUFFERED: RefCell<Option<Scratch<()>>> = const { RefCell::new(None) };
    static PORT: RefCell<Option<Scratch<ReceiveRightToken>>> = const { RefCell::new(None) };
    static HEADER: RefCell<Option<HeaderScratch>> = const { RefCell::new(None) };
}

/// Fuzz body: a loan channel's layout and state as `LoanChannel::open` reads them, then a
/// round of loan, send, receive and reclaim, with the layout changed again after `open`.
pub fn loan_layout(data: &[u8]) {
    LOAN.with_borrow_mut(|s| {
        let s = s.get_or_insert_with(|| {
            Scratch::new(|region| {
                let ch = LoanChannel::create(region, 3, 256, WaitMode::Spin).expect("channel");
                (ch.reference(), ())
            })
        });
        s.restore();
        let mut input = Input(data);
        s.tamper(&mut input, 6);
        let Ok(ch) = LoanChannel::open(&s.region, s.reference) else {
            return;
        };
        let pool = ch.pool();
        for slot in 0..pool.slots() {
            s.assert_inside(pool.slot_ptr(slot), pool.slot_size(), "a slot");
        }
        // The peer changes the layout again after `open`: this process must not notice.
        s.tamper(&mut input, 4);
        let (Ok(tx), Ok(rx)) = (ch.sender(), ch.receiver()) else {
            return;
        };
        for _ in 0..2 {
            if let Ok(mut loan) = tx.try_loan() {
                s.assert_inside(loan.as_ptr(), ch.slot_size(), "a loaned slot");
                let fill = input.byte();
                loan.as_mut_slice().fill(fill);
                let _ = loan.send(input.u64() as usize);
            }
            if let Ok(sample) = rx.try_recv() {
                assert!(
                    sample.len() <= ch.slot_size(),
                    "a sample longer than its slot"
                );
                s.assert_inside(sample.as_ptr(), sample.len(), "a received sample");
                let _sum: u32 = sample.iter().map(|&b| b as u32).sum();
            }
            s.tamper(&mut input, 2);
        }
        tx.reclaim();
    });
}

/// Fuzz body: a buffered channel's layout and state as `BufferedChannel::open` reads them,
/// then sends and receives.
pub fn buffered_layout(data: &[u8]) {
    BUFFERED.with_borrow_mut(|s| {
        let s = s.get_or_insert_with(|| {
            Scratch::new(|region| {
                let ch =
                    BufferedChannel::<u64>::create(region, 4, WaitMode::Spin).expect("channel");
                (ch.reference(), ())
            })
        });
        s.restore();
        let mut input = Input(data);
        s.tamper(&mut input, 6);
        let Ok(ch) = BufferedChannel::<u64>::open(&s.region, s.reference) else {
            return;
        };
        s.tamper(&mut input, 4);
        let (Ok(tx), Ok(rx)) = (ch.sender(), ch.receiver()) else {
            return;
        };
        for _ in 0..3 {
            let _ = tx.try_send(input.u64());
            let _ = rx.try_recv();
            s.tamper(&mut input, 2);
        }
    });
}

/// Fuzz body: a port's layout and state as `Port::open` (through `ReceiveRight::claim`) reads
/// them, then sends and receives.
pub fn port_layout(data: &[u8]) {
    PORT.with_borrow_mut(|s| {
        let s = s.get_or_insert_with(|| {
            Scratch::new(|region| {
                let (port, right) = Port::<u64>::create(region, 4, WaitMode::Spin).expect("port");
                (port.send_right().port, right.into_transfer())
            })
        });
        s.restore();
        let mut input = Input(data);
        s.tamper(&mut input, 6);
        let Ok(right) = ReceiveRight::<u64>::claim(&s.region, s.extra) else {
            return;
        };
        s.tamper(&mut input, 4);
        let Ok(tx) = Port::<u64>::open(&s.region, s.reference).and_then(|p| p.sender()) else {
            return;
        };
        for _ in 0..3 {
            let _ = tx.try_send(input.u64());
            let _ = right.try_recv();
            s.tamper(&mut input, 2);
        }
    });
}

/// A region's descriptor (its creator's mapping gone, so that `attach` may map it at its
/// recorded base in this process) and write access to its header.
struct HeaderScratch {
    writer: HeaderWriter,
    fd: std::os::fd::OwnedFd,
    pristine: [u8; 128],
    base: usize,
}

/// Fuzz body: a region header as `Region::attach` reads it, then an allocation and a store
/// into it. An attach that succeeds must map the region exactly where its header says.
pub fn region_header(data: &[u8]) {
    HEADER.with_borrow_mut(|s| {
        let s = s.get_or_insert_with(|| {
            let region = Region::create("fuzz-header", SCRATCH).expect("scratch region");
            let fd = region.as_fd().try_clone_to_owned().expect("dup");
            let writer = HeaderWriter::new(fd.try_clone().expect("dup")).expect("header writer");
            let base = region.base() as usize;
            drop(region);
            let pristine = writer.bytes();
            HeaderScratch {
                writer,
                fd,
                pristine,
                base,
            }
        });
        s.writer.set_bytes(&s.pristine);
        let mut input = Input(data);
        let flags = input.byte();
        // Up to 64 bytes of edits: (offset in the header, value) pairs.
        let mut bytes = s.pristine;
        while !input.is_empty() {
            let at = input.byte() as usize % header_offsets::END.next_power_of_two();
            let value = input.byte();
            if at < bytes.len() {
                bytes[at] = value;
            }
        }
        s.writer.set_bytes(&bytes);
        if flags & 1 != 0 {
            s.writer.reseal();
        }
        if flags & 2 != 0 {
            s.writer.write_cursor(s.writer.read(header_offsets::CURSOR));
        }
        let named_base = s.writer.read(header_offsets::BASE) as usize;
        let Ok(fd) = s.fd.try_clone() else { return };
        let attached = if flags & 4 != 0 {
            Region::attach_at(fd, s.base)
        } else {
            Region::attach(fd)
        };
        let Ok(region) = attached else { return };
        assert_eq!(
            region.base() as usize,
            named_base,
            "attached somewhere other than the header names"
        );
        if flags & 4 != 0 {
            assert_eq!(
                region.base() as usize,
                s.base,
                "attach_at accepted another base"
            );
        }
        if let Ok(p) = region.alloc_bytes(64, 8) {
            assert!(region.contains(p, 64), "an allocation outside the region");
            // SAFETY: 64 bytes just allocated inside the region mapped by this process.
            unsafe { p.write_bytes(0xa5, 64) };
        }
    });
}

/// Fuzz body: a channel server's offer as `named::connect` parses it. A parsed offer must
/// encode back to exactly the bytes it came from (the format has one spelling per offer).
pub fn named_offer(data: &[u8]) {
    if let Ok(offer) = crate::named::Offer::parse(data) {
        assert_eq!(
            offer.encode(),
            data,
            "an offer that does not encode back to its bytes"
        );
        assert!(offer.channels.len() <= crate::named::MAX_CHANNELS);
    }
}
