//! proptest strategies producing valid packets of every type for a given protocol version:
//! only what that version can carry (no properties in 3.x, 3.1 without session present, ...),
//! so that `decode(encode(p)) == p` must hold exactly.
#![allow(dead_code)] // each test binary uses a subset

use bytes::Bytes;
use fulmar_proto::*;
use proptest::collection::vec;
use proptest::option::of;
use proptest::prelude::*;

pub const VERSIONS: [ProtocolVersion; 3] = [
    ProtocolVersion::V3_1,
    ProtocolVersion::V3_1_1,
    ProtocolVersion::V5,
];

pub fn version() -> impl Strategy<Value = ProtocolVersion> {
    prop::sample::select(VERSIONS.to_vec())
}

pub fn qos() -> impl Strategy<Value = QoS> {
    prop::sample::select(vec![QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce])
}

pub fn pid() -> impl Strategy<Value = PacketId> {
    (1..=u16::MAX).prop_map(|n| PacketId::new(n).unwrap())
}

/// Strings without U+0000, including multi-byte characters.
pub fn string() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 /é€😀\u{1}]{0,12}"
}

pub fn bytes() -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..24).prop_map(Bytes::from)
}

pub fn topic() -> impl Strategy<Value = TopicName> {
    "[a-z0-9/é$]{1,12}".prop_map(|s| TopicName::new(s).unwrap())
}

pub fn filter() -> impl Strategy<Value = TopicFilter> {
    let level = prop::sample::select(vec!["a", "b", "+", "é", "", "$x"]);
    (of("[a-z]{1,3}"), vec(level, 1..4), any::<bool>()).prop_filter_map(
        "valid filter",
        |(group, levels, hash)| {
            let mut s = levels.join("/");
            if hash {
                s.push_str("/#");
            }
            if let Some(g) = group {
                s = format!("$share/{g}/{s}");
            }
            TopicFilter::new(s).ok()
        },
    )
}

pub fn reason_in(packet: PacketType) -> impl Strategy<Value = ReasonCode> {
    let codes: Vec<_> = (0..=255u8)
        .filter_map(|b| ReasonCode::try_from(b).ok())
        .filter(|r| r.allowed_in(packet))
        .collect();
    prop::sample::select(codes)
}

/// User properties in order; sometimes the first name repeats (names may repeat, section 3.1.2.11.8).
pub fn user_properties() -> impl Strategy<Value = Vec<(String, String)>> {
    (vec((string(), string()), 0..3), of(string())).prop_map(|(mut pairs, repeat)| {
        if let (Some(value), Some((name, _))) = (repeat, pairs.first().cloned()) {
            pairs.push((name, value));
        }
        pairs
    })
}

/// A Subscription Identifier (1..=268435455, a Variable Byte Integer): any value, or one at either end
/// of each encoded length (1 to 4 bytes, section 1.5.5), which a uniform range almost never reaches.
pub fn subscription_id() -> impl Strategy<Value = u32> {
    prop_oneof![
        1..=268_435_455u32,
        prop::sample::select(vec![
            1,
            127,
            128,
            16_383,
            16_384,
            2_097_151,
            2_097_152,
            268_435_455
        ]),
        1..=127u32,
        128..=16_383u32,
        16_384..=2_097_151u32,
    ]
}

pub fn reason_props() -> impl Strategy<Value = PropertyValues> {
    (of(string()), user_properties()).prop_map(|(reason_string, user_properties)| PropertyValues {
        reason_string,
        user_properties,
        ..PropertyValues::default()
    })
}

/// PUBLISH and will properties share most fields.
pub fn message_props() -> impl Strategy<Value = PropertyValues> {
    (
        of(0..=1u8),
        of(any::<u32>()),
        of(string()),
        of(topic()),
        of(bytes()),
        user_properties(),
    )
        .prop_map(
            |(
                payload_format_indicator,
                message_expiry_interval,
                content_type,
                response_topic,
                correlation_data,
                user_properties,
            )| PropertyValues {
                payload_format_indicator,
                message_expiry_interval,
                content_type,
                response_topic,
                correlation_data,
                user_properties,
                ..PropertyValues::default()
            },
        )
}

pub fn publish_props() -> impl Strategy<Value = PropertyValues> {
    (
        message_props(),
        vec(subscription_id(), 0..3),
        of(1..=u16::MAX),
    )
        .prop_map(
            |(p, subscription_identifiers, topic_alias)| PropertyValues {
                subscription_identifiers,
                topic_alias,
                ..p
            },
        )
}

pub fn will_props() -> impl Strategy<Value = PropertyValues> {
    (message_props(), of(any::<u32>())).prop_map(|(p, will_delay_interval)| PropertyValues {
        will_delay_interval,
        ..p
    })
}

pub fn auth_fields() -> impl Strategy<Value = (Option<String>, Option<Bytes>)> {
    (of(string()), of(bytes())).prop_map(|(method, data)| {
        let data = if method.is_some() { data } else { None };
        (method, data)
    })
}

pub fn connect_props() -> impl Strategy<Value = PropertyValues> {
    (
        of(any::<u32>()),
        auth_fields(),
        of(0..=1u8),
        of(0..=1u8),
        of(1..=u16::MAX),
        of(any::<u16>()),
        of(1..=u32::MAX),
        user_properties(),
    )
        .prop_map(
            |(sei, (am, ad), rpi, rri, rm, tam, mps, user_properties)| PropertyValues {
                session_expiry_interval: sei,
                authentication_method: am,
                authentication_data: ad,
                request_problem_information: rpi,
                request_response_information: rri,
                receive_maximum: rm,
                topic_alias_maximum: tam,
                maximum_packet_size: mps,
                user_properties,
                ..PropertyValues::default()
            },
        )
}

pub fn connack_props() -> impl Strategy<Value = PropertyValues> {
    let flags = (
        of(any::<bool>()),
        of(any::<bool>()),
        of(any::<bool>()),
        of(any::<bool>()),
    );
    let limits = (
        of(1..=u16::MAX),
        of(any::<u16>()),
        of(prop::sample::select(vec![
            QoS::AtMostOnce,
            QoS::AtLeastOnce,
        ])),
        of(1..=u32::MAX),
    );
    let strings = (
        of(string()),
        of(string()),
        of(string()),
        of(any::<u16>()),
        of(any::<u32>()),
    );
    (reason_props(), auth_fields(), flags, limits, strings).prop_map(
        |(p, (am, ad), (ra, wsa, sia, ssa), (rm, tam, mq, mps), (aci, ri, sr, ska, sei))| {
            PropertyValues {
                authentication_method: am,
                authentication_data: ad,
                retain_available: ra,
                wildcard_subscription_available: wsa,
                subscription_identifier_available: sia,
                shared_subscription_available: ssa,
                receive_maximum: rm,
                topic_alias_maximum: tam,
                maximum_qos: mq,
                maximum_packet_size: mps,
                assigned_client_identifier: aci,
                response_information: ri,
                server_reference: sr,
                server_keep_alive: ska,
                session_expiry_interval: sei,
                ..p
            }
        },
    )
}

/// `props` for 5.0, empty otherwise (3.x has no properties).
pub fn props_for(
    v: ProtocolVersion,
    props: impl Strategy<Value = PropertyValues> + 'static,
) -> BoxedStrategy<Properties> {
    if v.is_v5() {
        props.prop_map(Properties::from).boxed()
    } else {
        Just(Properties::default()).boxed()
    }
}

pub fn connect(v: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let will = (
        topic(),
        bytes(),
        qos(),
        any::<bool>(),
        props_for(v, will_props()),
    )
        .prop_map(|(topic, payload, qos, retain, properties)| Will {
            topic,
            payload,
            qos,
            retain,
            properties,
        });
    (
        any::<bool>(),
        any::<u16>(),
        string(),
        of(will),
        of(string()),
        of(bytes()),
        props_for(v, connect_props()),
    )
        .prop_map(
            move |(
                clean_start,
                keep_alive,
                client_id,
                will,
                mut username,
                password,
                properties,
            )| {
                if !v.is_v5() && password.is_some() && username.is_none() {
                    username = Some("user".into()); // [MQTT-3.1.2-22]
                }
                Packet::from(Connect {
                    protocol: v,
                    clean_start,
                    keep_alive,
                    client_id,
                    will,
                    username,
                    password,
                    properties,
                })
            },
        )
}

pub fn connack(v: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let reason = if v.is_v5() {
        reason_in(PacketType::ConnAck).boxed()
    } else {
        use ReasonCode as R;
        prop::sample::select(vec![
            R::Success,
            R::UnsupportedProtocolVersion,
            R::ClientIdentifierNotValid,
            R::ServerUnavailable,
            R::BadUserNameOrPassword,
            R::NotAuthorized,
        ])
        .boxed()
    };
    (any::<bool>(), reason, props_for(v, connack_props())).prop_map(
        move |(sp, reason, properties)| {
            // 3.1 has no session present flag; refusals never carry it [MQTT-3.2.2-4].
            let session_present = sp && v != ProtocolVersion::V3_1 && reason == ReasonCode::Success;
            Packet::ConnAck(ConnAck {
                session_present,
                reason,
                properties,
            })
        },
    )
}

pub fn publish(v: ProtocolVersion) -> impl Strategy<Value = Publish> {
    (
        qos(),
        any::<bool>(),
        any::<bool>(),
        topic(),
        pid(),
        props_for(v, publish_props()),
        bytes(),
        any::<bool>(),
    )
        .prop_map(
            move |(qos, dup, retain, topic, id, properties, payload, use_alias_only)| {
                let topic = if v.is_v5() && use_alias_only && properties.topic_alias.is_some() {
                    TopicName::empty()
                } else {
                    topic
                };
                let acked = qos != QoS::AtMostOnce;
                Publish {
                    dup: dup && acked,
                    qos,
                    retain,
                    topic,
                    packet_id: acked.then_some(id),
                    properties,
                    payload,
                }
            },
        )
}

pub fn ack(v: ProtocolVersion, packet: PacketType) -> impl Strategy<Value = Ack> {
    let reason = if v.is_v5() {
        reason_in(packet).boxed()
    } else {
        Just(ReasonCode::Success).boxed()
    };
    (pid(), reason, props_for(v, reason_props())).prop_map(|(packet_id, reason, properties)| Ack {
        packet_id,
        reason,
        properties,
    })
}

pub fn options(v: ProtocolVersion) -> impl Strategy<Value = SubscriptionOptions> {
    let rh = prop::sample::select(vec![
        RetainHandling::SendAtSubscribe,
        RetainHandling::SendAtSubscribeIfNew,
        RetainHandling::DoNotSend,
    ]);
    (qos(), any::<bool>(), any::<bool>(), rh).prop_map(
        move |(qos, no_local, retain_as_published, retain_handling)| {
            if v.is_v5() {
                SubscriptionOptions {
                    qos,
                    no_local,
                    retain_as_published,
                    retain_handling,
                }
            } else {
                SubscriptionOptions {
                    qos,
                    ..SubscriptionOptions::default()
                }
            }
        },
    )
}

pub fn subscribe(v: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let props = (of(subscription_id()), user_properties()).prop_map(|(id, user_properties)| {
        PropertyValues {
            subscription_identifiers: id.into_iter().collect(),
            user_properties,
            ..PropertyValues::default()
        }
    });
    (
        pid(),
        props_for(v, props),
        vec((filter(), options(v)), 1..4),
    )
        .prop_map(|(packet_id, properties, mut filters)| {
            for (f, o) in &mut filters {
                o.no_local &= f.shared().is_none(); // [MQTT-3.8.3-4]
            }
            Packet::Subscribe(Subscribe {
                packet_id,
                properties,
                filters,
            })
        })
}

pub fn suback(v: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let reason = if v.is_v5() {
        reason_in(PacketType::SubAck).boxed()
    } else {
        use ReasonCode as R;
        prop::sample::select(vec![
            R::Success,
            R::GrantedQoS1,
            R::GrantedQoS2,
            R::UnspecifiedError,
        ])
        .boxed()
    };
    (pid(), props_for(v, reason_props()), vec(reason, 0..4)).prop_map(
        |(packet_id, properties, reasons)| {
            Packet::SubAck(SubAck {
                packet_id,
                properties,
                reasons,
            })
        },
    )
}

pub fn unsubscribe(v: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let props = user_properties().prop_map(|user_properties| PropertyValues {
        user_properties,
        ..PropertyValues::default()
    });
    (pid(), props_for(v, props), vec(filter(), 1..4)).prop_map(
        |(packet_id, properties, filters)| {
            Packet::Unsubscribe(Unsubscribe {
                packet_id,
                properties,
                filters,
            })
        },
    )
}

pub fn unsuback(v: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let reasons = if v.is_v5() {
        vec(reason_in(PacketType::UnsubAck), 0..4).boxed()
    } else {
        Just(vec![]).boxed()
    };
    (pid(), props_for(v, reason_props()), reasons).prop_map(|(packet_id, properties, reasons)| {
        Packet::UnsubAck(UnsubAck {
            packet_id,
            properties,
            reasons,
        })
    })
}

pub fn disconnect(v: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let props = (reason_props(), of(any::<u32>()), of(string())).prop_map(
        |(p, session_expiry_interval, server_reference)| PropertyValues {
            session_expiry_interval,
            server_reference,
            ..p
        },
    );
    let reason = if v.is_v5() {
        reason_in(PacketType::Disconnect).boxed()
    } else {
        Just(ReasonCode::Success).boxed()
    };
    (reason, props_for(v, props))
        .prop_map(|(reason, properties)| Packet::Disconnect(Disconnect { reason, properties }))
}

pub fn auth() -> impl Strategy<Value = Packet> {
    let props = (reason_props(), auth_fields()).prop_map(
        |(p, (authentication_method, authentication_data))| PropertyValues {
            authentication_method,
            authentication_data,
            ..p
        },
    );
    (reason_in(PacketType::Auth), props).prop_map(|(reason, properties)| {
        Packet::Auth(Auth {
            reason,
            properties: properties.into(),
        })
    })
}

/// Any packet valid in version `v`.
pub fn packet(v: ProtocolVersion) -> BoxedStrategy<Packet> {
    let mut choices = vec![
        connect(v).boxed(),
        connack(v).boxed(),
        publish(v).prop_map(Packet::Publish).boxed(),
        ack(v, PacketType::PubAck).prop_map(Packet::PubAck).boxed(),
        ack(v, PacketType::PubRec).prop_map(Packet::PubRec).boxed(),
        ack(v, PacketType::PubRel).prop_map(Packet::PubRel).boxed(),
        ack(v, PacketType::PubComp)
            .prop_map(Packet::PubComp)
            .boxed(),
        subscribe(v).boxed(),
        suback(v).boxed(),
        unsubscribe(v).boxed(),
        unsuback(v).boxed(),
        Just(Packet::PingReq).boxed(),
        Just(Packet::PingResp).boxed(),
        disconnect(v).boxed(),
    ];
    if v.is_v5() {
        choices.push(auth().boxed());
    }
    prop::strategy::Union::new(choices).boxed()
}

pub fn versioned_packet() -> impl Strategy<Value = (ProtocolVersion, Packet)> {
    version().prop_flat_map(|v| (Just(v), packet(v)))
}
