//! Replays the committed fuzz corpora (capability/fuzz/corpus/<target>/) through the
//! same bodies the cargo-fuzz targets run, so CI checks them on stable, without nightly.

use memlink_capability::fuzz_bodies;

fn replay(target: &str, body: fn(&[u8])) {
    memlink_test_support::replay_corpus(env!("CARGO_MANIFEST_DIR"), target, body);
}

#[test]
fn segment_header_corpus() {
    replay("segment_header", fuzz_bodies::segment_header);
}

#[test]
fn fd_passing_frames_corpus() {
    replay("fd_passing_frames", fuzz_bodies::fd_passing_frames);
}

#[test]
fn capability_message_corpus() {
    replay("capability_message", fuzz_bodies::capability_message);
}

#[test]
fn shared_ref_translation_corpus() {
    replay(
        "shared_ref_translation",
        fuzz_bodies::shared_ref_translation,
    );
}
