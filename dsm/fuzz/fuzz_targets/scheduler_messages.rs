//! Fuzz target: see `memlink_dsm::fuzzing::scheduler_messages`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| memlink_dsm::fuzzing::scheduler_messages(data));
