//! Transcripts: bytes from the broker go in, the bytes the client sends are compared with the
//! specification's encodings, in virtual time.

use std::time::{Duration, Instant};

use bytes::BytesMut;
use fulmar_proto::{
    decode, encode, Disconnect, Packet, Properties, ProtocolVersion, QoS, ReasonCode,
    SubscriptionOptions, TopicFilter, TopicName,
};

use super::{ClientState, Phase, StateEvent};
use crate::{ClientError, ConnectOptions, OutgoingMessage};

const V311: ProtocolVersion = ProtocolVersion::V3_1_1;

fn hex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s.bytes().filter(u8::is_ascii_hexdigit).collect();
    digits
        .chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).expect("ascii"), 16).expect("hex"))
        .collect()
}

/// A client for `version` with id "c", keep-alive 60 s.
fn client(version: ProtocolVersion, t0: Instant) -> ClientState {
    ClientState::new(ConnectOptions::new(version, "c"), t0)
}

/// Everything the client wants to send, encoded.
fn sent(state: &mut ClientState, now: Instant) -> Vec<u8> {
    let mut out = BytesMut::new();
    while let Some(packet) = state.poll_transmit(now) {
        encode(&packet, state.version(), &mut out).expect("encodable");
    }
    out.to_vec()
}

/// Feeds bytes from the broker.
fn feed(state: &mut ClientState, bytes: &str) -> Result<(), ClientError> {
    let mut buf = BytesMut::from(&hex(bytes)[..]);
    while let Some(packet) = decode(&mut buf, state.version(), 1 << 20)? {
        state.handle(packet)?;
    }
    assert!(buf.is_empty(), "partial packet left in transcript");
    Ok(())
}

fn events(state: &mut ClientState) -> Vec<StateEvent> {
    std::iter::from_fn(|| state.poll_event()).collect()
}

fn message(topic: &str, payload: &str, qos: QoS) -> OutgoingMessage {
    OutgoingMessage::new(
        TopicName::new(topic).expect("topic"),
        payload.to_owned(),
        qos,
        false,
    )
}

/// Connects `state` with CONNACK (session present or not) and drops the resulting events.
fn connected(version: ProtocolVersion, t0: Instant) -> ClientState {
    let mut state = client(version, t0);
    state.connect(t0);
    sent(&mut state, t0);
    let connack = if version.is_v5() {
        "20 03 00 00 00"
    } else {
        "20 02 00 00"
    };
    feed(&mut state, connack).expect("connack");
    events(&mut state);
    state
}

#[test]
fn connect_is_encoded_per_spec_and_connack_connects() {
    let t0 = Instant::now();
    let mut state = client(V311, t0);
    state.connect(t0);
    // 3.1.1 section 3.1: "MQTT", level 4, Clean Session, keep-alive 60, client id "c".
    assert_eq!(
        sent(&mut state, t0),
        hex("10 0D 0004 4D515454 04 02 003C 0001 63")
    );
    assert_eq!(state.phase(), Phase::Connecting);
    feed(&mut state, "20 02 00 00").expect("connack");
    assert_eq!(state.phase(), Phase::Connected);
    assert_eq!(
        events(&mut state),
        vec![StateEvent::Connected {
            session_present: false,
            properties: Properties::default()
        }]
    );
}

#[test]
fn mqtt31_connect_uses_mqisdp() {
    let t0 = Instant::now();
    let mut state = client(ProtocolVersion::V3_1, t0);
    state.connect(t0);
    assert_eq!(
        sent(&mut state, t0),
        hex("10 0F 0006 4D5149736470 03 02 003C 0001 63")
    );
}

#[test]
fn refused_connack_is_an_error_naming_the_reason() {
    let t0 = Instant::now();
    let mut state = client(V311, t0);
    state.connect(t0);
    sent(&mut state, t0);
    // [MQTT-3.2.2-5] return code 5: not authorised
    let error = feed(&mut state, "20 02 00 05").expect_err("refused");
    assert!(matches!(
        error,
        ClientError::Refused(ReasonCode::NotAuthorized)
    ));
    assert!(error.to_string().contains("not authorised"), "{error}");
    assert_eq!(state.phase(), Phase::Disconnected);
}

#[test]
fn first_packet_must_be_connack() {
    let t0 = Instant::now();
    let mut state = client(V311, t0);
    state.connect(t0);
    assert!(matches!(
        feed(&mut state, "D0 00"),
        Err(ClientError::Protocol(_))
    ));
}

#[test]
fn qos1_publish_completes_on_puback() {
    let t0 = Instant::now();
    let mut state = connected(V311, t0);
    let id = state
        .publish(message("a", "x", QoS::AtLeastOnce))
        .expect("publish");
    assert_eq!(id.map(|id| id.get()), Some(1));
    assert_eq!(sent(&mut state, t0), hex("32 06 0001 61 0001 78"));
    feed(&mut state, "40 02 0001").expect("puback");
    assert_eq!(
        events(&mut state),
        vec![StateEvent::Published {
            packet_id: id.expect("id"),
            reason: ReasonCode::Success
        }]
    );
    assert_eq!(state.inflight(), 0);
}

#[test]
fn qos2_publish_releases_on_pubrec_and_completes_on_pubcomp() {
    let t0 = Instant::now();
    let mut state = connected(V311, t0);
    state
        .publish(message("a", "x", QoS::ExactlyOnce))
        .expect("publish");
    assert_eq!(sent(&mut state, t0), hex("34 06 0001 61 0001 78"));
    feed(&mut state, "50 02 0001").expect("pubrec");
    assert_eq!(
        sent(&mut state, t0),
        hex("62 02 0001"),
        "PUBREL with reserved flags 0010"
    );
    assert!(events(&mut state).is_empty(), "not complete before PUBCOMP");
    feed(&mut state, "50 02 0001").expect("duplicate pubrec");
    assert_eq!(
        sent(&mut state, t0),
        hex("62 02 0001"),
        "a repeated PUBREC gets PUBREL again"
    );
    feed(&mut state, "70 02 0001").expect("pubcomp");
    assert_eq!(events(&mut state).len(), 1);
    assert_eq!(state.inflight(), 0);
}

#[test]
fn incoming_qos1_is_delivered_and_acknowledged() {
    let t0 = Instant::now();
    let mut state = connected(V311, t0);
    feed(&mut state, "32 06 0001 61 0007 78").expect("publish");
    assert!(matches!(&events(&mut state)[..], [StateEvent::Message(p)] if &p.payload[..] == b"x"));
    assert_eq!(sent(&mut state, t0), hex("40 02 0007"));
}

#[test]
fn incoming_qos2_is_delivered_once_until_pubrel() {
    let t0 = Instant::now();
    let mut state = connected(V311, t0);
    feed(&mut state, "34 06 0001 61 0009 78").expect("publish");
    assert_eq!(events(&mut state).len(), 1);
    assert_eq!(sent(&mut state, t0), hex("50 02 0009"));
    // [MQTT-4.3.3-2] a resend (DUP) before PUBREL is acknowledged, not delivered again
    feed(&mut state, "3C 06 0001 61 0009 78").expect("dup publish");
    assert!(events(&mut state).is_empty());
    assert_eq!(sent(&mut state, t0), hex("50 02 0009"));
    feed(&mut state, "62 02 0009").expect("pubrel");
    assert_eq!(sent(&mut state, t0), hex("70 02 0009"));
    // After PUBREL the id is free: the same id is a new message.
    feed(&mut state, "34 06 0001 61 0009 79").expect("new publish");
    assert_eq!(events(&mut state).len(), 1);
}

#[test]
fn keep_alive_sends_pingreq_and_times_out_without_pingresp() {
    let t0 = Instant::now();
    let mut state = connected(V311, t0);
    let ka = Duration::from_secs(60);
    assert_eq!(state.poll_timeout(), Some(t0 + ka));
    state.handle_timeout(t0 + ka / 2).expect("early");
    assert!(sent(&mut state, t0).is_empty());
    state.handle_timeout(t0 + ka).expect("ping");
    assert_eq!(sent(&mut state, t0 + ka), hex("C0 00"));
    feed(&mut state, "D0 00").expect("pingresp");
    assert_eq!(state.poll_timeout(), Some(t0 + 2 * ka));
    state.handle_timeout(t0 + 2 * ka).expect("second ping");
    sent(&mut state, t0 + 2 * ka);
    let error = state.handle_timeout(t0 + 3 * ka).expect_err("no pingresp");
    assert!(matches!(error, ClientError::KeepAliveTimeout));
}

#[test]
fn any_packet_sent_postpones_the_ping() {
    let t0 = Instant::now();
    let mut state = connected(V311, t0);
    let t1 = t0 + Duration::from_secs(30);
    state
        .publish(message("a", "x", QoS::AtMostOnce))
        .expect("publish");
    sent(&mut state, t1);
    assert_eq!(state.poll_timeout(), Some(t1 + Duration::from_secs(60)));
}

#[test]
fn server_keep_alive_overrides_ours() {
    let t0 = Instant::now();
    let mut state = client(ProtocolVersion::V5, t0);
    state.connect(t0);
    sent(&mut state, t0);
    // CONNACK with Server Keep Alive (0x13) = 5
    feed(&mut state, "20 06 00 00 03 13 0005").expect("connack");
    assert_eq!(state.poll_timeout(), Some(t0 + Duration::from_secs(5)));
}

#[test]
fn unacked_messages_are_resent_with_dup_when_the_session_resumes() {
    let t0 = Instant::now();
    let mut state = connected(V311, t0);
    state
        .publish(message("a", "1", QoS::AtLeastOnce))
        .expect("q1");
    state
        .publish(message("a", "2", QoS::ExactlyOnce))
        .expect("q2");
    sent(&mut state, t0);
    feed(&mut state, "50 02 0002").expect("pubrec");
    sent(&mut state, t0);
    state.connection_lost();
    state.connect(t0);
    sent(&mut state, t0);
    feed(&mut state, "20 02 01 00").expect("connack, session present");
    // [MQTT-4.4.0-1] PUBLISH again with DUP, PUBREL again, in the original order.
    assert_eq!(
        sent(&mut state, t0),
        hex("3A 06 0001 61 0001 31  62 02 0002")
    );
    assert!(matches!(
        &events(&mut state)[..],
        [StateEvent::Connected {
            session_present: true,
            ..
        }]
    ));
}

#[test]
fn without_a_session_unacked_messages_are_published_afresh() {
    let t0 = Instant::now();
    let mut state = connected(V311, t0);
    state
        .publish(message("a", "1", QoS::AtLeastOnce))
        .expect("q1");
    state
        .publish(message("a", "2", QoS::ExactlyOnce))
        .expect("q2");
    sent(&mut state, t0);
    feed(&mut state, "50 02 0002").expect("pubrec");
    sent(&mut state, t0);
    state.connection_lost();
    state.connect(t0);
    sent(&mut state, t0);
    feed(&mut state, "20 02 00 00").expect("connack, no session");
    // The QoS 1 message goes again without DUP; the released QoS 2 one was already owned by
    // the broker and completes.
    assert_eq!(sent(&mut state, t0), hex("32 06 0001 61 0001 31"));
    let evs = events(&mut state);
    assert!(evs
        .iter()
        .any(|e| matches!(e, StateEvent::Published { packet_id, .. } if packet_id.get() == 2)));
    assert_eq!(state.inflight(), 1);
}

#[test]
fn messages_published_while_disconnected_go_out_after_connack() {
    let t0 = Instant::now();
    let mut state = client(V311, t0);
    assert!(matches!(
        state.publish(message("a", "0", QoS::AtMostOnce)),
        Err(ClientError::NotConnected)
    ));
    state
        .publish(message("a", "1", QoS::AtLeastOnce))
        .expect("queued");
    state.connect(t0);
    assert_eq!(
        sent(&mut state, t0).first(),
        Some(&0x10),
        "only CONNECT before CONNACK"
    );
    feed(&mut state, "20 02 00 00").expect("connack");
    assert_eq!(
        sent(&mut state, t0),
        hex("32 06 0001 61 0001 31"),
        "first send: no DUP"
    );
}

#[test]
fn subscribe_is_answered_by_its_suback_and_lost_with_the_connection() {
    let t0 = Instant::now();
    let mut state = connected(V311, t0);
    let filter = TopicFilter::new("a/+").expect("filter");
    let options = SubscriptionOptions {
        qos: QoS::AtLeastOnce,
        ..Default::default()
    };
    let id = state
        .subscribe(vec![(filter.clone(), options)], Properties::default())
        .expect("sub");
    assert_eq!(sent(&mut state, t0), hex("82 08 0001 0003 612F2B 01"));
    feed(&mut state, "90 03 0001 01").expect("suback");
    assert!(matches!(&events(&mut state)[..], [StateEvent::SubAck(ack)] if ack.packet_id == id));
    let again = state
        .subscribe(vec![(filter, options)], Properties::default())
        .expect("sub");
    assert_eq!(state.connection_lost(), vec![again]);
}

#[test]
fn packet_ids_skip_ids_in_use_and_wrap() {
    let t0 = Instant::now();
    let mut state = connected(V311, t0);
    state.last_id = u16::MAX - 1;
    let a = state
        .publish(message("a", "1", QoS::AtLeastOnce))
        .expect("a");
    let b = state
        .publish(message("a", "2", QoS::AtLeastOnce))
        .expect("b");
    assert_eq!(a.map(|id| id.get()), Some(u16::MAX));
    assert_eq!(
        b.map(|id| id.get()),
        Some(1),
        "0 is never used [MQTT-2.3.1-1]"
    );
    state.last_id = 0;
    let c = state
        .publish(message("a", "3", QoS::AtLeastOnce))
        .expect("c");
    assert_eq!(c.map(|id| id.get()), Some(2), "1 is still in flight");
}

#[test]
fn the_server_receive_maximum_limits_messages_in_flight() {
    let t0 = Instant::now();
    let mut state = client(ProtocolVersion::V5, t0);
    state.connect(t0);
    sent(&mut state, t0);
    // CONNACK with Receive Maximum (0x21) = 1
    feed(&mut state, "20 06 00 00 03 21 0001").expect("connack");
    state
        .publish(message("a", "1", QoS::AtLeastOnce))
        .expect("first");
    assert!(!state.can_publish());
    assert!(matches!(
        state.publish(message("a", "2", QoS::AtLeastOnce)),
        Err(ClientError::InflightFull)
    ));
    sent(&mut state, t0);
    feed(&mut state, "40 02 0001").expect("puback");
    assert!(state.can_publish());
}

#[test]
fn v5_server_disconnect_reports_its_reason() {
    let t0 = Instant::now();
    let mut state = connected(ProtocolVersion::V5, t0);
    let error = feed(&mut state, "E0 01 8E").expect_err("disconnect");
    assert!(matches!(
        error,
        ClientError::ServerDisconnect {
            reason: ReasonCode::SessionTakenOver,
            ..
        }
    ));
}

#[test]
fn disconnect_is_sent_only_when_connected() {
    let t0 = Instant::now();
    let mut state = connected(ProtocolVersion::V5, t0);
    let mut packet = Disconnect::default();
    packet.properties.session_expiry_interval = Some(0);
    state.disconnect(packet);
    assert_eq!(sent(&mut state, t0), hex("E0 07 00 05 11 00000000"));
    state.disconnect(Disconnect::default());
    assert!(sent(&mut state, t0).is_empty());
    assert!(matches!(state.handle(Packet::PingResp), Ok(())));
}
