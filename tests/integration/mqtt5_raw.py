"""MQTT 5.0 on top of mqtt_raw: properties, and the v5 forms of every packet, written from the OASIS 5.0 spec.

For the tests that must see or control bytes paho hides: outbound topic aliases, Receive Maximum windows,
packets the broker must refuse (alias 0, AUTH, QoS above Maximum QoS), and the reason code of a
server-initiated DISCONNECT. As with ``mqtt_raw``, nothing happens on its own: no acks, no keep-alive.

Properties are given and returned as dicts keyed by the names below (spec 2.2.2.2). The two properties that
may repeat, ``user_property`` (list of (name, value) pairs, order kept) and ``subscription_identifier``
(list of ints), are lists in decoded packets; when encoding they may be a list or a single value.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass, field

import mqtt_raw
from mqtt_raw import (AUTH, CONNACK, CONNECT, DISCONNECT, PUBACK, PUBCOMP, PUBLISH, PUBREC, PUBREL, SUBACK,
                      SUBSCRIBE, TYPE_NAMES, UNSUBACK, UNSUBSCRIBE, encode_remaining_length, encode_string,
                      packet)

LEVEL_V5 = 5

# Property identifier -> (name, type). Types: byte, u16, u32, varint, str, bin, pair.
PROPERTIES = {
    0x01: ("payload_format_indicator", "byte"),
    0x02: ("message_expiry_interval", "u32"),
    0x03: ("content_type", "str"),
    0x08: ("response_topic", "str"),
    0x09: ("correlation_data", "bin"),
    0x0B: ("subscription_identifier", "varint"),
    0x11: ("session_expiry_interval", "u32"),
    0x12: ("assigned_client_identifier", "str"),
    0x13: ("server_keep_alive", "u16"),
    0x15: ("authentication_method", "str"),
    0x16: ("authentication_data", "bin"),
    0x17: ("request_problem_information", "byte"),
    0x18: ("will_delay_interval", "u32"),
    0x19: ("request_response_information", "byte"),
    0x1A: ("response_information", "str"),
    0x1C: ("server_reference", "str"),
    0x1F: ("reason_string", "str"),
    0x21: ("receive_maximum", "u16"),
    0x22: ("topic_alias_maximum", "u16"),
    0x23: ("topic_alias", "u16"),
    0x24: ("maximum_qos", "byte"),
    0x25: ("retain_available", "byte"),
    0x26: ("user_property", "pair"),
    0x27: ("maximum_packet_size", "u32"),
    0x28: ("wildcard_subscription_available", "byte"),
    0x29: ("subscription_identifier_available", "byte"),
    0x2A: ("shared_subscription_available", "byte"),
}
PROPERTY_IDS = {name: (pid, kind) for pid, (name, kind) in PROPERTIES.items()}
REPEATABLE = {"user_property", "subscription_identifier"}

# Reason codes the tests name (spec 2.4).
SUCCESS = 0x00
NO_MATCHING_SUBSCRIBERS = 0x10
DISCONNECT_WITH_WILL = 0x04
UNSPECIFIED_ERROR = 0x80
MALFORMED_PACKET = 0x81
PROTOCOL_ERROR = 0x82
BAD_AUTHENTICATION_METHOD = 0x8C
SERVER_SHUTTING_DOWN = 0x8B
KEEP_ALIVE_TIMEOUT = 0x8D
SESSION_TAKEN_OVER = 0x8E
TOPIC_ALIAS_INVALID = 0x94
PACKET_TOO_LARGE = 0x95
RECEIVE_MAXIMUM_EXCEEDED = 0x93
PAYLOAD_FORMAT_INVALID = 0x99
RETAIN_NOT_SUPPORTED = 0x9A
QOS_NOT_SUPPORTED = 0x9B
SHARED_SUBSCRIPTIONS_NOT_SUPPORTED = 0x9E
SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED = 0xA1
WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED = 0xA2


# ---------------------------------------------------------------------------------------------
# Encoding
# ---------------------------------------------------------------------------------------------

def encode_varint(n: int) -> bytes:
    """Variable byte integer, spec 1.5.5 (the same encoding as the remaining length)."""
    return encode_remaining_length(n)


def encode_binary(data: bytes) -> bytes:
    return struct.pack("!H", len(data)) + data


def _encode_value(kind: str, value) -> bytes:
    if kind == "byte":
        return bytes([value])
    if kind == "u16":
        return struct.pack("!H", value)
    if kind == "u32":
        return struct.pack("!I", value)
    if kind == "varint":
        return encode_varint(value)
    if kind == "str":
        return encode_string(value)
    if kind == "bin":
        return encode_binary(value)
    if kind == "pair":
        name, val = value
        return encode_string(name) + encode_string(val)
    raise ValueError(kind)


def encode_properties(props: dict | None) -> bytes:
    """Property length (varint) + properties, in the dict's order; repeatable ones may be lists."""
    body = bytearray()
    for name, value in (props or {}).items():
        pid, kind = PROPERTY_IDS[name]
        values = value if name in REPEATABLE and isinstance(value, list) else [value]
        for v in values:
            body += encode_varint(pid) + _encode_value(kind, v)
    return encode_varint(len(body)) + bytes(body)


@dataclass
class Will5:
    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False
    properties: dict = field(default_factory=dict)


def connect(client_id: str, *, clean_start: bool = True, keepalive: int = 60, properties: dict | None = None,
            will: Will5 | None = None, username: str | None = None, password: bytes | None = None) -> bytes:
    """CONNECT, spec 3.1, protocol level 5."""
    flags = 0x02 if clean_start else 0
    if will is not None:
        flags |= 0x04 | (will.qos << 3) | (0x20 if will.retain else 0)
    if password is not None:
        flags |= 0x40
    if username is not None:
        flags |= 0x80
    body = encode_string(b"MQTT") + bytes([LEVEL_V5, flags]) + struct.pack("!H", keepalive)
    body += encode_properties(properties) + encode_string(client_id)
    if will is not None:
        body += encode_properties(will.properties) + encode_string(will.topic) + encode_binary(will.payload)
    if username is not None:
        body += encode_string(username)
    if password is not None:
        body += encode_binary(password)
    return packet(CONNECT, 0, body)


def publish(topic: str, payload: bytes, *, qos: int = 0, retain: bool = False, dup: bool = False,
            packet_id: int | None = None, properties: dict | None = None) -> bytes:
    """PUBLISH, spec 3.3. An empty ``topic`` with a ``topic_alias`` property uses the alias."""
    flags = (qos << 1) | (0x08 if dup else 0) | (0x01 if retain else 0)
    body = encode_string(topic)
    if qos > 0:
        if packet_id is None:
            raise ValueError("QoS > 0 needs a packet id")
        body += struct.pack("!H", packet_id)
    return packet(PUBLISH, flags, body + encode_properties(properties) + payload)


def _ack(ptype: int, flags: int, packet_id: int, reason: int, properties: dict | None) -> bytes:
    body = struct.pack("!H", packet_id)
    if reason != SUCCESS or properties:
        body += bytes([reason]) + (encode_properties(properties) if properties else b"")
    return packet(ptype, flags, body)


def puback(packet_id: int, reason: int = SUCCESS, properties: dict | None = None) -> bytes:
    return _ack(PUBACK, 0, packet_id, reason, properties)


def pubrec(packet_id: int, reason: int = SUCCESS, properties: dict | None = None) -> bytes:
    return _ack(PUBREC, 0, packet_id, reason, properties)


def pubrel(packet_id: int, reason: int = SUCCESS, properties: dict | None = None) -> bytes:
    return _ack(PUBREL, 0x02, packet_id, reason, properties)


def pubcomp(packet_id: int, reason: int = SUCCESS, properties: dict | None = None) -> bytes:
    return _ack(PUBCOMP, 0, packet_id, reason, properties)


def sub_options(qos: int = 0, *, no_local: bool = False, retain_as_published: bool = False,
                retain_handling: int = 0) -> int:
    """The subscription options byte, spec 3.8.3.1."""
    return qos | (0x04 if no_local else 0) | (0x08 if retain_as_published else 0) | (retain_handling << 4)


def subscribe(packet_id: int, filters: list[tuple[str, int]], properties: dict | None = None) -> bytes:
    """SUBSCRIBE, spec 3.8; each filter comes with its options byte (see ``sub_options``)."""
    body = struct.pack("!H", packet_id) + encode_properties(properties)
    for topic_filter, options in filters:
        body += encode_string(topic_filter) + bytes([options])
    return packet(SUBSCRIBE, 0x02, body)


def unsubscribe(packet_id: int, filters: list[str], properties: dict | None = None) -> bytes:
    body = struct.pack("!H", packet_id) + encode_properties(properties)
    body += b"".join(encode_string(f) for f in filters)
    return packet(UNSUBSCRIBE, 0x02, body)


def disconnect(reason: int = SUCCESS, properties: dict | None = None) -> bytes:
    """DISCONNECT, spec 3.14; reason 0 without properties is the two-byte short form."""
    if reason == SUCCESS and not properties:
        return packet(DISCONNECT, 0, b"")
    return packet(DISCONNECT, 0, bytes([reason]) + encode_properties(properties))


def auth(reason: int = 0x18, properties: dict | None = None) -> bytes:
    """AUTH, spec 3.15 (0x18: continue authentication)."""
    return packet(AUTH, 0, bytes([reason]) + encode_properties(properties))


# ---------------------------------------------------------------------------------------------
# Decoding
# ---------------------------------------------------------------------------------------------

def decode_varint(buf: bytes, pos: int) -> tuple[int, int]:
    value, mult = 0, 1
    for i in range(4):
        byte = buf[pos + i]
        value += (byte & 0x7F) * mult
        mult *= 128
        if not byte & 0x80:
            return value, pos + i + 1
    raise ValueError("malformed variable byte integer")


def decode_properties(buf: bytes, pos: int) -> tuple[dict, int]:
    """Parse a property block at ``pos``; returns (properties, position after it)."""
    length, pos = decode_varint(buf, pos)
    end = pos + length
    props: dict = {}
    while pos < end:
        pid, pos = decode_varint(buf, pos)
        if pid not in PROPERTIES:
            raise ValueError(f"unknown property identifier {pid:#x}")
        name, kind = PROPERTIES[pid]
        if kind == "byte":
            value, pos = buf[pos], pos + 1
        elif kind == "u16":
            (value,), pos = struct.unpack_from("!H", buf, pos), pos + 2
        elif kind == "u32":
            (value,), pos = struct.unpack_from("!I", buf, pos), pos + 4
        elif kind == "varint":
            value, pos = decode_varint(buf, pos)
        elif kind in ("str", "bin"):
            (n,) = struct.unpack_from("!H", buf, pos)
            raw = bytes(buf[pos + 2:pos + 2 + n])
            value, pos = (raw.decode("utf-8") if kind == "str" else raw), pos + 2 + n
        else:  # pair
            (n,) = struct.unpack_from("!H", buf, pos)
            key = bytes(buf[pos + 2:pos + 2 + n]).decode("utf-8")
            pos += 2 + n
            (n,) = struct.unpack_from("!H", buf, pos)
            value = (key, bytes(buf[pos + 2:pos + 2 + n]).decode("utf-8"))
            pos += 2 + n
        if name in REPEATABLE:
            props.setdefault(name, []).append(value)
        else:
            assert name not in props, f"property {name} sent twice"
            props[name] = value
    assert pos == end, "property length does not match the properties"
    return props, end


@dataclass(repr=False)
class Packet5(mqtt_raw.Packet):
    """A decoded v5 packet: ``reason`` (CONNACK, acks, DISCONNECT, AUTH), ``reasons`` (SUBACK, UNSUBACK)
    and ``properties``. ``return_code`` mirrors ``reason`` for CONNACK so v3 helpers keep working."""

    reason: int | None = None
    reasons: list[int] = field(default_factory=list)
    properties: dict = field(default_factory=dict)

    def __repr__(self) -> str:
        if self.ptype == PUBLISH:
            return (f"PUBLISH(topic={self.topic!r}, payload={self.payload[:40]!r}, qos={self.qos}, "
                    f"retain={self.retain}, pid={self.packet_id}, props={self.properties})")
        return (f"{self.name}(pid={self.packet_id}, reason={self.reason if self.reason is None else hex(self.reason)}"
                f", reasons={self.reasons}, props={self.properties})")


def decode(ptype: int, flags: int, body: bytes) -> Packet5:
    p = Packet5(ptype=ptype, flags=flags, body=body)
    if ptype == CONNACK:
        p.session_present = bool(body[0] & 0x01)
        p.reason = p.return_code = body[1]
        if len(body) > 2:
            p.properties, _ = decode_properties(body, 2)
    elif ptype == PUBLISH:
        p.qos, p.dup, p.retain = (flags >> 1) & 0x03, bool(flags & 0x08), bool(flags & 0x01)
        (tlen,) = struct.unpack_from("!H", body, 0)
        p.topic = body[2:2 + tlen].decode("utf-8")
        pos = 2 + tlen
        if p.qos > 0:
            (p.packet_id,) = struct.unpack_from("!H", body, pos)
            pos += 2
        p.properties, pos = decode_properties(body, pos)
        p.payload = body[pos:]
    elif ptype in (PUBACK, PUBREC, PUBREL, PUBCOMP):
        (p.packet_id,) = struct.unpack_from("!H", body, 0)
        p.reason = body[2] if len(body) > 2 else SUCCESS
        if len(body) > 3:
            p.properties, _ = decode_properties(body, 3)
    elif ptype in (SUBACK, UNSUBACK):
        (p.packet_id,) = struct.unpack_from("!H", body, 0)
        p.properties, pos = decode_properties(body, 2)
        p.reasons = p.granted = list(body[pos:])
    elif ptype in (DISCONNECT, AUTH):
        p.reason = body[0] if body else SUCCESS
        if len(body) > 1:
            p.properties, _ = decode_properties(body, 1)
    return p


# ---------------------------------------------------------------------------------------------
# Client
# ---------------------------------------------------------------------------------------------

class Raw5Client(mqtt_raw.RawClient):
    """``RawClient`` that speaks v5: decodes into ``Packet5`` and offers v5 conveniences."""

    def decode_packet(self, ptype: int, flags: int, body: bytes) -> Packet5:
        return decode(ptype, flags, body)

    def mqtt_connect(self, client_id: str, timeout: float = 10.0, **kwargs) -> Packet5:
        """Send a v5 CONNECT (kwargs as ``connect``) and return the CONNACK, whatever its reason code."""
        self.send(connect(client_id, **kwargs))
        return self.expect(CONNACK, timeout)

    def mqtt_subscribe(self, packet_id: int, filters: list[tuple[str, int]], timeout: float = 10.0,
                       properties: dict | None = None) -> Packet5:
        self.send(subscribe(packet_id, filters, properties))
        p = self.expect(SUBACK, timeout)
        assert p.packet_id == packet_id, f"SUBACK for {p.packet_id}, expected {packet_id}"
        return p

    def mqtt_disconnect(self, timeout: float = 5.0, reason: int = SUCCESS, properties: dict | None = None) -> None:
        """Send DISCONNECT and wait until the broker has closed its side (so it has processed it)."""
        self.send(disconnect(reason, properties))
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        closed = self.wait_closed(timeout)
        self.close()
        assert closed, f"broker did not close the connection within {timeout}s after DISCONNECT"

    def expect_server_disconnect(self, timeout: float = 10.0) -> Packet5 | None:
        """Read until the broker sends DISCONNECT (returned) or closes without one (None).
        Other packets read meanwhile (e.g. PUBLISHes) are skipped. Raises TimeoutError if neither happens."""
        while True:
            try:
                p = self.read_packet(timeout)
            except mqtt_raw.ConnectionClosed:
                return None
            if p.ptype == DISCONNECT:
                return p

    def expect_publishes(self, n: int, timeout: float = 10.0) -> list[Packet5]:
        return [self.expect(PUBLISH, timeout) for _ in range(n)]


def type_name(ptype: int) -> str:
    return TYPE_NAMES.get(ptype, f"type{ptype}")
