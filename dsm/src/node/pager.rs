//! The node runtime's side of an external pager (see [`crate::pager`]): the pager's
//! commands `data_lock` and `cache` (and the release that `cache` decides on), the
//! `data_unlock` a fault sends it, and what a pager that is gone or does not answer does to
//! the node.
//!
//! **A failed page-in fails only the faults that need it** (Mach's `data_error`). A read
//! from the store that fails (the pager is gone, silent, or answers with an error) is
//! undone by the protocol ([`crate::protocol::Coherence::data_error`]): the page stays
//! paged out at its owner, a requester elsewhere is told ([`Message::DataError`]) and the
//! manager's transaction ends; the faults that waited on the page fail with the pager's
//! error ([`DsmError::PagerLost`], [`DsmError::PagerTimeout`], or
//! [`DsmError::PageUnavailable`] at other nodes), and the node and its peers go on: pages
//! held anywhere are still served, resident pages stay readable, a later fault asks the
//! pager again.
//!
//! **A failed write-back loses nothing and fails no node** (a `data_write` that errs: a pager
//! that cannot write now, a full disk). The page's contents stay in this node's memory
//! ([`crate::protocol::Unwritten`]: to the protocol the page is paged out here, its frame
//! free; every read of it from the store here gets the kept contents), taking a frame of
//! the budget until a write of them reaches the store. The failure is counted
//! ([`crate::EvictionStats::write_backs_failed`]) and reported on stderr; the eviction goes
//! on to another victim. They are written again after the next write-back that succeeds,
//! by a fault that finds no other page to evict (which fails, alone, with
//! [`DsmError::WriteBackFailed`] naming the page and the store's error when the store
//! still fails and every frame holds such a page), by a `clean_request`, and when the node
//! leaves. A node that stops owning such a page drops its contents: they went with the
//! ownership, and the new owner writes them back.
//!
//! [`Message::DataError`]: crate::protocol::Message::DataError

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::ops::Range;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::{Arc, Weak};
use std::time::Duration;

use super::{NodeRuntime, Outgoing, State, lock};
use crate::pager::PagerError;
use crate::pager::commands::{self, Command};
use crate::protocol::{Effect, Message};
use crate::replacement::StoreError;
use crate::types::{Access, DsmError, NodeId, PageNo};

/// The contents of a page whose write-back failed, kept until a write of them reaches the
/// store ([`crate::protocol::Unwritten`]), and what the store said.
#[derive(Debug)]
pub(super) struct KeptPage {
    data: Box<[u8]>,
    reason: String,
}

impl KeptPage {
    /// The error of a fault or command that needed `page` written.
    pub(super) fn error(&self, page: PageNo) -> DsmError {
        DsmError::WriteBackFailed {
            page,
            reason: self.reason.clone(),
        }
    }
}

/// Why the last page-in of a page failed: the faults that waited on it fail with this.
#[derive(Clone, Debug)]
pub(super) struct Unavailable {
    /// The node whose store failed.
    owner: NodeId,
    /// This node's pager, when it is gone or silent.
    pager: Option<PagerFailure>,
    /// What was seen.
    reason: String,
}

impl Unavailable {
    pub(super) fn error(&self, page: PageNo) -> DsmError {
        match &self.pager {
            Some(p) => p.error(),
            None => DsmError::PageUnavailable {
                page,
                owner: self.owner,
                reason: self.reason.clone(),
            },
        }
    }
}

/// A pager call that failed because the pager is gone or silent, kept so that every fault
/// and operation of the node reports it by name.
#[derive(Clone, Debug)]
pub(super) enum PagerFailure {
    /// The pager is gone.
    Lost {
        /// Its name.
        pager: String,
        /// What was seen.
        reason: String,
    },
    /// The pager did not answer in time.
    Timeout {
        /// Its name.
        pager: String,
        /// How long the node waited.
        after: std::time::Duration,
    },
}

impl PagerFailure {
    pub(super) fn error(&self) -> DsmError {
        match self.clone() {
            PagerFailure::Lost { pager, reason } => DsmError::PagerLost { pager, reason },
            PagerFailure::Timeout { pager, after } => DsmError::PagerTimeout { pager, after },
        }
    }
}

impl NodeRuntime {
    /// Read the stored contents of `page` for a page-in (zeros when nothing was ever
    /// written back here). False when the store failed: why is recorded for the page's
    /// faults, and the caller undoes the page-in ([`NodeRuntime::data_error`]).
    pub(super) fn read_stored(&self, st: &mut State, page: PageNo, out: &mut [u8]) -> bool {
        self.evictions.paged_in();
        if let Some(kept) = st.unwritten.get(page) {
            // Newer than the store's copy, which its write-back did not reach.
            let len = out.len().min(kept.data.len());
            out[..len].copy_from_slice(&kept.data[..len]);
            return true;
        }
        let read = match st.store.as_mut() {
            Some(store) => store.read_page(page, out),
            None => {
                out.fill(0);
                Ok(())
            }
        };
        match read {
            Ok(()) => true,
            Err(e) => {
                self.page_in_failed(st, page..page + 1, e);
                false
            }
        }
    }

    /// Read the run of `count` pages from `first` from the store in one call, for a
    /// read-ahead's page-ins of `access`. False when the store failed: each page-in of the
    /// run is undone (the pages stay paged out) and its faults fail.
    pub(super) fn read_run_or_undo(
        &self,
        st: &mut State,
        first: PageNo,
        count: u32,
        access: Access,
        out: &mut [u8],
    ) -> Result<bool, (NodeId, String)> {
        self.evictions.paged_in_run(count);
        let read = match st.store.as_mut() {
            Some(store) => store.read_run(first, out),
            None => {
                out.fill(0);
                Ok(())
            }
        };
        let Err(e) = read else {
            return Ok(true);
        };
        self.page_in_failed(st, first..first + count, e);
        let mut to_self = VecDeque::new();
        let mut out = Outgoing::default();
        for page in first..first + count {
            self.data_error(st, Effect::PageIn { page, access }, &mut to_self, &mut out)?;
        }
        // Undoing a page-in for a local fault sends nothing (see Coherence::data_error).
        if !to_self.is_empty() || !out.messages.is_empty() {
            return Err((
                self.id,
                "protocol violation: undoing a read-ahead sent messages".into(),
            ));
        }
        self.served.notify_all();
        Ok(false)
    }

    /// Carry out a protocol's [`Effect::WriteBack`] of `page` (`data_write`), with its
    /// contents `data`. A store that fails does not fail the node: the contents are kept
    /// (see the module documentation), the failure counted and reported. After a write
    /// that reached the store, the pages kept before are written again too.
    pub(super) fn write_back(&self, st: &mut State, page: PageNo, data: Vec<u8>) {
        match self.store_write(st, page, &data) {
            Ok(()) => {
                st.unwritten.written(page);
                if !st.unwritten.is_empty() {
                    // (A failure keeps them for the next time.)
                    let _ = self.retry_unwritten(st);
                }
            }
            Err(e) => {
                self.evictions.write_back_failed();
                if !st.unwritten.contains(page) {
                    eprintln!(
                        "memlink-dsm node {}: page {page} could not be written back ({e}); \
                         it stays in memory and is written again later",
                        self.id
                    );
                }
                let kept = KeptPage {
                    data: data.into_boxed_slice(),
                    reason: e.to_string(),
                };
                st.unwritten.failed(page, kept);
            }
        }
        let kept = st.unwritten.len();
        st.coherence.set_reserved(kept);
    }

    /// Write the pages kept after failed write-backs again, lowest first, until one fails
    /// (the store still fails: it and the rest wait for the next time, each failure
    /// counted). Its error when one failed.
    pub(super) fn retry_unwritten(&self, st: &mut State) -> Result<(), DsmError> {
        let pages: Vec<PageNo> = st.unwritten.pages().collect();
        let mut result = Ok(());
        for page in pages {
            let Some(kept) = st.unwritten.written(page) else {
                continue;
            };
            if let Err(e) = self.store_write(st, page, &kept.data) {
                self.evictions.write_back_failed();
                let kept = KeptPage {
                    data: kept.data,
                    reason: e.to_string(),
                };
                result = Err(kept.error(page));
                st.unwritten.failed(page, kept);
                break;
            }
        }
        let kept = st.unwritten.len();
        st.coherence.set_reserved(kept);
        result
    }

    /// The pager's failure in `e` (gone or silent), if it is one; the node's first such
    /// failure is remembered, for the operations that come after.
    fn remember_pager_failure(st: &mut State, e: &StoreError) -> Option<PagerFailure> {
        let failure = match e {
            StoreError::PagerLost { pager, reason } => Some(PagerFailure::Lost {
                pager: pager.clone(),
                reason: reason.clone(),
            }),
            StoreError::PagerTimeout { pager, after } => Some(PagerFailure::Timeout {
                pager: pager.clone(),
                after: *after,
            }),
            _ => None,
        };
        if st.pager_failure.is_none() {
            st.pager_failure = failure.clone();
        }
        failure
    }

    /// The store failed to provide `pages` with `e`: remember why, for their faults.
    fn page_in_failed(&self, st: &mut State, pages: Range<PageNo>, e: StoreError) {
        let pager = Self::remember_pager_failure(st, &e);
        let why = Unavailable {
            owner: self.id,
            pager,
            reason: e.to_string(),
        };
        for page in pages {
            st.unavailable.insert(page, why.clone());
        }
    }

    /// Carry out the protocol's undo of `failed`, an effect whose page could not be read
    /// from the store ([`crate::protocol::Coherence::data_error`]).
    pub(super) fn data_error(
        &self,
        st: &mut State,
        failed: Effect,
        to_self: &mut VecDeque<Message>,
        out: &mut Outgoing,
    ) -> Result<(), (NodeId, String)> {
        let undo = st
            .coherence
            .data_error(failed)
            .map_err(|e| (self.id, format!("protocol violation: {e}")))?;
        self.execute(st, undo, None, to_self, out)
    }

    /// The protocol's [`Effect::DataError`]: the fault on `page` failed because the store
    /// of node `owner` could not provide it.
    pub(super) fn fault_failed(&self, st: &mut State, page: PageNo, owner: NodeId) {
        if owner != self.id || !st.unavailable.contains_key(&page) {
            st.unavailable.insert(
                page,
                Unavailable {
                    owner,
                    pager: None,
                    reason: "it answered the request with data_error".into(),
                },
            );
        }
    }

    /// A backing-store unlock failed with `e`: the failure that ends the node, as
    /// `(node, reason)`. A pager that is gone or silent is remembered, so the faults waiting
    /// here (and every later operation) fail with [`DsmError::PagerLost`] or
    /// [`DsmError::PagerTimeout`] naming it; the peers see this node lost, with the reason.
    pub(super) fn store_failed(&self, st: &mut State, e: StoreError) -> (NodeId, String) {
        Self::remember_pager_failure(st, &e);
        (self.id, format!("this node's backing store failed: {e}"))
    }

    /// Carry out a protocol's [`crate::protocol::Effect::DataUnlock`]: ask the pager for
    /// `access` to `page`; its answer is the page's lock from now on.
    pub(super) fn store_unlock(
        &self,
        st: &mut State,
        page: PageNo,
        access: Access,
    ) -> Result<Access, (NodeId, String)> {
        match st.store.as_mut() {
            Some(store) => match store.data_unlock(page, access) {
                Ok(lock) => Ok(lock),
                Err(e) => Err(self.store_failed(st, e)),
            },
            // No pager: nothing ever locked a page but the application, which may unlock.
            None => Ok(Access::Write),
        }
    }

    /// The pager's `pager_data_lock` for `pages` at this node: local threads get at most
    /// `lock` access to them from now on (access above it drops now; the contents stay, no
    /// write is lost). A fault that wants more asks the pager first (`data_unlock`, see
    /// [`crate::pager::Pager::data_unlock`]); the pager's answer serves or refuses it
    /// ([`DsmError::Denied`]). The protocol keeps serving the pages to other nodes: a lock is
    /// this node's. Each node's pager locks its own node.
    pub fn data_lock(&self, pages: Range<PageNo>, lock_to: Access) -> Result<(), DsmError> {
        if !pages.is_empty() {
            self.check_page(pages.end - 1)?;
        }
        let st = lock(&self.state);
        Self::refused(&st)?;
        self.run_page_steps(st, pages, |st, page| {
            Ok((page, st.coherence.data_lock(page, 1, lock_to), None))
        })
    }

    /// The pager's `pager_cache`: whether this node may keep the pages after the application
    /// releases them ([`NodeRuntime::release`]). On (the default): they stay resident, and
    /// an access that finds them still current costs nothing. Off: a release gives them up
    /// at once, so their frames are free and their writes reach the pager.
    pub fn cache(&self, keep: bool) {
        lock(&self.state).cache = keep;
    }

    /// The application is done with `pages` for now (in Mach, the memory object's mapping
    /// is released). With the pager's cache on, nothing happens; with it off, the pages go
    /// as with [`NodeRuntime::flush_request`] (a copy dropped, ownership passed on, an only
    /// copy written back when dirty, dropped when clean). Returns how many pages went.
    pub fn release(&self, pages: Range<PageNo>) -> Result<u32, DsmError> {
        if lock(&self.state).cache {
            return Ok(0);
        }
        self.flush_request(pages)
    }
}

/// This node's link to its pager's commands ([`NodeRuntime::take_pager_commands`]): while
/// it lives, a thread of the node carries out the commands the pager sends. Dropping it
/// closes the link and waits for that thread (and the command it may be carrying out).
pub struct PagerCommandLink {
    stream: UnixStream,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for PagerCommandLink {
    fn drop(&mut self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl NodeRuntime {
    /// Take the commands of the pager serving at `path` (a [`crate::pager::PagerServer`] in
    /// another process, Mach's data manager): open a second connection to it, say which node
    /// this is, and carry out what it sends (`data_lock`, `flush_request`, `clean_request`,
    /// `cache`, as [`NodeRuntime::data_lock`] and the others do) on a thread of this node,
    /// answering each. Every command is checked first ([`crate::pager::commands`]): one
    /// that breaks the protocol, or names pages outside the region, ends the link (this
    /// node goes on). `timeout` bounds the hello and each answer's send.
    pub fn take_pager_commands(
        self: &Arc<Self>,
        path: &Path,
        timeout: Duration,
    ) -> Result<PagerCommandLink, PagerError> {
        let pager = path.display().to_string();
        let lost = |e: std::io::Error| PagerError::Lost {
            pager: pager.clone(),
            reason: format!("its command link: {e}"),
        };
        let mut stream = UnixStream::connect(path).map_err(lost)?;
        stream.set_read_timeout(Some(timeout)).map_err(lost)?;
        stream.set_write_timeout(Some(timeout)).map_err(lost)?;
        stream
            .write_all(&commands::hello(self.id, self.page_count))
            .map_err(lost)?;
        let mut ack = [0u8; crate::pager::wire::REPLY_HEADER];
        stream.read_exact(&mut ack).map_err(lost)?;
        if ack != [crate::pager::wire::REPLY_DONE, 0, 0, 0, 0] {
            return Err(PagerError::BadReply {
                pager,
                what: format!("{ack:?} to the command link's hello"),
            });
        }
        // Commands come whenever the pager sends them.
        stream.set_read_timeout(None).map_err(lost)?;
        let reader = stream.try_clone().map_err(lost)?;
        let node = Arc::downgrade(self);
        let thread = std::thread::Builder::new()
            .name("memlink-pager-commands".into())
            .spawn(move || carry_out_commands(&node, reader))
            .map_err(lost)?;
        Ok(PagerCommandLink {
            stream,
            thread: Some(thread),
        })
    }
}

/// The pager's commands on `stream`, carried out on `node` and answered in order, until the
/// link closes, the node is gone, or a command breaks the protocol.
fn carry_out_commands(node: &Weak<NodeRuntime>, mut stream: UnixStream) {
    while let Ok(Some(frame)) = commands::read_command(&mut stream) {
        let Some(rt) = node.upgrade() else {
            return;
        };
        let cmd = match commands::decode_command(&frame, rt.page_count) {
            Ok(cmd) => cmd,
            Err(what) => {
                eprintln!(
                    "memlink-dsm node {}: the pager's command broke the protocol ({what}); \
                     its commands end here",
                    rt.id
                );
                return;
            }
        };
        let result = match cmd {
            Command::DataLock { pages, lock } => {
                let n = pages.end - pages.start;
                rt.data_lock(pages, lock).map(|()| n)
            }
            Command::FlushRequest { pages } => rt.flush_request(pages),
            Command::CleanRequest { pages } => rt.clean_request(pages),
            Command::Cache { keep } => {
                rt.cache(keep);
                Ok(0)
            }
        };
        drop(rt);
        let answer = commands::reply(result.map_err(|e| e.to_string()));
        if stream.write_all(&answer).is_err() {
            return;
        }
    }
}

/// A backing-store failure outside a protocol step (the node goes on): the pager's own
/// errors by name, the rest as a configuration error.
pub(super) fn store_error(e: StoreError) -> DsmError {
    match e {
        StoreError::PagerLost { pager, reason } => DsmError::PagerLost { pager, reason },
        StoreError::PagerTimeout { pager, after } => DsmError::PagerTimeout { pager, after },
        other => DsmError::Config(format!("this node's backing store failed: {other}")),
    }
}
