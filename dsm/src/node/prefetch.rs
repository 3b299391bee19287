//! Prefetch: the faults of several pages started at once, ahead of use. One request per page
//! not yet held, all sent before any reply is awaited, so the fetches overlap instead of
//! costing one fault's round trip each; and the caller may compute on other data while they
//! travel ([`NodeRuntime::prefetch_start`], then [`Prefetch::wait`]).
//!
//! A hint: it changes no result. The protocol sees ordinary faults (the coherence model
//! checks nodes with several faults under way at once); a page taken away again before it is
//! used simply faults then, and a thread that touches a page still on its way waits for it
//! like any fault on a pending page. Under a memory budget, a prefetch asks only for as
//! many pages as there are free frames; it never evicts.

use std::ops::Range;

use super::{NodeRuntime, Outgoing, lock};
use crate::types::{Access, DsmError, PageNo};

/// Fetches under way, started by [`NodeRuntime::prefetch_start`]. Dropping it without
/// [`Prefetch::wait`] lets them finish in the background.
#[must_use = "a prefetch is waited for with .wait(), or dropped to let it finish unobserved"]
pub struct Prefetch<'a> {
    runtime: &'a NodeRuntime,
    /// The pages whose faults this prefetch started.
    started: Vec<PageNo>,
}

impl Prefetch<'_> {
    /// The number of pages this prefetch requested (pages held already, or on their way for
    /// another fault, are not requested again).
    pub fn requested(&self) -> usize {
        self.started.len()
    }

    /// Wait until none of the requested pages is pending any more.
    pub fn wait(self) -> Result<(), DsmError> {
        let rt = self.runtime;
        let mut st = lock(&rt.state);
        while let Some(&page) = self
            .started
            .iter()
            .find(|&&p| NodeRuntime::page_state(&st, p).pending.is_some())
        {
            NodeRuntime::refused(&st)?;
            st = rt.wait_for_page(st, page)?;
        }
        Ok(())
    }
}

impl NodeRuntime {
    /// Start fetching every page of each range in `wanted` with at least its access, and
    /// return at once; see the module documentation.
    ///
    /// ```no_run
    /// # use memlink_dsm::{Access, node::NodeRuntime};
    /// # fn f(node: &NodeRuntime) -> Result<(), memlink_dsm::DsmError> {
    /// // Pages 8 to 11 to read and 20 to 23 to write, in one round.
    /// let fetching = node.prefetch_start(&[(8..12, Access::Read), (20..24, Access::Write)])?;
    /// // ... work on pages already here ...
    /// fetching.wait()?;
    /// # Ok(()) }
    /// ```
    pub fn prefetch_start(
        &self,
        wanted: &[(Range<PageNo>, Access)],
    ) -> Result<Prefetch<'_>, DsmError> {
        for (pages, _) in wanted.iter().filter(|(pages, _)| !pages.is_empty()) {
            self.check_page(pages.end - 1)?;
        }
        let mut st = lock(&self.state);
        Self::refused(&st)?;
        let mut out = Outgoing::default();
        let mut started = Vec::new();
        for (pages, access) in wanted {
            for page in pages.clone() {
                let now = Self::page_state(&st, page);
                if now.access >= *access || now.pending.is_some() || now.evicting {
                    continue;
                }
                // Under a memory budget a prefetch takes only free frames: it is a hint, and
                // evicting for it could push out the pages in use.
                if !now.uses_frame() && Self::free_frames(&st) == 0 {
                    continue;
                }
                st = match self.start_fault(st, page, *access, &mut out) {
                    Ok(st) => st,
                    Err(e @ DsmError::NodeLost { .. }) => return Err(e),
                    Err(e) => {
                        // The faults started so far are pending: their requests must go out.
                        self.flush_fault(out)?;
                        return Err(e);
                    }
                };
                started.push(page);
            }
        }
        drop(st);
        self.flush_fault(out)?;
        Ok(Prefetch {
            runtime: self,
            started,
        })
    }

    /// [`NodeRuntime::prefetch_start`], then [`Prefetch::wait`].
    pub fn prefetch(&self, wanted: &[(Range<PageNo>, Access)]) -> Result<(), DsmError> {
        self.prefetch_start(wanted)?.wait()
    }
}
