//! The subscriptions stored at one tree node: plain subscribers and shared groups.

use std::collections::HashMap;
use std::hash::Hash;
use std::mem;

use ahash::RandomState;
use smallvec::SmallVec;

use crate::shared::SharedGroup;

/// Up to this many entries, a linear scan finds a key; past it a hash index is kept.
const INDEX_ABOVE: usize = 16;

/// A dense set of `(key, value)` pairs: fan-out iterates contiguous memory.
///
/// # Invariants
///
/// - Keys are unique.
/// - `index` is `Some` while the set is large (built past [`INDEX_ABOVE`] entries, dropped below
///   half of that, so churn at the boundary does not rebuild it), and then maps every key to its
///   position in `entries`.
pub(crate) struct SubscriberSet<K, V> {
    /// The subscriptions; order is arbitrary (removal swaps the last entry into the hole).
    /// One inline slot: most filters have a single subscriber.
    entries: SmallVec<[(K, V); 1]>,
    /// Key to position in `entries`, for large sets only (see the invariants).
    index: Option<HashMap<K, usize, RandomState>>,
}

impl<K: Copy + Eq + Hash, V> SubscriberSet<K, V> {
    pub(crate) fn new() -> Self {
        Self {
            entries: SmallVec::new(),
            index: None,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub(crate) fn as_slice(&self) -> &[(K, V)] {
        &self.entries
    }

    fn position(&self, key: K) -> Option<usize> {
        match &self.index {
            Some(index) => index.get(&key).copied(),
            None => self.entries.iter().position(|(k, _)| *k == key),
        }
    }

    /// Insert, or replace the value of an existing `key` and return the old one.
    pub(crate) fn insert(&mut self, key: K, value: V) -> Option<V> {
        if let Some(pos) = self.position(key) {
            return Some(mem::replace(&mut self.entries[pos].1, value));
        }
        self.entries.push((key, value));
        let pos = self.entries.len() - 1;
        match &mut self.index {
            Some(index) => {
                index.insert(key, pos);
            }
            None if self.entries.len() > INDEX_ABOVE => {
                let index = self.entries.iter().enumerate();
                self.index = Some(index.map(|(i, (k, _))| (*k, i)).collect());
            }
            None => {}
        }
        self.debug_check();
        None
    }

    /// Remove `key`, returning its value.
    pub(crate) fn remove(&mut self, key: K) -> Option<V> {
        let pos = self.position(key)?;
        let (_, value) = self.entries.swap_remove(pos);
        if let Some(index) = &mut self.index {
            index.remove(&key);
            if let Some((moved, _)) = self.entries.get(pos) {
                index.insert(*moved, pos);
            }
            if self.entries.len() < INDEX_ABOVE / 2 {
                self.index = None;
            }
        }
        // Give memory back after a burst of unsubscribes from a popular filter.
        if self.entries.capacity() > 2 * INDEX_ABOVE
            && self.entries.len() < self.entries.capacity() / 4
        {
            self.entries.shrink_to_fit();
        }
        self.debug_check();
        Some(value)
    }

    fn debug_check(&self) {
        if let Some(index) = &self.index {
            debug_assert_eq!(index.len(), self.entries.len(), "index covers every entry");
        }
    }
}

/// Everything subscribed to one filter: plain subscribers and shared groups ([MQTT-4.8.2-1]).
///
/// # Invariants
///
/// - No group is empty, and group names are unique.
pub(crate) struct Subscriptions<K, V> {
    /// Non-shared subscribers: each gets every matching message.
    plain: SubscriberSet<K, V>,
    /// Shared groups; few per filter, so a vector searched by name.
    groups: Vec<SharedGroup<K, V>>,
}

impl<K: Copy + Eq + Hash, V> Subscriptions<K, V> {
    pub(crate) fn new() -> Self {
        Self {
            plain: SubscriberSet::new(),
            groups: Vec::new(),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.plain.is_empty() && self.groups.is_empty()
    }

    /// Insert into the plain set (`group == None`) or into the named group.
    pub(crate) fn insert(&mut self, group: Option<&str>, key: K, value: V) -> Option<V> {
        let Some(name) = group else {
            return self.plain.insert(key, value);
        };
        let pos = match self.groups.iter().position(|g| g.name() == name) {
            Some(pos) => pos,
            None => {
                self.groups.push(SharedGroup::new(name));
                self.groups.len() - 1
            }
        };
        self.groups[pos].members_mut().insert(key, value)
    }

    /// Remove from the plain set or the named group; an emptied group is dropped.
    pub(crate) fn remove(&mut self, group: Option<&str>, key: K) -> Option<V> {
        let Some(name) = group else {
            return self.plain.remove(key);
        };
        let pos = self.groups.iter().position(|g| g.name() == name)?;
        let removed = self.groups[pos].members_mut().remove(key);
        if self.groups[pos].members().is_empty() {
            self.groups.swap_remove(pos);
        }
        removed
    }

    /// Report every plain subscriber, and per group the one member `choose` picks. Returns how
    /// many sources reported anything (the plain set counts once, each group once): each
    /// source reports a key at most once.
    ///
    /// An index from `choose` past the member list is ignored (the group gets nothing).
    #[inline]
    pub(crate) fn visit<'t, C, F>(&'t self, choose: &mut C, f: &mut F) -> usize
    where
        C: FnMut(&SharedGroup<K, V>) -> Option<usize>,
        F: FnMut(K, &'t V),
    {
        let plain = self.plain.as_slice();
        for (key, value) in plain {
            f(*key, value);
        }
        let mut sources = usize::from(!plain.is_empty());
        for group in &self.groups {
            debug_assert!(!group.members().is_empty(), "empty groups are dropped");
            if let Some((key, value)) = choose(group).and_then(|i| group.members().get(i)) {
                f(*key, value);
                sources += 1;
            }
        }
        sources
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_set_keeps_index_consistent_through_churn() {
        let mut set = SubscriberSet::new();
        for k in 0..100u32 {
            assert_eq!(set.insert(k, k * 10), None);
        }
        assert!(set.index.is_some());
        assert_eq!(set.insert(42, 0), Some(420));
        for k in (0..100u32).filter(|k| k % 3 == 0) {
            assert_eq!(set.remove(k), Some(if k == 42 { 0 } else { k * 10 }));
        }
        for k in 0..100u32 {
            let expected = (k % 3 != 0).then_some(k * 10);
            let found = set
                .as_slice()
                .iter()
                .find(|(key, _)| *key == k)
                .map(|e| e.1);
            assert_eq!(found, expected);
        }
        for k in 0..100u32 {
            set.remove(k);
        }
        assert!(set.is_empty());
        assert!(set.index.is_none());
    }

    #[test]
    fn emptied_group_is_dropped() {
        let mut subs = Subscriptions::new();
        subs.insert(Some("g"), 1u8, ());
        subs.insert(Some("g"), 2u8, ());
        assert_eq!(subs.remove(Some("g"), 1), Some(()));
        assert_eq!(subs.groups.len(), 1);
        assert_eq!(subs.remove(Some("g"), 2), Some(()));
        assert!(subs.is_empty());
    }
}
