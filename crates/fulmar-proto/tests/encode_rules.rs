//! The encoder refuses what the decoder would reject, so `encode` never emits a packet that a
//! conforming peer must treat as malformed.

use bytes::{Bytes, BytesMut};
use fulmar_proto::ProtocolVersion::{V3_1, V3_1_1, V5};
use fulmar_proto::*;

fn publish(qos: QoS, packet_id: Option<u16>) -> Publish {
    Publish {
        dup: false,
        qos,
        retain: false,
        topic: TopicName::new("t").unwrap(),
        packet_id: packet_id.and_then(PacketId::new),
        properties: Properties::default(),
        payload: Bytes::from_static(b"x"),
    }
}

fn encode_err(p: &Packet, v: ProtocolVersion) -> EncodeError {
    let mut out = BytesMut::new();
    let err = encode(p, v, &mut out).unwrap_err();
    assert!(out.is_empty(), "nothing is appended on error");
    assert_eq!(encoded_len(p, v), Err(err.clone()));
    err
}

#[test]
fn publish_packet_id_presence_follows_qos() {
    // [MQTT-2.2.1-2] packet id iff QoS > 0
    let no_id = Packet::Publish(publish(QoS::AtLeastOnce, None));
    assert!(matches!(
        encode_err(&no_id, V5),
        EncodeError::InvalidPacket(_)
    ));
    let stray_id = Packet::Publish(publish(QoS::AtMostOnce, Some(1)));
    assert!(matches!(
        encode_err(&stray_id, V3_1_1),
        EncodeError::InvalidPacket(_)
    ));
    let dup_qos0 = Packet::Publish(Publish {
        dup: true,
        ..publish(QoS::AtMostOnce, None)
    });
    assert!(matches!(
        encode_err(&dup_qos0, V3_1_1),
        EncodeError::InvalidPacket(_)
    )); // [MQTT-3.3.1-2]
}

#[test]
fn empty_topic_needs_an_alias_in_v5_and_is_never_valid_in_v3() {
    let empty = Publish {
        topic: TopicName::empty(),
        ..publish(QoS::AtMostOnce, None)
    };
    assert!(matches!(
        encode_err(&Packet::Publish(empty.clone()), V5),
        EncodeError::InvalidPacket(_)
    ));
    let aliased = Publish {
        properties: PropertyValues {
            topic_alias: Some(3),
            ..PropertyValues::default()
        }
        .into(),
        ..empty
    };
    let mut out = BytesMut::new();
    encode(&Packet::Publish(aliased.clone()), V5, &mut out).unwrap();
    assert!(matches!(
        encode_err(&Packet::Publish(aliased), V3_1_1),
        EncodeError::InvalidPacket(_)
    ));
}

#[test]
fn properties_are_checked_per_packet_and_ignored_in_v3() {
    let ack = Ack {
        packet_id: PacketId::new(1).unwrap(),
        reason: ReasonCode::Success,
        properties: PropertyValues {
            topic_alias: Some(1),
            ..PropertyValues::default()
        }
        .into(),
    };
    let p = Packet::PubAck(ack);
    assert_eq!(
        encode_err(&p, V5),
        EncodeError::InvalidProperty {
            id: 0x23,
            reason: "not allowed in this packet"
        }
    );
    let mut out = BytesMut::new();
    encode(&p, V3_1_1, &mut out).unwrap();
    assert_eq!(&out[..], &[0x40, 0x02, 0x00, 0x01]);
}

#[test]
fn property_values_are_checked() {
    let connack = |properties| {
        Packet::ConnAck(ConnAck {
            session_present: false,
            reason: ReasonCode::Success,
            properties,
        })
    };
    let bad: [Properties; 5] = [
        PropertyValues {
            receive_maximum: Some(0),
            ..PropertyValues::default()
        }
        .into(),
        PropertyValues {
            maximum_packet_size: Some(0),
            ..PropertyValues::default()
        }
        .into(),
        PropertyValues {
            maximum_qos: Some(QoS::ExactlyOnce),
            ..PropertyValues::default()
        }
        .into(),
        PropertyValues {
            authentication_data: Some(Bytes::from_static(b"d")),
            ..PropertyValues::default()
        }
        .into(),
        PropertyValues {
            reason_string: Some("a\0b".into()),
            ..PropertyValues::default()
        }
        .into(),
    ];
    for props in bad {
        let err = encode_err(&connack(props.clone()), V5);
        assert!(
            matches!(
                err,
                EncodeError::InvalidProperty { .. } | EncodeError::InvalidString
            ),
            "{props:?}: {err}"
        );
    }
    let long = PropertyValues {
        reason_string: Some("x".repeat(65_536)),
        ..PropertyValues::default()
    }
    .into();
    assert_eq!(encode_err(&connack(long), V5), EncodeError::StringTooLong);
}

#[test]
fn reason_codes_are_checked_per_packet_in_v5_and_mapped_in_v3() {
    let connack = |reason| {
        Packet::ConnAck(ConnAck {
            session_present: false,
            reason,
            properties: Properties::default(),
        })
    };
    assert!(matches!(
        encode_err(&connack(ReasonCode::GrantedQoS1), V5),
        EncodeError::InvalidReasonCode { .. }
    ));
    let mut out = BytesMut::new();
    encode(&connack(ReasonCode::ServerBusy), V3_1_1, &mut out).unwrap();
    assert_eq!(&out[..], &[0x20, 0x02, 0x00, 0x03]); // 3.1.1: server unavailable

    let suback = Packet::SubAck(SubAck {
        packet_id: PacketId::new(1).unwrap(),
        properties: Properties::default(),
        reasons: vec![ReasonCode::GrantedQoS2, ReasonCode::QuotaExceeded],
    });
    let mut out = BytesMut::new();
    encode(&suback, V3_1_1, &mut out).unwrap();
    assert_eq!(&out[..], &[0x90, 0x04, 0x00, 0x01, 0x02, 0x80]);
}

#[test]
fn auth_does_not_exist_before_v5() {
    let auth = Packet::Auth(Auth {
        reason: ReasonCode::Success,
        properties: Properties::default(),
    });
    assert_eq!(
        encode_err(&auth, V3_1_1),
        EncodeError::UnsupportedPacket {
            packet: "AUTH",
            version: V3_1_1
        }
    );
}

#[test]
fn v3_connect_needs_a_user_name_for_a_password_and_3_1_has_no_session_present() {
    let connect = Connect {
        protocol: V3_1_1,
        clean_start: true,
        keep_alive: 0,
        client_id: "c".into(),
        will: None,
        username: None,
        password: Some(Bytes::from_static(b"p")),
        properties: Properties::default(),
    };
    assert!(matches!(
        encode_err(&Packet::from(connect), V3_1_1),
        EncodeError::InvalidPacket(_)
    )); // [MQTT-3.1.2-22]
    let connack = Packet::ConnAck(ConnAck {
        session_present: true,
        reason: ReasonCode::Success,
        properties: Properties::default(),
    });
    let mut out = BytesMut::new();
    encode(&connack, V3_1, &mut out).unwrap();
    assert_eq!(&out[..], &[0x20, 0x02, 0x00, 0x00]);
}

#[test]
fn large_remaining_lengths_use_four_bytes() {
    let big = Publish {
        payload: Bytes::from(vec![0u8; 2_097_152]),
        ..publish(QoS::AtMostOnce, None)
    };
    let p = Packet::Publish(big);
    let mut out = BytesMut::new();
    encode(&p, V3_1_1, &mut out).unwrap();
    assert_eq!(&out[1..5], &[0x83, 0x80, 0x80, 0x01]); // 2_097_155 = 3 + 1 * 128^3 (topic field + payload)
    assert_eq!(out.len(), encoded_len(&p, V3_1_1).unwrap());
    let decoded = decode(&mut out, V3_1_1, usize::MAX).unwrap().unwrap();
    assert_eq!(decoded, p);
}

#[test]
fn reason_code_mapping_is_one_function() {
    assert_eq!(
        DecodeError::MalformedRemainingLength.reason_code(),
        ReasonCode::MalformedPacket
    );
    assert_eq!(
        DecodeError::PacketTooLarge { size: 2, max: 1 }.reason_code(),
        ReasonCode::PacketTooLarge
    );
    assert_eq!(
        DecodeError::UnsupportedProtocolVersion(6).reason_code(),
        ReasonCode::UnsupportedProtocolVersion
    );
    assert_eq!(
        DecodeError::InvalidTopicName(TopicError::WildcardInName).reason_code(),
        ReasonCode::TopicNameInvalid
    );
    assert_eq!(
        DecodeError::InvalidTopicName(TopicError::InvalidUtf8).reason_code(),
        ReasonCode::MalformedPacket
    );
    assert_eq!(
        DecodeError::DuplicateProperty(2).reason_code(),
        ReasonCode::ProtocolError
    );
}
