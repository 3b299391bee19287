//! Replays the committed fuzz corpora (`channels/fuzz/corpus/<target>/`) through the fuzz
//! bodies on stable, so CI checks every input the nightly fuzzer kept, and runs each body on
//! a batch of deterministic pseudo-random inputs as well.

use memlink_channels::fuzzing;

fn replay(target: &str, body: fn(&[u8])) {
    memlink_test_support::replay_corpus(env!("CARGO_MANIFEST_DIR"), target, body);
    let mut state = 0x2545_f491_4f6c_dd1du64 ^ target.len() as u64;
    for _ in 0..2_000 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let len = (state % 96) as usize;
        let data: Vec<u8> = (0..len)
            .map(|i| (state.rotate_left(i as u32 * 5) >> (i % 8)) as u8)
            .collect();
        body(&data);
    }
}

#[test]
fn region_header_corpus() {
    replay("region_header", fuzzing::region_header);
}

#[test]
fn loan_layout_corpus() {
    replay("loan_layout", fuzzing::loan_layout);
}

#[test]
fn buffered_layout_corpus() {
    replay("buffered_layout", fuzzing::buffered_layout);
}

#[test]
fn port_layout_corpus() {
    replay("port_layout", fuzzing::port_layout);
}

#[test]
fn named_offer_corpus() {
    replay("named_offer", fuzzing::named_offer);
}
