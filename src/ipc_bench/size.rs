//! Message sizes on the command line: `8`, `64`, `4K`, `1M` (binary suffixes).

use std::fmt;

/// The smallest message a benchmark can carry: the 8-byte sequence number.
pub const MIN_SIZE: usize = 8;

/// Why a size given on the command line was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SizeError {
    /// Nothing between two commas, or an empty list.
    Empty,
    /// The number part is not a decimal number.
    NotANumber(String),
    /// The suffix is not one of K, M, G.
    UnknownSuffix {
        /// The whole size as written.
        size: String,
        /// The suffix found.
        suffix: String,
    },
    /// The size is zero.
    Zero(String),
    /// The size is smaller than the 8 bytes that carry the sequence number.
    TooSmall(String),
    /// The size overflows this machine's address space.
    Overflow(String),
    /// The size exceeds the largest message the loan pool's slots hold.
    AboveSlotSize {
        /// The size as written.
        size: String,
        /// The size in bytes.
        bytes: usize,
        /// The slot size in bytes.
        slot_size: usize,
    },
}

impl fmt::Display for SizeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SizeError::Empty => write!(f, "empty size: give sizes like 8,64,4K,1M"),
            SizeError::NotANumber(s) => write!(
                f,
                "size {s:?} is not a number: write a whole number of bytes with an optional K, M or G suffix (e.g. 64, 4K, 1M)"
            ),
            SizeError::UnknownSuffix { size, suffix } => write!(
                f,
                "size {size:?} has an unknown suffix {suffix:?}: use K (KiB), M (MiB) or G (GiB), or none for bytes"
            ),
            SizeError::Zero(s) => write!(
                f,
                "size {s:?} is zero: a message needs at least {MIN_SIZE} bytes"
            ),
            SizeError::TooSmall(s) => write!(
                f,
                "size {s:?} is below {MIN_SIZE} bytes: every message carries an 8-byte sequence number"
            ),
            SizeError::Overflow(s) => write!(f, "size {s:?} is too large for this machine"),
            SizeError::AboveSlotSize {
                size,
                bytes,
                slot_size,
            } => write!(
                f,
                "size {size:?} ({bytes} bytes) is above the loan slot size of {slot_size} bytes ({}); use a smaller size",
                format_size(*slot_size)
            ),
        }
    }
}

impl std::error::Error for SizeError {}

/// Parses one size: a decimal number with an optional binary suffix K, M or G
/// (case-insensitive, an optional trailing `B` or `iB` allowed: `4K`, `4KiB`, `4kb`).
///
/// ```
/// use memlink::ipc_bench::size::parse_size;
/// assert_eq!(parse_size("4K"), Ok(4096));
/// assert_eq!(parse_size("1M"), Ok(1 << 20));
/// assert!(parse_size("3X").is_err());
/// ```
pub fn parse_size(text: &str) -> Result<usize, SizeError> {
    let t = text.trim();
    if t.is_empty() {
        return Err(SizeError::Empty);
    }
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, suffix) = t.split_at(split);
    if digits.is_empty() {
        return Err(SizeError::NotANumber(t.to_string()));
    }
    let unit: u64 = match suffix.to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "K" | "KB" | "KIB" => 1 << 10,
        "M" | "MB" | "MIB" => 1 << 20,
        "G" | "GB" | "GIB" => 1 << 30,
        _ => {
            return Err(SizeError::UnknownSuffix {
                size: t.to_string(),
                suffix: suffix.to_string(),
            });
        }
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| SizeError::Overflow(t.to_string()))?;
    let bytes = n
        .checked_mul(unit)
        .and_then(|b| usize::try_from(b).ok())
        .ok_or_else(|| SizeError::Overflow(t.to_string()))?;
    if bytes == 0 {
        return Err(SizeError::Zero(t.to_string()));
    }
    if bytes < MIN_SIZE {
        return Err(SizeError::TooSmall(t.to_string()));
    }
    Ok(bytes)
}

/// Parses a comma-separated list of sizes, refusing any above `slot_size`; the result
/// is sorted and free of duplicates.
pub fn parse_sizes(list: &str, slot_size: usize) -> Result<Vec<usize>, SizeError> {
    let mut sizes = Vec::new();
    for part in list.split(',') {
        let bytes = parse_size(part)?;
        if bytes > slot_size {
            return Err(SizeError::AboveSlotSize {
                size: part.trim().to_string(),
                bytes,
                slot_size,
            });
        }
        sizes.push(bytes);
    }
    sizes.sort_unstable();
    sizes.dedup();
    Ok(sizes)
}

/// A size as people write it: `8 B`, `4 KiB`, `1 MiB`, `1.5 MiB`.
pub fn format_size(bytes: usize) -> String {
    const UNITS: [(usize, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    for (unit, name) in UNITS {
        if bytes >= unit {
            return if bytes % unit == 0 {
                format!("{} {name}", bytes / unit)
            } else {
                format!("{:.1} {name}", bytes as f64 / unit as f64)
            };
        }
    }
    format!("{bytes} B")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffixes_are_binary() {
        assert_eq!(parse_size("8"), Ok(8));
        assert_eq!(parse_size("64K"), Ok(65536));
        assert_eq!(parse_size("16m"), Ok(16 << 20));
        assert_eq!(parse_size("2KiB"), Ok(2048));
    }

    #[test]
    fn bad_sizes_are_refused_with_their_reason() {
        assert!(matches!(
            parse_size("4X"),
            Err(SizeError::UnknownSuffix { .. })
        ));
        assert!(matches!(parse_size("0"), Err(SizeError::Zero(_))));
        assert!(matches!(parse_size("0K"), Err(SizeError::Zero(_))));
        assert!(matches!(parse_size("4"), Err(SizeError::TooSmall(_))));
        assert!(matches!(parse_size("K"), Err(SizeError::NotANumber(_))));
        assert!(matches!(parse_size(""), Err(SizeError::Empty)));
        assert!(matches!(
            parse_size("99999999999999999999"),
            Err(SizeError::Overflow(_))
        ));
        assert!(matches!(
            parse_size("99999999999G"),
            Err(SizeError::Overflow(_))
        ));
    }

    #[test]
    fn lists_are_sorted_and_checked_against_the_slot() {
        assert_eq!(parse_sizes("4K,8,4K", 1 << 20), Ok(vec![8, 4096]));
        assert!(matches!(
            parse_sizes("8,2M", 1 << 20),
            Err(SizeError::AboveSlotSize { .. })
        ));
        assert!(matches!(
            parse_sizes("8,,64", 1 << 20),
            Err(SizeError::Empty)
        ));
    }

    #[test]
    fn sizes_format_for_people() {
        assert_eq!(format_size(8), "8 B");
        assert_eq!(format_size(4096), "4 KiB");
        assert_eq!(format_size(16 << 20), "16 MiB");
    }
}
