"""Interop with the mosquitto command-line clients (mosquitto_pub / mosquitto_sub), MQTT 3.1 and 3.1.1."""

import queue
import re
import shutil
import subprocess
import threading

import pytest

from helpers import WAIT, unique

pytestmark = pytest.mark.skipif(
    not (shutil.which("mosquitto_pub") and shutil.which("mosquitto_sub") and shutil.which("stdbuf")),
    reason="mosquitto-clients not installed (scripts/test.sh installs it)",
)

VERSIONS = ["mqttv31", "mqttv311"]


class Sub:
    """mosquitto_sub in debug mode; its stdout lines are read by a thread into a queue."""

    def __init__(self, broker, topic, qos, count, version, extra=()):
        # stdbuf: mosquitto_sub's stdout is block-buffered on a pipe; we need each line as it is printed.
        argv = ["stdbuf", "-oL", "mosquitto_sub", "-h", broker.host, "-p", str(broker.port), "-V", version, "-t", topic,
                "-q", str(qos), "-C", str(count), "-W", str(int(WAIT)), "-v", "-d", "-i", unique("msub"), *extra]
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     text=True)
        self.lines: queue.Queue = queue.Queue()
        self.all: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def wait_for(self, pattern, timeout=WAIT) -> re.Match:
        rx = re.compile(pattern)
        while True:
            try:
                line = self.lines.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(f"mosquitto_sub: no line matching {pattern!r}; so far: {self.all}") from None
            if line is None:
                raise AssertionError(f"mosquitto_sub exited before {pattern!r}; output: {self.all}")
            self.all.append(line)
            m = rx.search(line)
            if m:
                return m

    def finish(self, timeout=WAIT) -> int:
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError(f"mosquitto_sub did not exit; output: {self.all}") from None
        while True:  # drain what is left for assertions
            line = self.lines.get(timeout=timeout)
            if line is None:
                return code
            self.all.append(line)


@pytest.fixture
def mosquitto_sub():
    subs = []

    def start(*args, **kwargs):
        s = Sub(*args, **kwargs)
        subs.append(s)
        return s

    yield start
    for s in subs:
        if s.proc.poll() is None:
            s.proc.kill()
            s.proc.wait(WAIT)


def mosquitto_pub(broker, topic, message, qos, version, *extra):
    argv = ["mosquitto_pub", "-h", broker.host, "-p", str(broker.port), "-V", version, "-t", topic,
            "-m", message, "-q", str(qos), "-i", unique("mpub"), *extra]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=WAIT, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, f"mosquitto_pub failed ({r.returncode}): {r.stdout}{r.stderr}"


@pytest.mark.parametrize("qos", [0, 1, 2])
@pytest.mark.parametrize("version", VERSIONS)
def test_mosquitto_sub_receives_from_mosquitto_pub(broker, mosquitto_sub, version, qos):
    topic = f"{unique('cli')}/t"
    sub = mosquitto_sub(broker, topic, qos, 1, version)
    sub.wait_for(r"received SUBACK")
    granted = sub.wait_for(r"Subscribed \(mid: \d+\): (\d+)")
    assert int(granted.group(1)) == qos
    mosquitto_pub(broker, topic, "hello from mosquitto_pub", qos, version)
    header = sub.wait_for(r"received PUBLISH \(d(\d), q(\d), r(\d), m\d+, '([^']*)'")
    assert header.groups() == ("0", str(qos), "0", topic)
    sub.wait_for(re.escape(f"{topic} hello from mosquitto_pub"))
    assert sub.finish() == 0


@pytest.mark.parametrize("version", VERSIONS)
def test_mosquitto_pub_retained_reaches_later_mosquitto_sub(broker, mosquitto_sub, version):
    topic = f"{unique('cliret')}/t"
    mosquitto_pub(broker, topic, "kept", 1, version, "-r")
    sub = mosquitto_sub(broker, topic, 1, 1, version)
    header = sub.wait_for(r"received PUBLISH \(d(\d), q(\d), r(\d), m\d+, '([^']*)'")
    assert header.groups() == ("0", "1", "1", topic)
    sub.wait_for(re.escape(f"{topic} kept"))
    assert sub.finish() == 0


@pytest.mark.parametrize("version", VERSIONS)
def test_mosquitto_sub_counts_several_messages_in_order(broker, mosquitto_sub, version):
    topic = f"{unique('clicount')}/t"
    sub = mosquitto_sub(broker, f"{topic}/#", 2, 3, version)
    sub.wait_for(r"received SUBACK")
    for i in range(3):
        mosquitto_pub(broker, f"{topic}/{i}", f"n{i}", 2, version)
    for i in range(3):
        sub.wait_for(re.escape(f"{topic}/{i} n{i}"))
    assert sub.finish() == 0
