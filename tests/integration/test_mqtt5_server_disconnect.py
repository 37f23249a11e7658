"""Server-initiated DISCONNECT with a reason code (spec 3.14, 4.13) to MQTT 5 clients."""

import signal
import subprocess
import time

import pytest

import mqtt5_raw
from conftest import start_broker
from helpers import WAIT, unique


@pytest.mark.fulmar_only  # a DISCONNECT before closing is optional (spec 4.13); mosquitto 2.0.11 just closes
def test_old_connection_is_told_session_taken_over(broker, raw5_client):
    # Reason code 0x8E Session taken over [MQTT-3.1.4-3].
    cid = unique("tko")
    first = raw5_client(broker)
    assert first.mqtt_connect(cid).reason == 0
    second = raw5_client(broker)
    assert second.mqtt_connect(cid).reason == 0
    d = first.expect_server_disconnect()
    assert d is not None and d.reason == mqtt5_raw.SESSION_TAKEN_OVER, d
    assert first.wait_closed(5.0)


@pytest.mark.fulmar_only  # mosquitto 2.0.11 closes without a DISCONNECT
def test_silent_client_is_told_keep_alive_timeout(broker, raw5_client):
    # Reason code 0x8D Keep Alive timeout; [MQTT-3.1.2-22] after 1.5 x keep-alive of silence.
    c = raw5_client(broker)
    assert c.mqtt_connect(unique("kat"), keepalive=1).reason == 0
    silent_since = time.monotonic()
    d = c.expect_server_disconnect(timeout=10)
    elapsed = time.monotonic() - silent_since
    assert d is not None and d.reason == mqtt5_raw.KEEP_ALIVE_TIMEOUT, d
    assert elapsed >= 1.0, f"cut off {elapsed:.2f}s after CONNACK with keep-alive 1"


@pytest.mark.fulmar_only  # mosquitto 2.0.11 closes without a DISCONNECT
def test_connected_clients_are_told_server_shutting_down_on_sigterm(tmp_path, raw5_client):
    # Reason code 0x8B Server shutting down. Its own broker: this test stops it.
    b = start_broker(tmp_path, name="shutdown")
    try:
        clients = [raw5_client(b) for _ in range(2)]
        for c in clients:
            assert c.mqtt_connect(unique("down")).reason == 0
        b.proc.send_signal(signal.SIGTERM)
        reasons = []
        for c in clients:
            d = c.expect_server_disconnect(timeout=WAIT)
            reasons.append(None if d is None else d.reason)
        assert reasons == [mqtt5_raw.SERVER_SHUTTING_DOWN] * 2
        b.proc.wait(WAIT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"broker still running {WAIT}s after SIGTERM; output:\n{b.log()}")
    finally:
        b.terminate()
