"""MQTT 5 and MQTT 3.1 / 3.1.1 clients on the same topics: a v5 publisher's properties are dropped for older
subscribers, which still get topic, payload and QoS; an older publisher's messages reach v5 subscribers."""

import mqtt_raw
from helpers import MARKER, unique
from mqtt5_raw import sub_options


def test_v5_properties_are_dropped_for_an_older_subscriber(broker, raw_client, mqtt5_client, proto):
    # Raw v3 subscriber: if any property bytes leaked into the v3 PUBLISH they would show up in the payload.
    topic = f"{unique('mix')}/t"
    old = raw_client(broker)
    assert old.mqtt_connect(unique("mix"), level=proto.level).return_code == 0
    assert old.mqtt_subscribe(1, [(topic, 1)]).granted == [1]
    pub = mqtt5_client(broker).connect()
    pub.publish5(topic, b"payload", qos=1, MessageExpiryInterval=60, ResponseTopic="r/t", CorrelationData=b"c",
                 ContentType="text/plain", PayloadFormatIndicator=1, UserProperty=[("k", "v")])
    p = old.expect(mqtt_raw.PUBLISH)
    assert (p.topic, p.payload, p.qos) == (topic, b"payload", 1), p
    old.send(mqtt_raw.puback(p.packet_id))


def test_older_publisher_reaches_a_v5_subscriber(broker, mqtt_client, raw5_client, proto):
    topic = f"{unique('mixo')}/t"
    sub = raw5_client(broker)
    sub.mqtt_connect(unique("mixo"))
    sub.mqtt_subscribe(1, [(topic, sub_options(1))])
    pub = mqtt_client(broker, proto=proto).connect()
    pub.publish(topic, b"from-old", qos=1)
    p = sub.expect(mqtt_raw.PUBLISH)
    assert (p.topic, p.payload, p.qos, p.properties) == (topic, b"from-old", 1, {}), p


def test_v5_and_older_subscribers_on_one_topic_both_receive(broker, mqtt_client, mqtt5_client, proto):
    topic = f"{unique('mixb')}/t"
    old = mqtt_client(broker, proto=proto).connect()
    old.subscribe(topic, 1)
    new = mqtt5_client(broker).connect()
    new.subscribe(topic, 1)
    pub = mqtt5_client(broker).connect()
    pub.publish5(topic, b"both", qos=1, UserProperty=[("from", "v5")])
    pub.publish5(topic, MARKER, qos=1)
    assert [m.payload for m in old.collect_until(MARKER)] == [b"both"]
    got = new.collect_until(MARKER)
    assert [(m.payload, m.prop("UserProperty")) for m in got] == [(b"both", [("from", "v5")])]


def test_retained_v5_message_reaches_an_older_subscriber_without_properties(broker, raw_client, mqtt5_client, proto):
    topic = f"{unique('mixr')}/t"
    pub = mqtt5_client(broker).connect()
    pub.publish5(topic, b"kept", qos=1, retain=True, ContentType="text/plain", UserProperty=[("k", "v")])
    old = raw_client(broker)
    old.mqtt_connect(unique("mixr"), level=proto.level)
    old.mqtt_subscribe(1, [(topic, 1)])
    p = old.expect(mqtt_raw.PUBLISH)
    assert (p.topic, p.payload, p.retain) == (topic, b"kept", True), p
    pub.publish5(topic, b"", qos=1, retain=True)


def test_older_client_will_reaches_a_v5_subscriber(broker, raw_client, mqtt5_client, proto):
    topic = f"{unique('mixw')}/status"
    w = mqtt5_client(broker).connect()
    w.subscribe(topic, 1)
    old = raw_client(broker)
    old.mqtt_connect(unique("mixw"), level=proto.level, will=mqtt_raw.Will(topic, b"old-gone", qos=1))
    old.close()
    m = w.expect_message()
    assert (m.topic, m.payload, m.qos) == (topic, b"old-gone", 1)
