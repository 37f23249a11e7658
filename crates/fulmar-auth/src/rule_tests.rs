//! Rule filters: matching agrees with the router's reference matcher, and covering agrees with
//! brute force over a small universe of topics.

use std::sync::LazyLock;

use proptest::prelude::*;

use super::{filter_covers, RuleFilter, Subst};

const NOBODY: Subst<'static> = Subst {
    user: None,
    client: "",
};

fn matches(filter: &str, topic: &str) -> bool {
    RuleFilter::compile(filter, false).is_ok_and(|f| f.matches(NOBODY, topic))
}

#[test]
fn covers_table() {
    for (rule, sub, expected) in [
        ("#", "a/b", true),
        ("#", "#", true),
        ("#", "+/+", true),
        ("+/#", "#", true), // both: every non-$ topic
        ("+", "#", false),
        ("a/#", "a", true), // `#` matches the parent level
        ("a/#", "a/#", true),
        ("a/#", "a/+/c", true),
        ("a/+", "a/#", false), // a/# also matches "a" and "a/b/c"
        ("a/+", "a/+", true),
        ("a/+", "a/b", true),
        ("a/b", "a/+", false),
        ("a/+/c", "a/+/+", false),
        ("+/+", "+/b", true),
        ("+/b", "+/+", false),
        ("a", "a/#", false),
        ("#", "$SYS/#", false),   // [MQTT-4.7.2-1]
        ("+/x", "$SYS/x", false), // [MQTT-4.7.2-1]
        ("$SYS/#", "$SYS/+/x", true),
        ("$SYS/#", "#", false),
        ("a//b", "a/+/b", false),
        ("a/+/b", "a//b", true),
    ] {
        assert_eq!(
            filter_covers(rule, sub),
            expected,
            "rule {rule:?} covers {sub:?}"
        );
    }
}

#[test]
fn placeholders_substitute_within_a_level() {
    let filter = RuleFilter::compile("sensors/%u-%c/#", true).expect("valid");
    assert!(filter.uses_user && filter.uses_client);
    let alice = Subst {
        user: Some("alice"),
        client: "c1",
    };
    assert!(filter.matches(alice, "sensors/alice-c1/t"));
    assert!(filter.matches(alice, "sensors/alice-c1"));
    assert!(!filter.matches(alice, "sensors/alice-c2/t"));
    assert!(!filter.matches(
        Subst {
            user: None,
            client: "c1"
        },
        "sensors/-c1/t"
    ));
    assert!(filter.covers(alice, "sensors/alice-c1/+"));
    assert!(!filter.covers(alice, "sensors/+/t"));
    // Without placeholders enabled (`topic` lines), `%u` is literal text.
    assert!(matches("sensors/%u", "sensors/%u"));
    // A lone `%` or another letter is text.
    let odd = RuleFilter::compile("a%/%x/%u", true).expect("valid");
    assert!(odd.matches(alice, "a%/%x/alice"));
}

#[test]
fn invalid_filters_are_refused() {
    for bad in ["", "a/#/b", "a+/b", "a/b#", "#a", "a\0b"] {
        assert!(RuleFilter::compile(bad, false).is_err(), "{bad:?}");
    }
}

/// Levels filters are built from: `c` is never used, so that it stands for "any other text".
fn filter_strategy() -> impl Strategy<Value = String> {
    let level = prop_oneof![Just("a"), Just("b"), Just(""), Just("+")];
    let first = prop_oneof![Just("a"), Just("b"), Just("+"), Just("$s"), Just("")];
    (first, prop::collection::vec(level, 0..3), any::<bool>()).prop_map(|(first, rest, hash)| {
        let mut levels = vec![first];
        levels.extend(rest);
        if hash {
            levels.push("#");
        }
        let filter = levels.join("/");
        // A lone empty level is not a valid filter; a lone `#` is (first level then dropped).
        if filter.is_empty() {
            "#".to_owned()
        } else {
            filter
        }
    })
}

/// Every topic of 1..=5 levels over {a, b, c, "", $s}, except the invalid empty topic.
static UNIVERSE: LazyLock<Vec<String>> = LazyLock::new(universe);

fn universe() -> Vec<String> {
    const LEVELS: [&str; 5] = ["a", "b", "c", "", "$s"];
    let mut topics: Vec<String> = LEVELS.iter().map(|l| (*l).to_owned()).collect();
    let mut frontier = topics.clone();
    for _ in 1..5 {
        frontier = frontier
            .iter()
            .flat_map(|t| LEVELS.iter().map(move |l| format!("{t}/{l}")))
            .collect();
        topics.extend(frontier.iter().cloned());
    }
    topics.retain(|t| !t.is_empty());
    topics
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn matching_agrees_with_the_router(filter in filter_strategy(), topic_index in 0usize..3900) {
        let topic = &UNIVERSE[topic_index % UNIVERSE.len()];
        prop_assert_eq!(matches(&filter, topic), fulmar_router::filter_matches(&filter, topic));
    }

    #[test]
    fn covering_agrees_with_brute_force(rule in filter_strategy(), sub in filter_strategy()) {
        let brute = UNIVERSE
            .iter()
            .filter(|t| fulmar_router::filter_matches(&sub, t))
            .all(|t| fulmar_router::filter_matches(&rule, t));
        prop_assert_eq!(filter_covers(&rule, &sub), brute, "rule {:?} sub {:?}", rule, sub);
    }
}

/// Regression (found by `covering_agrees_with_brute_force`): `/#` can only match topics of two
/// or more levels, because its parent-level match would be the empty topic.
#[test]
fn slash_hash_is_covered_by_two_wildcard_levels() {
    assert!(crate::filter_covers("+/+/#", "/#"));
    assert!(!crate::filter_covers("+/+/+", "/#"));
}
