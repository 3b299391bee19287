//! Replays the committed fuzz corpora (`dsm/fuzz/corpus/<target>/`) through the fuzz bodies,
//! so that the stable test suite checks on every run what the nightly fuzz campaigns found
//! (see `memlink_dsm::fuzzing`; run a campaign with `cargo +nightly fuzz run <target>` in
//! dsm/fuzz).

use std::path::Path;

fn replay(target: &str, body: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let outcome = std::panic::catch_unwind(|| body(&data));
        assert!(
            outcome.is_ok(),
            "{target}: {} broke an invariant",
            path.display()
        );
        files += 1;
    }
    assert!(files > 0, "no corpus for {target} in {}", dir.display());
}

#[test]
fn frame_decoder_corpus() {
    replay("frame_decoder", memlink_dsm::fuzzing::frame_decoder);
}

#[test]
fn handshake_corpus() {
    replay("handshake", memlink_dsm::fuzzing::handshake);
}

#[test]
fn protocol_codec_corpus() {
    replay("protocol_codec", memlink_dsm::fuzzing::protocol_codec);
}

#[test]
fn sync_alloc_requests_corpus() {
    replay(
        "sync_alloc_requests",
        memlink_dsm::fuzzing::sync_alloc_requests,
    );
}
