"""`fulmar chat`: two terminal participants in one room (stdin piped), presence, /who, clean leave and will,
and reconnection without losing messages, both across a network cut and across a broker restart."""

import json
import subprocess

import pytest

from cli_helpers import GateProxy, LineProc, fulmar_bin
from conftest import Broker, free_port, start_broker
from helpers import WAIT, unique

# A reconnecting chat may be in a backoff of up to 5 s when the way back opens.
RECONNECT_WAIT = WAIT + 6


def chat(port, room, nick, *extra):
    argv = [fulmar_bin(), "chat", "-h", "127.0.0.1", "-p", str(port), "--room", room, "--nick", nick, *extra]
    proc = LineProc(argv, stdin=True, name=f"chat {nick}")
    proc.expect(rf"^\* joined room {room} as {nick}$")
    return proc


@pytest.fixture
def chats():
    """Factory for chat processes; all are killed at teardown (before the broker)."""
    made = []

    def make(*args, **kwargs):
        c = chat(*args, **kwargs)
        made.append(c)
        return c

    yield make
    for c in made:
        c.stop()


def message(nick, text):
    return rf"^\[\d\d:\d\d\] <{nick}> {text}$"


@pytest.mark.parametrize("version", ["5", "4"], ids=["v5", "v311"])
def test_two_chats_see_each_other_but_not_their_own_echo(broker, chats, version):
    room = unique("room")
    alice = chats(broker.port, room, "alice", "-V", version)
    bob = chats(broker.port, room, "bob", "-V", version)
    alice.expect(r"^\* bob joined$")
    bob.expect(r"^\* alice joined$")  # alice's retained presence
    alice.send("hello bob")
    bob.expect(message("alice", "hello bob"))
    bob.send("hi alice")
    alice.expect(message("bob", "hi alice"))
    # bob's reply left after alice's message reached bob, so an echo of alice's own message would have reached
    # her before bob's reply did (marker technique): none came.
    assert not [line for line in alice.drain() if "<alice>" in line], alice.seen
    bob.send("/who")
    bob.expect(r"^\* online: alice, bob$")
    alice.send("/quit")
    bob.expect(r"^\* alice left$")
    assert alice.wait() == 0


def test_wire_format_is_the_shared_json(broker, chats, mqtt_client):
    room = unique("room")
    watcher = mqtt_client(broker)
    watcher.connect()
    watcher.subscribe(f"chat/{room}/#", qos=1)
    alice = chats(broker.port, room, "alice")
    presence = watcher.expect_message(timeout=WAIT)
    assert (presence.topic, presence.retain, presence.qos) == (f"chat/{room}/presence/alice", False, 1)
    body = json.loads(presence.payload)
    assert body["nick"] == "alice" and body["status"] == "online" and isinstance(body["ts"], int)
    alice.send("the text")
    sent = watcher.expect_message(timeout=WAIT)
    body = json.loads(sent.payload)
    assert sent.topic == f"chat/{room}" and sent.qos == 1 and not sent.retain
    assert (body["nick"], body["text"]) == ("alice", "the text")
    assert isinstance(body["ts"], int) and body["id"]


def test_a_browser_style_message_is_printed(broker, chats, mqtt_client):
    room = unique("room")
    alice = chats(broker.port, room, "alice")
    other = mqtt_client(broker)
    other.connect()
    payload = json.dumps({"nick": "web", "text": "from the page", "ts": 1700000000000, "id": "w1"})
    other.publish(f"chat/{room}", payload.encode(), qos=1)
    alice.expect(message("web", "from the page"))


def test_eof_on_stdin_leaves_cleanly_and_a_crash_publishes_the_will(broker, chats):
    room = unique("room")
    watcher = chats(broker.port, room, "watcher")
    leaver = chats(broker.port, room, "leaver")
    watcher.expect(r"^\* leaver joined$")
    leaver.proc.stdin.close()
    assert leaver.wait() == 0
    watcher.expect(r"^\* leaver left$")
    crasher = chats(broker.port, room, "crasher")
    watcher.expect(r"^\* crasher joined$")
    crasher.proc.kill()  # no DISCONNECT: the broker publishes the will, the retained offline presence
    watcher.expect(r"^\* crasher left$")


def test_reconnects_after_a_network_cut_without_losing_messages(broker, chats):
    room = unique("room")
    proxy = GateProxy((broker.host, broker.port))
    try:
        alice = chats(proxy.port, room, "alice")
        bob = chats(broker.port, room, "bob")
        alice.expect(r"^\* bob joined$")
        bob.expect(r"^\* alice joined$")
        proxy.cut()
        alice.expect(r"^\* connection lost, reconnecting")
        bob.expect(r"^\* alice left$")  # alice's will
        bob.send("while you were away")  # queued in alice's persistent session
        alice.send("typed while disconnected")  # queued by alice's client
        proxy.open()
        alice.expect(r"^\* reconnected$", timeout=RECONNECT_WAIT)
        alice.expect(message("bob", "while you were away"))
        bob.expect(message("alice", "typed while disconnected"))
        bob.expect(r"^\* alice joined$")
    finally:
        proxy.close()


def test_reconnects_after_the_broker_restarts(tmp_path, chats):
    """The broker keeps sessions in memory only: after its restart both chats subscribe again, the line alice typed
    while it was down is delivered, and later messages flow both ways. alice goes through a proxy whose gate
    stays shut until bob has re-subscribed, so the test knows bob is listening when alice's queued line goes out."""
    room = unique("room")
    broker = start_broker(tmp_path, name="broker1")
    proxy = GateProxy((broker.host, broker.port))
    restarted = None
    alice = bob = None
    try:
        alice = chats(proxy.port, room, "alice")
        bob = chats(broker.port, room, "bob")
        alice.expect(r"^\* bob joined$")
        proxy.close_gate()
        broker.terminate()
        alice.expect(r"^\* connection lost, reconnecting")
        bob.expect(r"^\* connection lost, reconnecting")
        alice.send("typed while the broker was down")
        restarted = Broker(broker.argv, broker.port, tmp_path / "broker2.log", broker.kind)
        restarted.wait_ready()
        bob.expect(r"^\* reconnected$", timeout=RECONNECT_WAIT)
        proxy.open()
        alice.expect(r"^\* reconnected$", timeout=RECONNECT_WAIT)
        bob.expect(message("alice", "typed while the broker was down"))
        bob.send("after the restart")
        alice.expect(message("bob", "after the restart"))
        alice.send("/who")
        alice.expect(r"^\* online: alice, bob$")
    finally:
        for c in (alice, bob):
            if c is not None:
                c.stop()
        proxy.close()
        for b in (restarted, broker):
            if b is not None:
                b.terminate()


@pytest.mark.parametrize("bad", [["--room", "a/b", "--nick", "n"], ["--room", "r", "--nick", "#"]])
def test_room_and_nick_must_be_one_topic_level(bad):
    got = subprocess.run([fulmar_bin(), "chat", "-p", "1", *bad], capture_output=True, text=True, timeout=WAIT)
    assert got.returncode == 1 and "invalid" in got.stderr, got


def test_connection_refused_is_reported():
    got = subprocess.run([fulmar_bin(), "chat", "-h", "127.0.0.1", "-p", str(free_port()), "--room", "r",
                          "--nick", "n"], capture_output=True, text=True, timeout=WAIT, stdin=subprocess.DEVNULL)
    assert got.returncode == 3 and "connection refused" in got.stderr, got
