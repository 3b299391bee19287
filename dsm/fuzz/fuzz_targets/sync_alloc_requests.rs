//! Fuzz target: see `memlink_dsm::fuzzing::sync_alloc_requests`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| memlink_dsm::fuzzing::sync_alloc_requests(data));
