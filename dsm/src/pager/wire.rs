//! The two frames of the pager wire, shared by a node's calls on its pager
//! ([`super::remote`]) and the pager's commands to its nodes ([`super::commands`]):
//!
//! ```text
//! call:  op u8 | first u32 | second u32 | arg u8   (a request, a command, a hello)
//! reply: status u8 | len u32 | payload             (what len means depends on the status)
//! ```
//!
//! Both u32 fields are little-endian. What each field means, and which values a side takes,
//! is the business of the side that reads it: this module only lays the bytes out, and reads
//! a reply's error text of a length already checked against [`MAX_ERROR_TEXT`].

use std::io::{self, Read};

use crate::types::Access;

/// A node's requests to its pager.
pub(crate) const OP_DATA_REQUEST: u8 = 1;
pub(crate) const OP_DATA_WRITE: u8 = 2;
pub(crate) const OP_SYNC: u8 = 3;
pub(crate) const OP_DATA_UNLOCK: u8 = 4;
/// The first frame of a command connection (node → pager).
pub(crate) const OP_HELLO: u8 = 0x10;

/// Reply statuses.
pub(crate) const REPLY_PROVIDED: u8 = 0;
pub(crate) const REPLY_UNAVAILABLE: u8 = 1;
pub(crate) const REPLY_DONE: u8 = 2;
pub(crate) const REPLY_LOCK: u8 = 3;
/// The reply status of an error: its payload is `len` bytes of text.
pub(crate) const REPLY_ERROR: u8 = 4;

/// The most pages one `data_request` may ask for (4 MiB; read-ahead asks for at most 1 MiB).
pub const MAX_RUN_PAGES: u32 = 1024;

/// The length of a call frame (a request, a command or a hello).
pub const CALL_LEN: usize = 10;
/// The length of a reply's header (its status and length).
pub(crate) const REPLY_HEADER: usize = 5;
/// The longest error text a reply may carry.
pub const MAX_ERROR_TEXT: u32 = 4096;

/// An access as the wire carries it (a request's, a lock's, a command's).
pub(crate) fn access_code(a: Access) -> u8 {
    match a {
        Access::None => 0,
        Access::Read => 1,
        Access::Write => 2,
    }
}

/// The access a wire code names, if any.
pub(crate) fn access_of(code: u32) -> Option<Access> {
    match code {
        0 => Some(Access::None),
        1 => Some(Access::Read),
        2 => Some(Access::Write),
        _ => None,
    }
}

/// A call frame's fields, in wire order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Call {
    /// What is asked.
    pub op: u8,
    /// The first field (a page, a node).
    pub first: u32,
    /// The second field (a length in bytes, a count of pages).
    pub second: u32,
    /// The argument byte (an access, a flag).
    pub arg: u8,
}

impl Call {
    /// The frame's bytes.
    pub fn encode(self) -> [u8; CALL_LEN] {
        let mut f = [0u8; CALL_LEN];
        f[0] = self.op;
        f[1..5].copy_from_slice(&self.first.to_le_bytes());
        f[5..9].copy_from_slice(&self.second.to_le_bytes());
        f[9] = self.arg;
        f
    }

    /// The fields of `frame` (any bytes are a call; the reader checks the fields).
    pub fn decode(frame: &[u8; CALL_LEN]) -> Call {
        Call {
            op: frame[0],
            first: u32::from_le_bytes([frame[1], frame[2], frame[3], frame[4]]),
            second: u32::from_le_bytes([frame[5], frame[6], frame[7], frame[8]]),
            arg: frame[9],
        }
    }
}

/// A reply: `status`, `len`, then `payload` (whose length `len` need not be: a lock's or a
/// count's reply carries its value in `len` and no payload).
pub(crate) fn reply_frame(status: u8, len: u32, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(REPLY_HEADER + payload.len());
    f.push(status);
    f.extend_from_slice(&len.to_le_bytes());
    f.extend_from_slice(payload);
    f
}

/// An error reply carrying `text`, cut to [`MAX_ERROR_TEXT`] bytes.
pub(crate) fn error_reply(text: &str) -> Vec<u8> {
    let text = &text.as_bytes()[..text.len().min(MAX_ERROR_TEXT as usize)];
    reply_frame(REPLY_ERROR, text.len() as u32, text)
}

/// Reads a reply's header from `stream`: its status and length.
pub(crate) fn read_reply_header(stream: &mut impl Read) -> io::Result<(u8, u32)> {
    let mut h = [0u8; REPLY_HEADER];
    stream.read_exact(&mut h)?;
    Ok((h[0], u32::from_le_bytes([h[1], h[2], h[3], h[4]])))
}

/// Reads an error reply's text of `len` bytes (at most [`MAX_ERROR_TEXT`], checked by the
/// caller) from `stream`; bytes that are not UTF-8 are replaced.
pub(crate) fn read_error_text(stream: &mut impl Read, len: u32) -> io::Result<String> {
    debug_assert!(len <= MAX_ERROR_TEXT);
    let mut text = vec![0u8; len.min(MAX_ERROR_TEXT) as usize];
    stream.read_exact(&mut text)?;
    Ok(String::from_utf8_lossy(&text).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_lay_out_as_the_wire_says() {
        let call = Call {
            op: 0x12,
            first: 0x0403_0201,
            second: 0x0807_0605,
            arg: 9,
        };
        assert_eq!(call.encode(), [0x12, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
        assert_eq!(Call::decode(&call.encode()), call);
        assert_eq!(reply_frame(2, 7, b"ab"), [2, 7, 0, 0, 0, b'a', b'b']);
        let long = "x".repeat(MAX_ERROR_TEXT as usize + 10);
        let reply = error_reply(&long);
        assert_eq!(reply.len(), REPLY_HEADER + MAX_ERROR_TEXT as usize);
        let mut r = &reply[..];
        assert_eq!(
            read_reply_header(&mut r).unwrap(),
            (REPLY_ERROR, MAX_ERROR_TEXT)
        );
        assert_eq!(read_error_text(&mut r, MAX_ERROR_TEXT).unwrap().len(), 4096);
    }
}
