"""MQTT 5 subscription options (No Local, Retain As Published, Retain Handling; spec 3.8.3.1) and
Subscription Identifiers (spec 3.8.2.1.2, 3.3.2.3.8)."""

import pytest

import mqtt5_raw
from helpers import MARKER, unique
from mqtt5_raw import PUBLISH, sub_options


def test_no_local_suppresses_only_the_subscribers_own_messages(broker, mqtt5_client):
    # [MQTT-3.8.3-3] No Local 1: messages must not be forwarded to the connection that published them.
    topic = f"{unique('nl')}/t"
    me = mqtt5_client(broker).connect()
    me.subscribe(topic, 1, no_local=True)
    me.publish5(topic, b"own", qos=1)
    other = mqtt5_client(broker).connect()
    other.publish5(topic, b"other", qos=1)
    other.publish5(topic, MARKER, qos=1)
    assert [m.payload for m in me.collect_until(MARKER)] == [b"other"]


def test_without_no_local_own_messages_are_echoed(broker, mqtt5_client):
    topic = f"{unique('nl0')}/t"
    me = mqtt5_client(broker).connect()
    me.subscribe(topic, 1)
    me.publish5(topic, b"own", qos=1)
    me.publish5(topic, MARKER, qos=1)
    assert [m.payload for m in me.collect_until(MARKER)] == [b"own"]


def test_retain_as_published_keeps_the_retain_flag_on_live_delivery(broker, mqtt5_client):
    # [MQTT-3.3.1-12] RAP 0: RETAIN 0 on forwarded messages; [MQTT-3.3.1-13] RAP 1: as published.
    topic = f"{unique('rap')}/t"
    keep = mqtt5_client(broker).connect()
    keep.subscribe(topic, 1, retain_as_published=True)
    clear = mqtt5_client(broker).connect()
    clear.subscribe(topic, 1)
    pub = mqtt5_client(broker).connect()
    pub.publish5(topic, b"r", qos=1, retain=True)
    pub.publish5(topic, b"n", qos=1)
    assert [(m.payload, m.retain) for m in (keep.expect_message(), keep.expect_message())] == [(b"r", True), (b"n", False)]
    assert [(m.payload, m.retain) for m in (clear.expect_message(), clear.expect_message())] == [(b"r", False), (b"n", False)]
    pub.publish5(topic, b"", qos=1, retain=True)  # clear the retained message


def retained_topic(broker, mqtt5_client, prefix):
    topic = f"{unique(prefix)}/t"
    pub = mqtt5_client(broker).connect()
    pub.publish5(topic, b"retained", qos=1, retain=True)
    return topic, pub


def retained_on_subscribe(client, pub, topic, retain_handling):
    """Subscribe with ``retain_handling``; return the payloads that arrived before a live marker."""
    client.subscribe(topic, 1, retain_handling=retain_handling)
    pub.publish5(topic, MARKER, qos=1)
    return [m.payload for m in client.collect_until(MARKER)]


def test_retain_handling_0_sends_retained_messages_on_every_subscribe(broker, mqtt5_client):
    # [MQTT-3.3.1-9]
    topic, pub = retained_topic(broker, mqtt5_client, "rh0")
    sub = mqtt5_client(broker).connect()
    assert retained_on_subscribe(sub, pub, topic, 0) == [b"retained"]
    assert retained_on_subscribe(sub, pub, topic, 0) == [b"retained"], "not resent on re-subscribe"


def test_retain_handling_1_sends_retained_messages_only_for_a_new_subscription(broker, mqtt5_client):
    # [MQTT-3.3.1-10]
    topic, pub = retained_topic(broker, mqtt5_client, "rh1")
    sub = mqtt5_client(broker).connect()
    assert retained_on_subscribe(sub, pub, topic, 1) == [b"retained"]
    assert retained_on_subscribe(sub, pub, topic, 1) == [], "resent for an existing subscription"


def test_retain_handling_2_never_sends_retained_messages_on_subscribe(broker, mqtt5_client):
    # [MQTT-3.3.1-11]
    topic, pub = retained_topic(broker, mqtt5_client, "rh2")
    sub = mqtt5_client(broker).connect()
    assert retained_on_subscribe(sub, pub, topic, 2) == []


def test_retained_message_on_subscribe_has_retain_flag_regardless_of_rap(broker, mqtt5_client):
    # [MQTT-3.3.1-9..] retained messages sent because of a new subscription carry RETAIN 1.
    topic, pub = retained_topic(broker, mqtt5_client, "rhf")
    sub = mqtt5_client(broker).connect()
    sub.subscribe(topic, 1)
    m = sub.expect_message()
    assert (m.payload, m.retain) == (b"retained", True)


def test_subscription_identifier_is_sent_with_matching_messages(broker, mqtt5_client):
    # [MQTT-3.3.4-3] the identifier of the matching subscription is included; none without one.
    topic = f"{unique('sid')}/t"
    with_id = mqtt5_client(broker).connect()
    with_id.subscribe(topic, 1, subscription_id=7)
    without = mqtt5_client(broker).connect()
    without.subscribe(topic, 1)
    mqtt5_client(broker).connect().publish5(topic, b"x", qos=1)
    assert with_id.expect_message().prop("SubscriptionIdentifier") == [7]
    assert without.expect_message().prop("SubscriptionIdentifier") is None


@pytest.mark.fulmar_only  # the spec allows one copy with all ids or one copy per subscription; Fulmar sends one
def test_overlapping_subscriptions_get_one_publish_carrying_every_identifier(broker, raw5_client, mqtt5_client):
    # [MQTT-3.3.4-4] a single copy must include the identifiers of all matching subscriptions.
    base = unique("sids")
    c = raw5_client(broker)
    c.mqtt_connect(unique("sids"))
    c.mqtt_subscribe(1, [(f"{base}/+", sub_options(1))], properties={"subscription_identifier": 11})
    c.mqtt_subscribe(2, [(f"{base}/#", sub_options(1))], properties={"subscription_identifier": 300})
    pub = mqtt5_client(broker).connect()
    pub.publish5(f"{base}/t", b"once", qos=1)
    pub.publish5(f"{base}/t", MARKER, qos=1)
    got = []
    while True:
        p = c.expect(PUBLISH)
        if p.qos:
            c.send(mqtt5_raw.puback(p.packet_id))
        if p.payload == MARKER:
            break
        got.append(p)
    assert [(p.payload, sorted(p.properties.get("subscription_identifier", []))) for p in got] == [(b"once", [11, 300])]


def test_resubscribing_replaces_the_subscription_identifier(broker, mqtt5_client):
    # Spec 3.8.4: a new subscription to an existing filter replaces it, its identifier included.
    topic = f"{unique('sidr')}/t"
    sub = mqtt5_client(broker).connect()
    sub.subscribe(topic, 1, subscription_id=1)
    sub.subscribe(topic, 1, subscription_id=2)
    mqtt5_client(broker).connect().publish5(topic, b"x", qos=1)
    assert sub.expect_message().prop("SubscriptionIdentifier") == [2]
