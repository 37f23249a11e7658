//! The packet ids of a session's open outbound exchanges, for allocating a free one in O(1)
//! when the window is large (a linear scan of 1,000 open exchanges per new id was 21% of the
//! broker's CPU in `fulmar bench fanin -P 16 -q 1` with `max_inflight_messages = 1000`).

/// Windows up to this size are scanned; a larger one gets a bitmap.
const SCAN_LIMIT: usize = 64;

/// A bitmap of the 65,536 packet id values (8 KiB), present only while the window is larger
/// than [`SCAN_LIMIT`] (so an idle or small session pays 8 bytes for it).
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

    /// Records `id` as open; `len` is the window size after it and `open` every open id
    /// (read once, when the bitmap is built).
    pub(super) fn insert(&mut self, id: u16, len: usize, open: impl Iterator<Item = u16>) {
        match &mut self.0 {
            Some(bits) => bits[usize::from(id / 64)] |= 1 << (id % 64),
            None if len > SCAN_LIMIT => self.rebuild(len, open),
            None => {}
        }
    }

    /// Records `id` as closed; `len` is the window size after it (an empty window frees the
    /// bitmap).
    pub(super) fn remove(&mut self, id: u16, len: usize) {
        if len == 0 {
            self.0 = None;
        } else if let Some(bits) = &mut self.0 {
            bits[usize::from(id / 64)] &= !(1 << (id % 64));
        }
    }

    /// Forgets everything (the window was emptied).
    pub(super) fn clear(&mut self) {
        self.0 = None;
    }

    /// Rebuilds from the open ids of a window of `len` exchanges (changed wholesale).
    pub(super) fn rebuild(&mut self, len: usize, open: impl Iterator<Item = u16>) {
        self.0 = None;
        if len > SCAN_LIMIT {
            let mut bits = Box::new([0u64; 1024]);
            for used in open {
                bits[usize::from(used / 64)] |= 1 << (used % 64);
            }
            self.0 = Some(bits);
        }
    }
}
