"""MQTT 5 Message Expiry Interval [MQTT-3.3.2-5, 3.3.2-6]: counted down while a message waits, never delivered
once expired (queued or retained)."""

import time

from helpers import MARKER, unique


def offline_subscriber(mqtt5_client, broker, topic):
    """A persistent session subscribed to ``topic`` at QoS 1, then disconnected; returns its client id."""
    cid = unique("mex")
    c = mqtt5_client(broker, client_id=cid, connect_properties={"SessionExpiryInterval": 60}).connect()
    c.subscribe(topic, 1)
    c.disconnect()
    return cid


def resume(mqtt5_client, broker, cid):
    c = mqtt5_client(broker, client_id=cid, clean_start=False,
                     connect_properties={"SessionExpiryInterval": 60}).connect()
    assert c.session_present is True
    return c


def test_live_message_carries_its_expiry_interval(broker, mqtt5_client):
    topic = f"{unique('mexl')}/t"
    sub = mqtt5_client(broker).connect()
    sub.subscribe(topic, 1)
    pub = mqtt5_client(broker).connect()
    pub.publish5(topic, b"fresh", qos=1, MessageExpiryInterval=30)
    m = sub.expect_message()
    assert m.payload == b"fresh" and 28 <= m.prop("MessageExpiryInterval", -1) <= 30, m


def test_message_without_expiry_is_delivered_without_expiry_interval(broker, mqtt5_client):
    topic = f"{unique('mexn')}/t"
    sub = mqtt5_client(broker).connect()
    sub.subscribe(topic, 1)
    mqtt5_client(broker).connect().publish5(topic, b"forever", qos=1)
    m = sub.expect_message()
    assert m.payload == b"forever" and "MessageExpiryInterval" not in m.properties, m


def test_expiry_interval_is_counted_down_while_the_message_is_queued(broker, mqtt5_client):
    # [MQTT-3.3.2-6] the interval sent on is the received value minus the time the message waited.
    topic = f"{unique('mexq')}/t"
    cid = offline_subscriber(mqtt5_client, broker, topic)
    mqtt5_client(broker).connect().publish5(topic, b"waited", qos=1, MessageExpiryInterval=10)
    # The message must wait a measurable time in the queue: 1.5 s (whole-second countdown).
    time.sleep(1.5)
    m = resume(mqtt5_client, broker, cid).expect_message()
    assert m.payload == b"waited"
    remaining = m.prop("MessageExpiryInterval", -1)
    assert 1 <= remaining <= 9, f"expiry interval {remaining} after 1.5 s queued (sent with 10)"


def test_expired_queued_message_is_not_delivered(broker, mqtt5_client):
    # [MQTT-3.3.2-5] once the interval has passed, the server must not deliver the message.
    topic = f"{unique('mexx')}/t"
    cid = offline_subscriber(mqtt5_client, broker, topic)
    pub = mqtt5_client(broker).connect()
    pub.publish5(topic, b"expires", qos=1, MessageExpiryInterval=1)
    pub.publish5(topic, b"stays", qos=1)
    # Wait out the 1 s interval with margin (2 s); the subscriber then connects after the message expired.
    time.sleep(2.0)
    back = resume(mqtt5_client, broker, cid)
    pub.publish5(topic, MARKER, qos=1)
    assert [m.payload for m in back.collect_until(MARKER)] == [b"stays"]


def test_expired_retained_message_is_not_sent_to_new_subscribers(broker, mqtt5_client):
    topic = f"{unique('mexr')}/t"
    pub = mqtt5_client(broker).connect()
    pub.publish5(topic, b"short-lived", qos=1, retain=True, MessageExpiryInterval=1)
    time.sleep(2.0)  # wait out the 1 s interval with margin
    sub = mqtt5_client(broker).connect()
    sub.subscribe(topic, 1)
    pub.publish5(topic, MARKER, qos=1)
    assert [m.payload for m in sub.collect_until(MARKER)] == [], "expired retained message delivered"


def test_retained_message_expiry_is_counted_down(broker, mqtt5_client):
    topic = f"{unique('mexrc')}/t"
    pub = mqtt5_client(broker).connect()
    pub.publish5(topic, b"kept", qos=1, retain=True, MessageExpiryInterval=10)
    time.sleep(1.5)  # the retained message must age measurably
    sub = mqtt5_client(broker).connect()
    sub.subscribe(topic, 1)
    m = sub.expect_message()
    assert (m.payload, m.retain) == (b"kept", True)
    assert 1 <= m.prop("MessageExpiryInterval", -1) <= 9, m
