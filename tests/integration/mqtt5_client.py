"""paho-mqtt 2.1 as an MQTT 5.0 client: ``Mqtt5Client`` extends helpers.MqttClient with properties, Clean
Start, subscription options and the reason codes of CONNACK, PUBACK/PUBCOMP, SUBACK and DISCONNECT.

Every wait is an event with a timeout, as in helpers.py. paho does not resolve topic aliases the broker sends,
so these clients never set Topic Alias Maximum (the broker then must not use aliases towards them); tests of
outbound aliases use the raw client.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass, field

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from helpers import WAIT, MqttClient, Proto, unique

V5 = Proto("v5", mqtt.MQTTv5, 5)


def props(packet_type: int, **values) -> Properties:
    """``props(PacketTypes.PUBLISH, MessageExpiryInterval=5, UserProperty=[("a", "1")])``."""
    p = Properties(packet_type)
    for name, value in values.items():
        setattr(p, name, value)
    return p


def prop_dict(p: Properties | None) -> dict:
    """paho Properties as a plain dict of the properties present (paho's names)."""
    if p is None:
        return {}
    # Not Properties.json(): that turns Correlation Data into hex text.
    out = {}
    for name in p.names:
        attr = name.replace(" ", "")
        if hasattr(p, attr):
            out[attr] = getattr(p, attr)
    return out


def _rc(reason_code) -> int:
    return reason_code.value if hasattr(reason_code, "value") else int(reason_code)


@dataclass
class Received5:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    dup: bool
    mid: int
    properties: dict = field(default_factory=dict)

    def prop(self, name: str, default=None):
        return self.properties.get(name, default)


class Mqtt5Client(MqttClient):
    """paho MQTTv5 client on paho's loop thread. ``connect_properties`` are paho property names and values
    for CONNECT (e.g. ``SessionExpiryInterval=10``); ``will`` is (topic, payload, qos, retain, will_props)."""

    def __init__(self, host: str, port: int, *, client_id: str | None = None, clean_start: bool = True,
                 keepalive: int = 60, will: tuple | None = None, connect_properties: dict | None = None):
        self.host, self.port, self.keepalive = host, port, keepalive
        self.client_id = client_id if client_id is not None else unique("paho5")
        self.proto = V5
        self.clean_start = clean_start
        self.connect_properties = dict(connect_properties or {})
        self.messages: queue.Queue[Received5] = queue.Queue()
        self.connected = threading.Event()
        self.disconnected = threading.Event()
        self.connack_rc = None
        self.connack_properties: dict = {}
        self.session_present = None
        self.disconnect_rc: int | None = None
        self.disconnect_properties: dict = {}
        self._acks: dict[int, threading.Event] = {}
        self._granted: dict[int, list[int]] = {}
        self._pub_rc: dict[int, int] = {}
        self._lock = threading.Lock()
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=mqtt.MQTTv5,
                        reconnect_on_failure=False)
        c.max_inflight_messages_set(0)  # see helpers.MqttClient: paho's own window reorders a pipelined stream
        if will is not None:
            topic, payload, qos, retain, will_props = (tuple(will) + ({},))[:5]
            c.will_set(topic, payload, qos=qos, retain=retain,
                       properties=props(PacketTypes.WILLMESSAGE, **will_props) if will_props else None)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        c.on_subscribe = self._on_subscribe
        c.on_unsubscribe = self._on_unsubscribe
        c.on_publish = self._on_publish
        self.paho = c

    # -- callbacks (paho's thread) ------------------------------------------------------------------

    def _on_connect(self, _c, _u, flags, reason_code, properties):
        self.connack_rc = _rc(reason_code)
        self.connack_properties = prop_dict(properties)
        self.session_present = flags.session_present
        self.connected.set()

    def _on_disconnect(self, _c, _u, _flags, reason_code, properties):
        self.disconnect_rc = _rc(reason_code)
        self.disconnect_properties = prop_dict(properties)
        self.disconnected.set()

    def _on_message(self, _c, _u, msg):
        self.messages.put(Received5(msg.topic, msg.payload, msg.qos, bool(msg.retain), bool(msg.dup), msg.mid,
                                    prop_dict(getattr(msg, "properties", None))))

    def _on_publish(self, _c, _u, mid, reason_code, _props):
        self._pub_rc[mid] = _rc(reason_code)

    # -- API (test thread) ---------------------------------------------------------------------------

    def connect(self, timeout: float = WAIT, expect_rc: int | None = 0) -> "Mqtt5Client":
        cp = props(PacketTypes.CONNECT, **self.connect_properties) if self.connect_properties else None
        self.paho.connect(self.host, self.port, keepalive=self.keepalive, clean_start=self.clean_start,
                          properties=cp)
        self.paho.loop_start()
        assert self.connected.wait(timeout), f"{self.client_id}: no CONNACK within {timeout}s"
        if expect_rc is not None:
            assert self.connack_rc == expect_rc, f"{self.client_id}: CONNACK reason {self.connack_rc:#x}"
        return self

    def subscribe(self, topic: str, qos: int = 0, timeout: float = WAIT, *, no_local: bool = False,
                  retain_as_published: bool = False, retain_handling: int = 0,
                  subscription_id: int | None = None) -> list[int]:
        """Subscribe with v5 options and wait for the SUBACK; returns its reason codes."""
        options = SubscribeOptions(qos=qos, noLocal=no_local, retainAsPublished=retain_as_published,
                                   retainHandling=retain_handling)
        sp = props(PacketTypes.SUBSCRIBE, SubscriptionIdentifier=subscription_id) if subscription_id else None
        rc, mid = self.paho.subscribe(topic, options=options, properties=sp)
        assert rc == MQTTErrorCode.MQTT_ERR_SUCCESS, f"subscribe failed locally: {rc}"
        assert self._ack_event(mid).wait(timeout), f"{self.client_id}: no SUBACK for {topic!r} within {timeout}s"
        return self._granted[mid]

    def publish5(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False, timeout: float = WAIT,
                 **properties) -> int:
        """Publish with v5 properties (paho names) and wait for the flow to complete; returns the reason
        code of the PUBACK (QoS 1) or PUBREC (QoS 2), 0 for QoS 0."""
        pp = props(PacketTypes.PUBLISH, **properties) if properties else None
        info = self.paho.publish(topic, payload, qos=qos, retain=retain, properties=pp)
        assert info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS, f"publish failed locally: {info.rc}"
        info.wait_for_publish(timeout)
        assert info.is_published(), f"{self.client_id}: publish to {topic!r} (QoS {qos}) not acknowledged in {timeout}s"
        return self._pub_rc.get(info.mid, 0)

    def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False,
                timeout: float = WAIT) -> None:
        self.publish5(topic, payload, qos, retain, timeout)

    def disconnect(self, timeout: float = WAIT, reason: int = 0, **properties) -> None:
        """DISCONNECT with a reason code and properties (e.g. ``SessionExpiryInterval=5``)."""
        dp = props(PacketTypes.DISCONNECT, **properties) if properties else None
        self.paho.disconnect(reasoncode=mqtt.ReasonCode(PacketTypes.DISCONNECT, identifier=reason), properties=dp)
        assert self.disconnected.wait(timeout), f"{self.client_id}: disconnect did not complete"
        self.stop()
