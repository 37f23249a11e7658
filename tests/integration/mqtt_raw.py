"""A tiny raw-socket MQTT 3.1 / 3.1.1 client, written from the OASIS 3.1.1 spec (and the IBM 3.1 spec).

It exists for the tests that must control bytes exactly: resending a PUBLISH with DUP, withholding a PUBACK,
sending garbage, a second CONNECT, or closing the socket without DISCONNECT. It does nothing on its own: no
automatic acks, no keep-alive, no retries. Every read takes a timeout.

Packet builders return ``bytes``; ``RawClient`` sends them and parses what comes back into ``Packet``.
"""

from __future__ import annotations

import socket
import struct
import time
from dataclasses import dataclass, field

# Control packet types, spec 2.2.1.
CONNECT = 1
CONNACK = 2
PUBLISH = 3
PUBACK = 4
PUBREC = 5
PUBREL = 6
PUBCOMP = 7
SUBSCRIBE = 8
SUBACK = 9
UNSUBSCRIBE = 10
UNSUBACK = 11
PINGREQ = 12
PINGRESP = 13
DISCONNECT = 14
AUTH = 15  # MQTT 5 only; encoded and decoded by mqtt5_raw

TYPE_NAMES = {
    CONNECT: "CONNECT", CONNACK: "CONNACK", PUBLISH: "PUBLISH", PUBACK: "PUBACK", PUBREC: "PUBREC",
    PUBREL: "PUBREL", PUBCOMP: "PUBCOMP", SUBSCRIBE: "SUBSCRIBE", SUBACK: "SUBACK",
    UNSUBSCRIBE: "UNSUBSCRIBE", UNSUBACK: "UNSUBACK", PINGREQ: "PINGREQ", PINGRESP: "PINGRESP",
    DISCONNECT: "DISCONNECT", AUTH: "AUTH",
}

# Protocol levels (spec 3.1.2.2) and their protocol names.
LEVEL_V31 = 3
LEVEL_V311 = 4
PROTOCOL_NAMES = {LEVEL_V31: b"MQIsdp", LEVEL_V311: b"MQTT"}


class ConnectionClosed(Exception):
    """The peer closed the connection (EOF or reset) while we expected a packet."""


# ---------------------------------------------------------------------------------------------
# Encoding
# ---------------------------------------------------------------------------------------------

def encode_remaining_length(n: int) -> bytes:
    """Variable byte integer, spec 2.2.3: 7 bits per byte, high bit = continuation, at most 4 bytes."""
    if not 0 <= n <= 268_435_455:
        raise ValueError(f"remaining length {n} out of range")
    out = bytearray()
    while True:
        byte = n % 128
        n //= 128
        if n:
            byte |= 0x80
        out.append(byte)
        if not n:
            return bytes(out)


def encode_string(s: str | bytes) -> bytes:
    """UTF-8 string with a two-byte big-endian length prefix, spec 1.5.3."""
    data = s.encode("utf-8") if isinstance(s, str) else s
    return struct.pack("!H", len(data)) + data


def packet(ptype: int, flags: int, body: bytes) -> bytes:
    """Fixed header (spec 2.2) + body."""
    return bytes([(ptype << 4) | (flags & 0x0F)]) + encode_remaining_length(len(body)) + body


@dataclass
class Will:
    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False


def connect(
    client_id: str,
    *,
    level: int = LEVEL_V311,
    clean_session: bool = True,
    keepalive: int = 60,
    will: Will | None = None,
    username: str | None = None,
    password: bytes | None = None,
    protocol_name: bytes | None = None,
) -> bytes:
    """CONNECT, spec 3.1. ``protocol_name`` defaults to the name that belongs to ``level``."""
    name = protocol_name if protocol_name is not None else PROTOCOL_NAMES.get(level, b"MQTT")
    flags = 0
    if clean_session:
        flags |= 0x02
    if will is not None:
        flags |= 0x04 | (will.qos << 3)
        if will.retain:
            flags |= 0x20
    if password is not None:
        flags |= 0x40
    if username is not None:
        flags |= 0x80
    body = encode_string(name) + bytes([level, flags]) + struct.pack("!H", keepalive)
    body += encode_string(client_id)
    if will is not None:
        body += encode_string(will.topic) + encode_string(will.payload)
    if username is not None:
        body += encode_string(username)
    if password is not None:
        body += encode_string(password)
    return packet(CONNECT, 0, body)


def publish(
    topic: str,
    payload: bytes,
    *,
    qos: int = 0,
    retain: bool = False,
    dup: bool = False,
    packet_id: int | None = None,
) -> bytes:
    """PUBLISH, spec 3.3. A packet id is required for QoS 1 and 2 and forbidden for QoS 0."""
    flags = (qos << 1) | (0x08 if dup else 0) | (0x01 if retain else 0)
    body = encode_string(topic)
    if qos > 0:
        if packet_id is None:
            raise ValueError("QoS > 0 needs a packet id")
        body += struct.pack("!H", packet_id)
    return packet(PUBLISH, flags, body + payload)


def puback(packet_id: int) -> bytes:
    return packet(PUBACK, 0, struct.pack("!H", packet_id))


def pubrec(packet_id: int) -> bytes:
    return packet(PUBREC, 0, struct.pack("!H", packet_id))


def pubrel(packet_id: int) -> bytes:
    # [MQTT-3.6.1-1] bits 3..0 of the fixed header of PUBREL are 0010.
    return packet(PUBREL, 0x02, struct.pack("!H", packet_id))


def pubcomp(packet_id: int) -> bytes:
    return packet(PUBCOMP, 0, struct.pack("!H", packet_id))


def subscribe(packet_id: int, filters: list[tuple[str, int]]) -> bytes:
    # [MQTT-3.8.1-1] bits 3..0 of the fixed header of SUBSCRIBE are 0010.
    body = struct.pack("!H", packet_id)
    for topic_filter, qos in filters:
        body += encode_string(topic_filter) + bytes([qos])
    return packet(SUBSCRIBE, 0x02, body)


def unsubscribe(packet_id: int, filters: list[str]) -> bytes:
    body = struct.pack("!H", packet_id) + b"".join(encode_string(f) for f in filters)
    return packet(UNSUBSCRIBE, 0x02, body)


def pingreq() -> bytes:
    return packet(PINGREQ, 0, b"")


def disconnect() -> bytes:
    return packet(DISCONNECT, 0, b"")


# ---------------------------------------------------------------------------------------------
# Decoding
# ---------------------------------------------------------------------------------------------

@dataclass
class Packet:
    """One decoded control packet. Fields that do not apply to ``ptype`` stay at their defaults."""

    ptype: int
    flags: int
    body: bytes
    packet_id: int | None = None
    # PUBLISH
    topic: str | None = None
    payload: bytes = b""
    qos: int = 0
    dup: bool = False
    retain: bool = False
    # CONNACK
    session_present: bool = False
    return_code: int | None = None
    # SUBACK
    granted: list[int] = field(default_factory=list)

    @property
    def name(self) -> str:
        return TYPE_NAMES.get(self.ptype, f"type{self.ptype}")

    def __repr__(self) -> str:  # compact, for assertion messages
        if self.ptype == PUBLISH:
            return (f"PUBLISH(topic={self.topic!r}, payload={self.payload[:40]!r}, qos={self.qos}, "
                    f"dup={self.dup}, retain={self.retain}, pid={self.packet_id})")
        if self.ptype == CONNACK:
            return f"CONNACK(sp={self.session_present}, rc={self.return_code})"
        if self.ptype == SUBACK:
            return f"SUBACK(pid={self.packet_id}, granted={self.granted})"
        return f"{self.name}(pid={self.packet_id}, flags={self.flags:#x}, body={self.body[:20]!r})"


def decode(ptype: int, flags: int, body: bytes) -> Packet:
    p = Packet(ptype=ptype, flags=flags, body=body)
    if ptype == CONNACK and len(body) >= 2:
        p.session_present = bool(body[0] & 0x01)
        p.return_code = body[1]
    elif ptype == PUBLISH:
        p.qos = (flags >> 1) & 0x03
        p.dup = bool(flags & 0x08)
        p.retain = bool(flags & 0x01)
        (tlen,) = struct.unpack_from("!H", body, 0)
        p.topic = body[2:2 + tlen].decode("utf-8")
        pos = 2 + tlen
        if p.qos > 0:
            (p.packet_id,) = struct.unpack_from("!H", body, pos)
            pos += 2
        p.payload = body[pos:]
    elif ptype in (PUBACK, PUBREC, PUBREL, PUBCOMP, UNSUBACK) and len(body) >= 2:
        (p.packet_id,) = struct.unpack_from("!H", body, 0)
    elif ptype == SUBACK and len(body) >= 2:
        (p.packet_id,) = struct.unpack_from("!H", body, 0)
        p.granted = list(body[2:])
    return p


# ---------------------------------------------------------------------------------------------
# Client
# ---------------------------------------------------------------------------------------------

class RawClient:
    """A TCP connection that sends exactly the bytes it is given and decodes what comes back."""

    def __init__(self, host: str, port: int, *, timeout: float = 10.0, rcvbuf: int | None = None):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            # Set before connect so the TCP window is negotiated with it.
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect((host, port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._buf = bytearray()
        self._eof = False

    # -- bytes ---------------------------------------------------------------------------------

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self, deadline: float) -> None:
        """Read more bytes into the buffer; raise TimeoutError or ConnectionClosed."""
        if self._eof:
            raise ConnectionClosed("connection already closed by peer")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("timed out waiting for data from the broker")
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout as e:
            raise TimeoutError("timed out waiting for data from the broker") from e
        except (ConnectionResetError, ConnectionAbortedError, BrokenPipeError) as e:
            self._eof = True
            raise ConnectionClosed(f"connection reset: {e}") from e
        if not chunk:
            self._eof = True
            raise ConnectionClosed("connection closed by peer (EOF)")
        self._buf += chunk

    def read_packet(self, timeout: float = 10.0) -> Packet:
        """Read exactly one control packet, waiting at most ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            parsed = self._try_parse()
            if parsed is not None:
                return parsed
            self._fill(deadline)

    def _try_parse(self) -> Packet | None:
        buf = self._buf
        if len(buf) < 2:
            return None
        mult, length, pos = 1, 0, 1
        while True:
            if pos >= len(buf):
                return None
            byte = buf[pos]
            length += (byte & 0x7F) * mult
            mult *= 128
            pos += 1
            if not byte & 0x80:
                break
            if pos > 4:
                raise ValueError("broker sent a malformed remaining length")
        if len(buf) < pos + length:
            return None
        ptype, flags = buf[0] >> 4, buf[0] & 0x0F
        body = bytes(buf[pos:pos + length])
        del buf[:pos + length]
        return self.decode_packet(ptype, flags, body)

    def decode_packet(self, ptype: int, flags: int, body: bytes) -> Packet:
        """Decode one packet's body; ``mqtt5_raw.Raw5Client`` overrides this with the v5 forms."""
        return decode(ptype, flags, body)

    def expect(self, ptype: int, timeout: float = 10.0) -> Packet:
        """Read one packet and assert its type."""
        p = self.read_packet(timeout)
        assert p.ptype == ptype, f"expected {TYPE_NAMES.get(ptype, ptype)}, got {p!r}"
        return p

    def wait_closed(self, timeout: float) -> bool:
        """True if the broker closes the connection within ``timeout``; packets read meanwhile are dropped."""
        deadline = time.monotonic() + timeout
        self._buf.clear()
        while True:
            try:
                self._fill(deadline)
            except ConnectionClosed:
                return True
            except TimeoutError:
                return False
            self._buf.clear()

    # -- MQTT conveniences ---------------------------------------------------------------------

    def mqtt_connect(self, client_id: str, timeout: float = 10.0, **kwargs) -> Packet:
        """Send CONNECT and return the CONNACK (whatever its return code)."""
        self.send(connect(client_id, **kwargs))
        return self.expect(CONNACK, timeout)

    def mqtt_subscribe(self, packet_id: int, filters: list[tuple[str, int]], timeout: float = 10.0) -> Packet:
        self.send(subscribe(packet_id, filters))
        p = self.expect(SUBACK, timeout)
        assert p.packet_id == packet_id, f"SUBACK for {p.packet_id}, expected {packet_id}"
        return p

    def mqtt_disconnect(self, timeout: float = 5.0) -> None:
        """Send DISCONNECT, then wait until the broker has closed its side, so it has surely processed it."""
        self.send(disconnect())
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        closed = self.wait_closed(timeout)
        self.close()
        assert closed, f"broker did not close the connection within {timeout}s after DISCONNECT"

    def close(self) -> None:
        """Close the socket without DISCONNECT (for will tests: a network failure as the broker sees it)."""
        try:
            self.sock.close()
        except OSError:
            pass
