"""Protocol rules checked byte by byte with the raw client: CONNECT handling, QoS 2 dedup, malformed input."""

import pytest

import mqtt_raw
from helpers import MARKER, V31, V311, WAIT, unique

CLOSE_WAIT = 5.0


def test_empty_client_id_with_clean_session_is_accepted(broker, raw_client):
    # [MQTT-3.1.3-6] 3.1.1: a zero-byte client id is allowed with clean session; the server assigns one.
    c = raw_client(broker)
    ack = c.mqtt_connect("", level=V311.level, clean_session=True)
    assert (ack.return_code, ack.session_present) == (0, False)
    c.send(mqtt_raw.pingreq())
    c.expect(mqtt_raw.PINGRESP)


def test_empty_client_id_without_clean_session_is_rejected_with_identifier_rejected(broker, raw_client):
    # [MQTT-3.1.3-8] CONNACK 0x02, then [MQTT-3.2.2-5] the server closes the connection.
    c = raw_client(broker)
    c.send(mqtt_raw.connect("", level=V311.level, clean_session=False))
    assert c.read_packet().body == bytes([0x00, 0x02])
    assert c.wait_closed(CLOSE_WAIT)


def test_empty_client_id_is_rejected_in_mqtt31(broker, raw_client):
    # MQTT 3.1: the client identifier must be 1 to 23 characters; otherwise CONNACK 2 (identifier rejected).
    c = raw_client(broker)
    c.send(mqtt_raw.connect("", level=V31.level, clean_session=True))
    ack = c.expect(mqtt_raw.CONNACK)
    assert ack.return_code == 0x02
    assert c.wait_closed(CLOSE_WAIT)


def test_unsupported_protocol_level_gets_connack_1_and_close(broker, raw_client):
    # [MQTT-3.1.2-2] unacceptable protocol level: CONNACK 0x01, then disconnect.
    c = raw_client(broker)
    c.send(mqtt_raw.connect(unique("lvl6"), level=6, protocol_name=b"MQTT"))
    assert c.read_packet().body == bytes([0x00, 0x01])
    assert c.wait_closed(CLOSE_WAIT)


def test_second_connect_on_same_connection_closes_it(broker, raw_client, proto):
    # [MQTT-3.1.0-2] a second CONNECT is a protocol violation: the server disconnects the client.
    c = raw_client(broker)
    cid = unique("twice")
    assert c.mqtt_connect(cid, level=proto.level).return_code == 0
    c.send(mqtt_raw.connect(cid, level=proto.level))
    assert c.wait_closed(CLOSE_WAIT), "broker kept the connection open after a second CONNECT"


def test_first_packet_other_than_connect_closes_connection(broker, raw_client):
    # [MQTT-3.1.0-1] the first packet from the client must be CONNECT.
    c = raw_client(broker)
    c.send(mqtt_raw.publish("t", b"x"))
    assert c.wait_closed(CLOSE_WAIT)


@pytest.mark.fulmar_only
def test_connection_that_sends_nothing_is_closed_after_connect_timeout(broker_with_limits, raw_client):
    b = broker_with_limits({"connect_timeout_secs": 1})
    idle = raw_client(b)
    assert idle.wait_closed(timeout=5), "a socket that never sent CONNECT was kept open past connect_timeout_secs"
    # A client that does connect in time is unaffected.
    ok = raw_client(b)
    assert ok.mqtt_connect(unique("intime")).return_code == 0


def test_qos2_is_delivered_once_when_publish_is_resent(broker, mqtt_client, raw_client, proto):
    # [MQTT-4.3.3-2] until PUBREL, the receiver acknowledges a resent PUBLISH with PUBREC and must not
    # deliver it onwards a second time.
    topic = f"{unique('exactly')}/t"
    sub = mqtt_client(broker, proto=proto).connect()
    sub.subscribe(topic, 2)

    p = raw_client(broker)
    assert p.mqtt_connect(unique("q2pub"), level=proto.level).return_code == 0
    p.send(mqtt_raw.publish(topic, b"once", qos=2, packet_id=7))
    assert p.expect(mqtt_raw.PUBREC).packet_id == 7
    p.send(mqtt_raw.publish(topic, b"once", qos=2, packet_id=7, dup=True))
    assert p.expect(mqtt_raw.PUBREC).packet_id == 7
    p.send(mqtt_raw.pubrel(7))
    assert p.expect(mqtt_raw.PUBCOMP).packet_id == 7

    # The marker travels at QoS 2 too: paho hands a QoS 2 message to the application only at PUBREL, so a
    # QoS 1 marker could overtake it on the way to on_message.
    p.send(mqtt_raw.publish(topic, MARKER, qos=2, packet_id=8))
    assert p.expect(mqtt_raw.PUBREC).packet_id == 8
    p.send(mqtt_raw.pubrel(8))
    assert p.expect(mqtt_raw.PUBCOMP).packet_id == 8
    got = sub.collect_until(MARKER)
    assert [(m.payload, m.qos) for m in got] == [(b"once", 2)]


def test_qos2_packet_id_can_be_reused_after_pubcomp(broker, mqtt_client, raw_client, proto):
    # After PUBCOMP the id is free: the same id with new content is a new message.
    topic = f"{unique('reuse')}/t"
    sub = mqtt_client(broker, proto=proto).connect()
    sub.subscribe(topic, 2)
    p = raw_client(broker)
    assert p.mqtt_connect(unique("q2reuse"), level=proto.level).return_code == 0
    for payload in (b"one", b"two"):
        p.send(mqtt_raw.publish(topic, payload, qos=2, packet_id=9))
        assert p.expect(mqtt_raw.PUBREC).packet_id == 9
        p.send(mqtt_raw.pubrel(9))
        assert p.expect(mqtt_raw.PUBCOMP).packet_id == 9
    assert [sub.expect_message().payload for _ in range(2)] == [b"one", b"two"]


GARBAGE = {
    # PUBLISH whose remaining length has a 5th continuation byte [MQTT-2.2.3] (at most 4 bytes).
    "remaining-length-5-bytes": bytes([0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]),
    # Packet type 0 is reserved [MQTT-2.2.1].
    "reserved-type-0": bytes([0x00, 0x00]),
    # Packet type 15 is reserved in 3.1.1.
    "reserved-type-15": bytes([0xF0, 0x00]),
    # SUBSCRIBE with fixed-header flags 0000 instead of 0010 [MQTT-3.8.1-1].
    "subscribe-bad-flags": bytes([0x80, 0x06, 0x00, 0x01, 0x00, 0x01, ord("a"), 0x00]),
    # PUBLISH with QoS 3 [MQTT-3.3.1-4].
    "publish-qos-3": bytes([0x36, 0x05, 0x00, 0x01, ord("t"), 0x00, 0x01]),
    # PUBLISH whose topic length runs past the packet.
    "topic-length-overrun": bytes([0x30, 0x03, 0x00, 0x09, ord("t")]),
    # PUBLISH with a wildcard in the topic name [MQTT-3.3.2-2].
    "publish-wildcard-topic": mqtt_raw.publish("a/#", b"x"),
    # Topic that is not valid UTF-8 [MQTT-1.5.3-1].
    "topic-invalid-utf8": bytes([0x30, 0x04, 0x00, 0x02, 0xC3, 0x28]),
}


@pytest.mark.parametrize("garbage", list(GARBAGE.values()), ids=list(GARBAGE.keys()))
def test_malformed_packet_closes_only_that_connection(broker, mqtt_client, raw_client, garbage):
    topic = f"{unique('bystander')}/t"
    bystander = mqtt_client(broker).connect()
    bystander.subscribe(topic, 1)

    bad = raw_client(broker)
    assert bad.mqtt_connect(unique("garbage")).return_code == 0
    bad.send(garbage)
    assert bad.wait_closed(CLOSE_WAIT), "broker kept a connection open after a malformed packet"

    assert broker.alive()
    bystander.publish(topic, b"still-works", qos=1)
    assert bystander.expect_message().payload == b"still-works"
    newcomer = mqtt_client(broker).connect()
    newcomer.publish(topic, b"new-client-works", qos=1)
    assert bystander.expect_message().payload == b"new-client-works"


def test_garbage_before_connect_closes_connection(broker, mqtt_client, raw_client):
    bad = raw_client(broker)
    bad.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert bad.wait_closed(CLOSE_WAIT)
    ok = mqtt_client(broker).connect()
    ok.publish(f"{unique('after')}/t", b"x", qos=1)


def test_packet_larger_than_max_packet_size_closes_connection(broker_with_limits, mqtt_client, raw_client):
    b = broker_with_limits({"max_packet_size": 1024})
    c = raw_client(b)
    assert c.mqtt_connect(unique("big")).return_code == 0
    c.send(mqtt_raw.publish("big/t", b"x" * 4096, qos=0))
    assert c.wait_closed(CLOSE_WAIT), "broker accepted a packet over max_packet_size"
    ok = mqtt_client(b).connect()
    ok.subscribe("small/t", 1)
    ok.publish("small/t", b"y" * 100, qos=1)
    assert ok.expect_message(WAIT).payload == b"y" * 100
