//! Fuzz target `segment_header`: the body is `memlink_capability::fuzz_bodies::segment_header`, which the
//! stable tests replay over the committed corpus (capability/tests/fuzz_corpus.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    memlink_capability::fuzz_bodies::segment_header(data);
});
