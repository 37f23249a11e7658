"""Bounded queues: one subscriber that never reads must not stall anyone else."""

import pytest

from helpers import WAIT, unique

MESSAGES = 20_000
PAYLOAD = 1024
WINDOW = 100  # the publisher stays this far ahead of the healthy subscriber (below max_queued_messages)


@pytest.mark.fulmar_only
def test_slow_subscriber_does_not_stall_other_subscribers(broker_with_limits, mqtt_client, raw_client):
    b = broker_with_limits({"max_queued_messages": 200, "max_queued_bytes": 1_048_576, "max_inflight_messages": 32})
    topic = f"{unique('slow')}/t"

    # Subscribes at QoS 0 and then never reads: its socket buffers fill after a few hundred KiB.
    stalled = raw_client(b, rcvbuf=4096)
    assert stalled.mqtt_connect(unique("stalled")).return_code == 0
    stalled.mqtt_subscribe(1, [(topic, 0)])

    healthy = mqtt_client(b).connect()
    healthy.subscribe(topic, 1)
    pub = mqtt_client(b).connect()

    body = b"x" * (PAYLOAD - 8)
    received = 0
    for start in range(0, MESSAGES, WINDOW):
        for i in range(start, start + WINDOW):
            pub.publish_async(topic, b"%08d" % i + body, qos=1)
        # Wait for the window to arrive before publishing the next one: the healthy subscriber never has more
        # than WINDOW messages outstanding, so the broker has no excuse to drop any of them.
        got = [healthy.expect_message(WAIT) for _ in range(WINDOW)]
        seq = [int(m.payload[:8]) for m in got]
        assert seq == list(range(start, start + WINDOW)), f"healthy subscriber's window {start}: {seq}"
        assert all(len(m.payload) == PAYLOAD for m in got)
        received += len(got)
    assert received == MESSAGES

    assert b.alive(), "broker died under a slow subscriber"
    probe = mqtt_client(b).connect()
    probe.subscribe(f"{topic}/probe", 1)
    probe.publish(f"{topic}/probe", b"alive", qos=1)
    assert probe.expect_message().payload == b"alive"
