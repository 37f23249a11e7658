"""MQTT over WebSocket (path /mqtt, subprotocol mqtt): paho-mqtt over websockets, interop with TCP clients, and
frame-level edge cases from a raw WebSocket client (websocket-client): packets split across frames, several packets
in one frame, text frames, pings, the handshake. Plus the chat page the same HTTP listener serves at ``/``."""

from __future__ import annotations

import socket
import time
import urllib.error
import urllib.request

import paho.mqtt.client as mqtt
import pytest
import websocket
from paho.mqtt.enums import CallbackAPIVersion

import mqtt_raw as raw
from conftest import free_port
from helpers import V311, WAIT, MqttClient, unique
from mqtt_raw import ConnectionClosed, RawClient
from test_process import run_fulmar

WS_PATH = "/mqtt"


class WsMqttClient(MqttClient):
    """The suite's paho wrapper, connected over WebSocket instead of TCP."""

    def __init__(self, host: str, ws_port: int, **kwargs):
        super().__init__(host, ws_port, **kwargs)
        # Rebuild paho's client with the websockets transport; everything else stays as the base class set it.
        old = self.paho
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id, clean_session=True,
                        protocol=self.proto.paho, reconnect_on_failure=False, transport="websockets")
        c.ws_set_options(path=WS_PATH)
        c.max_inflight_messages_set(0)
        c.on_connect, c.on_disconnect, c.on_message = old.on_connect, old.on_disconnect, old.on_message
        c.on_subscribe, c.on_unsubscribe = old.on_subscribe, old.on_unsubscribe
        self.paho = c

    def stop(self) -> None:
        """As the base class, but shut down the TCP socket under paho's WebSocket wrapper."""
        wrapper = self.paho.socket()
        sock = getattr(wrapper, "_socket", None)
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.paho.loop_stop()


class WsRawClient(RawClient):
    """A WebSocket connection that sends exactly the frames it is given and decodes the MQTT packets in the binary
    frames that come back (frame boundaries ignored, as MQTT over WebSocket requires)."""

    def __init__(self, host: str, ws_port: int, *, path: str = WS_PATH, subprotocols=("mqtt",),
                 timeout: float = WAIT):
        self.ws = websocket.create_connection(f"ws://{host}:{ws_port}{path}", timeout=timeout,
                                              subprotocols=list(subprotocols) if subprotocols else None)
        self._buf = bytearray()
        self._eof = False
        self.close_frame: bytes | None = None  # payload of the broker's close frame, once received

    def send(self, data: bytes) -> None:
        """One MQTT byte string as one binary frame."""
        self.ws.send_binary(data)

    def send_frames(self, *chunks: bytes) -> None:
        for chunk in chunks:
            self.ws.send_binary(chunk)

    def _fill(self, deadline: float) -> None:
        if self._eof:
            raise ConnectionClosed("connection already closed by peer")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("timed out waiting for data from the broker")
        self.ws.settimeout(remaining)
        try:
            opcode, data = self.ws.recv_data(control_frame=True)
        except websocket.WebSocketTimeoutException as e:
            raise TimeoutError("timed out waiting for data from the broker") from e
        except (websocket.WebSocketConnectionClosedException, ConnectionError) as e:
            self._eof = True
            raise ConnectionClosed(f"connection closed: {e}") from e
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            self._eof = True
            self.close_frame = data
            raise ConnectionClosed(f"close frame {data!r}")
        assert opcode in (websocket.ABNF.OPCODE_BINARY, websocket.ABNF.OPCODE_PONG), f"broker sent opcode {opcode}"
        if opcode == websocket.ABNF.OPCODE_BINARY:
            self._buf += data

    def close(self) -> None:
        try:
            self.ws.shutdown()
        except Exception:  # already closed: nothing to release
            pass


@pytest.fixture
def ws_client():
    """Factory for paho clients over WebSocket; all are stopped at teardown."""
    made: list[WsMqttClient] = []

    def make(broker, **kwargs) -> WsMqttClient:
        c = WsMqttClient(broker.host, broker.ws_port, **kwargs)
        made.append(c)
        return c

    yield make
    for c in made:
        c.stop()


@pytest.fixture
def ws_raw():
    """Factory for raw WebSocket clients; all are closed at teardown."""
    made: list[WsRawClient] = []

    def make(broker, **kwargs) -> WsRawClient:
        c = WsRawClient(broker.host, broker.ws_port, **kwargs)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


def http_get(broker, path: str) -> tuple[int, dict, bytes]:
    url = f"http://{broker.host}:{broker.ws_port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=WAIT) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()


# ---------------------------------------------------------------------------------------------
# Real clients
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("qos", [0, 1, 2])
def test_paho_over_websocket_publishes_and_receives(ws_broker, ws_client, proto, qos):
    topic = f"{unique('ws')}/t"
    sub = ws_client(ws_broker, proto=proto).connect()
    assert sub.subscribe(topic, qos) == [qos]
    pub = ws_client(ws_broker, proto=proto).connect()
    pub.publish(topic, b"over websocket", qos=qos)
    m = sub.expect_message()
    assert (m.topic, m.payload, m.qos) == (topic, b"over websocket", qos)


def test_websocket_and_tcp_clients_exchange_messages_both_ways(ws_broker, ws_client, mqtt_client):
    topic = f"{unique('mix')}/t"
    ws = ws_client(ws_broker).connect()
    tcp = mqtt_client(ws_broker).connect()
    ws.subscribe(f"{topic}/to-ws", 1)
    tcp.subscribe(f"{topic}/to-tcp", 1)
    tcp.publish(f"{topic}/to-ws", b"from tcp", qos=1)
    ws.publish(f"{topic}/to-tcp", b"from ws", qos=1)
    assert ws.expect_message().payload == b"from tcp"
    assert tcp.expect_message().payload == b"from ws"


def test_large_message_reaches_a_websocket_subscriber_intact(ws_broker, ws_client, mqtt_client):
    # Larger than the broker's outgoing frame size (64 KiB): it arrives in several frames, reassembled by paho.
    topic = f"{unique('big')}/t"
    payload = bytes(range(256)) * 1000
    sub = ws_client(ws_broker).connect()
    sub.subscribe(topic, 1)
    mqtt_client(ws_broker).connect().publish(topic, payload, qos=1)
    assert sub.expect_message().payload == payload


# ---------------------------------------------------------------------------------------------
# Frames
# ---------------------------------------------------------------------------------------------

def test_one_packet_split_across_several_binary_frames(ws_broker, ws_raw):
    c = ws_raw(ws_broker)
    connect = raw.connect(unique("split"))
    c.send_frames(connect[:1], connect[1:2], connect[2:7], connect[7:])
    assert c.expect(raw.CONNACK).return_code == 0
    topic = unique("split")
    subscribe = raw.subscribe(1, [(topic, 1)])
    c.send_frames(*[subscribe[i:i + 1] for i in range(len(subscribe))])  # one byte per frame
    assert c.expect(raw.SUBACK).granted == [1]


def test_a_fragmented_websocket_message_is_one_byte_stream(ws_broker, ws_raw):
    # WebSocket-level fragmentation (continuation frames), as opposed to MQTT bytes spread over messages.
    c = ws_raw(ws_broker)
    connect = raw.connect(unique("frag"))
    c.ws.send_frame(websocket.ABNF.create_frame(connect[:5], websocket.ABNF.OPCODE_BINARY, fin=0))
    c.ws.send_frame(websocket.ABNF.create_frame(connect[5:], websocket.ABNF.OPCODE_CONT, fin=1))
    assert c.expect(raw.CONNACK).return_code == 0


def test_several_packets_in_one_binary_frame(ws_broker, ws_raw):
    c = ws_raw(ws_broker)
    topic = unique("many")
    assert c.mqtt_connect(unique("many")).return_code == 0
    c.send(raw.subscribe(1, [(topic, 1)]) + raw.publish(topic, b"hello", qos=1, packet_id=7) + raw.pingreq())
    assert c.expect(raw.SUBACK).granted == [1]
    got = [c.read_packet() for _ in range(3)]
    names = sorted(p.name for p in got)
    assert names == sorted(["PUBLISH", "PUBACK", "PINGRESP"]), got
    publish = next(p for p in got if p.ptype == raw.PUBLISH)
    assert (publish.topic, publish.payload) == (topic, b"hello")
    assert next(p for p in got if p.ptype == raw.PUBACK).packet_id == 7


@pytest.mark.fulmar_only  # mosquitto 2.0.11 ignores text frames instead of closing
def test_a_text_frame_closes_the_connection_with_code_1003(ws_broker, ws_raw):
    # [MQTT-6.0.0-1] MQTT travels in binary frames only; any other data frame closes the connection.
    c = ws_raw(ws_broker)
    assert c.mqtt_connect(unique("text")).return_code == 0
    c.ws.send("PINGREQ as text")
    with pytest.raises(ConnectionClosed):
        c.read_packet(timeout=WAIT)
    # RFC 6455 §7.4.1: 1003, "received a type of data it cannot accept".
    assert c.close_frame is not None and c.close_frame[:2] == (1003).to_bytes(2, "big"), c.close_frame


def test_a_websocket_ping_is_answered_with_a_pong(ws_broker, ws_raw):
    c = ws_raw(ws_broker)
    assert c.mqtt_connect(unique("ping")).return_code == 0
    c.ws.ping(b"are you there")
    c.ws.settimeout(WAIT)
    opcode, data = c.ws.recv_data(control_frame=True)
    assert (opcode, data) == (websocket.ABNF.OPCODE_PONG, b"are you there")
    # MQTT still works after it.
    c.send(raw.pingreq())
    c.expect(raw.PINGRESP)


# ---------------------------------------------------------------------------------------------
# Handshake
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("offered, chosen", [(["mqtt"], "mqtt"), (["mqttv3.1"], "mqttv3.1"),
                                             (["mqttv3.1", "mqtt"], "mqtt")],
                         ids=["mqtt", "mqttv3.1", "both"])
@pytest.mark.fulmar_only
def test_subprotocol_is_negotiated_and_echoed(ws_broker, ws_raw, offered, chosen):
    c = ws_raw(ws_broker, subprotocols=offered)
    assert c.ws.getsubprotocol() == chosen
    assert c.mqtt_connect(unique("proto")).return_code == 0


@pytest.mark.fulmar_only
def test_an_unknown_subprotocol_is_refused(ws_broker):
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        websocket.create_connection(f"ws://{ws_broker.host}:{ws_broker.ws_port}{WS_PATH}", timeout=WAIT,
                                    subprotocols=["chat"])
    assert refused.value.status_code == 400


@pytest.mark.fulmar_only
def test_a_wrong_path_is_404(ws_broker):
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        websocket.create_connection(f"ws://{ws_broker.host}:{ws_broker.ws_port}/elsewhere", timeout=WAIT,
                                    subprotocols=["mqtt"])
    assert refused.value.status_code == 404


@pytest.mark.fulmar_only
def test_websocket_port_in_use_exits_nonzero_naming_the_address():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        r = run_fulmar("serve", "--no-persistence", "--listen", f"127.0.0.1:{free_port()}", "--listen-ws", address)
    assert r.returncode != 0
    assert address in r.stderr, r.stderr


@pytest.mark.fulmar_only
def test_the_listener_logs_its_address_and_path(ws_broker):
    assert f"listening on 127.0.0.1:{ws_broker.ws_port} (mqtt over websocket, path /mqtt)" in ws_broker.log()


# ---------------------------------------------------------------------------------------------
# The chat page
# ---------------------------------------------------------------------------------------------

@pytest.mark.fulmar_only
def test_get_slash_returns_the_chat_page_and_its_scripts(ws_broker):
    status, headers, body = http_get(ws_broker, "/")
    assert status == 200 and headers["content-type"].startswith("text/html"), (status, headers)
    assert b"<title>Fulmar chat</title>" in body
    for script in (b"/vendor/mqtt.min.js", b"/chat.js", b"/chat.css"):
        assert script in body
        status, headers, asset = http_get(ws_broker, script.decode())
        assert status == 200 and len(asset) > 0, (script, status)
    status, headers, bundle = http_get(ws_broker, "/vendor/mqtt.min.js")
    assert headers["content-type"].startswith("text/javascript") and b"mqtt" in bundle


@pytest.mark.fulmar_only
def test_other_paths_are_404_and_plain_get_of_mqtt_asks_for_an_upgrade(ws_broker):
    assert http_get(ws_broker, "/no/such/page")[0] == 404
    status, headers, _ = http_get(ws_broker, WS_PATH)
    assert status == 426 and headers.get("upgrade", "").lower() == "websocket"


def test_tcp_listener_still_speaks_plain_mqtt(ws_broker, raw_client):
    c = raw_client(ws_broker)
    assert c.mqtt_connect(unique("tcp"), level=V311.level).return_code == 0
