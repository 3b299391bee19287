//! First-fit allocation of the shared region's offsets (IVY's memory allocation module).
//!
//! Pure state: one node (node 0) keeps a [`FirstFit`] under its lock and serves every node's
//! requests by message. Blocks are multiples of [`GRANULE`] bytes, aligned to at least
//! `GRANULE`; freed blocks coalesce with their free neighbours.
//!
//! ```
//! use memlink_dsm::alloc::FirstFit;
//! let mut a = FirstFit::new(4096);
//! let x = a.alloc(100, 8).unwrap();
//! let y = a.alloc(64, 64).unwrap();
//! assert_eq!((x, y), (0, 128));
//! a.free(x).unwrap();
//! assert_eq!(a.alloc(8, 8).unwrap(), 0); // first fit: the lowest hole
//! ```

use std::collections::BTreeMap;
use std::fmt;

use crate::types::DsmError;

/// The allocation unit in bytes: sizes are rounded up to it, alignments at least it.
pub const GRANULE: usize = 8;

/// Why an allocation or a free failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AllocError {
    /// No free block fits `requested` bytes at the alignment.
    OutOfMemory {
        /// Bytes asked for.
        requested: usize,
    },
    /// The alignment is not a power of two.
    BadAlign {
        /// The alignment asked for.
        align: usize,
    },
    /// `offset` is not the start of an allocated block.
    InvalidFree {
        /// The offset passed to free.
        offset: usize,
    },
}

impl fmt::Display for AllocError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AllocError::OutOfMemory { requested } => {
                write!(f, "no free block of {requested} bytes in the shared region")
            }
            AllocError::BadAlign { align } => {
                write!(f, "alignment {align} is not a power of two")
            }
            AllocError::InvalidFree { offset } => {
                write!(f, "offset {offset} is not the start of an allocated block")
            }
        }
    }
}

impl std::error::Error for AllocError {}

impl From<AllocError> for DsmError {
    fn from(e: AllocError) -> DsmError {
        match e {
            AllocError::OutOfMemory { requested } => DsmError::OutOfMemory { requested },
            AllocError::InvalidFree { offset } => DsmError::InvalidFree { offset },
            AllocError::BadAlign { align } => {
                DsmError::Config(format!("alignment {align} is not a power of two"))
            }
        }
    }
}

/// A first-fit allocator over offsets `0..size`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FirstFit {
    size: usize,
    /// Free blocks: offset → length; never two adjacent ones.
    free: BTreeMap<usize, usize>,
    /// Allocated blocks: offset → length.
    used: BTreeMap<usize, usize>,
}

fn round_up(x: usize, to: usize) -> Option<usize> {
    x.checked_add(to - 1).map(|v| v & !(to - 1))
}

impl FirstFit {
    /// Everything free: `size` bytes (rounded down to the granule).
    pub fn new(size: usize) -> FirstFit {
        let size = size & !(GRANULE - 1);
        let mut free = BTreeMap::new();
        if size > 0 {
            free.insert(0, size);
        }
        FirstFit {
            size,
            free,
            used: BTreeMap::new(),
        }
    }

    /// The size of the managed range.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Bytes currently free.
    pub fn free_bytes(&self) -> usize {
        self.free.values().sum()
    }

    /// The lowest offset where `size` bytes aligned to `align` fit.
    pub fn alloc(&mut self, size: usize, align: usize) -> Result<usize, AllocError> {
        if !align.is_power_of_two() {
            return Err(AllocError::BadAlign { align });
        }
        let align = align.max(GRANULE);
        let oom = AllocError::OutOfMemory { requested: size };
        let len = round_up(size.max(1), GRANULE).ok_or(oom.clone())?;
        let mut found = None;
        for (&off, &blen) in &self.free {
            let Some(start) = round_up(off, align) else {
                break;
            };
            if start.checked_add(len).is_some_and(|end| end <= off + blen) {
                found = Some((off, blen, start));
                break;
            }
        }
        let (off, blen, start) = found.ok_or(oom)?;
        self.free.remove(&off);
        if start > off {
            self.free.insert(off, start - off);
        }
        let end = start + len;
        if end < off + blen {
            self.free.insert(end, off + blen - end);
        }
        self.used.insert(start, len);
        Ok(start)
    }

    /// Free the block that starts at `offset`; returns its length.
    pub fn free(&mut self, offset: usize) -> Result<usize, AllocError> {
        let len = self
            .used
            .remove(&offset)
            .ok_or(AllocError::InvalidFree { offset })?;
        let mut start = offset;
        let mut blen = len;
        if let Some((&p, &plen)) = self.free.range(..offset).next_back() {
            if p + plen == offset {
                self.free.remove(&p);
                start = p;
                blen += plen;
            }
        }
        if let Some(&nlen) = self.free.get(&(offset + len)) {
            self.free.remove(&(offset + len));
            blen += nlen;
        }
        self.free.insert(start, blen);
        Ok(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn errors_are_reported() {
        let mut a = FirstFit::new(64);
        assert_eq!(a.alloc(8, 3), Err(AllocError::BadAlign { align: 3 }));
        assert_eq!(
            a.alloc(65, 8),
            Err(AllocError::OutOfMemory { requested: 65 })
        );
        assert_eq!(a.free(0), Err(AllocError::InvalidFree { offset: 0 }));
        let x = a.alloc(64, 8).unwrap();
        assert_eq!(a.alloc(1, 1), Err(AllocError::OutOfMemory { requested: 1 }));
        a.free(x).unwrap();
        assert_eq!(
            a.free(x),
            Err(AllocError::InvalidFree { offset: x }),
            "double free"
        );
        assert_eq!(
            a.alloc(usize::MAX, 8),
            Err(AllocError::OutOfMemory {
                requested: usize::MAX
            })
        );
    }

    /// The model: one flag per granule, first fit by scanning from the start.
    struct Model {
        used: Vec<bool>,
        blocks: BTreeMap<usize, usize>,
    }

    impl Model {
        fn alloc(&mut self, size: usize, align: usize) -> Option<usize> {
            let g = size.max(1).div_ceil(GRANULE);
            let step = align.max(GRANULE) / GRANULE;
            let mut s = 0;
            while s + g <= self.used.len() {
                if self.used[s..s + g].iter().all(|u| !u) {
                    self.used[s..s + g].iter_mut().for_each(|u| *u = true);
                    self.blocks.insert(s * GRANULE, g);
                    return Some(s * GRANULE);
                }
                s += step;
            }
            None
        }
        fn free(&mut self, off: usize) -> bool {
            match self.blocks.remove(&off) {
                Some(g) => {
                    let s = off / GRANULE;
                    self.used[s..s + g].iter_mut().for_each(|u| *u = false);
                    true
                }
                None => false,
            }
        }
    }

    #[derive(Debug, Clone)]
    enum Op {
        Alloc(usize, u32),
        Free(usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (1usize..300, 0u32..7).prop_map(|(s, a)| Op::Alloc(s, a)),
            (0usize..16).prop_map(Op::Free),
        ]
    }

    proptest! {
        #[test]
        fn first_fit_matches_the_model(ops in proptest::collection::vec(op(), 1..120)) {
            const SIZE: usize = 2048;
            let mut a = FirstFit::new(SIZE);
            let mut m = Model { used: vec![false; SIZE / GRANULE], blocks: BTreeMap::new() };
            let mut live: Vec<usize> = Vec::new();
            for op in ops {
                match op {
                    Op::Alloc(size, a_exp) => {
                        let align = 1usize << a_exp;
                        let got = a.alloc(size, align).ok();
                        prop_assert_eq!(got, m.alloc(size, align));
                        if let Some(off) = got {
                            prop_assert_eq!(off % align, 0);
                            live.push(off);
                        }
                    }
                    Op::Free(i) if !live.is_empty() => {
                        let off = live.swap_remove(i % live.len());
                        prop_assert!(a.free(off).is_ok());
                        prop_assert!(m.free(off));
                    }
                    Op::Free(_) => prop_assert!(a.free(8).is_err()),
                }
                // Free blocks are coalesced: never two adjacent ones.
                let blocks: Vec<_> = a.free.iter().map(|(&o, &l)| (o, l)).collect();
                for w in blocks.windows(2) {
                    prop_assert!(w[0].0 + w[0].1 < w[1].0);
                }
                let used: usize = m.used.iter().filter(|u| **u).count() * GRANULE;
                prop_assert_eq!(a.free_bytes(), SIZE - used);
            }
            for off in live {
                a.free(off).unwrap();
            }
            prop_assert_eq!(a.free.len(), 1, "everything freed coalesces into one block");
        }
    }
}
