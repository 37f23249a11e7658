//! Session scenarios in virtual time: "client sends X at t, server must send Y".

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use fulmar_proto::{
    Ack, Connect, Packet, PacketId, Properties, PropertyValues, ProtocolVersion, Publish, QoS,
    ReasonCode, TopicName,
};

use super::{ClientCapabilities, Event, Outbound, Session, SessionLimits};
use crate::error::ProtocolError;
use crate::message::{Delivery, Message};

fn pid(n: u16) -> PacketId {
    PacketId::new(n).unwrap()
}

fn session(version: ProtocolVersion, keep_alive: u16, now: Instant) -> Session {
    Session::new(version, keep_alive, Arc::new(SessionLimits::default()), now)
}

fn publish(qos: QoS, packet_id: Option<u16>, dup: bool) -> Publish {
    Publish {
        dup,
        qos,
        retain: false,
        topic: TopicName::new("a/b").unwrap(),
        packet_id: packet_id.map(pid),
        properties: Properties::default(),
        payload: Bytes::from_static(b"hi"),
    }
}

fn ack(n: u16) -> Ack {
    Ack {
        packet_id: pid(n),
        reason: ReasonCode::Success,
        properties: Properties::default(),
    }
}

fn delivery(qos: QoS, payload: &'static [u8]) -> Delivery {
    let message = Message {
        topic: TopicName::new("x").unwrap(),
        payload: Bytes::from_static(payload),
        qos,
        retain: false,
        properties: Properties::default(),
        origin: None,
        expires_at: None,
    };
    Delivery::new(Arc::new(message), qos, false)
}

fn send(session: &mut Session, delivery: Delivery, now: Instant) -> Publish {
    match session.deliver(delivery, now) {
        Outbound::Send(publish) => publish,
        other => panic!("expected a PUBLISH to send, got {other:?}"),
    }
}

fn drain(session: &mut Session) -> Vec<Packet> {
    std::iter::from_fn(|| session.poll_transmit()).collect()
}

#[test]
fn keep_alive_expires_after_one_and_a_half_intervals() {
    let t0 = Instant::now();
    let mut s = session(ProtocolVersion::V3_1_1, 10, t0);
    assert!(s
        .check_keep_alive(t0 + Duration::from_millis(14_999))
        .is_ok());
    assert_eq!(
        s.check_keep_alive(t0 + Duration::from_secs(15)),
        Err(ProtocolError::KeepAliveTimeout)
    );
    // Any packet re-arms the timer [MQTT-3.1.2-23].
    s.handle(Packet::PingReq, t0 + Duration::from_secs(10))
        .unwrap();
    assert_eq!(drain(&mut s), vec![Packet::PingResp]);
    assert!(s.check_keep_alive(t0 + Duration::from_secs(24)).is_ok());
    assert_eq!(s.keep_alive_deadline(), Some(t0 + Duration::from_secs(25)));
}

#[test]
fn keep_alive_zero_never_expires() {
    let t0 = Instant::now();
    let s = session(ProtocolVersion::V3_1_1, 0, t0);
    assert_eq!(s.keep_alive_deadline(), None);
    assert!(s
        .check_keep_alive(t0 + Duration::from_secs(1_000_000))
        .is_ok());
}

#[test]
fn qos1_publish_is_routed_and_acknowledged() {
    let t0 = Instant::now();
    let mut s = session(ProtocolVersion::V3_1_1, 60, t0);
    let event = s
        .handle(
            Packet::Publish(publish(QoS::AtLeastOnce, Some(5), false)),
            t0,
        )
        .unwrap();
    let Some(Event::Publish(routed)) = event else {
        panic!("expected a routed publish")
    };
    assert_eq!(
        drain(&mut s),
        vec![],
        "PUBACK waits for the routing outcome"
    );
    s.acknowledge_publish(&routed, ReasonCode::Success);
    assert_eq!(drain(&mut s), vec![Packet::PubAck(ack(5))]);
}

#[test]
fn qos2_is_delivered_once_when_publish_is_resent_before_pubrel() {
    let t0 = Instant::now();
    let mut s = session(ProtocolVersion::V3_1_1, 60, t0);
    let first = s
        .handle(
            Packet::Publish(publish(QoS::ExactlyOnce, Some(7), false)),
            t0,
        )
        .unwrap();
    let Some(Event::Publish(routed)) = first else {
        panic!("expected a routed publish")
    };
    s.acknowledge_publish(&routed, ReasonCode::Success);
    let again = s
        .handle(
            Packet::Publish(publish(QoS::ExactlyOnce, Some(7), true)),
            t0,
        )
        .unwrap();
    assert_eq!(
        again, None,
        "[MQTT-4.3.3-2] not delivered again before PUBREL"
    );
    s.handle(Packet::PubRel(ack(7)), t0).unwrap();
    assert_eq!(
        drain(&mut s),
        vec![
            Packet::PubRec(ack(7)),
            Packet::PubRec(ack(7)),
            Packet::PubComp(ack(7))
        ]
    );
    // After PUBREL the id is free: a new PUBLISH with it is a new message.
    let next = s
        .handle(
            Packet::Publish(publish(QoS::ExactlyOnce, Some(7), false)),
            t0,
        )
        .unwrap();
    assert!(matches!(next, Some(Event::Publish(_))));
}

#[test]
fn inbound_qos2_beyond_receive_maximum_is_a_violation() {
    let t0 = Instant::now();
    let limits = SessionLimits {
        max_inbound_qos2: 2,
        ..SessionLimits::default()
    };
    let mut s = Session::new(ProtocolVersion::V5, 0, Arc::new(limits), t0);
    for id in 1..=2 {
        s.handle(
            Packet::Publish(publish(QoS::ExactlyOnce, Some(id), false)),
            t0,
        )
        .unwrap();
    }
    let err = s
        .handle(
            Packet::Publish(publish(QoS::ExactlyOnce, Some(3), false)),
            t0,
        )
        .unwrap_err();
    assert_eq!(err.reason_code(), ReasonCode::ReceiveMaximumExceeded);
}

#[test]
fn outbound_qos1_uses_the_window_and_puback_frees_it() {
    let t0 = Instant::now();
    let limits = SessionLimits {
        max_inflight: 2,
        ..SessionLimits::default()
    };
    let mut s = Session::new(ProtocolVersion::V3_1_1, 0, Arc::new(limits), t0);
    assert_eq!(s.outbound_window(), 2);
    let p1 = send(&mut s, delivery(QoS::AtLeastOnce, b"1"), t0);
    let p2 = send(&mut s, delivery(QoS::AtLeastOnce, b"2"), t0);
    assert_eq!((p1.packet_id, p2.packet_id), (Some(pid(1)), Some(pid(2))));
    assert_eq!(s.outbound_window(), 0);
    let p0 = send(&mut s, delivery(QoS::AtMostOnce, b"0"), t0);
    assert_eq!(p0.packet_id, None, "QoS 0 needs no window");
    s.handle(Packet::PubAck(ack(1)), t0).unwrap();
    assert_eq!(s.outbound_window(), 1);
}

#[test]
fn outbound_qos2_flow_sends_pubrel_and_completes_on_pubcomp() {
    let t0 = Instant::now();
    let mut s = session(ProtocolVersion::V3_1_1, 0, t0);
    let p = send(&mut s, delivery(QoS::ExactlyOnce, b"x"), t0);
    let id = p.packet_id.unwrap().get();
    s.handle(Packet::PubRec(ack(id)), t0).unwrap();
    assert_eq!(drain(&mut s), vec![Packet::PubRel(ack(id))]);
    assert_eq!(s.inflight_len(), 1);
    s.handle(Packet::PubComp(ack(id)), t0).unwrap();
    assert_eq!(s.inflight_len(), 0);
}

#[test]
fn resume_redelivers_open_exchanges_in_order_with_dup() {
    let t0 = Instant::now();
    let mut s = session(ProtocolVersion::V3_1_1, 0, t0);
    send(&mut s, delivery(QoS::AtLeastOnce, b"first"), t0);
    send(&mut s, delivery(QoS::ExactlyOnce, b"second"), t0);
    send(&mut s, delivery(QoS::ExactlyOnce, b"third"), t0);
    s.handle(Packet::PubRec(ack(3)), t0).unwrap();
    drain(&mut s);
    s.attach(
        ProtocolVersion::V3_1_1,
        30,
        Arc::new(SessionLimits::default()),
        t0 + Duration::from_secs(5),
    );
    let resent = drain(&mut s);
    assert_eq!(resent.len(), 3);
    match (&resent[0], &resent[1], &resent[2]) {
        (Packet::Publish(a), Packet::Publish(b), Packet::PubRel(c)) => {
            assert!(a.dup && b.dup, "[MQTT-3.3.1-1] re-sent PUBLISH has DUP set");
            assert_eq!((a.packet_id, &a.payload[..]), (Some(pid(1)), &b"first"[..]));
            assert_eq!(
                (b.packet_id, &b.payload[..]),
                (Some(pid(2)), &b"second"[..])
            );
            assert_eq!(
                c.packet_id,
                pid(3),
                "[MQTT-4.3.3-3] PUBREL, not PUBLISH, after PUBREC"
            );
        }
        other => panic!("unexpected redelivery {other:?}"),
    }
}

#[test]
fn second_connect_is_a_protocol_violation() {
    let t0 = Instant::now();
    let mut s = session(ProtocolVersion::V3_1_1, 0, t0);
    let connect = Connect {
        protocol: ProtocolVersion::V3_1_1,
        clean_start: true,
        keep_alive: 0,
        client_id: "c".into(),
        will: None,
        username: None,
        password: None,
        properties: Properties::default(),
    };
    assert_eq!(
        s.handle(Packet::from(connect), t0),
        Err(ProtocolError::SecondConnect)
    );
}

#[test]
fn server_only_packets_from_a_client_are_violations() {
    let t0 = Instant::now();
    let mut s = session(ProtocolVersion::V3_1_1, 0, t0);
    assert!(matches!(
        s.handle(Packet::PingResp, t0),
        Err(ProtocolError::UnexpectedPacket(_))
    ));
}

#[test]
fn topic_alias_is_resolved_and_stripped() {
    let t0 = Instant::now();
    let limits = SessionLimits {
        topic_alias_maximum: 4,
        ..SessionLimits::default()
    };
    let mut s = Session::new(ProtocolVersion::V5, 0, Arc::new(limits), t0);
    let mut set = publish(QoS::AtMostOnce, None, false);
    set.properties.topic_alias = Some(2);
    s.handle(Packet::Publish(set), t0).unwrap();
    let mut by_alias = publish(QoS::AtMostOnce, None, false);
    by_alias.topic = TopicName::empty();
    by_alias.properties.topic_alias = Some(2);
    match s.handle(Packet::Publish(by_alias), t0).unwrap() {
        Some(Event::Publish(p)) => {
            assert_eq!(p.topic.as_str(), "a/b");
            assert_eq!(p.properties.topic_alias, None);
        }
        other => panic!("expected a routed publish, got {other:?}"),
    }
    let mut unknown = publish(QoS::AtMostOnce, None, false);
    unknown.topic = TopicName::empty();
    unknown.properties.topic_alias = Some(3);
    assert_eq!(
        s.handle(Packet::Publish(unknown), t0),
        Err(ProtocolError::TopicAliasInvalid(3))
    );
}

#[test]
fn publish_above_maximum_qos_is_refused_with_0x9b() {
    let t0 = Instant::now();
    let limits = SessionLimits {
        max_qos: QoS::AtLeastOnce,
        ..SessionLimits::default()
    };
    let mut s = Session::new(ProtocolVersion::V5, 0, Arc::new(limits), t0);
    let err = s
        .handle(
            Packet::Publish(publish(QoS::ExactlyOnce, Some(1), false)),
            t0,
        )
        .unwrap_err();
    assert_eq!(err.reason_code(), ReasonCode::QoSNotSupported);
}

#[test]
fn retain_when_not_available_is_refused_with_0x9a() {
    let t0 = Instant::now();
    let limits = SessionLimits {
        retain_available: false,
        ..SessionLimits::default()
    };
    let mut s = Session::new(ProtocolVersion::V5, 0, Arc::new(limits), t0);
    let mut p = publish(QoS::AtMostOnce, None, false);
    p.retain = true;
    let err = s.handle(Packet::Publish(p), t0).unwrap_err();
    assert_eq!(err.reason_code(), ReasonCode::RetainNotSupported);
}

#[test]
fn invalid_utf8_payload_marked_utf8_gets_puback_0x99_and_is_not_routed() {
    let t0 = Instant::now();
    let limits = SessionLimits {
        validate_utf8_payload: true,
        ..SessionLimits::default()
    };
    let mut s = Session::new(ProtocolVersion::V5, 0, Arc::new(limits), t0);
    let mut p = publish(QoS::AtLeastOnce, Some(9), false);
    p.properties.payload_format_indicator = Some(1);
    p.payload = Bytes::from_static(&[0xff, 0xfe]);
    assert_eq!(s.handle(Packet::Publish(p), t0).unwrap(), None);
    let expected = Ack {
        packet_id: pid(9),
        reason: ReasonCode::PayloadFormatInvalid,
        // Request Problem Information defaults to 1: the refusal is explained.
        properties: PropertyValues {
            reason_string: Some(super::explain(ReasonCode::PayloadFormatInvalid).to_string()),
            ..PropertyValues::default()
        }
        .into(),
    };
    assert_eq!(drain(&mut s), vec![Packet::PubAck(expected)]);
}

#[test]
fn error_pubrec_releases_the_inbound_id() {
    let t0 = Instant::now();
    let mut s = session(ProtocolVersion::V5, 0, t0);
    let event = s
        .handle(
            Packet::Publish(publish(QoS::ExactlyOnce, Some(4), false)),
            t0,
        )
        .unwrap();
    let Some(Event::Publish(routed)) = event else {
        panic!("expected a routed publish")
    };
    s.acknowledge_publish(&routed, ReasonCode::NotAuthorized);
    // The id is free again: the same id is a new message.
    let again = s
        .handle(
            Packet::Publish(publish(QoS::ExactlyOnce, Some(4), false)),
            t0,
        )
        .unwrap();
    assert!(matches!(again, Some(Event::Publish(_))));
}

#[test]
fn expired_message_is_not_delivered_and_remaining_expiry_is_forwarded() {
    let t0 = Instant::now();
    let mut s = session(ProtocolVersion::V5, 0, t0);
    let mut message = Message {
        topic: TopicName::new("x").unwrap(),
        payload: Bytes::from_static(b"p"),
        qos: QoS::AtMostOnce,
        retain: false,
        properties: Properties::default(),
        origin: None,
        expires_at: Some(t0 + Duration::from_secs(10)),
    };
    message.properties.message_expiry_interval = Some(10);
    let message = Arc::new(message);
    let at_4s = send(
        &mut s,
        Delivery::new(Arc::clone(&message), QoS::AtMostOnce, false),
        t0 + Duration::from_secs(4),
    );
    assert_eq!(at_4s.properties.message_expiry_interval, Some(6));
    assert_eq!(
        s.deliver(
            Delivery::new(message, QoS::AtMostOnce, false),
            t0 + Duration::from_secs(10)
        ),
        Outbound::Expired
    );
}

#[test]
fn message_larger_than_client_maximum_packet_size_is_dropped_without_using_a_packet_id() {
    let t0 = Instant::now();
    let mut s = session(ProtocolVersion::V5, 0, t0);
    s.set_client_capabilities(ClientCapabilities {
        maximum_packet_size: NonZeroU32::new(20),
        ..ClientCapabilities::default()
    });
    let big = delivery(QoS::AtLeastOnce, &[0u8; 64]);
    assert_eq!(s.deliver(big, t0), Outbound::TooLarge);
    assert_eq!(s.inflight_len(), 0);
    let small = send(&mut s, delivery(QoS::AtLeastOnce, b"ok"), t0);
    assert_eq!(small.packet_id, Some(pid(1)));
}

#[test]
fn outbound_topic_alias_is_set_once_then_used_alone() {
    let t0 = Instant::now();
    let limits = SessionLimits {
        outbound_topic_aliases: true,
        ..SessionLimits::default()
    };
    let mut s = Session::new(ProtocolVersion::V5, 0, Arc::new(limits), t0);
    s.set_client_capabilities(ClientCapabilities {
        topic_alias_maximum: 1,
        ..ClientCapabilities::default()
    });
    let first = send(&mut s, delivery(QoS::AtMostOnce, b"1"), t0);
    assert_eq!(
        (first.topic.as_str(), first.properties.topic_alias),
        ("x", Some(1))
    );
    let second = send(&mut s, delivery(QoS::AtMostOnce, b"2"), t0);
    assert_eq!(
        (second.topic.as_str(), second.properties.topic_alias),
        ("", Some(1))
    );
}

#[test]
fn receive_maximum_of_the_client_bounds_the_window() {
    let t0 = Instant::now();
    let mut s = session(ProtocolVersion::V5, 0, t0);
    s.set_client_capabilities(ClientCapabilities {
        receive_maximum: 1,
        ..ClientCapabilities::default()
    });
    assert_eq!(s.outbound_window(), 1);
    send(&mut s, delivery(QoS::AtLeastOnce, b"1"), t0);
    assert_eq!(s.outbound_window(), 0);
}

// Found by the session fuzz target (fuzz/README.md, bugs 1 to 3): nothing the session sends may
// exceed the client's Maximum Packet Size [MQTT-3.1.2-24].

#[test]
fn redelivery_too_large_for_the_new_maximum_packet_size_is_discarded_as_completed() {
    let t0 = Instant::now();
    let mut s = session(ProtocolVersion::V5, 0, t0);
    send(&mut s, delivery(QoS::AtLeastOnce, b"small"), t0);
    send(&mut s, delivery(QoS::ExactlyOnce, &[0u8; 200]), t0);
    s.attach(
        ProtocolVersion::V5,
        0,
        Arc::new(SessionLimits::default()),
        t0,
    );
    // The server's handshake applies the new connection's capabilities after `attach`.
    s.set_client_capabilities(ClientCapabilities {
        maximum_packet_size: NonZeroU32::new(64),
        ..ClientCapabilities::default()
    });
    let resent = drain(&mut s);
    assert_eq!(
        resent.len(),
        1,
        "only the PUBLISH that fits is re-sent: {resent:?}"
    );
    assert!(matches!(&resent[0], Packet::Publish(p) if p.dup && &p.payload[..] == b"small"));
    // [MQTT-3.1.2-25] the discarded one counts as sent and acknowledged: its id is free.
    assert_eq!(
        s.inflight().map(|e| e.packet_id).collect::<Vec<_>>(),
        vec![pid(1)]
    );
}

#[test]
fn reason_string_is_left_out_when_the_ack_would_exceed_maximum_packet_size() {
    let t0 = Instant::now();
    let limits = SessionLimits {
        validate_utf8_payload: true,
        ..SessionLimits::default()
    };
    let mut s = Session::new(ProtocolVersion::V5, 0, Arc::new(limits), t0);
    s.set_client_capabilities(ClientCapabilities {
        maximum_packet_size: NonZeroU32::new(15),
        ..ClientCapabilities::default()
    });
    let mut p = publish(QoS::AtLeastOnce, Some(6), false);
    p.properties.payload_format_indicator = Some(1);
    p.payload = Bytes::from_static(&[0xff]);
    assert_eq!(s.handle(Packet::Publish(p), t0).unwrap(), None);
    // [MQTT-3.4.2-2] the Reason String would make the PUBACK 55 bytes: it is dropped.
    let expected = Ack {
        packet_id: pid(6),
        reason: ReasonCode::PayloadFormatInvalid,
        properties: Properties::default(),
    };
    assert_eq!(drain(&mut s), vec![Packet::PubAck(expected)]);
}

#[test]
fn outbound_topic_alias_is_left_out_when_it_would_exceed_maximum_packet_size() {
    let t0 = Instant::now();
    let limits = SessionLimits {
        outbound_topic_aliases: true,
        ..SessionLimits::default()
    };
    let mut s = Session::new(ProtocolVersion::V5, 0, Arc::new(limits), t0);
    // Topic "x", QoS 0, payload "1": 2 + 3 (topic) + 1 (properties) + 1 = 7 bytes, 10 with
    // the Topic Alias property.
    s.set_client_capabilities(ClientCapabilities {
        topic_alias_maximum: 1,
        maximum_packet_size: NonZeroU32::new(7),
        ..ClientCapabilities::default()
    });
    let plain = send(&mut s, delivery(QoS::AtMostOnce, b"1"), t0);
    assert_eq!(
        (plain.topic.as_str(), plain.properties.topic_alias),
        ("x", None)
    );
    // The alias was not used up by the PUBLISH that went without it.
    s.set_client_capabilities(ClientCapabilities {
        topic_alias_maximum: 1,
        maximum_packet_size: NonZeroU32::new(10),
        ..ClientCapabilities::default()
    });
    let aliased = send(&mut s, delivery(QoS::AtMostOnce, b"1"), t0);
    assert_eq!(
        (aliased.topic.as_str(), aliased.properties.topic_alias),
        ("x", Some(1))
    );
}

/// Most sessions are idle: QoS 0/1 traffic without aliases or a rate limit never allocates
/// the extras, and an inbound QoS 2 id outlives a reconnection in them.
#[test]
fn extras_are_allocated_only_for_what_needs_them() {
    let t0 = Instant::now();
    let mut s = session(ProtocolVersion::V5, 0, t0);
    s.handle(
        Packet::Publish(publish(QoS::AtLeastOnce, Some(1), false)),
        t0,
    )
    .unwrap();
    assert!(s.extras.is_none());
    s.handle(
        Packet::Publish(publish(QoS::ExactlyOnce, Some(2), false)),
        t0,
    )
    .unwrap();
    assert!(s.extras.is_some());
    s.attach(
        ProtocolVersion::V5,
        0,
        Arc::new(SessionLimits::default()),
        t0,
    );
    let resent = s.handle(
        Packet::Publish(publish(QoS::ExactlyOnce, Some(2), true)),
        t0,
    );
    assert_eq!(resent, Ok(None), "[MQTT-4.3.3-2] not delivered again");
    s.handle(Packet::PubRel(ack(2)), t0).unwrap();
    s.attach(
        ProtocolVersion::V5,
        0,
        Arc::new(SessionLimits::default()),
        t0,
    );
    assert!(s.extras.is_none(), "nothing left to keep");
    let rated = SessionLimits {
        publish_rate_messages: 1,
        ..SessionLimits::default()
    };
    s.attach(ProtocolVersion::V5, 0, Arc::new(rated), t0);
    assert!(s.extras.is_some(), "a rate limit lives in the extras");
    // 272 before the subscription map's hasher became process-wide (ProcessKeyed); 240
    // before the limits were shared (Arc, -24); 216 before the persist log was boxed (-16);
    // 200 before the inflight window and the replies moved into the traffic box (-80); 120
    // before it stopped keeping a copy of the client id (-16); 104 before the client's
    // Maximum Packet Size became a NonZeroU32 (its `Option` then needs no tag: -8).
    assert!(std::mem::size_of::<Session>() <= 96);
}

/// A dormant connection's session holds no traffic state once nothing is in it; while an
/// exchange is open or a reply waits it keeps it, and using it again allocates it again.
#[test]
fn idle_memory_is_released_only_when_nothing_is_in_it() {
    let t0 = Instant::now();
    let mut s = session(ProtocolVersion::V3_1_1, 0, t0);
    assert!(s.traffic.is_none(), "a new session has none");
    assert_eq!(s.outbound_window(), 32);
    let first = send(&mut s, delivery(QoS::AtLeastOnce, b"1"), t0);
    let second = send(&mut s, delivery(QoS::AtLeastOnce, b"2"), t0);
    assert_eq!(
        (first.packet_id, second.packet_id),
        (Some(pid(1)), Some(pid(2)))
    );
    s.release_idle_memory();
    assert_eq!(s.inflight_len(), 2, "open exchanges are kept");
    s.handle(Packet::PubAck(ack(1)), t0).unwrap();
    s.handle(Packet::PubAck(ack(2)), t0).unwrap();
    s.handle(Packet::PingReq, t0).unwrap();
    s.release_idle_memory();
    assert!(s.traffic.is_some(), "a waiting reply is kept");
    assert_eq!(drain(&mut s), vec![Packet::PingResp]);
    s.release_idle_memory();
    assert!(s.traffic.is_none());
    assert_eq!((s.inflight_len(), s.outbound_window()), (0, 32));
    assert_eq!(drain(&mut s), vec![]);
    assert!(s.take_unacknowledged().is_empty());
    let again = send(&mut s, delivery(QoS::ExactlyOnce, b"3"), t0);
    assert_eq!(
        again.packet_id,
        Some(pid(1)),
        "no id is in use: any is free"
    );
    s.handle(Packet::PubRec(ack(1)), t0).unwrap();
    assert_eq!(drain(&mut s), vec![Packet::PubRel(ack(1))]);
    s.handle(Packet::PubComp(ack(1)), t0).unwrap();
    assert_eq!(s.inflight_len(), 0);
}

#[test]
fn a_topic_over_the_level_limit_is_refused() {
    let t0 = Instant::now();
    let limits = SessionLimits {
        max_topic_levels: 3,
        ..SessionLimits::default()
    };
    let mut s = Session::new(ProtocolVersion::V3_1_1, 0, Arc::new(limits), t0);
    for (topic, within) in [
        ("a/b/c", true),
        ("//", true),
        ("a/b/c/d", false),
        ("///", false),
    ] {
        let mut p = publish(QoS::AtMostOnce, None, false);
        p.topic = TopicName::new(topic).unwrap();
        let refused = s.handle(Packet::Publish(p), t0).err();
        let expected = (!within).then_some(ProtocolError::TopicNameTooLong);
        assert_eq!(refused, expected, "{topic}");
    }
}
