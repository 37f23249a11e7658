"""Black-box fixtures: a real broker process per test, and clients that clean up after themselves.

Broker under test: Fulmar (``$FULMAR_BIN``) by default, or mosquitto when ``FULMAR_TEST_AGAINST=mosquitto``
(used to validate the tests themselves against a reference broker). Tests marked ``fulmar_only`` check
Fulmar-specific choices and are skipped against mosquitto (``FULMAR_TEST_INCLUDE_FULMAR_ONLY=1`` runs them
anyway, to see which of them mosquitto happens to share).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from helpers import PROTOCOLS, WAIT, MqttClient, Proto
from mqtt5_client import Mqtt5Client
from mqtt5_raw import Raw5Client
from mqtt_raw import RawClient

AGAINST = os.environ.get("FULMAR_TEST_AGAINST", "fulmar").strip().lower() or "fulmar"
INCLUDE_FULMAR_ONLY = os.environ.get("FULMAR_TEST_INCLUDE_FULMAR_ONLY", "") == "1"
STARTUP_TIMEOUT = 10.0
SHUTDOWN_TIMEOUT = 10.0

# Fulmar [limits] keys and the mosquitto.conf option that means the same thing (None: no equivalent).
MOSQUITTO_LIMITS = {
    "max_packet_size": "max_packet_size",
    "max_inflight_messages": "max_inflight_messages",
    "max_queued_messages": "max_queued_messages",
    "max_queued_bytes": "max_queued_bytes",
    "connect_timeout_secs": None,
}
# The contract's defaults, given to mosquitto too so both brokers run with the same limits.
DEFAULT_LIMITS = {
    "max_packet_size": 1048576,
    "max_inflight_messages": 32,
    "max_queued_messages": 1000,
    "max_queued_bytes": 16777216,
}


def pytest_configure(config):
    config.addinivalue_line("markers", "fulmar_only: Fulmar-specific behaviour; skipped against mosquitto")
    config.addinivalue_line("markers", "security: TLS, authentication, ACLs and limits (select with -k security)")
    if AGAINST not in ("fulmar", "mosquitto"):
        raise pytest.UsageError(f"FULMAR_TEST_AGAINST must be 'fulmar' or 'mosquitto', not {AGAINST!r}")


def pytest_report_header(config):
    return f"broker under test: {AGAINST}" + (f" ({os.environ.get('FULMAR_BIN')})" if AGAINST == "fulmar" else "")


def pytest_collection_modifyitems(config, items):
    if AGAINST == "fulmar" or INCLUDE_FULMAR_ONLY:
        return
    skip = pytest.mark.skip(reason="fulmar_only: Fulmar-specific behaviour, not checked against mosquitto")
    for item in items:
        if "fulmar_only" in item.keywords:
            item.add_marker(skip)


# ---------------------------------------------------------------------------------------------
# Broker process
# ---------------------------------------------------------------------------------------------

def free_port() -> int:
    """A loopback port that was free a moment ago (bind to 0, read it, release it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def mosquitto_binary() -> str:
    found = os.environ.get("MOSQUITTO_BIN") or shutil.which("mosquitto")
    if not found and os.access("/usr/sbin/mosquitto", os.X_OK):
        found = "/usr/sbin/mosquitto"
    if not found:
        pytest.fail("FULMAR_TEST_AGAINST=mosquitto but no mosquitto binary (apt-get install mosquitto)")
    return found


def fulmar_binary() -> str:
    path = os.environ.get("FULMAR_BIN")
    if not path:
        pytest.fail("FULMAR_BIN is not set; run scripts/test.sh, or set it to target/release/fulmar")
    if not os.access(path, os.X_OK):
        pytest.fail(f"FULMAR_BIN={path} is not an executable file")
    return path


class Broker:
    """One running broker process listening on 127.0.0.1:port."""

    def __init__(self, argv: list[str], port: int | None, log_path: Path, kind: str, ws_port: int | None = None,
                 extra_ports: dict[str, int] | None = None):
        self.argv, self.port, self.log_path, self.kind = argv, port, log_path, kind
        self.ws_port = ws_port  # MQTT over WebSocket (path /mqtt), when started with one
        # Other listeners by role (``tls_port``, ``port2``), when ``start_fulmar`` configured them.
        self.extra_ports = dict(extra_ports or {})
        self.tls_port = self.extra_ports.get("tls_port")
        self.port2 = self.extra_ports.get("port2")
        self.host = "127.0.0.1"
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def log(self) -> str:
        """Everything the broker wrote so far (it writes straight to the file; nothing to flush here)."""
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = STARTUP_TIMEOUT) -> None:
        """Poll a TCP connect (to every listener) until it succeeds; fail fast if the process exits."""
        deadline = time.monotonic() + timeout
        while True:
            code = self.proc.poll()
            if code is not None:
                raise AssertionError(f"broker exited with {code} before listening; output:\n{self.log()}")
            try:
                for port in (self.port, self.ws_port, *self.extra_ports.values()):
                    if port is not None:
                        socket.create_connection((self.host, port), timeout=0.5).close()
                return
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.kill()
                raise AssertionError(f"broker not accepting on {self.address} within {timeout}s; output:\n{self.log()}")
            time.sleep(0.02)  # poll interval of a readiness probe, not synchronisation

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_size(self) -> int:
        """The log's length now: pass it to ``wait_log`` to see only what is written after this point."""
        return len(self.log())

    def wait_log(self, pattern: str, after: int = 0, timeout: float = WAIT) -> re.Match:
        """Poll the broker's output (from offset ``after``) until a line matches ``pattern``; bounded."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            m = rx.search(self.log()[after:])
            if m:
                return m
            if self.proc.poll() is not None:
                raise AssertionError(f"broker exited ({self.proc.poll()}) before logging {pattern!r}:\n{self.log()[after:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no broker log line matching {pattern!r} within {timeout}s; "
                                     f"output since:\n{self.log()[after:][-5000:]}")
            time.sleep(0.02)  # poll interval of a bounded wait on a file, not synchronisation

    def sighup(self) -> int:
        """Send SIGHUP; returns the log offset from before it, for ``wait_log``."""
        offset = self.log_size()
        self.proc.send_signal(signal.SIGHUP)
        return offset

    def terminate(self, timeout: float = SHUTDOWN_TIMEOUT) -> int | None:
        """SIGTERM and wait; returns the exit code, or None if it had to be killed."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return None
        finally:
            self._log.close()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(SHUTDOWN_TIMEOUT)


def start_broker(tmp_path: Path, limits: dict | None = None, name: str = "broker",
                 websocket: bool = False, mqtt: dict | None = None, mosquitto: list[str] | None = None) -> Broker:
    """Start the broker under test. ``limits`` become a ``[limits]`` config (Fulmar) or mosquitto.conf options;
    a limit mosquitto has no equivalent for skips the test against mosquitto. ``websocket`` adds an MQTT over
    WebSocket listener on another free port (``Broker.ws_port``). ``mqtt`` becomes Fulmar's ``[mqtt]`` table;
    against mosquitto, ``mosquitto`` lists the mosquitto.conf lines that mean the same (``None`` with an
    ``mqtt`` table: no equivalent, the test is skipped)."""
    if AGAINST == "mosquitto" and mqtt and mosquitto is None:
        pytest.skip(f"mosquitto has no equivalent of Fulmar's [mqtt] {sorted(mqtt)}")
    port = free_port()
    ws_port = free_port() if websocket else None
    log_path = tmp_path / f"{name}.log"
    if AGAINST == "mosquitto":
        merged = dict(DEFAULT_LIMITS, **(limits or {}))
        lines = [f"listener {port} 127.0.0.1", "allow_anonymous true", "persistence false",
                 "log_dest stderr", "log_type error", "log_type warning", "log_type notice",
                 "log_type information", "connection_messages true"]
        if ws_port is not None:
            lines += [f"listener {ws_port} 127.0.0.1", "protocol websockets"]
        for key, value in merged.items():
            option = MOSQUITTO_LIMITS.get(key)
            if option is None:
                pytest.skip(f"mosquitto has no equivalent of Fulmar's limits.{key}")
            lines.append(f"{option} {value}")
        lines += mosquitto or []
        conf = tmp_path / f"{name}-mosquitto.conf"
        conf.write_text("\n".join(lines) + "\n")
        argv = [mosquitto_binary(), "-c", str(conf)]
    else:
        binary = fulmar_binary()
        if limits or mqtt:
            conf = tmp_path / f"{name}.toml"
            conf.write_text(fulmar_config(f"127.0.0.1:{port}", limits or {}, mqtt))
            argv = [binary, "serve", "--config", str(conf)]
        else:
            argv = [binary, "serve", "--listen", f"127.0.0.1:{port}"]
        if ws_port is not None:
            argv += ["--listen-ws", f"127.0.0.1:{ws_port}"]
        # Each broker its own store: parallel tests never share (or lock) a data directory.
        argv += ["--data-dir", str(tmp_path / f"{name}-data")]
    broker = Broker(argv, port, log_path, AGAINST, ws_port)
    broker.wait_ready()
    return broker


def toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(value)


def fulmar_config(bind: str, limits: dict, mqtt: dict | None = None) -> str:
    body = f'[[listeners]]\nbind = "{bind}"\n\n[limits]\n'
    for key, value in limits.items():
        body += f"{key} = {toml_value(value)}\n"
    if mqtt:
        body += "\n[mqtt]\n" + "".join(f"{key} = {toml_value(value)}\n" for key, value in mqtt.items())
    return body


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """On a failing test, attach the output of every broker it started to the report."""
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for broker in getattr(item, "_brokers", []):
            report.sections.append((f"broker output ({broker.kind} {broker.address})", broker.log()[-20000:]))


def _register(request, broker: Broker) -> Broker:
    if not hasattr(request.node, "_brokers"):
        request.node._brokers = []
    request.node._brokers.append(broker)
    return broker


def _teardown(broker: Broker) -> None:
    died = broker.proc.poll()
    code = broker.terminate()
    assert died is None, f"broker died during the test (exit {died}); output:\n{broker.log()[-5000:]}"
    assert code is not None, f"broker did not exit within {SHUTDOWN_TIMEOUT}s of SIGTERM; output:\n{broker.log()[-5000:]}"


@pytest.fixture
def broker(request, tmp_path):
    """A fresh broker with default limits, listening on a free loopback port."""
    b = _register(request, start_broker(tmp_path))
    yield b
    _teardown(b)


@pytest.fixture
def ws_broker(request, tmp_path):
    """A fresh broker listening for MQTT over TCP (``port``) and over WebSocket (``ws_port``, path /mqtt)."""
    b = _register(request, start_broker(tmp_path, websocket=True))
    yield b
    _teardown(b)


@pytest.fixture
def broker_with_limits(request, tmp_path):
    """Factory: ``broker_with_limits({"max_queued_messages": 10})`` starts a broker with that config."""
    started = []

    def start(limits: dict) -> Broker:
        b = _register(request, start_broker(tmp_path, limits, name=f"broker{len(started)}"))
        started.append(b)
        return b

    yield start
    for b in started:
        _teardown(b)


@pytest.fixture
def broker_with_config(request, tmp_path):
    """Factory: ``broker_with_config(mqtt={"max_qos": 1}, limits={...}, mosquitto=["max_qos 1"])`` starts a
    broker with that ``[mqtt]`` / ``[limits]`` config. ``mosquitto`` is the equivalent mosquitto.conf lines;
    without it a test that sets ``mqtt`` is skipped against mosquitto."""
    started = []

    def start(*, mqtt: dict | None = None, limits: dict | None = None, mosquitto: list[str] | None = None) -> Broker:
        b = _register(request, start_broker(tmp_path, limits, name=f"cfgbroker{len(started)}", mqtt=mqtt,
                                            mosquitto=mosquitto))
        started.append(b)
        return b

    yield start
    for b in started:
        _teardown(b)


PORT_PLACEHOLDERS = ("port", "port2", "tls_port")


@pytest.fixture
def start_fulmar(request, tmp_path):
    """Factory: ``start_fulmar(args, config_toml=None)`` starts ``fulmar serve`` with those arguments and
    that TOML config, waits until every listener accepts, and returns the ``Broker`` (its output, stdout and
    stderr, is in ``broker.log()``; ``broker.proc`` is the process).

    ``{port}``, ``{port2}`` and ``{tls_port}`` in the arguments and the config are replaced by free loopback
    ports (``broker.port``, ``broker.port2``, ``broker.tls_port``). Without a config, ``--listen
    127.0.0.1:{port}`` is added; with one, the config names its own listeners. Fulmar only: these are
    Fulmar's flags and config keys (against mosquitto the test is skipped)."""
    if AGAINST != "fulmar":
        pytest.skip("start_fulmar runs Fulmar with Fulmar's own flags and config; no mosquitto equivalent here")
    started: list[Broker] = []

    def start(args: list[str] | tuple = (), config_toml: str | None = None, *, name: str | None = None) -> Broker:
        name = name or f"fulmar{len(started)}"
        ports = {key: free_port() for key in PORT_PLACEHOLDERS}

        def fill(text: str) -> str:
            for key, value in ports.items():
                text = text.replace("{" + key + "}", str(value))
            return text

        argv = [fulmar_binary(), "serve"]
        used_text = " ".join(args) + (config_toml or "")
        if config_toml is not None:
            conf = tmp_path / f"{name}.toml"
            conf.write_text(fill(config_toml))
            argv += ["--config", str(conf)]
        elif "--listen" not in args:
            argv += ["--listen", fill("127.0.0.1:{port}")]
            used_text += "{port}"
        argv += [fill(a) for a in args]
        # Each broker its own store, unless the test chose one (or none).
        if not {"--data-dir", "--no-persistence"} & set(args) and "[persistence]" not in (config_toml or ""):
            argv += ["--data-dir", str(tmp_path / f"{name}-data")]
        port = ports["port"] if "{port}" in used_text else None
        extra = {key: ports[key] for key in ("port2", "tls_port") if "{" + key + "}" in used_text}
        b = Broker(argv, port, tmp_path / f"{name}.log", "fulmar", None, extra)
        _register(request, b)
        b.wait_ready()  # kills the process and raises with its output if it does not come up
        started.append(b)
        return b

    yield start
    for b in started:
        _teardown(b)


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    """Test certificates made with the openssl CLI (see security_helpers.Pki): a CA, a server certificate
    for 127.0.0.1 / localhost, client certificates CN=alice (same CA) and CN=mallory (another CA)."""
    from security_helpers import Pki

    if not shutil.which("openssl"):
        pytest.skip("the openssl command is needed to make test certificates (apt-get install openssl)")
    return Pki.create(tmp_path_factory.mktemp("pki"))


@pytest.fixture(params=PROTOCOLS, ids=[p.name for p in PROTOCOLS])
def proto(request) -> Proto:
    """Runs the test once with MQTT 3.1 and once with MQTT 3.1.1."""
    return request.param


# ---------------------------------------------------------------------------------------------
# Clients
# ---------------------------------------------------------------------------------------------

@pytest.fixture
def mqtt_client():
    """Factory for connected-on-demand paho clients; all are stopped at teardown (before the broker)."""
    made: list[MqttClient] = []

    def make(broker: Broker, **kwargs) -> MqttClient:
        c = MqttClient(broker.host, broker.port, **kwargs)
        made.append(c)
        return c

    yield make
    for c in made:
        c.stop()


@pytest.fixture
def mqtt5_client():
    """Factory for paho MQTT 5.0 clients (see mqtt5_client.py); all are stopped at teardown."""
    made: list[Mqtt5Client] = []

    def make(broker: Broker, **kwargs) -> Mqtt5Client:
        c = Mqtt5Client(broker.host, broker.port, **kwargs)
        made.append(c)
        return c

    yield make
    for c in made:
        c.stop()


@pytest.fixture
def raw5_client():
    """Factory for raw-socket MQTT 5.0 clients (see mqtt5_raw.py); all are closed at teardown."""
    made: list[Raw5Client] = []

    def make(broker: Broker, **kwargs) -> Raw5Client:
        c = Raw5Client(broker.host, broker.port, timeout=WAIT, **kwargs)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


@pytest.fixture
def raw_client():
    """Factory for raw-socket clients (see mqtt_raw.py); all are closed at teardown."""
    made: list[RawClient] = []

    def make(broker: Broker, **kwargs) -> RawClient:
        c = RawClient(broker.host, broker.port, timeout=WAIT, **kwargs)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()
