"""Retained messages [MQTT-3.3.1-5 .. 3.3.1-11]."""

import pytest

from helpers import MARKER, unique


@pytest.mark.parametrize(
    "filter_template",
    ["{base}/a/b", "+/a/b", "{base}/+/b", "{base}/a/+", "{base}/#", "{base}/a/b/#", "#"],
    ids=["exact", "plus-first", "plus-middle", "plus-last", "hash-under-base", "hash-parent-level", "hash-all"],
)
def test_retained_message_is_delivered_with_retain_flag_on_subscribe(broker, mqtt_client, proto, filter_template):
    base = unique("ret")
    pub = mqtt_client(broker, proto=proto).connect()
    pub.publish(f"{base}/a/b", b"kept", qos=1, retain=True)

    sub = mqtt_client(broker, proto=proto).connect()
    sub.subscribe(filter_template.format(base=base), 1)
    m = sub.expect_message()
    assert (m.topic, m.payload, m.retain) == (f"{base}/a/b", b"kept", True)
    assert m.qos == 1


def test_retained_message_is_replaced_by_a_newer_one(broker, mqtt_client, proto):
    topic = f"{unique('ret')}/t"
    pub = mqtt_client(broker, proto=proto).connect()
    pub.publish(topic, b"v1", qos=1, retain=True)
    pub.publish(topic, b"v2", qos=1, retain=True)

    sub = mqtt_client(broker, proto=proto).connect()
    sub.subscribe(topic, 1)
    pub.publish(topic, MARKER, qos=1)  # live, after the subscription: arrives after any retained message
    got = sub.collect_until(MARKER)
    assert [(m.payload, m.retain) for m in got] == [(b"v2", True)]


def test_empty_retained_payload_deletes_the_retained_message(broker, mqtt_client, proto):
    # [MQTT-3.3.1-10] a zero-byte retained message removes the retained message for that topic,
    # [MQTT-3.3.1-11] and is not itself stored.
    topic = f"{unique('ret')}/t"
    pub = mqtt_client(broker, proto=proto).connect()
    pub.publish(topic, b"old", qos=1, retain=True)
    pub.publish(topic, b"", qos=1, retain=True)

    sub = mqtt_client(broker, proto=proto).connect()
    sub.subscribe(topic, 1)
    pub.publish(topic, MARKER, qos=1)
    assert [(m.payload, m.retain) for m in sub.collect_until(MARKER)] == []


def test_retained_publish_reaches_existing_subscriber_without_retain_flag(broker, mqtt_client, proto):
    # [MQTT-3.3.1-9] the flag is 0 when a message is sent because of an established subscription.
    topic = f"{unique('ret')}/t"
    sub = mqtt_client(broker, proto=proto).connect()
    sub.subscribe(topic, 1)
    pub = mqtt_client(broker, proto=proto).connect()
    pub.publish(topic, b"live", qos=1, retain=True)
    m = sub.expect_message()
    assert (m.payload, m.retain) == (b"live", False)

    # ...but it was retained: a new subscriber gets it with the flag set.
    late = mqtt_client(broker, proto=proto).connect()
    late.subscribe(topic, 1)
    m = late.expect_message()
    assert (m.payload, m.retain) == (b"live", True)


@pytest.mark.parametrize("retained_qos, sub_qos", [(2, 1), (1, 0), (0, 2)])
def test_retained_message_is_delivered_at_min_qos(broker, mqtt_client, proto, retained_qos, sub_qos):
    topic = f"{unique('ret')}/t"
    pub = mqtt_client(broker, proto=proto).connect()
    pub.publish(topic, b"q", qos=retained_qos, retain=True)
    sub = mqtt_client(broker, proto=proto).connect()
    sub.subscribe(topic, sub_qos)
    m = sub.expect_message()
    assert (m.payload, m.retain, m.qos) == (b"q", True, min(retained_qos, sub_qos))
