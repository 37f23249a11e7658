//! MQTT 5 shared subscriptions (§4.8.2): `$share/{ShareName}/{filter}`.
//!
//! All subscriptions of one group to one filter form a [`SharedGroup`]; a matching message goes to
//! exactly one of its members, chosen round-robin by an atomic cursor so that matching works
//! through `&TopicTree` (the tree is read-locked on the publish path).

use std::hash::Hash;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::subscribers::SubscriberSet;

/// The prefix that makes a filter a shared subscription ([MQTT-4.8.2-1]).
const SHARE_PREFIX: &str = "$share/";

/// Split a shared subscription filter into `(group, filter)`; `None` for a non-shared filter.
///
/// `$share/g/sensors/#` gives `Some(("g", "sensors/#"))`. The share name is at least one
/// character and holds no `/`, `+` or `#` ([MQTT-4.8.2-1], [MQTT-4.8.2-2]); the protocol layer
/// rejects filters that break this, so a `$share/g` without a filter part is simply not shared.
///
/// ```
/// use fulmar_router::split_shared;
/// assert_eq!(split_shared("$share/g/a/+"), Some(("g", "a/+")));
/// assert_eq!(split_shared("a/+"), None);
/// ```
#[must_use]
pub fn split_shared(filter: &str) -> Option<(&str, &str)> {
    filter.strip_prefix(SHARE_PREFIX)?.split_once('/')
}

/// The members of one share group subscribed to one filter, with the round-robin cursor.
///
/// # Invariants
///
/// - A group stored in the tree has at least one member: the node that owns it drops the group
///   when its last member leaves.
/// - `cursor` is only a hint: any value is valid, it is reduced modulo the member count.
pub(crate) struct SharedGroup<K, V> {
    /// The share name, compared when a member joins or leaves.
    name: Box<str>,
    /// The members; a message goes to exactly one of them.
    members: SubscriberSet<K, V>,
    /// Advanced by one per matched message; `AtomicUsize` keeps the tree `Sync`.
    cursor: AtomicUsize,
}

impl<K: Copy + Eq + Hash, V> SharedGroup<K, V> {
    pub(crate) fn new(name: &str) -> Self {
        Self {
            name: name.into(),
            members: SubscriberSet::new(),
            cursor: AtomicUsize::new(0),
        }
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn members(&self) -> &[(K, V)] {
        self.members.as_slice()
    }

    pub(crate) fn members_mut(&mut self) -> &mut SubscriberSet<K, V> {
        &mut self.members
    }

    /// The member to deliver the next message to, round-robin; `None` only for an empty group.
    ///
    /// Removing a member reorders the rest (swap-remove), which only shifts the rotation.
    pub(crate) fn next_index(&self) -> Option<usize> {
        let n = self.members.len();
        // Relaxed: the cursor orders nothing else; a lost race only repeats a member once.
        (n > 0).then(|| self.cursor.fetch_add(1, Ordering::Relaxed) % n)
    }
}
