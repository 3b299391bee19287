//! The wire form of the scheduler's [`Message`]s between nodes: fixed-length, little-endian,
//! one tag byte first. Decoding takes untrusted bytes from a peer: every length is exact,
//! every flag is 0 or 1, and nothing panics; what the values mean (a node of the cluster, a
//! stack inside the region) the [`super::Scheduler`] checks when it handles the message.
//!
//! ```text
//! Hint        1  load(8)
//! WorkRequest 2  load(8)
//! Refuse      3  load(8)
//! Migrate     4  load(8) task(8) home(2) migratable(1) first(4) count(4) current(4)
//!                requested(1)
//! Done        5  load(8) task(8) panicked(1)
//! Reaped      6  load(8) task(8)
//! load: ready(2) migratable(2) workers(2) busy(2)
//! ```

use std::fmt;

use super::message::{Load, Message, StackPages, TaskId, TaskRef};

const HINT: u8 = 1;
const WORK_REQUEST: u8 = 2;
const REFUSE: u8 = 3;
const MIGRATE: u8 = 4;
const DONE: u8 = 5;
const REAPED: u8 = 6;

const LOAD_LEN: usize = 8;
/// The longest encoded message (a `Migrate`).
pub const MAX_LEN: usize = 1 + LOAD_LEN + 8 + 2 + 1 + 4 + 4 + 4 + 1;

/// Why bytes from a peer are no scheduler message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeError(String);

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed scheduler message: {}", self.0)
    }
}

impl std::error::Error for DecodeError {}

/// Append the encoding of `msg` to `out`.
pub fn encode(msg: &Message, out: &mut Vec<u8>) {
    let (tag, load) = match msg {
        Message::Hint { load } => (HINT, load),
        Message::WorkRequest { load } => (WORK_REQUEST, load),
        Message::Refuse { load } => (REFUSE, load),
        Message::Migrate { load, .. } => (MIGRATE, load),
        Message::Done { load, .. } => (DONE, load),
        Message::Reaped { load, .. } => (REAPED, load),
    };
    out.push(tag);
    for v in [load.ready, load.migratable, load.workers, load.busy] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    match *msg {
        Message::Migrate {
            task, requested, ..
        } => {
            out.extend_from_slice(&task.id.0.to_le_bytes());
            out.extend_from_slice(&task.home.to_le_bytes());
            out.push(u8::from(task.migratable));
            out.extend_from_slice(&task.stack.first.to_le_bytes());
            out.extend_from_slice(&task.stack.count.to_le_bytes());
            out.extend_from_slice(&task.stack.current.to_le_bytes());
            out.push(u8::from(requested));
        }
        Message::Done { task, panicked, .. } => {
            out.extend_from_slice(&task.0.to_le_bytes());
            out.push(u8::from(panicked));
        }
        Message::Reaped { task, .. } => out.extend_from_slice(&task.0.to_le_bytes()),
        _ => {}
    }
}

/// Reads fixed-width fields off the front of a byte slice.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let (head, rest) = self
            .0
            .split_first_chunk::<N>()
            .ok_or_else(|| DecodeError("too short".into()))?;
        self.0 = rest;
        Ok(*head)
    }

    fn u16(&mut self) -> Result<u16, DecodeError> {
        self.take().map(u16::from_le_bytes)
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        self.take().map(u32::from_le_bytes)
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        self.take().map(u64::from_le_bytes)
    }

    fn flag(&mut self) -> Result<bool, DecodeError> {
        match self.take::<1>()? {
            [0] => Ok(false),
            [1] => Ok(true),
            [b] => Err(DecodeError(format!("flag byte {b}, not 0 or 1"))),
        }
    }
}

/// Decode one message; the bytes must be exactly one encoding.
pub fn decode(bytes: &[u8]) -> Result<Message, DecodeError> {
    let mut r = Reader(bytes);
    let [tag] = r.take::<1>()?;
    let load = Load {
        ready: r.u16()?,
        migratable: r.u16()?,
        workers: r.u16()?,
        busy: r.u16()?,
    };
    let msg = match tag {
        HINT => Message::Hint { load },
        WORK_REQUEST => Message::WorkRequest { load },
        REFUSE => Message::Refuse { load },
        MIGRATE => {
            let id = TaskId(r.u64()?);
            let home = r.u16()?;
            let migratable = r.flag()?;
            let stack = StackPages {
                first: r.u32()?,
                count: r.u32()?,
                current: r.u32()?,
            };
            let requested = r.flag()?;
            Message::Migrate {
                task: TaskRef {
                    id,
                    home,
                    migratable,
                    stack,
                },
                requested,
                load,
            }
        }
        DONE => Message::Done {
            task: TaskId(r.u64()?),
            panicked: r.flag()?,
            load,
        },
        REAPED => Message::Reaped {
            task: TaskId(r.u64()?),
            load,
        },
        other => return Err(DecodeError(format!("unknown tag {other}"))),
    };
    if !r.0.is_empty() {
        return Err(DecodeError(format!("{} bytes too many", r.0.len())));
    }
    Ok(msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_round_trips_and_garbage_is_refused() {
        let load = Load {
            ready: 3,
            migratable: 2,
            workers: 1,
            busy: u16::MAX,
        };
        let task = TaskRef {
            id: TaskId(u64::MAX - 7),
            home: 2,
            migratable: true,
            stack: StackPages {
                first: 16,
                count: 16,
                current: 31,
            },
        };
        for msg in [
            Message::Hint { load },
            Message::WorkRequest { load },
            Message::Refuse { load },
            Message::Migrate {
                task,
                requested: true,
                load,
            },
            Message::Done {
                task: TaskId(64 * 1024),
                panicked: true,
                load,
            },
            Message::Reaped {
                task: TaskId(3 * 64 * 1024),
                load,
            },
        ] {
            let mut b = Vec::new();
            encode(&msg, &mut b);
            assert!(b.len() <= MAX_LEN);
            assert_eq!(decode(&b), Ok(msg));
            // One byte short or one too many: refused.
            assert!(decode(&b[..b.len() - 1]).is_err());
            b.push(0);
            assert!(decode(&b).is_err());
        }
        assert!(decode(&[]).is_err());
        assert!(decode(&[9; 9]).is_err());
        // A flag that is neither 0 nor 1.
        let mut b = Vec::new();
        encode(
            &Message::Done {
                task: TaskId(1),
                panicked: false,
                load,
            },
            &mut b,
        );
        *b.last_mut().unwrap() = 2;
        assert!(decode(&b).is_err());
    }
}
