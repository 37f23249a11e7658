"""Limits from `[limits]`, each tripped once: connections in total and per IP, connection rate per IP,
subscriptions per client, topic length and levels, retained messages, publish rate, and the CONNECT timeout on
a TLS listener."""

from __future__ import annotations

import socket
import ssl
import time

import pytest

import mqtt5_raw
import mqtt_raw
from helpers import MARKER, WAIT, unique
from security_helpers import TlsRawClient, client_context, closed_without_connack

pytestmark = [pytest.mark.fulmar_only, pytest.mark.security]

SUBACK_FAILURE = 0x80
V5_TOPIC_FILTER_INVALID = 0x8F
V5_TOPIC_NAME_INVALID = 0x90
V5_QUOTA_EXCEEDED = 0x97


def connected(broker, client_id: str | None = None, *, retry_until: float | None = None) -> mqtt_raw.RawClient:
    """A raw 3.1.1 client with CONNACK 0. With ``retry_until`` (a monotonic deadline), a connection closed
    without CONNACK is retried: the broker may not yet have seen the readiness probe's socket close, which
    still holds a slot of a connection limit for a moment."""
    while True:
        c = mqtt_raw.RawClient(broker.host, broker.port, timeout=WAIT)
        try:
            ack = c.mqtt_connect(client_id or unique("lim"))
            assert ack.return_code == 0, f"CONNACK {ack!r}"
            return c
        except (mqtt_raw.ConnectionClosed, ConnectionError):
            c.close()
            if retry_until is None or time.monotonic() > retry_until:
                raise
            time.sleep(0.05)  # retry interval of a bounded poll


def still_works(c: mqtt_raw.RawClient) -> None:
    c.send(mqtt_raw.pingreq())
    c.expect(mqtt_raw.PINGRESP)


def expect_closed_without_ack(c: mqtt_raw.RawClient) -> None:
    """The broker closes the connection; no PUBACK (or anything else but a DISCONNECT) comes first."""
    while True:
        try:
            p = c.read_packet(WAIT)
        except (mqtt_raw.ConnectionClosed, ConnectionError):
            return
        except TimeoutError:
            pytest.fail(f"connection still open {WAIT}s after the offending packet")
        assert p.ptype == mqtt_raw.DISCONNECT, f"expected the connection to be closed, got {p!r}"


# ---------------------------------------------------------------------------------------------
# Connections
# ---------------------------------------------------------------------------------------------

def test_third_connection_from_one_ip_is_closed_without_connack_when_the_limit_is_2(broker_with_limits):
    broker = broker_with_limits({"max_connections_per_ip": 2})
    deadline = time.monotonic() + WAIT
    first = connected(broker, retry_until=deadline)
    second = connected(broker, retry_until=deadline)
    refused, what = closed_without_connack(broker.host, broker.port)
    assert refused, f"third connection from 127.0.0.1: {what}"
    still_works(first)
    still_works(second)
    # The limit counts live connections: closing one frees its slot.
    first.mqtt_disconnect()
    third = connected(broker, retry_until=time.monotonic() + WAIT)
    still_works(third)
    for c in (second, third):
        c.close()


def test_connection_over_max_connections_is_closed_without_connack(broker_with_limits):
    broker = broker_with_limits({"max_connections": 3})
    deadline = time.monotonic() + WAIT
    clients = [connected(broker, retry_until=deadline) for _ in range(3)]
    refused, what = closed_without_connack(broker.host, broker.port)
    assert refused, f"fourth connection with max_connections = 3: {what}"
    for c in clients:
        still_works(c)
        c.close()


def test_fourth_connection_within_a_second_is_closed_when_the_rate_is_3_per_second(broker_with_limits):
    broker = broker_with_limits({"connection_rate_per_ip": 3})
    # The readiness probe was a connection from this IP. The limit is defined over one second, so wait out
    # that second once (this waits for the rate window to pass, it does not stand in for an event).
    time.sleep(1.2)
    start = time.monotonic()
    clients = [connected(broker) for _ in range(3)]
    refused, what = closed_without_connack(broker.host, broker.port)
    elapsed = time.monotonic() - start
    if elapsed > 0.9 and not refused:
        pytest.skip(f"four connections took {elapsed:.2f}s here; too slow to trip a per-second rate")
    assert refused, f"fourth connection within {elapsed:.2f}s: {what}"
    for c in clients:
        still_works(c)
        c.close()
    # A rate, not a ban: once the second has passed, the same IP connects again.
    again = connected(broker, retry_until=time.monotonic() + 5.0)
    still_works(again)
    again.close()


# ---------------------------------------------------------------------------------------------
# Subscriptions
# ---------------------------------------------------------------------------------------------

def test_third_subscription_gets_0x80_when_the_limit_is_2(broker_with_limits, raw_client):
    broker = broker_with_limits({"max_subscriptions_per_client": 2})
    c = raw_client(broker)
    assert c.mqtt_connect(unique("subs")).return_code == 0
    assert c.mqtt_subscribe(1, [("a/1", 1)]).granted == [1]
    assert c.mqtt_subscribe(2, [("a/2", 1)]).granted == [1]
    assert c.mqtt_subscribe(3, [("a/3", 1)]).granted == [SUBACK_FAILURE]
    # Subscribing again to a filter it has replaces that subscription; it is not a new one.
    assert c.mqtt_subscribe(4, [("a/1", 0)]).granted == [0]
    # Unsubscribing frees a slot.
    c.send(mqtt_raw.unsubscribe(5, ["a/2"]))
    c.expect(mqtt_raw.UNSUBACK)
    assert c.mqtt_subscribe(6, [("a/3", 1)]).granted == [1]


def test_subscription_over_the_limit_gets_0x97_in_mqtt5(broker_with_limits, raw5_client):
    broker = broker_with_limits({"max_subscriptions_per_client": 2})
    c = raw5_client(broker)
    assert c.mqtt_connect(unique("subs5")).reason == 0
    opts = mqtt5_raw.sub_options(1)
    ack = c.mqtt_subscribe(1, [("b/1", opts), ("b/2", opts), ("b/3", opts)])
    assert ack.reasons == [1, 1, V5_QUOTA_EXCEEDED]


# ---------------------------------------------------------------------------------------------
# Topics
# ---------------------------------------------------------------------------------------------

def test_publish_to_a_topic_longer_than_max_topic_len_closes_the_connection(broker_with_limits, raw_client):
    broker = broker_with_limits({"max_topic_len": 32})
    sub = raw_client(broker)
    assert sub.mqtt_connect(unique("tsub")).return_code == 0
    assert sub.mqtt_subscribe(1, [("#", 0)]).granted == [0]
    pub = raw_client(broker)
    assert pub.mqtt_connect(unique("tpub")).return_code == 0
    at_limit = "t/" + "x" * 30  # 32 bytes
    pub.send(mqtt_raw.publish(at_limit, b"fits", qos=1, packet_id=1))
    assert pub.expect(mqtt_raw.PUBACK).packet_id == 1
    p = sub.expect(mqtt_raw.PUBLISH)
    assert (p.topic, p.payload) == (at_limit, b"fits")
    pub.send(mqtt_raw.publish(at_limit + "y", b"too long", qos=1, packet_id=2))
    expect_closed_without_ack(pub)


def test_publish_to_a_topic_longer_than_max_topic_len_gets_disconnect_0x90_in_mqtt5(broker_with_limits, raw5_client):
    broker = broker_with_limits({"max_topic_len": 32})
    c = raw5_client(broker)
    assert c.mqtt_connect(unique("t5")).reason == 0
    c.send(mqtt5_raw.publish("t/" + "x" * 31, b"too long", qos=1, packet_id=1))
    d = c.expect_server_disconnect(WAIT)
    assert d is not None and d.reason == V5_TOPIC_NAME_INVALID, f"expected DISCONNECT 0x90, got {d!r}"
    assert c.wait_closed(5.0)


def test_filter_longer_than_max_topic_len_is_refused_in_suback(broker_with_limits, raw_client, raw5_client):
    broker = broker_with_limits({"max_topic_len": 32})
    long_filter = "f/" + "x" * 29 + "/#"  # 33 bytes
    c = raw_client(broker)
    assert c.mqtt_connect(unique("f3")).return_code == 0
    assert c.mqtt_subscribe(1, [("f/" + "x" * 30, 0), (long_filter, 0)]).granted == [0, SUBACK_FAILURE]
    still_works(c)
    c5 = raw5_client(broker)
    assert c5.mqtt_connect(unique("f5")).reason == 0
    assert c5.mqtt_subscribe(1, [(long_filter, 0)]).reasons == [V5_TOPIC_FILTER_INVALID]


def test_topic_and_filter_deeper_than_max_topic_levels_are_refused(broker_with_limits, raw_client, raw5_client):
    broker = broker_with_limits({"max_topic_levels": 3})
    c = raw_client(broker)
    assert c.mqtt_connect(unique("lv")).return_code == 0
    granted = c.mqtt_subscribe(1, [("a/b/c", 0), ("x/+/#", 0), ("a/b/c/d", 0), ("a/b/c/#", 0)]).granted
    assert granted == [0, 0, SUBACK_FAILURE, SUBACK_FAILURE]
    c.send(mqtt_raw.publish("a/b/c", b"three levels", qos=1, packet_id=1))
    got = sorted(c.read_packet().ptype for _ in range(2))  # its PUBACK and the message itself, in either order
    assert got == [mqtt_raw.PUBLISH, mqtt_raw.PUBACK]
    c5 = raw5_client(broker)
    assert c5.mqtt_connect(unique("lv5")).reason == 0
    assert c5.mqtt_subscribe(1, [("a/b/c/d", 0)]).reasons == [V5_TOPIC_FILTER_INVALID]
    c5.send(mqtt5_raw.publish("a/b/c/d", b"four levels", qos=1, packet_id=2))
    d = c5.expect_server_disconnect(WAIT)
    assert d is not None and d.reason == V5_TOPIC_NAME_INVALID, f"expected DISCONNECT 0x90, got {d!r}"
    c.send(mqtt_raw.publish("a/b/c/d", b"four levels", qos=1, packet_id=2))
    expect_closed_without_ack(c)


# ---------------------------------------------------------------------------------------------
# Retained messages
# ---------------------------------------------------------------------------------------------

def retained_seen_by_new_subscriber(broker, mqtt_client, publisher) -> list[tuple[str, bytes, bool]]:
    s = mqtt_client(broker).connect()
    assert s.subscribe("r/#", 1) == [1]
    publisher.publish("r/marker", MARKER, qos=1)
    return sorted((m.topic, m.payload, m.retain) for m in s.collect_until())


def test_retained_message_over_the_limit_is_delivered_live_but_not_retained(broker_with_limits, mqtt_client):
    broker = broker_with_limits({"max_retained_messages": 2})
    live = mqtt_client(broker).connect()
    assert live.subscribe("r/#", 1) == [1]
    pub = mqtt_client(broker).connect()
    for i in (1, 2, 3):
        pub.publish(f"r/{i}", f"v{i}".encode(), qos=1, retain=True)
    assert [(m.topic, m.payload) for m in (live.expect_message() for _ in range(3))] == \
        [("r/1", b"v1"), ("r/2", b"v2"), ("r/3", b"v3")]
    assert retained_seen_by_new_subscriber(broker, mqtt_client, pub) == [("r/1", b"v1", True), ("r/2", b"v2", True)]


def test_replacing_or_clearing_a_retained_message_at_the_limit_still_works(broker_with_limits, mqtt_client):
    broker = broker_with_limits({"max_retained_messages": 2})
    pub = mqtt_client(broker).connect()
    pub.publish("r/1", b"v1", qos=1, retain=True)
    pub.publish("r/2", b"v2", qos=1, retain=True)
    pub.publish("r/1", b"v1-new", qos=1, retain=True)  # same topic: replaces, not a third message
    assert retained_seen_by_new_subscriber(broker, mqtt_client, pub) == [("r/1", b"v1-new", True), ("r/2", b"v2", True)]
    pub.publish("r/2", b"", qos=1, retain=True)  # empty payload clears r/2 and frees its slot
    pub.publish("r/3", b"v3", qos=1, retain=True)
    assert retained_seen_by_new_subscriber(broker, mqtt_client, pub) == [("r/1", b"v1-new", True), ("r/3", b"v3", True)]


# ---------------------------------------------------------------------------------------------
# Publish rate
# ---------------------------------------------------------------------------------------------

def test_publish_rate_throttles_a_fast_publisher_without_dropping(broker_with_limits, raw_client):
    broker = broker_with_limits({"publish_rate_messages": 50})
    sub = raw_client(broker)
    assert sub.mqtt_connect(unique("rsub")).return_code == 0
    assert sub.mqtt_subscribe(1, [("rate/#", 0)]).granted == [0]
    pub = raw_client(broker)
    assert pub.mqtt_connect(unique("rpub")).return_code == 0
    burst = b"".join(mqtt_raw.publish("rate/t", str(i).encode()) for i in range(200))
    start = time.monotonic()
    pub.send(burst)
    deadline = start + 30.0
    got = []
    while len(got) < 200:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"only {len(got)} of 200 messages arrived within 30s"
        got.append(sub.expect(mqtt_raw.PUBLISH, timeout=remaining).payload)
    elapsed = time.monotonic() - start
    assert got == [str(i).encode() for i in range(200)], "messages were dropped or reordered"
    # 50 messages/s: at least (200 - 50) / 50 = 3 s; 2 s leaves room for a burst allowance.
    assert elapsed >= 2.0, f"200 messages at 50/s arrived in {elapsed:.2f}s: not throttled"
    still_works(pub)


# ---------------------------------------------------------------------------------------------
# CONNECT timeout on TLS
# ---------------------------------------------------------------------------------------------

@pytest.fixture
def tls_timeout_broker(start_fulmar, pki):
    return start_fulmar(config_toml=f"""
[[listeners]]
bind = "127.0.0.1:{{port}}"

[[listeners]]
bind = "127.0.0.1:{{tls_port}}"

[listeners.tls]
cert = "{pki.server.cert}"
key = "{pki.server.key}"

[limits]
connect_timeout_secs = 1
""")


def closed_within(sock, timeout: float) -> bool:
    """True if the peer closes (EOF, reset, or a TLS alert/EOF) within ``timeout``; data read is ignored."""
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        sock.settimeout(remaining)
        try:
            if not sock.recv(4096):
                return True
        except (socket.timeout, TimeoutError):
            return False
        except (ssl.SSLError, ConnectionError):
            return True


def test_connect_timeout_bounds_a_tls_handshake_that_never_starts(tls_timeout_broker):
    with socket.create_connection((tls_timeout_broker.host, tls_timeout_broker.tls_port), timeout=WAIT) as s:
        assert closed_within(s, 5.0), "a TCP connection to the TLS port that sends nothing was kept open"


def test_connect_timeout_bounds_a_tls_connection_that_never_sends_connect(tls_timeout_broker, pki):
    c = TlsRawClient(tls_timeout_broker.host, tls_timeout_broker.tls_port, client_context(pki))
    try:
        assert closed_within(c.sock, 5.0), "a TLS connection that never sends CONNECT was kept open"
    finally:
        c.close()
