//! The naive reference matcher: one filter against one topic, level by level.
//!
//! [`TopicTree`](crate::TopicTree) and [`RetainedIndex`](crate::RetainedIndex) must agree with
//! [`filter_matches`] on every input; the property tests in `tests/` check exactly that.

use crate::{is_dollar_topic, HASH, PLUS, SEPARATOR};

/// Does the topic filter `filter` match the topic name `topic`?
///
/// Both are trusted to be valid (checked at decode time). `filter` is a plain filter: strip a
/// `$share/{group}/` prefix first with [`split_shared`](crate::split_shared). As in the tree, a
/// `#` level ends the filter: anything after it (invalid per [MQTT-4.7.1-2]) is ignored.
///
/// ```
/// use fulmar_router::filter_matches;
/// assert!(filter_matches("sport/#", "sport"));
/// assert!(filter_matches("+/+", "/finance"));
/// assert!(!filter_matches("#", "$SYS/uptime"));
/// ```
#[must_use]
pub fn filter_matches(filter: &str, topic: &str) -> bool {
    let mut filter_levels = filter.split(SEPARATOR);
    let mut topic_levels = topic.split(SEPARATOR);

    // [MQTT-4.7.2-1] a wildcard in the first level never matches a `$` topic.
    if is_dollar_topic(topic) && matches!(filter_levels.clone().next(), Some(PLUS | HASH)) {
        return false;
    }
    loop {
        match (filter_levels.next(), topic_levels.next()) {
            // §4.7.1.2 `#` matches the parent level (topic exhausted) and any number of children.
            (Some(HASH), _) => return true,
            // §4.7.1.3 `+` matches exactly one level, including an empty one.
            (Some(PLUS), Some(_)) => {}
            (Some(f), Some(t)) if f == t => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}
