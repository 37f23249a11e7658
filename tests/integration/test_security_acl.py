"""ACLs in mosquitto's acl_file format: subscribe, publish and delivery checks, `#` subscriptions that must not
leak, retained messages, anonymous rules, `%u` / `%c` patterns, deny by default, and SIGHUP reload.

Absence of a delivery is shown with the marker technique (helpers.py): the denied message is published and
acknowledged, then a marker goes through the same subscriber; whatever arrived before the marker is all the
broker delivered.
"""

from __future__ import annotations

import os
import subprocess

import pytest

import mqtt5_raw
import mqtt_raw
from cli_helpers import fulmar_bin, run
from helpers import MARKER, PROTOCOLS, V311, WAIT, unique
from security_helpers import write_password_file

pytestmark = [pytest.mark.fulmar_only, pytest.mark.security]

SUBACK_FAILURE = 0x80
V5_NOT_AUTHORIZED = 0x87

USERS = {"alice": "a-pw", "bob": "b-pw", "carol": "c-pw", "dave": "d-pw"}

ACL = """\
# Rules before any user line: clients that connect without a username.
topic readwrite public/#

user alice
topic readwrite alice/#
topic read news/#

user bob
topic readwrite news/#
topic readwrite bob/#
topic write secret/#

user carol
topic read #
topic deny secret/#

# dave has no rules of his own: only the patterns below apply to him.
user dave

pattern readwrite users/%u/#
pattern read devices/%c/#
"""


@pytest.fixture
def acl_files(tmp_path):
    pw = write_password_file(tmp_path / "passwords", USERS)
    acl = tmp_path / "acl"
    acl.write_text(ACL)
    return pw, acl


@pytest.fixture
def acl_broker(start_fulmar, acl_files):
    pw, acl = acl_files
    return start_fulmar(["--password-file", str(pw), "--acl-file", str(acl)])


@pytest.fixture
def login(mqtt_client):
    """``login(broker, user, proto=V311, client_id=None)``: a connected paho client with that user's password."""

    def make(broker, user, proto=V311, client_id=None):
        c = mqtt_client(broker, proto=proto, client_id=client_id)
        c.paho.username_pw_set(user, USERS[user])
        return c.connect()

    return make


@pytest.fixture
def raw5_login(raw5_client):
    def make(broker, user, client_id=None):
        c = raw5_client(broker)
        ack = c.mqtt_connect(client_id or unique(user), username=user, password=USERS[user].encode())
        assert ack.reason == 0, f"{user} could not log in: {ack!r}"
        return c

    return make


# ---------------------------------------------------------------------------------------------
# SUBSCRIBE
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("proto", PROTOCOLS, ids=[p.name for p in PROTOCOLS])
def test_denied_subscription_gets_0x80_and_allowed_ones_in_the_same_packet_are_granted(acl_broker, raw_client, proto):
    c = raw_client(acl_broker)
    assert c.mqtt_connect(unique("alice"), level=proto.level, username="alice",
                          password=USERS["alice"].encode()).return_code == 0
    ack = c.mqtt_subscribe(1, [("alice/#", 1), ("bob/#", 1), ("news/+", 0)])
    assert ack.granted == [1, SUBACK_FAILURE, 0]


def test_denied_subscription_gets_0x87_in_mqtt5(acl_broker, raw5_login):
    c = raw5_login(acl_broker, "alice")
    ack = c.mqtt_subscribe(1, [("alice/#", mqtt5_raw.sub_options(1)), ("bob/#", mqtt5_raw.sub_options(1))])
    assert ack.reasons == [1, V5_NOT_AUTHORIZED]


def test_write_permission_does_not_allow_subscribing(acl_broker, login):
    bob = login(acl_broker, "bob")
    assert bob.subscribe("secret/#", 1) == [SUBACK_FAILURE]


def test_user_without_rules_is_denied_by_default(acl_broker, login):
    dave = login(acl_broker, "dave")
    assert dave.subscribe("news/#") == [SUBACK_FAILURE]
    assert dave.subscribe("public/#") == [SUBACK_FAILURE], "rules for anonymous clients applied to a user"
    assert dave.subscribe("users/dave/#") == [0], "the %u pattern does not apply to a user without rules"


# ---------------------------------------------------------------------------------------------
# PUBLISH
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("proto", PROTOCOLS, ids=[p.name for p in PROTOCOLS])
def test_denied_publish_is_acknowledged_but_not_delivered_in_mqtt3(acl_broker, login, raw_client, proto):
    bob = login(acl_broker, "bob")
    assert bob.subscribe("news/#", 1) == [1]
    alice = raw_client(acl_broker)
    assert alice.mqtt_connect(unique("alice"), level=proto.level, username="alice",
                              password=USERS["alice"].encode()).return_code == 0
    alice.send(mqtt_raw.publish("news/forged", b"from alice", qos=1, packet_id=7))
    ack = alice.expect(mqtt_raw.PUBACK)
    assert ack.packet_id == 7
    bob.publish("news/marker", MARKER, qos=1)
    assert [m.topic for m in bob.collect_until()] == [], "a publish the ACL denies was delivered"
    # The connection stays usable after the silent drop.
    alice.send(mqtt_raw.pingreq())
    alice.expect(mqtt_raw.PINGRESP)


def test_denied_publish_gets_puback_0x87_in_mqtt5(acl_broker, login, raw5_login):
    bob = login(acl_broker, "bob")
    assert bob.subscribe("news/#", 1) == [1]
    alice = raw5_login(acl_broker, "alice")
    alice.send(mqtt5_raw.publish("news/forged", b"from alice", qos=1, packet_id=9))
    ack = alice.expect(mqtt_raw.PUBACK)
    assert (ack.packet_id, ack.reason) == (9, V5_NOT_AUTHORIZED)
    bob.publish("news/marker", MARKER, qos=1)
    assert [m.topic for m in bob.collect_until()] == [], "a publish the ACL denies was delivered"


def test_allowed_publish_is_delivered(acl_broker, login):
    alice = login(acl_broker, "alice")
    assert alice.subscribe("news/#", 1) == [1]
    bob = login(acl_broker, "bob")
    bob.publish("news/today", b"headline", qos=1)
    m = alice.expect_message()
    assert (m.topic, m.payload) == ("news/today", b"headline")


# ---------------------------------------------------------------------------------------------
# Delivery: wildcards and retained messages
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("topic_filter", ["#", "+/+"])
def test_wildcard_subscription_never_delivers_topics_the_user_may_not_read(acl_broker, login, topic_filter):
    carol = login(acl_broker, "carol")
    assert carol.subscribe(topic_filter, 1) == [1], "carol may read everything but secret/#"
    bob = login(acl_broker, "bob")
    bob.publish("news/1", b"public", qos=1)
    bob.publish("secret/1", b"classified", qos=1)
    bob.publish("news/marker", MARKER, qos=1)
    got = carol.collect_until()
    assert [(m.topic, m.payload) for m in got] == [("news/1", b"public")]


def test_hash_subscription_of_a_user_with_narrow_rules_delivers_only_readable_topics(acl_broker, login):
    alice = login(acl_broker, "alice")
    granted = alice.subscribe("#", 1)
    bob = login(acl_broker, "bob")
    bob.publish("bob/private", b"not for alice", qos=1)
    bob.publish("secret/x", b"classified", qos=1)
    bob.publish("news/2", b"for alice", qos=1)
    if granted == [SUBACK_FAILURE]:
        return  # refusing `#` outright also keeps every unreadable topic away (nothing can be delivered)
    assert granted == [1]
    bob.publish("news/marker", MARKER, qos=1)
    assert [m.topic for m in alice.collect_until()] == ["news/2"]


def test_retained_messages_the_user_may_not_read_are_not_delivered_on_subscribe(acl_broker, login):
    bob = login(acl_broker, "bob")
    bob.publish("news/retained", b"readable", qos=1, retain=True)
    bob.publish("secret/retained", b"classified", qos=1, retain=True)
    carol = login(acl_broker, "carol")
    assert carol.subscribe("#", 1) == [1]
    bob.publish("news/marker", MARKER, qos=1)
    got = carol.collect_until()
    assert [(m.topic, m.payload, m.retain) for m in got] == [("news/retained", b"readable", True)]


# ---------------------------------------------------------------------------------------------
# Anonymous rules and patterns
# ---------------------------------------------------------------------------------------------

def test_rules_before_the_first_user_line_apply_to_anonymous_clients(start_fulmar, acl_files, mqtt_client):
    pw, acl = acl_files
    broker = start_fulmar(config_toml=f"""
[[listeners]]
bind = "127.0.0.1:{{port}}"

[auth]
password_file = "{pw}"
acl_file = "{acl}"
allow_anonymous = true
""")
    anon = mqtt_client(broker).connect()
    assert anon.subscribe("public/#", 1) == [1]
    assert anon.subscribe("news/#", 1) == [SUBACK_FAILURE]
    anon.publish("public/hello", b"hi", qos=1)
    m = anon.expect_message()
    assert (m.topic, m.payload) == ("public/hello", b"hi")


def test_patterns_substitute_the_username_and_the_client_id(acl_broker, login):
    alice = login(acl_broker, "alice", client_id="sensor-17")
    assert alice.subscribe("users/alice/#", 1) == [1]
    assert alice.subscribe("users/bob/#", 1) == [SUBACK_FAILURE]
    assert alice.subscribe("devices/sensor-17/#", 1) == [1]
    assert alice.subscribe("devices/sensor-18/#", 1) == [SUBACK_FAILURE]
    alice.publish("users/alice/inbox", b"note to self", qos=1)
    m = alice.expect_message()
    assert (m.topic, m.payload) == ("users/alice/inbox", b"note to self")


# ---------------------------------------------------------------------------------------------
# Bad files and reload
# ---------------------------------------------------------------------------------------------

def test_acl_file_with_an_unknown_keyword_stops_startup_naming_the_line(tmp_path):
    if os.environ.get("FULMAR_TEST_AGAINST", "fulmar").strip().lower() not in ("", "fulmar"):
        pytest.skip("runs Fulmar's own binary with a Fulmar flag; no mosquitto equivalent here")
    bad = tmp_path / "bad-acl"
    bad.write_text("topic read a/#\n\nfrobnicate b/#\n")
    try:
        proc = run([fulmar_bin(), "serve", "--no-persistence", "--listen", "127.0.0.1:0", "--acl-file", str(bad)], timeout=WAIT)
    except subprocess.TimeoutExpired:
        pytest.fail("the broker started (and kept running) with a broken ACL file")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, f"broker started with a broken ACL file: {out}"
    assert "line 3" in out or ":3" in out, f"the error does not name line 3: {out}"


def test_sighup_reloads_the_acl(acl_broker, acl_files, login):
    _, acl = acl_files
    alice = login(acl_broker, "alice")
    assert alice.subscribe("later/#", 1) == [SUBACK_FAILURE]
    acl.write_text(ACL.replace("user alice\n", "user alice\ntopic read later/#\n"))
    offset = acl_broker.sighup()
    acl_broker.wait_log(r"reloaded", after=offset)
    assert alice.subscribe("later/#", 1) == [1], "the reloaded ACL does not apply to a connected client"
    fresh = login(acl_broker, "alice")
    assert fresh.subscribe("later/#", 1) == [1]


def test_broken_acl_on_sighup_is_rejected_naming_the_line_and_the_old_acl_stays(acl_broker, acl_files, login):
    _, acl = acl_files
    acl.write_text("user alice\ntopic read later/#\ntopic sideways x/#\n")
    offset = acl_broker.sighup()
    acl_broker.wait_log(r"(?i)(line\s*3\b|:3\b)", after=offset)
    alice = login(acl_broker, "alice")
    assert alice.subscribe("alice/#", 1) == [1], "the previous ACL is no longer in force"
    assert alice.subscribe("later/#", 1) == [SUBACK_FAILURE], "part of the broken ACL was applied"
