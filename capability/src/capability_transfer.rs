//! Passing capabilities between processes over a unix socket, like a Mach port right
//! carried in a message: the descriptor travels with SCM_RIGHTS, the rest (segment id,
//! offset, rights, generation, the type's size and alignment) as bytes. Sending needs
//! the GRANT right; the receiver re-checks everything, so a forged or mistyped message
//! is an error, not a wider capability.

use std::fmt;
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

/// Why receiving a capability failed.
#[derive(Debug)]
pub enum RecvCapError {
    /// The socket failed or the peer disconnected.
    Recv(RecvFdsError),
    /// The message is not a capability (wrong length, magic, rights bits or descriptors).
    NotACapability,
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
            RecvCapError::NotACapability => {
                write!(f, "the message received is not a memlink capability")
            }
            RecvCapError::TypeMismatch { expected, found } => write!(
                f,
                "capability is for a type of size/align {found:?}, expected {expected:?}: sender and receiver disagree on the type"
            ),
            RecvCapError::Invalid(e) => write!(f, "received capability is invalid: {e}"),
        }
    }
}

impl std::error::Error for RecvCapError {}

/// Sends a copy of `cap` (the sender keeps its own). Needs [`Rights::GRANT`]; to pass on
/// fewer rights, send `cap.restrict(..)?`.
pub fn send_capability<T>(stream: &UnixStream, cap: &Capability<T>) -> Result<(), SendCapError> {
    if !cap.rights().contains(Rights::GRANT) {
        return Err(SendCapError::NoGrantRight);
    }
    let mut msg = [0u8; WIRE_LEN];
    msg[0..8].copy_from_slice(&CAP_MAGIC.to_le_bytes());
    msg[8..16].copy_from_slice(&(std::mem::size_of::<T>() as u64).to_le_bytes());
    msg[16..24].copy_from_slice(&(std::mem::align_of::<T>() as u64).to_le_bytes());
    msg[24..28].copy_from_slice(&cap.rights().bits().to_le_bytes());
    msg[32..40].copy_from_slice(&cap.segment_id().raw().to_le_bytes());
    msg[40..48].copy_from_slice(&(cap.offset() as u64).to_le_bytes());
    msg[48..56].copy_from_slice(&cap.generation().to_le_bytes());
    send_with_fds(stream, &msg, &[cap.fd()]).map_err(SendCapError::Send)
}

fn u64_at(msg: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(msg[at..at + 8].try_into().expect("8 bytes"))
}

/// Receives a capability for a `T` sent with [`send_capability`].
pub fn recv_capability<T: Shareable>(stream: &UnixStream) -> Result<Capability<T>, RecvCapError> {
    let (msg, fds) = recv_message(stream).map_err(RecvCapError::Recv)?;
    if msg.len() != WIRE_LEN || fds.len() != 1 || u64_at(&msg, 0) != CAP_MAGIC {
        return Err(RecvCapError::NotACapability);
    }
    let expected = (std::mem::size_of::<T>(), std::mem::align_of::<T>());
    let found = (u64_at(&msg, 8), u64_at(&msg, 16));
    if found != (expected.0 as u64, expected.1 as u64) {
        return Err(RecvCapError::TypeMismatch { expected, found });
    }
    let rights = Rights::from_bits(u32::from_le_bytes(msg[24..28].try_into().expect("4 bytes")))
        .ok_or(RecvCapError::NotACapability)?;
    let id = SegmentId::from_raw(u64_at(&msg, 32)).ok_or(RecvCapError::NotACapability)?;
    let offset = usize::try_from(u64_at(&msg, 40)).map_err(|_| RecvCapError::NotACapability)?;
    let generation = u64_at(&msg, 48);
    let fd = fds.into_iter().next().ok_or(RecvCapError::NotACapability)?;
    Capability::from_parts(fd, id, offset, rights, generation).map_err(RecvCapError::Invalid)
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
            Err(RecvCapError::NotACapability)
        ));
    }
}
