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


@pytest.mark.fulmar_only
def test_a_stalled_subscriber_costs_nothing_to_a_live_one_under_fan_in(broker_with_limits, raw_client):
    """16 publishers at full speed (`fulmar bench fanin -P 16 -q 1`) and a second subscriber to the same
    topics that never reads. The stalled queue holds the publishers once, for max_publisher_hold_ms, and is
    then marked stalled; the live subscriber must still get every acknowledged message. A hold that ran
    out used to mark every queue congested at that moment as stalled, including the live subscriber's
    (flooded as the other publishers resumed), which then lost messages: hundreds of thousands here."""
    import json

    from cli_helpers import fulmar_bin, run

    b = broker_with_limits({"max_publisher_hold_ms": 300})
    stalled = raw_client(b, rcvbuf=4096)
    assert stalled.mqtt_connect(unique("stalled")).return_code == 0
    assert stalled.mqtt_subscribe(1, [("bench/#", 1)]).granted == [1]
    bench = run([fulmar_bin(), "bench", "fanin", "-P", "16", "-q", "1", "--port", str(b.port),
                 "--duration", "3", "--warmup", "0.5", "--json", "--quiet"], timeout=60)
    report = json.loads(bench.stdout)
    assert report["delivered"] > 10_000, report
    assert (report["lost"], report["duplicated"]) == (0, 0), report
    assert bench.returncode == 0, bench.stderr
    assert b.alive()
