"""Sessions: clean_session=0 persistence, session present, redelivery of unacknowledged messages, takeover."""

import pytest

import mqtt_raw
from helpers import MARKER, V311, unique


def test_persistent_session_receives_qos1_and_qos2_published_while_offline_in_order(broker, mqtt_client, proto):
    # [MQTT-3.1.2-4] a clean_session=0 session keeps its subscriptions and queues QoS 1/2 while offline.
    cid, topic = unique("persist"), f"{unique('persist')}/t"
    sub = mqtt_client(broker, client_id=cid, proto=proto, clean_session=False).connect()
    # Subscribed at QoS 1, so every message arrives at QoS 1 and paho's on_message order is the wire order
    # (paho hands a QoS 2 delivery to the application only at PUBREL, which would reorder mixed QoS).
    sub.subscribe(topic, 1)
    sub.disconnect()

    pub = mqtt_client(broker, proto=proto).connect()
    sent = [(b"m1", 1), (b"m2", 2), (b"m3", 1), (b"m4", 2), (b"m5", 2)]
    for payload, qos in sent:
        pub.publish(topic, payload, qos=qos)

    back = mqtt_client(broker, client_id=cid, proto=proto, clean_session=False).connect()
    got = [back.expect_message() for _ in sent]
    assert [(m.payload, m.qos) for m in got] == [(payload, 1) for payload, _ in sent]
    # Still subscribed: live messages keep flowing to the resumed session.
    pub.publish(topic, MARKER, qos=1)
    assert [m.payload for m in back.collect_until(MARKER)] == []


def test_session_present_flag_reflects_stored_session(broker, mqtt_client):
    # [MQTT-3.2.2-1..3] (3.1.1 only; in 3.1 that CONNACK byte is reserved).
    cid = unique("sp")
    first = mqtt_client(broker, client_id=cid, proto=V311, clean_session=False).connect()
    assert first.session_present is False, "no session existed yet"
    first.subscribe(f"{cid}/t", 1)
    first.disconnect()

    resumed = mqtt_client(broker, client_id=cid, proto=V311, clean_session=False).connect()
    assert resumed.session_present is True
    resumed.disconnect()

    clean = mqtt_client(broker, client_id=cid, proto=V311, clean_session=True).connect()
    assert clean.session_present is False, "clean session must report session present = 0"
    clean.disconnect()

    # The clean session discarded the stored one; and a clean session leaves nothing behind either.
    after = mqtt_client(broker, client_id=cid, proto=V311, clean_session=False).connect()
    assert after.session_present is False


def test_clean_session_discards_subscriptions(broker, mqtt_client, proto):
    cid, topic = unique("cleanx"), f"{unique('cleanx')}/t"
    c = mqtt_client(broker, client_id=cid, proto=proto, clean_session=False).connect()
    c.subscribe(topic, 1)
    c.disconnect()
    fresh = mqtt_client(broker, client_id=cid, proto=proto, clean_session=True).connect()
    fresh.subscribe(f"{topic}/marker", 1)
    pub = mqtt_client(broker, proto=proto).connect()
    pub.publish(topic, b"old-subscription", qos=1)
    pub.publish(f"{topic}/marker", MARKER, qos=1)
    assert [m.payload for m in fresh.collect_until(MARKER)] == []


@pytest.mark.fulmar_only
def test_qos0_published_while_offline_is_not_queued_for_persistent_session(broker, mqtt_client, proto):
    cid, topic = unique("q0off"), f"{unique('q0off')}/t"
    sub = mqtt_client(broker, client_id=cid, proto=proto, clean_session=False).connect()
    sub.subscribe(topic, 1)
    sub.disconnect()

    pub = mqtt_client(broker, proto=proto).connect()
    pub.publish(topic, b"zero", qos=0)
    pub.publish(topic, b"one", qos=1)

    back = mqtt_client(broker, client_id=cid, proto=proto, clean_session=False).connect()
    pub.publish(topic, MARKER, qos=1)
    assert [m.payload for m in back.collect_until(MARKER)] == [b"one"]


def test_unacknowledged_qos1_is_redelivered_with_dup_and_same_packet_id_on_resume(broker, mqtt_client, raw_client, proto):
    # [MQTT-4.4.0-1] on reconnect with clean_session=0 the server re-sends unacknowledged PUBLISH packets
    # with their original packet identifiers, [MQTT-3.3.1-1] with DUP=1, before newer messages (4.6).
    cid, topic = unique("redeliver"), f"{unique('redeliver')}/t"
    c = raw_client(broker)
    assert c.mqtt_connect(cid, level=proto.level, clean_session=False).return_code == 0
    c.mqtt_subscribe(1, [(topic, 1)])
    pub = mqtt_client(broker, proto=proto).connect()
    pub.publish(topic, b"first", qos=1)
    original = c.expect(mqtt_raw.PUBLISH)
    assert (original.payload, original.qos, original.dup) == (b"first", 1, False)
    c.mqtt_disconnect()  # no PUBACK; waits until the broker has closed the connection

    pub.publish(topic, b"second", qos=1)  # queued for the offline session

    c2 = raw_client(broker)
    ack = c2.mqtt_connect(cid, level=proto.level, clean_session=False)
    assert ack.return_code == 0
    if proto.level == mqtt_raw.LEVEL_V311:
        assert ack.session_present
    again = c2.expect(mqtt_raw.PUBLISH)
    assert (again.payload, again.qos, again.dup, again.packet_id) == (b"first", 1, True, original.packet_id)
    c2.send(mqtt_raw.puback(again.packet_id))
    newer = c2.expect(mqtt_raw.PUBLISH)
    assert (newer.payload, newer.qos, newer.dup) == (b"second", 1, False)
    c2.send(mqtt_raw.puback(newer.packet_id))
    c2.mqtt_disconnect()


def test_unacknowledged_qos2_is_redelivered_on_resume(broker, mqtt_client, raw_client, proto):
    cid, topic = unique("redeliv2"), f"{unique('redeliv2')}/t"
    c = raw_client(broker)
    assert c.mqtt_connect(cid, level=proto.level, clean_session=False).return_code == 0
    c.mqtt_subscribe(1, [(topic, 2)])
    pub = mqtt_client(broker, proto=proto).connect()
    pub.publish(topic, b"exactly", qos=2)
    original = c.expect(mqtt_raw.PUBLISH)
    assert (original.payload, original.qos) == (b"exactly", 2)
    c.mqtt_disconnect()  # no PUBREC

    c2 = raw_client(broker)
    assert c2.mqtt_connect(cid, level=proto.level, clean_session=False).return_code == 0
    again = c2.expect(mqtt_raw.PUBLISH)
    assert (again.payload, again.qos, again.dup, again.packet_id) == (b"exactly", 2, True, original.packet_id)
    c2.send(mqtt_raw.pubrec(again.packet_id))
    rel = c2.expect(mqtt_raw.PUBREL)
    assert rel.packet_id == again.packet_id and rel.flags == 0x02
    c2.send(mqtt_raw.pubcomp(again.packet_id))
    c2.mqtt_disconnect()


def test_second_connection_with_same_client_id_takes_over_and_fires_first_will(broker, mqtt_client, raw_client, proto):
    # [MQTT-3.1.4-2] the server disconnects the existing client with that id; the first connection ended
    # without DISCONNECT, so its will is published.
    cid, will_topic = unique("takeover"), f"{unique('takeover')}/will"
    watcher = mqtt_client(broker, proto=proto).connect()
    watcher.subscribe(will_topic, 1)

    first = raw_client(broker)
    will = mqtt_raw.Will(will_topic, b"first-gone", qos=1)
    assert first.mqtt_connect(cid, level=proto.level, will=will).return_code == 0
    second = raw_client(broker)
    assert second.mqtt_connect(cid, level=proto.level).return_code == 0

    assert first.wait_closed(timeout=5), "first connection was not closed on takeover"
    m = watcher.expect_message()
    assert (m.topic, m.payload) == (will_topic, b"first-gone")

    # The new connection is the live one.
    second.send(mqtt_raw.pingreq())
    second.expect(mqtt_raw.PINGRESP)
