"""MQTT 5 Maximum Packet Size in both directions (spec 3.1.2.11.4, 3.2.2.3.6)."""

import pytest

import mqtt5_raw
from helpers import MARKER, unique

CLOSE_WAIT = 5.0


@pytest.mark.parametrize("qos", [0, 1])
def test_message_larger_than_client_maximum_packet_size_is_not_sent_to_it(broker, mqtt5_client, qos):
    # [MQTT-3.1.2-24] the server must not send a packet larger than the client's Maximum Packet Size; it
    # discards the message for that client [MQTT-3.1.2-25] and the stream goes on.
    topic = f"{unique('mps')}/t"
    small = mqtt5_client(broker, connect_properties={"MaximumPacketSize": 100}).connect()
    small.subscribe(topic, qos)
    large = mqtt5_client(broker).connect()
    large.subscribe(topic, qos)
    pub = mqtt5_client(broker).connect()
    pub.publish5(topic, b"x" * 500, qos=qos)
    pub.publish5(topic, b"fits", qos=qos)
    pub.publish5(topic, MARKER, qos=qos)
    assert [m.payload for m in small.collect_until(MARKER)] == [b"fits"]
    assert [len(m.payload) for m in large.collect_until(MARKER)] == [500, 4], "the other subscriber lost a message"


def test_packet_larger_than_server_maximum_is_disconnected_with_0x95(broker_with_limits, raw5_client):
    b = broker_with_limits({"max_packet_size": 1024})
    c = raw5_client(b)
    ack = c.mqtt_connect(unique("mpsin"))
    assert ack.properties.get("maximum_packet_size") == 1024, ack
    c.send(mqtt5_raw.publish(f"{unique('mpsin')}/t", b"y" * 2000, qos=1, packet_id=1))
    d = c.expect_server_disconnect(CLOSE_WAIT)
    assert d is not None and d.reason == mqtt5_raw.PACKET_TOO_LARGE, d


def test_packet_of_exactly_server_maximum_is_accepted(broker_with_limits, raw5_client):
    b = broker_with_limits({"max_packet_size": 1024})
    c = raw5_client(b)
    c.mqtt_connect(unique("mpsok"))
    topic = f"{unique('mpsok')}/t"
    empty = mqtt5_raw.publish(topic, b"", qos=1, packet_id=1)
    # The 1024-byte packet's remaining length takes two bytes, the empty one's one byte.
    payload_len = 1024 - len(empty) - 1
    packet = mqtt5_raw.publish(topic, b"z" * payload_len, qos=1, packet_id=1)
    assert len(packet) == 1024
    c.send(packet)
    ack = c.expect(mqtt5_raw.PUBACK)
    assert ack.packet_id == 1 and ack.reason in (0, mqtt5_raw.NO_MATCHING_SUBSCRIBERS), ack
