//! One test per matching rule of MQTT §4.7 (and §4.8.2 for shared subscriptions).
//!
//! Every case is checked against all three matchers: the naive `filter_matches`, a `TopicTree`
//! holding the filter (plain and as `$share/g/{filter}`), and a `RetainedIndex` holding the topic.

use fulmar_router::{filter_matches, RetainedIndex, TopicTree};

fn tree_matches(filter: &str, topic: &str) -> bool {
    let mut tree = TopicTree::new();
    tree.insert(filter, 1u32, ());
    let mut hits = 0;
    tree.for_each_match(topic, |key, ()| {
        assert_eq!(key, 1);
        hits += 1;
    });
    assert!(hits <= 1, "{filter:?} reported {hits} times for {topic:?}");
    hits == 1
}

fn retained_matches(filter: &str, topic: &str) -> bool {
    let mut retained = RetainedIndex::new();
    retained.insert(topic, ());
    let mut hits = 0;
    retained.for_each_matching(filter, |found, ()| {
        assert_eq!(found, topic);
        hits += 1;
    });
    assert!(hits <= 1);
    hits == 1
}

#[track_caller]
fn check(filter: &str, topic: &str, expected: bool) {
    let shared = format!("$share/group/{filter}");
    let results = [
        ("filter_matches", filter_matches(filter, topic)),
        ("TopicTree", tree_matches(filter, topic)),
        ("TopicTree shared", tree_matches(&shared, topic)),
        ("RetainedIndex", retained_matches(filter, topic)),
    ];
    for (matcher, got) in results {
        assert_eq!(
            got, expected,
            "{matcher}: filter {filter:?} topic {topic:?}"
        );
    }
}

#[test]
fn literal_levels_match_exactly() {
    check("sport/tennis", "sport/tennis", true);
    check("sport/tennis", "sport/Tennis", false);
    check("sport/tennis", "sport/tennis/player1", false);
    check("sport/tennis", "sport", false);
    check("sport", "sports", false);
}

#[test]
fn empty_levels_are_real_levels() {
    check("a//b", "a//b", true);
    check("a/b", "a//b", false);
    check("/a", "/a", true);
    check("/a", "a", false);
    check("a/", "a/", true);
    check("a/", "a", false);
}

#[test]
fn plus_matches_exactly_one_level() {
    check("sport/tennis/+", "sport/tennis/player1", true);
    check("sport/tennis/+", "sport/tennis/player1/ranking", false);
    check("sport/+", "sport", false);
    check("+", "sport", true);
    check("+", "sport/tennis", false);
    check("+/tennis/#", "sport/tennis/player1", true);
}

#[test]
fn plus_matches_an_empty_level() {
    check("+/+", "/finance", true);
    check("/+", "/finance", true);
    check("+", "/finance", false);
    check("sport/+", "sport/", true);
    check("a/+/b", "a//b", true);
}

#[test]
fn hash_matches_parent_level() {
    check("sport/#", "sport", true);
    check("sport/tennis/#", "sport/tennis", true);
    check("sport/#", "sports", false);
}

#[test]
fn hash_matches_any_number_of_child_levels() {
    check("sport/#", "sport/", true);
    check("sport/#", "sport/tennis", true);
    check("sport/#", "sport/tennis/player1/ranking", true);
    check("sport/tennis/#", "sport/football", false);
}

#[test]
fn lone_hash_matches_every_topic_not_starting_with_dollar() {
    check("#", "sport", true);
    check("#", "sport/tennis/player1", true);
    check("#", "/", true);
    check("#", "a/$SYS", true);
    check("#", "$SYS", false);
}

#[test]
fn dollar_topics_not_matched_by_leading_wildcard() {
    // [MQTT-4.7.2-1]
    check("#", "$SYS/broker/uptime", false);
    check("+/monitor/Clients", "$SYS/monitor/Clients", false);
    check("+", "$SYS", false);
    check("+/#", "$SYS/x", false);
}

#[test]
fn dollar_topics_matched_by_filters_starting_with_dollar_level() {
    check("$SYS/#", "$SYS/broker/uptime", true);
    check("$SYS/#", "$SYS", true);
    check("$SYS/monitor/+", "$SYS/monitor/Clients", true);
    check("$SYS", "$SYS", true);
}

#[test]
fn dollar_rule_applies_to_first_level_only() {
    check("a/+", "a/$SYS", true);
    check("+/+", "a/$b", true);
    check("a/#", "a/$SYS/x", true);
}

#[test]
fn shared_hash_does_not_match_dollar_topics() {
    // The `$share/g/` prefix is removed first, then [MQTT-4.7.2-1] applies to the rest.
    assert!(!tree_matches("$share/g/#", "$SYS/x"));
    assert!(!tree_matches("$share/g/+/x", "$SYS/x"));
    assert!(tree_matches("$share/g/$SYS/#", "$SYS/x"));
}

#[test]
fn shared_prefix_is_removed_before_matching() {
    assert!(tree_matches("$share/g/sport/+", "sport/tennis"));
    assert!(!tree_matches("$share/g/sport/+", "$share/g/sport/tennis"));
    assert!(tree_matches("$share/g/#", "sport"));
}

#[test]
fn overlapping_filters_report_a_key_once_per_filter() {
    let mut tree = TopicTree::new();
    for filter in ["a/b", "a/+", "a/#", "#", "+/b", "$share/g/a/b"] {
        tree.insert(filter, 7u32, filter);
    }
    tree.insert("a/c", 7u32, "a/c");
    let mut hits = Vec::new();
    tree.for_each_match("a/b", |key, filter| {
        assert_eq!(key, 7);
        hits.push(*filter);
    });
    hits.sort_unstable();
    assert_eq!(hits, ["#", "$share/g/a/b", "+/b", "a/#", "a/+", "a/b"]);
}

#[test]
fn match_reports_how_many_sources_can_repeat_a_key() {
    let mut tree = TopicTree::new();
    tree.insert("a/b", 1u64, ());
    tree.insert("a/b", 2u64, ());
    assert_eq!(
        tree.for_each_match("a/b", |_, ()| {}),
        1,
        "one filter, two keys"
    );
    tree.insert("a/+", 1u64, ());
    assert_eq!(
        tree.for_each_match("a/b", |_, ()| {}),
        2,
        "key 1 comes twice"
    );
    tree.insert("$share/g/a/b", 3u64, ());
    assert_eq!(tree.for_each_match("a/b", |_, ()| {}), 3);
    assert_eq!(tree.for_each_match("a/c", |_, ()| {}), 1);
    assert_eq!(tree.for_each_match("x", |_, ()| {}), 0);
}
