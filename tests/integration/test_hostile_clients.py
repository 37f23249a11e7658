"""Hostile clients: 200 raw sockets that send garbage, half packets, a fixed header announcing the largest
remaining length, never send CONNECT, or subscribe to ``#`` at QoS 1 and never read -- plus a stream of
fresh garbage connections all along -- while a well-behaved paho publisher/subscriber pair exchanges 2,000
QoS 1 messages. The pair must get every message, in order, with bounded latency; the broker's memory must
stay bounded; the sockets that never CONNECT must be closed within the CONNECT timeout.

Bounds, and why:

- **p99 latency < 500 ms, max < 2 s** (publish call to the subscriber's callback). The 40 ``#`` subscribers
  that never read fill their socket buffers and then their queues; the first time a queue passes its
  congestion mark the broker holds the publisher (docs/limits.md, "Publisher hold"): it stops reading from
  it and holds its PUBACKs for at most ``max_publisher_hold_ms`` = 200 ms, then marks that subscriber
  stalled, so nobody is held for it again. Each stuck subscriber thus costs the publisher at most one
  200 ms hold, and the holds overlap (the 40 subscribers congest at about the same message). The publisher
  keeps 50 messages in flight, so one hold delays up to ~50 messages (2.5 %) by up to 200 ms: p99 can be
  ~200 ms, the maximum a few overlapping holds. Without holds the latency on loopback is ~1 ms; the
  bounds leave room for a shared CI machine. The test checks the broker's log for the queue-full drop, so
  the hold path is known to have been taken.
- **VmRSS < 100 MB during and after**. Each never-reading subscriber can hold at most its queue
  (``max_queued_messages`` = 100 / ``max_queued_bytes`` = 1 MiB, shared payloads) and its write buffer
  (``max_write_buffer_bytes`` = 64 KiB): 40 x ~1.1 MiB = 45 MiB in the worst case, plus the broker's own
  ~10 MB and allocator slack. A fixed header announcing 268,435,455 bytes is refused from the header
  (``max_packet_size`` = 64 KiB) before anything is buffered.

Measured on the 2-core reference VM (printed with ``-s``): p50 8-17 ms, p99 202-209 ms and max 203-212 ms
(exactly one 200 ms hold), RSS 8 MB before and 13 MB at the peak; sockets without CONNECT closed after
2.02 s, garbage and the huge remaining length after 0.01 s.
- **Sockets that never CONNECT are closed within connect_timeout_secs (2 s) + 3 s slack**; garbage and the
  huge remaining length are refused at once (well within the same bound).
"""

from __future__ import annotations

import collections
import random
import selectors
import socket
import struct
import threading
import time

import pytest

import mqtt_raw as raw
from helpers import WAIT, rss_kb, unique

pytestmark = pytest.mark.fulmar_only

LIMITS = {
    "connect_timeout_secs": 2,
    "max_packet_size": 65_536,
    "max_queued_messages": 100,
    "max_queued_bytes": 1_048_576,
    "max_write_buffer_bytes": 65_536,
    "max_inflight_messages": 32,
    "max_publisher_hold_ms": 200,
    "max_connections": 2000,
}
PER_KIND = 40  # x 5 kinds = 200 hostile sockets
MESSAGES = 2000
WINDOW = 50  # QoS 1 messages the publisher keeps in flight (so a publisher hold shows in the latencies)
PAYLOAD = 512
P99_BOUND = 0.5
MAX_BOUND = 2.0
RSS_BOUND_KB = 100 * 1024
CLOSE_BOUND = LIMITS["connect_timeout_secs"] + 3.0
HUGE_REMAINING_LENGTH = b"\xff\xff\xff\x7f"  # 268,435,455: the largest a 4-byte varint can say


def open_socket(broker, rcvbuf: int | None = None) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)  # before connect: a small TCP window
    s.settimeout(WAIT)
    s.connect((broker.host, broker.port))
    return s


def garbage(rng: random.Random) -> bytes:
    """Bytes that are not MQTT: packet type 0 (reserved), or a known type with reserved flags set, then noise."""
    first = rng.choice([0x00, 0x01, 0x0F, 0x11, 0x3F, 0xF1, 0xFF, 0x47])
    return bytes([first]) + rng.randbytes(rng.randint(1, 300))


def half_packet(rng: random.Random) -> bytes:
    """The first part of a valid CONNECT; the rest never comes."""
    whole = raw.connect(unique("half"))
    return whole[: rng.randint(1, len(whole) - 1)]


class CloseWatcher:
    """Watches sockets that the broker must close; records when each one was closed."""

    def __init__(self):
        self.sel = selectors.DefaultSelector()
        self.opened: dict[socket.socket, tuple[str, float]] = {}
        self.closed: dict[socket.socket, float] = {}
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def add(self, sock: socket.socket, kind: str, opened: float) -> None:
        sock.setblocking(False)
        with self.lock:
            self.opened[sock] = (kind, opened)
            self.sel.register(sock, selectors.EVENT_READ)

    def _run(self) -> None:
        while not self.stop.is_set():
            with self.lock:
                if not self.sel.get_map():
                    ready = []
                else:
                    ready = self.sel.select(timeout=0)
                for key, _ in ready:
                    sock = key.fileobj
                    try:
                        data = sock.recv(65536)
                    except BlockingIOError:
                        continue
                    except OSError:
                        data = b""
                    if not data:
                        self.closed[sock] = time.monotonic()
                        self.sel.unregister(sock)
            time.sleep(0.01)  # poll interval of the watcher thread, not synchronisation

    def open_ones(self) -> list[tuple[str, float]]:
        with self.lock:
            return [self.opened[s] for s in self.opened if s not in self.closed]

    def close_times(self) -> list[tuple[str, float]]:
        with self.lock:
            return [(self.opened[s][0], self.closed[s] - self.opened[s][1]) for s in self.closed]

    def close_all(self) -> None:
        self.stop.set()
        self.thread.join(WAIT)
        for s in self.opened:
            s.close()


def test_hostile_sockets_do_not_hurt_a_well_behaved_pair(broker_with_limits, mqtt_client):
    b = broker_with_limits(LIMITS)
    pid = b.proc.pid
    rng = random.Random(7)
    topic = f"{unique('hostile')}/data"
    baseline_rss = rss_kb(pid)

    watcher = CloseWatcher()
    watcher.thread.start()
    stuck: list[socket.socket] = []
    try:
        # --- 200 hostile sockets --------------------------------------------------------------------
        for _ in range(PER_KIND):
            s = open_socket(b)
            s.sendall(garbage(rng))
            watcher.add(s, "garbage", time.monotonic())

            s = open_socket(b)
            s.sendall(half_packet(rng))
            watcher.add(s, "half packet", time.monotonic())

            s = open_socket(b)
            # CONNECT (or PUBLISH) type announcing 256 MiB; a trickle of body follows, never the rest.
            s.sendall(bytes([rng.choice([0x10, 0x30, 0x82])]) + HUGE_REMAINING_LENGTH + b"\x00" * 64)
            watcher.add(s, "huge remaining length", time.monotonic())

            s = open_socket(b)  # connects, sends nothing
            watcher.add(s, "never CONNECT", time.monotonic())

            # CONNECT (keep-alive 0: never timed out), SUBSCRIBE # at QoS 1, then never read again.
            s = open_socket(b, rcvbuf=4096)
            s.sendall(raw.connect(unique("stuck"), keepalive=0) + raw.subscribe(1, [("#", 1)]))
            stuck.append(s)
        # The stuck subscribers' SUBACKs: read exactly CONNACK (4 bytes) + SUBACK (5 bytes), nothing more,
        # so they are subscribed before the exchange starts.
        for s in stuck:
            got = b""
            while len(got) < 9:
                chunk = s.recv(9 - len(got))
                assert chunk, "a stuck subscriber was closed before its SUBACK"
                got += chunk
            assert got[0] == 0x20 and got[3] == 0 and got[4] == 0x90 and got[8] == 1, got.hex()

        # --- the well-behaved pair, with fresh garbage connections arriving all along -----------------
        received: list[tuple[int, float, float]] = []
        all_in = threading.Event()

        sub = mqtt_client(b).connect()
        assert sub.subscribe(topic, 1) == [1]

        def on_message(_c, _u, msg):
            seq, sent = struct.unpack(">Id", msg.payload[:12])
            received.append((seq, sent, time.monotonic()))
            if len(received) == MESSAGES:
                all_in.set()

        sub.paho.on_message = on_message
        pub = mqtt_client(b).connect()

        churn_stop = threading.Event()
        churned = [0]

        def churn():
            crng = random.Random(11)
            while not churn_stop.is_set():
                try:
                    s = open_socket(b)
                    s.sendall(garbage(crng) if crng.random() < 0.5 else b"\x10" + HUGE_REMAINING_LENGTH)
                    watcher.add(s, "churn", time.monotonic())
                    churned[0] += 1
                except OSError:
                    pass
                time.sleep(0.005)  # pacing of the attack, not synchronisation

        churner = threading.Thread(target=churn, daemon=True)
        churner.start()
        peak_rss = rss_kb(pid)
        padding = b"p" * (PAYLOAD - 12)
        started = time.monotonic()
        window: collections.deque = collections.deque()
        for i in range(MESSAGES):
            window.append(pub.publish_async(topic, struct.pack(">Id", i, time.monotonic()) + padding, qos=1))
            if len(window) >= WINDOW:
                oldest = window.popleft()
                oldest.wait_for_publish(WAIT)
                assert oldest.is_published(), f"no PUBACK within {WAIT}s"
            if i % 100 == 0:
                peak_rss = max(peak_rss, rss_kb(pid))
        for info in window:
            info.wait_for_publish(WAIT)
        assert all_in.wait(WAIT), f"only {len(received)} of {MESSAGES} messages arrived"
        elapsed = time.monotonic() - started
        churn_stop.set()
        churner.join(WAIT)
        peak_rss = max(peak_rss, rss_kb(pid))

        # --- every message, in order, in time ----------------------------------------------------------
        seqs = [seq for seq, _, _ in received]
        assert seqs == list(range(MESSAGES)), "messages lost, duplicated or reordered"
        latencies = sorted(got - sent for _, sent, got in received)
        p50 = latencies[len(latencies) // 2]
        p99 = latencies[int(len(latencies) * 0.99) - 1]
        worst = latencies[-1]
        summary = (f"{MESSAGES} messages in {elapsed:.1f}s; latency p50 {p50 * 1000:.1f} ms, "
                   f"p99 {p99 * 1000:.1f} ms, max {worst * 1000:.1f} ms; {churned[0]} churn connections; "
                   f"RSS baseline {baseline_rss} kB, peak {peak_rss} kB")
        print(summary)
        assert p99 < P99_BOUND, summary
        assert worst < MAX_BOUND, summary
        assert peak_rss < RSS_BOUND_KB, summary

        # --- the sockets that never CONNECTed are closed in time; the broker lives ------------------------
        deadline = time.monotonic() + CLOSE_BOUND + 1
        while watcher.open_ones() and time.monotonic() < deadline:
            time.sleep(0.05)  # bounded wait for the watcher thread
        still_open = watcher.open_ones()
        assert not still_open, f"{len(still_open)} sockets without CONNECT still open: {still_open[:5]}"
        slow = [(kind, round(t, 2)) for kind, t in watcher.close_times() if t > CLOSE_BOUND]
        assert not slow, f"sockets closed later than {CLOSE_BOUND}s: {slow[:10]}"
        by_kind: dict[str, float] = {}
        for kind, t in watcher.close_times():
            by_kind[kind] = max(by_kind.get(kind, 0.0), t)
        print("slowest close per kind (s):", {k: round(v, 2) for k, v in sorted(by_kind.items())})

        # The stuck subscribers really were stuck: their queues overflowed (so the publisher hold was taken
        # and expired, and what no longer fit them was dropped -- for them only).
        assert "session queue full" in b.log(), "the never-reading subscribers never filled their queues"
        assert b.alive(), "the broker died"
        after_rss = rss_kb(pid)
        assert after_rss < RSS_BOUND_KB, f"RSS after the attack {after_rss} kB; {summary}"
        # Still serving: a new client gets through, and the pair still talks.
        late = mqtt_client(b).connect()
        late.subscribe(f"{topic}/late", 1)
        pub.publish(f"{topic}/late", b"still here", qos=1)
        assert late.expect_message().payload == b"still here"
    finally:
        watcher.close_all()
        for s in stuck:
            s.close()
