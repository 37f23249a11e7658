"""MQTT 5 shared subscriptions `$share/{group}/{filter}` (spec 4.8.2)."""

import queue
import time

import pytest

import mqtt5_raw
from helpers import MARKER, WAIT, unique
from mqtt5_raw import sub_options


def drain_members(members, expected: int, timeout: float = WAIT) -> list[list]:
    """Messages each member received, read until ``expected`` arrived in total (bounded by ``timeout``)."""
    got = [[] for _ in members]
    deadline = time.monotonic() + timeout
    while sum(map(len, got)) < expected:
        assert time.monotonic() < deadline, f"only {sum(map(len, got))} of {expected} messages reached the group"
        for i, m in enumerate(members):
            try:
                got[i].append(m.messages.get(timeout=0.05))  # a bounded poll across several queues
            except queue.Empty:
                pass
    return got


@pytest.mark.parametrize("n_members", [2, 3])
def test_shared_subscription_gives_each_message_to_exactly_one_member(broker, mqtt5_client, n_members):
    # Spec 4.8.2: each message goes to exactly one member; and Fulmar balances across members.
    topic = f"{unique('sh')}/t"
    members = [mqtt5_client(broker).connect() for _ in range(n_members)]
    for m in members:
        m.subscribe(f"$share/g/{topic}", 1)
    pub = mqtt5_client(broker).connect()
    sent = [f"m{i}".encode() for i in range(30)]
    for payload in sent:
        pub.publish5(topic, payload, qos=1)
    got = drain_members(members, len(sent))
    payloads = [m.payload for per in got for m in per]
    assert sorted(payloads) == sorted(sent), "lost or duplicated messages"
    assert all(per for per in got), f"a member got nothing: {[len(per) for per in got]}"


def test_separate_share_groups_each_get_every_message(broker, mqtt5_client):
    topic = f"{unique('shg')}/t"
    g1, g2 = mqtt5_client(broker).connect(), mqtt5_client(broker).connect()
    g1.subscribe(f"$share/one/{topic}", 1)
    g2.subscribe(f"$share/two/{topic}", 1)
    pub = mqtt5_client(broker).connect()
    for payload in (b"a", b"b", MARKER):
        pub.publish5(topic, payload, qos=1)
    assert [m.payload for m in g1.collect_until(MARKER)] == [b"a", b"b"]
    assert [m.payload for m in g2.collect_until(MARKER)] == [b"a", b"b"]


@pytest.mark.fulmar_only  # mosquitto 2.0.11 sends retained messages to new shared subscriptions
def test_shared_subscription_gets_no_retained_messages_on_subscribe(broker, mqtt5_client):
    # Spec 3.8.4 / 4.8.2: retained messages are not sent when a shared subscription is established.
    topic = f"{unique('shr')}/t"
    pub = mqtt5_client(broker).connect()
    pub.publish5(topic, b"retained", qos=1, retain=True)
    member = mqtt5_client(broker).connect()
    member.subscribe(f"$share/g/{topic}", 1)
    pub.publish5(topic, MARKER, qos=1)
    assert [m.payload for m in member.collect_until(MARKER)] == []
    pub.publish5(topic, b"", qos=1, retain=True)


def test_plain_and_shared_subscription_of_one_client_each_deliver(broker, mqtt5_client):
    # The shared subscription is a subscription of its own: a client holding both gets two copies.
    topic = f"{unique('shp')}/t"
    c = mqtt5_client(broker).connect()
    c.subscribe(topic, 1)
    c.subscribe(f"$share/g/{topic}", 1)
    pub = mqtt5_client(broker).connect()
    pub.publish5(topic, b"twice", qos=1)
    pub.publish5(topic, MARKER, qos=1)
    got, markers = [], 0
    while markers < 2:
        m = c.expect_message()
        if m.payload == MARKER:
            markers += 1
        else:
            got.append(m.payload)
    assert got == [b"twice", b"twice"]


@pytest.mark.fulmar_only  # the spec leaves it to the server (4.8.2); mosquitto 2.0 drops them with the session
def test_unacknowledged_messages_of_a_departing_member_go_to_another_member(broker, raw5_client, mqtt5_client):
    topic = f"{unique('shd')}/t"
    shared = f"$share/g/{topic}"
    holder = raw5_client(broker)
    assert holder.mqtt_connect(unique("shd")).reason == 0  # Clean Start 1, Session Expiry 0
    assert holder.mqtt_subscribe(1, [(shared, sub_options(1))]).reasons == [1]
    pub = mqtt5_client(broker).connect()
    held = [b"h1", b"h2", b"h3"]
    for payload in held:
        pub.publish5(topic, payload, qos=1)
    assert [p.payload for p in holder.expect_publishes(3)] == held  # the only member: it gets all, acks none
    other = mqtt5_client(broker).connect()
    other.subscribe(shared, 1)
    holder.close()  # gone with three unacknowledged QoS 1 messages; its session ends with the connection
    got = [other.expect_message().payload for _ in held]
    assert sorted(got) == held


@pytest.mark.fulmar_only  # mosquitto 2.0.11 accepts No Local on a shared subscription
def test_shared_subscription_with_no_local_is_a_protocol_error(broker, raw5_client):
    # [MQTT-3.8.3-4] No Local 1 on a shared subscription is a Protocol Error: DISCONNECT 0x82.
    c = raw5_client(broker)
    c.mqtt_connect(unique("shnl"))
    c.send(mqtt5_raw.subscribe(1, [(f"$share/g/{unique('shnl')}/t", sub_options(1, no_local=True))]))
    d = c.expect_server_disconnect(5.0)
    assert d is not None and d.reason == mqtt5_raw.PROTOCOL_ERROR, d


def test_unsubscribed_member_no_longer_receives(broker, mqtt5_client):
    topic = f"{unique('shu')}/t"
    leaving, staying = mqtt5_client(broker).connect(), mqtt5_client(broker).connect()
    for m in (leaving, staying):
        m.subscribe(f"$share/g/{topic}", 1)
    leaving.unsubscribe(f"$share/g/{topic}")
    leaving.subscribe(f"{topic}/marker", 1)
    pub = mqtt5_client(broker).connect()
    sent = [f"u{i}".encode() for i in range(6)]
    for payload in sent:
        pub.publish5(topic, payload, qos=1)
    pub.publish5(f"{topic}/marker", MARKER, qos=1)
    assert [m.payload for m in leaving.collect_until(MARKER)] == []
    assert [staying.expect_message().payload for _ in sent] == sent

