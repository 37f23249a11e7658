"""Publish/subscribe: QoS in both directions, topic wildcards, the `$`-topic rule, unsubscribe, ordering."""

import threading

import pytest

from helpers import MARKER, WAIT, unique


@pytest.mark.parametrize("sub_qos", [0, 1, 2])
@pytest.mark.parametrize("pub_qos", [0, 1, 2])
def test_subscriber_receives_at_min_of_publish_and_subscription_qos(broker, mqtt_client, proto, pub_qos, sub_qos):
    # [MQTT-3.8.4-6] granted QoS = requested (we ask for at most 2); delivered QoS = min(publish, granted).
    topic = f"{unique('qos')}/t"
    sub = mqtt_client(broker, proto=proto).connect()
    assert sub.subscribe(topic, sub_qos) == [sub_qos]
    pub = mqtt_client(broker, proto=proto).connect()
    pub.publish(topic, b"hello", qos=pub_qos)  # waits for PUBACK / PUBCOMP from the broker
    m = sub.expect_message()
    assert (m.topic, m.payload) == (topic, b"hello")
    assert m.qos == min(pub_qos, sub_qos)
    assert m.retain is False


@pytest.mark.parametrize(
    "topic_filter, published, expected",
    [
        # `+` matches exactly one level, including an empty one, never zero levels.
        ("w/+", ["w/a", "w/a/b", "w", "w/", "x/a"], ["w/a", "w/"]),
        # `#` matches the parent level itself and any number of levels below [MQTT-4.7.1-2].
        ("w/#", ["w", "w/a", "w/a/b/c", "wx/a", "x/w"], ["w", "w/a", "w/a/b/c"]),
        # Several wildcards, several levels.
        ("w/+/c/#", ["w/b/c", "w/b/c/d/e", "w/b/x/d", "w/b/b/c/d"], ["w/b/c", "w/b/c/d/e"]),
        ("+/+/+", ["a/b/c", "a/b", "a/b/c/d", "/b/c"], ["a/b/c", "/b/c"]),
        ("#", ["a", "a/b", "/"], ["a", "a/b", "/"]),
    ],
    ids=["plus-one-level", "hash-includes-parent", "multi-level", "plus-plus-plus", "hash-everything"],
)
def test_wildcard_filters_match_the_specified_levels(broker, mqtt_client, proto, topic_filter, published, expected):
    sub = mqtt_client(broker, proto=proto).connect()
    sub.subscribe(topic_filter, 1)
    pub = mqtt_client(broker, proto=proto).connect()
    for topic in published:
        pub.publish(topic, topic.encode(), qos=1)
    pub.publish(expected[0], MARKER, qos=1)  # matches the filter: proves nothing else is coming
    got = [m.topic for m in sub.collect_until(MARKER)]
    assert got == expected


def test_dollar_topics_are_not_matched_by_leading_wildcards(broker, mqtt_client, proto):
    # [MQTT-4.7.2-1] filters starting with a wildcard must not match topic names starting with `$`.
    hash_sub = mqtt_client(broker, proto=proto).connect()
    hash_sub.subscribe("#", 1)
    plus_sub = mqtt_client(broker, proto=proto).connect()
    plus_sub.subscribe("+/x", 1)
    dollar_sub = mqtt_client(broker, proto=proto).connect()
    dollar_sub.subscribe("$test/#", 1)
    pub = mqtt_client(broker, proto=proto).connect()
    pub.publish("$test/x", b"dollar", qos=1)
    pub.publish("marker/x", MARKER, qos=1)

    m = dollar_sub.expect_message()
    assert (m.topic, m.payload) == ("$test/x", b"dollar")
    assert [m.topic for m in hash_sub.collect_until(MARKER)] == []
    assert [m.topic for m in plus_sub.collect_until(MARKER)] == []


def test_unsubscribe_stops_delivery(broker, mqtt_client, proto):
    topic = f"{unique('unsub')}/t"
    sub = mqtt_client(broker, proto=proto).connect()
    sub.subscribe(topic, 1)
    sub.subscribe(f"{topic}/marker", 1)
    pub = mqtt_client(broker, proto=proto).connect()
    pub.publish(topic, b"before", qos=1)
    assert sub.expect_message().payload == b"before"

    sub.unsubscribe(topic)  # waits for UNSUBACK
    pub.publish(topic, b"after", qos=1)
    pub.publish(f"{topic}/marker", MARKER, qos=1)
    assert [m.payload for m in sub.collect_until(MARKER)] == []


@pytest.mark.fulmar_only
def test_overlapping_subscriptions_deliver_once_at_max_qos(broker, mqtt_client, proto):
    # Fulmar's choice (the spec allows either): one copy per client, at the highest matching QoS.
    base = unique("ovl")
    sub = mqtt_client(broker, proto=proto).connect()
    sub.subscribe(f"{base}/#", 0)
    sub.subscribe(f"{base}/b", 2)
    pub = mqtt_client(broker, proto=proto).connect()
    pub.publish(f"{base}/b", b"once", qos=2)
    pub.publish(f"{base}/b", MARKER, qos=2)
    got = sub.collect_until(MARKER)
    assert [(m.payload, m.qos) for m in got] == [(b"once", 2)]


def test_qos1_messages_from_one_publisher_arrive_in_order(broker, mqtt_client, proto):
    # [MQTT-4.6.0-6] a topic is an ordered topic: messages from one publisher keep their order.
    topic = f"{unique('order')}/t"
    n = 1000
    sub = mqtt_client(broker, proto=proto).connect()
    sub.subscribe(topic, 1)
    pub = mqtt_client(broker, proto=proto).connect()
    infos = [pub.publish_async(topic, str(i).encode(), qos=1) for i in range(n)]
    got = [int(sub.expect_message().payload) for _ in range(n)]
    assert got == list(range(n))
    for info in infos:
        info.wait_for_publish(10)
        assert info.is_published()


def test_publish_to_topic_without_subscribers_is_acknowledged(broker, mqtt_client, proto):
    pub = mqtt_client(broker, proto=proto).connect()
    for qos in (1, 2):
        pub.publish(f"{unique('nobody')}/t", b"x", qos=qos)  # asserts PUBACK / PUBCOMP arrive


def test_publishing_to_many_stored_sessions_while_others_subscribe_unsubscribe_and_leave(start_fulmar, mqtt_client):
    """Routing holds the subscription tree's read lock until every delivery is pushed, and under it takes
    store gates, the retained index and mailboxes, and submits to the store. Meanwhile SUBSCRIBE,
    UNSUBSCRIBE and session ends take the tree for writing. With the store on, QoS 1 to 20 persistent
    sessions, a retained message every tenth publish, and four threads churning subscriptions and clean
    sessions, nothing may hang and the steady subscriber gets every message, in order."""
    b = start_fulmar()
    root = unique("churn")
    stored = [mqtt_client(b, clean_session=False).connect() for _ in range(20)]
    for s in stored:
        assert s.subscribe(f"{root}/#", 1) == [1]
    steady = mqtt_client(b).connect()
    assert steady.subscribe(f"{root}/t", 1) == [1]
    stop = threading.Event()
    churned = [0] * 4
    errors: list[BaseException] = []

    def churn(n: int) -> None:
        try:
            while not stop.is_set():
                c = mqtt_client(b).connect()
                for f in (f"{root}/+", f"{root}/#", "#", f"{root}/t"):
                    c.subscribe(f, n % 3)
                c.unsubscribe(f"{root}/#")
                c.disconnect()  # a clean session ends: its remaining subscriptions leave the tree
                churned[n] += 1
        except BaseException as e:  # reported by the main thread
            errors.append(e)

    threads = [threading.Thread(target=churn, args=(n,), daemon=True) for n in range(4)]
    for t in threads:
        t.start()
    pub = mqtt_client(b).connect()
    count = 1500
    window = []
    for i in range(count):
        window.append(pub.publish_async(f"{root}/t", i.to_bytes(4, "big"), qos=1, retain=i % 10 == 0))
        if len(window) >= 50:
            info = window.pop(0)
            info.wait_for_publish(WAIT)
            assert info.is_published(), f"publish {i - 50} not acknowledged within {WAIT}s"
    for info in window:
        info.wait_for_publish(WAIT)
        assert info.is_published()
    got = [int.from_bytes(steady.expect_message().payload, "big") for _ in range(count)]
    stop.set()
    for t in threads:
        t.join(WAIT)
        assert not t.is_alive(), "a churn thread hung"
    assert not errors, errors
    assert got == list(range(count))
    assert all(n > 0 for n in churned), churned
    for s in stored[:3]:
        first = [int.from_bytes(s.expect_message().payload, "big") for _ in range(count)]
        assert first == list(range(count))
