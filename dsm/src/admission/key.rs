//! The cluster key: 32 random bytes that every node of one cluster holds, kept in a file that
//! only its owner can read.
//!
//! The file holds the key as 64 hexadecimal digits (and an optional newline). A key file that
//! its group or other users can read or write is refused: anyone who can read the key can join
//! the cluster.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The environment variable that names a key file, for nodes started without `--key-file`
/// (e.g. by a cluster launcher that cannot add arguments).
pub const KEY_FILE_ENV: &str = "MEMLINK_DSM_KEY_FILE";

/// Bytes in a cluster key.
pub const KEY_LEN: usize = 32;

/// A cluster key. Its bytes are never printed (`Debug` shows `ClusterKey(..)`) and are
/// overwritten when it is dropped.
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterKey([u8; KEY_LEN]);

impl fmt::Debug for ClusterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClusterKey(..)")
    }
}

impl Drop for ClusterKey {
    fn drop(&mut self) {
        self.0.fill(0);
        std::hint::black_box(&self.0);
    }
}

/// Why a cluster key could not be made, read or written.
#[derive(Debug)]
pub enum KeyError {
    /// The system's random number generator failed.
    Random(String),
    /// The key file could not be opened, read or written.
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        error: io::Error,
    },
    /// The key file can be read or written by its group or by other users.
    Exposed {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The key file is not a regular file.
    NotAFile(PathBuf),
    /// The key file does not hold 64 hexadecimal digits.
    Malformed(PathBuf),
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::Random(e) => write!(f, "cannot draw a random key: {e}"),
            KeyError::Io { path, error } => write!(f, "key file {}: {error}", path.display()),
            KeyError::Exposed { path, mode } => write!(
                f,
                "key file {} has mode {:03o}: others could read the cluster key and join; \
                 run `chmod 600 {}`",
                path.display(),
                mode & 0o777,
                path.display()
            ),
            KeyError::NotAFile(path) => {
                write!(f, "key file {} is not a regular file", path.display())
            }
            KeyError::Malformed(path) => write!(
                f,
                "key file {} does not hold a key (64 hexadecimal digits); make one with \
                 `memlink dsm keygen`",
                path.display()
            ),
        }
    }
}

impl std::error::Error for KeyError {}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

impl ClusterKey {
    /// A fresh key from the operating system's random number generator.
    pub fn generate() -> Result<ClusterKey, KeyError> {
        let mut bytes = [0u8; KEY_LEN];
        getrandom::fill(&mut bytes).map_err(|e| KeyError::Random(e.to_string()))?;
        Ok(ClusterKey(bytes))
    }

    /// A key with these bytes (tests, and keys kept elsewhere than in a file).
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> ClusterKey {
        ClusterKey(bytes)
    }

    /// The key's bytes.
    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    /// Parses the text of a key file: 64 hexadecimal digits, surrounding white space ignored.
    pub fn parse(text: &[u8]) -> Option<ClusterKey> {
        let text = text.trim_ascii();
        if text.len() != 2 * KEY_LEN {
            return None;
        }
        let mut bytes = [0u8; KEY_LEN];
        for (i, pair) in text.chunks_exact(2).enumerate() {
            bytes[i] = hex_value(pair[0])? << 4 | hex_value(pair[1])?;
        }
        Some(ClusterKey(bytes))
    }

    fn to_hex(&self) -> String {
        let mut s = String::with_capacity(2 * KEY_LEN + 1);
        for b in self.0 {
            s.push(char::from(b"0123456789abcdef"[(b >> 4) as usize]));
            s.push(char::from(b"0123456789abcdef"[(b & 15) as usize]));
        }
        s.push('\n');
        s
    }

    /// Reads the key in `path`, refusing a file that its group or other users can read or
    /// write (mode must be 0600 or stricter).
    pub fn from_file(path: &Path) -> Result<ClusterKey, KeyError> {
        let io = |error| KeyError::Io {
            path: path.to_path_buf(),
            error,
        };
        let file = File::open(path).map_err(io)?;
        let meta = file.metadata().map_err(io)?;
        if !meta.is_file() {
            return Err(KeyError::NotAFile(path.to_path_buf()));
        }
        if meta.mode() & 0o077 != 0 {
            return Err(KeyError::Exposed {
                path: path.to_path_buf(),
                mode: meta.mode(),
            });
        }
        // A key file is 65 bytes; read a little more to tell a longer file from a key.
        let mut text = Vec::with_capacity(2 * KEY_LEN + 8);
        file.take(2 * KEY_LEN as u64 + 64)
            .read_to_end(&mut text)
            .map_err(io)?;
        let key = ClusterKey::parse(&text).ok_or_else(|| KeyError::Malformed(path.to_path_buf()));
        text.fill(0);
        key
    }

    /// The key named by [`KEY_FILE_ENV`], if that variable is set.
    pub fn from_env() -> Option<Result<ClusterKey, KeyError>> {
        let path = std::env::var_os(KEY_FILE_ENV)?;
        Some(ClusterKey::from_file(Path::new(&path)))
    }

    /// Writes this key to a new file at `path` with mode 0600; an existing file is never
    /// overwritten.
    pub fn write_new(&self, path: &Path) -> Result<(), KeyError> {
        let io = |error| KeyError::Io {
            path: path.to_path_buf(),
            error,
        };
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(io)?;
        // The umask may only have narrowed 0600; make it exactly 0600 all the same.
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(io)?;
        file.write_all(self.to_hex().as_bytes()).map_err(io)?;
        file.sync_all().map_err(io)
    }
}

/// A fresh key in a new private file (mode 0600) in the temporary directory, removed when
/// this is dropped: the local launcher's key for the nodes of one run.
#[derive(Debug)]
pub struct TempKeyFile {
    path: PathBuf,
}

impl TempKeyFile {
    /// Draws a key and writes it to a new file with an unguessable name.
    pub fn create() -> Result<TempKeyFile, KeyError> {
        let mut name = [0u8; 8];
        getrandom::fill(&mut name).map_err(|e| KeyError::Random(e.to_string()))?;
        let path = std::env::temp_dir().join(format!(
            "memlink-dsm-key-{}-{:016x}",
            std::process::id(),
            u64::from_le_bytes(name)
        ));
        ClusterKey::generate()?.write_new(&path)?;
        Ok(TempKeyFile { path })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempKeyFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_path(name: &str) -> PathBuf {
        let mut nonce = [0u8; 8];
        getrandom::fill(&mut nonce).unwrap();
        std::env::temp_dir().join(format!(
            "memlink-key-test-{}-{}-{name}",
            std::process::id(),
            u64::from_le_bytes(nonce)
        ))
    }

    #[test]
    fn a_written_key_reads_back_and_is_private() {
        let path = temp_path("roundtrip");
        let key = ClusterKey::generate().unwrap();
        key.write_new(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(ClusterKey::from_file(&path).unwrap(), key);
        // Never overwritten.
        assert!(matches!(
            ClusterKey::generate().unwrap().write_new(&path),
            Err(KeyError::Io { .. })
        ));
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn a_key_file_others_can_read_is_refused() {
        let path = temp_path("exposed");
        ClusterKey::generate().unwrap().write_new(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = ClusterKey::from_file(&path).unwrap_err();
        assert!(matches!(err, KeyError::Exposed { .. }), "{err}");
        assert!(err.to_string().contains("chmod 600"), "{err}");
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn malformed_key_text_is_refused() {
        assert!(ClusterKey::parse(b"abc").is_none());
        assert!(ClusterKey::parse(&[b'g'; 64]).is_none());
        let k = ClusterKey::parse(&[b'A'; 64]).unwrap();
        assert_eq!(k.as_bytes(), &[0xaa; KEY_LEN]);
        assert_eq!(format!("{k:?}"), "ClusterKey(..)");
    }
}
