//! The wire form of the node runtime's requests (sync manager, allocator) and replies.
//! Every payload starts with a service byte; coherence messages follow [`SERVICE_COHERENCE`]
//! and the sender's free-frame count (see [`coherence_header`]) in the format of
//! `protocol::codec`.

use crate::types::{DsmError, NodeId};

/// Coherence protocol message (one-way frame).
pub const SERVICE_COHERENCE: u8 = 1;
/// Sync manager request (request frame).
pub const SERVICE_SYNC: u8 = 2;
/// Allocator request (request frame).
pub const SERVICE_ALLOC: u8 = 3;
/// The sender's exact free-frame count, broadcast now and then (one-way frame, no reply).
pub const SERVICE_FREE_FRAMES: u8 = 4;
/// A scheduler message (one-way frame; see `crate::process::codec`).
pub const SERVICE_TASKS: u8 = 5;

/// The start of a coherence payload: the service byte and the sender's free page frames
/// (piggybacked on every coherence message, as the seed suggests), little-endian.
pub fn coherence_header(free_frames: u32, out: &mut Vec<u8>) {
    out.push(SERVICE_COHERENCE);
    out.extend_from_slice(&free_frames.to_le_bytes());
}

/// The sender's free frames and the codec bytes of a coherence payload (after its service
/// byte).
pub fn split_coherence(body: &[u8]) -> Result<(u32, &[u8]), String> {
    match (body.get(..4), body.get(4..)) {
        (Some(free), Some(rest)) => {
            let free = u32::from_le_bytes(free.try_into().map_err(|_| "short header")?);
            Ok((free, rest))
        }
        _ => Err(format!(
            "coherence message of {} bytes has no free-frame count",
            body.len()
        )),
    }
}

/// The broadcast of a node's free frames.
pub fn free_frames_message(free_frames: u32) -> Vec<u8> {
    let mut b = vec![SERVICE_FREE_FRAMES];
    b.extend_from_slice(&free_frames.to_le_bytes());
    b
}

/// The count of a free-frames broadcast (after its service byte).
pub fn decode_free_frames(body: &[u8]) -> Result<u32, String> {
    <[u8; 4]>::try_from(body)
        .map(u32::from_le_bytes)
        .map_err(|_| format!("free-frame broadcast of {} bytes, not 4", body.len()))
}

/// A request to a sync manager or to the allocator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    /// Acquire a lock (the reply comes when it is granted).
    Lock(u32),
    /// Release a lock.
    Unlock(u32),
    /// Arrive at a barrier (the reply comes when all nodes arrived).
    Barrier(u32),
    /// Allocate `size` bytes aligned to `align`.
    Alloc {
        /// Bytes.
        size: u64,
        /// Alignment.
        align: u64,
    },
    /// Free the block at an offset.
    Free(u64),
}

impl Request {
    /// Encode with its service byte.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(18);
        match *self {
            Request::Lock(x) | Request::Unlock(x) | Request::Barrier(x) => {
                b.push(SERVICE_SYNC);
                b.push(match self {
                    Request::Lock(_) => 1,
                    Request::Unlock(_) => 2,
                    _ => 3,
                });
                b.extend_from_slice(&x.to_le_bytes());
            }
            Request::Alloc { size, align } => {
                b.push(SERVICE_ALLOC);
                b.push(1);
                b.extend_from_slice(&size.to_le_bytes());
                b.extend_from_slice(&align.to_le_bytes());
            }
            Request::Free(off) => {
                b.push(SERVICE_ALLOC);
                b.push(2);
                b.extend_from_slice(&off.to_le_bytes());
            }
        }
        b
    }

    /// Decode a request (service byte included).
    pub fn decode(b: &[u8]) -> Result<Request, String> {
        let u32_at = |i: usize| -> Option<u32> {
            Some(u32::from_le_bytes(b.get(i..i + 4)?.try_into().ok()?))
        };
        let u64_at = |i: usize| -> Option<u64> {
            Some(u64::from_le_bytes(b.get(i..i + 8)?.try_into().ok()?))
        };
        let r = match (b.first(), b.get(1), b.len()) {
            (Some(&SERVICE_SYNC), Some(1), 6) => u32_at(2).map(Request::Lock),
            (Some(&SERVICE_SYNC), Some(2), 6) => u32_at(2).map(Request::Unlock),
            (Some(&SERVICE_SYNC), Some(3), 6) => u32_at(2).map(Request::Barrier),
            (Some(&SERVICE_ALLOC), Some(1), 18) => u64_at(2)
                .zip(u64_at(10))
                .map(|(size, align)| Request::Alloc { size, align }),
            (Some(&SERVICE_ALLOC), Some(2), 10) => u64_at(2).map(Request::Free),
            _ => None,
        };
        r.ok_or_else(|| format!("malformed request of {} bytes", b.len()))
    }
}

const OK: u8 = 0;
const ERR_OOM: u8 = 1;
const ERR_INVALID_FREE: u8 = 2;
const ERR_TEXT: u8 = 3;
const ERR_NODE_LOST: u8 = 4;

/// A successful reply carrying `value`.
pub fn ok_reply(value: u64) -> Vec<u8> {
    let mut b = vec![OK];
    b.extend_from_slice(&value.to_le_bytes());
    b
}

/// A failed reply.
pub fn err_reply(e: &DsmError) -> Vec<u8> {
    let (code, value, text) = match e {
        DsmError::OutOfMemory { requested } => (ERR_OOM, *requested as u64, String::new()),
        DsmError::InvalidFree { offset } => (ERR_INVALID_FREE, *offset as u64, String::new()),
        DsmError::NodeLost { node, reason } => (ERR_NODE_LOST, *node as u64, reason.clone()),
        other => (ERR_TEXT, 0, other.to_string()),
    };
    let mut b = vec![code];
    b.extend_from_slice(&value.to_le_bytes());
    b.extend_from_slice(text.as_bytes());
    b
}

/// Decode a reply into its value or its error.
pub fn decode_reply(b: &[u8]) -> Result<u64, DsmError> {
    if b.len() < 9 {
        return Err(DsmError::Protocol(format!("reply of {} bytes", b.len())));
    }
    let value = u64::from_le_bytes(b[1..9].try_into().unwrap_or([0; 8]));
    match b[0] {
        OK => Ok(value),
        ERR_OOM => Err(DsmError::OutOfMemory {
            requested: value as usize,
        }),
        ERR_INVALID_FREE => Err(DsmError::InvalidFree {
            offset: value as usize,
        }),
        ERR_TEXT => Err(DsmError::Sync(
            String::from_utf8_lossy(&b[9..]).into_owned(),
        )),
        ERR_NODE_LOST => Err(DsmError::NodeLost {
            node: value as NodeId,
            reason: String::from_utf8_lossy(&b[9..]).into_owned(),
        }),
        c => Err(DsmError::Protocol(format!("unknown reply code {c}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_and_garbage_is_refused() {
        for r in [
            Request::Lock(3),
            Request::Unlock(u32::MAX),
            Request::Barrier(0),
            Request::Alloc {
                size: 100,
                align: 64,
            },
            Request::Free(4096),
        ] {
            assert_eq!(Request::decode(&r.encode()), Ok(r));
        }
        assert!(Request::decode(&[SERVICE_SYNC, 9, 0, 0, 0, 0]).is_err());
        assert!(Request::decode(&[SERVICE_ALLOC, 1, 0]).is_err());
        assert!(Request::decode(&[]).is_err());
    }

    #[test]
    fn free_frame_counts_round_trip_and_short_ones_are_refused() {
        let mut b = Vec::new();
        coherence_header(77, &mut b);
        b.extend_from_slice(&[9, 9]);
        assert_eq!(b[0], SERVICE_COHERENCE);
        assert_eq!(split_coherence(&b[1..]), Ok((77, &[9u8, 9][..])));
        assert!(split_coherence(&[1, 2, 3]).is_err());
        let m = free_frames_message(u32::MAX);
        assert_eq!(m[0], SERVICE_FREE_FRAMES);
        assert_eq!(decode_free_frames(&m[1..]), Ok(u32::MAX));
        assert!(decode_free_frames(&m[1..4]).is_err());
        assert!(decode_free_frames(&[0; 5]).is_err());
    }

    #[test]
    fn replies_round_trip() {
        assert_eq!(decode_reply(&ok_reply(77)).unwrap(), 77);
        let e = decode_reply(&err_reply(&DsmError::OutOfMemory { requested: 5 }));
        assert!(matches!(e, Err(DsmError::OutOfMemory { requested: 5 })));
        let e = decode_reply(&err_reply(&DsmError::Sync("no".into())));
        assert!(matches!(e, Err(DsmError::Sync(t)) if t.contains("no")));
        let lost = DsmError::NodeLost {
            node: 3,
            reason: "EOF".into(),
        };
        let e = decode_reply(&err_reply(&lost));
        assert!(matches!(e, Err(DsmError::NodeLost { node: 3, reason }) if reason == "EOF"));
        assert!(decode_reply(&[0, 1]).is_err());
    }
}
