//! External pagers, after Mach's memory objects (seed 002): a region's pages can come from a
//! *pager*, a component that the nodes talk to only through its calls, instead of from
//! nowhere (zero pages).
//!
//! How Mach's kernel–pager calls map onto the DSM:
//! - `data_request` ([`Pager::data_request`]): a page that no node holds is touched. With a
//!   memory budget every page starts in node 0's backing store, and a page written back stays
//!   in its owner's store; the owner serves a fault on it from there (the protocol's
//!   `SendStored` / `PageIn`), which for a store backed by a pager is this call. The pager
//!   answers `data_provided` ([`Supply::DataProvided`]: the bytes) or `data_unavailable`
//!   ([`Supply::DataUnavailable`]: a zero page).
//! - `data_write` ([`Pager::data_write`]): a page's only copy is evicted to the store
//!   (written back), or the node leaves and cleans the pages it owns.
//! - `data_unlock` ([`Pager::data_unlock`]): a fault wants more access than the pager's
//!   lock of the page allows; the pager answers with the page's lock from now on, which
//!   serves the fault or refuses it.
//!
//! The pager's own commands are calls on the node it pages for (each node's pager commands
//! its own node): `data_lock` ([`crate::node::NodeRuntime::data_lock`]), `clean_request`,
//! `flush_request` and `cache` (with the release it decides on). A pager in its own process
//! sends them over its socket ([`PagerCommands`], from [`PagerServer::commands`]) to the
//! nodes that take them ([`crate::node::NodeRuntime::take_pager_commands`]).
//!
//! A pager may run in its own process ([`PagerServer`], [`RemotePager`]): one that dies or
//! stops answering fails the faults that wait on it with [`crate::DsmError::PagerLost`] or
//! [`crate::DsmError::PagerTimeout`], naming it (at other nodes whose faults needed a page
//! from it: [`crate::DsmError::PageUnavailable`]). Only those faults fail, as after Mach's
//! `memory_object_data_error`: the protocol undoes the half-done page-in
//! ([`crate::protocol::Coherence::data_error`]), so the nodes go on, pages held anywhere
//! are still served, and a later fault asks the pager again.
//!
//! [`FilePager`] maps a file (or a range of it) with memmap2; [`PagerStore`] makes any pager a
//! node's [`crate::replacement::BackingStore`] (`Dsm::join_with_store`). Every node of a local
//! cluster opens the same file, so every owner's write-back reaches it.

pub mod commands;
mod file;
pub(crate) mod remote;
pub(crate) mod server;
pub(crate) mod wire;

pub use commands::{CommandError, PagerCommands};
pub use file::FilePager;
pub use remote::{DEFAULT_TIMEOUT, RemotePager};
pub use server::{PagerServer, ServerStats};

use std::fmt;
use std::os::fd::BorrowedFd;

use crate::replacement::{BackingStore, StoreError};
use crate::types::{Access, PAGE_SIZE, PageNo};

/// The pager's answer to a `data_request`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Supply {
    /// `data_provided`: the page's contents were written to the buffer.
    DataProvided,
    /// `data_unavailable`: the pager has no data for the page; it reads as zeros.
    DataUnavailable,
}

/// Why a pager call failed.
#[derive(Debug)]
pub enum PagerError {
    /// The pager's file could not be opened, sized or mapped.
    Open {
        /// The file.
        path: std::path::PathBuf,
        /// What the system said.
        error: std::io::Error,
    },
    /// Writing pages out to the file failed.
    Flush(std::io::Error),
    /// The pager is gone: its process died or closed the connection ([`RemotePager`]).
    Lost {
        /// The pager's name.
        pager: String,
        /// What was seen.
        reason: String,
    },
    /// The pager did not answer a call in time ([`RemotePager`]).
    Timeout {
        /// The pager's name.
        pager: String,
        /// How long the node waited.
        after: std::time::Duration,
    },
    /// The pager in another process failed the call itself, and said why ([`RemotePager`]).
    Remote {
        /// The pager's name.
        pager: String,
        /// What it said.
        what: String,
    },
    /// The pager answered something the pager protocol does not allow ([`RemotePager`]).
    BadReply {
        /// The pager's name.
        pager: String,
        /// What was wrong.
        what: String,
    },
}

impl fmt::Display for PagerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PagerError::Open { path, error } => {
                write!(f, "the pager cannot map {}: {error}", path.display())
            }
            PagerError::Flush(e) => write!(f, "the pager could not write pages to its file: {e}"),
            PagerError::Lost { pager, reason } => {
                write!(f, "the pager {pager:?} is gone ({reason})")
            }
            PagerError::Timeout { pager, after } => {
                write!(f, "the pager {pager:?} did not answer within {after:?}")
            }
            PagerError::Remote { pager, what } => write!(f, "the pager {pager:?} failed: {what}"),
            PagerError::BadReply { pager, what } => {
                write!(
                    f,
                    "the pager {pager:?} answered against the protocol: {what}"
                )
            }
        }
    }
}

impl std::error::Error for PagerError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PagerError::Open { error, .. } | PagerError::Flush(error) => Some(error),
            PagerError::Lost { .. }
            | PagerError::Timeout { .. }
            | PagerError::Remote { .. }
            | PagerError::BadReply { .. } => None,
        }
    }
}

/// A memory object's pager, with the calls a node makes on it, named as in Mach.
pub trait Pager: Send {
    /// `pager_data_request`, for a run of pages as Mach's (offset, length): the contents
    /// of pages `first ..` (`out.len()` is a multiple of `PAGE_SIZE`, one page or more),
    /// written to `out`. [`Supply::DataProvided`] when the pager has data for the run (its
    /// pages without data it zeroes), [`Supply::DataUnavailable`] when it has none: the
    /// caller zeroes them all. The node asks for runs when it reads ahead.
    fn data_request(&mut self, first: PageNo, out: &mut [u8]) -> Result<Supply, PagerError>;
    /// `data_request` answered in place: the contents of the `len` bytes of pages from
    /// `first` as bytes the pager keeps mapped (a file's page cache), so that the node copies
    /// them once, straight into its memory, as Mach's `data_provided` hands over
    /// out-of-line memory. `None` (the default, and for a run the pager cannot give whole
    /// this way): the node calls [`Pager::data_request`].
    fn data_mapped(&self, first: PageNo, len: usize) -> Option<&[u8]> {
        let _ = (first, len);
        None
    }
    /// `data_request` answered with the memory object itself: the file that holds the `len`
    /// bytes of pages from `first` and where in it they start, when the pager is a file the
    /// node may map read-only (so that clean pages read ahead are the file's page cache,
    /// with no copy at all). The file must stay at least that long while the node runs.
    /// `None` (the default): the node asks [`Pager::data_mapped`] or
    /// [`Pager::data_request`].
    fn data_mapped_file(&self, first: PageNo, len: usize) -> Option<(BorrowedFd<'_>, u64)> {
        let _ = (first, len);
        None
    }
    /// `pager_data_write`: `data` (`PAGE_SIZE` bytes) is the current contents of `page`.
    /// Only pages written since they came from the pager are written (a clean page is
    /// dropped).
    fn data_write(&mut self, page: PageNo, data: &[u8]) -> Result<(), PagerError>;
    /// Make every `data_write` so far durable (the node is leaving).
    fn sync(&mut self) -> Result<(), PagerError>;
    /// `pager_data_unlock`: a thread of this node wants `access` to `page`, which the
    /// pager locked below that (`data_lock`, [`crate::node::NodeRuntime::data_lock`]).
    /// Returns the pager's answer, its `data_lock` of the page from now on: at least
    /// `access` lets the fault go on; less refuses it (the thread gets a protection fault,
    /// [`crate::DsmError::Denied`]). The default grants every unlock.
    fn data_unlock(&mut self, page: PageNo, access: Access) -> Result<Access, PagerError> {
        let _ = (page, access);
        Ok(Access::Write)
    }
}

/// A node's backing store that asks a [`Pager`]: reads are `data_request`s (an unavailable
/// page reads as zeros), writes are `data_write`s.
pub struct PagerStore<P> {
    pager: P,
}

impl<P: Pager> PagerStore<P> {
    /// The store of `pager`.
    pub fn new(pager: P) -> PagerStore<P> {
        PagerStore { pager }
    }
}

fn store_error(e: PagerError) -> StoreError {
    match e {
        PagerError::Lost { pager, reason } => StoreError::PagerLost { pager, reason },
        PagerError::Timeout { pager, after } => StoreError::PagerTimeout { pager, after },
        other => StoreError::Pager(other.to_string()),
    }
}

impl<P: Pager> BackingStore for PagerStore<P> {
    fn read_page(&mut self, page: PageNo, out: &mut [u8]) -> Result<(), StoreError> {
        let len = out.len().min(PAGE_SIZE);
        self.read_run(page, &mut out[..len])
    }

    fn read_run(&mut self, first: PageNo, out: &mut [u8]) -> Result<(), StoreError> {
        match self.pager.data_request(first, out).map_err(store_error)? {
            Supply::DataProvided => {}
            Supply::DataUnavailable => out.fill(0),
        }
        Ok(())
    }

    fn mapped_run(&mut self, first: PageNo, len: usize) -> Option<&[u8]> {
        self.pager.data_mapped(first, len)
    }

    fn mapped_file(&mut self, first: PageNo, len: usize) -> Option<(BorrowedFd<'_>, u64)> {
        self.pager.data_mapped_file(first, len)
    }

    fn write_page(&mut self, page: PageNo, data: &[u8]) -> Result<(), StoreError> {
        self.pager.data_write(page, data).map_err(store_error)
    }

    fn sync(&mut self) -> Result<(), StoreError> {
        self.pager.sync().map_err(store_error)
    }

    fn keeps_pages(&self) -> bool {
        true
    }

    fn data_unlock(&mut self, page: PageNo, access: Access) -> Result<Access, StoreError> {
        self.pager.data_unlock(page, access).map_err(store_error)
    }
}
