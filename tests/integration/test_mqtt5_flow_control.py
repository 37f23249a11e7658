"""MQTT 5 flow control [MQTT-3.3.4-7 .. 3.3.4-9, 4.9]: Receive Maximum in both directions."""

import pytest

import mqtt5_raw
from helpers import unique
from mqtt5_raw import PUBLISH, PUBREL, sub_options

# Proving that nothing more is sent while the window is full needs a bounded quiet period: the broker has
# every reason to send immediately (the messages are queued and the socket is writable), so 1 s of silence
# is ample; a broker ignoring the window sends within milliseconds.
QUIET = 1.0
CLOSE_WAIT = 5.0


def windowed_subscriber(raw5_client, broker, topic, receive_maximum, qos):
    c = raw5_client(broker)
    assert c.mqtt_connect(unique("rm"), properties={"receive_maximum": receive_maximum}).reason == 0
    assert c.mqtt_subscribe(1, [(topic, sub_options(qos))]).reasons == [qos]
    return c


def assert_quiet(c, what):
    with pytest.raises(TimeoutError):
        p = c.read_packet(timeout=QUIET)
        raise AssertionError(f"{what}: received {p!r}")


# mosquitto 2.0.11 honours the initial window but sends two PUBLISHes after the first PUBACK (three in flight
# with Receive Maximum 2), so this spec rule [MQTT-3.3.4-9] cannot be validated against it.
@pytest.mark.fulmar_only
def test_receive_maximum_bounds_unacknowledged_qos1_publishes(broker, raw5_client, mqtt5_client):
    # [MQTT-3.3.4-9] the server must not send more unacknowledged QoS 1/2 PUBLISHes than Receive Maximum.
    topic = f"{unique('rm1')}/t"
    sub = windowed_subscriber(raw5_client, broker, topic, 2, qos=1)
    pub = mqtt5_client(broker).connect()
    sent = [f"m{i}".encode() for i in range(5)]
    for payload in sent:
        pub.publish5(topic, payload, qos=1)
    first = sub.expect_publishes(2)
    assert [p.payload for p in first] == sent[:2]
    assert_quiet(sub, "a third PUBLISH while 2 were unacknowledged")
    sub.send(mqtt5_raw.puback(first[0].packet_id))
    third = sub.expect(PUBLISH)
    assert third.payload == sent[2]
    assert_quiet(sub, "more than one PUBLISH after a single PUBACK")
    for p in (first[1], third):
        sub.send(mqtt5_raw.puback(p.packet_id))
    assert [p.payload for p in sub.expect_publishes(2)] == sent[3:]


def test_receive_maximum_counts_qos2_until_pubcomp(broker, raw5_client, mqtt5_client):
    # A QoS 2 PUBLISH stays in the window until PUBCOMP (spec 4.9), not just until PUBREC.
    topic = f"{unique('rm2')}/t"
    sub = windowed_subscriber(raw5_client, broker, topic, 1, qos=2)
    pub = mqtt5_client(broker).connect()
    for payload in (b"a", b"b"):
        pub.publish5(topic, payload, qos=2)
    first = sub.expect(PUBLISH)
    assert first.payload == b"a"
    sub.send(mqtt5_raw.pubrec(first.packet_id))
    rel = sub.expect(PUBREL)
    assert rel.packet_id == first.packet_id
    assert_quiet(sub, "a second PUBLISH before PUBCOMP with Receive Maximum 1")
    sub.send(mqtt5_raw.pubcomp(first.packet_id))
    assert sub.expect(PUBLISH).payload == b"b"


def test_qos0_is_not_limited_by_receive_maximum(broker, raw5_client, mqtt5_client):
    topic = f"{unique('rm0')}/t"
    sub = windowed_subscriber(raw5_client, broker, topic, 1, qos=0)
    pub = mqtt5_client(broker).connect()
    for i in range(5):
        pub.publish5(topic, f"q0-{i}".encode(), qos=0)
    assert [p.payload for p in sub.expect_publishes(5)] == [f"q0-{i}".encode() for i in range(5)]


@pytest.mark.fulmar_only  # Fulmar's max_awaiting_pubrel is the Receive Maximum; mosquitto has no such option
def test_client_exceeding_server_receive_maximum_is_disconnected_with_0x93(broker_with_config, raw5_client):
    # [MQTT-3.3.4-8] / spec 3.3.4: more unacknowledged QoS 2 PUBLISHes than Receive Maximum: DISCONNECT 0x93.
    b = broker_with_config(limits={"max_awaiting_pubrel": 2})
    c = raw5_client(b)
    ack = c.mqtt_connect(unique("rmx"))
    assert ack.properties.get("receive_maximum") == 2, ack
    topic = f"{unique('rmx')}/t"
    for pid in (1, 2):
        c.send(mqtt5_raw.publish(topic, b"held", qos=2, packet_id=pid))
        assert c.expect(mqtt5_raw.PUBREC).packet_id == pid
    c.send(mqtt5_raw.publish(topic, b"one-too-many", qos=2, packet_id=3))
    d = c.expect_server_disconnect(CLOSE_WAIT)
    assert d is not None and d.reason == mqtt5_raw.RECEIVE_MAXIMUM_EXCEEDED, d


@pytest.mark.fulmar_only  # as above
def test_client_within_server_receive_maximum_is_served(broker_with_config, raw5_client):
    b = broker_with_config(limits={"max_awaiting_pubrel": 2})
    c = raw5_client(b)
    c.mqtt_connect(unique("rmok"))
    topic = f"{unique('rmok')}/t"
    for round_ in range(3):  # completing each flow frees its slot
        for pid in (1, 2):
            c.send(mqtt5_raw.publish(topic, b"x", qos=2, packet_id=pid))
            assert c.expect(mqtt5_raw.PUBREC).packet_id == pid
        for pid in (1, 2):
            c.send(mqtt5_raw.pubrel(pid))
            assert c.expect(mqtt5_raw.PUBCOMP).packet_id == pid, f"round {round_}"
