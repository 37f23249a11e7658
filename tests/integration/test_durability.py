"""What Fulmar acknowledged survives a restart: retained messages, persistent sessions with their
subscriptions and queued messages (docs/architecture.md, Persistence). Fulmar only: these use its
``--data-dir`` / ``--no-persistence`` flags and restart the same broker."""

from __future__ import annotations

import subprocess

import pytest

from conftest import fulmar_binary, free_port
from durability_helpers import Restartable
from helpers import unique

pytestmark = pytest.mark.fulmar_only


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
