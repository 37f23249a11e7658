"""The broker as a process: startup errors, the readiness log line, SIGTERM."""

import re
import signal
import socket
import subprocess
from types import SimpleNamespace

import pytest

from conftest import Broker, fulmar_binary, fulmar_config, free_port, start_broker
from helpers import WAIT, unique

RUN_TIMEOUT = 10
ANSI = re.compile(r"\x1b\[[0-9;]*m")  # colour codes a log formatter may add


def run_fulmar(*args) -> subprocess.CompletedProcess:
    """Run the binary expecting it to exit by itself; a hang is a failure, not a stuck test."""
    argv = [fulmar_binary(), *args]
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=RUN_TIMEOUT, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"{argv} kept running for {RUN_TIMEOUT}s instead of exiting with an error; stderr: {e.stderr!r}")


@pytest.mark.fulmar_only
def test_config_with_unknown_key_exits_nonzero_naming_the_key(tmp_path):
    conf = tmp_path / "fulmar.toml"
    # A typo'd key inside [limits]: it must be rejected, not silently ignored.
    conf.write_text(fulmar_config(f"127.0.0.1:{free_port()}", {"max_queued_messages": 10})
                    + "frobnicate_level = 3\n")
    r = run_fulmar("serve", "--no-persistence", "--config", str(conf))
    assert r.returncode != 0
    assert "frobnicate_level" in r.stderr, r.stderr


@pytest.mark.fulmar_only
def test_config_with_bad_value_exits_nonzero_naming_the_value(tmp_path):
    conf = tmp_path / "fulmar.toml"
    conf.write_text(fulmar_config(f"127.0.0.1:{free_port()}", {"max_inflight_messages": "plenty"}))
    r = run_fulmar("serve", "--no-persistence", "--config", str(conf))
    assert r.returncode != 0
    assert "plenty" in r.stderr, r.stderr


@pytest.mark.fulmar_only
def test_config_with_bad_listener_address_exits_nonzero_naming_it(tmp_path):
    conf = tmp_path / "fulmar.toml"
    conf.write_text('[[listeners]]\nbind = "127.0.0.1:notaport"\n')
    r = run_fulmar("serve", "--no-persistence", "--config", str(conf))
    assert r.returncode != 0
    assert "notaport" in r.stderr, r.stderr


@pytest.mark.fulmar_only
def test_listen_on_port_in_use_exits_nonzero_naming_the_address():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        r = run_fulmar("serve", "--no-persistence", "--listen", address)
    assert r.returncode != 0
    assert address in r.stderr, r.stderr


@pytest.mark.fulmar_only
def test_serve_logs_listening_address_and_accepts_on_every_listener(tmp_path, mqtt_client):
    ports = [free_port(), free_port()]
    argv = [fulmar_binary(), "serve", "--no-persistence", *[a for p in ports for a in ("--listen", f"127.0.0.1:{p}")]]
    b = Broker(argv, ports[0], tmp_path / "two.log", "fulmar")
    try:
        b.wait_ready()
        for p in ports:
            mqtt_client(SimpleNamespace(host=b.host, port=p)).connect().disconnect()
        log = ANSI.sub("", b.log())
        for p in ports:
            assert f"listening on 127.0.0.1:{p}" in log, log
    finally:
        code = b.terminate()
    assert code == 0, f"exit code {code} after SIGTERM"


def test_sigterm_stops_broker_with_exit_code_0(tmp_path, mqtt_client):
    b = start_broker(tmp_path, name="sigterm")
    try:
        # A connected client and a persistent session must not keep the process alive.
        c = mqtt_client(b, client_id=unique("term"), clean_session=False).connect()
        c.subscribe("term/t", 1)
        b.proc.send_signal(signal.SIGTERM)
        code = b.proc.wait(WAIT)
    except subprocess.TimeoutExpired:
        b.kill()
        pytest.fail(f"broker still running {WAIT}s after SIGTERM; output:\n{b.log()}")
    finally:
        b.terminate()
    assert code == 0, f"exit code {code} after SIGTERM; output:\n{b.log()}"
