//! Fuzz target: see `memlink_dsm::fuzzing::pager_wire`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| memlink_dsm::fuzzing::pager_wire(data));
