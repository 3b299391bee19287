//! The wire form of the scheduler's [`Message`]s between nodes: little-endian, one tag byte
//! first, fixed-length but for a `Migrate`, which carries up to [`MAX_CARRIED`] stack pages
//! (their hand-off and their contents). Decoding takes untrusted bytes from a peer: every
//! length is exact, every flag is 0 or 1, a carried page's access is read or write, a
//! carried page is one the task's stack hands off ([`Carried::fits`]: its current page or
//! its first) and is carried once, the stack's page arithmetic is overflow-checked, and
//! nothing panics; what the values mean in the cluster (a node of it, a stack inside its
//! region) the node and its [`super::Scheduler`] check when they handle the message.
//!
//! ```text
//! Hint        1  load(8)
//! WorkRequest 2  load(8)
//! Refuse      3  load(8)
//! Migrate     4  load(8) task(8) home(2) migratable(1) first(4) count(4) current(4)
//!                requested(1) carried(1) [page(4) access(1)]*carried [contents(PAGE_SIZE)]*carried
//! Done        5  load(8) task(8) panicked(1)
//! Reaped      6  load(8) task(8)
//! load: ready(2) migratable(2) workers(2) busy(2)     access: 1 read, 2 write
//! ```

use std::fmt;

use super::message::{Carried, Load, MAX_CARRIED, Message, StackPages, TaskId, TaskRef};
use crate::types::{Access, PAGE_SIZE};

const HINT: u8 = 1;
const WORK_REQUEST: u8 = 2;
const REFUSE: u8 = 3;
const MIGRATE: u8 = 4;
const DONE: u8 = 5;
const REAPED: u8 = 6;

const LOAD_LEN: usize = 8;
/// The longest encoded message without contents (a `Migrate` carrying no page).
const FIXED_LEN: usize = 1 + LOAD_LEN + 8 + 2 + 1 + 4 + 4 + 4 + 1 + 1;
/// The longest encoded message (a `Migrate` carrying [`MAX_CARRIED`] pages).
pub const MAX_LEN: usize = FIXED_LEN + MAX_CARRIED * (4 + 1 + PAGE_SIZE);

/// A decoded message and, for a `Migrate`, the contents of the pages it carries (one
/// [`PAGE_SIZE`] slice per page, in its order).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    /// The message.
    pub msg: Message,
    /// The carried pages' contents.
    pub contents: Vec<&'a [u8]>,
}

/// Why a message could not be encoded (a caller's mistake, not a peer's).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncodeError(String);

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "scheduler message not encoded: {}", self.0)
    }
}

impl std::error::Error for EncodeError {}

/// Why bytes from a peer are no scheduler message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeError(String);

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed scheduler message: {}", self.0)
    }
}

impl std::error::Error for DecodeError {}

/// Append the encoding of `msg` to `out`, with `contents`: one [`PAGE_SIZE`] page per page
/// a `Migrate` carries, none for any other message. On an error `out` is as it was.
pub fn encode<C: AsRef<[u8]>>(
    msg: &Message,
    contents: &[C],
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    let carried = match msg {
        Message::Migrate { carried, .. } => *carried,
        _ => Carried::default(),
    };
    if contents.len() != carried.len() {
        return Err(EncodeError(format!(
            "{} pages of contents for {} carried pages",
            contents.len(),
            carried.len()
        )));
    }
    if let Some(c) = contents.iter().find(|c| c.as_ref().len() != PAGE_SIZE) {
        return Err(EncodeError(format!(
            "a carried page of {} bytes, not {PAGE_SIZE}",
            c.as_ref().len()
        )));
    }
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
            out.push(carried.len() as u8);
            for (page, access) in carried.iter() {
                out.extend_from_slice(&page.to_le_bytes());
                out.push(match access {
                    Access::None => 0,
                    Access::Read => 1,
                    Access::Write => 2,
                });
            }
            for c in contents {
                out.extend_from_slice(c.as_ref());
            }
        }
        Message::Done { task, panicked, .. } => {
            out.extend_from_slice(&task.0.to_le_bytes());
            out.push(u8::from(panicked));
        }
        Message::Reaped { task, .. } => out.extend_from_slice(&task.0.to_le_bytes()),
        _ => {}
    }
    Ok(())
}

/// Reads fixed-width fields off the front of a byte slice.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
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

    fn bytes(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.0.len() < n {
            return Err(DecodeError("too short".into()));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
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
pub fn decode(bytes: &[u8]) -> Result<Frame<'_>, DecodeError> {
    let mut r = Reader(bytes);
    let [tag] = r.take::<1>()?;
    let load = Load {
        ready: r.u16()?,
        migratable: r.u16()?,
        workers: r.u16()?,
        busy: r.u16()?,
    };
    let mut contents = Vec::new();
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
            let [n] = r.take::<1>()?;
            if n as usize > MAX_CARRIED {
                return Err(DecodeError(format!(
                    "a migration carrying {n} pages (at most {MAX_CARRIED})"
                )));
            }
            let mut carried = Carried::default();
            for _ in 0..n {
                let page = r.u32()?;
                let access = match r.take::<1>()? {
                    [1] => Access::Read,
                    [2] => Access::Write,
                    [b] => return Err(DecodeError(format!("carried page access {b}"))),
                };
                if !carried.push(page, access) {
                    return Err(DecodeError(format!("page {page} carried twice")));
                }
            }
            if !carried.fits(stack) {
                return Err(DecodeError(format!(
                    "carried pages {carried:?} are not the pages stack {stack:?} hands off"
                )));
            }
            for _ in 0..n {
                contents.push(r.bytes(PAGE_SIZE)?);
            }
            Message::Migrate {
                task: TaskRef {
                    id,
                    home,
                    migratable,
                    stack,
                },
                requested,
                carried,
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
    Ok(Frame { msg, contents })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NONE: [&[u8]; 0] = [];

    fn round_trip(msg: &Message, contents: &[Vec<u8>]) -> Vec<u8> {
        let mut b = Vec::new();
        encode(msg, contents, &mut b).unwrap();
        assert!(b.len() <= MAX_LEN);
        let frame = decode(&b).unwrap();
        assert_eq!(frame.msg, *msg);
        assert_eq!(frame.contents, contents);
        // One byte short or one too many: refused.
        assert!(decode(&b[..b.len() - 1]).is_err());
        let mut longer = b.clone();
        longer.push(0);
        assert!(decode(&longer).is_err());
        b
    }

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
                carried: Carried::default(),
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
            round_trip(&msg, &[]);
        }
        assert!(decode(&[]).is_err());
        assert!(decode(&[9; 9]).is_err());
        // A flag that is neither 0 nor 1.
        let mut b = Vec::new();
        let done = Message::Done {
            task: TaskId(1),
            panicked: false,
            load,
        };
        encode(&done, &NONE, &mut b).unwrap();
        *b.last_mut().unwrap() = 2;
        assert!(decode(&b).is_err());
        // Contents for a message that carries no page.
        assert!(encode(&done, &[vec![0u8; PAGE_SIZE]], &mut Vec::new()).is_err());
    }

    #[test]
    fn a_migrate_carries_its_pages_and_a_bad_carried_page_is_refused() {
        let stack = StackPages {
            first: 16,
            count: 16,
            current: 20,
        };
        let task = TaskRef {
            id: TaskId(16 * PAGE_SIZE as u64),
            home: 0,
            migratable: true,
            stack,
        };
        let mut carried = Carried::default();
        assert!(carried.push(20, Access::Write));
        assert!(carried.push(16, Access::Read));
        assert!(!carried.push(20, Access::Read), "a page twice");
        let msg = Message::Migrate {
            task,
            requested: false,
            carried,
            load: Load::default(),
        };
        let contents = vec![vec![0xa5u8; PAGE_SIZE], vec![0x5au8; PAGE_SIZE]];
        let b = round_trip(&msg, &contents);
        assert_eq!(b.len(), MAX_LEN);
        // The caller's mistakes: a page missing, a short page.
        assert!(encode(&msg, &contents[..1], &mut Vec::new()).is_err());
        let short = [vec![0u8; PAGE_SIZE], vec![0u8; 7]];
        let mut out = Vec::new();
        assert!(encode(&msg, &short, &mut out).is_err());
        assert!(out.is_empty());
        // A peer's: where the count, the pages and the accesses are.
        let count_at = FIXED_LEN - 1;
        let first_page_at = FIXED_LEN;
        let first_access_at = FIXED_LEN + 4;
        let second_page_at = FIXED_LEN + 5;
        let bad = |at: usize, bytes: &[u8]| {
            let mut v = b.clone();
            v[at..at + bytes.len()].copy_from_slice(bytes);
            decode(&v).map(|f| f.msg)
        };
        assert!(bad(count_at, &[3]).is_err(), "more than MAX_CARRIED");
        assert!(bad(count_at, &[1]).is_err(), "a page's contents left over");
        assert!(bad(count_at, &[255]).is_err());
        assert!(bad(first_access_at, &[0]).is_err(), "no access");
        assert!(bad(first_access_at, &[3]).is_err());
        // A page of the stack that is not handed off, one outside the stack, one twice.
        assert!(bad(first_page_at, &21u32.to_le_bytes()).is_err());
        assert!(bad(first_page_at, &u32::MAX.to_le_bytes()).is_err());
        assert!(bad(second_page_at, &20u32.to_le_bytes()).is_err());
        // A stack whose range overflows hands off its current page only when inside.
        let mut wrapped = b.clone();
        let first_at = 1 + LOAD_LEN + 8 + 2 + 1;
        wrapped[first_at..first_at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode(&wrapped).is_err());
    }
}
