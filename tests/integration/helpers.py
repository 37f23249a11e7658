"""Shared test helpers: a paho-mqtt client wrapper whose every wait is an event with a timeout, and the
marker technique for proving that a message did NOT arrive without sleeping.

The marker technique: to show that message X is not delivered, publish X, wait for its acknowledgement, then
publish a marker M that the same subscriber will receive through the same outbound path. When M arrives, X
would have arrived before it, so everything received up to M is everything the broker delivered for X.
The marker travels at X's delivered QoS: paho hands a QoS 2 message to the application at PUBREL, not at
PUBLISH, so a QoS 0/1 marker could overtake a QoS 2 message between the socket and ``on_message``.
"""

from __future__ import annotations

import itertools
import os
import queue
import socket
import threading
import uuid
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

# Default bound for one awaited event. Generous because CI machines are slow; a passing run never waits it.
WAIT = float(os.environ.get("FULMAR_TEST_WAIT", "10"))

MARKER = b"__marker__"

_counter = itertools.count()


def unique(prefix: str) -> str:
    """A client id / topic component unique within the run; at most 23 characters, as MQTT 3.1 requires."""
    return f"{prefix[:10]}-{next(_counter)}-{uuid.uuid4().hex[:6]}"[:23]


@dataclass(frozen=True)
class Proto:
    """One MQTT protocol version as both paho and the raw client name it."""

    name: str
    paho: int
    level: int  # protocol level byte in CONNECT


V31 = Proto("v31", mqtt.MQTTv31, 3)
V311 = Proto("v311", mqtt.MQTTv311, 4)
PROTOCOLS = [V31, V311]


@dataclass
class Received:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    dup: bool
    mid: int


class MqttClient:
    """paho-mqtt 2.x client on paho's loop thread; the callbacks feed events and a message queue.

    ``reconnect_on_failure=False`` makes paho's loop thread end when the broker closes the connection instead
    of reconnecting (which would hide the close, and ping-pong on session takeover), and stops paho from
    silently downgrading 3.1.1 to 3.1 when refused. ``loop_start()`` (not a hand-made ``loop()`` thread)
    matters: without paho's own thread, ``publish()`` writes to the socket from the calling thread,
    racing the loop thread's writes and reordering packets.
    """

    def __init__(self, host: str, port: int, *, client_id: str | None = None, proto: Proto = V311,
                 clean_session: bool = True, keepalive: int = 60, will: tuple | None = None):
        self.host, self.port, self.keepalive = host, port, keepalive
        self.client_id = client_id if client_id is not None else unique("paho")
        self.proto = proto
        self.messages: queue.Queue[Received] = queue.Queue()
        self.connected = threading.Event()
        self.disconnected = threading.Event()
        self.connack_rc = None
        self.session_present = None
        self._acks: dict[int, threading.Event] = {}
        self._granted: dict[int, list[int]] = {}
        self._lock = threading.Lock()
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id, clean_session=clean_session,
                        protocol=proto.paho, reconnect_on_failure=False)
        # No client-side inflight window: when paho's window (default 20) is full it queues a publish and the
        # loop thread sends it later, while the next publish() may go straight out from the test thread. That
        # reorders a pipelined stream before it reaches the broker.
        c.max_inflight_messages_set(0)
        if will is not None:
            topic, payload, qos, retain = will
            c.will_set(topic, payload, qos=qos, retain=retain)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        c.on_subscribe = self._on_subscribe
        c.on_unsubscribe = self._on_unsubscribe
        self.paho = c

    # -- callbacks (paho's thread) ------------------------------------------------------------------

    def _on_connect(self, _c, _u, flags, reason_code, _props):
        self.connack_rc = reason_code.value if hasattr(reason_code, "value") else int(reason_code)
        self.session_present = flags.session_present
        self.connected.set()

    def _on_disconnect(self, *_args):
        self.disconnected.set()

    def _on_message(self, _c, _u, msg):
        self.messages.put(Received(msg.topic, msg.payload, msg.qos, bool(msg.retain), bool(msg.dup), msg.mid))

    def _ack_event(self, mid: int) -> threading.Event:
        with self._lock:
            return self._acks.setdefault(mid, threading.Event())

    def _on_subscribe(self, _c, _u, mid, reason_codes, _props):
        self._granted[mid] = [rc.value if hasattr(rc, "value") else int(rc) for rc in reason_codes]
        self._ack_event(mid).set()

    def _on_unsubscribe(self, _c, _u, mid, *_rest):
        self._ack_event(mid).set()

    # -- API (test thread) ---------------------------------------------------------------------------

    def connect(self, timeout: float = WAIT, expect_rc: int | None = 0) -> "MqttClient":
        """Connect and wait for the CONNACK. With ``expect_rc`` set, assert its return code."""
        self.paho.connect(self.host, self.port, keepalive=self.keepalive)
        self.paho.loop_start()
        assert self.connected.wait(timeout), f"{self.client_id}: no CONNACK within {timeout}s"
        if expect_rc is not None:
            assert self.connack_rc == expect_rc, f"{self.client_id}: CONNACK rc {self.connack_rc}"
        return self

    def subscribe(self, topic: str, qos: int = 0, timeout: float = WAIT) -> list[int]:
        """Subscribe and wait for the SUBACK; returns the granted QoS list."""
        rc, mid = self.paho.subscribe(topic, qos)
        assert rc == MQTTErrorCode.MQTT_ERR_SUCCESS, f"subscribe failed locally: {rc}"
        assert self._ack_event(mid).wait(timeout), f"{self.client_id}: no SUBACK for {topic!r} within {timeout}s"
        return self._granted[mid]

    def unsubscribe(self, topic: str, timeout: float = WAIT) -> None:
        rc, mid = self.paho.unsubscribe(topic)
        assert rc == MQTTErrorCode.MQTT_ERR_SUCCESS, f"unsubscribe failed locally: {rc}"
        assert self._ack_event(mid).wait(timeout), f"{self.client_id}: no UNSUBACK within {timeout}s"

    def publish_async(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> mqtt.MQTTMessageInfo:
        info = self.paho.publish(topic, payload, qos=qos, retain=retain)
        assert info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS, f"publish failed locally: {info.rc}"
        return info

    def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False,
                timeout: float = WAIT) -> None:
        """Publish and wait until the flow completes (written for QoS 0, PUBACK for 1, PUBCOMP for 2)."""
        info = self.publish_async(topic, payload, qos, retain)
        info.wait_for_publish(timeout)
        assert info.is_published(), f"{self.client_id}: publish to {topic!r} (QoS {qos}) not acknowledged in {timeout}s"

    def expect_message(self, timeout: float = WAIT) -> Received:
        try:
            return self.messages.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"{self.client_id}: no message within {timeout}s") from None

    def collect_until(self, payload: bytes = MARKER, timeout: float = WAIT) -> list[Received]:
        """All messages received before the one whose payload is ``payload`` (which is consumed, not returned)."""
        got = []
        while True:
            m = self.expect_message(timeout)
            if m.payload == payload:
                return got
            got.append(m)

    def disconnect(self, timeout: float = WAIT) -> None:
        """Clean DISCONNECT, then wait for the loop to end."""
        self.paho.disconnect()
        assert self.disconnected.wait(timeout), f"{self.client_id}: disconnect did not complete"
        self.stop()

    def stop(self) -> None:
        """Stop the loop thread and close the socket (no DISCONNECT if still connected)."""
        sock = self.paho.socket()
        if sock is not None:
            try:
                # shutdown (unlike close) wakes the loop thread's select() with EOF; paho then ends its loop
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.paho.loop_stop()


def rss_kb(pid: int) -> int:
    """The resident set size of process ``pid``, in KiB (VmRSS)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS in /proc/{pid}/status")
