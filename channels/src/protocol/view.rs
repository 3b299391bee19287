//! A typed view of a channel structure in shared memory: a header and its array of cells.
//! The buffered ring and the port queue are both such a view; this is the one place that turns
//! their raw pointers into references.

use crate::wait::WaitMode;
use std::marker::PhantomData;

/// A header that owns an array of cells.
pub trait CellsHeader {
    /// How many cells follow the header.
    fn cell_count(&self) -> u64;
    /// The channel's waiting policy, as stored (`WaitMode::to_word`).
    fn mode_word(&self) -> u32;
}

/// A view of one header `H` and its cells `C`, valid for `'a`.
#[derive(Debug)]
pub struct View<'a, H, C> {
    header: *const H,
    cells: *const C,
    /// Private copies of the header's cell count and mode: read once when the view is built,
    /// never again (in shared memory a peer could change the originals).
    count: u64,
    mode: WaitMode,
    _life: PhantomData<&'a H>,
}

impl<H, C> Clone for View<'_, H, C> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<H, C> Copy for View<'_, H, C> {}

// SAFETY: the view points at a header of atomics and at cells whose exclusive use the
// protocol hands over; values in the cells move between threads, hence `C: Send`.
unsafe impl<H: Sync, C: Send> Send for View<'_, H, C> {}
// SAFETY: as above: shared use only goes through the header's atomics and the protocol.
unsafe impl<H: Sync, C: Send> Sync for View<'_, H, C> {}

impl<'a, H: CellsHeader, C> View<'a, H, C> {
    /// Builds a view.
    ///
    /// # Safety
    /// `header` must be initialised and `cells` must point at `header.cell_count()` cells,
    /// each initialised as its protocol says (ring: any; port: cell `i` made by
    /// `PortCell::new(i)`), all valid and used by nothing else for `'a`.
    pub unsafe fn from_raw(header: *const H, cells: *const C) -> Self {
        // SAFETY: `header` is initialised (this function's contract).
        let h = unsafe { &*header };
        let (count, mode) = (h.cell_count(), h.mode_word());
        // SAFETY: forwarded from this function's contract, with the header's own shape.
        unsafe { Self::with_shape(header, cells, count, mode) }
    }

    /// Builds a view with a cell count and mode the caller read and checked once (`open`
    /// over shared memory); the view never reads the header's copies of them.
    ///
    /// # Safety
    /// As for [`View::from_raw`], with `count` (at least 1) in place of the header's count.
    pub unsafe fn with_shape(header: *const H, cells: *const C, count: u64, mode: u32) -> Self {
        View {
            header,
            cells,
            count: count.max(1),
            mode: WaitMode::from_word(mode),
            _life: PhantomData,
        }
    }

    /// How many cells the view covers (its private copy).
    pub fn cell_count(&self) -> u64 {
        self.count
    }

    /// The header.
    pub fn header(&self) -> &'a H {
        // SAFETY: valid for 'a per `from_raw`.
        unsafe { &*self.header }
    }

    /// The cell for position `pos` (reduced modulo the cell count).
    pub(crate) fn cell(&self, pos: u64) -> &'a C {
        // SAFETY: reduced modulo the count; `cells` holds that many cells valid for 'a.
        unsafe { &*self.cells.add((pos % self.count) as usize) }
    }

    /// The waiting policy.
    pub fn mode(&self) -> WaitMode {
        self.mode
    }
}
