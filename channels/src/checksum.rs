//! Small checksums for fields in shared memory that must not change after they are written
//! (the region header, channel layouts), so a corrupted field is seen before it is used.

/// CRC-32 (IEEE, reflected) of `bytes`: detects every error burst of up to 32 bits, so every
/// change confined to four consecutive bytes.
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xedb8_8320 & (crc & 1).wrapping_neg());
        }
    }
    !crc
}

/// CRC-32 of a list of 64-bit words (little-endian bytes).
pub fn crc32_words(words: &[u64]) -> u32 {
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    crc32(&bytes)
}

/// CRC-16/CCITT of the low 48 bits of `value`: detects every error burst of up to 16 bits.
pub fn crc16_48(value: u64) -> u16 {
    let mut crc = 0xffffu16;
    for &b in &value.to_le_bytes()[..6] {
        crc ^= (b as u16) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
        // CRC-16/CCITT-FALSE of "123456" (the low six bytes of the word).
        assert_eq!(crc16_48(u64::from_le_bytes(*b"123456\0\0")), 0x2ef4);
    }

    #[test]
    fn every_single_byte_change_is_detected() {
        let words = [0x1234_5678_9abc_def0u64, 42, 7];
        let c = crc32_words(&words);
        for i in 0..24 {
            for mask in 1..=255u8 {
                let mut w = words;
                let mut bytes: Vec<u8> = w.iter().flat_map(|x| x.to_le_bytes()).collect();
                bytes[i] ^= mask;
                for (k, x) in w.iter_mut().enumerate() {
                    *x = u64::from_le_bytes(bytes[k * 8..k * 8 + 8].try_into().unwrap());
                }
                assert_ne!(crc32_words(&w), c);
            }
        }
        let cursor = 0x0000_1234_5678u64;
        for i in 0..6 {
            for mask in 1..=255u64 {
                assert_ne!(crc16_48(cursor ^ (mask << (8 * i))), crc16_48(cursor));
            }
        }
    }
}
