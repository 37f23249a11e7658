"""MQTT 5 CONNECT / CONNACK: what the broker tells a client about itself [MQTT-3.2.2], authentication refusals."""

import pytest

import mqtt5_raw
from helpers import unique
from mqtt5_raw import CONNACK

CLOSE_WAIT = 5.0
AVAILABILITY = ("maximum_qos", "retain_available", "wildcard_subscription_available",
                "subscription_identifier_available", "shared_subscription_available")


def test_empty_client_id_gets_a_distinct_assigned_client_identifier(broker, raw5_client):
    # [MQTT-3.1.3-7] / [MQTT-3.2.2-16]: a zero-length id is accepted, and the server returns the id it assigned.
    assigned = []
    for _ in range(2):
        ack = raw5_client(broker).mqtt_connect("")
        assert ack.reason == 0, ack
        assigned.append(ack.properties.get("assigned_client_identifier"))
    assert all(assigned), f"CONNACK without Assigned Client Identifier: {assigned}"
    assert assigned[0] != assigned[1], f"two clients were assigned the same id {assigned[0]!r}"


def test_connack_omits_assigned_client_identifier_when_client_chose_one(broker, raw5_client):
    ack = raw5_client(broker).mqtt_connect(unique("own"))
    assert ack.reason == 0 and "assigned_client_identifier" not in ack.properties, ack


@pytest.mark.fulmar_only  # max_awaiting_pubrel (Receive Maximum) has no mosquitto.conf equivalent
def test_connack_advertises_topic_alias_receive_maximum_and_packet_size_from_config(broker_with_config, raw5_client):
    b = broker_with_config(mqtt={"topic_alias_maximum": 5}, limits={"max_packet_size": 4096, "max_awaiting_pubrel": 7})
    ack = raw5_client(b).mqtt_connect(unique("adv"))
    assert ack.reason == 0, ack
    got = {k: ack.properties.get(k) for k in ("topic_alias_maximum", "receive_maximum", "maximum_packet_size")}
    assert got == {"topic_alias_maximum": 5, "receive_maximum": 7, "maximum_packet_size": 4096}


def test_connack_with_default_features_sends_no_availability_properties(broker, raw5_client):
    # [MQTT-3.2.2-9 ..] absent means available / QoS 2: a default broker has nothing to say about them.
    ack = raw5_client(broker).mqtt_connect(unique("deflt"))
    assert ack.reason == 0
    assert {k: ack.properties[k] for k in AVAILABILITY if k in ack.properties} == {}


def test_connack_advertises_maximum_qos_and_retain_unavailable(broker_with_config, raw5_client):
    b = broker_with_config(mqtt={"max_qos": 1, "retain_available": False},
                           mosquitto=["max_qos 1", "retain_available false"])
    ack = raw5_client(b).mqtt_connect(unique("caps"))
    assert ack.reason == 0
    assert (ack.properties.get("maximum_qos"), ack.properties.get("retain_available")) == (1, 0), ack


@pytest.mark.fulmar_only  # mosquitto cannot switch wildcard, subscription-identifier or shared subscriptions off
def test_connack_advertises_disabled_wildcard_subscription_identifier_and_shared(broker_with_config, raw5_client):
    b = broker_with_config(mqtt={"wildcard_subscriptions": False, "subscription_identifiers": False,
                                 "shared_subscriptions": False})
    ack = raw5_client(b).mqtt_connect(unique("caps"))
    assert ack.reason == 0
    assert {k: ack.properties.get(k) for k in AVAILABILITY} == {
        "maximum_qos": None, "retain_available": None, "wildcard_subscription_available": 0,
        "subscription_identifier_available": 0, "shared_subscription_available": 0}


def test_server_keep_alive_caps_a_longer_requested_keepalive(broker_with_config, raw5_client):
    # [MQTT-3.2.2-21] the client must use the Server Keep Alive the server returns.
    b = broker_with_config(mqtt={"max_keep_alive_secs": 30}, mosquitto=["max_keepalive 30"])
    long_ack = raw5_client(b).mqtt_connect(unique("ka"), keepalive=120)
    assert long_ack.reason == 0 and long_ack.properties.get("server_keep_alive") == 30, long_ack
    short_ack = raw5_client(b).mqtt_connect(unique("ka"), keepalive=10)
    assert short_ack.reason == 0 and short_ack.properties.get("server_keep_alive", 10) == 10, short_ack


def test_server_keep_alive_replaces_a_requested_keepalive_of_zero(broker_with_config, raw5_client):
    b = broker_with_config(mqtt={"max_keep_alive_secs": 30}, mosquitto=["max_keepalive 30"])
    ack = raw5_client(b).mqtt_connect(unique("ka0"), keepalive=0)
    assert ack.reason == 0 and ack.properties.get("server_keep_alive") == 30, ack


@pytest.mark.fulmar_only  # mosquitto has no upper bound on the Session Expiry Interval
def test_session_expiry_above_server_maximum_is_lowered_in_connack(broker_with_config, raw5_client):
    # Spec 3.2.2.3.2: the server may use a smaller Session Expiry Interval and then must say so in CONNACK.
    b = broker_with_config(mqtt={"max_session_expiry_secs": 5})
    high = raw5_client(b).mqtt_connect(unique("sei"), properties={"session_expiry_interval": 100})
    assert high.reason == 0 and high.properties.get("session_expiry_interval") == 5, high
    low = raw5_client(b).mqtt_connect(unique("sei"), properties={"session_expiry_interval": 3})
    assert low.reason == 0 and low.properties.get("session_expiry_interval", 3) == 3, low


@pytest.mark.fulmar_only  # mosquitto offers no Response Information
def test_response_information_is_sent_only_when_requested(broker_with_config, raw5_client):
    b = broker_with_config(mqtt={"response_information": "replies/{client_id}"})
    cid = unique("rri")
    asked = raw5_client(b).mqtt_connect(cid, properties={"request_response_information": 1})
    assert asked.reason == 0 and asked.properties.get("response_information") == f"replies/{cid}", asked
    # [MQTT-3.1.2-28] Request Response Information 0 (the default): the server must not send it.
    silent = raw5_client(b).mqtt_connect(unique("rri"))
    assert silent.reason == 0 and "response_information" not in silent.properties, silent


def test_unknown_authentication_method_is_refused_with_0x8c(broker, raw5_client):
    # Reason code 0x8C Bad authentication method; then [MQTT-3.2.2-7] the server closes the connection.
    c = raw5_client(broker)
    ack = c.mqtt_connect(unique("auth"), properties={"authentication_method": "X-NO-SUCH-METHOD"})
    assert ack.reason == mqtt5_raw.BAD_AUTHENTICATION_METHOD, ack
    assert c.wait_closed(CLOSE_WAIT), "connection left open after a refused CONNECT"


@pytest.mark.fulmar_only  # mosquitto closes the connection without a DISCONNECT reason code
def test_auth_packet_without_authentication_method_is_disconnected_with_protocol_error(broker, raw5_client):
    # Spec 4.12: AUTH is only allowed after a CONNECT with an Authentication Method: protocol error 0x82.
    c = raw5_client(broker)
    assert c.mqtt_connect(unique("auth")).reason == 0
    c.send(mqtt5_raw.auth(0x18, {"authentication_method": "SCRAM-SHA-256"}))
    d = c.expect_server_disconnect(CLOSE_WAIT)
    assert d is not None and d.reason == mqtt5_raw.PROTOCOL_ERROR, d
    assert c.wait_closed(CLOSE_WAIT)


def test_connack_is_a_v5_connack_with_properties(broker, raw5_client):
    # The CONNACK to a v5 CONNECT has the v5 shape (flags, reason, property block) and the session is usable.
    c = raw5_client(broker)
    ack = c.mqtt_connect(unique("shape"))
    assert ack.ptype == CONNACK and ack.reason == 0 and ack.session_present is False
    c.send(mqtt5_raw.mqtt_raw.pingreq())
    c.expect(mqtt5_raw.mqtt_raw.PINGRESP)
