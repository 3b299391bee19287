//! Passing capabilities between processes over a unix socket, like a Mach port right
//! carried in a message: the descriptor travels with SCM_RIGHTS, the rest (segment id,
//! offset, rights, generation, the type's size and alignment) as bytes. Sending needs
//! the GRANT right; the receiver re-checks everything, so a forged or mistyped message
//! is an error, not a wider capability.

use std::fmt;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;

use crate::capability::{Capability, MintError, Rights};
use crate::fd_passing::{RecvFdsError, SendFdsError, recv_message, send_with_fds};
use crate::segment::SegmentId;
use crate::shareable::Shareable;

const CAP_MAGIC: u64 = u64::from_le_bytes(*b"MLCAP\0\0\x01");
const WIRE_LEN: usize = 56;

/// Why sending a capability failed.
#[derive(Debug)]
pub enum SendCapError {
    /// The capability lacks the GRANT right; restrict a granting capability instead.
    NoGrantRight,
    /// The socket failed.
    Send(SendFdsError),
}

impl fmt::Display for SendCapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendCapError::NoGrantRight => write!(
                f,
                "this capability does not carry the GRANT right, so it cannot be passed on"
            ),
            SendCapError::Send(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for SendCapError {}

/// Why receiving a capability failed. Every field of the message that can be wrong has
/// its own variant or is named in [`RecvCapError::BadField`].
#[derive(Debug)]
pub enum RecvCapError {
    /// The socket failed or the peer disconnected.
    Recv(RecvFdsError),
    /// The message is not [`CAP_MESSAGE_LEN`] bytes long.
    WrongLength {
        /// Its length.
        found: usize,
    },
    /// The message does not start with the capability magic.
    BadMagic {
        /// The first 8 bytes, little-endian.
        found: u64,
    },
    /// The message carries other than exactly one descriptor (all were closed).
    WrongFdCount {
        /// Descriptors that arrived.
        found: usize,
    },
    /// A field holds a value no sender writes.
    BadField {
        /// The field's name.
        field: &'static str,
        /// The value found.
        found: u64,
    },
    /// The capability is for a type of a different size or alignment.
    TypeMismatch {
        /// Size and alignment of the expected type.
        expected: (usize, usize),
        /// Size and alignment in the message.
        found: (u64, u64),
    },
    /// The carried descriptor or the object's bounds failed the checks.
    Invalid(MintError),
}

impl fmt::Display for RecvCapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecvCapError::Recv(e) => write!(f, "{e}"),
            RecvCapError::WrongLength { found } => write!(
                f,
                "a capability message is {CAP_MESSAGE_LEN} bytes, this one {found}: the peer did not send a capability"
            ),
            RecvCapError::BadMagic { found } => write!(
                f,
                "message magic {found:#018x} is not a memlink capability's: the peer did not send a capability"
            ),
            RecvCapError::WrongFdCount { found } => write!(
                f,
                "a capability message carries one descriptor, this one {found}"
            ),
            RecvCapError::BadField { field, found } => write!(
                f,
                "capability message field {field} holds {found:#x}, which no sender writes"
            ),
            RecvCapError::TypeMismatch { expected, found } => write!(
                f,
                "capability is for a type of size/align {found:?}, expected {expected:?}: sender and receiver disagree on the type"
            ),
            RecvCapError::Invalid(e) => write!(f, "received capability is invalid: {e}"),
        }
    }
}

impl std::error::Error for RecvCapError {}

/// Length of a capability message on the wire.
pub const CAP_MESSAGE_LEN: usize = WIRE_LEN;

/// The fields of a capability message that passed the checks that need no descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CapMessage {
    /// Size of the object's type.
    pub size: u64,
    /// Alignment of the object's type (a power of two).
    pub align: u64,
    /// The rights carried.
    pub rights: Rights,
    /// The segment named.
    pub segment: SegmentId,
    /// The object's payload offset.
    pub offset: usize,
    /// The generation the capability was minted at (nonzero, 32 bits).
    pub generation: u64,
}

impl CapMessage {
    /// The message for `cap`.
    pub fn of<T>(cap: &Capability<T>) -> CapMessage {
        CapMessage {
            size: std::mem::size_of::<T>() as u64,
            align: std::mem::align_of::<T>() as u64,
            rights: cap.rights(),
            segment: cap.segment_id(),
            offset: cap.offset(),
            generation: cap.generation(),
        }
    }

    /// The bytes on the wire.
    pub fn encode(&self) -> [u8; CAP_MESSAGE_LEN] {
        let mut msg = [0u8; WIRE_LEN];
        msg[0..8].copy_from_slice(&CAP_MAGIC.to_le_bytes());
        msg[8..16].copy_from_slice(&self.size.to_le_bytes());
        msg[16..24].copy_from_slice(&self.align.to_le_bytes());
        msg[24..28].copy_from_slice(&self.rights.bits().to_le_bytes());
        msg[32..40].copy_from_slice(&self.segment.raw().to_le_bytes());
        msg[40..48].copy_from_slice(&(self.offset as u64).to_le_bytes());
        msg[48..56].copy_from_slice(&self.generation.to_le_bytes());
        msg
    }

    /// Checks a received message's bytes: length, magic, every field's range. Pure; what
    /// [`recv_capability`] runs before it looks at the descriptor, and what the
    /// `capability_message` fuzz target drives.
    pub fn decode(msg: &[u8]) -> Result<CapMessage, RecvCapError> {
        let msg: &[u8; WIRE_LEN] = msg
            .try_into()
            .map_err(|_| RecvCapError::WrongLength { found: msg.len() })?;
        let u64_at = |at: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&msg[at..at + 8]);
            u64::from_le_bytes(w)
        };
        let u32_at = |at: usize| {
            let mut w = [0u8; 4];
            w.copy_from_slice(&msg[at..at + 4]);
            u32::from_le_bytes(w)
        };
        let magic = u64_at(0);
        if magic != CAP_MAGIC {
            return Err(RecvCapError::BadMagic { found: magic });
        }
        let bad = |field: &'static str, found: u64| RecvCapError::BadField { field, found };
        let size = u64_at(8);
        if size == 0 {
            return Err(bad("size", size));
        }
        let align = u64_at(16);
        if !align.is_power_of_two() {
            return Err(bad("align", align));
        }
        let rights = Rights::from_bits(u32_at(24)).ok_or(bad("rights", u32_at(24) as u64))?;
        if u32_at(28) != 0 {
            return Err(bad("reserved", u32_at(28) as u64));
        }
        let segment = SegmentId::from_raw(u64_at(32)).ok_or(bad("segment", u64_at(32)))?;
        let offset = u64_at(40);
        let offset_ok = offset <= crate::segment::MAX_PAYLOAD_LEN as u64
            && offset % align == 0
            && offset.checked_add(size).is_some();
        if !offset_ok {
            return Err(bad("offset", offset));
        }
        let generation = u64_at(48);
        if generation == 0 || generation > u32::MAX as u64 {
            return Err(bad("generation", generation));
        }
        Ok(CapMessage {
            size,
            align,
            rights,
            segment,
            offset: offset as usize,
            generation,
        })
    }
}

/// Sends a copy of `cap` (the sender keeps its own). Needs [`Rights::GRANT`]; to pass on
/// fewer rights, send `cap.restrict(..)?`.
pub fn send_capability<T>(stream: &UnixStream, cap: &Capability<T>) -> Result<(), SendCapError> {
    if !cap.rights().contains(Rights::GRANT) {
        return Err(SendCapError::NoGrantRight);
    }
    send_with_fds(stream, &CapMessage::of(cap).encode(), &[cap.fd()]).map_err(SendCapError::Send)
}

/// Rebuilds a capability for a `T` from a received message and its descriptors: the
/// message's checks ([`CapMessage::decode`]), the type, then the descriptor's header, the
/// object's bounds and the rights against the descriptor's access.
pub fn capability_from_message<T: Shareable>(
    msg: &[u8],
    fds: Vec<OwnedFd>,
) -> Result<Capability<T>, RecvCapError> {
    if fds.len() != 1 {
        return Err(RecvCapError::WrongFdCount { found: fds.len() });
    }
    let m = CapMessage::decode(msg)?;
    let expected = (std::mem::size_of::<T>(), std::mem::align_of::<T>());
    if (m.size, m.align) != (expected.0 as u64, expected.1 as u64) {
        return Err(RecvCapError::TypeMismatch {
            expected,
            found: (m.size, m.align),
        });
    }
    let fd = fds
        .into_iter()
        .next()
        .ok_or(RecvCapError::WrongFdCount { found: 0 })?;
    Capability::from_parts(fd, m.segment, m.offset, m.rights, m.generation)
        .map_err(RecvCapError::Invalid)
}

/// Receives a capability for a `T` sent with [`send_capability`].
pub fn recv_capability<T: Shareable>(stream: &UnixStream) -> Result<Capability<T>, RecvCapError> {
    let (msg, fds) = recv_message(stream).map_err(RecvCapError::Recv)?;
    capability_from_message(&msg, fds)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::segment::Segment;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[test]
    fn grant_is_needed_and_types_are_checked() {
        let (a, b) = UnixStream::pair().unwrap();
        let seg = Segment::create("xfer", 4096).unwrap();
        let cap = Capability::<AtomicU32>::mint(&seg, 16, Rights::ALL).unwrap();
        let no_grant = cap.restrict(Rights::READ).unwrap();
        assert!(matches!(
            send_capability(&a, &no_grant),
            Err(SendCapError::NoGrantRight)
        ));
        send_capability(&a, &cap).unwrap();
        assert!(matches!(
            recv_capability::<u64>(&b),
            Err(RecvCapError::TypeMismatch { .. })
        ));
        send_capability(&a, &cap.restrict(Rights::READ | Rights::GRANT).unwrap()).unwrap();
        let got = recv_capability::<AtomicU32>(&b).unwrap();
        assert_eq!(got.rights(), Rights::READ | Rights::GRANT);
        cap.acquire_write().unwrap().store(3, Ordering::Relaxed);
        assert_eq!(got.acquire().unwrap().load(Ordering::Relaxed), 3);
        // A message that is not a capability is refused.
        send_with_fds(&a, &[0u8; WIRE_LEN], &[seg.as_fd()]).unwrap();
        assert!(matches!(
            recv_capability::<AtomicU32>(&b),
            Err(RecvCapError::BadMagic { found: 0 })
        ));
    }
}
