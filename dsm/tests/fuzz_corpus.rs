//! Replays the committed fuzz corpora (`dsm/fuzz/corpus/<target>/`) through the fuzz bodies,
//! so that the stable test suite checks on every run what the nightly fuzz campaigns found
//! (see `memlink_dsm::fuzzing`; run a campaign with `cargo +nightly fuzz run <target>` in
//! dsm/fuzz).

fn replay(target: &str, body: fn(&[u8])) {
    memlink_test_support::replay_corpus(env!("CARGO_MANIFEST_DIR"), target, body);
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

#[test]
fn scheduler_messages_corpus() {
    replay(
        "scheduler_messages",
        memlink_dsm::fuzzing::scheduler_messages,
    );
}

#[test]
fn pager_wire_corpus() {
    replay("pager_wire", memlink_dsm::fuzzing::pager_wire);
}
