//! The wire form of coherence messages: 9 fixed bytes (tag, page, node, access or outcome
//! or rights, flag), then the copyset (8 bytes) for an Adopt, the capability id, parent id
//! and page count (20 bytes) for a Cap, the capability id (8 bytes) for a Revoke, Restrict,
//! CapAck or Deliver, or the page contents for a Grant that carries data and for a HandOff.

use std::fmt;

use super::manager::NodeSet;
use super::message::{EvictOutcome, Message};
use super::rights::{CapId, CapRecord};
use crate::types::{Access, NodeId, PAGE_SIZE, PageNo};

/// Bytes of a message without page contents.
pub const MESSAGE_LEN: usize = 9;

/// A coherence message that cannot be decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// Fewer or more bytes than the message needs.
    BadLength(usize),
    /// An unknown message tag.
    UnknownTag(u8),
    /// An access value other than 0, 1, 2.
    BadAccess(u8),
    /// An eviction outcome other than 0 to 3.
    BadOutcome(u8),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::BadLength(n) => write!(f, "coherence message of {n} bytes"),
            DecodeError::UnknownTag(t) => write!(f, "unknown coherence message tag {t}"),
            DecodeError::BadAccess(a) => write!(f, "bad access value {a}"),
            DecodeError::BadOutcome(o) => write!(f, "bad eviction outcome {o}"),
        }
    }
}

impl std::error::Error for DecodeError {}

fn access_byte(a: Access) -> u8 {
    match a {
        Access::None => 0,
        Access::Read => 1,
        Access::Write => 2,
    }
}

fn byte_access(b: u8) -> Result<Access, DecodeError> {
    match b {
        0 => Ok(Access::None),
        1 => Ok(Access::Read),
        2 => Ok(Access::Write),
        _ => Err(DecodeError::BadAccess(b)),
    }
}

/// Append `msg` (and `data`, the page contents, when it carries data) to `out`.
pub fn encode(msg: &Message, data: Option<&[u8]>, out: &mut Vec<u8>) {
    let none = access_byte(Access::None);
    let (tag, page, node, byte, flag): (u8, PageNo, NodeId, u8, bool) = match *msg {
        Message::ReadRequest { page } => (1, page, 0, none, false),
        Message::WriteRequest { page } => (2, page, 0, none, false),
        Message::ReadForward { page, to } => (3, page, to, none, false),
        Message::WriteForward {
            page,
            to,
            send_data,
        } => (4, page, to, none, send_data),
        Message::Invalidate { page } => (5, page, 0, none, false),
        Message::InvalidateAck { page } => (6, page, 0, none, false),
        Message::Grant {
            page,
            access,
            with_data,
        } => (7, page, 0, access_byte(access), with_data),
        Message::Confirm { page, access } => (8, page, 0, access_byte(access), false),
        Message::Request {
            page,
            requester,
            access,
        } => (9, page, requester, access_byte(access), false),
        Message::Evict { page, hand_off } => {
            (10, page, hand_off.unwrap_or(0), none, hand_off.is_some())
        }
        Message::EvictReply { page, outcome } => {
            let (code, node) = match outcome {
                EvictOutcome::Drop => (0, 0),
                EvictOutcome::PassTo(n) => (1, n),
                EvictOutcome::HandOffTo(n) => (2, n),
                EvictOutcome::WriteBack => (3, 0),
            };
            (11, page, node, code, false)
        }
        Message::Adopt { page, .. } => (12, page, 0, none, false),
        Message::HandOff { page, access } => (13, page, 0, access_byte(access), false),
        Message::HandOffReply { page, accepted } => (14, page, 0, none, accepted),
        Message::Cap { record } => (
            15,
            record.first,
            record.holder,
            record.rights,
            record.parent.is_some(),
        ),
        Message::Revoke { first, .. } => (16, first, 0, none, false),
        Message::CapAck { first, .. } => (17, first, 0, none, false),
        Message::Deliver { first, .. } => (19, first, 0, none, false),
        Message::Restrict { first, rights, .. } => (20, first, 0, rights, false),
        Message::Refused { page, access } => (18, page, 0, access_byte(access), false),
        Message::DataError { page, access } => (21, page, 0, access_byte(access), false),
    };
    out.push(tag);
    out.extend_from_slice(&page.to_le_bytes());
    out.extend_from_slice(&node.to_le_bytes());
    out.push(byte);
    out.push(flag as u8);
    match msg {
        Message::Adopt { copyset, .. } => out.extend_from_slice(&copyset.0.to_le_bytes()),
        Message::Cap { record } => {
            out.extend_from_slice(&record.id.0.to_le_bytes());
            out.extend_from_slice(&record.parent.map_or(0, |p| p.0).to_le_bytes());
            out.extend_from_slice(&record.pages.to_le_bytes());
        }
        Message::Revoke { cap, .. }
        | Message::Restrict { cap, .. }
        | Message::CapAck { cap, .. }
        | Message::Deliver { cap, .. } => out.extend_from_slice(&cap.0.to_le_bytes()),
        _ => {}
    }
    if msg.carries_data() {
        if let Some(d) = data {
            out.extend_from_slice(d);
        }
    }
}

/// Decode a message; the page contents (exactly PAGE_SIZE bytes) come back for a message
/// that carries data.
pub fn decode(b: &[u8]) -> Result<(Message, Option<&[u8]>), DecodeError> {
    if b.len() < MESSAGE_LEN {
        return Err(DecodeError::BadLength(b.len()));
    }
    let page = u32::from_le_bytes([b[1], b[2], b[3], b[4]]);
    let node = u16::from_le_bytes([b[5], b[6]]);
    let access = || byte_access(b[7]);
    if b[0] != 11 && b[0] != 15 && b[0] != 20 {
        access()?;
    }
    let flag = match b[8] {
        0 => false,
        1 => true,
        _ => return Err(DecodeError::BadLength(b.len())),
    };
    let mut rest = &b[MESSAGE_LEN..];
    let msg = match b[0] {
        1 => Message::ReadRequest { page },
        2 => Message::WriteRequest { page },
        3 => Message::ReadForward { page, to: node },
        4 => Message::WriteForward {
            page,
            to: node,
            send_data: flag,
        },
        5 => Message::Invalidate { page },
        6 => Message::InvalidateAck { page },
        7 => Message::Grant {
            page,
            access: access()?,
            with_data: flag,
        },
        8 => Message::Confirm {
            page,
            access: access()?,
        },
        9 => Message::Request {
            page,
            requester: node,
            access: access()?,
        },
        10 => Message::Evict {
            page,
            hand_off: flag.then_some(node),
        },
        11 => Message::EvictReply {
            page,
            outcome: match b[7] {
                0 => EvictOutcome::Drop,
                1 => EvictOutcome::PassTo(node),
                2 => EvictOutcome::HandOffTo(node),
                3 => EvictOutcome::WriteBack,
                o => return Err(DecodeError::BadOutcome(o)),
            },
        },
        12 => {
            let Some((set, tail)) = rest.split_first_chunk::<8>() else {
                return Err(DecodeError::BadLength(b.len()));
            };
            rest = tail;
            Message::Adopt {
                page,
                copyset: NodeSet(u64::from_le_bytes(*set)),
            }
        }
        13 => Message::HandOff {
            page,
            access: access()?,
        },
        14 => Message::HandOffReply {
            page,
            accepted: flag,
        },
        15 => {
            let Some((fields, tail)) = rest.split_first_chunk::<20>() else {
                return Err(DecodeError::BadLength(b.len()));
            };
            rest = tail;
            let word = |i: usize| u64::from_le_bytes(fields[i..i + 8].try_into().unwrap_or([0; 8]));
            Message::Cap {
                record: CapRecord {
                    id: CapId(word(0)),
                    parent: flag.then(|| CapId(word(8))),
                    holder: node,
                    rights: b[7],
                    first: page,
                    pages: u32::from_le_bytes([fields[16], fields[17], fields[18], fields[19]]),
                },
            }
        }
        16 | 17 | 19 | 20 => {
            let Some((id, tail)) = rest.split_first_chunk::<8>() else {
                return Err(DecodeError::BadLength(b.len()));
            };
            rest = tail;
            let cap = CapId(u64::from_le_bytes(*id));
            match b[0] {
                16 => Message::Revoke { cap, first: page },
                17 => Message::CapAck { cap, first: page },
                20 => Message::Restrict {
                    cap,
                    first: page,
                    rights: b[7],
                },
                _ => Message::Deliver { cap, first: page },
            }
        }
        18 => Message::Refused {
            page,
            access: access()?,
        },
        21 => Message::DataError {
            page,
            access: access()?,
        },
        t => return Err(DecodeError::UnknownTag(t)),
    };
    if msg.carries_data() {
        if rest.len() != PAGE_SIZE {
            return Err(DecodeError::BadLength(b.len()));
        }
        Ok((msg, Some(rest)))
    } else if rest.is_empty() {
        Ok((msg, None))
    } else {
        Err(DecodeError::BadLength(b.len()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_round_trips() {
        let page = vec![0xabu8; PAGE_SIZE];
        let msgs = [
            Message::ReadRequest { page: 7 },
            Message::WriteRequest { page: 7 },
            Message::ReadForward { page: 1, to: 3 },
            Message::WriteForward {
                page: 2,
                to: 4,
                send_data: true,
            },
            Message::Invalidate { page: 9 },
            Message::InvalidateAck { page: 9 },
            Message::Grant {
                page: 5,
                access: Access::Write,
                with_data: true,
            },
            Message::Grant {
                page: 5,
                access: Access::Read,
                with_data: false,
            },
            Message::Confirm {
                page: 5,
                access: Access::Read,
            },
            Message::Request {
                page: 3,
                requester: 2,
                access: Access::Write,
            },
            Message::Request {
                page: 3,
                requester: 2,
                access: Access::None,
            },
            Message::Evict {
                page: 4,
                hand_off: Some(2),
            },
            Message::Evict {
                page: 4,
                hand_off: None,
            },
            Message::EvictReply {
                page: 4,
                outcome: EvictOutcome::Drop,
            },
            Message::EvictReply {
                page: 4,
                outcome: EvictOutcome::PassTo(3),
            },
            Message::EvictReply {
                page: 4,
                outcome: EvictOutcome::HandOffTo(1),
            },
            Message::EvictReply {
                page: 4,
                outcome: EvictOutcome::WriteBack,
            },
            Message::Adopt {
                page: 6,
                copyset: NodeSet(0b1010),
            },
            Message::HandOff {
                page: 6,
                access: Access::Read,
            },
            Message::HandOffReply {
                page: 6,
                accepted: true,
            },
            Message::Cap {
                record: CapRecord {
                    id: CapId::new(2, 7),
                    parent: Some(CapId::new(0, 1)),
                    holder: 3,
                    rights: 5,
                    first: 8,
                    pages: 4,
                },
            },
            Message::Cap {
                record: CapRecord {
                    id: CapId::new(0, 1),
                    parent: None,
                    holder: 0,
                    rights: 7,
                    first: 8,
                    pages: 16,
                },
            },
            Message::Revoke {
                cap: CapId::new(0, 1),
                first: 8,
            },
            Message::CapAck {
                cap: CapId::new(0, 1),
                first: 8,
            },
            Message::Restrict {
                cap: CapId::new(2, 7),
                first: 8,
                rights: 1,
            },
            Message::Refused {
                page: 3,
                access: Access::Write,
            },
            Message::DataError {
                page: 3,
                access: Access::Read,
            },
            Message::Deliver {
                cap: CapId::new(2, 7),
                first: 8,
            },
        ];
        for m in msgs {
            let mut b = Vec::new();
            encode(&m, Some(&page), &mut b);
            let (d, data) = decode(&b).unwrap();
            assert_eq!(d, m);
            assert_eq!(data.is_some(), m.carries_data());
        }
    }

    #[test]
    fn garbage_is_rejected() {
        assert!(decode(&[]).is_err());
        assert!(decode(&[99, 0, 0, 0, 0, 0, 0, 0, 0]).is_err());
        assert!(
            decode(&[7, 0, 0, 0, 0, 0, 0, 1, 1]).is_err(),
            "grant without its page"
        );
        assert!(decode(&[7, 0, 0, 0, 0, 0, 0, 9, 0]).is_err(), "bad access");
        assert!(
            decode(&[11, 0, 0, 0, 0, 0, 0, 4, 0]).is_err(),
            "bad outcome"
        );
        assert!(
            decode(&[12, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2]).is_err(),
            "adopt without its copyset"
        );
        assert!(
            decode(&[13, 0, 0, 0, 0, 0, 0, 1, 0]).is_err(),
            "hand-off without its page"
        );
        assert!(
            decode(&[15, 0, 0, 0, 0, 0, 0, 7, 0, 1, 2]).is_err(),
            "capability without its fields"
        );
        assert!(
            decode(&[16, 0, 0, 0, 0, 0, 0, 0, 0]).is_err(),
            "revocation without its id"
        );
        assert!(decode(&[18, 0, 0, 0, 0, 0, 0, 5, 0]).is_err(), "bad access");
    }
}
