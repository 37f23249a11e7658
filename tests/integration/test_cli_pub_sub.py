"""`fulmar pub` and `fulmar sub` against the broker, and interop with mosquitto_pub / mosquitto_sub, for MQTT
3.1, 3.1.1 and 5.0. Exit codes are the documented ones (crates/fulmar/src/broker_args.rs): 0 ok, 1 usage,
3 network, 4 refused by the broker, 5 -W timeout."""

import json
import shutil

import pytest

from cli_helpers import LineProc, fulmar_bin, run
from conftest import free_port
from helpers import WAIT, unique

pytestmark = pytest.mark.skipif(
    not (shutil.which("mosquitto_pub") and shutil.which("mosquitto_sub") and shutil.which("stdbuf")),
    reason="mosquitto-clients not installed (scripts/test.sh installs it)",
)

# (fulmar -V, mosquitto -V)
VERSIONS = [("3", "mqttv31"), ("4", "mqttv311"), ("5", "mqttv5")]
VERSION_IDS = ["v31", "v311", "v5"]


def fulmar(broker, command, *args):
    return [fulmar_bin(), command, "-h", broker.host, "-p", str(broker.port), *args]


def mosquitto_sub(broker, topic, version, count=1, extra=()):
    """mosquitto_sub in debug mode, so the test can wait for its SUBACK before publishing."""
    argv = ["stdbuf", "-oL", "mosquitto_sub", "-h", broker.host, "-p", str(broker.port), "-V", version, "-t", topic,
            "-C", str(count), "-W", str(int(WAIT)), "-v", "-d", "-q", "2", "-i", unique("msub"), *extra]
    sub = LineProc(argv, name="mosquitto_sub")
    sub.expect(r"(?i)received SUBACK")
    return sub


def fulmar_sub_ready(broker, topic, version, *args):
    """`fulmar sub` on ``topic``, proven subscribed: it receives a retained marker published before it started.
    The marker is cleared again, so it is never seen by anything else."""
    run([fulmar_bin(), "pub", "-h", broker.host, "-p", str(broker.port), "-t", topic, "-m", "ready", "-r", "-q", "1"])
    sub = LineProc(fulmar(broker, "sub", "-V", version, "-t", topic, "-v", "-q", "2", "-W", str(int(WAIT)), *args),
                   name="fulmar sub")
    sub.expect(rf"^{topic} ready$")
    run([fulmar_bin(), "pub", "-h", broker.host, "-p", str(broker.port), "-t", topic, "-n", "-r", "-q", "1"])
    sub.expect(rf"^{topic} $")  # the clearing (empty) message is delivered to the live subscriber too
    return sub


@pytest.mark.parametrize("qos", [0, 1, 2])
@pytest.mark.parametrize("ours,theirs", VERSIONS, ids=VERSION_IDS)
def test_fulmar_pub_reaches_mosquitto_sub(broker, ours, theirs, qos):
    topic = f"cli/{unique('p')}"
    sub = mosquitto_sub(broker, topic, theirs)
    done = run(fulmar(broker, "pub", "-V", ours, "-t", topic, "-m", "hello fulmar", "-q", str(qos)))
    assert done.returncode == 0, done.stderr
    sub.expect(rf"^{topic} hello fulmar$")
    assert sub.wait() == 0


@pytest.mark.parametrize("ours,theirs", VERSIONS, ids=VERSION_IDS)
def test_mosquitto_pub_reaches_fulmar_sub(broker, ours, theirs):
    topic = f"cli/{unique('s')}"
    sub = fulmar_sub_ready(broker, topic, ours, "-C", "5")
    for qos in (0, 1, 2):
        sent = run(["mosquitto_pub", "-h", broker.host, "-p", str(broker.port), "-V", theirs, "-t", topic,
                    "-m", f"from mosquitto q{qos}", "-q", str(qos)])
        assert sent.returncode == 0, sent.stderr
        sub.expect(rf"^{topic} from mosquitto q{qos}$")
    assert sub.wait() == 0, "exits 0 after -C messages"


def test_count_exits_zero_and_timeout_exits_five(broker):
    topic = f"cli/{unique('c')}"
    assert run(fulmar(broker, "pub", "-t", topic, "-m", "kept", "-r")).returncode == 0
    got = run(fulmar(broker, "sub", "-t", topic, "-C", "1", "-W", str(int(WAIT))))
    assert (got.returncode, got.stdout) == (0, "kept\n"), got.stderr
    waited = run(fulmar(broker, "sub", "-t", f"cli/{unique('none')}", "-C", "1", "-W", "1"))
    assert waited.returncode == 5, waited
    assert "timed out" in waited.stderr


@pytest.mark.parametrize("version", ["4", "5"])
def test_json_prints_one_object_per_message(broker, version):
    topic = f"cli/{unique('j')}"
    assert run(fulmar(broker, "pub", "-t", f"{topic}/text", "-m", "héllo", "-r", "-q", "1")).returncode == 0
    binary = run(fulmar(broker, "pub", "-t", f"{topic}/bin", "-s", "-r", "-q", "1"), stdin=b"\xff\x00\x01")
    assert binary.returncode == 0, binary.stderr
    got = run(fulmar(broker, "sub", "-V", version, "-t", f"{topic}/#", "-q", "1", "-C", "2", "--json",
                     "-W", str(int(WAIT))))
    assert got.returncode == 0, got.stderr
    objects = {o["topic"]: o for o in map(json.loads, got.stdout.splitlines())}
    text, data = objects[f"{topic}/text"], objects[f"{topic}/bin"]
    assert (text["payload"], text["qos"], text["retain"]) == ("héllo", 1, True)
    assert "encoding" not in text
    assert (data["payload"], data["encoding"]) == ("/wAB", "base64")
    assert ("properties" in text) == (version == "5")


def test_json_shows_v5_properties(broker):
    topic = f"cli/{unique('jp')}"
    # A retained marker proves the subscription is in place before the message with properties is sent.
    assert run(fulmar(broker, "pub", "-t", topic, "-m", "ready", "-r", "-q", "1")).returncode == 0
    sub = LineProc(fulmar(broker, "sub", "-V", "5", "-t", topic, "-C", "2", "--json", "-W", str(int(WAIT))),
                   name="fulmar sub")
    sub.expect(r'"payload":"ready"')
    sent = run(["mosquitto_pub", "-h", broker.host, "-p", str(broker.port), "-V", "mqttv5", "-t", topic, "-m", "x",
                "-D", "publish", "user-property", "colour", "blue", "-D", "publish", "content-type", "text/plain"])
    assert sent.returncode == 0, sent.stderr
    line = json.loads(sub.expect(r'^\{.*"payload":"x".*\}$').group(0))
    assert line["properties"]["user_properties"] == [["colour", "blue"]]
    assert line["properties"]["content_type"] == "text/plain"
    assert line["retain"] is False
    assert sub.wait() == 0


def test_retained_message_reaches_a_later_fulmar_sub(broker):
    topic = f"cli/{unique('r')}"
    assert run(fulmar(broker, "pub", "-t", topic, "-m", "on", "-r", "-q", "2")).returncode == 0
    got = run(fulmar(broker, "sub", "-t", topic, "-C", "1", "-v", "-W", str(int(WAIT))))
    assert got.stdout == f"{topic} on\n", got.stderr
    skipped = run(fulmar(broker, "sub", "-t", topic, "-C", "1", "-R", "-W", "1"))
    assert skipped.returncode == 5, "-R does not print (or count) the retained message"


def test_line_mode_sends_each_line(broker):
    topic = f"cli/{unique('l')}"
    sub = mosquitto_sub(broker, topic, "mqttv311", count=3)
    sent = run(fulmar(broker, "pub", "-t", topic, "-l", "-q", "1"), stdin="one\n\ntwo\r\nthree\n")
    assert sent.returncode == 0, sent.stderr
    for word in ("one", "two", "three"):
        sub.expect(rf"^{topic} {word}$")
    assert sub.wait() == 0


def test_file_and_null_messages(broker, tmp_path):
    topic = f"cli/{unique('f')}"
    path = tmp_path / "payload.txt"
    path.write_text("from a file")
    sub = mosquitto_sub(broker, topic, "mqttv311", count=2)
    assert run(fulmar(broker, "pub", "-t", topic, "-f", str(path))).returncode == 0
    sub.expect(rf"^{topic} from a file$")
    assert run(fulmar(broker, "pub", "-t", topic, "-n")).returncode == 0
    sub.expect(rf"^{topic} ?\(null\)$|^{topic} ?$")
    missing = run(fulmar(broker, "pub", "-t", topic, "-f", str(tmp_path / "missing")))
    assert missing.returncode == 1 and "cannot read" in missing.stderr


def test_url_gives_host_port_and_topic(broker):
    topic = f"cli/{unique('u')}"
    url = f"mqtt://someone:secret@{broker.host}:{broker.port}/{topic}"
    assert run([fulmar_bin(), "pub", "--url", url, "-m", "via url", "-r", "-q", "1"]).returncode == 0
    got = run([fulmar_bin(), "sub", "--url", url, "-C", "1", "-v", "-W", str(int(WAIT))])
    assert got.stdout == f"{topic} via url\n", got.stderr


@pytest.mark.parametrize("command,topic", [("pub", "a/+/b"), ("pub", "a/#"), ("sub", "a/#/b"), ("sub", "a+")])
def test_bad_topic_is_a_usage_error_naming_the_topic(broker, command, topic):
    args = ["-m", "x"] if command == "pub" else []
    got = run(fulmar(broker, command, "-t", topic, *args))
    assert got.returncode == 1, got
    assert "invalid topic" in got.stderr and topic in got.stderr, got.stderr


def test_connection_refused_exits_three():
    port = free_port()  # nothing listens there
    got = run([fulmar_bin(), "pub", "-h", "127.0.0.1", "-p", str(port), "-t", "a", "-m", "x"])
    assert got.returncode == 3, got
    assert "connection refused" in got.stderr
    got = run([fulmar_bin(), "sub", "-h", "127.0.0.1", "-p", str(port), "-t", "a"])
    assert got.returncode == 3 and "connection refused" in got.stderr, got


def test_connack_refusal_exits_four(broker):
    # [MQTT-3.1.3-8] an empty client id with Clean Session 0 is answered "identifier rejected".
    got = run(fulmar(broker, "pub", "-V", "4", "-c", "-i", "", "-t", "a", "-m", "x"))
    assert got.returncode == 4, got
    assert "refused the connection" in got.stderr and "client identifier rejected" in got.stderr


def test_usage_errors():
    no_topic = run([fulmar_bin(), "pub", "-m", "x", "-p", "1"])
    assert no_topic.returncode == 1 and "no topic" in no_topic.stderr
    persistent_without_id = run([fulmar_bin(), "sub", "-t", "a", "-c", "-p", "1"])
    assert persistent_without_id.returncode == 1 and "-i" in persistent_without_id.stderr
    unknown_flag = run([fulmar_bin(), "pub", "--no-such-flag"])
    assert unknown_flag.returncode == 2
    assert run([fulmar_bin(), "sub", "--help"]).returncode == 0


def test_persistent_session_keeps_messages_for_a_fulmar_sub(broker):
    """-c keeps the session (mosquitto's --disable-clean-session): messages published while the subscriber is
    away arrive when it comes back with the same -i."""
    topic, client_id = f"cli/{unique('ps')}", unique("fsub")
    # Create the session and subscription: the retained marker proves it is in place.
    assert run(fulmar(broker, "pub", "-t", topic, "-m", "m0", "-r", "-q", "1")).returncode == 0
    first = run(fulmar(broker, "sub", "-t", topic, "-q", "1", "-c", "-i", client_id, "-C", "1", "-W", str(int(WAIT))))
    assert first.stdout == "m0\n", first.stderr
    assert run(fulmar(broker, "pub", "-t", topic, "-m", "while away", "-q", "1")).returncode == 0
    again = run(fulmar(broker, "sub", "-t", topic, "-q", "1", "-c", "-i", client_id, "-C", "1", "-R",
                       "-W", str(int(WAIT))))
    assert again.stdout == "while away\n", again.stderr
