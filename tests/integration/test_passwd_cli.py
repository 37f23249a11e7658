"""`fulmar passwd`: the password file tool, and compatibility with mosquitto_passwd both ways.

The hashes are checked independently of Fulmar where Python's standard library can: mosquitto's
`$7$` (PBKDF2-HMAC-SHA512) and Fulmar's SCRAM-SHA-256 lines (RFC 5802 StoredKey/ServerKey).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from conftest import fulmar_binary

RUN_TIMEOUT = 30
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd")
needs_mosquitto_passwd = pytest.mark.skipif(MOSQUITTO_PASSWD is None, reason="mosquitto_passwd not installed")

pytestmark = pytest.mark.fulmar_only


def passwd(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([fulmar_binary(), "passwd", *args], input=stdin, capture_output=True, text=True,
                          timeout=RUN_TIMEOUT, stdin=None if stdin is not None else subprocess.DEVNULL)


def ok(*args: str, stdin: str | None = None) -> None:
    r = passwd(*args, stdin=stdin)
    assert r.returncode == 0, r.stderr


def entries(path: Path) -> dict[str, str]:
    return dict(line.split(":", 1) for line in path.read_text().splitlines() if line and not line.startswith("#"))


def scram_matches(line_hash: str, password: bytes) -> bool:
    """Checks a `$scram-sha-256$i=..,s=..$StoredKey:ServerKey` hash as a SCRAM client would derive it."""
    _, _, params, keys = line_hash.split("$")
    fields = dict(p.split("=", 1) for p in params.split(","))
    salted = hashlib.pbkdf2_hmac("sha256", password, base64.b64decode(fields["s"]), int(fields["i"]))
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    stored, server = (base64.b64decode(k) for k in keys.split(":"))
    return hashlib.sha256(client_key).digest() == stored and hmac.new(salted, b"Server Key", "sha256").digest() == server


def mosquitto_pbkdf2_matches(line_hash: str, password: bytes) -> bool:
    _, _, iterations, salt, digest = line_hash.split("$")
    return hashlib.pbkdf2_hmac("sha512", password, base64.b64decode(salt), int(iterations)) == base64.b64decode(digest)


def test_batch_mode_creates_a_private_argon2id_file(tmp_path):
    path = tmp_path / "passwd"
    ok("-c", "-b", str(path), "alice", "s3cret")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert entries(path)["alice"].startswith("$argon2id$v=19$")
    ok("-b", str(path), "bob", "hunter2")
    ok("-b", str(path), "alice", "changed")  # update in place: alice stays first
    assert list(entries(path)) == ["alice", "bob"]
    assert not list(tmp_path.glob(".passwd.tmp*")), "temporary file left behind"


def test_scram_lines_derive_from_the_password(tmp_path):
    path = tmp_path / "passwd"
    ok("-c", "--scram", "-b", str(path), "user", "pencil")
    line_hash = entries(path)["user"]
    assert line_hash.startswith("$scram-sha-256$i=4096,s=")
    assert scram_matches(line_hash, b"pencil")
    assert not scram_matches(line_hash, b"pencil2")


def test_password_from_stdin_lines_and_mismatch(tmp_path):
    path = tmp_path / "passwd"
    ok("-c", "--scram", str(path), "u", stdin="from stdin\nfrom stdin\n")
    assert scram_matches(entries(path)["u"], b"from stdin")
    r = passwd(str(path), "u", stdin="one\ntwo\n")
    assert r.returncode != 0 and "do not match" in r.stderr
    assert scram_matches(entries(path)["u"], b"from stdin"), "file unchanged after a failure"


def test_delete_and_errors(tmp_path):
    path = tmp_path / "passwd"
    r = passwd("-b", str(path), "u", "p")
    assert r.returncode != 0 and "-c" in r.stderr, "a missing file needs -c"
    ok("-c", "-b", str(path), "u", "p")
    ok("-b", str(path), "v", "p")
    ok("-D", str(path), "u")
    assert list(entries(path)) == ["v"]
    r = passwd("-D", str(path), "u")
    assert r.returncode != 0 and "not in" in r.stderr
    r = passwd("-b", str(path), "a:b", "p")
    assert r.returncode != 0 and "':'" in r.stderr
    bad = tmp_path / "bad"
    bad.write_text("# ok\nno colon here\n")
    r = passwd("-b", str(bad), "u", "p")
    assert r.returncode != 0 and f"{bad}:2:" in r.stderr, r.stderr


@needs_mosquitto_passwd
def test_file_written_by_mosquitto_passwd_is_kept_verbatim(tmp_path):
    path = tmp_path / "passwd"
    subprocess.run([MOSQUITTO_PASSWD, "-c", "-b", str(path), "mosq", "from mosquitto"], check=True,
                   timeout=RUN_TIMEOUT, capture_output=True)
    with path.open("a") as f:
        f.write("# a comment\n")
    before = path.read_text()
    mosq_line = before.splitlines()[0]
    assert mosquitto_pbkdf2_matches(mosq_line.split(":", 1)[1], b"from mosquitto")
    ok("-b", str(path), "fulmar", "from fulmar")
    after = path.read_text()
    assert after.startswith(before), "mosquitto's lines and the comment must survive verbatim"
    assert after.splitlines()[0] == mosq_line
    assert list(entries(path)) == ["mosq", "fulmar"]


@needs_mosquitto_passwd
def test_mosquitto_passwd_keeps_fulmar_lines(tmp_path):
    path = tmp_path / "passwd"
    ok("-c", "--scram", "-b", str(path), "scram-user", "pw")
    fulmar_line = path.read_text().splitlines()[0]
    subprocess.run([MOSQUITTO_PASSWD, "-b", str(path), "other", "pw2"], check=True, timeout=RUN_TIMEOUT,
                   capture_output=True)
    assert path.read_text().splitlines()[0] == fulmar_line
    # And Fulmar still reads the file mosquitto_passwd rewrote.
    ok("-b", str(path), "third", "pw3")
    assert list(entries(path)) == ["scram-user", "other", "third"]
