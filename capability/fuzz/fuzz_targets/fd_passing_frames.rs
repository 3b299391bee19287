//! Fuzz target `fd_passing_frames`: the body is `memlink_capability::fuzz_bodies::fd_passing_frames`, which the
//! stable tests replay over the committed corpus (capability/tests/fuzz_corpus.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    memlink_capability::fuzz_bodies::fd_passing_frames(data);
});
