//! The contents of every benchmark message: a pattern derived from its sequence number,
//! so that a transport that loses, reorders, truncates or corrupts a message fails the
//! run instead of producing a figure.
//!
//! Word `k` (8 bytes, little-endian, at offset `8k`) of message `seq` holds
//! `word(seq, k)`; trailing bytes of a size that is not a multiple of 8 hold
//! `seq as u8 ^ index`. Two depths of checking:
//! - [`Check::Full`]: every byte is written and checked (the warm-up messages);
//! - [`Check::Stamps`]: only the first, middle and last words (the timed messages), so
//!   that the figure measures the transport, not a scan of the payload; a zero-copy
//!   transport must not be charged for reading 16 MiB that a copying one moves anyway.

use std::fmt;

/// How much of a message is written and checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Every byte.
    Full,
    /// The first, middle and last 8-byte words.
    Stamps,
}

/// Set in the sequence number of a reply, so that a transport that hands the client its
/// own message back is caught.
pub const REPLY_BIT: u64 = 1 << 63;

/// A message whose contents do not match its sequence number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatternMismatch {
    /// The sequence number expected.
    pub seq: u64,
    /// The byte offset of the first wrong word or byte.
    pub offset: usize,
    /// The message length.
    pub len: usize,
}

impl fmt::Display for PatternMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "message {} ({} bytes) is corrupt at byte {}: the transport lost, reordered or damaged it",
            self.seq & !REPLY_BIT,
            self.len,
            self.offset
        )
    }
}

impl std::error::Error for PatternMismatch {}

/// The value of word `k` of message `seq`.
fn word(seq: u64, k: usize) -> u64 {
    seq ^ (k as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

fn stamp_words(len: usize) -> [usize; 3] {
    let words = len / 8;
    [0, words / 2, words.saturating_sub(1)]
}

fn put(buf: &mut [u8], k: usize, v: u64) {
    buf[8 * k..8 * k + 8].copy_from_slice(&v.to_le_bytes());
}

fn get(buf: &[u8], k: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&buf[8 * k..8 * k + 8]);
    u64::from_le_bytes(b)
}

/// Writes message `seq` into `buf` (at least 8 bytes long).
pub fn fill(buf: &mut [u8], seq: u64, check: Check) {
    let words = buf.len() / 8;
    match check {
        Check::Full => {
            for k in 0..words {
                put(buf, k, word(seq, k));
            }
            for (i, b) in buf[words * 8..].iter_mut().enumerate() {
                *b = seq as u8 ^ i as u8;
            }
        }
        Check::Stamps => {
            for k in stamp_words(buf.len()) {
                put(buf, k, word(seq, k));
            }
        }
    }
}

/// Checks that `buf` holds message `seq`.
pub fn verify(buf: &[u8], seq: u64, check: Check) -> Result<(), PatternMismatch> {
    let mismatch = |offset| PatternMismatch {
        seq,
        offset,
        len: buf.len(),
    };
    let words = buf.len() / 8;
    if words == 0 {
        return Err(mismatch(0));
    }
    match check {
        Check::Full => {
            if let Some(k) = (0..words).find(|&k| get(buf, k) != word(seq, k)) {
                return Err(mismatch(8 * k));
            }
            if let Some(i) = buf[words * 8..]
                .iter()
                .enumerate()
                .position(|(i, &b)| b != seq as u8 ^ i as u8)
            {
                return Err(mismatch(words * 8 + i));
            }
        }
        Check::Stamps => {
            if let Some(k) = stamp_words(buf.len())
                .into_iter()
                .find(|&k| get(buf, k) != word(seq, k))
            {
                return Err(mismatch(8 * k));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_filled_message_verifies_and_a_damaged_one_does_not() {
        for len in [8, 13, 64, 4096, 4099] {
            let mut buf = vec![0u8; len];
            fill(&mut buf, 42, Check::Full);
            assert_eq!(verify(&buf, 42, Check::Full), Ok(()));
            assert_eq!(verify(&buf, 42, Check::Stamps), Ok(()));
            assert!(verify(&buf, 43, Check::Stamps).is_err());
            let last = len - 1;
            buf[last] ^= 1;
            // A damaged byte inside a word is reported at the word's start.
            let reported = if last < len / 8 * 8 {
                last / 8 * 8
            } else {
                last
            };
            assert_eq!(verify(&buf, 42, Check::Full).unwrap_err().offset, reported);
        }
    }

    #[test]
    fn stamps_catch_a_stale_message_at_every_stamp() {
        let mut buf = vec![0u8; 1024];
        fill(&mut buf, 1, Check::Full);
        fill(&mut buf, 2, Check::Stamps);
        assert_eq!(verify(&buf, 2, Check::Stamps), Ok(()));
        assert!(verify(&buf, 2, Check::Full).is_err());
        for k in stamp_words(1024) {
            let mut damaged = buf.clone();
            damaged[8 * k] ^= 0xff;
            assert_eq!(
                verify(&damaged, 2, Check::Stamps).unwrap_err().offset,
                8 * k
            );
        }
    }

    #[test]
    fn a_reply_differs_from_its_request() {
        let mut buf = vec![0u8; 64];
        fill(&mut buf, 5, Check::Full);
        assert!(verify(&buf, 5 | REPLY_BIT, Check::Stamps).is_err());
    }
}
