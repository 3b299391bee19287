//! Same code at the same addresses: a suspended task's saved context holds return addresses
//! into the program's code, so a task may only migrate between nodes that run the same
//! binary loaded at the same address. [`CodeIdentity`] names both (a SHA-256 of the
//! executable and the run-time address of a function of this crate); nodes exchange it and
//! [`CodeIdentity::check`] refuses a peer that differs, with an error naming the difference.
//!
//! Not wired into the connection handshake yet (issue 13, step 3): the runtime migration
//! that needs it is not either.

use std::fmt;
use std::sync::OnceLock;

use sha2::{Digest, Sha256};

use crate::types::NodeId;

/// The bytes of an encoded [`CodeIdentity`].
pub const ENCODED_LEN: usize = 40;

/// Which binary a node runs, and where its code is loaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CodeIdentity {
    /// SHA-256 of the executable file.
    pub build: [u8; 32],
    /// The run-time address of [`anchor`] (differs when the load address differs).
    pub anchor: u64,
}

/// A function whose address stands for the load address of the code.
#[inline(never)]
pub fn anchor() -> u64 {
    0x6d65_6d6c_696e_6b00
}

/// How two nodes' code differs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CodeMismatch {
    /// The peer runs another binary.
    Build {
        /// The peer.
        node: NodeId,
        /// The first bytes of this node's executable hash, in hex.
        ours: String,
        /// The first bytes of the peer's, in hex.
        theirs: String,
    },
    /// The same binary, loaded at another address (address-space randomisation is on).
    LoadAddress {
        /// The peer.
        node: NodeId,
        /// Where the anchor function is here.
        ours: u64,
        /// Where it is at the peer.
        theirs: u64,
    },
}

impl fmt::Display for CodeMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CodeMismatch::Build { node, ours, theirs } => write!(
                f,
                "node {node} runs another binary (executable hash {theirs}..., here {ours}...): \
                 tasks cannot migrate between them; run the same build on every node"
            ),
            CodeMismatch::LoadAddress { node, ours, theirs } => write!(
                f,
                "node {node} loaded the same binary at another address (a known function at \
                 {theirs:#x} there, {ours:#x} here): tasks cannot migrate between them; start \
                 the nodes with address-space randomisation off (setarch -R) or through \
                 memlink's launcher"
            ),
        }
    }
}

impl std::error::Error for CodeMismatch {}

/// Why an encoded identity was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadIdentity {
    /// The length received.
    pub len: usize,
}

impl fmt::Display for BadIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "a code identity is {ENCODED_LEN} bytes, this one {}",
            self.len
        )
    }
}

impl std::error::Error for BadIdentity {}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl CodeIdentity {
    /// This process's identity (the executable is hashed once).
    pub fn of_this_process() -> std::io::Result<CodeIdentity> {
        static BUILD: OnceLock<[u8; 32]> = OnceLock::new();
        let build = match BUILD.get() {
            Some(b) => *b,
            None => {
                let exe = std::fs::read("/proc/self/exe")?;
                *BUILD.get_or_init(|| Sha256::digest(&exe).into())
            }
        };
        Ok(CodeIdentity {
            build,
            anchor: anchor as *const () as usize as u64,
        })
    }

    /// Whether a task may migrate between this node and `node`, whose identity is `peer`.
    pub fn check(&self, node: NodeId, peer: &CodeIdentity) -> Result<(), CodeMismatch> {
        if self.build != peer.build {
            return Err(CodeMismatch::Build {
                node,
                ours: hex(&self.build[..6]),
                theirs: hex(&peer.build[..6]),
            });
        }
        if self.anchor != peer.anchor {
            return Err(CodeMismatch::LoadAddress {
                node,
                ours: self.anchor,
                theirs: peer.anchor,
            });
        }
        Ok(())
    }

    /// The wire form: the hash, then the anchor (little-endian).
    pub fn encode(&self) -> [u8; ENCODED_LEN] {
        let mut out = [0u8; ENCODED_LEN];
        out[..32].copy_from_slice(&self.build);
        out[32..].copy_from_slice(&self.anchor.to_le_bytes());
        out
    }

    /// Read the wire form (from a peer: untrusted, length checked).
    pub fn decode(bytes: &[u8]) -> Result<CodeIdentity, BadIdentity> {
        let (Some(build), Some(anchor)) = (bytes.get(..32), bytes.get(32..ENCODED_LEN)) else {
            return Err(BadIdentity { len: bytes.len() });
        };
        if bytes.len() != ENCODED_LEN {
            return Err(BadIdentity { len: bytes.len() });
        }
        let mut b = [0u8; 32];
        b.copy_from_slice(build);
        let mut a = [0u8; 8];
        a.copy_from_slice(anchor);
        Ok(CodeIdentity {
            build: b,
            anchor: u64::from_le_bytes(a),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_process_matches_and_differences_are_named() {
        let me = CodeIdentity::of_this_process().unwrap();
        assert_eq!(me, CodeIdentity::of_this_process().unwrap());
        assert_eq!(me.check(1, &me), Ok(()));
        assert_eq!(CodeIdentity::decode(&me.encode()), Ok(me));
        assert_eq!(
            CodeIdentity::decode(&me.encode()[..39]),
            Err(BadIdentity { len: 39 })
        );

        let mut other = me;
        other.build[0] ^= 1;
        let e = me.check(2, &other).unwrap_err();
        assert!(matches!(e, CodeMismatch::Build { node: 2, .. }));
        assert!(e.to_string().contains("another binary"), "{e}");

        let mut moved = me;
        moved.anchor += 0x1000;
        let e = me.check(3, &moved).unwrap_err();
        assert_eq!(
            e,
            CodeMismatch::LoadAddress {
                node: 3,
                ours: me.anchor,
                theirs: me.anchor + 0x1000
            }
        );
        assert!(e.to_string().contains("randomisation"), "{e}");
    }

    /// A child process of the same binary, started with address-space randomisation off
    /// (`personality(ADDR_NO_RANDOMIZE)` via setarch -R, when present) twice, loads the code at
    /// the same address both times; the hash is the same as ours.
    #[test]
    fn two_runs_without_randomisation_load_at_the_same_address() {
        if std::env::var_os("MEMLINK_IDENTITY_CHILD").is_some() {
            let me = CodeIdentity::of_this_process().unwrap();
            println!("identity {}", hex(&me.encode()));
            return;
        }
        if std::process::Command::new("setarch")
            .arg("--help")
            .output()
            .is_err()
        {
            eprintln!("setarch missing: skipped");
            return;
        }
        let run = || {
            let out = std::process::Command::new("setarch")
                .args([std::env::consts::ARCH, "-R"])
                .arg(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "process::identity::tests::two_runs_without_randomisation_load_at_the_same_address",
                    "--nocapture",
                ])
                .env("MEMLINK_IDENTITY_CHILD", "1")
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout).to_string();
            text.lines()
                .find_map(|l| l.strip_prefix("identity ").map(str::to_owned))
                .unwrap_or_else(|| panic!("no identity in {text}"))
        };
        let (a, b) = (run(), run());
        assert_eq!(a, b, "two runs without randomisation differ");
        let me = CodeIdentity::of_this_process().unwrap();
        assert_eq!(a[..64], hex(&me.build), "the same binary hashes alike");
    }
}
