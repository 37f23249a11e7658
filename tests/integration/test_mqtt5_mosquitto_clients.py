"""Interop with the mosquitto command-line clients speaking MQTT 5.0 (``-V 5``), properties set with ``-D``
and read back with ``mosquitto_sub -F`` format codes (issue 3, "## Tests").

mosquitto_sub 2.0.11's -F codes used here: %t topic, %p payload, %l payload length, %q QoS, %r retain,
%P user properties (``key:value``, space separated), %C content type, %E message expiry interval,
%R response topic, %D correlation data, %F payload format indicator, %S subscription identifier,
%A topic alias; %j is JSON with a ``properties`` object. Every formatted line starts with ``MSG|`` so it
is told apart from the ``-d`` debug lines. Reads are bounded (``-C``, ``-W`` and queue timeouts) as in
test_mosquitto_clients.py.
"""

import json
import re
import shutil
import subprocess

import pytest

from helpers import MARKER, WAIT, unique
from test_mosquitto_clients import Sub

pytestmark = pytest.mark.skipif(
    not (shutil.which("mosquitto_pub") and shutil.which("mosquitto_sub") and shutil.which("stdbuf")),
    reason="mosquitto-clients not installed (scripts/test.sh installs it)",
)

# Every property mosquitto_sub can print, one field each.
FIELDS = ["t", "p", "l", "q", "r", "P", "C", "E", "R", "D", "F", "S", "A"]
FORMAT = "MSG|" + "|".join(f"%{f}" for f in FIELDS)
MSG_LINE = r"^MSG\|"

PROPS = ["-D", "publish", "user-property", "k", "v",
         "-D", "publish", "user-property", "k2", "v2",
         "-D", "publish", "content-type", "text/plain",
         "-D", "publish", "response-topic", "r/t",
         "-D", "publish", "correlation-data", "1234",
         "-D", "publish", "message-expiry-interval", "30",
         "-D", "publish", "payload-format-indicator", "1"]


def fields(line: str) -> dict:
    """A ``MSG|...`` line (format FORMAT) as {code: text}. The payloads used here contain no '|'."""
    parts = line.split("|")[1:]
    assert len(parts) == len(FIELDS), f"unexpected -F line {line!r}"
    return dict(zip(FIELDS, parts))


@pytest.fixture
def sub5():
    """Factory: mosquitto_sub with ``-V`` (5 by default), ``-d`` and ``-F FORMAT`` unless ``fmt`` is given."""
    subs = []

    def start(broker, topic, qos=1, count=1, version="mqttv5", fmt=FORMAT, extra=()):
        s = Sub(broker, topic, qos, count, version, extra=("-F", fmt, *extra))
        subs.append(s)
        return s

    yield start
    for s in subs:
        if s.proc.poll() is None:
            s.proc.kill()
            s.proc.wait(WAIT)


def pub5(broker, topic, message, qos=1, *extra, version="mqttv5", client_id=None) -> str:
    """Run mosquitto_pub -d to completion; returns its debug output (for the PUBACK reason code)."""
    argv = ["mosquitto_pub", "-h", broker.host, "-p", str(broker.port), "-V", version, "-t", topic,
            "-m", message, "-q", str(qos), "-d", "-i", client_id or unique("mpub5"), *extra]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=WAIT, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, f"mosquitto_pub failed ({r.returncode}): {r.stdout}{r.stderr}"
    return r.stdout + r.stderr


def puback_rc(output: str) -> int:
    m = re.search(r"received PUBACK \(Mid: \d+, RC:(\d+)\)", output)
    assert m, f"no PUBACK in mosquitto_pub output: {output}"
    return int(m.group(1))


def run_sub(broker, *args, version="mqttv5") -> str:
    """mosquitto_sub to completion (e.g. with -E); returns its output."""
    argv = ["mosquitto_sub", "-h", broker.host, "-p", str(broker.port), "-V", version, "-d", *args]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=WAIT, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, f"mosquitto_sub failed ({r.returncode}): {r.stdout}{r.stderr}"
    return r.stdout + r.stderr


@pytest.mark.parametrize("qos", [0, 1, 2])
def test_mosquitto_pub_v5_properties_reach_mosquitto_sub_v5(broker, sub5, qos):
    topic = f"{unique('m5p')}/t"
    sub = sub5(broker, topic, qos=qos)
    sub.wait_for(r"received SUBACK")
    out = pub5(broker, topic, "hello v5", qos, *PROPS)
    if qos == 1:
        assert puback_rc(out) == 0
    got = fields(sub.wait_for(MSG_LINE).string)
    assert (got["t"], got["p"], got["l"], got["q"], got["r"]) == (topic, "hello v5", "8", str(qos), "0")
    assert got["P"] == "k:v k2:v2", "user properties, in order"
    assert got["C"] == "text/plain"
    assert got["R"] == "r/t"
    assert got["D"] == "1234"
    assert got["F"] == "1"
    assert 25 <= int(got["E"]) <= 30, f"message expiry interval forwarded with the time left: {got['E']}"
    assert got["S"] == "", "no subscription identifier was subscribed with"
    assert got["A"] == "", "mosquitto_sub set no Topic Alias Maximum"
    assert sub.finish() == 0


def test_mosquitto_sub_v5_json_output_carries_the_properties(broker, sub5):
    topic = f"{unique('m5j')}/t"
    sub = sub5(broker, topic, fmt="MSG|%j")
    sub.wait_for(r"received SUBACK")
    pub5(broker, topic, "json", 1, *PROPS)
    doc = json.loads(sub.wait_for(MSG_LINE).string[len("MSG|"):])
    assert (doc["topic"], doc["payload"], doc["qos"], doc["retain"]) == (topic, "json", 1, 0)
    props = doc["properties"]
    assert props["user-properties"] == {"k": "v", "k2": "v2"}
    assert props["content-type"] == "text/plain"
    assert props["response-topic"] == "r/t"
    assert props["correlation-data"] == "1234"
    assert props["payload-format-indicator"] == 1
    assert 25 <= props["message-expiry-interval"] <= 30
    assert sub.finish() == 0


def test_mosquitto_pub_v5_properties_reach_paho_v5(broker, mqtt5_client):
    topic = f"{unique('m5paho')}/t"
    c = mqtt5_client(broker).connect()
    c.subscribe(topic, 1)
    pub5(broker, topic, "to paho", 1, *PROPS, "-D", "publish", "user-property", "k", "again")
    m = c.expect_message()
    assert (m.topic, m.payload, m.qos) == (topic, b"to paho", 1)
    assert m.prop("UserProperty") == [("k", "v"), ("k2", "v2"), ("k", "again")], "order and repeats kept"
    assert m.prop("ContentType") == "text/plain"
    assert m.prop("ResponseTopic") == "r/t"
    assert m.prop("CorrelationData") == b"1234"
    assert m.prop("PayloadFormatIndicator") == 1
    assert 25 <= m.prop("MessageExpiryInterval") <= 30
    assert m.prop("SubscriptionIdentifier") is None
    assert m.prop("TopicAlias") is None


def test_paho_v5_properties_reach_mosquitto_sub_v5(broker, sub5, mqtt5_client):
    topic = f"{unique('paho5m')}/t"
    sub = sub5(broker, topic, qos=2)
    sub.wait_for(r"received SUBACK")
    pub = mqtt5_client(broker).connect()
    assert pub.publish5(topic, b"from paho", qos=2, UserProperty=[("a", "1"), ("a", "2")],
                        ContentType="application/x", ResponseTopic="back/here",
                        CorrelationData=b"cid-9", MessageExpiryInterval=60, PayloadFormatIndicator=0) == 0
    got = fields(sub.wait_for(MSG_LINE).string)
    assert (got["t"], got["p"], got["q"]) == (topic, "from paho", "2")
    assert got["P"] == "a:1 a:2"
    assert (got["C"], got["R"], got["D"], got["F"]) == ("application/x", "back/here", "cid-9", "0")
    assert 55 <= int(got["E"]) <= 60
    assert sub.finish() == 0


def test_mosquitto_sub_v5_subscription_identifier(broker, sub5):
    topic = f"{unique('m5sid')}/t"
    sub = sub5(broker, f"{topic}/+", count=2, extra=("-D", "subscribe", "subscription-identifier", "7"))
    sub.wait_for(r"received SUBACK")
    pub5(broker, f"{topic}/a", "one", 1)
    pub5(broker, f"{topic}/b", "two", 0)
    first = fields(sub.wait_for(MSG_LINE).string)
    second = fields(sub.wait_for(MSG_LINE).string)
    assert (first["p"], first["S"]) == ("one", "7")
    assert (second["p"], second["S"]) == ("two", "7")
    assert sub.finish() == 0


def test_mosquitto_sub_v5_subscription_identifier_seen_by_paho_with_the_same_id(broker, sub5, mqtt5_client):
    # The identifier belongs to the subscription: a paho client subscribed with another id sees its own.
    topic = f"{unique('m5sid2')}/t"
    sub = sub5(broker, topic, extra=("-D", "subscribe", "subscription-identifier", "268435455"))
    sub.wait_for(r"received SUBACK")
    c = mqtt5_client(broker).connect()
    c.subscribe(topic, 1, subscription_id=42)
    pub5(broker, topic, "both", 1)
    assert fields(sub.wait_for(MSG_LINE).string)["S"] == "268435455"
    assert c.expect_message().prop("SubscriptionIdentifier") == [42]
    assert sub.finish() == 0


def test_mosquitto_v5_session_expiry_resumes_and_delivers_queued_message(broker, sub5):
    topic = f"{unique('m5sess')}/t"
    cid = unique("m5sess")
    # Clean start with Session Expiry Interval 60 (-D connect); -E: exit once subscribed (clean DISCONNECT).
    run_sub(broker, "-i", cid, "-q", "1", "-t", topic, "-E", "-D", "connect", "session-expiry-interval", "60")
    # The offline session's subscription matches: PUBACK reason 0, not 0x10 (No Matching Subscribers).
    out = pub5(broker, topic, "queued", 1, "-D", "publish", "user-property", "kept", "yes")
    assert puback_rc(out) == 0
    # Resume: Clean Start 0 (-c), expiry 60 (-x; mosquitto 2.0.11 refuses -c with -D session-expiry-interval).
    sub = sub5(broker, topic, extra=("-i", cid, "-c", "-x", "60"))
    got = fields(sub.wait_for(MSG_LINE).string)
    assert (got["t"], got["p"], got["q"], got["r"], got["P"]) == (topic, "queued", "1", "0", "kept:yes")
    assert sub.finish() == 0


def test_mosquitto_v5_session_expiry_zero_ends_the_session(broker, sub5):
    # The contrast: without a Session Expiry Interval the session ends at DISCONNECT; nothing is queued.
    topic = f"{unique('m5nosess')}/t"
    cid = unique("m5nosess")
    run_sub(broker, "-i", cid, "-q", "1", "-t", topic, "-E")
    assert puback_rc(pub5(broker, topic, "lost", 1)) == 0x10, "No Matching Subscribers"
    sub = sub5(broker, topic, extra=("-i", cid, "-c", "-x", "60"))
    sub.wait_for(r"received SUBACK")
    pub5(broker, topic, MARKER.decode(), 1)
    assert fields(sub.wait_for(MSG_LINE).string)["p"] == MARKER.decode(), "the first message is the marker"
    assert sub.finish() == 0


def test_mosquitto_pub_v5_puback_no_matching_subscribers(broker):
    topic = f"{unique('m5nomatch')}/t"
    assert puback_rc(pub5(broker, topic, "nobody", 1)) == 0x10


def test_mosquitto_pub_v5_session_expiry_on_the_publisher(broker, sub5):
    # mosquitto_pub with a persistent 5.0 session (-c -x 60 -i) publishes normally twice, resuming it.
    topic = f"{unique('m5psess')}/t"
    cid = unique("m5psess")
    sub = sub5(broker, topic, count=2)
    sub.wait_for(r"received SUBACK")
    for payload in ("first", "second"):
        out = pub5(broker, topic, payload, 1, "-c", "-x", "60", client_id=cid)
        assert "received CONNACK (0)" in out
        assert puback_rc(out) == 0
    assert [fields(sub.wait_for(MSG_LINE).string)["p"] for _ in range(2)] == ["first", "second"]
    assert sub.finish() == 0


def test_mosquitto_pub_v5_retained_message_keeps_its_properties(broker, sub5):
    topic = f"{unique('m5ret')}/t"
    pub5(broker, topic, "kept", 1, "-r", "-D", "publish", "user-property", "r", "1",
         "-D", "publish", "content-type", "text/plain")
    sub = sub5(broker, topic)
    got = fields(sub.wait_for(MSG_LINE).string)
    assert (got["t"], got["p"], got["q"], got["r"]) == (topic, "kept", "1", "1")
    assert (got["P"], got["C"]) == ("r:1", "text/plain")
    assert sub.finish() == 0
    pub5(broker, topic, "", 1, "-r")  # clear it


def test_mosquitto_pub_v5_topic_alias_is_not_forwarded(broker, sub5):
    # Topic aliases are per connection (spec 3.3.2.3.4): the subscriber gets the topic, not the alias.
    topic = f"{unique('m5alias')}/t"
    sub = sub5(broker, topic)
    sub.wait_for(r"received SUBACK")
    pub5(broker, topic, "aliased", 1, "-D", "publish", "topic-alias", "1")
    got = fields(sub.wait_for(MSG_LINE).string)
    assert (got["t"], got["p"], got["A"]) == (topic, "aliased", "")
    assert sub.finish() == 0


def test_mosquitto_sub_v311_receives_v5_message_without_properties(broker, sub5):
    # A 3.1.1 subscriber's PUBLISH has no property block: the payload (and its length in the debug line)
    # is exactly what was published, with no property bytes in front of it.
    topic = f"{unique('m5to311')}/t"
    sub = sub5(broker, topic, version="mqttv311")
    sub.wait_for(r"received SUBACK")
    pub5(broker, topic, "plain payload", 1, *PROPS)
    header = sub.wait_for(r"received PUBLISH \(d(\d), q(\d), r(\d), m\d+, '([^']*)', \.\.\. \((\d+) bytes\)\)")
    assert header.groups() == ("0", "1", "0", topic, str(len("plain payload")))
    got = fields(sub.wait_for(MSG_LINE).string)
    assert (got["t"], got["p"], got["l"]) == (topic, "plain payload", "13")
    assert all(got[f] == "" for f in ("P", "C", "E", "R", "D", "F", "S", "A")), got
    assert sub.finish() == 0


def test_mosquitto_sub_v5_and_v311_both_receive_one_v5_publish(broker, sub5):
    topic = f"{unique('m5mixed')}/t"
    v5 = sub5(broker, topic)
    v311 = sub5(broker, topic, version="mqttv311")
    v5.wait_for(r"received SUBACK")
    v311.wait_for(r"received SUBACK")
    pub5(broker, topic, "to both", 1, "-D", "publish", "user-property", "only", "v5")
    assert fields(v5.wait_for(MSG_LINE).string)["P"] == "only:v5"
    got = fields(v311.wait_for(MSG_LINE).string)
    assert (got["p"], got["P"]) == ("to both", "")
    assert v5.finish() == 0
    assert v311.finish() == 0
