"""MQTT 5 wills: Will Delay Interval (spec 3.1.3.2.2), cancellation when the session resumes, DISCONNECT
with reason 0x04, and will properties passed through."""

import time

import mqtt5_raw
from helpers import MARKER, unique
from mqtt5_raw import Will5

DELAY = 2  # seconds; every delayed-will test waits it out once


def watcher_on(mqtt5_client, broker, topic):
    w = mqtt5_client(broker).connect()
    w.subscribe(topic, 1)
    return w


def client_with_will(raw5_client, broker, topic, *, delay, expiry, cid=None, properties=None):
    c = raw5_client(broker)
    will = Will5(topic, b"gone", qos=1, properties={"will_delay_interval": delay, **(properties or {})})
    ack = c.mqtt_connect(cid or unique("wd"), will=will, properties={"session_expiry_interval": expiry})
    assert ack.reason == 0, ack
    return c


def test_delayed_will_is_published_after_the_delay(broker, raw5_client, mqtt5_client):
    topic = f"{unique('wd')}/status"
    w = watcher_on(mqtt5_client, broker, topic)
    c = client_with_will(raw5_client, broker, topic, delay=DELAY, expiry=10)
    c.close()
    dropped = time.monotonic()
    m = w.expect_message(timeout=DELAY + 5)  # mosquitto checks delayed wills once a second
    elapsed = time.monotonic() - dropped
    assert m.payload == b"gone"
    assert elapsed >= DELAY - 0.2, f"will published {elapsed:.2f}s after the drop, delay was {DELAY}s"


def test_delayed_will_is_cancelled_when_the_session_resumes_within_the_delay(broker, raw5_client, mqtt5_client):
    # Spec 3.1.3.2.2: no will if a new connection for the session is made before the delay has passed.
    topic, cid = f"{unique('wdc')}/status", unique("wdc")
    w = watcher_on(mqtt5_client, broker, topic)
    c = client_with_will(raw5_client, broker, topic, delay=DELAY, expiry=10, cid=cid)
    c.close()
    dropped = time.monotonic()
    back = raw5_client(broker)
    assert back.mqtt_connect(cid, clean_start=False, properties={"session_expiry_interval": 10}).session_present
    # The cancellation can only be seen by waiting past the point the will would have gone out (+1 s margin).
    time.sleep(max(0.0, dropped + DELAY + 1.0 - time.monotonic()))
    pub = mqtt5_client(broker).connect()
    pub.publish5(topic, MARKER, qos=1)
    assert [m.payload for m in w.collect_until(MARKER)] == [], "will published although the session resumed"


def test_will_delay_longer_than_session_expiry_is_published_when_the_session_ends(broker, raw5_client, mqtt5_client):
    # Spec 3.1.3.2.2: the will is published at the earlier of the delay and the end of the session.
    topic = f"{unique('wde')}/status"
    w = watcher_on(mqtt5_client, broker, topic)
    c = client_with_will(raw5_client, broker, topic, delay=60, expiry=DELAY)
    c.close()
    dropped = time.monotonic()
    m = w.expect_message(timeout=DELAY + 5)
    elapsed = time.monotonic() - dropped
    assert m.payload == b"gone"
    assert elapsed >= DELAY - 0.2, f"will published {elapsed:.2f}s after the drop, session expiry was {DELAY}s"


def test_will_properties_are_passed_through(broker, raw5_client, mqtt5_client):
    topic = f"{unique('wdp')}/status"
    w = watcher_on(mqtt5_client, broker, topic)
    props = {"payload_format_indicator": 1, "content_type": "text/plain", "response_topic": f"{topic}/reply",
             "correlation_data": b"\x00\x01corr", "user_property": [("k", "1"), ("a", "2"), ("k", "3")]}
    c = client_with_will(raw5_client, broker, topic, delay=0, expiry=0, properties=props)
    c.close()
    m = w.expect_message()
    got = {k: m.prop(k) for k in ("PayloadFormatIndicator", "ContentType", "ResponseTopic", "CorrelationData",
                                  "UserProperty")}
    assert got == {"PayloadFormatIndicator": 1, "ContentType": "text/plain", "ResponseTopic": f"{topic}/reply",
                   "CorrelationData": b"\x00\x01corr", "UserProperty": [("k", "1"), ("a", "2"), ("k", "3")]}


def test_disconnect_with_will_message_reason_publishes_the_will(broker, raw5_client, mqtt5_client):
    # Reason code 0x04 Disconnect with Will Message: the will is published although the client disconnected.
    topic = f"{unique('wd4')}/status"
    w = watcher_on(mqtt5_client, broker, topic)
    c = client_with_will(raw5_client, broker, topic, delay=0, expiry=0)
    c.mqtt_disconnect(reason=mqtt5_raw.DISCONNECT_WITH_WILL)
    assert w.expect_message().payload == b"gone"


def test_normal_disconnect_discards_a_delayed_will(broker, raw5_client, mqtt5_client):
    topic = f"{unique('wdn')}/status"
    w = watcher_on(mqtt5_client, broker, topic)
    c = client_with_will(raw5_client, broker, topic, delay=1, expiry=10)
    c.mqtt_disconnect()
    # Wait past the 1 s delay (+1 s margin): a will kept by mistake would have been published by then.
    time.sleep(2.0)
    pub = mqtt5_client(broker).connect()
    pub.publish5(topic, MARKER, qos=1)
    assert [m.payload for m in w.collect_until(MARKER)] == []
