//! ACL parsing and checks: mosquitto's documented examples, placeholders, deny precedence,
//! subscriptions versus per-topic reads.

use super::{Access, Acl, ClientIdentity};

fn acl(text: &str) -> Acl {
    match Acl::parse(text, "test.acl") {
        Ok(acl) => acl,
        Err(e) => panic!("{e}"),
    }
}

fn who<'a>(username: Option<&'a str>, client_id: &'a str) -> ClientIdentity<'a> {
    ClientIdentity {
        username,
        client_id,
    }
}

/// mosquitto's `aclfile.example`, as shipped with the broker.
const MOSQUITTO_EXAMPLE: &str = "\
# This affects access control for clients with no username.
topic read $SYS/#

# This only affects clients with username \"roger\".
user roger
topic foo/bar

# This affects all clients.
pattern write $SYS/broker/connection/%c/state
";

#[test]
fn mosquitto_example_file() {
    let acl = acl(MOSQUITTO_EXAMPLE);
    let anonymous = who(None, "c1");
    let roger = who(Some("roger"), "r1");
    let other = who(Some("sam"), "s1");
    assert!(acl.check(&anonymous, Access::Read, "$SYS/broker/uptime"));
    assert!(acl.check(&anonymous, Access::Subscribe, "$SYS/#"));
    assert!(!acl.check(&anonymous, Access::Write, "$SYS/broker/uptime"));
    assert!(!acl.check(&anonymous, Access::Read, "foo/bar"));
    // Anonymous rules are not inherited by named users.
    assert!(!acl.check(&roger, Access::Read, "$SYS/broker/uptime"));
    assert!(acl.check(&roger, Access::Read, "foo/bar"));
    assert!(acl.check(&roger, Access::Write, "foo/bar"));
    assert!(acl.check(&roger, Access::Subscribe, "foo/bar"));
    assert!(!acl.check(&roger, Access::Write, "foo/baz"));
    assert!(!acl.check(&other, Access::Read, "foo/bar"));
    // The pattern, for everyone.
    for client in [anonymous, roger, other] {
        let own = format!("$SYS/broker/connection/{}/state", client.client_id);
        assert!(acl.check(&client, Access::Write, &own));
        // Anonymous clients may read all of `$SYS/#`; the others may not read it back.
        assert_eq!(
            acl.check(&client, Access::Read, &own),
            client.username.is_none()
        );
        assert!(!acl.check(&client, Access::Write, "$SYS/broker/connection/zz/state"));
    }
}

#[test]
fn mosquitto_manual_pattern_examples() {
    // mosquitto.conf(5): "pattern write sensor/%u/data" lets user alice write sensor/alice/data.
    let acl = acl("pattern write sensor/%u/data\npattern read sensor/%c/#\n");
    let alice = who(Some("alice"), "dev7");
    assert!(acl.check(&alice, Access::Write, "sensor/alice/data"));
    assert!(!acl.check(&alice, Access::Write, "sensor/bob/data"));
    assert!(acl.check(&alice, Access::Read, "sensor/dev7/temp"));
    assert!(acl.check(&alice, Access::Subscribe, "sensor/dev7/#"));
    assert!(!acl.check(&alice, Access::Subscribe, "sensor/+/#"));
    // %u never applies to an anonymous client; %c does.
    let anonymous = who(None, "dev8");
    assert!(!acl.check(&anonymous, Access::Write, "sensor//data"));
    assert!(acl.check(&anonymous, Access::Read, "sensor/dev8/x"));
}

#[test]
fn identities_with_wildcards_or_slashes_are_refused_when_a_pattern_uses_them() {
    let acl = acl("pattern readwrite home/%c/#\n");
    assert!(!acl.check(&who(None, "#"), Access::Read, "home/x/y"));
    assert!(!acl.check(&who(None, "a/b"), Access::Read, "home/a/b/c"));
    assert!(!acl.check(&who(None, "+"), Access::Subscribe, "home/+/#"));
    assert!(
        acl.check(&who(Some("a/b"), "ok"), Access::Read, "home/ok/z"),
        "%u unused: username irrelevant"
    );
}

#[test]
fn deny_wins_over_allow_in_any_order() {
    let acl = acl("user u\ntopic deny secret/#\ntopic readwrite #\ntopic readwrite open/#\ntopic deny open/closed\n");
    let u = who(Some("u"), "c");
    assert!(acl.check(&u, Access::Read, "news"));
    assert!(!acl.check(&u, Access::Read, "secret/x"));
    assert!(!acl.check(&u, Access::Write, "secret"));
    assert!(acl.check(&u, Access::Write, "open/door"));
    assert!(!acl.check(&u, Access::Write, "open/closed"));
    // A pattern deny applies to everyone, also over the user's own allows.
    let acl = super::tests::acl("user u\ntopic readwrite #\npattern deny private/%u/#\n");
    assert!(!acl.check(&u, Access::Read, "private/u/x"));
    assert!(acl.check(&u, Access::Read, "private/v/x"));
}

#[test]
fn hash_subscription_never_delivers_unreadable_topics() {
    let acl = acl("user u\ntopic read #\ntopic deny secret/#\n");
    let u = who(Some("u"), "c");
    // The subscription is allowed: it is readable, and the denied part is filtered per message.
    assert!(acl.check(&u, Access::Subscribe, "#"));
    assert!(acl.check(&u, Access::Read, "public/x"));
    assert!(!acl.check(&u, Access::Read, "secret/plans"));
    // A subscription entirely inside the denied part is refused outright.
    assert!(!acl.check(&u, Access::Subscribe, "secret/+"));
    assert!(!acl.check(&u, Access::Subscribe, "secret/#"));
    // `#` does not reach `$SYS`: readable topics only below a rule that names it.
    assert!(!acl.check(&u, Access::Read, "$SYS/uptime"));
}

#[test]
fn subscribe_needs_a_read_rule_covering_the_whole_filter() {
    let acl = acl("user u\ntopic read a/#\ntopic write b/#\ntopic read c/+\n");
    let u = who(Some("u"), "c");
    assert!(acl.check(&u, Access::Subscribe, "a/#"));
    assert!(acl.check(&u, Access::Subscribe, "a/+/x"));
    assert!(
        !acl.check(&u, Access::Subscribe, "#"),
        "partly readable: refused"
    );
    assert!(!acl.check(&u, Access::Subscribe, "b/#"), "write-only");
    assert!(acl.check(&u, Access::Subscribe, "c/+"));
    assert!(
        !acl.check(&u, Access::Subscribe, "c/#"),
        "c/# also matches c and c/x/y"
    );
    // Shared subscriptions are checked on the filter inside them.
    assert!(acl.check(&u, Access::Subscribe, "$share/g/a/x"));
    assert!(!acl.check(&u, Access::Subscribe, "$share/g/b/x"));
}

#[test]
fn deny_by_default() {
    let empty = acl("# nothing\n\n");
    assert!(!empty.check(&who(None, "c"), Access::Read, "a"));
    assert!(!empty.check(&who(Some("u"), "c"), Access::Write, "a"));
    let acl = acl("user u\ntopic a\n");
    assert!(
        !acl.check(&who(Some("v"), "c"), Access::Read, "a"),
        "no rules for v"
    );
    assert!(
        !acl.check(&who(None, "c"), Access::Read, "a"),
        "no anonymous rules"
    );
}

#[test]
fn syntax_details() {
    // Default access, extra spaces, filter with spaces, CRLF, user names with spaces.
    let acl =
        acl("topic   plain\r\ntopic read  with space/x \r\nuser  John Smith\ntopic write j/#\n");
    let anonymous = who(None, "c");
    assert!(
        acl.check(&anonymous, Access::Read, "plain")
            && acl.check(&anonymous, Access::Write, "plain")
    );
    assert!(acl.check(&anonymous, Access::Read, "with space/x"));
    assert!(acl.check(&who(Some("John Smith"), "c"), Access::Write, "j/1"));
}

#[test]
fn errors_name_the_line() {
    for (text, line, words) in [
        ("topic a\nuser\n", 2, "username"),
        ("# c\n\ntopic sometimes a/b\n", 3, "unknown access"),
        ("topic read\n", 1, "missing topic filter"),
        ("topic read a/#/b\n", 1, "last level"),
        ("user u\ntopik deny secret\n", 2, "unknown keyword"),
        ("pattern\n", 1, "missing topic filter"),
    ] {
        match Acl::parse(text, "x.acl") {
            Ok(_) => panic!("{text:?} parsed"),
            Err(e) => {
                assert_eq!(e.line(), Some(line), "{e}");
                let shown = e.to_string();
                assert!(
                    shown.starts_with(&format!("x.acl:{line}: ")) && shown.contains(words),
                    "{shown}"
                );
            }
        }
    }
}

#[test]
fn load_reads_a_file_and_names_a_missing_one() {
    let dir = std::env::temp_dir().join(format!("fulmar-acl-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("acl");
    std::fs::write(&path, MOSQUITTO_EXAMPLE).expect("write");
    assert!(Acl::load(&path).is_ok());
    let missing = dir.join("missing");
    let error = Acl::load(&missing).expect_err("missing file");
    assert!(error.to_string().contains("missing"), "{error}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn docs_security_example() {
    // The example in docs/security.md.
    let acl = acl("\
# Before any `user` line: rules for clients that connect without a username.
topic read $SYS/#

# After `user NAME`: rules for that user, up to the next `user` line.
user roger
# No access word: readwrite.
topic foo/bar
topic read sensors/#
topic deny sensors/secret/#

user alice
topic readwrite home/alice/#

# `pattern` rules apply to every client, wherever they appear.
# %u is the username, %c the client id.
pattern write $SYS/broker/connection/%c/state
pattern readwrite devices/%u/#
pattern read  clients/%c/inbox/+
");
    let roger = who(Some("roger"), "r1");
    assert!(acl.check(&roger, Access::Subscribe, "sensors/#"));
    assert!(acl.check(&roger, Access::Read, "sensors/kitchen"));
    assert!(!acl.check(&roger, Access::Read, "sensors/secret/key"));
    assert!(!acl.check(&roger, Access::Write, "sensors/kitchen"));
    assert!(acl.check(&roger, Access::Write, "devices/roger/led"));
    assert!(acl.check(&roger, Access::Subscribe, "clients/r1/inbox/+"));
    assert!(!acl.check(&roger, Access::Read, "home/alice/door"));
    assert!(acl.check(&who(Some("alice"), "a1"), Access::Write, "home/alice/door"));
}
