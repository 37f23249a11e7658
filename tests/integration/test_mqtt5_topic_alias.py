"""MQTT 5 topic aliases [MQTT-3.3.2-7 .. 3.3.2-12], both directions, checked on the wire."""

import pytest

import mqtt5_raw
from helpers import MARKER, unique
from mqtt5_raw import PUBACK, sub_options

CLOSE_WAIT = 5.0


def aliasing_publisher(raw5_client, broker):
    c = raw5_client(broker)
    ack = c.mqtt_connect(unique("ta"))
    assert ack.reason == 0
    return c, ack.properties.get("topic_alias_maximum", 0)


def test_inbound_topic_alias_is_resolved_and_can_be_remapped(broker, raw5_client, mqtt5_client):
    t1, t2 = f"{unique('ta')}/one", f"{unique('ta')}/two"
    sub = mqtt5_client(broker).connect()
    sub.subscribe(t1, 1)
    sub.subscribe(t2, 1)
    c, maximum = aliasing_publisher(raw5_client, broker)
    assert maximum >= 1, "broker accepts no topic aliases"
    sends = [(t1, b"set"), ("", b"use"), (t2, b"remap"), ("", b"use-again")]
    for pid, (topic, payload) in enumerate(sends, start=1):
        c.send(mqtt5_raw.publish(topic, payload, qos=1, packet_id=pid, properties={"topic_alias": 1}))
        assert c.expect(PUBACK).reason == 0
    got = [(m.topic, m.payload) for m in (sub.expect_message() for _ in sends)]
    assert got == [(t1, b"set"), (t1, b"use"), (t2, b"remap"), (t2, b"use-again")]


# Alias 0 is forbidden [MQTT-3.3.2-8] but the spec names no reason code for it: mosquitto sends 0x81, Fulmar 0x94.
@pytest.mark.parametrize("alias", [pytest.param("zero", marks=pytest.mark.fulmar_only), "above-maximum"])
def test_invalid_topic_alias_is_disconnected_with_0x94(broker, raw5_client, alias):
    # [MQTT-3.3.2-8] alias 0 / [MQTT-3.3.2-9] above the server's Topic Alias Maximum: DISCONNECT 0x94.
    c, maximum = aliasing_publisher(raw5_client, broker)
    value = 0 if alias == "zero" else maximum + 1
    c.send(mqtt5_raw.publish(f"{unique('ta')}/t", b"x", qos=1, packet_id=1, properties={"topic_alias": value}))
    d = c.expect_server_disconnect(CLOSE_WAIT)
    assert d is not None and d.reason == mqtt5_raw.TOPIC_ALIAS_INVALID, d


@pytest.mark.fulmar_only  # the spec makes this a Protocol Error (0x82, as mosquitto sends); Fulmar answers 0x94
def test_unknown_topic_alias_with_empty_topic_is_disconnected_with_0x94(broker, raw5_client):
    c, _ = aliasing_publisher(raw5_client, broker)
    c.send(mqtt5_raw.publish("", b"x", qos=1, packet_id=1, properties={"topic_alias": 1}))
    d = c.expect_server_disconnect(CLOSE_WAIT)
    assert d is not None and d.reason == mqtt5_raw.TOPIC_ALIAS_INVALID, d


def test_topic_aliases_do_not_survive_the_connection(broker, raw5_client):
    # [MQTT-3.3.2-7] mappings belong to one network connection, even when the session is resumed.
    cid = unique("tasess")
    c = raw5_client(broker)
    c.mqtt_connect(cid, properties={"session_expiry_interval": 60})
    c.send(mqtt5_raw.publish(f"{cid}/t", b"set", qos=1, packet_id=1, properties={"topic_alias": 1}))
    c.expect(PUBACK)
    c.mqtt_disconnect()
    again = raw5_client(broker)
    assert again.mqtt_connect(cid, clean_start=False, properties={"session_expiry_interval": 60}).session_present
    again.send(mqtt5_raw.publish("", b"stale", qos=1, packet_id=2, properties={"topic_alias": 1}))
    d = again.expect_server_disconnect(CLOSE_WAIT)
    assert d is None or d.reason in (mqtt5_raw.TOPIC_ALIAS_INVALID, mqtt5_raw.PROTOCOL_ERROR), d
    assert again.wait_closed(CLOSE_WAIT), "a stale alias was accepted on a new connection"


def alias_subscriber(raw5_client, broker, topics, maximum):
    c = raw5_client(broker)
    props = {"topic_alias_maximum": maximum} if maximum else {}
    assert c.mqtt_connect(unique("tasub"), properties=props).reason == 0
    filters = [(t, sub_options(0)) for t in topics]
    assert c.mqtt_subscribe(1, filters).reasons == [0] * len(topics)
    return c


@pytest.mark.fulmar_only  # a server may or may not use aliases towards clients; mosquitto 2.0 never does
def test_outbound_alias_is_sent_with_the_first_publish_and_used_alone_afterwards(broker, raw5_client, mqtt5_client):
    topic = f"{unique('tao')}/a-fairly-long-topic-name"
    sub = alias_subscriber(raw5_client, broker, [topic], maximum=5)
    pub = mqtt5_client(broker).connect()
    for payload in (b"1", b"2", b"3"):
        pub.publish5(topic, payload)
    first, *rest = sub.expect_publishes(3)
    alias = first.properties.get("topic_alias")
    assert first.topic == topic and alias is not None and 1 <= alias <= 5, first
    assert [(p.topic, p.properties.get("topic_alias"), p.payload) for p in rest] == [("", alias, b"2"), ("", alias, b"3")]


@pytest.mark.fulmar_only  # relies on the broker using aliases at all (see above)
def test_outbound_aliases_stay_within_client_maximum_and_always_resolve(broker, raw5_client, mqtt5_client):
    # [MQTT-3.3.2-10] the server must not send an alias above the client's Topic Alias Maximum; resolving the
    # stream as a client would must give back every topic in order.
    base = unique("tam")
    topics = [f"{base}/a", f"{base}/b", f"{base}/c"]
    sub = alias_subscriber(raw5_client, broker, topics, maximum=1)
    pub = mqtt5_client(broker).connect()
    sequence = [topics[i] for i in (0, 0, 1, 1, 0, 2, 2, 0)]
    for n, topic in enumerate(sequence):
        pub.publish5(topic, str(n).encode())
    aliases, resolved = {}, []
    for p in sub.expect_publishes(len(sequence)):
        alias = p.properties.get("topic_alias")
        assert alias is None or alias == 1, p
        if p.topic:
            if alias is not None:
                aliases[alias] = p.topic
            resolved.append(p.topic)
        else:
            assert alias in aliases, f"alias {alias} used before it was set: {p!r}"
            resolved.append(aliases[alias])
    assert resolved == sequence


def test_no_outbound_alias_for_a_client_that_accepts_none(broker, raw5_client, mqtt5_client):
    # [MQTT-3.3.2-10] without Topic Alias Maximum the client accepts no aliases.
    topic = f"{unique('ta0')}/t"
    sub = alias_subscriber(raw5_client, broker, [topic], maximum=0)
    pub = mqtt5_client(broker).connect()
    for payload in (b"1", b"2", MARKER):
        pub.publish5(topic, payload)
    got = sub.expect_publishes(3)
    assert [(p.topic, "topic_alias" in p.properties) for p in got] == [(topic, False)] * 3


@pytest.mark.fulmar_only  # outbound_topic_aliases is Fulmar's policy switch
def test_outbound_aliases_are_not_used_when_disabled_by_config(broker_with_config, raw5_client, mqtt5_client):
    b = broker_with_config(mqtt={"outbound_topic_aliases": False})
    topic = f"{unique('taoff')}/t"
    sub = alias_subscriber(raw5_client, b, [topic], maximum=5)
    pub = mqtt5_client(b).connect()
    for payload in (b"1", b"2"):
        pub.publish5(topic, payload)
    got = sub.expect_publishes(2)
    assert [(p.topic, "topic_alias" in p.properties) for p in got] == [(topic, False)] * 2

