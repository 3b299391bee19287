//! A process that did not inherit the region attaches it from its descriptor at the creator's
//! address and opens channels by reference (scheme 2 offset + scheme 1 fixed address).

use crate::fork;

use memlink_channels::{LoanChannel, Region, RegionError, SyncChannel, WaitMode};
use memlink_test_support::isolated;
use std::sync::Arc;

#[test]
fn attach_by_descriptor_then_open_channels_by_reference() {
    isolated(|| {
        let region = Arc::new(Region::create("attach", 1 << 20).unwrap());
        let sync = SyncChannel::<u64>::create(&region, WaitMode::Block).unwrap();
        let loans = LoanChannel::create(&region, 2, 4096, WaitMode::Block).unwrap();
        let (sync_ref, loan_ref) = (sync.reference().unwrap(), loans.reference());
        let rx = sync.receiver().unwrap();
        let lrx = loans.receiver().unwrap();
        let mut target = region.alloc(0u64).unwrap();

        // In this process the range is taken: attaching again is a clear error, never a remap.
        let again = Region::attach(region.as_fd().try_clone_to_owned().unwrap());
        assert!(matches!(again, Err(RegionError::AddressInUse { .. })));

        let fd = region.as_fd().try_clone_to_owned().unwrap();
        let (base, len) = (region.base(), region.len());
        let child = fork::child(move || {
            // Forget the inherited mapping, as an unrelated process would not have it.
            // SAFETY: nothing in this child touches the old mapping after this call; the child
            // leaves with _exit without running the destructors that refer to it.
            unsafe { libc::munmap(base.cast(), len) };
            let Ok(region) = Region::attach(fd) else {
                return 2;
            };
            if region.base() != base {
                return 3;
            }
            let region = Arc::new(region);
            let Ok(sync) = SyncChannel::<u64>::open(&region, sync_ref) else {
                return 4;
            };
            let Ok(tx) = sync.sender() else { return 5 };
            let Ok(msg) = region.alloc(77u64) else {
                return 6;
            };
            if tx.send(&msg).is_err() {
                return 7;
            }
            let Ok(loans) = LoanChannel::open(&region, loan_ref) else {
                return 8;
            };
            let Ok(ltx) = loans.sender() else { return 9 };
            let Ok(mut loan) = ltx.loan() else { return 10 };
            let addr = loan.as_ptr() as u64;
            loan.as_mut_slice()[..8].copy_from_slice(&addr.to_ne_bytes());
            if loan.send(8).is_err() {
                return 11;
            }
            0
        });
        rx.recv(&mut target).unwrap();
        assert_eq!(*target, 77);
        let sample = lrx.recv().unwrap();
        assert_eq!(
            u64::from_ne_bytes(sample[..8].try_into().unwrap()),
            sample.as_ptr() as u64
        );
        drop(sample);
        assert_eq!(fork::wait(child), 0);
        // A reference of the wrong kind is refused.
        assert!(LoanChannel::open(&region, sync_ref).is_err());
    });
}
