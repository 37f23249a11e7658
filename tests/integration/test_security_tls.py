"""TLS listeners (rustls): paho and mosquitto_pub/sub with the CA file, TLS 1.2 and 1.3, client certificates
(required, from an untrusted CA, missing), the certificate CN as the username for the ACL, and certificate
reload on SIGHUP without dropping connections.

The certificates come from the ``pki`` fixture (openssl CLI): a test CA, a server certificate for
127.0.0.1/localhost, alice's client certificate from the same CA and mallory's from another CA.
"""

from __future__ import annotations

import hashlib
import http.client
import shutil
import socket
import ssl
import subprocess

import pytest

import mqtt_raw
from helpers import MARKER, WAIT, unique
from security_helpers import (TlsRawClient, cert_fingerprint, client_context, tls_connect_outcome,
                              write_password_file)

pytestmark = [pytest.mark.fulmar_only, pytest.mark.security]

needs_mosquitto_clients = pytest.mark.skipif(
    not (shutil.which("mosquitto_pub") and shutil.which("mosquitto_sub")),
    reason="mosquitto-clients not installed (scripts/test.sh installs it)")


def tls_args(pki, cert=None, key=None) -> list[str]:
    return ["--listen-tls", "127.0.0.1:{tls_port}", "--tls-cert", str(cert or pki.server.cert),
            "--tls-key", str(key or pki.server.key)]


def mtls_args(pki) -> list[str]:
    return tls_args(pki) + ["--tls-ca", str(pki.ca.cert), "--require-client-cert"]


@pytest.fixture
def tls_broker(start_fulmar, pki):
    """A broker with a plain listener (``port``) and a TLS one (``tls_port``); anonymous access."""
    return start_fulmar(tls_args(pki))


@pytest.fixture
def tls_client(mqtt_client, pki):
    """``tls_client(broker, cert=None)``: a paho client that connects to the TLS port trusting the test CA."""

    def make(broker, cert=None, **kwargs):
        c = mqtt_client(broker, **kwargs)
        c.port = broker.tls_port
        c.paho.tls_set(ca_certs=str(pki.ca.cert), certfile=str(cert.cert) if cert else None,
                       keyfile=str(cert.key) if cert else None)
        return c

    return make


# ---------------------------------------------------------------------------------------------
# Server authentication: any client that trusts the CA
# ---------------------------------------------------------------------------------------------

def test_paho_publishes_and_subscribes_over_tls(tls_broker, tls_client, mqtt_client):
    sub = tls_client(tls_broker).connect()
    assert sub.subscribe("tls/#", 1) == [1]
    pub = tls_client(tls_broker).connect()
    pub.publish("tls/a", b"over tls", qos=1)
    m = sub.expect_message()
    assert (m.topic, m.payload) == ("tls/a", b"over tls")
    # TLS and plain TCP clients share one broker.
    plain = mqtt_client(tls_broker).connect()
    plain.publish("tls/b", b"over tcp", qos=1)
    m = sub.expect_message()
    assert (m.topic, m.payload) == ("tls/b", b"over tcp")


def test_large_payloads_arrive_whole_and_in_order_over_tls_and_tcp(tls_broker, tls_client, mqtt_client):
    """Payloads of 2 KiB and more leave the broker by reference (vectored writes, no copy into the
    write buffer) on TLS and plain TCP alike; sizes around that threshold, interleaved with small
    ones, must arrive byte for byte and in order on both."""
    sizes = [10, 2047, 2048, 3, 4096, 65_543, 1, 300_000, 2049, 0, 8192]
    payloads = [bytes((i * 7 + j) % 251 for j in range(n)) for i, n in enumerate(sizes)]
    subs = [tls_client(tls_broker).connect(), mqtt_client(tls_broker).connect()]
    for sub in subs:
        assert sub.subscribe("big/#", 1) == [1]
    pub = mqtt_client(tls_broker).connect()
    for i, payload in enumerate(payloads):
        pub.publish(f"big/{i}", payload, qos=1 if i % 2 else 0)
    for sub in subs:
        got = [sub.expect_message() for _ in payloads]
        assert [m.topic for m in got] == [f"big/{i}" for i in range(len(payloads))]
        for m, payload in zip(got, payloads):
            assert m.payload == payload, f"{m.topic}: {len(m.payload)} bytes, expected {len(payload)}"


@needs_mosquitto_clients
def test_mosquitto_pub_and_sub_work_over_tls_with_cafile(tls_broker, pki):
    common = ["-h", "127.0.0.1", "-p", str(tls_broker.tls_port), "--cafile", str(pki.ca.cert)]
    topic = f"tls/{unique('mq')}"
    pub = subprocess.run(["mosquitto_pub", *common, "-t", topic, "-m", "hello tls", "-q", "1", "-r"],
                         capture_output=True, text=True, timeout=WAIT)
    assert pub.returncode == 0, f"mosquitto_pub over TLS failed: {pub.stderr}"
    sub = subprocess.run(["mosquitto_sub", *common, "-t", topic, "-C", "1", "-W", str(int(WAIT)), "-v"],
                         capture_output=True, text=True, timeout=WAIT + 5)
    assert sub.returncode == 0, f"mosquitto_sub over TLS failed: {sub.stderr}"
    assert sub.stdout.strip() == f"{topic} hello tls"


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3], ids=["tls1.2", "tls1.3"])
def test_tls_1_2_and_1_3_are_both_accepted(tls_broker, pki, version):
    ctx = client_context(pki, min_version=version, max_version=version)
    c = TlsRawClient(tls_broker.host, tls_broker.tls_port, ctx)
    try:
        assert c.sock.version() == {ssl.TLSVersion.TLSv1_2: "TLSv1.2", ssl.TLSVersion.TLSv1_3: "TLSv1.3"}[version]
        assert c.mqtt_connect(unique("tlsv")).return_code == 0
        assert c.mqtt_subscribe(1, [("v/#", 0)]).granted == [0]
    finally:
        c.close()


def test_tls_port_does_not_speak_plain_mqtt(tls_broker):
    c = mqtt_raw.RawClient(tls_broker.host, tls_broker.tls_port)
    try:
        c.send(mqtt_raw.connect(unique("plain")))
        try:
            p = c.read_packet(WAIT)
        except (mqtt_raw.ConnectionClosed, ConnectionError):
            return
        assert p.ptype != mqtt_raw.CONNACK, "the TLS port answered a plaintext CONNECT"
    except ValueError:
        return  # a TLS alert is not an MQTT packet; anything but a CONNACK is a refusal
    finally:
        c.close()


# ---------------------------------------------------------------------------------------------
# Client certificates
# ---------------------------------------------------------------------------------------------

def test_client_without_a_certificate_is_refused_when_one_is_required(start_fulmar, pki):
    broker = start_fulmar(mtls_args(pki))
    outcome = tls_connect_outcome(broker.host, broker.tls_port, client_context(pki))
    assert outcome[0] == "refused", f"a client without a certificate got {outcome}"


def test_client_certificate_from_another_ca_is_refused(start_fulmar, pki):
    broker = start_fulmar(mtls_args(pki))
    outcome = tls_connect_outcome(broker.host, broker.tls_port, client_context(pki, cert=pki.mallory))
    assert outcome[0] == "refused", f"mallory's certificate (untrusted CA) got {outcome}"


def test_client_certificate_from_the_trusted_ca_is_accepted(start_fulmar, pki):
    broker = start_fulmar(mtls_args(pki))
    outcome = tls_connect_outcome(broker.host, broker.tls_port, client_context(pki, cert=pki.alice))
    assert outcome == ("connack", 0)


@needs_mosquitto_clients
def test_mosquitto_pub_needs_a_trusted_client_certificate_when_required(start_fulmar, pki):
    broker = start_fulmar(mtls_args(pki))
    common = ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(broker.tls_port), "--cafile", str(pki.ca.cert),
              "-t", "mtls/x", "-m", "hi", "-q", "1"]
    ok = subprocess.run([*common, "--cert", str(pki.alice.cert), "--key", str(pki.alice.key)],
                        capture_output=True, text=True, timeout=WAIT)
    assert ok.returncode == 0, f"mosquitto_pub with alice's certificate failed: {ok.stderr}"
    bare = subprocess.run(common, capture_output=True, text=True, timeout=WAIT)
    assert bare.returncode != 0, "mosquitto_pub without a client certificate succeeded"
    other = subprocess.run([*common, "--cert", str(pki.mallory.cert), "--key", str(pki.mallory.key)],
                           capture_output=True, text=True, timeout=WAIT)
    assert other.returncode != 0, "mosquitto_pub with a certificate from an untrusted CA succeeded"


CN_ACL = """\
user alice
topic readwrite alice/#

user bob
topic readwrite bob/#
"""


@pytest.fixture
def cn_broker(start_fulmar, pki, tmp_path):
    """Client certificates required, CN as the username; a password file (bob only) turns anonymous off."""
    pw = write_password_file(tmp_path / "passwords", {"bob": "b-pw"})
    acl = tmp_path / "acl"
    acl.write_text(CN_ACL)
    return start_fulmar(mtls_args(pki) + ["--tls-identity-as-username", "cn", "--password-file", str(pw),
                                          "--acl-file", str(acl)])


def test_certificate_cn_is_the_username_for_the_acl_without_a_password(cn_broker, tls_client, pki):
    alice = tls_client(cn_broker, cert=pki.alice).connect()
    assert alice.subscribe("alice/#", 1) == [1]
    assert alice.subscribe("bob/#", 1) == [0x80]
    alice.publish("alice/x", b"mine", qos=1)
    m = alice.expect_message()
    assert (m.topic, m.payload) == ("alice/x", b"mine")


def test_certificate_identity_cannot_be_overridden_by_the_connect_username(cn_broker, tls_client, pki):
    c = tls_client(cn_broker, cert=pki.alice)
    c.paho.username_pw_set("bob", "b-pw")
    c.connect(expect_rc=None)
    if c.connack_rc != 0:
        return  # refusing a username that contradicts the certificate is also safe
    assert c.subscribe("bob/#", 1) == [0x80], "a certificate for alice was given bob's rights"
    assert c.subscribe("alice/#", 1) == [1]


SAN_ACL = """\
user carol@example.com
topic readwrite carol/#

user erin.example
topic readwrite erin/#

user dave
topic readwrite dave/#
"""


@pytest.fixture
def san_broker(start_fulmar, pki, tmp_path):
    """Client certificates required, the first DNS or e-mail SAN as the username."""
    pw = write_password_file(tmp_path / "passwords", {"bob": "b-pw"})
    acl = tmp_path / "acl"
    acl.write_text(SAN_ACL)
    return start_fulmar(mtls_args(pki) + ["--tls-identity-as-username", "san", "--password-file", str(pw),
                                          "--acl-file", str(acl)])


def test_certificate_first_dns_or_email_san_is_the_username(san_broker, tls_client, pki):
    # CN=dave would get dave/#. The SANs: an IP address (neither DNS nor e-mail: skipped), then the e-mail
    # address that must become the username, then a DNS name that comes too late.
    carol = pki.new_client_with_san(unique("carol"), "dave",
                                    "IP:10.0.0.1,email:carol@example.com,DNS:carol.example")
    c = tls_client(san_broker, cert=carol).connect()
    assert c.subscribe("carol/#", 1) == [1], "the first DNS/e-mail SAN is not the username"
    assert c.subscribe("dave/#", 1) == [0x80], "the subject CN was used instead of the SAN"
    assert c.subscribe("erin/#", 1) == [0x80]
    c.publish("carol/x", b"by san", qos=1)
    m = c.expect_message()
    assert (m.topic, m.payload) == ("carol/x", b"by san")
    # A DNS name first: it is the username, not the e-mail address after it.
    erin = pki.new_client_with_san(unique("erin"), "dave", "DNS:erin.example,email:carol@example.com")
    e = tls_client(san_broker, cert=erin).connect()
    assert e.subscribe("erin/#", 1) == [1]
    assert e.subscribe("carol/#", 1) == [0x80]
    assert e.subscribe("dave/#", 1) == [0x80]


def test_tls_listener_with_client_certificates_from_the_config_file(start_fulmar, pki, tmp_path):
    pw = write_password_file(tmp_path / "passwords", {"bob": "b-pw"})
    acl = tmp_path / "acl"
    acl.write_text(CN_ACL)
    broker = start_fulmar(config_toml=f"""
[auth]
password_file = "{pw}"
acl_file = "{acl}"

[[listeners]]
bind = "127.0.0.1:{{port}}"

[[listeners]]
bind = "127.0.0.1:{{tls_port}}"

[listeners.tls]
cert = "{pki.server.cert}"
key = "{pki.server.key}"
ca = "{pki.ca.cert}"
require_client_cert = true
identity_as_username = "cn"
""")
    c = TlsRawClient(broker.host, broker.tls_port, client_context(pki, cert=pki.alice))
    try:
        assert c.mqtt_connect(unique("cfgtls")).return_code == 0
        assert c.mqtt_subscribe(1, [("alice/#", 1), ("bob/#", 1)]).granted == [1, 0x80]
    finally:
        c.close()
    outcome = tls_connect_outcome(broker.host, broker.tls_port, client_context(pki))
    assert outcome[0] == "refused", f"a client without a certificate got {outcome}"


# ---------------------------------------------------------------------------------------------
# Reload
# ---------------------------------------------------------------------------------------------

def test_sighup_reloads_certificates_without_dropping_connections(start_fulmar, pki, tmp_path):
    cert, key = tmp_path / "server.pem", tmp_path / "server.key"
    shutil.copyfile(pki.server.cert, cert)
    shutil.copyfile(pki.server.key, key)
    old_fp = cert_fingerprint(cert)
    broker = start_fulmar(tls_args(pki, cert, key))

    before = TlsRawClient(broker.host, broker.tls_port, client_context(pki))
    try:
        assert before.peer_fingerprint() == old_fp
        assert before.mqtt_connect(unique("before")).return_code == 0
        assert before.mqtt_subscribe(1, [("reload/#", 1)]).granted == [1]

        new = pki.new_server_pair(f"server-{unique('n')}")
        new_fp = cert_fingerprint(new.cert)
        assert new_fp != old_fp
        # Replace the files in place (write to a temporary name, then rename over), as certbot does.
        for src, dst in ((new.cert, cert), (new.key, key)):
            tmp = dst.with_suffix(".tmp")
            shutil.copyfile(src, tmp)
            tmp.replace(dst)
        offset = broker.sighup()
        broker.wait_log(r"reloaded", after=offset)

        after = TlsRawClient(broker.host, broker.tls_port, client_context(pki))
        try:
            assert after.peer_fingerprint() == new_fp, "a new connection still gets the old certificate"
            assert after.mqtt_connect(unique("after")).return_code == 0
            after.send(mqtt_raw.publish("reload/x", b"after reload", qos=1, packet_id=3))
            after.expect(mqtt_raw.PUBACK)
        finally:
            after.close()
        # The connection made before the reload still works, both ways.
        p = before.expect(mqtt_raw.PUBLISH)
        assert (p.topic, p.payload) == ("reload/x", b"after reload")
        before.send(mqtt_raw.puback(p.packet_id))
        before.send(mqtt_raw.publish("reload/y", MARKER, qos=1, packet_id=4))
        acks = {before.read_packet().ptype for _ in range(2)}  # its PUBACK and its own message back
        assert acks == {mqtt_raw.PUBACK, mqtt_raw.PUBLISH}
    finally:
        before.close()


# ---------------------------------------------------------------------------------------------
# MQTT over secure WebSocket (wss://), and the chat page over HTTPS
# ---------------------------------------------------------------------------------------------

def test_paho_over_secure_websocket_and_the_chat_page_over_https(start_fulmar, pki, mqtt_client):
    from test_websocket import WsMqttClient

    broker = start_fulmar(["--listen-wss", "127.0.0.1:{tls_port}", "--tls-cert", str(pki.server.cert),
                           "--tls-key", str(pki.server.key)])
    made = []

    def wss_client():
        c = WsMqttClient(broker.host, broker.tls_port)  # path /mqtt, subprotocol mqtt
        c.paho.tls_set(ca_certs=str(pki.ca.cert))
        made.append(c)
        return c

    try:
        sub = wss_client().connect()
        assert sub.subscribe("wss/#", 1) == [1]
        pub = wss_client().connect()
        pub.publish("wss/a", b"over wss", qos=1)
        m = sub.expect_message()
        assert (m.topic, m.payload, m.qos) == ("wss/a", b"over wss", 1)
        # A plain TCP client of the same broker reaches the wss:// subscriber.
        plain = mqtt_client(broker).connect()
        plain.publish("wss/b", b"from tcp", qos=1)
        m = sub.expect_message()
        assert (m.topic, m.payload) == ("wss/b", b"from tcp")
    finally:
        for c in made:
            c.stop()

    # The same listener serves the chat page over HTTPS, with the certificate the test CA signed.
    conn = http.client.HTTPSConnection(broker.host, broker.tls_port, timeout=WAIT, context=client_context(pki))
    try:
        conn.request("GET", "/")
        r = conn.getresponse()
        body = r.read()
        assert r.status == 200 and r.getheader("content-type", "").startswith("text/html"), \
            (r.status, r.getheaders())
        assert b"<title>Fulmar chat</title>" in body
        assert hashlib.sha256(conn.sock.getpeercert(binary_form=True)).hexdigest() == \
            cert_fingerprint(pki.server.cert)
    finally:
        conn.close()
    # And it speaks only TLS: plain HTTP on it gets no page.
    with socket.create_connection((broker.host, broker.tls_port), timeout=WAIT) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        try:
            answer = s.recv(4096)
        except (ConnectionError, socket.timeout):
            answer = b""
    assert b"Fulmar chat" not in answer and not answer.startswith(b"HTTP/1.1 200"), answer[:200]
