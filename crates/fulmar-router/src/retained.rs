//! Retained messages by topic name (§3.3.1.3), matched against a filter on SUBSCRIBE.
//!
//! The index is a tree of topic levels, the mirror image of [`TopicTree`](crate::TopicTree):
//! there the tree holds filters and is walked with a topic, here it holds topics and is walked
//! with a filter. A literal filter level is one hash lookup, `+` visits the children of one
//! node, `#` visits a subtree, so a filter with a literal prefix never scans unrelated topics.

use std::collections::HashMap;
use std::str::Split;

use ahash::RandomState;

use crate::topic_tree::shrink_if_sparse;
use crate::{is_dollar_topic, HASH, PLUS, SEPARATOR};

/// Retained messages by topic name, matched against a filter on SUBSCRIBE.
///
/// Holds at most one message per topic ([MQTT-3.3.1-5]: a new retained message replaces the
/// old). Deleting on an empty payload ([MQTT-3.3.1-10]) and size limits are the caller's policy.
///
/// # Invariants
///
/// - `len` is the number of stored messages.
/// - Every node below the root holds a message or leads to one: removal prunes emptied nodes.
/// - A node's stored topic equals the path of levels from the root to it.
pub struct RetainedIndex<M> {
    /// The level before the first one; it holds no message (a topic has at least one level).
    root: Node<M>,
    /// Number of stored messages, kept so that `len` is O(1).
    len: usize,
}

/// One topic level.
struct Node<M> {
    /// Children by level, including the empty level.
    children: HashMap<Box<str>, Node<M>, RandomState>,
    /// The message retained on the topic that ends at this level.
    entry: Option<Entry<M>>,
}

/// A retained message with its full topic, so that visits can report the topic without
/// rebuilding it from the levels.
struct Entry<M> {
    topic: Box<str>,
    message: M,
}

impl<M> Node<M> {
    fn new() -> Self {
        Self {
            children: HashMap::default(),
            entry: None,
        }
    }

    fn is_empty(&self) -> bool {
        self.children.is_empty() && self.entry.is_none()
    }

    fn find(&self, topic: &str) -> Option<&Self> {
        topic
            .split(SEPARATOR)
            .try_fold(self, |node, level| node.children.get(level))
    }

    fn remove(&mut self, mut levels: Split<'_, char>) -> Option<M> {
        let Some(level) = levels.next() else {
            return self.entry.take().map(|e| e.message);
        };
        let child = self.children.get_mut(level)?;
        let removed = child.remove(levels);
        if child.is_empty() {
            self.children.remove(level);
            shrink_if_sparse(&mut self.children);
        }
        removed
    }

    /// Report the messages below this node whose topics match the filter `levels`.
    ///
    /// `at_root` makes wildcards skip first levels starting with `$` ([MQTT-4.7.2-1]).
    fn visit_matching<F>(&self, mut levels: Split<'_, char>, at_root: bool, f: &mut F)
    where
        F: FnMut(&str, &M),
    {
        match levels.next() {
            None => self.report(f),
            // §4.7.1.2 this (parent) level and everything below; a `#` ends the filter.
            Some(HASH) => {
                self.report(f);
                for child in self.children_for_wildcard(at_root) {
                    child.visit_all(f);
                }
            }
            // §4.7.1.3 exactly one level, which may be empty.
            Some(PLUS) => {
                for child in self.children_for_wildcard(at_root) {
                    child.visit_matching(levels.clone(), false, f);
                }
            }
            Some(literal) => {
                if let Some(child) = self.children.get(literal) {
                    child.visit_matching(levels, false, f);
                }
            }
        }
    }

    fn children_for_wildcard(&self, at_root: bool) -> impl Iterator<Item = &Self> {
        self.children
            .iter()
            .filter(move |(level, _)| !(at_root && is_dollar_topic(level)))
            .map(|(_, child)| child)
    }

    fn visit_all<F: FnMut(&str, &M)>(&self, f: &mut F) {
        self.report(f);
        for child in self.children.values() {
            child.visit_all(f);
        }
    }

    fn report<F: FnMut(&str, &M)>(&self, f: &mut F) {
        if let Some(entry) = &self.entry {
            f(&entry.topic, &entry.message);
        }
    }

    fn count_nodes(&self) -> usize {
        self.children.values().map(|n| 1 + n.count_nodes()).sum()
    }
}

impl<M> RetainedIndex<M> {
    /// An empty index.
    #[must_use]
    pub fn new() -> Self {
        Self {
            root: Node::new(),
            len: 0,
        }
    }

    /// Store the retained message for `topic`, replacing and returning the previous one.
    pub fn insert(&mut self, topic: &str, message: M) -> Option<M> {
        let mut node = &mut self.root;
        for level in topic.split(SEPARATOR) {
            if !node.children.contains_key(level) {
                node.children.insert(level.into(), Node::new());
            }
            node = node.children.get_mut(level).expect("inserted above");
        }
        match &mut node.entry {
            Some(entry) => Some(std::mem::replace(&mut entry.message, message)),
            empty @ None => {
                *empty = Some(Entry {
                    topic: topic.into(),
                    message,
                });
                self.len += 1;
                None
            }
        }
    }

    /// Remove and return the retained message for `topic`; prunes emptied nodes.
    pub fn remove(&mut self, topic: &str) -> Option<M> {
        let removed = self.root.remove(topic.split(SEPARATOR));
        if removed.is_some() {
            self.len -= 1;
        }
        shrink_if_sparse(&mut self.root.children);
        debug_assert!(
            self.len > 0 || self.root.is_empty(),
            "an empty index has no nodes"
        );
        removed
    }

    /// The retained message for exactly `topic`.
    #[must_use]
    pub fn get(&self, topic: &str) -> Option<&M> {
        let entry = self.root.find(topic)?.entry.as_ref()?;
        debug_assert_eq!(&*entry.topic, topic);
        Some(&entry.message)
    }

    /// Call `f(topic, &message)` for every retained message whose topic matches `filter`.
    ///
    /// Same rules as [`filter_matches`](crate::filter_matches), including the `$` rule
    /// [MQTT-4.7.2-1]. `filter` is a plain filter: retained messages are not sent for a shared
    /// subscription (§4.8.2), so the caller does not call this for `$share/...`.
    pub fn for_each_matching(&self, filter: &str, mut f: impl FnMut(&str, &M)) {
        self.root
            .visit_matching(filter.split(SEPARATOR), true, &mut f);
    }

    /// Number of retained messages.
    #[must_use]
    pub fn len(&self) -> usize {
        self.len
    }

    /// `true` if no message is retained.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every retained message with its topic, in no particular order (for persistence).
    pub fn iter(&self) -> impl Iterator<Item = (&str, &M)> {
        let mut stack = vec![&self.root];
        std::iter::from_fn(move || loop {
            let node = stack.pop()?;
            stack.extend(node.children.values());
            if let Some(entry) = &node.entry {
                return Some((&*entry.topic, &entry.message));
            }
        })
    }

    /// Number of tree nodes below the root. Walks the whole tree: for diagnostics and tests
    /// (it is 0 when the index is empty, see the invariants).
    #[must_use]
    pub fn node_count(&self) -> usize {
        self.root.count_nodes()
    }
}

impl<M> Default for RetainedIndex<M> {
    fn default() -> Self {
        Self::new()
    }
}

impl<M> std::fmt::Debug for RetainedIndex<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RetainedIndex")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}
