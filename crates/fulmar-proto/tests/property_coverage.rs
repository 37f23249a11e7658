//! Every MQTT 5.0 property identifier, in every packet that may carry it, is exercised: table 2-4 of the
//! specification is written out here (independently of the codec's own table), and
//!
//! - a packet of each type with *every* property its row allows is encoded; the identifiers found on the
//!   wire (by a small property-block scanner in this file, not the codec's decoder) are exactly that row,
//!   and decoding gives the packet back;
//! - the proptest strategies (tests/strategies) generate, for each packet type, every identifier of its
//!   row and no other, so `roundtrip.rs` covers them all;
//! - the union of those identifiers is the full list of 27, and equals `fulmar_proto::property_id`;
//! - every identifier *not* in a packet's row is refused: by `encode`, and by `decode` when spliced into
//!   an otherwise valid packet.
//!
//! A property added to the codec without a row here, or forgotten by an encoder, a decoder or a
//! strategy, fails one of these tests.

mod strategies;

use std::collections::BTreeSet;

use bytes::{Bytes, BytesMut};
use fulmar_proto::ProtocolVersion::V5;
use fulmar_proto::*;
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::TestRunner;

/// Where a property block sits: a packet type, or CONNECT's will properties.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Ctx {
    Connect,
    Will,
    ConnAck,
    Publish,
    PubAck,
    PubRec,
    PubRel,
    PubComp,
    Subscribe,
    SubAck,
    Unsubscribe,
    UnsubAck,
    Disconnect,
    Auth,
}

const ALL_CTX: [Ctx; 14] = [
    Ctx::Connect,
    Ctx::Will,
    Ctx::ConnAck,
    Ctx::Publish,
    Ctx::PubAck,
    Ctx::PubRec,
    Ctx::PubRel,
    Ctx::PubComp,
    Ctx::Subscribe,
    Ctx::SubAck,
    Ctx::Unsubscribe,
    Ctx::UnsubAck,
    Ctx::Disconnect,
    Ctx::Auth,
];

/// How a property's value is encoded (MQTT 5.0 section 1.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Byte,
    Two,
    Four,
    Vbi,
    Utf8,
    Binary,
    Pair,
}

use Ctx as C;

/// MQTT 5.0 table 2-4: identifier, name, value type, and the packets (and will properties) allowed to
/// carry it.
const TABLE: &[(u8, &str, Kind, &[Ctx])] = &[
    (
        0x01,
        "Payload Format Indicator",
        Kind::Byte,
        &[C::Publish, C::Will],
    ),
    (
        0x02,
        "Message Expiry Interval",
        Kind::Four,
        &[C::Publish, C::Will],
    ),
    (0x03, "Content Type", Kind::Utf8, &[C::Publish, C::Will]),
    (0x08, "Response Topic", Kind::Utf8, &[C::Publish, C::Will]),
    (
        0x09,
        "Correlation Data",
        Kind::Binary,
        &[C::Publish, C::Will],
    ),
    (
        0x0B,
        "Subscription Identifier",
        Kind::Vbi,
        &[C::Publish, C::Subscribe],
    ),
    (
        0x11,
        "Session Expiry Interval",
        Kind::Four,
        &[C::Connect, C::ConnAck, C::Disconnect],
    ),
    (
        0x12,
        "Assigned Client Identifier",
        Kind::Utf8,
        &[C::ConnAck],
    ),
    (0x13, "Server Keep Alive", Kind::Two, &[C::ConnAck]),
    (
        0x15,
        "Authentication Method",
        Kind::Utf8,
        &[C::Connect, C::ConnAck, C::Auth],
    ),
    (
        0x16,
        "Authentication Data",
        Kind::Binary,
        &[C::Connect, C::ConnAck, C::Auth],
    ),
    (
        0x17,
        "Request Problem Information",
        Kind::Byte,
        &[C::Connect],
    ),
    (0x18, "Will Delay Interval", Kind::Four, &[C::Will]),
    (
        0x19,
        "Request Response Information",
        Kind::Byte,
        &[C::Connect],
    ),
    (0x1A, "Response Information", Kind::Utf8, &[C::ConnAck]),
    (
        0x1C,
        "Server Reference",
        Kind::Utf8,
        &[C::ConnAck, C::Disconnect],
    ),
    (
        0x1F,
        "Reason String",
        Kind::Utf8,
        &[
            C::ConnAck,
            C::PubAck,
            C::PubRec,
            C::PubRel,
            C::PubComp,
            C::SubAck,
            C::UnsubAck,
            C::Disconnect,
            C::Auth,
        ],
    ),
    (
        0x21,
        "Receive Maximum",
        Kind::Two,
        &[C::Connect, C::ConnAck],
    ),
    (
        0x22,
        "Topic Alias Maximum",
        Kind::Two,
        &[C::Connect, C::ConnAck],
    ),
    (0x23, "Topic Alias", Kind::Two, &[C::Publish]),
    (0x24, "Maximum QoS", Kind::Byte, &[C::ConnAck]),
    (0x25, "Retain Available", Kind::Byte, &[C::ConnAck]),
    (0x26, "User Property", Kind::Pair, &ALL_CTX),
    (
        0x27,
        "Maximum Packet Size",
        Kind::Four,
        &[C::Connect, C::ConnAck],
    ),
    (
        0x28,
        "Wildcard Subscription Available",
        Kind::Byte,
        &[C::ConnAck],
    ),
    (
        0x29,
        "Subscription Identifier Available",
        Kind::Byte,
        &[C::ConnAck],
    ),
    (
        0x2A,
        "Shared Subscription Available",
        Kind::Byte,
        &[C::ConnAck],
    ),
];

/// The 27 identifiers of MQTT 5.0, as listed in the specification.
const ALL_IDS: [u8; 27] = [
    0x01, 0x02, 0x03, 0x08, 0x09, 0x0B, 0x11, 0x12, 0x13, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1A, 0x1C,
    0x1F, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27, 0x28, 0x29, 0x2A,
];

fn row(ctx: Ctx) -> BTreeSet<u8> {
    TABLE
        .iter()
        .filter(|(_, _, _, ctxs)| ctxs.contains(&ctx))
        .map(|&(id, ..)| id)
        .collect()
}

fn kind(id: u8) -> Kind {
    TABLE
        .iter()
        .find(|(i, ..)| *i == id)
        .unwrap_or_else(|| panic!("property {id:#04x} is not in table 2-4"))
        .2
}

fn name(id: u8) -> &'static str {
    TABLE.iter().find(|(i, ..)| *i == id).map_or("?", |r| r.1)
}

/// Set property `id` in `p` to a non-default, valid value (two values for the repeatable ones where the
/// packet allows repeats). Panics for an identifier it does not know, so a new row needs a setter.
fn set(p: &mut Properties, id: u8, ctx: Ctx) {
    use property_id as pid;
    match id {
        pid::PAYLOAD_FORMAT_INDICATOR => p.payload_format_indicator = Some(1),
        pid::MESSAGE_EXPIRY_INTERVAL => p.message_expiry_interval = Some(0x0102_0304),
        pid::CONTENT_TYPE => p.content_type = Some("text/plain; é".into()),
        pid::RESPONSE_TOPIC => p.response_topic = Some(TopicName::new("reply/to").unwrap()),
        pid::CORRELATION_DATA => p.correlation_data = Some(Bytes::from_static(b"\x00corr\xff")),
        pid::SUBSCRIPTION_IDENTIFIER => {
            // SUBSCRIBE carries one; a PUBLISH to a client one per matching subscription.
            p.subscription_identifiers = if ctx == Ctx::Subscribe {
                vec![268_435_455] // largest, a four-byte variable byte integer
            } else {
                vec![1, 128, 268_435_455]
            };
        }
        pid::SESSION_EXPIRY_INTERVAL => p.session_expiry_interval = Some(u32::MAX),
        pid::ASSIGNED_CLIENT_IDENTIFIER => p.assigned_client_identifier = Some("auto-1".into()),
        pid::SERVER_KEEP_ALIVE => p.server_keep_alive = Some(45),
        pid::AUTHENTICATION_METHOD => p.authentication_method = Some("SCRAM-SHA-1".into()),
        pid::AUTHENTICATION_DATA => p.authentication_data = Some(Bytes::from_static(b"\x01\x02")),
        pid::REQUEST_PROBLEM_INFORMATION => p.request_problem_information = Some(0),
        pid::WILL_DELAY_INTERVAL => p.will_delay_interval = Some(30),
        pid::REQUEST_RESPONSE_INFORMATION => p.request_response_information = Some(1),
        pid::RESPONSE_INFORMATION => p.response_information = Some("resp/base".into()),
        pid::SERVER_REFERENCE => p.server_reference = Some("other.example:1883".into()),
        pid::REASON_STRING => p.reason_string = Some("because".into()),
        pid::RECEIVE_MAXIMUM => p.receive_maximum = Some(10),
        pid::TOPIC_ALIAS_MAXIMUM => p.topic_alias_maximum = Some(5),
        pid::TOPIC_ALIAS => p.topic_alias = Some(3),
        pid::MAXIMUM_QOS => p.maximum_qos = Some(QoS::AtLeastOnce),
        pid::RETAIN_AVAILABLE => p.retain_available = Some(false),
        pid::USER_PROPERTY => {
            // Names may repeat; order is kept (section 3.1.2.11.8).
            p.user_properties = vec![
                ("k".into(), "v1".into()),
                ("k".into(), "v2".into()),
                ("".into(), "".into()),
            ];
        }
        pid::MAXIMUM_PACKET_SIZE => p.maximum_packet_size = Some(65_536),
        pid::WILDCARD_SUBSCRIPTION_AVAILABLE => p.wildcard_subscription_available = Some(true),
        pid::SUBSCRIPTION_IDENTIFIER_AVAILABLE => {
            p.subscription_identifier_available = Some(false);
        }
        pid::SHARED_SUBSCRIPTION_AVAILABLE => p.shared_subscription_available = Some(true),
        other => panic!("no setter for property {other:#04x}; add one"),
    }
}

fn props_with(ids: &BTreeSet<u8>, ctx: Ctx) -> Properties {
    let mut p = Properties::default();
    for &id in ids {
        set(&mut p, id, ctx);
    }
    p
}

fn full(ctx: Ctx) -> Properties {
    props_with(&row(ctx), ctx)
}

fn pkid(n: u16) -> PacketId {
    PacketId::new(n).unwrap()
}

/// A valid 5.0 packet whose property block for `ctx` is `props` (and whose other blocks are empty, except
/// CONNECT's own properties when `ctx` is the will: `connect_props`).
fn packet_with(ctx: Ctx, props: Properties, connect_props: Properties) -> Packet {
    let ack = |properties| Ack {
        packet_id: pkid(7),
        reason: ReasonCode::Success,
        properties,
    };
    match ctx {
        Ctx::Connect | Ctx::Will => {
            let (own, will_props) = if ctx == Ctx::Connect {
                (props, Properties::default())
            } else {
                (connect_props, props)
            };
            Packet::from(Connect {
                protocol: V5,
                clean_start: true,
                keep_alive: 30,
                client_id: "cid".into(),
                will: Some(Will {
                    topic: TopicName::new("will/t").unwrap(),
                    payload: Bytes::from_static(b"bye"),
                    qos: QoS::AtLeastOnce,
                    retain: true,
                    properties: will_props,
                }),
                username: Some("user".into()),
                password: Some(Bytes::from_static(b"pw")),
                properties: own,
            })
        }
        Ctx::ConnAck => Packet::ConnAck(ConnAck {
            session_present: true,
            reason: ReasonCode::Success,
            properties: props,
        }),
        Ctx::Publish => Packet::Publish(Publish {
            dup: false,
            qos: QoS::ExactlyOnce,
            retain: false,
            topic: TopicName::new("a/b").unwrap(),
            packet_id: Some(pkid(9)),
            properties: props,
            payload: Bytes::from_static(b"payload"),
        }),
        Ctx::PubAck => Packet::PubAck(ack(props)),
        Ctx::PubRec => Packet::PubRec(ack(props)),
        Ctx::PubRel => Packet::PubRel(ack(props)),
        Ctx::PubComp => Packet::PubComp(ack(props)),
        Ctx::Subscribe => Packet::Subscribe(Subscribe {
            packet_id: pkid(3),
            properties: props,
            filters: vec![(
                TopicFilter::new("a/+").unwrap(),
                SubscriptionOptions {
                    qos: QoS::AtLeastOnce,
                    ..SubscriptionOptions::default()
                },
            )],
        }),
        Ctx::SubAck => Packet::SubAck(SubAck {
            packet_id: pkid(3),
            properties: props,
            reasons: vec![ReasonCode::GrantedQoS1],
        }),
        Ctx::Unsubscribe => Packet::Unsubscribe(Unsubscribe {
            packet_id: pkid(4),
            properties: props,
            filters: vec![TopicFilter::new("a/+").unwrap()],
        }),
        Ctx::UnsubAck => Packet::UnsubAck(UnsubAck {
            packet_id: pkid(4),
            properties: props,
            reasons: vec![ReasonCode::Success],
        }),
        Ctx::Disconnect => Packet::Disconnect(Disconnect {
            reason: ReasonCode::Success,
            properties: props,
        }),
        Ctx::Auth => Packet::Auth(Auth {
            reason: ReasonCode::ContinueAuthentication,
            properties: props,
        }),
    }
}

// ---------------------------------------------------------------------------------------------------
// A scanner for the property blocks of an encoded 5.0 packet, independent of the codec's decoder.
// ---------------------------------------------------------------------------------------------------

/// One property block of an encoded packet: its context, the offset of its length (a variable byte
/// integer) within the packet, and the range of its properties.
#[derive(Debug)]
struct Block {
    ctx: Ctx,
    len_at: usize,
    start: usize,
    end: usize,
}

fn vbi(buf: &[u8], at: &mut usize) -> usize {
    let (mut value, mut shift) = (0usize, 0);
    loop {
        let b = buf[*at];
        *at += 1;
        value |= usize::from(b & 0x7F) << shift;
        if b & 0x80 == 0 {
            return value;
        }
        shift += 7;
        assert!(shift < 28, "variable byte integer longer than four bytes");
    }
}

fn put_vbi(mut n: usize, out: &mut Vec<u8>) {
    loop {
        let byte = (n & 0x7F) as u8;
        n >>= 7;
        out.push(if n > 0 { byte | 0x80 } else { byte });
        if n == 0 {
            return;
        }
    }
}

fn two(buf: &[u8], at: &mut usize) -> usize {
    let v = usize::from(u16::from_be_bytes([buf[*at], buf[*at + 1]]));
    *at += 2;
    v
}

fn skip_prefixed(buf: &[u8], at: &mut usize) {
    let n = two(buf, at);
    *at += n;
}

fn block(buf: &[u8], ctx: Ctx, at: &mut usize) -> Block {
    let len_at = *at;
    let len = vbi(buf, at);
    let b = Block {
        ctx,
        len_at,
        start: *at,
        end: *at + len,
    };
    assert!(
        b.end <= buf.len(),
        "{ctx:?} property block overruns the packet"
    );
    *at = b.end;
    b
}

/// The property blocks of one encoded MQTT 5.0 packet.
fn blocks(buf: &[u8]) -> Vec<Block> {
    let first = buf[0];
    let mut at = 1;
    let remaining = vbi(buf, &mut at);
    assert_eq!(at + remaining, buf.len(), "remaining length");
    let body_len = remaining;
    let mut out = Vec::new();
    match first >> 4 {
        1 => {
            at += 2 + 4 + 1; // protocol name "MQTT", level
            let flags = buf[at];
            at += 1 + 2; // flags, keep alive
            out.push(block(buf, Ctx::Connect, &mut at));
            skip_prefixed(buf, &mut at); // client identifier
            if flags & 0x04 != 0 {
                out.push(block(buf, Ctx::Will, &mut at));
            }
        }
        2 => {
            at += 2;
            out.push(block(buf, Ctx::ConnAck, &mut at));
        }
        3 => {
            skip_prefixed(buf, &mut at); // topic name
            if first & 0x06 != 0 {
                at += 2; // packet identifier
            }
            out.push(block(buf, Ctx::Publish, &mut at));
        }
        // Reason code and properties may be omitted (section 3.4.2.1).
        t @ 4..=7 if body_len > 3 => {
            at += 3;
            let ctx = [Ctx::PubAck, Ctx::PubRec, Ctx::PubRel, Ctx::PubComp][usize::from(t - 4)];
            out.push(block(buf, ctx, &mut at));
        }
        t @ 8..=11 => {
            at += 2;
            let ctx =
                [Ctx::Subscribe, Ctx::SubAck, Ctx::Unsubscribe, Ctx::UnsubAck][usize::from(t - 8)];
            out.push(block(buf, ctx, &mut at));
        }
        t @ (14 | 15) if body_len > 1 => {
            at += 1;
            let ctx = if t == 14 { Ctx::Disconnect } else { Ctx::Auth };
            out.push(block(buf, ctx, &mut at));
        }
        _ => {}
    }
    out
}

/// The identifiers in a property block, in wire order (repeats included), each value skipped by the
/// type table 2-4 gives it.
fn ids_in(buf: &[u8], b: &Block) -> Vec<u8> {
    let mut ids = Vec::new();
    let mut at = b.start;
    while at < b.end {
        let id = u8::try_from(vbi(buf, &mut at)).expect("identifier fits a byte");
        match kind(id) {
            Kind::Byte => at += 1,
            Kind::Two => at += 2,
            Kind::Four => at += 4,
            Kind::Vbi => {
                vbi(buf, &mut at);
            }
            Kind::Utf8 | Kind::Binary => skip_prefixed(buf, &mut at),
            Kind::Pair => {
                skip_prefixed(buf, &mut at);
                skip_prefixed(buf, &mut at);
            }
        }
        ids.push(id);
    }
    assert_eq!(at, b.end, "{:?}: properties overrun their block", b.ctx);
    ids
}

fn encode5(p: &Packet) -> Vec<u8> {
    let mut out = BytesMut::new();
    encode(p, V5, &mut out).unwrap_or_else(|e| panic!("encode failed: {e:?} for {p:?}"));
    out.to_vec()
}

fn decode5(bytes: &[u8]) -> Result<Option<Packet>, DecodeError> {
    let mut buf = BytesMut::from(bytes);
    decode(&mut buf, V5, usize::MAX)
}

fn ids_of(p: &Packet, ctx: Ctx) -> Vec<u8> {
    let bytes = encode5(p);
    blocks(&bytes)
        .iter()
        .filter(|b| b.ctx == ctx)
        .flat_map(|b| ids_in(&bytes, b))
        .collect()
}

fn fmt_ids(ids: &BTreeSet<u8>) -> String {
    ids.iter()
        .map(|&id| format!("{id:#04x} {}", name(id)))
        .collect::<Vec<_>>()
        .join(", ")
}

// ---------------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------------

#[test]
fn table_lists_every_identifier_and_matches_property_id() {
    let in_table: Vec<u8> = TABLE.iter().map(|r| r.0).collect();
    assert_eq!(
        in_table,
        ALL_IDS.to_vec(),
        "table 2-4 rows, in identifier order"
    );
    use property_id as pid;
    let exported = [
        pid::PAYLOAD_FORMAT_INDICATOR,
        pid::MESSAGE_EXPIRY_INTERVAL,
        pid::CONTENT_TYPE,
        pid::RESPONSE_TOPIC,
        pid::CORRELATION_DATA,
        pid::SUBSCRIPTION_IDENTIFIER,
        pid::SESSION_EXPIRY_INTERVAL,
        pid::ASSIGNED_CLIENT_IDENTIFIER,
        pid::SERVER_KEEP_ALIVE,
        pid::AUTHENTICATION_METHOD,
        pid::AUTHENTICATION_DATA,
        pid::REQUEST_PROBLEM_INFORMATION,
        pid::WILL_DELAY_INTERVAL,
        pid::REQUEST_RESPONSE_INFORMATION,
        pid::RESPONSE_INFORMATION,
        pid::SERVER_REFERENCE,
        pid::REASON_STRING,
        pid::RECEIVE_MAXIMUM,
        pid::TOPIC_ALIAS_MAXIMUM,
        pid::TOPIC_ALIAS,
        pid::MAXIMUM_QOS,
        pid::RETAIN_AVAILABLE,
        pid::USER_PROPERTY,
        pid::MAXIMUM_PACKET_SIZE,
        pid::WILDCARD_SUBSCRIPTION_AVAILABLE,
        pid::SUBSCRIPTION_IDENTIFIER_AVAILABLE,
        pid::SHARED_SUBSCRIPTION_AVAILABLE,
    ];
    assert_eq!(exported.to_vec(), ALL_IDS.to_vec());
    // Each setter sets a field of its own: 27 different one-property values, none the default.
    let singles: Vec<Properties> = ALL_IDS
        .iter()
        .map(|&id| {
            let mut p = Properties::default();
            set(&mut p, id, Ctx::Publish);
            p
        })
        .collect();
    for (i, a) in singles.iter().enumerate() {
        assert!(!a.is_empty(), "setter for {:#04x} set nothing", ALL_IDS[i]);
        for (j, b) in singles.iter().enumerate().skip(i + 1) {
            let mut both = a.clone();
            set(&mut both, ALL_IDS[j], Ctx::Publish);
            assert!(
                both != *a && both != *b,
                "{:#04x} and {:#04x} share a field",
                ALL_IDS[i],
                ALL_IDS[j]
            );
        }
    }
}

#[test]
fn every_allowed_property_of_every_packet_round_trips_and_is_on_the_wire() {
    let mut exercised = BTreeSet::new();
    for ctx in ALL_CTX {
        let want = row(ctx);
        let p = packet_with(ctx, full(ctx), Properties::default());
        let wire: Vec<u8> = ids_of(&p, ctx);
        let got: BTreeSet<u8> = wire.iter().copied().collect();
        assert_eq!(
            got,
            want,
            "{ctx:?}: on the wire [{}], table 2-4 allows [{}]",
            fmt_ids(&got),
            fmt_ids(&want)
        );
        // Repeatable properties are all written: three user properties, and (PUBLISH) three ids.
        assert_eq!(wire.iter().filter(|&&id| id == 0x26).count(), 3, "{ctx:?}");
        if ctx == Ctx::Publish {
            assert_eq!(wire.iter().filter(|&&id| id == 0x0B).count(), 3);
        }
        let bytes = encode5(&p);
        assert_eq!(
            encoded_len(&p, V5).unwrap(),
            bytes.len(),
            "{ctx:?}: encoded_len"
        );
        let decoded = decode5(&bytes)
            .unwrap_or_else(|e| panic!("{ctx:?}: decode failed: {e:?}"))
            .expect("complete packet");
        assert_eq!(decoded, p, "{ctx:?}: decode(encode(p)) != p");
        exercised.extend(got);
    }
    // A CONNECT with every connect property and every will property at once, too.
    let both = packet_with(Ctx::Will, full(Ctx::Will), full(Ctx::Connect));
    let bytes = encode5(&both);
    assert_eq!(decode5(&bytes).unwrap(), Some(both));
    assert_eq!(exercised, ALL_IDS.into_iter().collect::<BTreeSet<u8>>());
}

#[test]
fn every_property_outside_its_packets_row_is_refused_by_encode_and_decode() {
    for ctx in ALL_CTX {
        let allowed = row(ctx);
        for id in ALL_IDS.into_iter().filter(|id| !allowed.contains(id)) {
            // Encode: refused with the identifier named.
            let mut props = Properties::default();
            set(&mut props, id, ctx);
            if id == property_id::AUTHENTICATION_DATA {
                // Data without a method is invalid anyway; give it one (0x15 and 0x16 share a row, so
                // the encoder may name either).
                props.authentication_method = Some("m".into());
            }
            let p = packet_with(ctx, props, Properties::default());
            let mut out = BytesMut::new();
            match encode(&p, V5, &mut out) {
                Err(EncodeError::InvalidProperty { id: bad, .. }) => assert!(
                    bad == id || (id == 0x16 && bad == 0x15),
                    "{ctx:?} with {id:#04x}: encode named {bad:#04x}"
                ),
                other => panic!("{ctx:?} with {id:#04x} {}: encode gave {other:?}", name(id)),
            }

            // Decode: splice the property into a valid packet's block for this context.
            let valid = encode5(&packet_with(
                ctx,
                Properties::default(),
                Properties::default(),
            ));
            let spliced = splice(&valid, ctx, &property_bytes(id));
            match decode5(&spliced) {
                Err(DecodeError::PropertyNotAllowed { id: bad, .. }) => {
                    assert_eq!(bad, id, "{ctx:?}: decode named {bad:#04x} for {id:#04x}");
                }
                other => panic!(
                    "{ctx:?} with {id:#04x} {}: decode gave {other:?} for {spliced:02x?}",
                    name(id)
                ),
            }
        }
    }
}

/// The wire form of property `id` with a small value valid for its type.
fn property_bytes(id: u8) -> Vec<u8> {
    let mut out = vec![id];
    match kind(id) {
        Kind::Byte => out.push(1),
        Kind::Two => out.extend([0, 1]),
        Kind::Four => out.extend([0, 0, 0, 1]),
        Kind::Vbi => out.push(1),
        Kind::Utf8 | Kind::Binary => out.extend([0, 1, b'x']),
        Kind::Pair => out.extend([0, 1, b'k', 0, 1, b'v']),
    }
    out
}

/// `packet` with `extra` appended to the property block of `ctx`; both lengths are rewritten. A packet
/// whose acknowledgement omitted reason and properties gets them back (reason 0, then the block).
fn splice(packet: &[u8], ctx: Ctx, extra: &[u8]) -> Vec<u8> {
    let mut at = 1;
    vbi(packet, &mut at);
    let header_end = at;
    let found = blocks(packet).into_iter().find(|b| b.ctx == ctx);
    let mut body = Vec::new();
    match found {
        Some(b) => {
            body.extend_from_slice(&packet[header_end..b.len_at]);
            put_vbi(b.end - b.start + extra.len(), &mut body);
            body.extend_from_slice(&packet[b.start..b.end]);
            body.extend_from_slice(extra);
            body.extend_from_slice(&packet[b.end..]);
        }
        None => {
            // Short-form acknowledgement / DISCONNECT / AUTH: add reason code 0x00 (or what the
            // packet had) and a property block.
            body.extend_from_slice(&packet[header_end..]);
            let full_prefix = match ctx {
                Ctx::PubAck | Ctx::PubRec | Ctx::PubRel | Ctx::PubComp => 3,
                Ctx::Disconnect | Ctx::Auth => 1,
                other => panic!("{other:?} always has a property block"),
            };
            if body.len() < full_prefix {
                body.push(0x00);
            }
            put_vbi(extra.len(), &mut body);
            body.extend_from_slice(extra);
        }
    }
    let mut out = vec![packet[0]];
    put_vbi(body.len(), &mut out);
    out.extend(body);
    out
}

// ---------------------------------------------------------------------------------------------------
// The proptest strategies cover every identifier of each row (so roundtrip.rs exercises them all).
// ---------------------------------------------------------------------------------------------------

const SAMPLES: usize = 1024;

/// Identifiers present on the wire, per context, over `SAMPLES` packets of `strategy`.
fn sampled_ids(strategy: impl Strategy<Value = Packet>) -> Vec<(Ctx, BTreeSet<u8>)> {
    let mut runner = TestRunner::deterministic();
    let mut seen: Vec<(Ctx, BTreeSet<u8>)> = Vec::new();
    for _ in 0..SAMPLES {
        let p = strategy.new_tree(&mut runner).unwrap().current();
        let bytes = encode5(&p);
        for b in blocks(&bytes) {
            let ids = ids_in(&bytes, &b);
            match seen.iter_mut().find(|(c, _)| *c == b.ctx) {
                Some((_, set)) => set.extend(ids),
                None => seen.push((b.ctx, ids.into_iter().collect())),
            }
        }
    }
    seen
}

#[test]
fn strategies_generate_every_allowed_property_of_every_packet() {
    use strategies as s;
    let sampled = [
        sampled_ids(s::connect(V5)),
        sampled_ids(s::connack(V5)),
        sampled_ids(s::publish(V5).prop_map(Packet::Publish)),
        sampled_ids(s::ack(V5, PacketType::PubAck).prop_map(Packet::PubAck)),
        sampled_ids(s::ack(V5, PacketType::PubRec).prop_map(Packet::PubRec)),
        sampled_ids(s::ack(V5, PacketType::PubRel).prop_map(Packet::PubRel)),
        sampled_ids(s::ack(V5, PacketType::PubComp).prop_map(Packet::PubComp)),
        sampled_ids(s::subscribe(V5)),
        sampled_ids(s::suback(V5)),
        sampled_ids(s::unsubscribe(V5)),
        sampled_ids(s::unsuback(V5)),
        sampled_ids(s::disconnect(V5)),
        sampled_ids(s::auth()),
    ]
    .concat();
    let mut union = BTreeSet::new();
    for ctx in ALL_CTX {
        let got = sampled
            .iter()
            .find(|(c, _)| *c == ctx)
            .map(|(_, ids)| ids.clone())
            .unwrap_or_default();
        let want = row(ctx);
        assert_eq!(
            got,
            want,
            "{ctx:?}: strategies generated [{}]; table 2-4 allows [{}]",
            fmt_ids(&got),
            fmt_ids(&want)
        );
        union.extend(got);
    }
    assert_eq!(union, ALL_IDS.into_iter().collect::<BTreeSet<u8>>());

    // The union strategy `packet(V5)` that roundtrip.rs samples reaches every packet type's block.
    let all = sampled_ids(s::packet(V5));
    let ctxs: BTreeSet<Ctx> = all.iter().map(|(c, _)| *c).collect();
    assert_eq!(ctxs, ALL_CTX.into_iter().collect::<BTreeSet<Ctx>>());
}

#[test]
fn strategies_reach_every_length_of_a_subscription_identifier() {
    // A variable byte integer of 1, 2, 3 and 4 bytes (section 1.5.5), at both ends of each length.
    let mut runner = TestRunner::deterministic();
    let mut lengths = BTreeSet::new();
    let strategy = strategies::publish(V5);
    for _ in 0..SAMPLES {
        let p = strategy.new_tree(&mut runner).unwrap().current();
        for &id in &p.properties.subscription_identifiers {
            lengths.insert(match id {
                0..=127 => 1,
                128..=16_383 => 2,
                16_384..=2_097_151 => 3,
                _ => 4,
            });
        }
    }
    assert_eq!(lengths, BTreeSet::from([1, 2, 3, 4]));
}
