"""MQTT 5 request / response (spec 4.10) and the application properties the broker must forward unchanged
[MQTT-3.3.2-4, 3.3.2-15 .. 3.3.2-20]."""

from helpers import unique

USER_PROPS = [("k", "1"), ("a", "2"), ("k", "3"), ("ünï", "cödé")]  # repeated key, order, non-ASCII


def test_application_properties_reach_a_v5_subscriber_unchanged(broker, mqtt5_client):
    topic = f"{unique('rr')}/req"
    sub = mqtt5_client(broker).connect()
    sub.subscribe(topic, 1)
    pub = mqtt5_client(broker).connect()
    pub.publish5(topic, "héllo".encode(), qos=1, ResponseTopic=f"{topic}/reply", CorrelationData=b"\x00\xffid-1",
                 ContentType="text/plain; charset=utf-8", PayloadFormatIndicator=1, UserProperty=USER_PROPS)
    m = sub.expect_message()
    assert m.payload == "héllo".encode()
    got = {k: m.prop(k) for k in ("ResponseTopic", "CorrelationData", "ContentType", "PayloadFormatIndicator",
                                  "UserProperty")}
    assert got == {"ResponseTopic": f"{topic}/reply", "CorrelationData": b"\x00\xffid-1",
                   "ContentType": "text/plain; charset=utf-8", "PayloadFormatIndicator": 1,
                   "UserProperty": USER_PROPS}


def test_message_without_properties_arrives_without_them(broker, mqtt5_client):
    topic = f"{unique('rr0')}/t"
    sub = mqtt5_client(broker).connect()
    sub.subscribe(topic, 1)
    mqtt5_client(broker).connect().publish5(topic, b"bare", qos=1)
    m = sub.expect_message()
    leaked = {k for k in ("ResponseTopic", "CorrelationData", "ContentType", "PayloadFormatIndicator",
                          "UserProperty") if k in m.properties}
    assert m.payload == b"bare" and leaked == set(), m


def test_response_reaches_the_requester_with_its_correlation_data(broker, mqtt5_client):
    base = unique("rrt")
    requester = mqtt5_client(broker).connect()
    requester.subscribe(f"{base}/reply/#", 1)
    responder = mqtt5_client(broker).connect()
    responder.subscribe(f"{base}/service", 1)
    for n in (1, 2):
        requester.publish5(f"{base}/service", f"q{n}".encode(), qos=1, ResponseTopic=f"{base}/reply/{n}",
                           CorrelationData=f"c{n}".encode())
    for _ in (1, 2):
        req = responder.expect_message()
        responder.publish5(req.prop("ResponseTopic"), b"answer to " + req.payload, qos=1,
                           CorrelationData=req.prop("CorrelationData"))
    got = sorted((m.topic, m.payload, m.prop("CorrelationData")) for m in
                 (requester.expect_message(), requester.expect_message()))
    assert got == [(f"{base}/reply/1", b"answer to q1", b"c1"), (f"{base}/reply/2", b"answer to q2", b"c2")]


def test_retained_message_keeps_its_properties(broker, mqtt5_client):
    topic = f"{unique('rrr')}/t"
    pub = mqtt5_client(broker).connect()
    pub.publish5(topic, b"state", qos=1, retain=True, ContentType="application/json", UserProperty=[("v", "2")])
    sub = mqtt5_client(broker).connect()
    sub.subscribe(topic, 1)
    m = sub.expect_message()
    assert (m.retain, m.prop("ContentType"), m.prop("UserProperty")) == (True, "application/json", [("v", "2")])
    pub.publish5(topic, b"", qos=1, retain=True)
