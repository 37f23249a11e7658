//! The packet ids of a session's open outbound exchanges, for allocating a free one in O(1)
//! when the window is large (a linear scan of 1,000 open exchanges per new id was 21% of the
//! broker's CPU in `fulmar bench fanin -P 16 -q 1` with `max_inflight_messages = 1000`).

/// Windows up to this size are scanned; a larger one gets a bitmap.
const SCAN_LIMIT: usize = 64;

/// A bitmap of the 65,536 packet id values (8 KiB), built only when an id must be looked up
/// in a window larger than [`SCAN_LIMIT`]; the owner drops it once no lookups are needed
/// (see `Inflight`), so an idle or small session pays 8 bytes for it, and a large window that
/// fills and drains does not allocate and free 8 KiB each time (which also made glibc
/// consolidate its fast bins).
///
/// # Invariants
/// When `Some`, bit `id` is set exactly for the ids of the open exchanges.
#[derive(Debug, Default)]
pub(super) struct IdSet(Option<Box<[u64; 1024]>>);

impl IdSet {
    /// Whether `id` is in use, given the open ids (`open`, scanned when there is no bitmap).
    pub(super) fn contains(&self, id: u16, mut open: impl Iterator<Item = u16>) -> bool {
        match &self.0 {
            Some(bits) => bits[usize::from(id / 64)] & (1 << (id % 64)) != 0,
            None => open.any(|used| used == id),
        }
    }

    /// Records `id` as open.
    pub(super) fn insert(&mut self, id: u16) {
        if let Some(bits) = &mut self.0 {
            bits[usize::from(id / 64)] |= 1 << (id % 64);
        }
    }

    /// Records `id` as closed.
    pub(super) fn remove(&mut self, id: u16) {
        if let Some(bits) = &mut self.0 {
            bits[usize::from(id / 64)] &= !(1 << (id % 64));
        }
    }

    /// Drops the bitmap: lookups scan again until [`IdSet::prepare`] builds a new one.
    pub(super) fn clear(&mut self) {
        self.0 = None;
    }

    /// Makes lookups in a window of `len` exchanges with the ids `open` cheap: builds the
    /// bitmap if the window is past [`SCAN_LIMIT`] and there is none.
    pub(super) fn prepare(&mut self, len: usize, open: impl Iterator<Item = u16>) {
        if self.0.is_none() && len > SCAN_LIMIT {
            let mut bits = Box::new([0u64; 1024]);
            for used in open {
                bits[usize::from(used / 64)] |= 1 << (used % 64);
            }
            self.0 = Some(bits);
        }
    }
}
