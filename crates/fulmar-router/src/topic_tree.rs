//! The subscription index: a tree of topic filter levels, matched on every PUBLISH.
//!
//! Shaped like nats-server's sublist: one node per filter level, literal children in a hash map
//! keyed by the level, and the `+` and `#` children kept apart so that matching a topic costs one
//! hash lookup per level plus the wildcard branches, never a scan of all subscriptions.
//!
//! ```text
//! filters: a/b, a/+, a/#, +/b, #          root ─┬─ "a" ─┬─ "b" ─ subs {a/b}
//!                                               │       ├─ "+" ─ subs {a/+}
//!                                               │       └─ "#"   subs {a/#}
//!                                               ├─ "+" ─── "b" ─ subs {+/b}
//!                                               └─ "#"           subs {#}
//! ```

use std::collections::HashMap;
use std::hash::Hash;
use std::str::Split;

use ahash::RandomState;

use crate::shared::{split_shared, SharedGroup};
use crate::subscribers::Subscriptions;
use crate::{is_dollar_topic, HASH, PLUS, SEPARATOR};

/// Subscription index: topic filter tree with `+` / `#` wildcards, MQTT 5 shared subscriptions
/// (§4.8.2) and the `$`-topic rule ([MQTT-4.7.2-1]).
///
/// `K` identifies a subscriber (a session id), `V` is the subscription's data (its options).
/// The tree holds no lock; the broker wraps it in a read-write lock and matches through `&self`.
///
/// # Invariants
///
/// - `len` is the number of `(filter, key)` subscriptions stored, counting a shared
///   subscription once per `$share/{group}/{filter}`.
/// - Every node below the root leads to at least one subscription: removal prunes emptied
///   nodes on its way back up, so memory follows the live subscriptions, not their history.
/// - A literal child is never keyed `+` or `#`: those levels live in the `plus` / `hash` slots.
pub struct TopicTree<K, V> {
    /// The level before the first one; its `subs` stay empty (a filter has at least one level).
    root: Node<K, V>,
    /// Number of `(filter, key)` subscriptions, kept so that `len` is O(1).
    len: usize,
}

/// One filter level.
struct Node<K, V> {
    /// Children by literal level, including the empty level. Keyed by the level's bytes:
    /// matching cuts a topic at `/` bytes and looks the pieces up as they are.
    literal: HashMap<Box<[u8]>, Node<K, V>, RandomState>,
    /// The `+` child (§4.7.1.3).
    plus: Option<Box<Node<K, V>>>,
    /// Subscriptions to `{this level}/#` (§4.7.1.2); `#` is the last level, so no children.
    hash: Option<Box<Subscriptions<K, V>>>,
    /// Subscriptions whose filter ends at this level.
    subs: Subscriptions<K, V>,
}

impl<K: Copy + Eq + Hash, V> Node<K, V> {
    fn new() -> Self {
        Self {
            literal: HashMap::default(),
            plus: None,
            hash: None,
            subs: Subscriptions::new(),
        }
    }

    fn is_empty(&self) -> bool {
        self.literal.is_empty()
            && self.plus.is_none()
            && self.hash.is_none()
            && self.subs.is_empty()
    }

    /// The subscriptions for `levels` below this node, creating the path.
    fn subscriptions_mut(&mut self, levels: Split<'_, char>) -> &mut Subscriptions<K, V> {
        let mut node = self;
        for level in levels {
            node = match level {
                // A `#` ends the filter [MQTT-4.7.1-2]; levels after it are ignored.
                HASH => {
                    return node
                        .hash
                        .get_or_insert_with(|| Box::new(Subscriptions::new()))
                }
                PLUS => node.plus.get_or_insert_with(|| Box::new(Node::new())),
                literal => {
                    let literal = literal.as_bytes();
                    if !node.literal.contains_key(literal) {
                        node.literal.insert(literal.into(), Node::new());
                    }
                    node.literal.get_mut(literal).expect("inserted above")
                }
            };
        }
        &mut node.subs
    }

    /// Remove `key` from the filter `levels` below this node, pruning nodes it empties.
    fn remove(&mut self, mut levels: Split<'_, char>, group: Option<&str>, key: K) -> Option<V> {
        match levels.next() {
            None => self.subs.remove(group, key),
            Some(HASH) => {
                let subs = self.hash.as_mut()?;
                let removed = subs.remove(group, key);
                if subs.is_empty() {
                    self.hash = None;
                }
                removed
            }
            Some(PLUS) => {
                let child = self.plus.as_mut()?;
                let removed = child.remove(levels, group, key);
                if child.is_empty() {
                    self.plus = None;
                }
                removed
            }
            Some(literal) => {
                let literal = literal.as_bytes();
                let child = self.literal.get_mut(literal)?;
                let removed = child.remove(levels, group, key);
                if child.is_empty() {
                    self.literal.remove(literal);
                    shrink_if_sparse(&mut self.literal);
                }
                removed
            }
        }
    }

    /// Report the subscriptions matching the topic `levels` below this node; returns how many
    /// sources reported (see [`Subscriptions::visit`]).
    ///
    /// `wildcards` is false only at the root of a `$` topic ([MQTT-4.7.2-1]).
    fn walk<'t, C, F>(
        &'t self,
        mut levels: Levels<'_>,
        wildcards: bool,
        choose: &mut C,
        f: &mut F,
    ) -> usize
    where
        C: FnMut(&SharedGroup<K, V>) -> Option<usize>,
        F: FnMut(K, &'t V),
    {
        let mut sources = 0;
        if wildcards {
            // §4.7.1.2 `#` matches this (parent) level and every level below it.
            if let Some(hash) = &self.hash {
                sources += hash.visit(choose, f);
            }
        }
        let Some(level) = levels.next() else {
            return sources + self.subs.visit(choose, f);
        };
        // A level below a wildcard often has no literal children: skip hashing the level.
        if !self.literal.is_empty() {
            if let Some(child) = self.literal.get(level) {
                sources += child.walk(levels.clone(), true, choose, f);
            }
        }
        if wildcards {
            // §4.7.1.3 `+` matches exactly one level, which may be empty.
            if let Some(plus) = &self.plus {
                sources += plus.walk(levels, true, choose, f);
            }
        }
        sources
    }

    fn count_nodes(&self) -> usize {
        let below: usize = self.literal.values().map(|n| 1 + n.count_nodes()).sum();
        let plus = self.plus.as_ref().map_or(0, |n| 1 + n.count_nodes());
        below + plus + usize::from(self.hash.is_some())
    }
}

/// The levels of a topic as bytes, as `topic.split('/')` yields them (empty levels included),
/// found by a byte scan: matching splits every PUBLISH's topic, and the generic `char` searcher
/// (and the char-boundary checks of slicing a `str`) cost more than the hash lookups it feeds.
#[derive(Clone)]
struct Levels<'a> {
    /// What is left to split; `None` once the last level was returned.
    rest: Option<&'a [u8]>,
}

impl<'a> Iterator for Levels<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let rest = self.rest?;
        match rest.iter().position(|&b| b == SEPARATOR as u8) {
            Some(i) => {
                let (level, after) = rest.split_at(i);
                self.rest = after.get(1..);
                Some(level)
            }
            None => {
                self.rest = None;
                Some(rest)
            }
        }
    }
}

/// Release a child map's table once most of it is empty (after a wave of unsubscribes).
pub(crate) fn shrink_if_sparse<Q: Eq + Hash, T>(map: &mut HashMap<Q, T, RandomState>) {
    if map.capacity() > 64 && map.len() < map.capacity() / 4 {
        map.shrink_to(map.len() * 2);
    }
}

impl<K: Copy + Eq + Hash, V> TopicTree<K, V> {
    /// An empty tree.
    #[must_use]
    pub fn new() -> Self {
        Self {
            root: Node::new(),
            len: 0,
        }
    }

    /// Insert or replace the subscription of `key` to `filter`.
    ///
    /// Returns the previous value if `key` already had exactly this filter: a new subscription
    /// replaces the existing one [MQTT-3.8.4-3]. A filter `$share/{group}/{rest}` is a shared
    /// subscription, stored under `rest` in group `group` (§4.8.2).
    pub fn insert(&mut self, filter: &str, key: K, value: V) -> Option<V> {
        let (group, filter) = parse(filter);
        let subs = self.root.subscriptions_mut(filter.split(SEPARATOR));
        let old = subs.insert(group, key, value);
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    /// Remove the subscription of `key` to `filter` and return its value.
    ///
    /// Nodes left without subscriptions are pruned, so memory does not grow with churn.
    pub fn remove(&mut self, filter: &str, key: K) -> Option<V> {
        let (group, filter) = parse(filter);
        let removed = self.root.remove(filter.split(SEPARATOR), group, key);
        if removed.is_some() {
            self.len -= 1;
        }
        shrink_if_sparse(&mut self.root.literal);
        debug_assert!(
            self.len > 0 || self.root.is_empty(),
            "an empty tree has no nodes"
        );
        removed
    }

    /// Call `f(key, &value)` for every subscription that matches `topic`.
    ///
    /// Every matching non-shared subscription is reported; every matching shared group is
    /// reported once, for one member chosen round-robin. A key with several matching
    /// (overlapping) filters is reported once per filter: the caller deduplicates (§4.7.2 lets
    /// the server deliver once with the highest QoS). Topics starting with `$` are not matched
    /// by filters whose first level is `+` or `#` [MQTT-4.7.2-1]. Does not allocate.
    ///
    /// Returns how many sources reported anything: matching filters with plain subscribers,
    /// and shared groups. At most one means no key was reported twice, so the caller can skip
    /// deduplicating.
    pub fn for_each_match<'t>(&'t self, topic: &str, mut f: impl FnMut(K, &'t V)) -> usize {
        self.walk(topic, &mut SharedGroup::next_index, &mut f)
    }

    /// Like [`for_each_match`](Self::for_each_match), but the caller picks the member of each
    /// matching shared group: `pick(group_name, members)` returns an index into `members`, or
    /// `None` to skip the group (for example when every member's queue is full).
    pub fn for_each_match_picking(
        &self,
        topic: &str,
        mut pick: impl FnMut(&str, &[(K, V)]) -> Option<usize>,
        mut f: impl FnMut(K, &V),
    ) {
        let mut choose = |group: &SharedGroup<K, V>| pick(group.name(), group.members());
        self.walk(topic, &mut choose, &mut f);
    }

    fn walk<'t, C, F>(&'t self, topic: &str, choose: &mut C, f: &mut F) -> usize
    where
        C: FnMut(&SharedGroup<K, V>) -> Option<usize>,
        F: FnMut(K, &'t V),
    {
        let wildcards = !is_dollar_topic(topic);
        self.root.walk(
            Levels {
                rest: Some(topic.as_bytes()),
            },
            wildcards,
            choose,
            f,
        )
    }

    /// Number of `(filter, key)` subscriptions.
    #[must_use]
    pub fn len(&self) -> usize {
        self.len
    }

    /// `true` if there are no subscriptions.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of tree nodes below the root (literal, `+` and `#` levels). Walks the whole tree:
    /// for diagnostics and tests (it is 0 when the tree is empty, see the invariants).
    #[must_use]
    pub fn node_count(&self) -> usize {
        self.root.count_nodes()
    }
}

impl<K: Copy + Eq + Hash, V> Default for TopicTree<K, V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K, V> std::fmt::Debug for TopicTree<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TopicTree")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

/// `(share group, plain filter)` of a subscription filter.
fn parse(filter: &str) -> (Option<&str>, &str) {
    match split_shared(filter) {
        Some((group, rest)) => (Some(group), rest),
        None => (None, filter),
    }
}

#[cfg(test)]
mod tests {
    use super::Levels;

    #[test]
    fn levels_split_like_str_split() {
        for topic in ["a", "a/b/c", "/", "//", "/a/", "a//b", "", "é/ü/$x"] {
            let levels: Vec<&[u8]> = Levels {
                rest: Some(topic.as_bytes()),
            }
            .collect();
            let split: Vec<&[u8]> = topic.split('/').map(str::as_bytes).collect();
            assert_eq!(levels, split, "{topic:?}");
        }
    }
}
