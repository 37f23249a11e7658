"""MQTT 5 Session Expiry Interval and Clean Start [MQTT-3.1.2-4 .. 3.1.2-23]: how long a session outlives its
connection, with its subscriptions and queued messages."""

import time

import mqtt5_raw
from helpers import MARKER, unique

CLOSE_WAIT = 5.0
NEVER = 0xFFFFFFFF


def persistent(mqtt5_client, broker, cid, expiry, clean_start=True):
    return mqtt5_client(broker, client_id=cid, clean_start=clean_start,
                        connect_properties={"SessionExpiryInterval": expiry} if expiry else {}).connect()


def assert_no_message_before_marker(broker, mqtt5_client, client, topic, payload=b"old"):
    """Publish ``payload`` to ``topic`` and then a marker on the client's own marker topic: nothing but the
    marker may arrive (the client is subscribed to ``{topic}/marker``)."""
    pub = mqtt5_client(broker).connect()
    pub.publish5(topic, payload, qos=1)
    client.subscribe(f"{topic}/marker", 1)
    pub.publish5(f"{topic}/marker", MARKER, qos=1)
    return [m.payload for m in client.collect_until(MARKER)]


def test_session_expiry_zero_ends_the_session_at_disconnect(broker, mqtt5_client):
    # [MQTT-3.1.2-23] absent / 0: the session ends when the network connection closes.
    cid, topic = unique("se0"), f"{unique('se0')}/t"
    c = persistent(mqtt5_client, broker, cid, 0)
    c.subscribe(topic, 1)
    c.disconnect()
    back = persistent(mqtt5_client, broker, cid, 60, clean_start=False)
    assert back.session_present is False
    assert assert_no_message_before_marker(broker, mqtt5_client, back, topic) == [], "old subscription survived"


def test_session_is_resumed_with_queued_messages_within_its_expiry(broker, mqtt5_client):
    cid, topic = unique("se10"), f"{unique('se10')}/t"
    c = persistent(mqtt5_client, broker, cid, 10)
    c.subscribe(topic, 1)
    c.disconnect()
    pub = mqtt5_client(broker).connect()
    # 0x00, not 0x10: the offline session still matches.
    assert [pub.publish5(topic, p, qos=1) for p in (b"q1", b"q2")] == [0, 0]
    back = persistent(mqtt5_client, broker, cid, 10, clean_start=False)
    assert back.session_present is True
    assert [back.expect_message().payload for _ in range(2)] == [b"q1", b"q2"]


def test_session_and_its_queued_messages_are_discarded_after_expiry(broker, mqtt5_client):
    cid, topic = unique("se2"), f"{unique('se2')}/t"
    expiry = 2
    c = persistent(mqtt5_client, broker, cid, expiry)
    c.subscribe(topic, 1)
    c.disconnect()
    pub = mqtt5_client(broker).connect()
    assert pub.publish5(topic, b"queued", qos=1) == 0, "offline session did not match"
    # Waiting out the interval is the behaviour under test: 2 s expiry + 1.5 s for the broker's expiry sweep.
    time.sleep(expiry + 1.5)
    assert pub.publish5(topic, b"after", qos=1) == mqtt5_raw.NO_MATCHING_SUBSCRIBERS, "subscription outlived expiry"
    back = persistent(mqtt5_client, broker, cid, 10, clean_start=False)
    assert back.session_present is False
    assert assert_no_message_before_marker(broker, mqtt5_client, back, f"{topic}/x") == [], "queued messages survived"


def test_session_expiry_never_keeps_the_session(broker, mqtt5_client):
    # 0xFFFFFFFF: the session does not expire (and the broker must not overflow computing a deadline).
    cid, topic = unique("senev"), f"{unique('senev')}/t"
    c = persistent(mqtt5_client, broker, cid, NEVER)
    c.subscribe(topic, 1)
    c.disconnect()
    pub = mqtt5_client(broker).connect()
    assert pub.publish5(topic, b"kept", qos=1) == 0
    back = persistent(mqtt5_client, broker, cid, NEVER, clean_start=False)
    assert back.session_present is True
    assert back.expect_message().payload == b"kept"


def test_disconnect_can_shorten_session_expiry_to_zero(broker, mqtt5_client):
    # Spec 3.14.2.2.2: DISCONNECT may change the Session Expiry Interval.
    cid, topic = unique("sedc"), f"{unique('sedc')}/t"
    c = persistent(mqtt5_client, broker, cid, 60)
    c.subscribe(topic, 1)
    c.disconnect(SessionExpiryInterval=0)
    back = persistent(mqtt5_client, broker, cid, 60, clean_start=False)
    assert back.session_present is False


def test_disconnect_can_extend_a_nonzero_session_expiry(broker, mqtt5_client):
    cid, topic = unique("seext"), f"{unique('seext')}/t"
    c = persistent(mqtt5_client, broker, cid, 1)
    c.subscribe(topic, 1)
    c.disconnect(SessionExpiryInterval=60)
    # Wait past the original 1 s interval (+1 s for a sweep): the session must still be there.
    time.sleep(2.0)
    back = persistent(mqtt5_client, broker, cid, 60, clean_start=False)
    assert back.session_present is True


def test_disconnect_setting_expiry_after_connect_with_zero_is_a_protocol_error(broker, raw5_client, mqtt5_client):
    # [MQTT-3.14.2-2] a non-zero Session Expiry Interval in DISCONNECT after 0 in CONNECT is a Protocol Error.
    cid, topic = unique("se0to"), f"{unique('se0to')}/t"
    c = raw5_client(broker)
    assert c.mqtt_connect(cid).reason == 0
    assert c.mqtt_subscribe(1, [(topic, mqtt5_raw.sub_options(1))]).reasons == [1]
    c.send(mqtt5_raw.disconnect(0, {"session_expiry_interval": 30}))
    d = c.expect_server_disconnect(CLOSE_WAIT)
    assert d is not None and d.reason == mqtt5_raw.PROTOCOL_ERROR, d
    back = persistent(mqtt5_client, broker, cid, 60, clean_start=False)
    assert back.session_present is False, "the refused expiry kept the session"


def test_clean_start_discards_the_existing_session(broker, mqtt5_client):
    # [MQTT-3.1.2-4] Clean Start 1: any existing session is discarded, session present 0.
    cid, topic = unique("cs"), f"{unique('cs')}/t"
    c = persistent(mqtt5_client, broker, cid, 60)
    c.subscribe(topic, 1)
    c.disconnect()
    fresh = persistent(mqtt5_client, broker, cid, 60, clean_start=True)
    assert fresh.session_present is False
    assert assert_no_message_before_marker(broker, mqtt5_client, fresh, topic) == [], "old subscription survived"


def test_session_expiry_from_reconnect_replaces_the_old_one(broker, mqtt5_client):
    # The interval of the latest CONNECT applies: resumed with 0, the session ends at the next disconnect.
    cid, topic = unique("serep"), f"{unique('serep')}/t"
    c = persistent(mqtt5_client, broker, cid, 60)
    c.subscribe(topic, 1)
    c.disconnect()
    again = persistent(mqtt5_client, broker, cid, 0, clean_start=False)
    assert again.session_present is True
    again.disconnect()
    last = persistent(mqtt5_client, broker, cid, 60, clean_start=False)
    assert last.session_present is False
