//! Subscription lifecycle: replacement, removal and pruning, shared-group delivery.

use std::collections::HashMap;

use fulmar_router::{RetainedIndex, TopicTree};

fn matches<V: Clone>(tree: &TopicTree<u32, V>, topic: &str) -> Vec<(u32, V)> {
    let mut hits = Vec::new();
    tree.for_each_match(topic, |key, value| hits.push((key, value.clone())));
    hits
}

#[test]
fn replacement_returns_old_value() {
    // [MQTT-3.8.4-3] a SUBSCRIBE to an existing filter replaces the subscription.
    let mut tree = TopicTree::new();
    assert_eq!(tree.insert("a/+", 1u32, "qos0"), None);
    assert_eq!(tree.insert("a/+", 1u32, "qos1"), Some("qos0"));
    assert_eq!(tree.len(), 1);
    assert_eq!(matches(&tree, "a/b"), [(1, "qos1")]);

    // Another key, or the same filter shared, is a separate subscription.
    assert_eq!(tree.insert("a/+", 2u32, "qos2"), None);
    assert_eq!(tree.insert("$share/g/a/+", 1u32, "shared"), None);
    assert_eq!(tree.insert("$share/g/a/+", 1u32, "shared2"), Some("shared"));
    assert_eq!(tree.len(), 3);
}

#[test]
fn remove_returns_value_and_only_exact_filter() {
    let mut tree = TopicTree::new();
    tree.insert("a/#", 1u32, "x");
    assert_eq!(tree.remove("a/+", 1), None);
    assert_eq!(tree.remove("a/#", 2), None);
    assert_eq!(tree.remove("$share/g/a/#", 1), None);
    assert_eq!(tree.remove("a/#", 1), Some("x"));
    assert_eq!(tree.remove("a/#", 1), None);
    assert!(tree.is_empty());
}

#[test]
fn remove_prunes_empty_nodes() {
    let mut tree = TopicTree::new();
    let filters = [
        "a/b/c",
        "a/b",
        "a/+/c",
        "a/#",
        "#",
        "+",
        "/",
        "a//",
        "$share/g/a/b/#",
    ];
    for (key, filter) in filters.iter().enumerate() {
        tree.insert(filter, key, ());
    }
    assert_eq!(tree.len(), filters.len());
    assert!(tree.node_count() > 0);

    tree.remove("a/b/c", 0);
    assert!(tree.node_count() > 0, "a/b is still needed");
    for (key, filter) in filters.iter().enumerate().skip(1) {
        assert_eq!(tree.remove(filter, key), Some(()));
    }
    assert_eq!(tree.len(), 0);
    assert!(tree.is_empty());
    assert_eq!(tree.node_count(), 0);
}

#[test]
fn churn_does_not_grow_the_tree() {
    let mut tree = TopicTree::new();
    tree.insert("keep/this", 0u32, ());
    let baseline = tree.node_count();
    for i in 0..1000u32 {
        let filter = format!("devices/{i}/+/status");
        tree.insert(&filter, i, ());
        tree.remove(&filter, i);
    }
    assert_eq!(tree.node_count(), baseline);
    assert_eq!(tree.len(), 1);
}

#[test]
fn shared_round_robin_spreads_evenly() {
    let mut tree = TopicTree::new();
    for key in 1..=3u32 {
        tree.insert("$share/workers/jobs/+", key, ());
    }
    let mut per_key: HashMap<u32, usize> = HashMap::new();
    for _ in 0..300 {
        let hits = matches(&tree, "jobs/resize");
        assert_eq!(hits.len(), 1, "a group gets each message once");
        *per_key.entry(hits[0].0).or_default() += 1;
    }
    assert_eq!(per_key, HashMap::from([(1, 100), (2, 100), (3, 100)]));
}

#[test]
fn shared_group_keeps_working_after_member_removed() {
    let mut tree = TopicTree::new();
    for key in 1..=3u32 {
        tree.insert("$share/workers/jobs/#", key, ());
    }
    for _ in 0..5 {
        matches(&tree, "jobs/x"); // move the cursor somewhere
    }
    assert_eq!(tree.remove("$share/workers/jobs/#", 2), Some(()));
    let mut per_key: HashMap<u32, usize> = HashMap::new();
    for _ in 0..100 {
        let hits = matches(&tree, "jobs/x");
        assert_eq!(hits.len(), 1);
        *per_key.entry(hits[0].0).or_default() += 1;
    }
    assert_eq!(per_key, HashMap::from([(1, 50), (3, 50)]));

    tree.remove("$share/workers/jobs/#", 1);
    tree.remove("$share/workers/jobs/#", 3);
    assert!(matches(&tree, "jobs/x").is_empty());
    assert_eq!(tree.node_count(), 0);
}

#[test]
fn each_shared_group_gets_one_copy_alongside_plain_subscribers() {
    let mut tree = TopicTree::new();
    tree.insert("$share/a/t", 1u32, "a");
    tree.insert("$share/a/t", 2u32, "a");
    tree.insert("$share/b/t", 1u32, "b");
    tree.insert("$share/b/+", 3u32, "b+");
    tree.insert("t", 1u32, "plain");
    let mut values: Vec<_> = matches(&tree, "t").into_iter().map(|(_, v)| v).collect();
    values.sort_unstable();
    assert_eq!(values, ["a", "b", "b+", "plain"]);
}

#[test]
fn caller_can_pick_the_shared_member() {
    let mut tree = TopicTree::new();
    for key in [10u32, 20, 30] {
        tree.insert("$share/g/t", key, key * 2);
    }
    let mut hits = Vec::new();
    let pick = |group: &str, members: &[(u32, u32)]| {
        assert_eq!(group, "g");
        members.iter().position(|&(key, _)| key == 20)
    };
    tree.for_each_match_picking("t", pick, |key, value| hits.push((key, *value)));
    assert_eq!(hits, [(20, 40)]);

    let mut hits = 0;
    tree.for_each_match_picking("t", |_, _| None, |_, _| hits += 1);
    assert_eq!(hits, 0, "None skips the group");
    tree.for_each_match_picking("t", |_, _| Some(99), |_, _| hits += 1);
    assert_eq!(hits, 0, "an index out of range skips the group");
}

#[test]
fn topic_tree_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<TopicTree<u64, String>>();
    assert_send_sync::<RetainedIndex<Vec<u8>>>();
}

#[test]
fn retained_replace_get_remove() {
    let mut retained = RetainedIndex::new();
    assert_eq!(retained.insert("a/b", 1), None);
    assert_eq!(retained.insert("a/b", 2), Some(1));
    assert_eq!(retained.insert("a", 3), None);
    assert_eq!(retained.len(), 2);
    assert_eq!(retained.get("a/b"), Some(&2));
    assert_eq!(retained.get("a/c"), None);
    assert_eq!(retained.get("a/b/c"), None);

    let mut all: Vec<_> = retained.iter().map(|(t, m)| (t.to_owned(), *m)).collect();
    all.sort_unstable();
    assert_eq!(all, [("a".to_owned(), 3), ("a/b".to_owned(), 2)]);

    assert_eq!(retained.remove("a/b/c"), None);
    assert_eq!(retained.remove("a/b"), Some(2));
    assert_eq!(retained.get("a"), Some(&3));
    assert_eq!(retained.remove("a"), Some(3));
    assert!(retained.is_empty());
    assert_eq!(retained.node_count(), 0);
}
