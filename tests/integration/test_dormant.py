"""Dormant connections: an idle plain-TCP connection gives up its task and waits in one epoll set
(``limits.dormant_after_ms``). Whatever wakes it — its socket, a delivery, a takeover, its keep-alive
deadline, the broker stopping — the client must see exactly what an always-awake broker would do.

The broker logs ``connection dormant`` / ``connection woke`` at debug level for its ``dormant`` module;
these tests turn that on and wait for the line, so each test knows the connection really slept."""

from __future__ import annotations

import signal

import pytest

import mqtt5_raw
import mqtt_raw
from conftest import start_broker, _register, _teardown
from helpers import MqttClient, unique

pytestmark = pytest.mark.fulmar_only

DORMANT_AFTER_MS = 100
WAIT = 10.0


@pytest.fixture
def sleepy(request, tmp_path, monkeypatch):
    """Factory: a broker whose idle connections go dormant after 100 ms, logging when they do."""
    monkeypatch.setenv("FULMAR_LOG", "info,fulmar_server::dormant=debug")
    started = []

    def start(**limits):
        b = _register(request, start_broker(tmp_path, dict(dormant_after_ms=DORMANT_AFTER_MS, **limits),
                                            name=f"broker{len(started)}"))
        started.append(b)
        return b

    yield start
    for b in started:
        _teardown(b)


def wait_dormant(broker, client_id: str, after: int = 0) -> int:
    """Wait until ``client_id``'s connection went dormant (logged after offset ``after``); returns the offset
    after that line, for the next wait."""
    m = broker.wait_log(rf'connection dormant client_id="?{client_id}"?\s', after=after, timeout=WAIT)
    return after + m.end()


def raw_connected(broker, client_id: str, **connect) -> mqtt_raw.RawClient:
    raw = mqtt_raw.RawClient(broker.host, broker.port)
    raw.send(mqtt_raw.connect(client_id, **connect))
    assert raw.expect(mqtt_raw.CONNACK).return_code == 0
    return raw


@pytest.mark.parametrize("qos", [0, 1, 2])
def test_a_dormant_subscriber_gets_every_message(sleepy, qos):
    broker = sleepy()
    topic = unique("dorm/t")
    sub = MqttClient(broker.host, broker.port).connect()
    # Dormant once connected, woken by its SUBSCRIBE, dormant again.
    slept = wait_dormant(broker, sub.client_id)
    sub.subscribe(topic, qos)
    wait_dormant(broker, sub.client_id, after=slept)
    pub = MqttClient(broker.host, broker.port).connect()
    try:
        for n in range(3):
            offset = broker.log_size()
            pub.publish(topic, f"m{n}".encode(), qos=qos)
            got = sub.expect_message(WAIT)
            assert (got.payload, got.qos) == (f"m{n}".encode(), qos)
            broker.wait_log(rf'connection woke client_id="?{sub.client_id}"? cause="?mailbox', after=offset)
            # Asleep again before the next message, which must wake it again.
            wait_dormant(broker, sub.client_id, after=offset)
    finally:
        pub.disconnect()
        sub.disconnect()


def test_a_dormant_connection_answers_its_peer(sleepy):
    broker = sleepy()
    client_id = unique("dorm-ping")
    raw = raw_connected(broker, client_id)
    wait_dormant(broker, client_id)
    raw.send(mqtt_raw.pingreq())
    raw.expect(mqtt_raw.PINGRESP, timeout=WAIT)
    woke = broker.wait_log(rf'connection woke client_id="?{client_id}"? cause="?socket', timeout=WAIT)
    # Asleep again, it still takes a SUBSCRIBE and delivers to it.
    wait_dormant(broker, client_id, after=woke.end())
    topic = unique("dorm/s")
    raw.send(mqtt_raw.subscribe(1, [(topic, 1)]))
    assert raw.expect(mqtt_raw.SUBACK, timeout=WAIT).granted == [1]
    pub = MqttClient(broker.host, broker.port).connect()
    pub.publish(topic, b"hello", qos=1)
    pub.disconnect()
    got = raw.expect(mqtt_raw.PUBLISH, timeout=WAIT)
    assert (got.topic, got.payload, got.qos) == (topic, b"hello", 1)
    raw.send(mqtt_raw.puback(got.packet_id))
    raw.send(mqtt_raw.disconnect())


def dormant_with_will(broker, name: str, payload: bytes, **connect):
    """A raw client with a QoS 1 will, dormant, and a paho client subscribed to the will's topic."""
    will_topic = unique(f"dorm/{name}")
    watcher = MqttClient(broker.host, broker.port).connect()
    watcher.subscribe(will_topic, 1)
    client_id = unique(f"dorm-{name}")
    raw = raw_connected(broker, client_id, will=mqtt_raw.Will(will_topic, payload, qos=1), **connect)
    wait_dormant(broker, client_id)
    return watcher, client_id, raw


def test_a_dormant_connection_that_vanishes_publishes_its_will(sleepy):
    broker = sleepy()
    watcher, _, raw = dormant_with_will(broker, "will", b"gone")
    raw.sock.close()  # no DISCONNECT: the will is due [MQTT-3.1.2-8]
    assert watcher.expect_message(WAIT).payload == b"gone"
    watcher.disconnect()


def test_keep_alive_expires_while_dormant(sleepy):
    broker = sleepy()
    watcher, client_id, raw = dormant_with_will(broker, "ka", b"expired", keepalive=1)
    # Silent past 1.5 × keep-alive [MQTT-3.1.2-24]: the broker closes it and publishes the will.
    assert raw.wait_closed(WAIT), "a silent dormant connection was not closed at its keep-alive deadline"
    assert watcher.expect_message(WAIT).payload == b"expired"
    broker.wait_log(rf'connection woke client_id="?{client_id}"? cause="?keep-alive', timeout=WAIT)
    watcher.disconnect()


def dormant_persistent_subscriber(broker, name: str):
    """A raw client with a persistent session subscribed at QoS 1, dormant again after its SUBSCRIBE.
    Returns the client, its id, its topic and the log offset after it went dormant."""
    client_id = unique(f"dorm-{name}")
    topic = unique(f"dorm/{name}")
    raw = raw_connected(broker, client_id, clean_session=False)
    slept = wait_dormant(broker, client_id)
    raw.send(mqtt_raw.subscribe(1, [(topic, 1)]))
    raw.expect(mqtt_raw.SUBACK)
    return raw, client_id, topic, wait_dormant(broker, client_id, after=slept)


def test_a_dormant_session_is_taken_over(sleepy):
    broker = sleepy()
    first, client_id, topic, _ = dormant_persistent_subscriber(broker, "take")
    second = raw_connected_expect_session(broker, client_id)
    assert first.wait_closed(WAIT), "the dormant connection was not closed by the takeover [MQTT-3.1.4-2]"
    # The session (and its subscription) moved to the new connection.
    pub = MqttClient(broker.host, broker.port).connect()
    pub.publish(topic, b"to-second", qos=1)
    pub.disconnect()
    got = second.expect(mqtt_raw.PUBLISH, timeout=WAIT)
    assert got.payload == b"to-second"
    second.send(mqtt_raw.puback(got.packet_id))
    second.send(mqtt_raw.disconnect())


def raw_connected_expect_session(broker, client_id: str) -> mqtt_raw.RawClient:
    raw = mqtt_raw.RawClient(broker.host, broker.port)
    raw.send(mqtt_raw.connect(client_id, clean_session=False))
    connack = raw.expect(mqtt_raw.CONNACK, timeout=WAIT)
    assert (connack.return_code, connack.session_present) == (0, True)
    return raw


def test_a_dormant_persistent_session_whose_socket_closes_is_kept(sleepy):
    """A dormant connection whose peer closes its socket ends without a task of its own (the dormant
    set closes it where it sees the end): its persistent session must be parked all the same, with its
    subscription and what was queued for it meanwhile."""
    broker = sleepy()
    first, client_id, topic, slept = dormant_persistent_subscriber(broker, "gone")
    first.sock.close()
    broker.wait_log(rf'connection woke client_id="?{client_id}"? cause="?socket', after=slept, timeout=WAIT)
    # Whether or not the session is parked yet, the message is queued for it and the next
    # connection gets the session (from where it was parked, or handed over).
    pub = MqttClient(broker.host, broker.port).connect()
    pub.publish(topic, b"while-away", qos=1)
    pub.disconnect()
    second = raw_connected_expect_session(broker, client_id)
    got = second.expect(mqtt_raw.PUBLISH, timeout=WAIT)
    assert (got.topic, got.payload, got.qos) == (topic, b"while-away", 1)
    second.send(mqtt_raw.puback(got.packet_id))
    second.send(mqtt_raw.disconnect())


def test_dormant_connections_count_against_max_connections(sleepy):
    broker = sleepy(max_connections=2)
    ids = [unique("dorm-cap") for _ in range(2)]
    held = [raw_connected(broker, client_id) for client_id in ids]
    for client_id in ids:
        wait_dormant(broker, client_id)
    extra = mqtt_raw.RawClient(broker.host, broker.port)
    extra.send(mqtt_raw.connect(unique("dorm-over")))
    assert extra.wait_closed(WAIT), "a third connection was admitted while two were dormant"
    for raw in held:
        raw.send(mqtt_raw.disconnect())


def test_stopping_the_broker_disconnects_dormant_mqtt5_clients(tmp_path, monkeypatch):
    # Its own broker: this test stops it.
    monkeypatch.setenv("FULMAR_LOG", "info,fulmar_server::dormant=debug")
    broker = start_broker(tmp_path, dict(dormant_after_ms=DORMANT_AFTER_MS), name="stopping")
    try:
        client_id = unique("dorm-stop")
        raw = mqtt5_raw.Raw5Client(broker.host, broker.port)
        assert raw.mqtt_connect(client_id).reason == 0
        wait_dormant(broker, client_id)
        broker.proc.send_signal(signal.SIGTERM)
        disconnect = raw.expect_server_disconnect(timeout=WAIT)
        assert disconnect is not None and disconnect.reason == mqtt5_raw.SERVER_SHUTTING_DOWN, disconnect
        assert broker.proc.wait(WAIT) == 0
    finally:
        broker.terminate()
