"""Crash test: nothing Fulmar acknowledged is lost across repeated ``kill -9``.

Publishers send numbered QoS 1 and QoS 2 messages (the QoS 1 ones retained) while persistent-session
subscribers (3.1.1, clean session 0) take them: two stay online (paho reconnects them after each crash),
two are offline throughout and connect only at the end. The broker is SIGKILLed at random moments and
restarted on the same port and data directory. At the end every acknowledged message must have reached
every subscriber (QoS 1: at least once; QoS 2: once — duplicates at QoS 2 make the test XFAIL, a known
gap, see the end of the test), in publish order per topic (redelivery duplicates allowed), and the
retained message is the last acknowledged one or a later one. Bounded to
about a minute; the counts are printed (``-s`` shows them) and attached to a failure.
"""

from __future__ import annotations

import random
import threading
import time

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from durability_helpers import Restartable
from helpers import unique

pytestmark = pytest.mark.fulmar_only

KILLS = 4
TOPICS = {1: "crash/q1", 2: "crash/q2"}
ONLINE, OFFLINE = 2, 2
# Per publisher: both topics together stay below an offline session's queue limit (1000), since
# beyond it a 3.1.1 publisher's message is refused with a PUBACK it cannot tell from success.
PER_PUBLISHER = 450
PAUSE = 0.01  # between publishes, so the kills land while messages are in flight
DRAIN_TIMEOUT = 30.0


class Sub:
    """A persistent-session subscriber on paho's own thread, reconnecting by itself."""

    def __init__(self, port: int, client_id: str):
        self.port, self.client_id = port, client_id
        self.got: dict[int, list[int]] = {1: [], 2: []}
        self.lock = threading.Lock()
        self.subscribed = threading.Event()
        self.connected = threading.Event()
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
        c.reconnect_delay_set(0.05, 0.5)
        c.on_connect = lambda *_: self.connected.set()
        c.on_message = self._on_message
        c.on_subscribe = lambda *_: self.subscribed.set()
        self.paho = c

    def _on_message(self, _c, _u, msg):
        qos = 1 if msg.topic == TOPICS[1] else 2
        with self.lock:
            self.got[qos].append(int(msg.payload))

    def start(self) -> None:
        self.paho.connect_async("127.0.0.1", self.port)
        self.paho.loop_start()

    def stop(self) -> None:
        self.paho.disconnect()
        self.paho.loop_stop()


class Publisher(threading.Thread):
    """Publishes 0, 1, 2, … at one QoS from a persistent session; records what the broker acknowledged."""

    def __init__(self, port: int, qos: int, stop: threading.Event):
        super().__init__(daemon=True)
        self.qos, self.stop_flag = qos, stop
        self.sent, self.acked = 0, []
        # A persistent session: paho re-sends an unacknowledged QoS 2 PUBLISH after a reconnect, and
        # only a stored inbound QoS 2 id lets the broker recognise it [MQTT-4.3.3-2].
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=unique(f"pub{qos}"), clean_session=False)
        c.reconnect_delay_set(0.05, 0.5)
        c.max_inflight_messages_set(0)
        c.connect_async("127.0.0.1", port)
        c.loop_start()
        self.paho = c

    def run(self) -> None:
        n = 0
        while not self.stop_flag.is_set() and n < PER_PUBLISHER:
            if not self.paho.is_connected():
                time.sleep(0.02)  # waiting for paho's reconnect, bounded by the test's own clock
                continue
            info = self.paho.publish(TOPICS[self.qos], str(n).encode(), qos=self.qos, retain=self.qos == 1)
            self.sent += 1
            try:
                info.wait_for_publish(timeout=2)
                acknowledged = info.is_published()
            except (RuntimeError, ValueError):
                # paho refused it: the connection dropped (the broker was killed) between the check
                # above and the publish. Never sent, so never acknowledged; the publisher goes on.
                acknowledged = False
            if acknowledged:
                self.acked.append(n)
            n += 1
            time.sleep(PAUSE)
        self.paho.disconnect()
        self.paho.loop_stop()


def check_delivery(qos: int, acked: list[int], got: list[int]) -> tuple[list[int], int, list[str]]:
    """Missing acknowledged numbers, duplicates, and order violations of one subscriber on one topic."""
    acked_set = set(acked)
    missing = sorted(acked_set - set(got))
    dups = len(got) - len(set(got))
    problems = []
    # Order: the first deliveries of acknowledged messages come in publish order.
    seen, first = set(), []
    for n in got:
        if n in acked_set and n not in seen:
            seen.add(n)
            first.append(n)
    if first != sorted(first):
        bad = next(i for i in range(1, len(first)) if first[i] < first[i - 1])
        problems.append(f"out of order near {first[max(0, bad - 3):bad + 3]}")
    return missing, dups, problems


def test_acknowledged_messages_survive_repeated_sigkill(tmp_path):
    broker = Restartable(tmp_path)
    broker.start()
    rng = random.Random()
    subs = [Sub(broker.port, unique(f"on{i}")) for i in range(ONLINE)]
    offline = [Sub(broker.port, unique(f"off{i}")) for i in range(OFFLINE)]
    for s in subs + offline:
        s.start()
        assert s.connected.wait(10), f"{s.client_id}: no CONNACK"
        assert s.paho.subscribe("crash/#", qos=2)[0] == mqtt.MQTT_ERR_SUCCESS
    for s in subs + offline:
        assert s.subscribed.wait(10), f"{s.client_id}: no SUBACK"
    for s in offline:
        s.stop()
    stop = threading.Event()
    publishers = [Publisher(broker.port, qos, stop) for qos in (1, 2)]
    for p in publishers:
        p.start()
    for _ in range(KILLS):
        time.sleep(rng.uniform(0.5, 2.0))
        broker.kill()
        broker.start()
    time.sleep(1.0)
    stop.set()
    for p in publishers:
        p.join(10)
    for s in offline:
        fresh = Sub(broker.port, s.client_id)
        fresh.start()
        subs.append(fresh)
    acked = {p.qos: p.acked for p in publishers}
    deadline = time.monotonic() + DRAIN_TIMEOUT
    while time.monotonic() < deadline:
        with_all = all(set(acked[q]) <= set(s.got[q]) for s in subs for q in (1, 2))
        if with_all:
            break
        time.sleep(0.1)  # polling the subscribers' progress, bounded by DRAIN_TIMEOUT
    time.sleep(0.5)  # let redelivered duplicates, if any, arrive before counting them
    report, failures = [], []
    for p in publishers:
        report.append(f"QoS {p.qos}: sent {p.sent}, acknowledged {len(p.acked)}")
    for s in subs:
        for q in (1, 2):
            missing, dups, problems = check_delivery(q, acked[q], list(s.got[q]))
            report.append(f"  {s.client_id} QoS {q}: delivered {len(s.got[q])}, duplicates {dups}, "
                          f"missing {len(missing)}")
            if missing:
                failures.append(f"{s.client_id} QoS {q}: lost acknowledged {missing[:20]}")
            failures += [f"{s.client_id} QoS {q}: {p}" for p in problems]
    # Retained: the last acknowledged QoS 1 message, or a later one whose PUBACK the crash swallowed.
    check = Sub(broker.port, unique("ret"))
    check.paho = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=check.client_id, clean_session=True)
    check.paho.on_message = check._on_message
    check.paho.on_subscribe = lambda *_: check.subscribed.set()
    check.paho.on_connect = lambda *_: check.connected.set()
    check.start()
    assert check.connected.wait(10)
    check.paho.subscribe(TOPICS[1], qos=1)
    deadline = time.monotonic() + 10
    while not check.got[1] and time.monotonic() < deadline:
        time.sleep(0.05)  # bounded wait for the retained message
    retained = check.got[1][0] if check.got[1] else None
    report.append(f"retained {retained}, last acknowledged {max(acked[1], default=None)}, kills {KILLS}")
    print("\n".join(report))
    if acked[1] and (retained is None or retained < max(acked[1])):
        failures.append(f"retained {retained} is older than the last acknowledged {max(acked[1])}")
    for s in subs + [check]:
        s.stop()
    broker.stop()
    assert all(len(acked[q]) > 50 for q in (1, 2)), "\n".join(report)
    assert not failures, "\n".join(failures + report)
    # Exactly once across crashes: a QoS 2 PUBLISH, and later its PUBREL, reach the socket only
    # after the commit that records them, so a restart never re-sends a released message.
    qos2_dups = sum(len(s.got[2]) - len(set(s.got[2])) for s in subs)
    assert qos2_dups == 0, f"{qos2_dups} QoS 2 duplicates\n" + "\n".join(report)
