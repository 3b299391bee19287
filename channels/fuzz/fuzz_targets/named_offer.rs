//! Fuzz target: `memlink_channels::fuzzing::named_offer` (see there for what it checks).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| memlink_channels::fuzzing::named_offer(data));
