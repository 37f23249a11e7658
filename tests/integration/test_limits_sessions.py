"""The per-client and per-session limits of `[limits]` not covered in test_limits.py, each tripped once:
client identifier length, publish rate in bytes, outbound inflight window, inbound QoS 2 awaiting PUBREL,
and the queue of an offline persistent session."""

from __future__ import annotations

import time

import pytest

import mqtt_raw
from helpers import MARKER, WAIT, unique

pytestmark = [pytest.mark.fulmar_only, pytest.mark.security]


def test_client_id_longer_than_max_client_id_len_gets_connack_0x02(broker_with_limits, raw_client):
    broker = broker_with_limits({"max_client_id_len": 24})
    ok = raw_client(broker)
    assert ok.mqtt_connect("x" * 24).return_code == 0
    refused = raw_client(broker)
    assert refused.mqtt_connect("y" * 25).return_code == 0x02
    assert refused.wait_closed(WAIT), "a refused client must be disconnected"


def test_publish_rate_in_bytes_throttles_without_dropping(broker_with_limits, raw_client):
    broker = broker_with_limits({"publish_rate_bytes": 4000})
    sub = raw_client(broker)
    sub.mqtt_connect(unique("bsub"))
    assert sub.mqtt_subscribe(1, [("brate/#", 0)]).granted == [0]
    pub = raw_client(broker)
    pub.mqtt_connect(unique("bpub"))
    payload = b"p" * 1000
    start = time.monotonic()
    pub.send(b"".join(mqtt_raw.publish("brate/t", payload) for _ in range(20)))
    got = [sub.expect(mqtt_raw.PUBLISH, timeout=30.0).payload for _ in range(20)]
    elapsed = time.monotonic() - start
    assert got == [payload] * 20
    # 20,000 bytes at 4,000 B/s with one second of burst: at least (20,000 - 4,000) / 4,000 = 4 s.
    assert elapsed >= 3.0, f"20 kB at 4 kB/s arrived in {elapsed:.2f}s: not throttled"


def test_outbound_inflight_window_is_max_inflight_messages(broker_with_limits, raw_client):
    broker = broker_with_limits({"max_inflight_messages": 3})
    sub = raw_client(broker)
    sub.mqtt_connect(unique("win"))
    assert sub.mqtt_subscribe(1, [("win/t", 1)]).granted == [1]
    pub = raw_client(broker)
    pub.mqtt_connect(unique("winpub"))
    for i in range(5):
        pub.send(mqtt_raw.publish("win/t", str(i).encode(), qos=1, packet_id=i + 1))
        pub.expect(mqtt_raw.PUBACK)
    first = [sub.expect(mqtt_raw.PUBLISH) for _ in range(3)]
    assert [p.payload for p in first] == [b"0", b"1", b"2"]
    # Nothing more until one is acknowledged: a QoS 0 marker would overtake nothing, so poll briefly.
    with pytest.raises(TimeoutError):
        sub.read_packet(timeout=1.0)  # bounded wait to show the window is closed
    sub.send(mqtt_raw.puback(first[0].packet_id))
    assert sub.expect(mqtt_raw.PUBLISH).payload == b"3"


def test_more_qos2_awaiting_pubrel_than_allowed_closes_the_connection(broker_with_limits, raw_client):
    broker = broker_with_limits({"max_awaiting_pubrel": 2})
    pub = raw_client(broker)
    pub.mqtt_connect(unique("q2"))
    for pid in (1, 2):
        pub.send(mqtt_raw.publish("q2/t", b"x", qos=2, packet_id=pid))
        pub.expect(mqtt_raw.PUBREC)
    pub.send(mqtt_raw.publish("q2/t", b"x", qos=2, packet_id=3))
    assert pub.wait_closed(WAIT), "a third unreleased QoS 2 message must close the connection"


def test_offline_session_queue_keeps_at_most_max_queued_messages(broker_with_limits, raw_client):
    broker = broker_with_limits({"max_queued_messages": 4})
    client_id = unique("offq")
    sub = raw_client(broker)
    assert sub.mqtt_connect(client_id, clean_session=False).return_code == 0
    assert sub.mqtt_subscribe(1, [("offq/t", 1)]).granted == [1]
    sub.mqtt_disconnect()
    pub = raw_client(broker)
    pub.mqtt_connect(unique("offqpub"))
    for i in range(10):
        pub.send(mqtt_raw.publish("offq/t", str(i).encode(), qos=1, packet_id=i + 1))
        pub.expect(mqtt_raw.PUBACK)
    back = raw_client(broker)
    assert back.mqtt_connect(client_id, clean_session=False).session_present
    # The queued messages go out right after CONNACK, before the SUBACK of a new subscription; a
    # marker on that fresh topic, published once the SUBACK is in, arrives after all of them.
    got = []
    back.send(mqtt_raw.subscribe(2, [("offq/marker", 1)]))
    marker_sent = False
    while True:
        p = back.read_packet(WAIT)
        if p.ptype == mqtt_raw.SUBACK:
            pub.send(mqtt_raw.publish("offq/marker", MARKER, qos=1, packet_id=11))
            pub.expect(mqtt_raw.PUBACK)
            marker_sent = True
            continue
        assert p.ptype == mqtt_raw.PUBLISH, p
        back.send(mqtt_raw.puback(p.packet_id))
        if p.payload == MARKER:
            assert marker_sent
            break
        got.append(p.payload)
    # At most 4 were kept while offline (the rest were dropped and counted), in order.
    assert got == [b"0", b"1", b"2", b"3"], got
