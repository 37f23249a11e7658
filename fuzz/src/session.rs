//! The session target: one `fulmar_core::Session` driven by an arbitrary sequence of operations,
//! the way `fulmar-server`'s connection task drives it, with a fake clock.
//!
//! # Input
//! The first bytes choose the protocol version (and, top bit, whether the session is persistent:
//! it then logs `Persist` records), keep-alive, [`SessionLimits`] and (MQTT 5) the client's
//! capabilities. Then each operation is one byte followed by its arguments; a missing
//! byte reads as 0, so every input is valid:
//!
//! | op % 12 | operation |
//! |---|---|
//! | 0 | raw bytes (length byte + bytes) split into packets by `fulmar_proto::decode` for the session's version, each fed to `handle` |
//! | 1 | PUBACK / PUBREC / PUBREL / PUBCOMP for an id in flight (or any id), with a reason code |
//! | 2 | a client PUBLISH (topic, QoS, small packet id space, alias, retain, payload, properties), encoded and decoded first |
//! | 3 | `deliver` one message from the pool (seed messages and whatever the client published) |
//! | 4 | `poll_transmit` up to 8 packets |
//! | 5 | advance the clock by an input-chosen step (ms to hours); a step of seconds or more then `release_idle_memory`, as a connection going dormant does |
//! | 6 | `check_keep_alive` against a model |
//! | 7 | `attach` (reconnect: new version, keep-alive, limits, capabilities) and check the redelivery |
//! | 8 | release a held acknowledgement (`acknowledge`), as the publisher hold does |
//! | 9 | SUBSCRIBE, UNSUBSCRIBE or PINGREQ |
//! | 10 | `take_unacknowledged` (rarely) |
//! | 11 | `deliver` QoS 1/2 until the window is full |
//!
//! # Invariants checked
//! - nothing panics (the core's `debug_assert!`s are on: the fuzz profiles enable them);
//! - the inflight count never exceeds `min(max_inflight, Receive Maximum)` when it grows, and
//!   `outbound_window()` is exactly what is left of it;
//! - packet ids in flight are pairwise distinct, and a new delivery never reuses one;
//! - every packet the session transmits (`poll_transmit`, `deliver`) encodes with
//!   `fulmar_proto::encode` for the connection's version, decodes back to itself, and fits
//!   the client's Maximum Packet Size (unless it is an acknowledgement with nothing optional
//!   left to drop);
//! - an error from `handle` maps to a reason code a DISCONNECT can carry;
//! - for a persistent session, a model of the durable store rebuilt from the `Persist` records
//!   alone (Sent, Released, Completed) holds exactly the stored exchanges in flight, with their
//!   states and sequences; InboundReleased makes the harness send the held-back PUBCOMP;
//! - events carry resolved topics within the limits; PUBACK/PUBCOMP/PUBREC move exactly the
//!   exchange they name; `attach` redelivers every open, unexpired exchange in order (PUBLISH
//!   with DUP, or PUBREL), discarding as completed only a PUBLISH too large for the client's new
//!   Maximum Packet Size; keep-alive times out exactly at 1.5 x keep-alive after the last packet.

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use fulmar_core::session::{build_publish, InflightEntry, OutboundState};
use fulmar_core::{
    ClientCapabilities, Delivery, Event, Message, Outbound, Persist, Session, SessionLimits,
    StoredRef,
};
use fulmar_proto::{
    decode, encode, encoded_len, Ack, Disconnect, Packet, PacketId, PacketType, Properties, ProtocolVersion,
    Publish, QoS, ReasonCode, RetainHandling, SubAck, Subscribe, SubscriptionOptions, TopicFilter,
    TopicName, UnsubAck, Unsubscribe,
};

/// Operations per input, so a long input cannot make one execution slow.
const MAX_OPS: usize = 2048;
/// Messages kept for `deliver`.
const POOL: usize = 24;

/// Reads the fuzz input; past its end every read is 0.
struct Input<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Input<'a> {
    fn u8(&mut self) -> u8 {
        let byte = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        byte
    }

    fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }

    fn bool(&mut self) -> bool {
        self.u8() & 1 == 1
    }

    fn bytes(&mut self, n: usize) -> &'a [u8] {
        let start = self.pos.min(self.data.len());
        let end = (start + n).min(self.data.len());
        self.pos += n;
        &self.data[start..end]
    }

    fn is_done(&self) -> bool {
        self.pos >= self.data.len()
    }

    fn pick<T: Copy>(&mut self, options: &[T]) -> T {
        options[usize::from(self.u8()) % options.len()]
    }
}

const VERSIONS: [ProtocolVersion; 3] = [
    ProtocolVersion::V3_1,
    ProtocolVersion::V3_1_1,
    ProtocolVersion::V5,
];
const QOS: [QoS; 3] = [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce];
/// Reasons the server passes to `acknowledge` (routing outcomes) plus a few the client may use.
const REASONS: [ReasonCode; 8] = [
    ReasonCode::Success,
    ReasonCode::NoMatchingSubscribers,
    ReasonCode::NotAuthorized,
    ReasonCode::QuotaExceeded,
    ReasonCode::UnspecifiedError,
    ReasonCode::ImplementationSpecificError,
    ReasonCode::PacketIdentifierNotFound,
    ReasonCode::TopicNameInvalid,
];
const TOPICS: [&str; 7] = [
    "a",
    "a/b",
    "sensors/room1/temperature",
    "x/y/z/w/v",
    "$SYS/broker/load",
    "",
    "long",
];
const FILTERS: [&str; 6] = ["#", "a/+", "sensors/#", "$share/g/a", "+/+/+", "x/y/z/w/v"];

fn keep_alive(input: &mut Input) -> u16 {
    input.pick(&[0, 0, 1, 2, 10, 60, 600, u16::MAX])
}

fn limits(input: &mut Input) -> SessionLimits {
    SessionLimits {
        max_inflight: input.pick(&[1, 2, 3, 4, 8, 16, 100, u16::MAX]),
        max_inbound_qos2: input.pick(&[1, 2, 3, 1024]),
        topic_alias_maximum: input.pick(&[0, 1, 2, 3]),
        max_qos: input.pick(&QOS),
        retain_available: !input.bool(),
        validate_utf8_payload: input.bool(),
        outbound_topic_aliases: input.bool(),
        max_topic_len: input.pick(&[65_535, 8]),
        max_topic_levels: input.pick(&[128, 3]),
        publish_rate_messages: input.pick(&[0, 0, 5]),
        publish_rate_bytes: input.pick(&[0, 0, 100]),
        // The session only carries it (for the server's publisher hold).
        ..SessionLimits::default()
    }
}

fn capabilities(input: &mut Input) -> ClientCapabilities {
    ClientCapabilities {
        receive_maximum: input.pick(&[1, 2, 5, 100, u16::MAX]),
        topic_alias_maximum: input.pick(&[0, 1, 2, 10]),
        maximum_packet_size: match input.u8() % 4 {
            0 | 1 => None,
            2 => NonZeroU32::new(u32::from(input.u8()) + 2),
            _ => NonZeroU32::new(u32::from(input.u16()) + 2),
        },
        problem_information: !input.bool(),
    }
}

fn topic(input: &mut Input) -> String {
    match input.pick(&TOPICS) {
        "long" => "l/".repeat(usize::from(input.u8()) + 1) + "end",
        other => other.to_string(),
    }
}

fn seed_pool(t0: Instant) -> Vec<Arc<Message>> {
    let message = |topic: &str, payload: usize, qos, expires: Option<u64>, v5: bool| {
        let mut properties = Properties::default();
        if v5 {
            properties.user_properties = vec![("k".into(), "v".into())];
            properties.content_type = Some("text/plain".into());
            properties.payload_format_indicator = Some(1);
            properties.correlation_data = Some(Bytes::from_static(b"cd"));
            properties.response_topic = TopicName::new("reply/here").ok();
        }
        properties.message_expiry_interval = expires.map(|s| s as u32);
        Arc::new(Message {
            topic: TopicName::new(topic).expect("seed topic"),
            payload: Bytes::from(vec![b'p'; payload]),
            qos,
            retain: false,
            properties,
            origin: None,
            expires_at: expires.map(|s| t0 + Duration::from_secs(s)),
        })
    };
    vec![
        message("a", 1, QoS::AtLeastOnce, None, false),
        message("sensors/room1/temperature", 100, QoS::ExactlyOnce, None, true),
        message("b/c", 10, QoS::AtLeastOnce, Some(2), true),
        message(&"t/".repeat(150), 1000, QoS::ExactlyOnce, Some(3600), false),
        message("q0", 0, QoS::AtMostOnce, None, false),
    ]
}

struct Harness {
    now: Instant,
    session: Session,
    version: ProtocolVersion,
    limits: SessionLimits,
    client: ClientCapabilities,
    /// Model of the keep-alive: seconds and the time of the last packet handled.
    keep_alive: u16,
    last_received: Instant,
    /// False after the connection ended (error, DISCONNECT, AUTH); only `attach` goes on.
    connected: bool,
    pool: Vec<Arc<Message>>,
    /// QoS 1/2 acknowledgements held back (publisher hold), released by op 8.
    held: Vec<(QoS, Option<PacketId>)>,
    /// A persistent session (`set_recording`): the durable store rebuilt from the `Persist`
    /// records alone, by packet id: (state, stored sequence).
    store: Option<BTreeMap<u16, (OutboundState, u64)>>,
    next_seq: u64,
}

/// Runs the session target on one input.
pub fn session(data: &[u8]) {
    let mut input = Input { data, pos: 0 };
    let t0 = Instant::now();
    let first = input.u8();
    let version = VERSIONS[usize::from(first) % VERSIONS.len()];
    // The top bit makes the session persistent: it logs `Persist` records, checked against a
    // model of the store. (Added later: an input with the bit clear means what it always did.)
    let recording = first & 0x80 != 0;
    let keep_alive = keep_alive(&mut input);
    let limits = limits(&mut input);
    let mut session = Session::new(version, keep_alive, Arc::new(limits), t0);
    let client = if version.is_v5() {
        capabilities(&mut input)
    } else {
        ClientCapabilities::default()
    };
    session.set_client_capabilities(client);
    session.set_recording(recording);
    let mut h = Harness {
        now: t0,
        session,
        version,
        limits,
        client,
        keep_alive,
        last_received: t0,
        connected: true,
        pool: seed_pool(t0),
        held: Vec::new(),
        store: recording.then(BTreeMap::new),
        next_seq: 0,
    };
    for _ in 0..MAX_OPS {
        if input.is_done() {
            break;
        }
        h.step(&mut input);
        h.apply_persist();
        h.check_invariants();
    }
}

impl Harness {
    fn step(&mut self, input: &mut Input) {
        match input.u8() % 12 {
            0 => {
                let n = usize::from(input.u8());
                let mut buf = BytesMut::from(input.bytes(n));
                let max = input.pick(&[1 << 20, 64]);
                loop {
                    match decode(&mut buf, self.version, max) {
                        Ok(Some(packet)) => self.feed(packet, input),
                        Ok(None) => break,
                        Err(e) => {
                            // The server closes the connection, with this reason for MQTT 5.
                            self.disconnect_with(fulmar_core::ProtocolError::from(e).reason_code());
                            break;
                        }
                    }
                }
            }
            1 => self.ack_inflight(input),
            2 => self.client_publish(input),
            3 => {
                let qos = input.pick(&QOS);
                self.deliver_one(qos, input);
            }
            4 => {
                for _ in 0..=(input.u8() % 8) {
                    let Some(packet) = self.session.poll_transmit() else {
                        break;
                    };
                    self.check_outgoing(&packet);
                }
            }
            5 => {
                let step = match input.u8() % 4 {
                    0 => Duration::from_millis(u64::from(input.u8())),
                    1 => Duration::from_millis(u64::from(input.u16())),
                    2 => Duration::from_secs(u64::from(input.u8())),
                    _ => Duration::from_secs(u64::from(input.u16())),
                };
                self.now += step;
                // Quiet that long, the server's connection goes dormant (added later: it reads
                // no input byte, so older inputs still parse as they did).
                if step >= Duration::from_secs(1) {
                    self.session.release_idle_memory();
                }
            }
            6 => {
                let deadline = (self.keep_alive > 0).then(|| {
                    self.last_received + Duration::from_millis(u64::from(self.keep_alive) * 1500)
                });
                assert_eq!(self.session.keep_alive_deadline(), deadline);
                let timed_out = deadline.is_some_and(|d| self.now >= d);
                let result = self.session.check_keep_alive(self.now);
                assert_eq!(result.is_err(), timed_out, "keep-alive at {:?}", self.now);
                if timed_out {
                    self.disconnect_with(result.unwrap_err().reason_code());
                }
            }
            7 => self.attach(input),
            8 => {
                if !self.held.is_empty() {
                    let (qos, packet_id) = self.held.remove(usize::from(input.u8()) % self.held.len());
                    let reason = input.pick(&REASONS[..4]);
                    self.session.acknowledge(qos, packet_id, reason);
                }
            }
            9 => self.client_control(input),
            10 => {
                if input.u8() < 8 {
                    let open = self.session.inflight().filter(|e| e.delivery.is_some()).count();
                    let taken = self.session.take_unacknowledged();
                    assert_eq!(taken.len(), open);
                    assert_eq!(self.session.inflight_len(), 0);
                    // The session ends here (its messages go to other members); so does its record.
                    self.session.set_recording(false);
                    self.store = None;
                }
            }
            _ => {
                let qos = input.pick(&QOS[1..]);
                for _ in 0..64 {
                    if self.session.outbound_window() == 0 {
                        break;
                    }
                    self.deliver_one(qos, input);
                }
            }
        }
    }

    fn window_limit(&self) -> usize {
        usize::from(self.limits.max_inflight.min(self.client.receive_maximum))
    }

    fn entries(&self) -> Vec<InflightEntry> {
        self.session.inflight().cloned().collect()
    }

    /// Applies the session's `Persist` records to the store model, as the server commits them;
    /// the model must then hold exactly the stored exchanges in flight.
    fn apply_persist(&mut self) {
        let records = self.session.take_persist();
        let Some(store) = &mut self.store else {
            assert!(records.is_empty(), "records from a session that does not record");
            return;
        };
        for record in records {
            match record {
                Persist::Sent {
                    packet_id,
                    state,
                    delivery,
                } => {
                    let seq = delivery.stored.expect("only stored deliveries are logged").seq;
                    let old = store.insert(packet_id.get(), (state, seq));
                    assert!(old.is_none(), "Sent for {packet_id} already stored: {old:?}");
                }
                Persist::Released { packet_id, seq } => {
                    let entry = store.get_mut(&packet_id.get()).expect("Released: not stored");
                    assert_eq!(*entry, (OutboundState::AwaitingPubRec, seq));
                    entry.0 = OutboundState::AwaitingPubComp;
                }
                Persist::Completed { packet_id } => {
                    let removed = store.remove(&packet_id.get());
                    assert!(removed.is_some(), "Completed for {packet_id}, which is not stored");
                }
                Persist::InboundReleased { packet_id } => {
                    // Committed: the server now sends the PUBCOMP the session held back.
                    self.session.queue_transmit(Packet::PubComp(Ack {
                        packet_id,
                        reason: ReasonCode::Success,
                        properties: Properties::default(),
                    }));
                }
            }
        }
        let stored: BTreeMap<u16, (OutboundState, u64)> = self
            .session
            .inflight()
            .filter_map(|e| Some((e.packet_id.get(), (e.state, e.stored_seq?))))
            .collect();
        assert_eq!(store, &stored, "the store rebuilt from Persist records differs");
    }

    fn check_invariants(&self) {
        let entries = self.entries();
        assert_eq!(entries.len(), self.session.inflight_len());
        let mut ids: Vec<u16> = entries.iter().map(|e| e.packet_id.get()).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), entries.len(), "packet ids in flight are distinct");
        assert!(entries.len() <= usize::from(u16::MAX));
        assert_eq!(
            self.session.outbound_window(),
            self.window_limit().saturating_sub(entries.len())
        );
        for entry in &entries {
            let resendable = entry.state != OutboundState::AwaitingPubComp;
            assert_eq!(entry.delivery.is_some(), resendable, "{entry:?}");
            if let Some(delivery) = &entry.delivery {
                assert_ne!(delivery.qos, QoS::AtMostOnce);
                let qos2 = entry.state == OutboundState::AwaitingPubRec;
                assert_eq!(delivery.qos == QoS::ExactlyOnce, qos2);
            }
        }
    }

    /// A packet on its way to the client: encodes for the connection's version, decodes back
    /// to itself and fits the client's Maximum Packet Size.
    fn check_outgoing(&self, packet: &Packet) {
        let mut out = BytesMut::new();
        if let Err(e) = encode(packet, self.version, &mut out) {
            panic!("transmitted packet does not encode ({e}): {packet:?}");
        }
        // A reply with no optional content (Reason String, User Properties) cannot shrink: a
        // SUBACK for three filters is 8 bytes whatever the client's maximum says.
        let reducible = match packet {
            Packet::Publish(_) => true,
            Packet::PubAck(a) | Packet::PubRec(a) | Packet::PubRel(a) | Packet::PubComp(a) => {
                !a.properties.is_empty()
            }
            Packet::SubAck(s) => !s.properties.is_empty(),
            Packet::UnsubAck(u) => !u.properties.is_empty(),
            _ => true,
        };
        if let Some(max) = self.client.maximum_packet_size.filter(|_| reducible) {
            assert!(
                out.len() <= max.get() as usize,
                "{} bytes exceed the client's Maximum Packet Size {max}: {packet:?}",
                out.len()
            );
        }
        let mut copy = out.clone();
        let decoded = decode(&mut copy, self.version, usize::MAX)
            .expect("transmitted packet decodes")
            .expect("transmitted packet is whole");
        assert!(copy.is_empty());
        if self.version.is_v5() {
            assert_eq!(&decoded, packet);
        } else {
            // 3.x drops reason codes and properties; the re-encoding must be identical.
            let mut again = BytesMut::new();
            encode(&decoded, self.version, &mut again).expect("re-encodes");
            assert_eq!(again, out);
        }
        if let Packet::Publish(publish) = packet {
            assert_eq!(publish.packet_id.is_some(), publish.qos != QoS::AtMostOnce);
            if publish.topic.is_empty() {
                let alias = publish.properties.topic_alias.expect("empty topic has an alias");
                assert!(alias >= 1 && alias <= self.client.topic_alias_maximum);
            }
        }
    }

    fn disconnect_with(&mut self, reason: ReasonCode) {
        assert!(reason.is_error(), "{reason:?}");
        if self.version.is_v5() {
            let disconnect = Packet::Disconnect(Disconnect {
                reason,
                properties: Properties::default(),
            });
            encode(&disconnect, self.version, &mut BytesMut::new())
                .expect("the DISCONNECT for a violation encodes");
        }
        self.connected = false;
        self.held.clear();
    }

    /// `handle`, then what the server does with the event.
    fn feed(&mut self, packet: Packet, input: &mut Input) {
        if !self.connected {
            return;
        }
        let result = self.session.handle(packet, self.now);
        self.last_received = self.now;
        match result {
            Err(e) => self.disconnect_with(e.reason_code()),
            Ok(None) => {}
            Ok(Some(Event::Publish(publish))) => {
                assert!(!publish.topic.is_empty(), "alias resolved");
                assert_eq!(publish.properties.topic_alias, None);
                assert!(publish.topic.as_str().len() <= usize::from(self.limits.max_topic_len));
                assert!(publish.topic.as_str().split('/').count() <= usize::from(self.limits.max_topic_levels));
                assert!(publish.qos <= self.limits.max_qos);
                assert!(!publish.retain || self.limits.retain_available);
                assert_eq!(publish.packet_id.is_some(), publish.qos != QoS::AtMostOnce);
                let (qos, packet_id) = (publish.qos, publish.packet_id);
                if qos != QoS::AtMostOnce {
                    if input.bool() {
                        self.held.push((qos, packet_id));
                    } else {
                        let reason = input.pick(&REASONS[..4]);
                        self.session.acknowledge_publish(&publish, reason);
                    }
                }
                let message = Arc::new(Message::from_publish(publish, None, self.now));
                if self.pool.len() < POOL {
                    self.pool.push(message);
                } else {
                    let at = usize::from(input.u8()) % POOL;
                    self.pool[at] = message;
                }
            }
            Ok(Some(Event::Subscribe(subscribe))) => {
                let mut reasons = Vec::new();
                for (filter, options) in &subscribe.filters {
                    let granted = options.qos.min(self.limits.max_qos);
                    let granted_options = SubscriptionOptions {
                        qos: granted,
                        ..*options
                    };
                    self.session.add_subscription(filter.clone(), granted_options);
                    reasons.push(if input.u8() < 16 {
                        ReasonCode::NotAuthorized
                    } else {
                        ReasonCode::granted(granted)
                    });
                }
                self.session.queue_transmit(Packet::SubAck(SubAck {
                    packet_id: subscribe.packet_id,
                    properties: Properties::default(),
                    reasons,
                }));
            }
            Ok(Some(Event::Unsubscribe(unsubscribe))) => {
                let reasons = unsubscribe
                    .filters
                    .iter()
                    .map(|f| {
                        if self.session.remove_subscription(f) {
                            ReasonCode::Success
                        } else {
                            ReasonCode::NoSubscriptionExisted
                        }
                    })
                    .collect();
                self.session.queue_transmit(Packet::UnsubAck(UnsubAck {
                    packet_id: unsubscribe.packet_id,
                    properties: Properties::default(),
                    reasons,
                }));
            }
            Ok(Some(Event::Disconnect(_))) => {
                self.connected = false;
                self.held.clear();
            }
            // No authentication method is offered: the server treats AUTH as a violation.
            Ok(Some(Event::Auth(_))) => self.disconnect_with(ReasonCode::ProtocolError),
        }
    }

    /// Encodes `packet` as the client would and decodes it as the server does, so the session
    /// only ever sees what the decoder lets through; feeds it if it decodes.
    fn feed_via_codec(&mut self, packet: Packet, input: &mut Input) {
        let mut buf = BytesMut::new();
        if encode(&packet, self.version, &mut buf).is_err() {
            return;
        }
        if let Ok(Some(decoded)) = decode(&mut buf, self.version, 1 << 20) {
            self.feed(decoded, input);
        }
    }

    fn ack_inflight(&mut self, input: &mut Input) {
        let before = self.entries();
        let packet_id = if before.is_empty() || input.u8() < 24 {
            PacketId::new(input.u16()).unwrap_or(PacketId::new(1).expect("1 is a packet id"))
        } else {
            before[usize::from(input.u8()) % before.len()].packet_id
        };
        let kind = input.pick(&[
            PacketType::PubAck,
            PacketType::PubRec,
            PacketType::PubRel,
            PacketType::PubComp,
        ]);
        let mut reason = input.pick(&REASONS);
        if !self.version.is_v5() || !reason.allowed_in(kind) {
            reason = ReasonCode::Success;
        }
        let ack = Ack {
            packet_id,
            reason,
            properties: Properties::default(),
        };
        let packet = match kind {
            PacketType::PubAck => Packet::PubAck(ack),
            PacketType::PubRec => Packet::PubRec(ack),
            PacketType::PubRel => Packet::PubRel(ack),
            _ => Packet::PubComp(ack),
        };
        let connected = self.connected;
        self.feed(packet, input);
        if !connected {
            return;
        }
        let after = self.entries();
        let position = |state| {
            before
                .iter()
                .position(|e| e.packet_id == packet_id && e.state == state)
        };
        let removed = |index: usize| {
            let mut expected = before.clone();
            expected.remove(index);
            expected
        };
        let ids = |entries: &[InflightEntry]| -> Vec<(u16, OutboundState)> {
            entries.iter().map(|e| (e.packet_id.get(), e.state)).collect()
        };
        let expected = match kind {
            PacketType::PubAck => match position(OutboundState::AwaitingPubAck) {
                Some(index) => removed(index),
                None => before.clone(),
            },
            PacketType::PubComp => match position(OutboundState::AwaitingPubComp) {
                Some(index) => removed(index),
                None => before.clone(),
            },
            PacketType::PubRec => match position(OutboundState::AwaitingPubRec) {
                Some(index) if self.version.is_v5() && reason.is_error() => removed(index),
                Some(index) => {
                    let mut expected = before.clone();
                    expected[index].state = OutboundState::AwaitingPubComp;
                    expected
                }
                None => before.clone(),
            },
            _ => before.clone(),
        };
        assert_eq!(ids(&after), ids(&expected), "after {kind:?} {packet_id}");
    }

    fn client_publish(&mut self, input: &mut Input) {
        let qos = input.pick(&QOS);
        let mut properties = Properties::default();
        if self.version.is_v5() {
            if input.bool() {
                properties.topic_alias = Some(u16::from(input.u8() % 5));
            }
            if input.bool() {
                properties.payload_format_indicator = Some(1);
            }
            if input.bool() {
                properties.message_expiry_interval = Some(u32::from(input.u8() % 8));
            }
            if input.bool() {
                properties.user_properties = vec![("u".into(), "p".into())];
            }
        }
        let topic = TopicName::new(topic(input)).unwrap_or_else(|_| TopicName::empty());
        let packet_id = (qos != QoS::AtMostOnce)
            .then(|| PacketId::new(u16::from(input.u8() % 8) + 1))
            .flatten();
        let payload_len = usize::from(input.u8() % 48);
        let publish = Publish {
            dup: qos != QoS::AtMostOnce && input.bool(),
            qos,
            retain: input.bool(),
            topic,
            packet_id,
            properties,
            payload: Bytes::copy_from_slice(input.bytes(payload_len)),
        };
        self.feed_via_codec(Packet::Publish(publish), input);
    }

    fn client_control(&mut self, input: &mut Input) {
        let packet_id = PacketId::new(input.u16() | 1).expect("odd ids are non-zero");
        let count = usize::from(input.u8() % 3) + 1;
        let filters: Vec<TopicFilter> = (0..count)
            .filter_map(|_| TopicFilter::new(input.pick(&FILTERS)).ok())
            .collect();
        let packet = match input.u8() % 3 {
            0 => Packet::Subscribe(Subscribe {
                packet_id,
                properties: Properties::default(),
                filters: filters
                    .into_iter()
                    .map(|f| {
                        let options = SubscriptionOptions {
                            qos: input.pick(&QOS),
                            no_local: input.bool(),
                            retain_as_published: input.bool(),
                            retain_handling: RetainHandling::default(),
                        };
                        (f, options)
                    })
                    .collect(),
            }),
            1 => Packet::Unsubscribe(Unsubscribe {
                packet_id,
                properties: Properties::default(),
                filters,
            }),
            _ => Packet::PingReq,
        };
        self.feed_via_codec(packet, input);
    }

    /// `deliver` as the server's pump does: QoS 1/2 only while the window is open.
    fn deliver_one(&mut self, qos: QoS, input: &mut Input) {
        if !self.connected {
            return; // an offline session's messages wait in its outbox
        }
        let message = Arc::clone(&self.pool[usize::from(input.u8()) % self.pool.len()]);
        let qos = qos.min(message.qos);
        if qos != QoS::AtMostOnce && self.session.outbound_window() == 0 {
            return;
        }
        let mut delivery = Delivery::new(Arc::clone(&message), qos, input.bool());
        if input.bool() {
            delivery.subscription_ids.push(u32::from(input.u16()) + 1);
        }
        if self.store.is_some() && input.bool() {
            self.next_seq += 1;
            delivery.stored = Some(StoredRef {
                seq: self.next_seq,
                body_id: self.next_seq,
            });
        }
        let before: Vec<PacketId> = self.session.inflight().map(|e| e.packet_id).collect();
        let outcome = self.session.deliver(delivery, self.now);
        let after = self.session.inflight_len();
        match outcome {
            Outbound::Send(publish) => {
                assert_eq!(publish.qos, qos);
                if qos == QoS::AtMostOnce {
                    assert_eq!(after, before.len());
                } else {
                    let id = publish.packet_id.expect("QoS 1/2 has a packet id");
                    assert!(!before.contains(&id), "packet id {id} reused while in flight");
                    assert_eq!(after, before.len() + 1);
                    assert!(after <= self.window_limit(), "inflight {after} over the window");
                }
                self.check_outgoing(&Packet::Publish(publish));
            }
            Outbound::Expired => {
                assert!(message.is_expired(self.now));
                assert_eq!(after, before.len());
            }
            Outbound::TooLarge => {
                assert!(self.client.maximum_packet_size.is_some());
                assert_eq!(after, before.len());
            }
        }
    }

    /// A reconnect: `attach`, then (MQTT 5) the new capabilities and maybe a Server Keep
    /// Alive, in the order the server's handshake applies them; then the redelivery must be
    /// every open, unexpired exchange in order.
    fn attach(&mut self, input: &mut Input) {
        let before = self.entries();
        self.version = input.pick(&VERSIONS);
        self.keep_alive = keep_alive(input);
        self.limits = limits(input);
        self.session
            .attach(self.version, self.keep_alive, Arc::new(self.limits), self.now);
        self.last_received = self.now;
        self.connected = true;
        self.held.clear();
        self.client = ClientCapabilities::default();
        if self.version.is_v5() {
            self.client = capabilities(input);
            self.session.set_client_capabilities(self.client);
        }
        if input.bool() {
            self.keep_alive = input.pick(&[0, 5, 30]);
            self.session.set_keep_alive(self.keep_alive);
        }
        let now = self.now;
        let expected: Vec<&InflightEntry> = before
            .iter()
            .filter(|e| e.delivery.as_ref().is_none_or(|d| !d.message.is_expired(now)))
            .collect();
        // One packet per exchange, in order; a PUBLISH too large for the new Maximum Packet
        // Size is discarded as if sent and acknowledged [MQTT-3.1.2-25].
        let too_large = |entry: &InflightEntry| {
            let Some(delivery) = &entry.delivery else {
                return false;
            };
            let publish = build_publish(delivery, Some(entry.packet_id), true, self.version, now);
            let size = encoded_len(&Packet::Publish(publish), self.version).unwrap_or(usize::MAX);
            self.client.maximum_packet_size.is_some_and(|max| size > max.get() as usize)
        };
        let mut kept = Vec::new();
        let mut pending = expected.iter();
        while let Some(packet) = self.session.poll_transmit() {
            let entry = loop {
                let entry = pending.next().unwrap_or_else(|| panic!("extra {packet:?}"));
                let matches = match (&packet, &entry.delivery) {
                    (Packet::Publish(publish), Some(delivery)) => {
                        let matches = publish.packet_id == Some(entry.packet_id);
                        assert!(!matches || (publish.dup && publish.qos == delivery.qos));
                        matches
                    }
                    (Packet::PubRel(rel), None) => rel.packet_id == entry.packet_id,
                    _ => false,
                };
                if matches {
                    break entry;
                }
                assert!(too_large(entry), "{entry:?} is not redelivered, {packet:?} is");
            };
            kept.push(entry.packet_id);
            self.check_outgoing(&packet);
        }
        for entry in pending {
            assert!(too_large(entry), "{entry:?} is not redelivered");
        }
        let after: Vec<PacketId> = self.session.inflight().map(|e| e.packet_id).collect();
        assert_eq!(after, kept, "attach keeps the redelivered exchanges, in order");
    }
}
