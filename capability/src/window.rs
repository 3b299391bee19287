//! Scheme 1, coinciding logical addresses: a window of virtual addresses reserved at
//! the same base in every participating process. A segment mapped at the same window
//! offset everywhere has the same address everywhere, so a plain pointer into it,
//! stored in shared memory by one process, dereferences correctly in another.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Mutex;

use crate::mapping::{MapError, Mapping, PAGE, Protection};
use crate::segment::Segment;
use crate::shareable::Shareable;

/// The default window base: high in the user address space, below where Linux places
/// libraries and stacks, far above a PIE executable's heap.
pub const DEFAULT_WINDOW_BASE: usize = 0x6000_0000_0000;
/// The default window length (64 GiB of address space; reserving costs no memory).
pub const DEFAULT_WINDOW_LEN: usize = 64 << 30;
/// Environment variable that overrides the default base (hex, `0x` optional).
pub const WINDOW_BASE_ENV: &str = "MEMLINK_WINDOW_BASE";

/// Why reserving a window failed.
#[derive(Debug)]
pub enum ReserveError {
    /// Something is already mapped inside the requested range.
    BaseInUse {
        /// The requested base.
        base: usize,
        /// The requested length.
        len: usize,
    },
    /// The base or length is not page-aligned, or zero.
    Misaligned {
        /// The requested base.
        base: usize,
        /// The requested length.
        len: usize,
    },
    /// The base in the environment variable is not a hex number.
    BadEnvBase(String),
    /// mmap failed.
    Io(std::io::Error),
}

impl fmt::Display for ReserveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReserveError::BaseInUse { base, len } => write!(
                f,
                "cannot reserve window {base:#x}..{:#x}: part of it is already mapped in this process; choose another base (e.g. set {WINDOW_BASE_ENV}) in every participating process",
                base + len
            ),
            ReserveError::Misaligned { base, len } => write!(
                f,
                "window base {base:#x} and length {len:#x} must be nonzero multiples of 4096"
            ),
            ReserveError::BadEnvBase(s) => {
                write!(f, "{WINDOW_BASE_ENV}={s:?} is not a hexadecimal address")
            }
            ReserveError::Io(e) => write!(f, "reserving the window failed: {e}"),
        }
    }
}

impl std::error::Error for ReserveError {}

/// Why mapping a segment into a window failed.
#[derive(Debug)]
pub enum WindowMapError {
    /// The range does not lie inside the window.
    OutOfWindow {
        /// Requested offset in the window.
        offset: usize,
        /// Length of the segment's payload mapping.
        len: usize,
    },
    /// The offset is not page-aligned.
    Misaligned(usize),
    /// Another segment is already mapped over part of the range.
    Overlap {
        /// Requested offset in the window.
        offset: usize,
    },
    /// The window has no free range large enough.
    Full,
    /// mmap failed (or a read-only segment was asked for a writable mapping).
    Map(MapError),
}

impl fmt::Display for WindowMapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WindowMapError::OutOfWindow { offset, len } => write!(
                f,
                "range {offset:#x}+{len:#x} does not fit in the window; reserve a larger window"
            ),
            WindowMapError::Misaligned(o) => write!(f, "window offset {o:#x} is not page-aligned"),
            WindowMapError::Overlap { offset } => write!(
                f,
                "window offset {offset:#x} overlaps a segment already mapped in this window"
            ),
            WindowMapError::Full => write!(f, "no free range in the window is large enough"),
            WindowMapError::Map(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for WindowMapError {}

/// A reserved range of addresses (PROT_NONE until segments are mapped into it).
#[derive(Debug)]
pub struct Window {
    base: usize,
    len: usize,
    /// Occupied (offset, len) ranges, sorted by offset.
    used: Mutex<Vec<(usize, usize)>>,
}

impl Window {
    /// Reserves `len` bytes at exactly `base` (MAP_FIXED_NOREPLACE): an error, never a
    /// silent move, if anything is mapped there.
    pub fn reserve(base: usize, len: usize) -> Result<Window, ReserveError> {
        if base == 0 || len == 0 || base % PAGE != 0 || len % PAGE != 0 {
            return Err(ReserveError::Misaligned { base, len });
        }
        // SAFETY: MAP_FIXED_NOREPLACE never replaces an existing mapping, so this cannot
        // invalidate memory that Rust code refers to.
        let p = unsafe {
            libc::mmap(
                base as *mut libc::c_void,
                len,
                libc::PROT_NONE,
                libc::MAP_PRIVATE
                    | libc::MAP_ANONYMOUS
                    | libc::MAP_NORESERVE
                    | libc::MAP_FIXED_NOREPLACE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            let e = std::io::Error::last_os_error();
            return Err(if e.raw_os_error() == Some(libc::EEXIST) {
                ReserveError::BaseInUse { base, len }
            } else {
                ReserveError::Io(e)
            });
        }
        if p as usize != base {
            // Old kernel treating the flag as a hint: give the range back and refuse.
            // SAFETY: `p` is the range just mapped by this call and nobody uses it.
            unsafe { libc::munmap(p, len) };
            return Err(ReserveError::BaseInUse { base, len });
        }
        Ok(Window {
            base,
            len,
            used: Mutex::new(Vec::new()),
        })
    }

    /// Reserves [`DEFAULT_WINDOW_LEN`] bytes at the base from [`WINDOW_BASE_ENV`], or at
    /// [`DEFAULT_WINDOW_BASE`].
    pub fn reserve_default() -> Result<Window, ReserveError> {
        let base = match std::env::var(WINDOW_BASE_ENV) {
            Ok(s) => usize::from_str_radix(s.trim().trim_start_matches("0x"), 16)
                .map_err(|_| ReserveError::BadEnvBase(s.clone()))?,
            Err(_) => DEFAULT_WINDOW_BASE,
        };
        Window::reserve(base, DEFAULT_WINDOW_LEN)
    }

    /// The window's first address.
    pub fn base(&self) -> usize {
        self.base
    }

    /// The window's length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the window is empty (never: zero-length windows are refused).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether `addr..addr+len` lies inside the window.
    pub fn contains(&self, addr: usize, len: usize) -> bool {
        addr >= self.base
            && addr
                .checked_add(len)
                .is_some_and(|end| end <= self.base + self.len)
    }

    /// Maps `segment`'s payload at window `offset` (page-aligned). Every process that maps
    /// the segment at the same offset of a window with the same base sees it at the same
    /// address.
    pub fn map_at(
        &self,
        segment: &Segment,
        offset: usize,
        protection: Protection,
    ) -> Result<WindowMapping<'_>, WindowMapError> {
        let len = segment.payload_capacity();
        if offset % PAGE != 0 {
            return Err(WindowMapError::Misaligned(offset));
        }
        if offset.checked_add(len).is_none_or(|end| end > self.len) {
            return Err(WindowMapError::OutOfWindow { offset, len });
        }
        let mut used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        if used
            .iter()
            .any(|&(o, l)| offset < o + l && o < offset + len)
        {
            return Err(WindowMapError::Overlap { offset });
        }
        // SAFETY: the range is inside our reservation and not occupied by any other
        // window mapping (checked under the lock), so it is PROT_NONE reservation that
        // nothing points into.
        let mapping = unsafe { segment.map_payload_over(self.base + offset, protection) }
            .map_err(WindowMapError::Map)?;
        let pos = used.partition_point(|&(o, _)| o < offset);
        used.insert(pos, (offset, len));
        Ok(WindowMapping {
            window: self,
            offset,
            mapping: Some(mapping),
        })
    }

    /// Maps `segment` at the lowest free offset that fits (first fit) and returns the
    /// mapping; send [`WindowMapping::offset`] to the peers so they map it there too.
    pub fn map_anywhere(
        &self,
        segment: &Segment,
        protection: Protection,
    ) -> Result<WindowMapping<'_>, WindowMapError> {
        let len = segment.payload_capacity();
        let offset = {
            let used = self.used.lock().unwrap_or_else(|p| p.into_inner());
            let mut candidate = 0usize;
            for &(o, l) in used.iter() {
                if candidate + len <= o {
                    break;
                }
                candidate = candidate.max(o + l);
            }
            if candidate + len > self.len {
                return Err(WindowMapError::Full);
            }
            candidate
        };
        self.map_at(segment, offset, protection)
    }

    fn release(&self, offset: usize) {
        let mut used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        used.retain(|&(o, _)| o != offset);
    }
}

impl Drop for Window {
    fn drop(&mut self) {
        // SAFETY: every WindowMapping borrows the window, so none is alive now; the range
        // is ours alone.
        unsafe { libc::munmap(self.base as *mut libc::c_void, self.len) };
    }
}

/// A segment mapped into a window; on drop the range becomes reserved again.
#[derive(Debug)]
pub struct WindowMapping<'w> {
    window: &'w Window,
    offset: usize,
    /// Always `Some` until drop, which re-reserves the range before freeing the offset.
    mapping: Option<Mapping>,
}

impl WindowMapping<'_> {
    fn mapping(&self) -> &Mapping {
        self.mapping.as_ref().expect("present until drop")
    }

    /// The offset of the mapping inside its window.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// The first byte of the mapping (the same in every process).
    pub fn as_ptr(&self) -> *mut u8 {
        self.mapping().as_ptr()
    }

    /// The mapped length.
    pub fn len(&self) -> usize {
        self.mapping().len()
    }

    /// Whether the mapping is empty (never).
    pub fn is_empty(&self) -> bool {
        self.mapping().is_empty()
    }
}

impl Drop for WindowMapping<'_> {
    fn drop(&mut self) {
        // Put the PROT_NONE reservation back first, and only then let other threads map
        // at this offset: the other order could re-reserve over their fresh mapping.
        drop(self.mapping.take());
        self.window.release(self.offset);
    }
}

/// A scheme 1 pointer stored in shared memory: a plain address inside a window, with
/// the type it points to. The same value is valid in every process of the window.
#[repr(transparent)]
pub struct WindowPtr<T> {
    addr: u64,
    _type: PhantomData<fn() -> T>,
}

impl<T> Clone for WindowPtr<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for WindowPtr<T> {}

impl<T> fmt::Debug for WindowPtr<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WindowPtr({:#x})", self.addr)
    }
}

impl<T> PartialEq for WindowPtr<T> {
    fn eq(&self, other: &Self) -> bool {
        self.addr == other.addr
    }
}
impl<T> Eq for WindowPtr<T> {}

// SAFETY: a u64 address; every bit pattern is a valid (possibly null or foreign) value,
// and dereferencing goes through raw pointers that callers check with Window::contains.
unsafe impl<T: 'static> Shareable for WindowPtr<T> {}

impl<T> WindowPtr<T> {
    /// The null pointer.
    pub const NULL: WindowPtr<T> = WindowPtr {
        addr: 0,
        _type: PhantomData,
    };

    /// Wraps a pointer (which should point into a window).
    pub fn from_ptr(ptr: *const T) -> WindowPtr<T> {
        WindowPtr {
            addr: ptr as usize as u64,
            _type: PhantomData,
        }
    }

    /// The plain pointer, valid in every process that maps the same segments into a
    /// window at the same base.
    pub fn as_ptr(self) -> *mut T {
        self.addr as usize as *mut T
    }

    /// Whether this is null.
    pub fn is_null(self) -> bool {
        self.addr == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_in_use_is_an_error_and_mappings_share_offsets() {
        let base = 0x6100_0000_0000;
        let w = Window::reserve(base, 1 << 24).unwrap();
        assert!(matches!(
            Window::reserve(base + 4096, 4096),
            Err(ReserveError::BaseInUse { .. })
        ));
        let a = Segment::create("w1", 5000).unwrap();
        let b = Segment::create("w2", 100).unwrap();
        let ma = w.map_anywhere(&a, Protection::ReadWrite).unwrap();
        let mb = w.map_anywhere(&b, Protection::ReadWrite).unwrap();
        assert_eq!(ma.as_ptr() as usize, base);
        assert_eq!(mb.offset(), 8192);
        assert!(matches!(
            w.map_at(&b, 4096, Protection::ReadOnly),
            Err(WindowMapError::Overlap { .. })
        ));
        // SAFETY: both mappings are live and read-write.
        unsafe {
            ma.as_ptr().write(1);
            assert_eq!(a.payload_ptr().read(), 1);
        }
        drop(ma);
        // The freed range is reusable.
        let again = w.map_at(&b, 0, Protection::ReadOnly).unwrap();
        // SAFETY: mapped read-only, one page.
        assert_eq!(unsafe { again.as_ptr().read() }, 0);
    }

    #[test]
    fn threads_remapping_one_offset_never_lose_their_mapping() {
        let w = Window::reserve(0x6140_0000_0000, 1 << 20).unwrap();
        let seg = Segment::create("w-race", 4096).unwrap();
        std::thread::scope(|s| {
            for t in 0..2u8 {
                let (w, seg) = (&w, &seg);
                s.spawn(move || {
                    for _ in 0..20_000 {
                        if let Ok(m) = w.map_at(seg, 0, Protection::ReadWrite) {
                            // SAFETY: the mapping is live and read-write while `m` lives;
                            // a reservation put back over it would make this fault.
                            unsafe { m.as_ptr().add(t as usize).write_volatile(t) };
                        }
                    }
                });
            }
        });
    }
}
