//! Fuzz target: see `memlink_dsm::fuzzing::frame_decoder`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| memlink_dsm::fuzzing::frame_decoder(data));
