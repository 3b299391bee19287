//! Everything `Region::attach` and the channels' `open` read from shared memory is checked
//! before use: every byte of the region header and of each channel layout is flipped, and the
//! layouts a hostile peer with write access would plant are planted (with their checksums
//! recomputed, as such a peer could). A bad value is an error naming the field; never a panic,
//! never a slot outside the region, never a mapping at another address.

use memlink_channels::region::header_offsets;
use memlink_channels::tamper::{self, HeaderWriter};
use memlink_channels::{
    AllocError, BufferedChannel, ChannelRef, ConnectError, HeaderField, LoanChannel, Port, Region,
    RegionError, SyncChannel, WaitMode,
};
use memlink_test_support::isolated;
use std::sync::Arc;

const MASKS: [u8; 4] = [0x01, 0x10, 0x80, 0xff];

/// A region whose creator mapping is gone, so that `attach` can map it at its base here.
fn detached_region() -> (std::os::fd::OwnedFd, HeaderWriter, usize) {
    let region = Region::create("flip", 1 << 16).unwrap();
    let fd = region.as_fd().try_clone_to_owned().unwrap();
    let writer = HeaderWriter::new(fd.try_clone().unwrap()).unwrap();
    let base = region.base() as usize;
    drop(region);
    (fd, writer, base)
}

#[test]
fn every_byte_flip_of_the_region_header_is_refused_or_harmless() {
    isolated(|| {
        let (fd, writer, base) = detached_region();
        let pristine = writer.bytes();
        let (mut refused, mut harmless) = (0, 0);
        for i in 0..128 {
            for mask in MASKS {
                let mut bytes = pristine;
                bytes[i] ^= mask;
                writer.set_bytes(&bytes);
                let result = Region::attach(fd.try_clone().unwrap());
                if i < header_offsets::END {
                    let expected = match i {
                        0..8 => matches!(result, Err(RegionError::NotARegion)),
                        8..32 => matches!(
                            result,
                            Err(RegionError::CorruptHeader {
                                field: HeaderField::Check,
                                ..
                            })
                        ),
                        _ => matches!(
                            result,
                            Err(RegionError::CorruptHeader {
                                field: HeaderField::Cursor,
                                ..
                            })
                        ),
                    };
                    assert!(expected, "byte {i} ^ {mask:#x}: {result:?}");
                    refused += 1;
                } else {
                    // Reserved bytes: nothing reads them; the region maps where it always did.
                    let region = result.unwrap_or_else(|e| panic!("byte {i}: {e}"));
                    assert_eq!(region.base() as usize, base, "byte {i}");
                    harmless += 1;
                }
            }
        }
        writer.set_bytes(&pristine);
        let region = Region::attach(fd.try_clone().unwrap()).unwrap();
        assert_eq!(region.base() as usize, base);
        assert_eq!((refused, harmless), (40 * 4, 88 * 4));
    });
}

#[test]
fn a_rewritten_base_is_caught_when_the_creator_announced_its_own() {
    isolated(|| {
        let (fd, writer, base) = detached_region();
        // A peer with write access moves the base and recomputes the checksum.
        let elsewhere = base + (64 << 20);
        writer.write(header_offsets::BASE, elsewhere as u64);
        writer.reseal();
        match Region::attach_at(fd.try_clone().unwrap(), base) {
            Err(RegionError::BaseMismatch { expected, found }) => {
                assert_eq!((expected, found), (base, elsewhere));
            }
            other => panic!("attach_at accepted a rewritten base: {other:?}"),
        }
        // Plain attach cannot tell; it maps exactly where the header says, never elsewhere.
        if let Ok(region) = Region::attach(fd.try_clone().unwrap()) {
            assert_eq!(region.base() as usize, elsewhere);
        }
        // Bases that could never be mapped are refused by name.
        for bad in [0u64, base as u64 + 1, !0xfff] {
            writer.write(header_offsets::BASE, bad);
            writer.reseal();
            let result = Region::attach(fd.try_clone().unwrap());
            assert!(
                matches!(
                    result,
                    Err(RegionError::CorruptHeader {
                        field: HeaderField::Base,
                        ..
                    })
                ),
                "base {bad:#x}: {result:?}"
            );
        }
        writer.write(header_offsets::BASE, base as u64);
        writer.write(header_offsets::LEN, 1 << 30);
        writer.reseal();
        assert!(matches!(
            Region::attach(fd.try_clone().unwrap()),
            Err(RegionError::CorruptHeader {
                field: HeaderField::Len,
                ..
            })
        ));
    });
}

#[test]
fn a_cursor_outside_the_region_is_refused_on_attach_and_on_alloc() {
    isolated(|| {
        let (fd, writer, _) = detached_region();
        let cursor = writer.read(header_offsets::CURSOR);
        for bad in [0u64, 127, 1 << 20, (1 << 48) - 1] {
            writer.write_cursor(bad);
            let result = Region::attach(fd.try_clone().unwrap());
            assert!(
                matches!(
                    result,
                    Err(RegionError::CorruptHeader {
                        field: HeaderField::Cursor,
                        ..
                    })
                ),
                "cursor {bad:#x}: {result:?}"
            );
        }
        writer.write(header_offsets::CURSOR, cursor);
        let region = Region::attach(fd.try_clone().unwrap()).unwrap();
        region.alloc_bytes(64, 8).unwrap();
        // Corrupted after attach: the next allocation sees it and allocates nothing.
        writer.write_cursor(1 << 40);
        assert!(matches!(
            region.alloc_bytes(64, 8),
            Err(AllocError::CorruptCursor { .. })
        ));
        writer.write(
            header_offsets::CURSOR,
            writer.read(header_offsets::CURSOR) ^ 0x100,
        );
        assert!(matches!(
            region.alloc_bytes(64, 8),
            Err(AllocError::CorruptCursor { .. })
        ));
    });
}

fn region() -> Arc<Region> {
    Arc::new(Region::create("layouts", 1 << 20).unwrap())
}

/// Flips every byte of the tagged layout `r` names with every mask; `open` must refuse the
/// flip (a layout error or a wrong kind) or give a channel whose `shape` equals the original.
/// Returns how many flips were refused.
fn flip_every_byte<S: PartialEq + std::fmt::Debug>(
    region: &Arc<Region>,
    r: ChannelRef,
    original: S,
    open: impl Fn() -> Result<S, ConnectError>,
) -> usize {
    let mut refused = 0;
    for i in 0..tamper::layout_len(r).unwrap() {
        for mask in MASKS {
            assert!(tamper::flip_layout_byte(region, r, i, mask));
            match open() {
                Ok(shape) => assert_eq!(shape, original, "byte {i} ^ {mask:#x} was accepted"),
                Err(ConnectError::CorruptLayout(_) | ConnectError::BadReference) => refused += 1,
                Err(e) => panic!("byte {i} ^ {mask:#x}: unexpected {e}"),
            }
            assert!(tamper::flip_layout_byte(region, r, i, mask));
        }
    }
    assert_eq!(open().unwrap(), original);
    refused
}

fn loan_shape(ch: &LoanChannel) -> (u32, usize, Vec<usize>) {
    let pool = ch.pool();
    (
        pool.slots(),
        pool.slot_size(),
        (0..pool.slots())
            .map(|s| pool.slot_ptr(s) as usize)
            .collect(),
    )
}

#[test]
fn every_byte_flip_of_a_loan_layout_is_refused_or_harmless() {
    let region = region();
    let ch = LoanChannel::create(&region, 3, 4096, WaitMode::Block).unwrap();
    let r = ch.reference();
    let refused = flip_every_byte(&region, r, loan_shape(&ch), || {
        LoanChannel::open(&region, r).map(|c| loan_shape(&c))
    });
    // Tag, check and the six sealed fields: 8 + 8 + 4 + 4 + 8 * 4 bytes, every mask.
    assert_eq!(refused, 56 * MASKS.len());
}

#[test]
fn every_byte_flip_of_a_buffered_layout_is_refused_or_harmless() {
    let region = region();
    let ch = BufferedChannel::<u64>::create(&region, 8, WaitMode::Spin).unwrap();
    let r = ch.reference();
    let refused = flip_every_byte(&region, r, (), || {
        BufferedChannel::<u64>::open(&region, r).map(|_| ())
    });
    // Tag, check, capacity, header capacity, mode, cells.
    assert_eq!(refused, 44 * MASKS.len());
}

#[test]
fn every_byte_flip_of_a_port_layout_is_refused_or_harmless() {
    let region = region();
    let (port, _right) = Port::<u64>::create(&region, 8, WaitMode::Spin).unwrap();
    let r = port.send_right().port;
    let refused = flip_every_byte(&region, r, (), || Port::<u64>::open(&region, r).map(|_| ()));
    // Tag, check, capacity, mode, cells.
    assert_eq!(refused, 36 * MASKS.len());
}

#[test]
fn every_byte_flip_of_a_sync_layout_is_refused_or_harmless() {
    let region = region();
    let ch = SyncChannel::<u64>::create(&region, WaitMode::Block).unwrap();
    let r = ch.reference().unwrap();
    let refused = flip_every_byte(&region, r, WaitMode::Block, || {
        SyncChannel::<u64>::open(&region, r).map(|c| c.mode())
    });
    // Tag, check and the mode word; the descriptor and endpoint records are run-time state
    // that `open` does not read (their pointers are checked at every use).
    assert_eq!(refused, 20 * MASKS.len());
}

#[test]
fn a_sync_mode_planted_or_changed_after_open_is_refused_or_ignored() {
    let region = region();
    let ch = SyncChannel::<u64>::create(&region, WaitMode::Block).unwrap();
    let r = ch.reference().unwrap();
    let open = || SyncChannel::<u64>::open(&region, r).map(|_| ());
    assert_eq!(planted(&region, r, &[("mode", 7)], open), Some(("mode", 7)));
    let opened = SyncChannel::<u64>::open(&region, r).unwrap();
    let spinning = SyncChannel::<u64>::create(&region, WaitMode::Spin).unwrap();
    let spin_word = tamper::read_field(&region, spinning.reference().unwrap(), "mode").unwrap();
    assert!(tamper::write_field(&region, r, "mode", spin_word));
    tamper::reseal(&region, r);
    // The open channel keeps the mode it read: a peer cannot turn its blocking waits into
    // spinning (or into garbage) after the fact.
    assert_eq!(opened.mode(), WaitMode::Block);
    assert_eq!(ch.mode(), WaitMode::Block);
    assert_eq!(
        SyncChannel::<u64>::open(&region, r).unwrap().mode(),
        WaitMode::Spin
    );
}

/// Plants `changes` in the layout `r` names, recomputes its checksum as a peer that knows the
/// format would, and returns the error `open` gives; then puts the layout back.
fn planted(
    region: &Arc<Region>,
    r: ChannelRef,
    changes: &[(&str, u64)],
    open: impl Fn() -> Result<(), ConnectError>,
) -> Option<(&'static str, u64)> {
    let saved: Vec<(String, u64)> = changes
        .iter()
        .map(|(f, _)| (f.to_string(), tamper::read_field(region, r, f).unwrap()))
        .collect();
    for (f, v) in changes {
        assert!(tamper::write_field(region, r, f, *v));
    }
    tamper::reseal(region, r);
    let result = open();
    for (f, v) in &saved {
        tamper::write_field(region, r, f, *v);
    }
    tamper::reseal(region, r);
    match result {
        Ok(()) => None,
        Err(ConnectError::CorruptLayout(e)) => Some((e.field, e.found)),
        Err(e) => panic!("unexpected {e}"),
    }
}

#[test]
fn planted_loan_layouts_are_refused_by_field() {
    let region = region();
    let ch = LoanChannel::create(&region, 2, 4096, WaitMode::Block).unwrap();
    let r = ch.reference();
    let open = || LoanChannel::open(&region, r).map(|_| ());
    // slots × slot_size wrapping past 2^64: slot 1 would be outside the region.
    assert_eq!(
        planted(&region, r, &[("slot_size", 1 << 63)], open),
        Some(("slot_size", 1 << 63))
    );
    assert_eq!(
        planted(&region, r, &[("slots", 4), ("slot_size", 1 << 62)], open),
        Some(("slot_size", 1 << 62))
    );
    // No slots: create refuses it, and so does open (try_recv divided by it).
    assert_eq!(
        planted(&region, r, &[("slots", 0)], open),
        Some(("slots", 0))
    );
    assert_eq!(
        planted(&region, r, &[("slot_size", 0)], open),
        Some(("slot_size", 0))
    );
    // Arrays past the region, misaligned, or over the layout itself.
    assert_eq!(
        planted(&region, r, &[("data", region.len() as u64 - 4096)], open),
        Some(("data", region.len() as u64 - 4096))
    );
    assert_eq!(
        planted(&region, r, &[("meta", 4)], open).map(|(f, _)| f),
        Some("meta")
    );
    assert_eq!(
        planted(&region, r, &[("ring", r.offset)], open),
        Some(("ring", r.offset))
    );
    assert_eq!(
        planted(&region, r, &[("slots", 3)], open).map(|(f, _)| f),
        Some("data"),
        "a third slot would overlap what follows the data"
    );
    assert_eq!(planted(&region, r, &[("mode", 3)], open), Some(("mode", 3)));
    // Unsealed: a change of a sealed field that passes its own checks names the check.
    assert!(tamper::write_field(&region, r, "mode", 0));
    assert!(matches!(
        LoanChannel::open(&region, r),
        Err(ConnectError::CorruptLayout(e)) if e.field == "check"
    ));
    assert!(tamper::write_field(&region, r, "mode", 1));
    LoanChannel::open(&region, r).unwrap();
}

/// A tiny deterministic generator for random layouts.
fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[test]
fn random_planted_loan_layouts_never_panic_nor_leave_the_region() {
    let region = region();
    let ch = LoanChannel::create(&region, 2, 4096, WaitMode::Spin).unwrap();
    let r = ch.reference();
    let fields = ["slots", "mode", "slot_size", "ring", "meta", "data"];
    let saved: Vec<u64> = fields
        .iter()
        .map(|f| tamper::read_field(&region, r, f).unwrap())
        .collect();
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut opened = 0;
    for round in 0..20_000 {
        for (f, v) in fields.iter().zip(&saved) {
            let value = match xorshift(&mut state) % 4 {
                0 => *v,
                1 => xorshift(&mut state),
                2 => xorshift(&mut state) % (region.len() as u64 + 1),
                _ => v.wrapping_add(xorshift(&mut state) % 256).wrapping_sub(128),
            };
            tamper::write_field(&region, r, f, value);
        }
        tamper::reseal(&region, r);
        if let Ok(ch) = LoanChannel::open(&region, r) {
            opened += 1;
            let pool = ch.pool();
            for s in 0..pool.slots() {
                assert!(
                    region.contains(pool.slot_ptr(s), pool.slot_size()),
                    "round {round}: slot {s} outside the region"
                );
            }
        }
    }
    for (f, v) in fields.iter().zip(&saved) {
        tamper::write_field(&region, r, f, *v);
    }
    tamper::reseal(&region, r);
    assert!(opened > 0, "the generator never kept a valid layout");
}

#[test]
fn a_layout_changed_after_open_does_not_change_the_open_channel() {
    let region = region();
    let ch = LoanChannel::create(&region, 2, 4096, WaitMode::Spin).unwrap();
    let r = ch.reference();
    let opened = LoanChannel::open(&region, r).unwrap();
    let shape = loan_shape(&opened);
    let (tx, rx) = (opened.sender().unwrap(), opened.receiver().unwrap());
    // The peer now makes the shared layout huge, with a valid checksum.
    tamper::write_field(&region, r, "slots", 1000);
    tamper::write_field(&region, r, "slot_size", 1 << 40);
    tamper::reseal(&region, r);
    assert_eq!(loan_shape(&opened), shape);
    let mut loan = tx.try_loan().unwrap();
    loan.as_mut_slice().fill(7);
    assert_eq!(loan.as_mut_slice().len(), 4096);
    loan.send(1 << 30).unwrap();
    let sample = rx.try_recv().unwrap();
    assert_eq!(
        sample.len(),
        4096,
        "a length past the slot is clamped to it"
    );
    assert!(sample.iter().all(|&b| b == 7));
}

#[test]
fn a_ring_entry_naming_no_slot_is_skipped() {
    let region = region();
    let ch = LoanChannel::create(&region, 2, 64, WaitMode::Spin).unwrap();
    let (tx, rx) = (ch.sender().unwrap(), ch.receiver().unwrap());
    let ring = tamper::read_field(&region, ch.reference(), "ring").unwrap() as usize;
    let mut loan = tx.try_loan().unwrap();
    loan.as_mut_slice()[0] = 1;
    loan.send(1).unwrap();
    // The peer overwrites the queued entry with a slot number the pool does not have.
    let entry = region.at_offset(ring, 4).unwrap().cast::<u32>();
    // SAFETY: the ring's first entry, inside the region; volatile like a peer's store.
    unsafe { entry.write_volatile(7_000_000) };
    assert!(
        rx.try_recv().is_err(),
        "the bad entry is dropped, not followed"
    );
    let mut loan = tx.try_loan().unwrap();
    loan.as_mut_slice()[0] = 2;
    loan.send(1).unwrap();
    assert_eq!(rx.try_recv().unwrap()[0], 2);
}

#[test]
fn planted_buffered_and_port_layouts_are_refused_by_field() {
    let region = region();
    let ch = BufferedChannel::<u64>::create(&region, 4, WaitMode::Spin).unwrap();
    let r = ch.reference();
    let open = || BufferedChannel::<u64>::open(&region, r).map(|_| ());
    assert_eq!(
        planted(&region, r, &[("capacity", 0), ("header.capacity", 0)], open),
        Some(("capacity", 0))
    );
    // The two capacities disagree: bounds checked with one, indexing with the other.
    assert_eq!(
        planted(&region, r, &[("header.capacity", 1 << 40)], open),
        Some(("header.capacity", 1 << 40))
    );
    assert_eq!(
        planted(
            &region,
            r,
            &[("capacity", 1 << 61), ("header.capacity", 1 << 61)],
            open
        )
        .map(|(f, _)| f),
        Some("cells")
    );
    assert_eq!(
        planted(&region, r, &[("cells", 3)], open).map(|(f, _)| f),
        Some("cells")
    );

    let (port, _right) = Port::<u64>::create(&region, 4, WaitMode::Spin).unwrap();
    let r = port.send_right().port;
    let open = || Port::<u64>::open(&region, r).map(|_| ());
    assert_eq!(
        planted(&region, r, &[("capacity", 1)], open),
        Some(("capacity", 1))
    );
    assert_eq!(
        planted(&region, r, &[("capacity", u64::MAX)], open).map(|(f, _)| f),
        Some("cells")
    );
    assert_eq!(planted(&region, r, &[("mode", 7)], open), Some(("mode", 7)));
}

#[test]
fn a_sync_offer_pointing_outside_the_region_is_never_copied_into() {
    let region = region();
    let ch = SyncChannel::<u64>::create(&region, WaitMode::Spin).unwrap();
    let tx = ch.sender().unwrap();
    let rx_ch = ch.clone();
    let rx_region = Arc::clone(&region);
    let msg = region.alloc(0x1122_3344u64).unwrap();
    let outside = Box::new(0u64);
    let outside_addr = &*outside as *const u64 as u64;
    std::thread::scope(|s| {
        let receiver = s.spawn(move || {
            let rx = rx_ch.receiver().unwrap();
            let mut target = rx_region.alloc(0u64).unwrap();
            rx.recv(&mut target).unwrap();
            *target
        });
        // Wait until the receiver's offer is published (phase RECEIVER_WAITING = 2).
        let desc = ch.descriptor();
        while desc.wait.load(std::sync::atomic::Ordering::Acquire) & 3 != 2 {
            std::hint::spin_loop();
        }
        let real = desc.val_ref.load(std::sync::atomic::Ordering::Acquire);
        // A peer redirects the offer at memory outside the region (this test's heap).
        desc.val_ref
            .store(outside_addr, std::sync::atomic::Ordering::Release);
        assert!(tx.try_send(&msg).is_err(), "the forged offer was used");
        assert_eq!(*outside, 0, "a byte outside the region was written");
        desc.val_ref
            .store(real, std::sync::atomic::Ordering::Release);
        tx.send(&msg).unwrap();
        assert_eq!(receiver.join().unwrap(), 0x1122_3344);
    });
}
