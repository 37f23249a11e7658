//! Topic matching for the Fulmar broker: the one place where routing decisions are made.
//!
//! This crate is plain data structures: no IO, no async runtime, no locks. The server wraps a
//! [`TopicTree`] and a [`RetainedIndex`] in a read-write lock and calls them from the publishing
//! task (read) or from SUBSCRIBE / UNSUBSCRIBE handling (write). Topics and filters arrive as `&str`
//! that the protocol layer has already validated ([MQTT-4.7.1-1], [MQTT-4.7.1-2], [MQTT-4.7.1-3]).
//!
//! # Module map
//!
//! - [`matcher`]: [`filter_matches`], the naive reference matcher (one filter, one topic). Used by
//!   the property tests as the oracle, and usable by ACL checks.
//! - [`topic_tree`]: [`TopicTree`], the subscription index matched on every PUBLISH. A tree of
//!   topic levels with separate `+` and `#` children, modelled on nats-server's sublist.
//! - `subscribers`: the dense `(key, value)` set stored at each tree node.
//! - [`shared`]: MQTT 5 shared subscriptions (`$share/{group}/{filter}`, §4.8.2): parsing
//!   ([`split_shared`]) and the per-group round-robin cursor.
//! - [`retained`]: [`RetainedIndex`], retained messages by topic name, matched against a filter on
//!   SUBSCRIBE by walking the same kind of level tree.
//!
//! # Matching rules (MQTT 3.1.1 and 5.0, §4.7)
//!
//! - Levels are separated by `/`; empty levels are real levels (`a//b`, `/a`) (§4.7.1.1).
//! - `+` matches exactly one level, which may be empty (`+/+` matches `/finance`) (§4.7.1.3).
//! - `#` matches its parent level and any number of child levels (`sport/#` matches `sport`)
//!   (§4.7.1.2).
//! - A topic starting with `$` is not matched by a filter whose first level is `+` or `#`
//!   ([MQTT-4.7.2-1]); this holds for shared subscriptions too, after the `$share/{group}/` prefix
//!   is removed.

#![warn(missing_docs)]

pub mod matcher;
pub mod retained;
pub mod shared;
mod subscribers;
pub mod topic_tree;

pub use matcher::filter_matches;
pub use retained::RetainedIndex;
pub use shared::split_shared;
pub use topic_tree::TopicTree;

/// The topic level separator (§4.7.1.1).
pub(crate) const SEPARATOR: char = '/';
/// The single-level wildcard (§4.7.1.3).
pub(crate) const PLUS: &str = "+";
/// The multi-level wildcard (§4.7.1.2).
pub(crate) const HASH: &str = "#";

/// `true` if `topic` is a `$` topic, which wildcards at the first level never match ([MQTT-4.7.2-1]).
pub(crate) fn is_dollar_topic(topic: &str) -> bool {
    topic.starts_with('$')
}
