//! Fuzz target `shared_ref_translation`: the body is `memlink_capability::fuzz_bodies::shared_ref_translation`, which the
//! stable tests replay over the committed corpus (capability/tests/fuzz_corpus.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    memlink_capability::fuzz_bodies::shared_ref_translation(data);
});
