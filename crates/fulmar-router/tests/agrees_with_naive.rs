//! Property tests: the tree and the retained index agree with the naive `filter_matches`.
//!
//! Levels come from a small alphabet that includes the empty level, a `$` level and both
//! wildcards, so that the classic `$`-topic and empty-level bugs are reached quickly.

use std::collections::{BTreeMap, BTreeSet};

use fulmar_router::{filter_matches, split_shared, RetainedIndex, TopicTree};
use proptest::prelude::*;

const TOPIC_LEVELS: &[&str] = &["", "$SYS", "a", "b"];
const FILTER_LEVELS: &[&str] = &["", "$SYS", "a", "b", "+", "#"];

fn topic() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(TOPIC_LEVELS), 1..5).prop_map(|l| l.join("/"))
}

/// A valid filter: `#` only as the last level [MQTT-4.7.1-2]; sometimes shared.
fn filter() -> impl Strategy<Value = String> {
    let levels = prop::collection::vec(prop::sample::select(FILTER_LEVELS), 1..5);
    let share = prop::sample::select(&["", "$share/g1/", "$share/g2/"][..]);
    (share, levels).prop_map(|(share, mut levels)| {
        if let Some(hash) = levels.iter().position(|l| *l == "#") {
            levels.truncate(hash + 1);
        }
        format!("{share}{}", levels.join("/"))
    })
}

fn subscriptions() -> impl Strategy<Value = Vec<(String, u8)>> {
    prop::collection::vec((filter(), 0..4u8), 0..24)
}

fn plain_filter(filter: &str) -> &str {
    split_shared(filter).map_or(filter, |(_, rest)| rest)
}

proptest! {
    #[test]
    fn topic_tree_agrees_with_filter_matches(
        subs in subscriptions(),
        topics in prop::collection::vec(topic(), 1..8),
    ) {
        let mut tree = TopicTree::new();
        // (filter, key) -> value; the last insert wins, as in the tree.
        let mut model = BTreeMap::new();
        for (i, (filter, key)) in subs.iter().enumerate() {
            let old = tree.insert(filter, *key, (filter.clone(), i));
            prop_assert_eq!(old, model.insert((filter.clone(), *key), i).map(|j| (filter.clone(), j)));
        }
        prop_assert_eq!(tree.len(), model.len());

        for topic in &topics {
            let mut plain = Vec::new();
            let mut shared = Vec::new();
            tree.for_each_match(topic, |key, (filter, i)| {
                if split_shared(filter).is_some() { &mut shared } else { &mut plain }
                    .push((filter.clone(), key, *i));
            });
            plain.sort();
            let expected: Vec<_> = model
                .iter()
                .filter(|((f, _), _)| split_shared(f).is_none() && filter_matches(f, topic))
                .map(|((f, k), i)| (f.clone(), *k, *i))
                .collect();
            prop_assert_eq!(plain, expected);

            // Each matching shared filter (group + rest) once, delivered to one of its members.
            let groups: BTreeSet<&String> = shared.iter().map(|(f, _, _)| f).collect();
            prop_assert_eq!(groups.len(), shared.len(), "a group is reported once");
            let expected: BTreeSet<&String> = model
                .keys()
                .map(|(f, _)| f)
                .filter(|f| split_shared(f).is_some() && filter_matches(plain_filter(f), topic))
                .collect();
            prop_assert_eq!(groups, expected);
            for (filter, key, i) in &shared {
                prop_assert_eq!(model.get(&(filter.clone(), *key)), Some(i));
            }
        }
    }

    #[test]
    fn retained_index_agrees_with_filter_matches(
        topics in prop::collection::vec(topic(), 0..24),
        filters in prop::collection::vec(filter(), 1..8),
    ) {
        let mut retained = RetainedIndex::new();
        for topic in &topics {
            retained.insert(topic, topic.clone());
        }
        let stored: BTreeSet<&String> = topics.iter().collect();
        prop_assert_eq!(retained.len(), stored.len());
        prop_assert_eq!(retained.iter().count(), stored.len());

        for filter in filters.iter().filter(|f| split_shared(f).is_none()) {
            let mut found = Vec::new();
            retained.for_each_matching(filter, |topic, message| {
                assert_eq!(topic, message);
                found.push(topic.to_owned());
            });
            found.sort();
            let expected: Vec<String> = stored
                .iter()
                .filter(|t| filter_matches(filter, t))
                .map(|t| (*t).clone())
                .collect();
            prop_assert_eq!(found, expected);
        }
    }

    #[test]
    fn insert_then_remove_all_leaves_tree_empty(
        (subs, order) in subscriptions().prop_flat_map(|subs| {
            let order = Just(subs.clone()).prop_shuffle();
            (Just(subs), order)
        }),
    ) {
        let mut tree = TopicTree::new();
        let mut model = BTreeSet::new();
        for (filter, key) in &subs {
            tree.insert(filter, *key, ());
            model.insert((filter.clone(), *key));
        }
        for (filter, key) in &order {
            let was_there = model.remove(&(filter.clone(), *key));
            prop_assert_eq!(tree.remove(filter, *key).is_some(), was_there);
            prop_assert_eq!(tree.len(), model.len());
        }
        prop_assert!(tree.is_empty());
        prop_assert_eq!(tree.node_count(), 0);
        tree.for_each_match("a", |_, ()| panic!("empty tree matched"));
    }

    #[test]
    fn retained_insert_then_remove_all_leaves_index_empty(
        (topics, order) in prop::collection::vec(topic(), 0..24).prop_flat_map(|topics| {
            let order = Just(topics.clone()).prop_shuffle();
            (Just(topics), order)
        }),
    ) {
        let mut retained = RetainedIndex::new();
        for topic in &topics {
            retained.insert(topic, ());
        }
        let mut stored: BTreeSet<&String> = topics.iter().collect();
        for topic in &order {
            prop_assert_eq!(retained.remove(topic).is_some(), stored.remove(topic));
            prop_assert_eq!(retained.get(topic), None);
        }
        prop_assert!(retained.is_empty());
        prop_assert_eq!(retained.node_count(), 0);
    }
}
