//! The access of every page of the region, one byte each, readable from a signal handler.

use std::sync::atomic::{AtomicU8, Ordering};

use crate::types::{Access, PageNo};

/// Bit set when the page has a backing page in the memfd (userfaultfd backend).
const PRESENT: u8 = 0x4;
const ACCESS_MASK: u8 = 0x3;

/// One atomic byte per page: the access bits and the present bit.
#[derive(Debug)]
pub(crate) struct PageTable {
    entries: Box<[AtomicU8]>,
}

impl PageTable {
    /// A table of `pages` pages, all without access and without contents.
    pub(crate) fn new(pages: u32) -> PageTable {
        PageTable {
            entries: (0..pages).map(|_| AtomicU8::new(0)).collect(),
        }
    }

    pub(crate) fn pages(&self) -> u32 {
        self.entries.len() as u32
    }

    /// The page's access; [`Access::None`] outside the table. Async-signal-safe.
    pub(crate) fn access(&self, page: PageNo) -> Access {
        match self.entries.get(page as usize) {
            Some(e) => match e.load(Ordering::Acquire) & ACCESS_MASK {
                2 => Access::Write,
                1 => Access::Read,
                _ => Access::None,
            },
            None => Access::None,
        }
    }

    /// Whether the page has a backing page (userfaultfd backend).
    pub(crate) fn present(&self, page: PageNo) -> bool {
        self.entries
            .get(page as usize)
            .is_some_and(|e| e.load(Ordering::Acquire) & PRESENT != 0)
    }

    /// Records the page's new state, after the kernel's state was changed.
    pub(crate) fn set(&self, page: PageNo, access: Access, present: bool) {
        let bits = match access {
            Access::None => 0,
            Access::Read => 1,
            Access::Write => 2,
        } | if present { PRESENT } else { 0 };
        if let Some(e) = self.entries.get(page as usize) {
            e.store(bits, Ordering::Release);
        }
    }
}
