"""Helpers for the security tests: test certificates (openssl CLI), password files, `fulmar passwd`,
a SCRAM-SHA-256 client (RFC 5802 / RFC 7677) written here from the RFC, and raw MQTT over TLS.

Nothing here comes from Fulmar's code: the hashes, the SCRAM exchange and the certificates are made from
the public specifications and standard tools, so the tests check Fulmar against them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import socket
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

import mqtt5_raw
import mqtt_raw
from cli_helpers import fulmar_bin, run
from helpers import WAIT

# ---------------------------------------------------------------------------------------------
# Certificates
# ---------------------------------------------------------------------------------------------

OPENSSL_CONF = """\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = placeholder
[v3_ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[server]
basicConstraints = CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1,DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[client]
basicConstraints = CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""


CLIENT_PROFILE = OPENSSL_CONF.split("[client]\n", 1)[1]  # the [client] extensions, to extend with a SAN


def _openssl(*args: str) -> None:
    proc = subprocess.run(["openssl", *args], capture_output=True, text=True, timeout=WAIT)
    assert proc.returncode == 0, f"openssl {' '.join(args)} failed:\n{proc.stderr}"


@dataclass
class CertPair:
    cert: Path
    key: Path


@dataclass
class Pki:
    """A test CA with a server certificate (SAN IP:127.0.0.1, DNS:localhost) and two client certificates:
    ``alice`` signed by the CA, ``mallory`` signed by ``other_ca``, which the broker does not trust."""

    dir: Path
    ca: CertPair
    other_ca: CertPair
    server: CertPair
    alice: CertPair
    mallory: CertPair

    @classmethod
    def create(cls, directory: Path) -> "Pki":
        conf = directory / "openssl.cnf"
        conf.write_text(OPENSSL_CONF)
        ca = make_ca(directory, "ca", "Fulmar Test CA", conf)
        other = make_ca(directory, "other-ca", "Some Other CA", conf)
        return cls(directory, ca, other,
                   issue(directory, "server", "localhost", ca, "server", conf),
                   issue(directory, "alice", "alice", ca, "client", conf),
                   issue(directory, "mallory", "mallory", other, "client", conf))

    def new_client_with_san(self, name: str, cn: str, san: str) -> CertPair:
        """A client certificate CN=``cn`` from the test CA with the subjectAltName ``san`` (openssl syntax,
        e.g. ``"IP:10.0.0.1,email:carol@example.com,DNS:carol.example"``; the order is kept)."""
        conf = self.dir / f"{name}.cnf"
        conf.write_text(OPENSSL_CONF + f"[client_san]\n{CLIENT_PROFILE}subjectAltName = {san}\n")
        return issue(self.dir, name, cn, self.ca, "client_san", conf)

    def new_server_pair(self, name: str) -> CertPair:
        """Another server certificate for 127.0.0.1 / localhost from the same CA, with a fresh key."""
        return issue(self.dir, name, "localhost", self.ca, "server", self.dir / "openssl.cnf")


def _new_key(path: Path) -> None:
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(path))


def make_ca(directory: Path, name: str, cn: str, conf: Path) -> CertPair:
    pair = CertPair(directory / f"{name}.pem", directory / f"{name}.key")
    _new_key(pair.key)
    _openssl("req", "-x509", "-new", "-key", str(pair.key), "-out", str(pair.cert), "-days", "30", "-sha256",
             "-subj", f"/CN={cn}", "-config", str(conf), "-extensions", "v3_ca")
    return pair


def issue(directory: Path, name: str, cn: str, ca: CertPair, profile: str, conf: Path) -> CertPair:
    """A key and a certificate CN=``cn`` signed by ``ca`` with the extensions of ``profile`` (server/client)."""
    pair = CertPair(directory / f"{name}.pem", directory / f"{name}.key")
    csr = directory / f"{name}.csr"
    _new_key(pair.key)
    _openssl("req", "-new", "-key", str(pair.key), "-out", str(csr), "-subj", f"/CN={cn}", "-config", str(conf))
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca.cert), "-CAkey", str(ca.key), "-out", str(pair.cert),
             "-days", "30", "-sha256", "-set_serial", str(secrets.randbits(63)), "-extfile", str(conf),
             "-extensions", profile)
    return pair


def cert_fingerprint(path: Path) -> str:
    """SHA-256 of the DER form of the first certificate in a PEM file."""
    der = ssl.PEM_cert_to_DER_cert(path.read_text())
    return hashlib.sha256(der).hexdigest()


def client_context(pki: Pki, *, cert: CertPair | None = None, min_version=None, max_version=None) -> ssl.SSLContext:
    """A TLS client context that trusts the test CA, optionally presenting a client certificate."""
    ctx = ssl.create_default_context(cafile=str(pki.ca.cert))
    if cert is not None:
        ctx.load_cert_chain(str(cert.cert), str(cert.key))
    if min_version is not None:
        ctx.minimum_version = min_version
    if max_version is not None:
        ctx.maximum_version = max_version
    return ctx


class TlsRawClient(mqtt_raw.RawClient):
    """``RawClient`` over TLS: the handshake happens in the constructor (and raises ssl.SSLError if refused)."""

    def __init__(self, host: str, port: int, ctx: ssl.SSLContext, *, server_hostname: str = "localhost",
                 timeout: float = WAIT):
        raw = socket.create_connection((host, port), timeout=timeout)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            self.sock = ctx.wrap_socket(raw, server_hostname=server_hostname)
        except BaseException:
            raw.close()
            raise
        self.sock.settimeout(timeout)
        self._buf = bytearray()
        self._eof = False

    def peer_fingerprint(self) -> str:
        return hashlib.sha256(self.sock.getpeercert(binary_form=True)).hexdigest()


class TlsRaw5Client(TlsRawClient, mqtt5_raw.Raw5Client):
    """``Raw5Client`` over TLS."""


def tls_connect_outcome(host: str, port: int, ctx: ssl.SSLContext, client_id: str = "tls-probe", **connect_kw):
    """Handshake, send CONNECT, read one packet. Returns ("connack", return_code) or ("refused", reason) when
    the handshake fails or the connection ends before a CONNACK (with TLS 1.3 a refused client certificate
    only shows on the first read, as an alert)."""
    try:
        c = TlsRawClient(host, port, ctx)
    except (ssl.SSLError, ConnectionError) as e:
        return "refused", repr(e)
    try:
        c.send(mqtt_raw.connect(client_id, **connect_kw))
        p = c.read_packet(WAIT)
    except (ssl.SSLError, ConnectionError, mqtt_raw.ConnectionClosed, OSError) as e:
        return "refused", repr(e)
    finally:
        c.close()
    assert p.ptype == mqtt_raw.CONNACK, f"expected CONNACK or a refused handshake, got {p!r}"
    return "connack", p.return_code


# ---------------------------------------------------------------------------------------------
# Password files
# ---------------------------------------------------------------------------------------------

def mosquitto_pbkdf2_hash(password: str, iterations: int = 101) -> str:
    """A hash in mosquitto_passwd's 2.x format: ``$7$<iterations>$<b64 salt>$<b64 PBKDF2-HMAC-SHA512>``
    (12-byte salt, 64-byte output), which Fulmar accepts so users can migrate."""
    salt = os.urandom(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, 64)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def write_password_file(path: Path, users: dict[str, str]) -> Path:
    """A password file in mosquitto's format (see ``mosquitto_pbkdf2_hash``); no dependency on `fulmar passwd`."""
    path.write_text("".join(f"{user}:{mosquitto_pbkdf2_hash(pw)}\n" for user, pw in users.items()))
    return path


_PASSWD_AVAILABLE: bool | None = None


def require_fulmar_passwd() -> None:
    """Skip the test when this binary has no `fulmar passwd` subcommand yet."""
    global _PASSWD_AVAILABLE
    if _PASSWD_AVAILABLE is None:
        proc = run([fulmar_bin(), "passwd", "--help"])
        _PASSWD_AVAILABLE = proc.returncode == 0
    if not _PASSWD_AVAILABLE:
        pytest.skip("this fulmar binary has no `passwd` subcommand yet (`fulmar passwd --help` fails)")


def fulmar_passwd(*args: str) -> subprocess.CompletedProcess:
    """Run `fulmar passwd ARGS` (skipping the test if the subcommand does not exist); asserts success."""
    require_fulmar_passwd()
    proc = run([fulmar_bin(), "passwd", *args])
    assert proc.returncode == 0, f"fulmar passwd {' '.join(args)} exited {proc.returncode}: {proc.stderr}"
    return proc


# ---------------------------------------------------------------------------------------------
# Connection-level expectations
# ---------------------------------------------------------------------------------------------

def closed_without_connack(host: str, port: int, client_id: str = "over-limit") -> tuple[bool, str]:
    """Open a TCP connection, send CONNECT, and report whether the broker closed it without a CONNACK.
    Returns (closed_without_connack, what happened)."""
    try:
        c = mqtt_raw.RawClient(host, port, timeout=WAIT)
    except OSError as e:  # refused at accept counts as closed without CONNACK
        return True, f"connect failed: {e!r}"
    try:
        try:
            c.send(mqtt_raw.connect(client_id))
        except OSError as e:
            return True, f"send failed: {e!r}"
        try:
            p = c.read_packet(WAIT)
        except (mqtt_raw.ConnectionClosed, ConnectionError) as e:
            return True, f"closed: {e}"
        except TimeoutError:
            return False, f"connection left open without an answer for {WAIT}s"
        return False, f"got {p!r}"
    finally:
        c.close()


# ---------------------------------------------------------------------------------------------
# SCRAM-SHA-256 (RFC 5802, RFC 7677), client side
# ---------------------------------------------------------------------------------------------

def _hmac(key: bytes, msg: bytes) -> bytes:
    return hmac.new(key, msg, hashlib.sha256).digest()


def _attrs(message: bytes) -> dict[str, str]:
    """``a=1,b=2`` into a dict (values may contain '=')."""
    out = {}
    for part in message.decode().split(","):
        key, _, value = part.partition("=")
        out[key] = value
    return out


class ScramClient:
    """One SCRAM-SHA-256 exchange: ``first()``, then ``final(server_first)``, then ``verify(server_final)``."""

    def __init__(self, username: str, password: str, nonce: str | None = None):
        self.username = username.replace("=", "=3D").replace(",", "=2C")  # RFC 5802 5.1, saslname
        self.password = password
        self.nonce = nonce or base64.b64encode(os.urandom(18)).decode()
        self.client_first_bare = f"n={self.username},r={self.nonce}"
        self.server_signature: bytes | None = None

    def first(self) -> bytes:
        return ("n,," + self.client_first_bare).encode()  # gs2 header: no channel binding, no authzid

    def final(self, server_first: bytes) -> bytes:
        attrs = _attrs(server_first)
        combined, salt, iterations = attrs["r"], base64.b64decode(attrs["s"]), int(attrs["i"])
        assert combined.startswith(self.nonce) and len(combined) > len(self.nonce), \
            f"server nonce {combined!r} does not extend the client nonce {self.nonce!r} (RFC 5802 5.1)"
        salted = hashlib.pbkdf2_hmac("sha256", self.password.encode(), salt, iterations)
        client_key = _hmac(salted, b"Client Key")
        stored_key = hashlib.sha256(client_key).digest()
        without_proof = f"c=biws,r={combined}"  # biws = base64("n,,")
        auth_message = f"{self.client_first_bare},{server_first.decode()},{without_proof}".encode()
        signature = _hmac(stored_key, auth_message)
        proof = bytes(a ^ b for a, b in zip(client_key, signature))
        self.server_signature = _hmac(_hmac(salted, b"Server Key"), auth_message)
        return f"{without_proof},p={base64.b64encode(proof).decode()}".encode()

    def verify(self, server_final: bytes) -> bool:
        attrs = _attrs(server_final)
        return "v" in attrs and base64.b64decode(attrs["v"]) == self.server_signature
