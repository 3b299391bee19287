//! Fuzz target `capability_message`: the body is `memlink_capability::fuzz_bodies::capability_message`, which the
//! stable tests replay over the committed corpus (capability/tests/fuzz_corpus.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    memlink_capability::fuzz_bodies::capability_message(data);
});
