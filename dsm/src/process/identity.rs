//! Same code at the same addresses: a suspended task's saved context holds return addresses
//! into the program's code, so a task may only migrate between nodes that run the same
//! binary loaded at the same address. [`CodeIdentity`] names both (a SHA-256 of the
//! executable and the run-time address of a function of this crate); nodes exchange it and
//! [`CodeIdentity::check`] refuses a peer that differs, with an error naming the difference.
//!
//! Nodes tell each other their identity in the admission handshake
//! ([`crate::admission::handshake`]); [`crate::cluster::Dsm::code_check`] says whether a task
//! may migrate to a peer. Nodes whose code differs still share pages: only tasks are refused.
//!
//! Where memlink starts a node (`memlink dsm node`, which `memlink dsm run` and launchers
//! such as mpirun start), [`run_without_randomisation`] re-executes the process once with
//! address-space randomisation off (`personality(ADDR_NO_RANDOMIZE)`, as `setarch -R`
//! does), so the same binary loads at the same address on every node.

use std::fmt;
use std::sync::OnceLock;

use sha2::{Digest, Sha256};

use crate::types::NodeId;

/// The bytes of an encoded [`CodeIdentity`].
pub const ENCODED_LEN: usize = 40;

/// Which binary a node runs, and where its code is loaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CodeIdentity {
    /// SHA-256 of the executable's GNU build id (the linker's hash of what it linked), or of
    /// the whole file where it has none.
    pub build: [u8; 32],
    /// The run-time address of [`anchor`] (differs when the load address differs).
    pub anchor: u64,
}

/// A function whose address stands for the load address of the code.
#[inline(never)]
pub fn anchor() -> u64 {
    0x6d65_6d6c_696e_6b00
}

/// Set in the environment of a process that re-executed itself with randomisation off (so
/// it does so once).
pub const REEXEC_ENV: &str = "MEMLINK_DSM_NO_ASLR";

/// Set to `1` to keep address-space randomisation on (the node then refuses tasks from and
/// to every node whose code is loaded elsewhere; for tests of that refusal).
pub const KEEP_RANDOMISATION_ENV: &str = "MEMLINK_DSM_KEEP_ASLR";

/// What [`run_without_randomisation`] found, when it did not re-execute.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Randomisation {
    /// Off already (re-executed, or started under `setarch -R`).
    Off,
    /// Kept on, as [`KEEP_RANDOMISATION_ENV`] asks.
    KeptOn,
    /// Still on: it could not be turned off (the text says why; e.g. a container's seccomp
    /// policy refuses `personality`).
    StillOn(String),
}

const ADDR_NO_RANDOMIZE: libc::c_int = 0x0040000;

/// Turns address-space randomisation off for this process: if it is on, sets
/// `personality(ADDR_NO_RANDOMIZE)` and re-executes `/proc/self/exe` with the same
/// arguments (once: [`REEXEC_ENV`] marks the new process). Returns only when it did not
/// re-execute; call it first thing in `main`, before any thread starts.
pub fn run_without_randomisation() -> Randomisation {
    // SAFETY: personality(0xffffffff) only queries the current persona.
    let current = unsafe { libc::personality(0xffff_ffff) };
    if current < 0 {
        return Randomisation::StillOn(format!("personality: {}", std::io::Error::last_os_error()));
    }
    if current & ADDR_NO_RANDOMIZE != 0 {
        return Randomisation::Off;
    }
    if std::env::var_os(KEEP_RANDOMISATION_ENV).is_some_and(|v| v == "1") {
        return Randomisation::KeptOn;
    }
    if std::env::var_os(REEXEC_ENV).is_some() {
        return Randomisation::StillOn(
            "re-executed with ADDR_NO_RANDOMIZE, yet randomisation is on".into(),
        );
    }
    // SAFETY: sets this process's persona flags; no memory is touched.
    if unsafe { libc::personality((current | ADDR_NO_RANDOMIZE) as libc::c_ulong) } < 0 {
        return Randomisation::StillOn(format!(
            "personality(ADDR_NO_RANDOMIZE): {}",
            std::io::Error::last_os_error()
        ));
    }
    use std::os::unix::process::CommandExt;
    let mut args = std::env::args_os();
    let mut cmd = std::process::Command::new("/proc/self/exe");
    if let Some(arg0) = args.next() {
        cmd.arg0(arg0);
    }
    let e = cmd.args(args).env(REEXEC_ENV, "1").exec();
    // Back to what it was: this process goes on with randomisation on.
    // SAFETY: as above.
    unsafe { libc::personality(current as libc::c_ulong) };
    Randomisation::StillOn(format!("re-executing /proc/self/exe: {e}"))
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

/// The GNU build id of the 64-bit little-endian ELF file `exe` (the NT_GNU_BUILD_ID note of
/// a PT_NOTE segment), if it has one. Reads the header, the program headers and the note
/// segments only; every offset and length is checked against what was read.
fn gnu_build_id(exe: &std::fs::File) -> std::io::Result<Option<Vec<u8>>> {
    use std::os::unix::fs::FileExt;
    const PT_NOTE: u32 = 4;
    const NT_GNU_BUILD_ID: u32 = 3;
    let mut header = [0u8; 64];
    exe.read_exact_at(&mut header, 0)?;
    if &header[..4] != b"\x7fELF" || header[4] != 2 || header[5] != 1 {
        return Ok(None);
    }
    let u16_at = |b: &[u8], i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
    let u32_at = |b: &[u8], i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    let u64_at = |b: &[u8], i: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&b[i..i + 8]);
        u64::from_le_bytes(w)
    };
    let (phoff, phentsize, phnum) = (
        u64_at(&header, 32),
        usize::from(u16_at(&header, 54)),
        usize::from(u16_at(&header, 56)),
    );
    if phentsize < 56 || phnum > 256 {
        return Ok(None);
    }
    let mut phdrs = vec![0u8; phentsize * phnum];
    exe.read_exact_at(&mut phdrs, phoff)?;
    for ph in phdrs.chunks_exact(phentsize) {
        let (offset, size) = (u64_at(ph, 8), u64_at(ph, 32));
        if u32_at(ph, 0) != PT_NOTE || size > 1 << 16 {
            continue;
        }
        let mut notes = vec![0u8; size as usize];
        exe.read_exact_at(&mut notes, offset)?;
        let mut at = 0usize;
        while at + 12 <= notes.len() {
            let namesz = u32_at(&notes, at) as usize;
            let descsz = u32_at(&notes, at + 4) as usize;
            let kind = u32_at(&notes, at + 8);
            let name_at = at + 12;
            let desc_at = name_at + namesz.next_multiple_of(4);
            let end = desc_at.saturating_add(descsz.next_multiple_of(4));
            if end > notes.len() || desc_at + descsz > notes.len() {
                break;
            }
            if kind == NT_GNU_BUILD_ID && notes[name_at..name_at + namesz] == *b"GNU\0" {
                return Ok(Some(notes[desc_at..desc_at + descsz].to_vec()));
            }
            at = end;
        }
    }
    Ok(None)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl CodeIdentity {
    /// This process's identity (the executable is read once).
    pub fn of_this_process() -> std::io::Result<CodeIdentity> {
        static BUILD: OnceLock<[u8; 32]> = OnceLock::new();
        let build = match BUILD.get() {
            Some(b) => *b,
            None => {
                let exe = std::fs::File::open("/proc/self/exe")?;
                let digest: [u8; 32] = match gnu_build_id(&exe)? {
                    Some(id) => Sha256::digest([&b"gnu build id:"[..], &id].concat()).into(),
                    None => Sha256::digest(std::fs::read("/proc/self/exe")?).into(),
                };
                *BUILD.get_or_init(|| digest)
            }
        };
        Ok(CodeIdentity {
            build,
            anchor: anchor as *const () as usize as u64,
        })
    }

    /// This process's identity; if the executable cannot be read, an unknown build (all
    /// zero hash) that differs from every peer's, so tasks never migrate to or from here.
    pub fn here() -> CodeIdentity {
        CodeIdentity::of_this_process().unwrap_or(CodeIdentity {
            build: [0; 32],
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
        let exe = std::fs::File::open("/proc/self/exe").unwrap();
        let id = gnu_build_id(&exe)
            .unwrap()
            .expect("the linker writes a build id");
        assert!(id.len() >= 16, "{id:?}");
    }
}
