//! Golden packets as data, written by hand from the packet layouts of the MQTT 3.1, 3.1.1 and 5.0
//! specifications and named by the clause they illustrate. Shared by `golden.rs` (decode and
//! re-encode checks) and the fuzz seed corpus (`write_fuzz_corpus`).

use bytes::Bytes;
use fulmar_proto::ProtocolVersion::{V3_1, V3_1_1, V5};
use fulmar_proto::*;

/// What decoding a vector must give.
#[allow(dead_code)] // not every test binary uses every variant
pub enum Expect {
    /// This packet; re-encoding it must give the same bytes back.
    Packet(Packet),
    /// This packet; its canonical encoding differs (e.g. a long form the encoder shortens).
    PacketNonCanonical(Packet),
    /// Exactly this error.
    Error(DecodeError),
    /// An error mapped to this reason code (for errors carrying an explanatory text).
    Reason(ReasonCode),
    /// More bytes are needed.
    Incomplete,
}

/// One golden vector.
pub struct Vector {
    pub name: &'static str,
    pub version: ProtocolVersion,
    pub hex: &'static str,
    pub max: usize,
    pub expect: Expect,
}

pub fn hex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s.bytes().filter(u8::is_ascii_hexdigit).collect();
    digits
        .chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap())
        .collect()
}

pub fn pid(n: u16) -> PacketId {
    PacketId::new(n).unwrap()
}

pub fn topic(s: &str) -> TopicName {
    TopicName::new(s).unwrap()
}

pub fn filter(s: &str) -> TopicFilter {
    TopicFilter::new(s).unwrap()
}

fn props() -> Properties {
    Properties::default()
}

fn connect(protocol: ProtocolVersion, keep_alive: u16, client_id: &str) -> Connect {
    Connect {
        protocol,
        clean_start: true,
        keep_alive,
        client_id: client_id.into(),
        will: None,
        username: None,
        password: None,
        properties: props(),
    }
}

fn publish(qos: QoS, t: &str, id: Option<u16>, payload: &'static [u8]) -> Publish {
    Publish {
        dup: false,
        qos,
        retain: false,
        topic: topic(t),
        packet_id: id.map(pid),
        properties: props(),
        payload: Bytes::from_static(payload),
    }
}

fn ack(id: u16, reason: ReasonCode) -> Ack {
    Ack {
        packet_id: pid(id),
        reason,
        properties: props(),
    }
}

fn ok(name: &'static str, version: ProtocolVersion, hex: &'static str, p: Packet) -> Vector {
    Vector {
        name,
        version,
        hex,
        max: usize::MAX,
        expect: Expect::Packet(p),
    }
}

fn err(name: &'static str, version: ProtocolVersion, hex: &'static str, e: DecodeError) -> Vector {
    Vector {
        name,
        version,
        hex,
        max: usize::MAX,
        expect: Expect::Error(e),
    }
}

fn reason(
    name: &'static str,
    version: ProtocolVersion,
    hex: &'static str,
    r: ReasonCode,
) -> Vector {
    Vector {
        name,
        version,
        hex,
        max: usize::MAX,
        expect: Expect::Reason(r),
    }
}

/// Valid packets of every type.
#[allow(clippy::too_many_lines)] // a data table: one entry per golden vector
pub fn valid() -> Vec<Vector> {
    use ReasonCode as R;
    let full_connect = Connect {
        clean_start: true,
        will: Some(Will {
            topic: topic("w/t"),
            payload: Bytes::from_static(b"bye"),
            qos: QoS::AtLeastOnce,
            retain: true,
            properties: props(),
        }),
        username: Some("u".into()),
        password: Some(Bytes::from_static(b"p")),
        ..connect(V3_1_1, 10, "c")
    };
    let v5_connect = Connect {
        will: Some(Will {
            topic: topic("w"),
            payload: Bytes::new(),
            qos: QoS::AtMostOnce,
            retain: false,
            properties: PropertyValues {
                will_delay_interval: Some(5),
                ..PropertyValues::default()
            }
            .into(),
        }),
        properties: PropertyValues {
            session_expiry_interval: Some(120),
            receive_maximum: Some(10),
            ..PropertyValues::default()
        }
        .into(),
        ..connect(V5, 60, "c")
    };
    let v5_password_only = Connect {
        clean_start: false,
        password: Some(Bytes::from_static(b"p")),
        ..connect(V5, 60, "c")
    };
    let v5_publish = Publish {
        properties: PropertyValues {
            payload_format_indicator: Some(1),
            topic_alias: Some(5),
            ..PropertyValues::default()
        }
        .into(),
        ..publish(QoS::ExactlyOnce, "t", Some(1), b"x")
    };
    let alias_only = Publish {
        topic: TopicName::empty(),
        properties: PropertyValues {
            topic_alias: Some(1),
            ..PropertyValues::default()
        }
        .into(),
        ..publish(QoS::AtMostOnce, "t", None, b"")
    };
    let retained_dup = Publish {
        dup: true,
        retain: true,
        ..publish(QoS::AtLeastOnce, "t", Some(10), b"x")
    };
    let sub_v5 = Subscribe {
        packet_id: pid(2),
        properties: PropertyValues {
            subscription_identifiers: vec![7],
            ..PropertyValues::default()
        }
        .into(),
        filters: vec![(
            filter("$share/g/t"),
            SubscriptionOptions {
                qos: QoS::AtLeastOnce,
                no_local: false,
                retain_as_published: true,
                retain_handling: RetainHandling::DoNotSend,
            },
        )],
    };
    let qos = |q| SubscriptionOptions {
        qos: q,
        ..SubscriptionOptions::default()
    };
    vec![
        ok("3.1.1 [MQTT-3.1] CONNECT minimal", V3_1_1,
           "10 0E 00 04 4D 51 54 54 04 02 00 3C 00 02 63 31", Packet::from(connect(V3_1_1, 60, "c1"))),
        ok("3.1 CONNECT MQIsdp level 3", V3_1_1,
           "10 10 00 06 4D 51 49 73 64 70 03 02 00 3C 00 02 63 31", Packet::from(connect(V3_1, 60, "c1"))),
        ok("3.1.1 [MQTT-3.1.2] CONNECT will, user name, password", V3_1_1,
           "10 1D 00 04 4D 51 54 54 04 EE 00 0A 00 01 63 00 03 77 2F 74 00 03 62 79 65 00 01 75 00 01 70",
           Packet::from(full_connect)),
        ok("5.0 [3.1.2.11] CONNECT properties and will properties", V5,
           "10 21 00 04 4D 51 54 54 05 06 00 3C 08 11 00 00 00 78 21 00 0A 00 01 63 05 18 00 00 00 05 00 01 77 00 00",
           Packet::from(v5_connect)),
        ok("5.0 [3.1.2.9] CONNECT password without user name", V3_1_1,
           "10 11 00 04 4D 51 54 54 05 40 00 3C 00 00 01 63 00 01 70", Packet::from(v5_password_only)),
        ok("3.1.1 [MQTT-3.2.2-2] CONNACK session present", V3_1_1, "20 02 01 00",
           Packet::ConnAck(ConnAck { session_present: true, reason: R::Success, properties: props() })),
        ok("3.1.1 [3.2.2.3] CONNACK not authorized", V3_1_1, "20 02 00 05",
           Packet::ConnAck(ConnAck { session_present: false, reason: R::NotAuthorized, properties: props() })),
        ok("5.0 [3.2] CONNACK success", V5, "20 03 00 00 00",
           Packet::ConnAck(ConnAck { session_present: false, reason: R::Success, properties: props() })),
        ok("5.0 [3.2.2.3] CONNACK properties", V5, "20 08 00 00 05 22 00 0A 25 01",
           Packet::ConnAck(ConnAck {
               session_present: false,
               reason: R::Success,
               properties: PropertyValues { topic_alias_maximum: Some(10), retain_available: Some(true), ..PropertyValues::default() }.into(),
           })),
        ok("3.1.1 [MQTT-3.3] PUBLISH QoS 0", V3_1_1, "30 07 00 03 61 2F 62 68 69",
           Packet::Publish(publish(QoS::AtMostOnce, "a/b", None, b"hi"))),
        ok("3.1 PUBLISH QoS 0", V3_1, "30 07 00 03 61 2F 62 68 69",
           Packet::Publish(publish(QoS::AtMostOnce, "a/b", None, b"hi"))),
        ok("3.1.1 [MQTT-3.3.1] PUBLISH QoS 1 DUP retain", V3_1_1, "3B 06 00 01 74 00 0A 78",
           Packet::Publish(retained_dup)),
        ok("5.0 [3.3.2.3] PUBLISH QoS 2 with properties", V5, "34 0C 00 01 74 00 01 05 01 01 23 00 05 78",
           Packet::Publish(v5_publish)),
        ok("5.0 [3.3.2.3.4] PUBLISH empty topic with topic alias", V5, "30 06 00 00 03 23 00 01",
           Packet::Publish(alias_only)),
        ok("3.1.1 [MQTT-3.4] PUBACK", V3_1_1, "40 02 00 01", Packet::PubAck(ack(1, R::Success))),
        ok("3.1.1 [MQTT-3.5] PUBREC", V3_1_1, "50 02 00 02", Packet::PubRec(ack(2, R::Success))),
        ok("3.1.1 [MQTT-3.6.1-1] PUBREL flags 0010", V3_1_1, "62 02 00 03", Packet::PubRel(ack(3, R::Success))),
        ok("3.1.1 [MQTT-3.7] PUBCOMP", V3_1_1, "70 02 00 04", Packet::PubComp(ack(4, R::Success))),
        ok("5.0 [3.4.2.1] PUBACK short form", V5, "40 02 00 01", Packet::PubAck(ack(1, R::Success))),
        ok("5.0 [3.4.2.1] PUBACK reason only", V5, "40 03 00 01 10", Packet::PubAck(ack(1, R::NoMatchingSubscribers))),
        ok("5.0 [3.4.2.2] PUBACK reason string", V5, "40 08 00 01 87 04 1F 00 01 78",
           Packet::PubAck(Ack {
               properties: PropertyValues { reason_string: Some("x".into()), ..PropertyValues::default() }.into(),
               ..ack(1, R::NotAuthorized)
           })),
        ok("5.0 [3.6.2.1] PUBREL packet identifier not found", V5, "62 03 00 03 92",
           Packet::PubRel(ack(3, R::PacketIdentifierNotFound))),
        ok("3.1.1 [MQTT-3.8] SUBSCRIBE two filters", V3_1_1, "82 0C 00 01 00 03 61 2F 2B 01 00 01 23 02",
           Packet::Subscribe(Subscribe {
               packet_id: pid(1),
               properties: props(),
               filters: vec![(filter("a/+"), qos(QoS::AtLeastOnce)), (filter("#"), qos(QoS::ExactlyOnce))],
           })),
        ok("5.0 [3.8.3.1] SUBSCRIBE shared, options, subscription identifier", V5,
           "82 12 00 02 02 0B 07 00 0A 24 73 68 61 72 65 2F 67 2F 74 29", Packet::Subscribe(sub_v5)),
        ok("3.1.1 [MQTT-3.9.3] SUBACK with failure", V3_1_1, "90 05 00 01 00 01 80",
           Packet::SubAck(SubAck { packet_id: pid(1), properties: props(), reasons: vec![R::GRANTED_QOS0, R::GrantedQoS1, R::UnspecifiedError] })),
        ok("5.0 [3.9.3] SUBACK", V5, "90 05 00 01 00 02 A2",
           Packet::SubAck(SubAck { packet_id: pid(1), properties: props(), reasons: vec![R::GrantedQoS2, R::WildcardSubscriptionsNotSupported] })),
        ok("3.1.1 [MQTT-3.10] UNSUBSCRIBE", V3_1_1, "A2 05 00 01 00 01 61",
           Packet::Unsubscribe(Unsubscribe { packet_id: pid(1), properties: props(), filters: vec![filter("a")] })),
        ok("5.0 [3.10] UNSUBSCRIBE", V5, "A2 06 00 01 00 00 01 61",
           Packet::Unsubscribe(Unsubscribe { packet_id: pid(1), properties: props(), filters: vec![filter("a")] })),
        ok("3.1.1 [MQTT-3.11] UNSUBACK", V3_1_1, "B0 02 00 01",
           Packet::UnsubAck(UnsubAck { packet_id: pid(1), properties: props(), reasons: vec![] })),
        ok("5.0 [3.11.3] UNSUBACK reasons", V5, "B0 05 00 01 00 00 11",
           Packet::UnsubAck(UnsubAck { packet_id: pid(1), properties: props(), reasons: vec![R::Success, R::NoSubscriptionExisted] })),
        ok("3.1.1 [MQTT-3.12] PINGREQ", V3_1_1, "C0 00", Packet::PingReq),
        ok("5.0 [3.13] PINGRESP", V5, "D0 00", Packet::PingResp),
        ok("3.1.1 [MQTT-3.14] DISCONNECT", V3_1_1, "E0 00", Packet::Disconnect(Disconnect::default())),
        ok("5.0 [3.14.2.1] DISCONNECT length 0 is normal", V5, "E0 00", Packet::Disconnect(Disconnect::default())),
        ok("5.0 [3.14.2.1] DISCONNECT with will message", V5, "E0 01 04",
           Packet::Disconnect(Disconnect { reason: R::DisconnectWithWillMessage, properties: props() })),
        ok("5.0 [3.14.2.2] DISCONNECT session expiry", V5, "E0 07 8B 05 11 00 00 00 00",
           Packet::Disconnect(Disconnect {
               reason: R::ServerShuttingDown,
               properties: PropertyValues { session_expiry_interval: Some(0), ..PropertyValues::default() }.into(),
           })),
        ok("5.0 [3.15.2.1] AUTH length 0 is success", V5, "F0 00",
           Packet::Auth(Auth { reason: R::Success, properties: props() })),
        ok("5.0 [3.15.2.2] AUTH continue with method", V5, "F0 07 18 05 15 00 02 61 62",
           Packet::Auth(Auth {
               reason: R::ContinueAuthentication,
               properties: PropertyValues { authentication_method: Some("ab".into()), ..PropertyValues::default() }.into(),
           })),
        Vector {
            name: "5.0 [3.4.2.2.1] PUBACK success with empty property block",
            version: V5,
            hex: "40 04 00 01 00 00",
            max: usize::MAX,
            expect: Expect::PacketNonCanonical(Packet::PubAck(ack(1, R::Success))),
        },
    ]
}

/// Malformed, forbidden and incomplete inputs.
#[allow(clippy::too_many_lines)] // a data table: one entry per golden vector
pub fn invalid() -> Vec<Vector> {
    use DecodeError as E;
    use ReasonCode as R;
    vec![
        err(
            "[MQTT-1.5.5-1] remaining length of 5 bytes",
            V3_1_1,
            "30 FF FF FF FF 7F",
            E::MalformedRemainingLength,
        ),
        err(
            "[MQTT-1.5.5-1] 4 continuation bytes rejected before more arrive",
            V5,
            "30 80 80 80 80",
            E::MalformedRemainingLength,
        ),
        Vector {
            name: "PacketTooLarge from the fixed header before the body arrives",
            version: V5,
            hex: "30 FF FF 03",
            max: 1000,
            expect: Expect::Error(E::PacketTooLarge {
                size: 65_539,
                max: 1000,
            }),
        },
        Vector {
            name: "incomplete PUBLISH needs more bytes",
            version: V3_1_1,
            hex: "30 07 00 03 61",
            max: usize::MAX,
            expect: Expect::Incomplete,
        },
        Vector {
            name: "incomplete remaining length",
            version: V5,
            hex: "30 80",
            max: usize::MAX,
            expect: Expect::Incomplete,
        },
        err(
            "[2.1.2] packet type 0 is reserved",
            V3_1_1,
            "00 00",
            E::InvalidPacketType(0),
        ),
        err(
            "[2.1.2] AUTH does not exist in 3.1.1",
            V3_1_1,
            "F0 00",
            E::InvalidPacketType(15),
        ),
        err(
            "[MQTT-2.1.3-1] PUBACK flags must be 0",
            V3_1_1,
            "41 02 00 01",
            E::InvalidFlags {
                packet: "PUBACK",
                flags: 1,
            },
        ),
        err(
            "[MQTT-3.6.1-1] PUBREL flags must be 0010",
            V5,
            "60 02 00 01",
            E::InvalidFlags {
                packet: "PUBREL",
                flags: 0,
            },
        ),
        err(
            "[MQTT-3.8.1-1] SUBSCRIBE flags must be 0010",
            V3_1_1,
            "80 08 00 01 00 03 61 2F 2B 01",
            E::InvalidFlags {
                packet: "SUBSCRIBE",
                flags: 0,
            },
        ),
        err(
            "[MQTT-3.10.1-1] UNSUBSCRIBE flags must be 0010",
            V3_1_1,
            "A0 05 00 01 00 01 61",
            E::InvalidFlags {
                packet: "UNSUBSCRIBE",
                flags: 0,
            },
        ),
        err(
            "[MQTT-3.3.1-4] PUBLISH QoS 3",
            V3_1_1,
            "36 05 00 01 74 00 01",
            E::InvalidQoS(3),
        ),
        err(
            "[MQTT-3.3.1-2] DUP on QoS 0",
            V3_1_1,
            "38 04 00 01 74 78",
            E::InvalidFlags {
                packet: "PUBLISH",
                flags: 8,
            },
        ),
        err(
            "[MQTT-3.3.2-2] PUBLISH topic with wildcard",
            V3_1_1,
            "30 05 00 03 61 2F 2B",
            E::InvalidTopicName(TopicError::WildcardInName),
        ),
        err(
            "[MQTT-1.5.4-2] PUBLISH topic containing U+0000",
            V5,
            "30 06 00 03 61 00 62 00",
            E::InvalidTopicName(TopicError::NullCharacter),
        ),
        err(
            "[MQTT-1.5.4-1] PUBLISH topic with an encoded surrogate",
            V3_1_1,
            "30 05 00 03 ED A0 80",
            E::InvalidTopicName(TopicError::InvalidUtf8),
        ),
        err(
            "[MQTT-4.7.3-1] 3.1.1 PUBLISH with empty topic",
            V3_1_1,
            "30 02 00 00",
            E::InvalidTopicName(TopicError::Empty),
        ),
        reason(
            "5.0 [3.3.2.3.4] empty topic without topic alias",
            V5,
            "30 03 00 00 00",
            R::ProtocolError,
        ),
        err(
            "[MQTT-2.3.1-1] PUBACK packet id 0",
            V3_1_1,
            "40 02 00 00",
            E::ZeroPacketId,
        ),
        err(
            "[MQTT-2.3.1-1] PUBLISH QoS 1 packet id 0",
            V3_1_1,
            "32 05 00 01 74 00 00",
            E::ZeroPacketId,
        ),
        reason(
            "[MQTT-3.8.3-3] SUBSCRIBE without filters",
            V3_1_1,
            "82 02 00 01",
            R::ProtocolError,
        ),
        reason(
            "[MQTT-3.10.3-2] UNSUBSCRIBE without filters",
            V5,
            "A2 03 00 01 00",
            R::ProtocolError,
        ),
        reason(
            "[MQTT-3-8.3-4] 3.1.1 SUBSCRIBE reserved option bits",
            V3_1_1,
            "82 08 00 01 00 03 61 2F 62 05",
            R::MalformedPacket,
        ),
        err(
            "[MQTT-3-8.3-4] SUBSCRIBE QoS 3",
            V3_1_1,
            "82 08 00 01 00 03 61 2F 62 03",
            E::InvalidQoS(3),
        ),
        reason(
            "[MQTT-3.8.3-5] 5.0 SUBSCRIBE reserved option bits",
            V5,
            "82 09 00 01 00 00 03 61 2F 62 40",
            R::MalformedPacket,
        ),
        reason(
            "5.0 [3.8.3.1] SUBSCRIBE retain handling 3",
            V5,
            "82 09 00 01 00 00 03 61 2F 62 30",
            R::ProtocolError,
        ),
        reason(
            "[MQTT-3.8.3-4] no local on a shared subscription",
            V5,
            "82 10 00 01 00 00 0A 24 73 68 61 72 65 2F 67 2F 74 04",
            R::ProtocolError,
        ),
        err(
            "[MQTT-4.7.1-1] filter with '#' not last",
            V3_1_1,
            "82 0A 00 01 00 05 61 2F 23 2F 62 00",
            E::InvalidTopicFilter(TopicError::InvalidWildcard),
        ),
        err(
            "[MQTT-4.8.2-1] shared subscription with empty group",
            V5,
            "82 0E 00 01 00 00 09 24 73 68 61 72 65 2F 2F 74 00",
            E::InvalidTopicFilter(TopicError::InvalidSharedSubscription),
        ),
        reason(
            "[MQTT-3.1.2-22] 3.1.1 password without user name",
            V3_1_1,
            "10 10 00 04 4D 51 54 54 04 42 00 3C 00 01 63 00 01 70",
            R::ProtocolError,
        ),
        err(
            "[MQTT-3.1.2-2] unsupported protocol level 6",
            V3_1_1,
            "10 0C 00 04 4D 51 54 54 06 02 00 3C 00 00",
            E::UnsupportedProtocolVersion(6),
        ),
        err(
            "[MQTT-3.1.2-2] MQIsdp with level 4",
            V5,
            "10 0E 00 06 4D 51 49 73 64 70 04 02 00 3C 00 00",
            E::UnsupportedProtocolVersion(4),
        ),
        err(
            "[MQTT-3.1.2-1] invalid protocol name",
            V3_1_1,
            "10 0C 00 04 4D 51 54 58 04 02 00 3C 00 00",
            E::InvalidProtocolName,
        ),
        reason(
            "[MQTT-3.1.2-3] reserved connect flag",
            V3_1_1,
            "10 0C 00 04 4D 51 54 54 04 03 00 3C 00 00",
            R::MalformedPacket,
        ),
        reason(
            "[MQTT-3.1.2-15] will retain without will flag",
            V3_1_1,
            "10 0C 00 04 4D 51 54 54 04 22 00 3C 00 00",
            R::MalformedPacket,
        ),
        reason(
            "[MQTT-3.1.2-13] will QoS without will flag",
            V3_1_1,
            "10 0C 00 04 4D 51 54 54 04 0A 00 3C 00 00",
            R::MalformedPacket,
        ),
        err(
            "[MQTT-3.1.2-14] will QoS 3",
            V3_1_1,
            "10 0C 00 04 4D 51 54 54 04 1E 00 3C 00 00",
            E::InvalidQoS(3),
        ),
        err(
            "[MQTT-1.5.4-2] client id containing U+0000",
            V3_1_1,
            "10 0D 00 04 4D 51 54 54 04 02 00 3C 00 01 00",
            E::InvalidUtf8,
        ),
        err(
            "5.0 [2.2.2.2] duplicate property",
            V5,
            "30 0E 00 01 74 0A 02 00 00 00 01 02 00 00 00 02",
            E::DuplicateProperty(0x02),
        ),
        err(
            "5.0 [2.2.2.2] property not allowed in packet",
            V5,
            "40 07 00 01 00 03 23 00 01",
            E::PropertyNotAllowed {
                id: 0x23,
                packet: "PUBACK",
            },
        ),
        err(
            "5.0 [2.2.2.2] will property not allowed in CONNECT",
            V5,
            "10 12 00 04 4D 51 54 54 05 02 00 3C 05 18 00 00 00 05 00 00",
            E::PropertyNotAllowed {
                id: 0x18,
                packet: "CONNECT",
            },
        ),
        err(
            "5.0 [2.2.2.2] unknown property",
            V5,
            "30 06 00 01 74 02 05 00",
            E::UnknownProperty(0x05),
        ),
        err(
            "5.0 [3.1.2.11.3] receive maximum 0",
            V5,
            "10 10 00 04 4D 51 54 54 05 02 00 3C 03 21 00 00 00 00",
            E::InvalidPropertyValue(0x21),
        ),
        err(
            "5.0 [MQTT-3.3.2-8] topic alias 0",
            V5,
            "30 07 00 01 74 03 23 00 00",
            E::InvalidPropertyValue(0x23),
        ),
        err(
            "5.0 [3.8.2.1.2] subscription identifier 0",
            V5,
            "82 09 00 01 02 0B 00 00 01 61 00",
            E::InvalidPropertyValue(0x0B),
        ),
        err(
            "5.0 [3.8.2.1.2] two subscription identifiers in SUBSCRIBE",
            V5,
            "82 0B 00 01 04 0B 01 0B 02 00 01 61 00",
            E::DuplicateProperty(0x0B),
        ),
        err(
            "5.0 [2.2.2.2] property block longer than the packet",
            V5,
            "30 05 00 01 74 09 01",
            E::UnexpectedEof,
        ),
        err(
            "5.0 [3.4.2.1] PUBACK reason not allowed",
            V5,
            "40 03 00 01 92",
            E::InvalidReasonCode {
                code: 0x92,
                packet: "PUBACK",
            },
        ),
        err(
            "5.0 [3.2.2.2] CONNACK unknown reason",
            V5,
            "20 03 00 05 00",
            E::InvalidReasonCode {
                code: 0x05,
                packet: "CONNACK",
            },
        ),
        reason(
            "[MQTT-3.2.2-4] session present with refused connection",
            V3_1_1,
            "20 02 01 05",
            R::ProtocolError,
        ),
        reason(
            "[MQTT-3.2.2-1] CONNACK reserved flags",
            V3_1_1,
            "20 02 02 00",
            R::MalformedPacket,
        ),
        err(
            "[MQTT-3.9.3-2] 3.1.1 SUBACK reserved return code",
            V3_1_1,
            "90 03 00 01 03",
            E::InvalidReasonCode {
                code: 3,
                packet: "SUBACK",
            },
        ),
        err(
            "[MQTT-3.12] PINGREQ with a body",
            V3_1_1,
            "C0 01 00",
            E::TrailingBytes,
        ),
        err(
            "[MQTT-3.4] 3.1.1 PUBACK with extra bytes",
            V3_1_1,
            "40 03 00 01 00",
            E::TrailingBytes,
        ),
        err(
            "[MQTT-3.14] 3.1.1 DISCONNECT with a body",
            V3_1_1,
            "E0 01 00",
            E::TrailingBytes,
        ),
        err(
            "[1.5.4] topic length beyond the packet",
            V3_1_1,
            "30 03 00 05 61",
            E::UnexpectedEof,
        ),
    ]
}
