"""MQTT 5 capabilities the broker advertises are also enforced, with the reason codes of spec 2.4; PUBACK and
PUBREC say whether anybody matched (0x10)."""

import pytest

import mqtt5_raw
from helpers import unique
from mqtt5_raw import PUBACK, PUBREC, sub_options

CLOSE_WAIT = 5.0


# 0x10 is a MAY (spec 3.4.2.1, 3.5.2.1); mosquitto 2.0.11 sends it on PUBACK only, Fulmar on both.
@pytest.mark.parametrize("qos, ack_type", [(1, PUBACK), pytest.param(2, PUBREC, marks=pytest.mark.fulmar_only)])
def test_publish_without_matching_subscribers_is_acknowledged_with_0x10(broker, raw5_client, mqtt5_client,
                                                                        qos, ack_type):
    # Reason code 0x10 No matching subscribers on PUBACK / PUBREC; 0x00 once somebody matches. Raw publisher:
    # paho reports the PUBCOMP's reason for QoS 2, not the PUBREC's.
    topic = f"{unique('nms')}/t"
    pub = raw5_client(broker)
    pub.mqtt_connect(unique("nms"))
    pub.send(mqtt5_raw.publish(topic, b"nobody", qos=qos, packet_id=1))
    ack = pub.expect(ack_type)
    assert (ack.packet_id, ack.reason) == (1, mqtt5_raw.NO_MATCHING_SUBSCRIBERS), ack
    if qos == 2:
        pub.send(mqtt5_raw.pubrel(1))
        pub.expect(mqtt5_raw.PUBCOMP)
    sub = mqtt5_client(broker).connect()
    sub.subscribe(topic, 1)
    pub.send(mqtt5_raw.publish(topic, b"somebody", qos=qos, packet_id=2))
    ack = pub.expect(ack_type)
    assert (ack.packet_id, ack.reason) == (2, mqtt5_raw.SUCCESS), ack
    if qos == 2:
        pub.send(mqtt5_raw.pubrel(2))
    assert sub.expect_message().payload == b"somebody"


def test_publish_above_maximum_qos_is_disconnected_with_0x9b(broker_with_config, raw5_client):
    # [MQTT-3.2.2-11] a PUBLISH with a QoS above the Maximum QoS the server sent: DISCONNECT 0x9B.
    b = broker_with_config(mqtt={"max_qos": 1}, mosquitto=["max_qos 1"])
    c = raw5_client(b)
    assert c.mqtt_connect(unique("mq")).properties.get("maximum_qos") == 1
    c.send(mqtt5_raw.publish(f"{unique('mq')}/t", b"too-high", qos=2, packet_id=1))
    d = c.expect_server_disconnect(CLOSE_WAIT)
    assert d is not None and d.reason == mqtt5_raw.QOS_NOT_SUPPORTED, d


def test_subscription_is_granted_at_most_maximum_qos(broker_with_config, raw5_client):
    b = broker_with_config(mqtt={"max_qos": 1}, mosquitto=["max_qos 1"])
    c = raw5_client(b)
    c.mqtt_connect(unique("mqs"))
    assert c.mqtt_subscribe(1, [(f"{unique('mqs')}/t", sub_options(2))]).reasons == [1]


def test_retained_publish_when_retain_unavailable_is_disconnected_with_0x9a(broker_with_config, raw5_client):
    # [MQTT-3.2.2-14] RETAIN 1 when Retain Available is 0: DISCONNECT 0x9A.
    b = broker_with_config(mqtt={"retain_available": False}, mosquitto=["retain_available false"])
    c = raw5_client(b)
    assert c.mqtt_connect(unique("ra")).properties.get("retain_available") == 0
    c.send(mqtt5_raw.publish(f"{unique('ra')}/t", b"keep-me", qos=1, packet_id=1, retain=True))
    d = c.expect_server_disconnect(CLOSE_WAIT)
    assert d is not None and d.reason == mqtt5_raw.RETAIN_NOT_SUPPORTED, d


@pytest.mark.fulmar_only  # mosquitto cannot switch wildcard subscriptions off
def test_wildcard_filter_is_refused_with_0xa2_when_wildcards_are_disabled(broker_with_config, raw5_client):
    b = broker_with_config(mqtt={"wildcard_subscriptions": False})
    c = raw5_client(b)
    c.mqtt_connect(unique("wc"))
    base = unique("wc")
    ack = c.mqtt_subscribe(1, [(f"{base}/+", sub_options(1)), (f"{base}/#", sub_options(1)),
                               (f"{base}/plain", sub_options(1))])
    assert ack.reasons == [0xA2, 0xA2, 1], ack


@pytest.mark.fulmar_only  # mosquitto cannot switch shared subscriptions off
def test_shared_filter_is_refused_with_0x9e_when_shared_subscriptions_are_disabled(broker_with_config, raw5_client):
    b = broker_with_config(mqtt={"shared_subscriptions": False})
    c = raw5_client(b)
    c.mqtt_connect(unique("sh"))
    base = unique("sh")
    ack = c.mqtt_subscribe(1, [(f"$share/g/{base}/t", sub_options(1)), (f"{base}/t", sub_options(1))])
    assert ack.reasons == [0x9E, 1], ack


@pytest.mark.fulmar_only  # mosquitto cannot switch subscription identifiers off
def test_subscription_identifier_when_unavailable_is_disconnected_with_0xa1(broker_with_config, raw5_client):
    b = broker_with_config(mqtt={"subscription_identifiers": False})
    c = raw5_client(b)
    assert c.mqtt_connect(unique("sid")).properties.get("subscription_identifier_available") == 0
    c.send(mqtt5_raw.subscribe(1, [(f"{unique('sid')}/t", sub_options(1))], {"subscription_identifier": 3}))
    d = c.expect_server_disconnect(CLOSE_WAIT)
    assert d is not None and d.reason == mqtt5_raw.SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED, d


@pytest.mark.fulmar_only  # validate_utf8_payloads is Fulmar's option (the spec lets a server check or not)
@pytest.mark.parametrize("qos, ack_type", [(1, PUBACK), (2, PUBREC)])
def test_invalid_utf8_payload_marked_utf8_is_refused_with_0x99(broker_with_config, raw5_client, mqtt5_client,
                                                               qos, ack_type):
    b = broker_with_config(mqtt={"validate_utf8_payloads": True})
    topic = f"{unique('utf')}/t"
    sub = mqtt5_client(b).connect()
    sub.subscribe(topic, 2)
    c = raw5_client(b)
    c.mqtt_connect(unique("utf"))
    c.send(mqtt5_raw.publish(topic, b"\xff\xfe not utf-8", qos=qos, packet_id=1,
                             properties={"payload_format_indicator": 1}))
    ack = c.expect(ack_type)
    assert (ack.packet_id, ack.reason) == (1, mqtt5_raw.PAYLOAD_FORMAT_INVALID), ack
    # Valid UTF-8 with the same indicator is accepted and delivered; the refused one never was.
    c.send(mqtt5_raw.publish(topic, "grüß".encode(), qos=qos, packet_id=2, properties={"payload_format_indicator": 1}))
    ack = c.expect(ack_type)
    assert (ack.packet_id, ack.reason) == (2, 0), ack
    got = sub.expect_message()
    assert got.payload == "grüß".encode(), got


@pytest.mark.fulmar_only  # validate_utf8_payloads is Fulmar's option
def test_invalid_utf8_qos0_payload_marked_utf8_is_disconnected_with_0x99(broker_with_config, raw5_client):
    b = broker_with_config(mqtt={"validate_utf8_payloads": True})
    c = raw5_client(b)
    c.mqtt_connect(unique("utf0"))
    c.send(mqtt5_raw.publish(f"{unique('utf0')}/t", b"\xc3\x28", properties={"payload_format_indicator": 1}))
    d = c.expect_server_disconnect(CLOSE_WAIT)
    assert d is not None and d.reason == mqtt5_raw.PAYLOAD_FORMAT_INVALID, d


def test_invalid_utf8_marked_utf8_passes_through_when_validation_is_off(broker, raw5_client, mqtt5_client):
    # Default: the broker forwards the payload untouched, indicator included (spec 3.3.2.3.2 "MAY" validate).
    topic = f"{unique('utfoff')}/t"
    sub = mqtt5_client(broker).connect()
    sub.subscribe(topic, 1)
    c = raw5_client(broker)
    c.mqtt_connect(unique("utfoff"))
    c.send(mqtt5_raw.publish(topic, b"\xff raw", qos=1, packet_id=1, properties={"payload_format_indicator": 1}))
    assert c.expect(PUBACK).reason == 0
    got = sub.expect_message()
    assert (got.payload, got.prop("PayloadFormatIndicator")) == (b"\xff raw", 1)

