"""Authentication: password files (mosquitto's format and `fulmar passwd`), anonymous access per listener,
CONNACK codes for refused logins, logs that never show a password, SIGHUP reload of the password file, and
MQTT 5 enhanced authentication with SCRAM-SHA-256 (a client written here from RFC 5802).

Password files for most tests are written in mosquitto_passwd's PBKDF2-SHA512 format by
``security_helpers.write_password_file`` (checked against mosquitto itself), so these tests do not depend
on `fulmar passwd`; the tests of `fulmar passwd` itself skip while the binary lacks it.
"""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

import mqtt5_raw
import mqtt_raw
from helpers import PROTOCOLS, V311, unique
from security_helpers import ScramClient, fulmar_passwd, require_fulmar_passwd, write_password_file

pytestmark = [pytest.mark.fulmar_only, pytest.mark.security]

CONNACK_BAD_CREDENTIALS = 4  # 3.1.1: bad user name or password
CONNACK_NOT_AUTHORIZED = 5
V5_BAD_CREDENTIALS = 0x86
V5_NOT_AUTHORIZED = 0x87
V5_BAD_AUTH_METHOD = 0x8C
AUTH_CONTINUE = 0x18
SCRAM = "SCRAM-SHA-256"

USERS = {"alice": "alice-pw-7Hq2", "bob": "bob-pw-Xc91"}


@pytest.fixture
def password_broker(start_fulmar, tmp_path):
    """A broker with a password file (alice, bob) and nothing else: anonymous access is off."""
    pw = write_password_file(tmp_path / "passwords", USERS)
    return start_fulmar(["--password-file", str(pw)])


def connack(broker, proto=V311, port=None, **kw) -> int:
    """Connect with a raw client (v3.1 / v3.1.1) and return the CONNACK return code."""
    c = mqtt_raw.RawClient(broker.host, port or broker.port)
    try:
        return c.mqtt_connect(unique("auth"), level=proto.level, **kw).return_code
    finally:
        c.close()


def connack5(broker, **kw) -> int:
    c = mqtt5_raw.Raw5Client(broker.host, broker.port)
    try:
        return c.mqtt_connect(unique("auth5"), **kw).reason
    finally:
        c.close()


# ---------------------------------------------------------------------------------------------
# Passwords and anonymous access
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("proto", PROTOCOLS, ids=[p.name for p in PROTOCOLS])
def test_right_password_is_accepted_and_wrong_one_gets_connack_4(password_broker, proto):
    assert connack(password_broker, proto, username="alice", password=USERS["alice"].encode()) == 0
    assert connack(password_broker, proto, username="alice", password=b"not-her-password") == CONNACK_BAD_CREDENTIALS
    # bob's password is valid, but not for alice
    assert connack(password_broker, proto, username="alice", password=USERS["bob"].encode()) == CONNACK_BAD_CREDENTIALS


def test_right_password_is_accepted_and_wrong_one_gets_0x86_in_mqtt5(password_broker):
    assert connack5(password_broker, username="bob", password=USERS["bob"].encode()) == 0
    assert connack5(password_broker, username="bob", password=b"nope") == V5_BAD_CREDENTIALS


def test_unknown_user_is_refused_as_bad_credentials(password_broker):
    assert connack(password_broker, username="eve", password=b"anything") == CONNACK_BAD_CREDENTIALS
    assert connack5(password_broker, username="eve", password=b"anything") == V5_BAD_CREDENTIALS


def test_connect_without_credentials_is_not_authorized_when_a_password_file_is_set(password_broker):
    assert connack(password_broker) == CONNACK_NOT_AUTHORIZED
    assert connack5(password_broker) == V5_NOT_AUTHORIZED


def test_refused_connection_is_closed_after_the_connack(password_broker):
    c = mqtt_raw.RawClient(password_broker.host, password_broker.port)
    try:
        assert c.mqtt_connect(unique("auth"), username="alice", password=b"wrong").return_code == CONNACK_BAD_CREDENTIALS
        assert c.wait_closed(5.0), "connection left open after a refused CONNECT"
    finally:
        c.close()


def test_failed_login_is_logged_without_the_password(start_fulmar, tmp_path):
    secret_wrong = "Wr0ng-Guess-" + unique("pw")
    pw = write_password_file(tmp_path / "passwords", USERS)
    broker = start_fulmar(["--password-file", str(pw)])
    offset = broker.log_size()
    cid = unique("badlogin")
    c = mqtt_raw.RawClient(broker.host, broker.port)
    try:
        ack = c.mqtt_connect(cid, username="alice", password=secret_wrong.encode())
        assert ack.return_code == CONNACK_BAD_CREDENTIALS
    finally:
        c.close()
    assert connack(broker, username="alice", password=USERS["alice"].encode()) == 0
    # The failure is logged (naming the user or the client id), but neither the tried password nor the real
    # one appears anywhere in the output.
    who = f"(alice|{re.escape(cid)})"
    what = "(auth|password|credential|refus|denied|fail|reject|not authori)"
    broker.wait_log(f"(?i){what}.*{who}|{who}.*{what}", after=offset)
    log = broker.log()
    assert secret_wrong not in log, "the broker logged the password of a failed login"
    assert USERS["alice"] not in log, "the broker logged a user's real password"


def test_allow_anonymous_in_the_config_lets_clients_without_credentials_in(start_fulmar, tmp_path):
    pw = write_password_file(tmp_path / "passwords", USERS)
    broker = start_fulmar(config_toml=f"""
[[listeners]]
bind = "127.0.0.1:{{port}}"

[auth]
password_file = "{pw}"
allow_anonymous = true
""")
    assert connack(broker) == 0
    # ...while a client that does give credentials must still give the right ones.
    assert connack(broker, username="alice", password=b"wrong") == CONNACK_BAD_CREDENTIALS
    assert connack(broker, username="alice", password=USERS["alice"].encode()) == 0


def test_allow_anonymous_is_set_per_listener(start_fulmar, tmp_path):
    pw = write_password_file(tmp_path / "passwords", USERS)
    broker = start_fulmar(config_toml=f"""
[auth]
password_file = "{pw}"

[[listeners]]
bind = "127.0.0.1:{{port}}"
allow_anonymous = false

[[listeners]]
bind = "127.0.0.1:{{port2}}"
allow_anonymous = true
""")
    assert connack(broker, port=broker.port) == CONNACK_NOT_AUTHORIZED
    assert connack(broker, port=broker.port2) == 0
    assert connack(broker, port=broker.port, username="bob", password=USERS["bob"].encode()) == 0


@pytest.mark.skipif(not shutil.which("mosquitto_passwd"), reason="mosquitto_passwd not installed (mosquitto package)")
def test_password_file_written_by_mosquitto_passwd_is_accepted(start_fulmar, tmp_path):
    pw = tmp_path / "mosquitto-passwords"
    for i, (user, password) in enumerate(USERS.items()):
        args = ["mosquitto_passwd", *(["-c"] if i == 0 else []), "-b", str(pw), user, password]
        subprocess.run(args, check=True, capture_output=True, timeout=10)
    broker = start_fulmar(["--password-file", str(pw)])
    assert connack(broker, username="alice", password=USERS["alice"].encode()) == 0
    assert connack(broker, username="bob", password=USERS["bob"].encode()) == 0
    assert connack(broker, username="bob", password=USERS["alice"].encode()) == CONNACK_BAD_CREDENTIALS


# ---------------------------------------------------------------------------------------------
# fulmar passwd
# ---------------------------------------------------------------------------------------------

def test_fulmar_passwd_creates_and_adds_users_who_can_log_in(start_fulmar, tmp_path):
    pw = tmp_path / "passwords"
    fulmar_passwd("-c", "-b", str(pw), "alice", "first-pw")
    fulmar_passwd("-b", str(pw), "bob", "second-pw")
    text = pw.read_text()
    assert "alice:" in text and "bob:" in text
    assert "first-pw" not in text and "second-pw" not in text, "the password file holds a plain password"
    broker = start_fulmar(["--password-file", str(pw)])
    assert connack(broker, username="alice", password=b"first-pw") == 0
    assert connack(broker, username="bob", password=b"second-pw") == 0
    assert connack(broker, username="bob", password=b"first-pw") == CONNACK_BAD_CREDENTIALS


def test_fulmar_passwd_replaces_the_password_of_an_existing_user(start_fulmar, tmp_path):
    pw = tmp_path / "passwords"
    fulmar_passwd("-c", "-b", str(pw), "alice", "old-pw")
    fulmar_passwd("-b", str(pw), "alice", "new-pw")
    assert pw.read_text().count("alice:") == 1
    broker = start_fulmar(["--password-file", str(pw)])
    assert connack(broker, username="alice", password=b"new-pw") == 0
    assert connack(broker, username="alice", password=b"old-pw") == CONNACK_BAD_CREDENTIALS


def test_fulmar_passwd_delete_removes_the_user(start_fulmar, tmp_path):
    pw = tmp_path / "passwords"
    fulmar_passwd("-c", "-b", str(pw), "alice", "a-pw")
    fulmar_passwd("-b", str(pw), "bob", "b-pw")
    fulmar_passwd("-D", str(pw), "alice")
    assert "alice:" not in pw.read_text()
    broker = start_fulmar(["--password-file", str(pw)])
    assert connack(broker, username="alice", password=b"a-pw") == CONNACK_BAD_CREDENTIALS
    assert connack(broker, username="bob", password=b"b-pw") == 0


# ---------------------------------------------------------------------------------------------
# SIGHUP
# ---------------------------------------------------------------------------------------------

def test_sighup_reloads_the_password_file(start_fulmar, tmp_path):
    require_fulmar_passwd()
    pw = tmp_path / "passwords"
    fulmar_passwd("-c", "-b", str(pw), "alice", "a-pw")
    broker = start_fulmar(["--password-file", str(pw)])
    fulmar_passwd("-b", str(pw), "carol", "c-pw")
    fulmar_passwd("-D", str(pw), "alice")
    assert connack(broker, username="carol", password=b"c-pw") == CONNACK_BAD_CREDENTIALS, \
        "the file was read again before SIGHUP"
    offset = broker.sighup()
    broker.wait_log(r"reloaded", after=offset)
    assert connack(broker, username="carol", password=b"c-pw") == 0, "a user added before SIGHUP cannot log in"
    assert connack(broker, username="alice", password=b"a-pw") == CONNACK_BAD_CREDENTIALS, \
        "a user deleted before SIGHUP can still log in"


def test_broken_password_file_on_sighup_is_rejected_naming_the_line_and_old_users_still_log_in(start_fulmar, tmp_path):
    pw = write_password_file(tmp_path / "passwords", USERS)
    broker = start_fulmar(["--password-file", str(pw)])
    good = pw.read_text().splitlines()
    pw.write_text(f"{good[0]}\n# a comment\nthis line has no colon\n{good[1]}\n")
    offset = broker.sighup()
    broker.wait_log(r"(?i)(line\s*3\b|:3\b)", after=offset)
    assert broker.alive()
    assert connack(broker, username="alice", password=USERS["alice"].encode()) == 0
    assert connack(broker, username="bob", password=USERS["bob"].encode()) == 0
    assert connack(broker, username="bob", password=b"wrong") == CONNACK_BAD_CREDENTIALS


# ---------------------------------------------------------------------------------------------
# MQTT 5 enhanced authentication: SCRAM-SHA-256
# ---------------------------------------------------------------------------------------------

@pytest.fixture
def scram_broker(start_fulmar, tmp_path):
    pw = tmp_path / "passwords"
    fulmar_passwd("-c", "--scram", "-b", str(pw), "dana", "dana-pw-41")
    return start_fulmar(["--password-file", str(pw)])


def scram_connect(broker, user: str, password: str):
    """Run the SCRAM exchange over raw MQTT 5. Returns (client, scram, final CONNACK)."""
    c = mqtt5_raw.Raw5Client(broker.host, broker.port)
    scram = ScramClient(user, password)
    c.send(mqtt5_raw.connect(unique("scram"), properties={
        "authentication_method": SCRAM, "authentication_data": scram.first()}))
    p = c.read_packet()
    if p.ptype == mqtt_raw.CONNACK:  # refused at client-first (e.g. an unknown user)
        return c, scram, p
    assert p.ptype == mqtt_raw.AUTH, f"expected AUTH with server-first-message, got {p!r}"
    assert p.reason == AUTH_CONTINUE, f"AUTH reason {p.reason:#x}, expected 0x18 (continue authentication)"
    assert p.properties.get("authentication_method") == SCRAM
    client_final = scram.final(p.properties["authentication_data"])
    c.send(mqtt5_raw.auth(AUTH_CONTINUE, {"authentication_method": SCRAM, "authentication_data": client_final}))
    return c, scram, c.expect(mqtt_raw.CONNACK)


def test_scram_sha_256_login_succeeds_and_the_server_proves_it_knows_the_credential(scram_broker):
    c, scram, ack = scram_connect(scram_broker, "dana", "dana-pw-41")
    try:
        assert ack.reason == 0, f"SCRAM login refused: {ack!r}"
        assert ack.properties.get("authentication_method") == SCRAM
        assert scram.verify(ack.properties.get("authentication_data", b"")), \
            f"server-final-message does not carry the right server signature: {ack.properties}"
        c.send(mqtt_raw.pingreq())
        c.expect(mqtt_raw.PINGRESP)
    finally:
        c.close()


def test_scram_with_a_wrong_password_is_refused(scram_broker):
    c, _, ack = scram_connect(scram_broker, "dana", "not-danas")
    try:
        assert ack.reason in (V5_NOT_AUTHORIZED, V5_BAD_CREDENTIALS), f"wrong SCRAM proof: {ack!r}"
        assert c.wait_closed(5.0)
    finally:
        c.close()


def test_scram_for_an_unknown_user_is_refused(scram_broker):
    c, _, ack = scram_connect(scram_broker, "nobody", "whatever")
    try:
        assert ack.reason in (V5_NOT_AUTHORIZED, V5_BAD_CREDENTIALS), f"unknown SCRAM user: {ack!r}"
    finally:
        c.close()


def test_scram_credential_also_works_for_a_plain_password_login(scram_broker):
    assert connack(scram_broker, username="dana", password=b"dana-pw-41") == 0
    assert connack5(scram_broker, username="dana", password=b"dana-pw-41") == 0
    assert connack5(scram_broker, username="dana", password=b"wrong") == V5_BAD_CREDENTIALS


def test_unknown_authentication_method_is_refused_with_0x8c(password_broker):
    c = mqtt5_raw.Raw5Client(password_broker.host, password_broker.port)
    try:
        ack = c.mqtt_connect(unique("foo"), properties={"authentication_method": "FOO",
                                                        "authentication_data": b"hello"})
        assert ack.reason == V5_BAD_AUTH_METHOD, f"unknown method: {ack!r}"
    finally:
        c.close()
