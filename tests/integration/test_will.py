"""Will messages [MQTT-3.1.2-8 .. 3.1.2-17]: published when the connection ends without DISCONNECT."""

import time

import pytest

import mqtt_raw
from helpers import MARKER, unique


def connect_with_will(raw_client, broker, proto, topic, *, qos=1, retain=False, keepalive=60, payload=b"gone"):
    c = raw_client(broker)
    will = mqtt_raw.Will(topic, payload, qos=qos, retain=retain)
    ack = c.mqtt_connect(unique("will"), level=proto.level, keepalive=keepalive, will=will)
    assert ack.return_code == 0, ack
    return c


@pytest.mark.parametrize("will_qos", [0, 1, 2])
def test_will_is_published_when_socket_closes_without_disconnect(broker, mqtt_client, raw_client, proto, will_qos):
    topic = f"{unique('will')}/status"
    watcher = mqtt_client(broker, proto=proto).connect()
    watcher.subscribe(topic, 2)
    c = connect_with_will(raw_client, broker, proto, topic, qos=will_qos)
    c.close()  # network failure as the broker sees it: no DISCONNECT
    m = watcher.expect_message()
    assert (m.topic, m.payload, m.qos, m.retain) == (topic, b"gone", will_qos, False)


def test_will_is_not_published_after_clean_disconnect(broker, mqtt_client, raw_client, proto):
    # [MQTT-3.1.2-10] the will is removed when the server receives DISCONNECT.
    topic = f"{unique('will')}/status"
    watcher = mqtt_client(broker, proto=proto).connect()
    watcher.subscribe(topic, 1)
    c = connect_with_will(raw_client, broker, proto, topic)
    c.mqtt_disconnect()  # waits until the broker has closed the connection
    pub = mqtt_client(broker, proto=proto).connect()
    pub.publish(topic, MARKER, qos=1)
    assert [m.payload for m in watcher.collect_until(MARKER)] == []


def test_retained_will_is_kept_for_later_subscribers(broker, mqtt_client, raw_client, proto):
    topic = f"{unique('will')}/status"
    watcher = mqtt_client(broker, proto=proto).connect()
    watcher.subscribe(topic, 2)
    c = connect_with_will(raw_client, broker, proto, topic, qos=1, retain=True, payload=b"offline")
    c.close()
    live = watcher.expect_message()
    assert (live.payload, live.qos, live.retain) == (b"offline", 1, False)  # live delivery: flag 0

    late = mqtt_client(broker, proto=proto).connect()
    late.subscribe(topic, 2)
    m = late.expect_message()
    assert (m.topic, m.payload, m.qos, m.retain) == (topic, b"offline", 1, True)


def test_will_is_published_when_keepalive_expires(broker, mqtt_client, raw_client, proto):
    # [MQTT-3.1.2-24] the server must disconnect a client silent for 1.5 x keep-alive, and the will follows.
    topic = f"{unique('will')}/status"
    watcher = mqtt_client(broker, proto=proto).connect()
    watcher.subscribe(topic, 1)
    c = connect_with_will(raw_client, broker, proto, topic, keepalive=1)
    silent_since = time.monotonic()
    # The spec sets no upper bound on how late the server notices; mosquitto 2.0 takes ~6 s for keepalive=1.
    # Fulmar's promptness is checked separately below.
    m = watcher.expect_message(timeout=15)
    elapsed = time.monotonic() - silent_since
    assert m.payload == b"gone"
    # A client is within its rights until 1.5 x keep-alive; it must not be cut off before keep-alive.
    assert elapsed >= 1.0, f"will published only {elapsed:.2f}s after CONNACK with keepalive=1"
    assert c.wait_closed(timeout=5), "broker published the will but kept the silent connection open"


def test_client_that_pings_is_not_disconnected_by_keepalive(broker, mqtt_client, raw_client, proto):
    # The other half of the keep-alive promise: PINGREQ within the interval keeps the connection.
    topic = f"{unique('will')}/status"
    watcher = mqtt_client(broker, proto=proto).connect()
    watcher.subscribe(topic, 1)
    c = connect_with_will(raw_client, broker, proto, topic, keepalive=1)
    deadline = time.monotonic() + 3.5  # well past 1.5 x keep-alive
    while time.monotonic() < deadline:
        c.send(mqtt_raw.pingreq())
        c.expect(mqtt_raw.PINGRESP, timeout=5)  # the PINGRESP round trip paces the loop
        remaining = deadline - time.monotonic()
        if remaining > 0:
            # pace the pings at ~0.5 s: wait for a packet that must not come (nothing is published to us)
            with pytest.raises(TimeoutError):
                c.read_packet(timeout=min(0.5, remaining))
    pub = mqtt_client(broker, proto=proto).connect()
    pub.publish(topic, MARKER, qos=1)
    assert [m.payload for m in watcher.collect_until(MARKER)] == [], "will published although the client pinged"
    c.mqtt_disconnect()


@pytest.mark.fulmar_only
def test_keepalive_expiry_is_detected_within_one_and_a_half_intervals(broker, raw_client, proto):
    # Fulmar keeps per-session deadlines, so it closes at 1.5 x keep-alive, not on a coarse sweep.
    c = raw_client(broker)
    assert c.mqtt_connect(unique("kafast"), level=proto.level, keepalive=1).return_code == 0
    silent_since = time.monotonic()
    assert c.wait_closed(timeout=10), "silent client never disconnected"
    elapsed = time.monotonic() - silent_since
    assert 1.0 <= elapsed <= 3.0, f"disconnected {elapsed:.2f}s after going silent with keepalive=1"
