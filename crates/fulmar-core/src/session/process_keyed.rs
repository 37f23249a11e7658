//! A hasher for the maps every session carries, keyed once per process.

use std::hash::BuildHasher;
use std::sync::OnceLock;

/// Builds ahash hashers from keys drawn at random once per process. A zero-sized
/// `BuildHasher`: a map of every session no longer carries its own 32 bytes of keys, and the
/// keys stay unknown to clients (who choose the topic filters hashed).
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessKeyed;

static KEYS: OnceLock<ahash::RandomState> = OnceLock::new();

impl BuildHasher for ProcessKeyed {
    type Hasher = ahash::AHasher;

    fn build_hasher(&self) -> ahash::AHasher {
        KEYS.get_or_init(ahash::RandomState::new).build_hasher()
    }
}

/// A hash map keyed by [`ProcessKeyed`].
pub type HashMap<K, V> = std::collections::HashMap<K, V, ProcessKeyed>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_map_carries_no_hasher_state() {
        assert_eq!(std::mem::size_of::<ProcessKeyed>(), 0);
        let mut map: HashMap<String, u8> = HashMap::default();
        map.insert("a/b".into(), 1);
        assert_eq!(map.get("a/b"), Some(&1));
        assert_eq!(
            ProcessKeyed.hash_one("same"),
            ProcessKeyed.hash_one("same"),
            "one key set for the whole process"
        );
    }
}
