"""What Fulmar acknowledged survives a restart: retained messages, persistent sessions with their
subscriptions and queued messages (docs/architecture.md, Persistence). Fulmar only: these use its
``--data-dir`` / ``--no-persistence`` flags and restart the same broker."""

from __future__ import annotations

import subprocess
import time

import pytest

import mqtt5_raw
import mqtt_raw

from conftest import fulmar_binary, free_port
from durability_helpers import Restartable
from helpers import WAIT, rss_kb, unique

pytestmark = pytest.mark.fulmar_only

V5_QUOTA_EXCEEDED = 0x97


@pytest.fixture
def restartable(tmp_path, request):
    made: list[Restartable] = []

    def make(*extra: str) -> Restartable:
        r = Restartable(tmp_path, *extra)
        made.append(r)
        r.start()
        return r

    yield make
    for r in made:
        if r.broker is not None and r.broker.alive():
            r.stop()


@pytest.mark.parametrize("hard", [False, True], ids=["sigterm", "sigkill"])
def test_retained_message_survives_a_restart(restartable, mqtt_client, hard):
    broker = restartable()
    topic = unique("ret") + "/t"
    pub = mqtt_client(broker.broker).connect()
    pub.publish(topic, b"first", qos=1, retain=True)
    pub.publish(topic, b"kept", qos=1, retain=True)
    pub.stop()
    broker.restart(hard=hard)
    sub = mqtt_client(broker.broker).connect()
    sub.subscribe(topic, qos=1)
    m = sub.expect_message()
    assert (m.payload, m.retain) == (b"kept", True)


@pytest.mark.parametrize("hard", [False, True], ids=["sigterm", "sigkill"])
def test_persistent_session_keeps_subscription_and_queued_messages_across_restart(restartable, mqtt_client, hard):
    broker = restartable()
    topic, cid = unique("dur") + "/q", unique("sub")
    sub = mqtt_client(broker.broker, client_id=cid, clean_session=False).connect()
    sub.subscribe(topic, qos=1)
    sub.disconnect()
    pub = mqtt_client(broker.broker).connect()
    for i in range(5):
        pub.publish(topic, f"m{i}".encode(), qos=1)
    pub.stop()
    broker.restart(hard=hard)
    sub = mqtt_client(broker.broker, client_id=cid, clean_session=False).connect()
    assert sub.session_present
    got = [sub.expect_message().payload for _ in range(5)]
    assert got == [f"m{i}".encode() for i in range(5)]
    # The subscription itself survived: a new message arrives live.
    pub = mqtt_client(broker.broker).connect()
    pub.publish(topic, b"live", qos=1)
    assert sub.expect_message().payload == b"live"


def test_no_persistence_forgets_everything(tmp_path, mqtt_client):
    broker = Restartable(tmp_path, "--no-persistence")
    broker.argv = lambda: [fulmar_binary(), "serve", "--listen", f"127.0.0.1:{broker.port}", "--no-persistence"]
    broker.start()
    try:
        topic, cid = unique("mem") + "/t", unique("sub")
        sub = mqtt_client(broker.broker, client_id=cid, clean_session=False).connect()
        sub.subscribe(topic, qos=1)
        sub.disconnect()
        pub = mqtt_client(broker.broker).connect()
        pub.publish(topic, b"retained", qos=1, retain=True)
        pub.stop()
        broker.restart()
        sub = mqtt_client(broker.broker, client_id=cid, clean_session=False).connect()
        assert not sub.session_present
        sub.subscribe(topic, qos=1)
        with pytest.raises(AssertionError):
            sub.expect_message(timeout=0.5)
        assert not (tmp_path / "data").exists()
    finally:
        broker.stop()


def test_corrupt_store_stops_the_broker_with_a_clear_message(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "fulmar.redb").write_bytes(b"this is not a fulmar store" * 100)
    argv = [fulmar_binary(), "serve", "--listen", f"127.0.0.1:{free_port()}", "--data-dir", str(data)]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=20, stdin=subprocess.DEVNULL)
    assert r.returncode == 1, r.stderr
    assert "corrupt" in r.stderr and str(data) in r.stderr, r.stderr


def test_offline_memory_queue_keeps_no_read_slab_alive(start_fulmar, mqtt_client, raw_client):
    """Without persistence an offline session's queue is in memory. A message decoded from a read of
    4 KiB or more is a slice of the 256 KiB read slab that read landed in; queued for an offline session
    it is copied out (docs/limits.md), so 200 such messages, each read after a burst of 280 KB from
    another client (so each from a different slab), grow the broker's RSS by about their own 0.8 MB,
    not by 200 slabs (50 MB: what the broker grew by when the queue kept them)."""
    broker = start_fulmar(["--no-persistence"])
    topic, cid = unique("sparse") + "/x", unique("sleeper")
    sub = mqtt_client(broker, client_id=cid, clean_session=False).connect()
    sub.subscribe(topic, qos=1)
    sub.disconnect()
    bulk = raw_client(broker)
    bulk.send(mqtt_raw.connect(unique("bulk")))
    bulk.expect(mqtt_raw.CONNACK)
    burst = mqtt_raw.publish(unique("nobody") + "/b", b"b" * 4096) * 69
    pub = mqtt_client(broker).connect()
    payload = lambda i: i.to_bytes(4, "big") * 1024  # noqa: E731

    def round_(i: int, to: str) -> None:
        # The burst's last message is QoS 1: its PUBACK says the whole burst was read.
        bulk.send(burst + mqtt_raw.publish(to + "/b", b"b" * 4096, qos=1, packet_id=i % 65535 + 1))
        bulk.expect(mqtt_raw.PUBACK)
        pub.publish(to, payload(i), qos=1)

    for i in range(50):  # the same traffic to a topic nobody holds: the allocator's warm-up
        round_(i, unique("warm"))
    before = rss_kb(broker.proc.pid)
    for i in range(200):
        round_(i, topic)
    grown_kb = rss_kb(broker.proc.pid) - before
    assert grown_kb < 16 * 1024, f"RSS grew {grown_kb} KB for 800 KB queued offline"

    sub = mqtt_client(broker, client_id=cid, clean_session=False).connect()
    assert sub.session_present
    got = [sub.expect_message().payload for _ in range(200)]
    assert [int.from_bytes(p[:4], "big") for p in got] == list(range(200))
    assert all(p == payload(i) for i, p in enumerate(got))


def test_offline_queue_is_kept_on_disk_not_in_memory(tmp_path, restartable, mqtt_client):
    """An offline persistent session's queued messages live in the store, not in the broker's memory
    (docs/limits.md, offline queues): queueing 14 MB for it must not grow the broker's RSS by anything
    like 14 MB; a queue held in memory grows it by at least that. When the client comes back, every
    message is read back from the store and delivered in order."""
    config = tmp_path / "small-cache.toml"
    # A small page cache, so that what the store engine caches does not hide what the queue holds.
    config.write_text("[persistence]\ncache_bytes = 2097152\n")
    broker = restartable("--config", str(config))
    topic, cid = unique("spill") + "/q", unique("sub")
    sub = mqtt_client(broker.broker, client_id=cid, clean_session=False).connect()
    sub.subscribe(topic, qos=1)
    sub.disconnect()
    pub = mqtt_client(broker.broker).connect()
    count, size = 900, 16 * 1024
    payload = lambda i: i.to_bytes(4, "big") * (size // 4)  # noqa: E731
    # Warm up the allocator and the store with the same traffic to a topic nobody holds.
    for i in range(50):
        pub.publish(unique("warm"), payload(i), qos=1)
    before = rss_kb(broker.broker.proc.pid)
    for i in range(count):
        pub.publish(topic, payload(i), qos=1)
    grown_kb = rss_kb(broker.broker.proc.pid) - before
    queued_kb = count * size // 1024
    assert grown_kb < queued_kb // 3, f"RSS grew {grown_kb} KB while {queued_kb} KB were queued offline"

    sub = mqtt_client(broker.broker, client_id=cid, clean_session=False).connect()
    assert sub.session_present
    got = [sub.expect_message().payload for _ in range(count)]
    assert [int.from_bytes(p[:4], "big") for p in got] == list(range(count))
    assert all(p == payload(i) for i, p in enumerate(got))


def test_restored_session_keeps_its_username_for_acl_checks(tmp_path, restartable, mqtt_client):
    """A persistent session's subscription is checked against the ACL on every delivery with the
    session's username. After a restart the restored session must still be that user: alice may read
    alice/#, an anonymous client may not, so a restored session that forgot its username gets nothing."""
    from security_helpers import write_password_file

    pw = write_password_file(tmp_path / "passwords", {"alice": "a-pw"})
    acl = tmp_path / "acl"
    acl.write_text("user alice\ntopic readwrite alice/#\n")
    broker = restartable("--password-file", str(pw), "--acl-file", str(acl))
    cid = unique("alice")
    sub = mqtt_client(broker.broker, client_id=cid, clean_session=False)
    sub.paho.username_pw_set("alice", "a-pw")
    sub.connect()
    sub.subscribe("alice/#", qos=1)
    sub.disconnect()
    broker.restart(hard=True)
    pub = mqtt_client(broker.broker)
    pub.paho.username_pw_set("alice", "a-pw")
    pub.connect()
    pub.publish("alice/news", b"for alice", qos=1)
    pub.stop()
    sub = mqtt_client(broker.broker, client_id=cid, clean_session=False)
    sub.paho.username_pw_set("alice", "a-pw")
    sub.connect()
    assert sub.session_present
    assert sub.expect_message().payload == b"for alice"


def packets_until_closed(client) -> list:
    """Every packet the broker sends until it closes the connection (fails on a timeout instead)."""
    got = []
    while True:
        try:
            got.append(client.read_packet(WAIT))
        except mqtt_raw.ConnectionClosed:
            return got


def test_a_full_store_refuses_qos1_with_0x97_and_never_acknowledges_what_it_did_not_keep(
        tmp_path, restartable, raw_client, raw5_client):
    """[persistence] max_store_bytes bounds the message bodies the store holds. Once it is reached a QoS 1
    message for a persistent session is refused: MQTT 5 gets PUBACK 0x97 Quota exceeded; MQTT 3.1.1 has no
    negative PUBACK, so its connection is closed without one (the client sends the message again later)
    rather than the message being acknowledged and dropped. Draining the queue makes room again."""
    config = tmp_path / "small-store.toml"
    config.write_text("[persistence]\nmax_store_bytes = 40000\n")
    broker = restartable("--config", str(config)).broker
    topic, cid = unique("full") + "/t", unique("sub")
    sub = raw_client(broker)
    assert sub.mqtt_connect(cid, clean_session=False).return_code == 0
    assert sub.mqtt_subscribe(1, [(topic, 1)]).granted == [1]
    sub.mqtt_disconnect()

    pub5 = raw5_client(broker)
    assert pub5.mqtt_connect(unique("pub5")).reason == 0
    reasons = []
    for pid in range(1, 11):
        pub5.send(mqtt5_raw.publish(topic, bytes([pid]) * 10_000, qos=1, packet_id=pid))
        ack = pub5.expect(mqtt_raw.PUBACK)
        assert ack.packet_id == pid
        reasons.append(ack.reason)
        if ack.reason == V5_QUOTA_EXCEEDED:
            break
    accepted = reasons.index(V5_QUOTA_EXCEEDED) if V5_QUOTA_EXCEEDED in reasons else None
    assert accepted is not None and accepted >= 3, f"PUBACK reasons {reasons}: 40 kB hold 3 of 10 kB"

    pub3 = raw_client(broker)
    assert pub3.mqtt_connect(unique("pub3")).return_code == 0
    pub3.send(mqtt_raw.publish(topic, b"x" * 10_000, qos=1, packet_id=1))
    assert [p.name for p in packets_until_closed(pub3)] == [], "3.1.1: closed, and no PUBACK"

    back = raw_client(broker)
    assert back.mqtt_connect(cid, clean_session=False).session_present
    for i in range(accepted):
        p = back.expect(mqtt_raw.PUBLISH)
        assert p.payload == bytes([i + 1]) * 10_000
        back.send(mqtt_raw.puback(p.packet_id))
    # Room again once the acknowledgements commit: a 3.1.1 publisher's message is taken and acknowledged.
    deadline = time.monotonic() + WAIT
    while True:
        retry = raw_client(broker)
        assert retry.mqtt_connect(unique("pub3")).return_code == 0
        retry.send(mqtt_raw.publish(topic, b"after", qos=1, packet_id=1))
        got = packets_until_closed_or_first(retry)
        if got is not None:
            assert got.ptype == mqtt_raw.PUBACK
            break
        assert time.monotonic() < deadline, "the store never made room after the queue drained"
    assert back.expect(mqtt_raw.PUBLISH).payload == b"after"


def packets_until_closed_or_first(client):
    """The first packet from the broker, or None if it closes the connection first."""
    try:
        return client.read_packet(WAIT)
    except mqtt_raw.ConnectionClosed:
        return None
