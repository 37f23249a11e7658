"""MQTT 5 Request Problem Information [MQTT-3.1.2-29]: reason strings explain refusals on acks only when
the client allows them; DISCONNECT and CONNACK may always carry one."""

import pytest

import mqtt5_raw
from helpers import unique
from mqtt5_raw import PUBACK, SUBACK

pytestmark = pytest.mark.fulmar_only  # reason strings are optional; their presence is Fulmar's choice

INVALID_UTF8 = b"\xff\xfe"


def refused_puback(broker_with_config, raw5_client, problem_information):
    broker = broker_with_config(mqtt={"validate_utf8_payloads": True})
    c = raw5_client(broker)
    props = {} if problem_information is None else {"request_problem_information": problem_information}
    connack = c.mqtt_connect(unique("rpi"), properties=props)
    assert connack.reason == mqtt5_raw.SUCCESS, connack
    c.send(mqtt5_raw.publish(f"{unique('rpi')}/t", INVALID_UTF8, qos=1, packet_id=3,
                             properties={"payload_format_indicator": 1}))
    ack = c.expect(PUBACK)
    assert (ack.packet_id, ack.reason) == (3, mqtt5_raw.PAYLOAD_FORMAT_INVALID), ack
    return ack


@pytest.mark.parametrize("problem_information", [None, 1])
def test_refused_puback_explains_itself_when_the_client_allows_it(broker_with_config, raw5_client,
                                                                  problem_information):
    ack = refused_puback(broker_with_config, raw5_client, problem_information)
    assert "UTF-8" in ack.properties.get("reason_string", ""), ack


def test_refused_puback_carries_no_reason_string_when_the_client_said_no(broker_with_config, raw5_client):
    ack = refused_puback(broker_with_config, raw5_client, 0)
    assert "reason_string" not in ack.properties, ack


@pytest.mark.parametrize("problem_information, explained", [(1, True), (0, False)])
def test_refused_subscription_is_explained_only_when_allowed(broker_with_config, raw5_client,
                                                             problem_information, explained):
    broker = broker_with_config(mqtt={"wildcard_subscriptions": False})
    c = raw5_client(broker)
    c.mqtt_connect(unique("rpi"), properties={"request_problem_information": problem_information})
    suback = c.mqtt_subscribe(1, [(f"{unique('rpi')}/#", 0)])
    assert suback.reasons == [mqtt5_raw.WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED], suback
    assert ("reason_string" in suback.properties) == explained, suback


def test_server_disconnect_carries_a_reason_string_even_when_problem_information_is_off(broker, raw5_client):
    # [MQTT-3.1.2-29] a Reason String is always allowed on DISCONNECT.
    c = raw5_client(broker)
    c.mqtt_connect(unique("rpi"), properties={"request_problem_information": 0})
    c.send(mqtt5_raw.connect(unique("again")))  # a second CONNECT is a protocol error
    d = c.expect_server_disconnect(5.0)
    assert d is not None and d.reason == mqtt5_raw.PROTOCOL_ERROR, d
    assert "CONNECT" in d.properties.get("reason_string", ""), d
