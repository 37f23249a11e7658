"""`fulmar pub`, `fulmar sub` and `fulmar chat` over TLS against Fulmar's TLS listener: the broker's
certificate checked against ``--cafile``, name mismatches and ``--insecure`` (which skips only the name
check), client certificates, ``mqtts://`` URLs and the 8883 default port, and a chat that reconnects over
TLS. Failures exit with the documented codes (crates/fulmar/src/broker_args.rs): 1 for an unusable TLS
file, 3 (network) for a failed handshake.

The certificates come from the ``pki`` fixture (openssl CLI): a test CA, a server certificate for
127.0.0.1/localhost, alice's client certificate from the same CA and mallory's from another CA; this file
adds a server certificate for ``other.example`` only, from the same CA.
"""

from __future__ import annotations

import socket

import pytest

from cli_helpers import GateProxy, LineProc, fulmar_bin, run
from helpers import WAIT, unique
from security_helpers import OPENSSL_CONF, issue

pytestmark = [pytest.mark.fulmar_only, pytest.mark.security]

EXIT_USAGE, EXIT_NETWORK = 1, 3
# A reconnecting chat may be in a backoff of up to 5 s when the way back opens.
RECONNECT_WAIT = WAIT + 6


def tls_args(cert, key) -> list[str]:
    return ["--listen-tls", "127.0.0.1:{tls_port}", "--tls-cert", str(cert), "--tls-key", str(key)]


@pytest.fixture
def tls_broker(start_fulmar, pki):
    """Plain listener on ``port``, TLS on ``tls_port`` with the 127.0.0.1/localhost certificate."""
    return start_fulmar(tls_args(pki.server.cert, pki.server.key))


@pytest.fixture
def mtls_broker(start_fulmar, pki):
    """TLS on ``tls_port`` that requires a client certificate signed by the test CA."""
    return start_fulmar(tls_args(pki.server.cert, pki.server.key)
                        + ["--tls-ca", str(pki.ca.cert), "--require-client-cert"])


@pytest.fixture(scope="session")
def other_name(pki):
    """A server certificate from the test CA whose only name is DNS:other.example (not 127.0.0.1)."""
    conf = pki.dir / "other-name.cnf"
    conf.write_text(OPENSSL_CONF + "[other]\nbasicConstraints = CA:FALSE\n"
                    "keyUsage = critical,digitalSignature,keyEncipherment\nextendedKeyUsage = serverAuth\n"
                    "subjectAltName = DNS:other.example\nsubjectKeyIdentifier = hash\n"
                    "authorityKeyIdentifier = keyid\n")
    return issue(pki.dir, "other-name", "other.example", pki.ca, "other", conf)


def client(command: str, broker, *args: str, host: str = "127.0.0.1") -> list[str]:
    return [fulmar_bin(), command, "-h", host, "-p", str(broker.tls_port), *args]


def sub_ready(argv: list[str], pub_argv: list[str], topic: str) -> LineProc:
    """Start `fulmar sub -v` and prove it subscribed: it receives a retained marker published before it
    started (then cleared, so nothing else sees it). ``pub_argv`` reaches the same broker. The marker and its
    clearing count as two messages for ``-C``."""
    done = run([*pub_argv, "-t", topic, "-m", "ready", "-r", "-q", "1"])
    assert done.returncode == 0, done.stderr
    sub = LineProc([*argv, "-v", "-W", str(int(WAIT))], name="fulmar sub")
    sub.expect(rf"^{topic} ready$")
    done = run([*pub_argv, "-t", topic, "-n", "-r", "-q", "1"])
    assert done.returncode == 0, done.stderr
    sub.expect(rf"^{topic} $")
    return sub


def assert_fails(proc, code: int, *phrases: str) -> None:
    assert proc.returncode == code, f"exit {proc.returncode}, expected {code}; stderr: {proc.stderr}"
    for phrase in phrases:
        assert phrase in proc.stderr, f"{phrase!r} not in stderr: {proc.stderr}"


# ---------------------------------------------------------------------------------------------
# Server verification with --cafile
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("version", ["4", "5"], ids=["v311", "v5"])
def test_pub_reaches_sub_over_tls_with_cafile(tls_broker, pki, version):
    topic = f"tls/{unique('t')}"
    ca = ["--cafile", str(pki.ca.cert), "-V", version]
    sub = sub_ready(client("sub", tls_broker, *ca, "-t", topic, "-C", "3", "-q", "1"),
                    client("pub", tls_broker, *ca), topic)
    done = run(client("pub", tls_broker, *ca, "-t", topic, "-m", "over tls", "-q", "1"))
    assert done.returncode == 0, done.stderr
    sub.expect(rf"^{topic} over tls$")
    assert sub.wait() == 0


def test_a_dns_name_in_the_certificate_is_verified_too(tls_broker, pki):
    """-h localhost: resolved to the loopback listener, checked against the certificate's DNS:localhost."""
    done = run(client("pub", tls_broker, "--cafile", str(pki.ca.cert), "-t", "tls/dns", "-m", "x",
                      host="localhost"))
    assert done.returncode == 0, done.stderr


def test_a_certificate_from_an_unknown_ca_fails_with_the_network_exit_code(tls_broker, pki):
    done = run(client("pub", tls_broker, "--cafile", str(pki.other_ca.cert), "-t", "tls/x", "-m", "x"))
    assert_fails(done, EXIT_NETWORK, "fulmar pub: error: TLS handshake with", "certificate verify failed: unknown CA",
                 str(pki.other_ca.cert))


def test_tls_version_can_be_pinned(tls_broker, pki):
    for version in ("tlsv1.2", "tlsv1.3"):
        done = run(client("pub", tls_broker, "--cafile", str(pki.ca.cert), "--tls-version", version,
                          "-t", "tls/v", "-m", version))
        assert done.returncode == 0, f"{version}: {done.stderr}"


def test_an_unreadable_cafile_is_a_usage_error_naming_the_file(tls_broker, tmp_path):
    missing = tmp_path / "no-such-ca.pem"
    done = run(client("pub", tls_broker, "--cafile", str(missing), "-t", "tls/x", "-m", "x"))
    assert_fails(done, EXIT_USAGE, "cannot read the CA file", str(missing))
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    done = run(client("sub", tls_broker, "--cafile", str(garbage), "-t", "tls/x"))
    assert_fails(done, EXIT_USAGE, str(garbage), "no PEM certificate")


def test_a_plain_tcp_port_does_not_pass_for_tls(tls_broker, pki):
    """TLS to the plain MQTT listener: the broker reads a ClientHello as garbage; the client fails, bounded."""
    argv = [fulmar_bin(), "pub", "-h", "127.0.0.1", "-p", str(tls_broker.port), "--cafile", str(pki.ca.cert),
            "-t", "tls/x", "-m", "x"]
    assert_fails(run(argv), EXIT_NETWORK, "is this a TLS port?")


# ---------------------------------------------------------------------------------------------
# Name mismatch and --insecure
# ---------------------------------------------------------------------------------------------

def test_insecure_skips_the_name_check_and_nothing_else(start_fulmar, pki, other_name):
    broker = start_fulmar(tls_args(other_name.cert, other_name.key))
    ca = ["--cafile", str(pki.ca.cert)]
    # 127.0.0.1 is not a name in the certificate.
    done = run(client("pub", broker, *ca, "-t", "tls/x", "-m", "x"))
    assert_fails(done, EXIT_NETWORK, "certificate verify failed: name mismatch", "other.example", "--insecure")
    # --insecure: the name is not checked, the chain still is; messages flow.
    topic = f"tls/{unique('insecure')}"
    sub = sub_ready(client("sub", broker, *ca, "--insecure", "-t", topic, "-C", "3"),
                    client("pub", broker, *ca, "--insecure"), topic)
    done = run(client("pub", broker, *ca, "--insecure", "-t", topic, "-m", "no name check"))
    assert done.returncode == 0, done.stderr
    sub.expect(rf"^{topic} no name check$")
    assert sub.wait() == 0
    # --insecure does not trust a certificate from a CA we do not trust.
    done = run(client("pub", broker, "--cafile", str(pki.other_ca.cert), "--insecure", "-t", "tls/x", "-m", "x"))
    assert_fails(done, EXIT_NETWORK, "certificate verify failed: unknown CA")


# ---------------------------------------------------------------------------------------------
# Client certificates
# ---------------------------------------------------------------------------------------------

def test_a_required_client_certificate_is_presented_with_cert_and_key(mtls_broker, pki):
    ca = ["--cafile", str(pki.ca.cert)]
    alice = [*ca, "--cert", str(pki.alice.cert), "--key", str(pki.alice.key)]
    topic = f"tls/{unique('mtls')}"
    sub = sub_ready(client("sub", mtls_broker, *alice, "-t", topic, "-C", "3"),
                    client("pub", mtls_broker, *alice), topic)
    done = run(client("pub", mtls_broker, *alice, "-t", topic, "-m", "from alice"))
    assert done.returncode == 0, done.stderr
    sub.expect(rf"^{topic} from alice$")
    assert sub.wait() == 0

    without = run(client("pub", mtls_broker, *ca, "-t", topic, "-m", "x"))
    assert_fails(without, EXIT_NETWORK, "TLS handshake with")
    assert "client certificate" in without.stderr or "refused the TLS session" in without.stderr, without.stderr

    mallory = run(client("pub", mtls_broker, *ca, "--cert", str(pki.mallory.cert), "--key", str(pki.mallory.key),
                         "-t", topic, "-m", "x"))
    assert_fails(mallory, EXIT_NETWORK, "TLS handshake with")


def test_cert_without_key_is_a_usage_error(tls_broker, pki):
    done = run(client("pub", tls_broker, "--cafile", str(pki.ca.cert), "--cert", str(pki.alice.cert),
                      "-t", "tls/x", "-m", "x"))
    assert_fails(done, EXIT_USAGE, "--cert and --key")


# ---------------------------------------------------------------------------------------------
# mqtts:// and the default port
# ---------------------------------------------------------------------------------------------

def test_mqtts_url_turns_tls_on(tls_broker, pki):
    topic = f"tls/{unique('url')}"
    url = f"mqtts://127.0.0.1:{tls_broker.tls_port}/{topic}"
    ca = ["--cafile", str(pki.ca.cert)]
    sub = sub_ready([fulmar_bin(), "sub", "-L", url, *ca, "-C", "3"], [fulmar_bin(), "pub", "-L", url, *ca], topic)
    done = run([fulmar_bin(), "pub", "-L", url, *ca, "-m", "by url"])
    assert done.returncode == 0, done.stderr
    sub.expect(rf"^{topic} by url$")
    assert sub.wait() == 0
    # The same URL without TLS speaks plain MQTT to the TLS port: the broker's answer is a TLS alert, and the
    # client says so.
    plain = run([fulmar_bin(), "pub", "-L", url.replace("mqtts://", "mqtt://"), "-m", "x"])
    assert_fails(plain, EXIT_NETWORK, "answered with TLS", "mqtts://")


def test_tls_without_a_port_means_8883():
    with socket.socket() as probe:
        probe.settimeout(1)
        if probe.connect_ex(("127.0.0.1", 8883)) == 0:
            pytest.skip("something listens on 127.0.0.1:8883")
    done = run([fulmar_bin(), "pub", "-L", "mqtts://127.0.0.1/tls/x", "-m", "x"])
    assert_fails(done, EXIT_NETWORK, "127.0.0.1:8883")


# ---------------------------------------------------------------------------------------------
# fulmar chat
# ---------------------------------------------------------------------------------------------

def chat(port: int, pki, room: str, nick: str) -> LineProc:
    argv = [fulmar_bin(), "chat", "-h", "127.0.0.1", "-p", str(port), "--cafile", str(pki.ca.cert),
            "--room", room, "--nick", nick]
    proc = LineProc(argv, stdin=True, name=f"chat {nick}")
    proc.expect(rf"^\* joined room {room} as {nick}$")
    return proc


def test_chat_over_tls_exchanges_messages_and_reconnects_over_tls(tls_broker, pki):
    room = unique("room")
    proxy = GateProxy(("127.0.0.1", tls_broker.tls_port))  # TCP proxy: TLS passes through it untouched
    chats: list[LineProc] = []
    try:
        alice = chat(proxy.port, pki, room, "alice")
        chats.append(alice)
        bob = chat(tls_broker.tls_port, pki, room, "bob")
        chats.append(bob)
        alice.expect(r"^\* bob joined$")
        bob.expect(r"^\* alice joined$")
        alice.send("hello over tls")
        bob.expect(r"^\[\d\d:\d\d\] <alice> hello over tls$")
        proxy.cut()
        alice.expect(r"^\* connection lost, reconnecting")
        alice.send("typed while disconnected")
        proxy.open()
        alice.expect(r"^\* reconnected$", timeout=RECONNECT_WAIT)
        bob.expect(r"^\[\d\d:\d\d\] <alice> typed while disconnected$")
        bob.send("welcome back")
        alice.expect(r"^\[\d\d:\d\d\] <bob> welcome back$")
    finally:
        for c in chats:
            c.stop()
        proxy.close()
