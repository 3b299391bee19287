//! Fuzz target: `memlink_channels::fuzzing::port_layout` (see there for what it checks).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| memlink_channels::fuzzing::port_layout(data));
