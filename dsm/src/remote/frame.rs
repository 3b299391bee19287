//! Length-prefixed frames: a fixed 24-byte header followed by the payload.
//!
//! ```text
//! offset size field
//!  0     4    magic       "MLDS"
//!  4     1    version     FRAME_VERSION
//!  5     1    kind        FrameKind
//!  6     2    hint        piggybacked hint (free page frames for page replacement), 0 for now
//!  8     8    request_id  pairs a reply with its request; 0 for one-way frames
//! 16     4    len         payload length in bytes (at most MAX_PAYLOAD)
//! 20     4    reserved    0
//! ```
//! All integers are little-endian. A header that fails any check is a [`FrameError`]; the
//! transport drops the connection that sent it.

use std::fmt;

/// The first four bytes of every frame: "MLDS".
pub const FRAME_MAGIC: u32 = u32::from_le_bytes(*b"MLDS");
/// The frame format version this build speaks.
pub const FRAME_VERSION: u8 = 2;
/// Size of the frame header in bytes.
pub const HEADER_LEN: usize = 24;
/// The largest payload a frame may carry: a page plus room for the message around it.
pub const MAX_PAYLOAD: usize = 64 * 1024;

/// What a frame is, at the transport level.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum FrameKind {
    /// A message of the admission handshake (see [`crate::admission::handshake`]); only
    /// before a connection is admitted.
    Hello = 1,
    /// A request that expects a reply carrying the same request id.
    Request = 2,
    /// The reply to a request.
    Reply = 3,
    /// A message that expects no reply.
    OneWay = 4,
    /// The sender leaves the cluster in order: its EOF that follows is not a failure.
    Leave = 5,
    /// The sender lost a node (payload: a [`crate::remote::notice::LostNotice`]); sent to
    /// every peer before the sender fails, so survivors name the node that died.
    Lost = 6,
}

impl FrameKind {
    fn from_u8(v: u8) -> Option<FrameKind> {
        Some(match v {
            1 => FrameKind::Hello,
            2 => FrameKind::Request,
            3 => FrameKind::Reply,
            4 => FrameKind::OneWay,
            5 => FrameKind::Leave,
            6 => FrameKind::Lost,
            _ => return None,
        })
    }
}

/// A decoded frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// What the frame is.
    pub kind: FrameKind,
    /// Piggybacked hint (reserved for free-frame counts), 0 when unused.
    pub hint: u16,
    /// Request id; 0 for frames that are not part of a request/reply pair.
    pub request_id: u64,
    /// Payload length in bytes.
    pub len: u32,
}

/// A header that cannot be accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// The magic number is wrong: the peer is not a memlink node.
    BadMagic(u32),
    /// The peer speaks another frame version.
    BadVersion(u8),
    /// The frame kind is not one this version knows.
    UnknownKind(u8),
    /// The payload length is over [`MAX_PAYLOAD`].
    TooLong(u32),
    /// The reserved field is not zero.
    BadReserved(u32),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::BadMagic(m) => write!(f, "bad frame magic {m:#010x}: not a memlink node"),
            FrameError::BadVersion(v) => write!(
                f,
                "frame version {v}, this node speaks {FRAME_VERSION}: run the same memlink on all nodes"
            ),
            FrameError::UnknownKind(k) => write!(f, "unknown frame kind {k}"),
            FrameError::TooLong(n) => {
                write!(
                    f,
                    "frame payload of {n} bytes is over the limit of {MAX_PAYLOAD}"
                )
            }
            FrameError::BadReserved(r) => write!(f, "reserved header field is {r:#x}, not 0"),
        }
    }
}

impl std::error::Error for FrameError {}

impl Header {
    /// Encode the header into its 24 bytes.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..4].copy_from_slice(&FRAME_MAGIC.to_le_bytes());
        b[4] = FRAME_VERSION;
        b[5] = self.kind as u8;
        b[6..8].copy_from_slice(&self.hint.to_le_bytes());
        b[8..16].copy_from_slice(&self.request_id.to_le_bytes());
        b[16..20].copy_from_slice(&self.len.to_le_bytes());
        b
    }

    /// Decode and validate a header.
    pub fn decode(b: &[u8; HEADER_LEN]) -> Result<Header, FrameError> {
        let word = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let magic = word(0);
        if magic != FRAME_MAGIC {
            return Err(FrameError::BadMagic(magic));
        }
        if b[4] != FRAME_VERSION {
            return Err(FrameError::BadVersion(b[4]));
        }
        let kind = FrameKind::from_u8(b[5]).ok_or(FrameError::UnknownKind(b[5]))?;
        let len = word(16);
        if len as usize > MAX_PAYLOAD {
            return Err(FrameError::TooLong(len));
        }
        let reserved = word(20);
        if reserved != 0 {
            return Err(FrameError::BadReserved(reserved));
        }
        let mut id = [0u8; 8];
        id.copy_from_slice(&b[8..16]);
        Ok(Header {
            kind,
            hint: u16::from_le_bytes([b[6], b[7]]),
            request_id: u64::from_le_bytes(id),
            len,
        })
    }
}

/// A whole frame: header fields and payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// What the frame is.
    pub kind: FrameKind,
    /// Request id (0 for one-way frames).
    pub request_id: u64,
    /// The payload, at most [`MAX_PAYLOAD`] bytes.
    pub payload: Vec<u8>,
}

impl Frame {
    /// A frame of `kind` with `request_id` and `payload`.
    pub fn new(kind: FrameKind, request_id: u64, payload: Vec<u8>) -> Frame {
        Frame {
            kind,
            request_id,
            payload,
        }
    }

    /// The header of this frame. Fails with [`FrameError::TooLong`] for an oversized payload.
    pub fn header(&self) -> Result<Header, FrameError> {
        if self.payload.len() > MAX_PAYLOAD {
            return Err(FrameError::TooLong(
                u32::try_from(self.payload.len()).unwrap_or(u32::MAX),
            ));
        }
        Ok(Header {
            kind: self.kind,
            hint: 0,
            request_id: self.request_id,
            len: self.payload.len() as u32,
        })
    }

    /// Header and payload in one buffer, ready for a single write.
    pub fn encode(&self) -> Result<Vec<u8>, FrameError> {
        let mut out = Vec::with_capacity(self.wire_len());
        self.encode_into(&mut out)?;
        Ok(out)
    }

    /// Append the frame's wire bytes (header, then payload) to `out`; nothing is appended if
    /// the frame cannot be sent.
    pub fn encode_into(&self, out: &mut Vec<u8>) -> Result<(), FrameError> {
        let h = self.header()?;
        out.extend_from_slice(&h.encode());
        out.extend_from_slice(&self.payload);
        Ok(())
    }

    /// Bytes this frame takes on the wire.
    pub fn wire_len(&self) -> usize {
        HEADER_LEN + self.payload.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips() {
        let f = Frame::new(FrameKind::Request, 0xdead_beef_0000_0001, vec![1, 2, 3]);
        let bytes = f.encode().unwrap();
        let mut h = [0u8; HEADER_LEN];
        h.copy_from_slice(&bytes[..HEADER_LEN]);
        let d = Header::decode(&h).unwrap();
        assert_eq!(d.kind, FrameKind::Request);
        assert_eq!(d.request_id, 0xdead_beef_0000_0001);
        assert_eq!(d.len, 3);
        assert_eq!(&bytes[HEADER_LEN..], &[1, 2, 3]);
    }

    #[test]
    fn bad_headers_are_rejected() {
        let good = Frame::new(FrameKind::OneWay, 0, vec![])
            .header()
            .unwrap()
            .encode();
        let mut b = good;
        b[0] ^= 1;
        assert!(matches!(Header::decode(&b), Err(FrameError::BadMagic(_))));
        let mut b = good;
        b[4] = 9;
        assert_eq!(Header::decode(&b), Err(FrameError::BadVersion(9)));
        let mut b = good;
        b[5] = 77;
        assert_eq!(Header::decode(&b), Err(FrameError::UnknownKind(77)));
        let mut b = good;
        b[16..20].copy_from_slice(&(MAX_PAYLOAD as u32 + 1).to_le_bytes());
        assert!(matches!(Header::decode(&b), Err(FrameError::TooLong(_))));
        let mut b = good;
        b[22] = 1;
        assert!(matches!(
            Header::decode(&b),
            Err(FrameError::BadReserved(_))
        ));
    }

    #[test]
    fn oversized_payload_cannot_be_encoded() {
        let f = Frame::new(FrameKind::OneWay, 0, vec![0; MAX_PAYLOAD + 1]);
        assert!(matches!(f.encode(), Err(FrameError::TooLong(_))));
    }
}
