//! One client's protocol state machine, sans IO.
//!
//! The server feeds a [`Session`] the packets it decodes and the current time; the session
//! answers with [`Event`]s for the server to carry out (route a message, subscribe, …) and
//! queues the protocol's own replies (PUBACK, PUBREC, PUBCOMP, PINGRESP, PUBREL) for
//! [`Session::poll_transmit`]. Outbound messages enter through [`Session::deliver`], which
//! checks expiry and the client's Maximum Packet Size, applies topic aliases, assigns packet
//! ids and tracks the inflight window.
//!
//! A session outlives its connection when it is persistent: [`Session::attach`] binds it to
//! a new connection and queues the redelivery of every open exchange.

mod id_set;
mod inbound;
mod inflight;
mod outbound;
mod persist;
pub mod process_keyed;
mod rate;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ahash::{HashMap, HashSet};
use fulmar_proto::{
    encoded_len, Ack, Auth, Disconnect, Packet, PacketId, Properties, ProtocolVersion, Publish,
    QoS, ReasonCode, Subscribe, SubscriptionOptions, TopicFilter, TopicName, Unsubscribe,
};

use crate::error::ProtocolError;
pub use inbound::explain;
use inflight::Inflight;
pub use inflight::{InflightEntry, OutboundState};
pub use outbound::{build_publish, Outbound};
pub use persist::{Persist, RestoredState};
pub use rate::PublishRate;

/// Per-session limits and server policy, from the broker's configuration; one value, shared
/// by the sessions started under that configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionLimits {
    /// Outbound QoS 1/2 PUBLISHes sent and not yet acknowledged (1..=65535).
    pub max_inflight: u16,
    /// Inbound QoS 2 messages awaiting PUBREL (the server's Receive Maximum).
    pub max_inbound_qos2: u16,
    /// Highest MQTT 5 topic alias the client may use (0: none).
    pub topic_alias_maximum: u16,
    /// Highest QoS the server accepts in PUBLISH (MQTT 5 Maximum QoS).
    pub max_qos: QoS,
    /// Whether retained messages are accepted (MQTT 5 Retain Available).
    pub retain_available: bool,
    /// Check that payloads marked UTF-8 (Payload Format Indicator 1) are UTF-8.
    pub validate_utf8_payload: bool,
    /// Use topic aliases towards clients that accept them.
    pub outbound_topic_aliases: bool,
    /// Longest topic name accepted in PUBLISH, bytes (no topic name is longer than 65,535).
    pub max_topic_len: u16,
    /// Most levels accepted in a PUBLISH topic name.
    pub max_topic_levels: u16,
    /// PUBLISH packets per second before reads pause (0: unlimited).
    pub publish_rate_messages: u32,
    /// PUBLISH payload bytes per second before reads pause (0: unlimited).
    pub publish_rate_bytes: u64,
    /// How long the server may hold back a publisher's acknowledgements for a congested
    /// subscriber, in milliseconds. Not the session's own business: carried here so that a
    /// connection keeps one shared copy of all its limits rather than 16 bytes of its own.
    pub max_publisher_hold_ms: u32,
}

impl Default for SessionLimits {
    fn default() -> Self {
        SessionLimits {
            max_inflight: 32,
            max_inbound_qos2: 1024,
            topic_alias_maximum: 0,
            max_qos: QoS::ExactlyOnce,
            retain_available: true,
            validate_utf8_payload: false,
            outbound_topic_aliases: false,
            max_topic_len: 65_535,
            max_topic_levels: 128,
            publish_rate_messages: 0,
            publish_rate_bytes: 0,
            max_publisher_hold_ms: 2000,
        }
    }
}

/// What an MQTT 5 client said in CONNECT about what it accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientCapabilities {
    /// Receive Maximum: QoS 1/2 PUBLISHes it accepts unacknowledged.
    pub receive_maximum: u16,
    /// Topic Alias Maximum: aliases the server may use towards it.
    pub topic_alias_maximum: u16,
    /// Maximum Packet Size it accepts.
    pub maximum_packet_size: Option<NonZeroU32>,
    /// Request Problem Information: reason strings allowed on acks ([MQTT-3.1.2-29]).
    pub problem_information: bool,
}

impl Default for ClientCapabilities {
    fn default() -> Self {
        ClientCapabilities {
            receive_maximum: u16::MAX,
            topic_alias_maximum: 0,
            maximum_packet_size: None,
            problem_information: true,
        }
    }
}

impl ClientCapabilities {
    /// Reads the capabilities from CONNECT properties (absent ones take the spec defaults).
    pub fn from_connect(properties: &Properties) -> Self {
        ClientCapabilities {
            receive_maximum: properties.receive_maximum.unwrap_or(u16::MAX).max(1),
            topic_alias_maximum: properties.topic_alias_maximum.unwrap_or(0),
            // 0 is a protocol error that decoding rejects.
            maximum_packet_size: properties.maximum_packet_size.and_then(NonZeroU32::new),
            problem_information: properties.request_problem_information != Some(0),
        }
    }
}

/// What the server must do after a packet was handled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Route this message (topic resolved, checks passed). For QoS 1/2 the server must then
    /// call [`Session::acknowledge_publish`] with the outcome, which queues PUBACK/PUBREC.
    Publish(Publish),
    /// Apply the subscriptions, then queue SUBACK.
    Subscribe(Subscribe),
    /// Remove the subscriptions, then queue UNSUBACK.
    Unsubscribe(Unsubscribe),
    /// The client disconnects cleanly.
    Disconnect(Disconnect),
    /// MQTT 5 enhanced authentication exchange.
    Auth(Auth),
}

/// One client's session.
///
/// # Invariants
/// - `traffic.inflight.len() <= outbound window` once the caller respects
///   [`Session::outbound_window`].
/// - `traffic` is `None` only while no exchange is open and no reply waits: dropping it
///   loses nothing but the last packet id handed out, which no open exchange uses.
/// - `extras.inbound_qos2.len() <= limits.max_inbound_qos2`.
/// - `traffic.transmit` and the alias maps belong to the current connection;
///   [`Session::attach`] resets them.
/// - `extras` is `Some` whenever `limits` set a publish rate: without extras the rate is
///   unlimited and reading is never paused.
#[derive(Debug)]
pub struct Session {
    version: ProtocolVersion,
    /// The negotiated keep-alive in seconds (0: none); the connection ends 1.5 × this after
    /// the last packet [MQTT-3.1.2-24]. Seconds, not a `Duration`: 2 bytes instead of 16 in
    /// every session.
    keep_alive_secs: u16,
    last_received: Instant,
    /// Shared by every session started under one configuration: a pointer, where a copy
    /// would cost each session 32 bytes.
    limits: Arc<SessionLimits>,
    client: ClientCapabilities,
    subscriptions: process_keyed::HashMap<TopicFilter, SubscriptionOptions>,
    /// What a connection in use needs (see [`Traffic`]): allocated on first use, dropped
    /// when the connection goes dormant with nothing in it.
    traffic: Option<Box<Traffic>>,
    /// State that most sessions never need, allocated on first use (see [`Extras`]).
    extras: Option<Box<Extras>>,
    /// Changes of the durable state not yet taken by the server; `None` for a session that
    /// is not stored (see `persist.rs`). Boxed: most sessions are not stored, and inline the
    /// log would cost each of them 16 bytes more.
    #[allow(clippy::box_collection)] // The box is the point: see above.
    persist_log: Option<Box<Vec<Persist>>>,
}

/// The parts of a session that an idle client never uses: inbound QoS 2 ids, topic aliases
/// and the publish-rate budget. Boxed and allocated on first use, because most of a broker's
/// sessions are idle and inline they would cost each one ~260 bytes (three hash maps with
/// their hasher state, the rate buckets).
#[derive(Debug, Default)]
struct Extras {
    /// [MQTT-4.3.3-2] inbound QoS 2 ids received and not yet released: a re-sent PUBLISH
    /// with one of these ids is acknowledged but not delivered again.
    inbound_qos2: HashSet<PacketId>,
    /// MQTT 5 topic aliases the client set on this connection.
    inbound_aliases: HashMap<u16, TopicName>,
    /// MQTT 5 topic aliases the server set towards the client on this connection.
    outbound_aliases: HashMap<TopicName, u16>,
    publish_rate: PublishRate,
    /// Until when the server must not read from the client (publish rate exceeded).
    paused_until: Option<Instant>,
}

/// The exchanges and replies of a session in use: the outbound inflight window and the
/// protocol's own replies waiting to be sent. Boxed, allocated on first use and kept while
/// the connection is awake (never allocated or freed per message), and dropped by
/// [`Session::release_idle_memory`] when the connection goes dormant with both empty: most
/// of a broker's connections are dormant, and inline these would cost each one 88 bytes.
#[derive(Debug, Default)]
struct Traffic {
    inflight: Inflight,
    /// Replies to send, in the order their requests arrived [MQTT-4.6.0-2].
    transmit: VecDeque<Packet>,
}

impl Traffic {
    /// Whether dropping it loses nothing: no open exchange, no waiting reply. (The next
    /// packet id then starts over at 1, which is as free as any other with none in use.)
    fn is_empty(&self) -> bool {
        self.inflight.len() == 0 && self.transmit.is_empty()
    }
}

/// A new, empty [`Traffic`]. Out of line and cold: it runs at most once per connection or
/// wake-up, and inlined it would weigh on the per-message paths that check for it.
#[cold]
#[inline(never)]
fn new_traffic() -> Box<Traffic> {
    Box::default()
}

impl Extras {
    /// The extras of a session (re)connecting with `limits` at `now`: the connection-scoped
    /// parts of `previous` reset, the inbound QoS 2 ids kept; allocated only when something
    /// needs them.
    fn for_limits(
        previous: Option<Box<Extras>>,
        limits: &SessionLimits,
        now: Instant,
    ) -> Option<Box<Extras>> {
        let rated = limits.publish_rate_messages > 0 || limits.publish_rate_bytes > 0;
        let mut extras = match previous {
            Some(extras) if !extras.inbound_qos2.is_empty() || rated => extras,
            _ if rated => Box::default(),
            _ => return None,
        };
        extras.inbound_aliases.clear();
        extras.outbound_aliases.clear();
        extras.publish_rate =
            PublishRate::new(limits.publish_rate_messages, limits.publish_rate_bytes, now);
        extras.paused_until = None;
        Some(extras)
    }
}

impl Session {
    /// The traffic state, allocated if this is its first use. Always inlined, as are the
    /// accessors below: they run on every delivery and acknowledgement, where a call would
    /// cost more than their check does.
    #[inline(always)]
    fn traffic_mut(&mut self) -> &mut Traffic {
        self.traffic.get_or_insert_with(new_traffic)
    }

    /// The inflight window, if the session has traffic state (none: an empty window).
    #[inline(always)]
    fn inflight_mut(&mut self) -> Option<&mut Inflight> {
        self.traffic
            .as_deref_mut()
            .map(|traffic| &mut traffic.inflight)
    }

    /// Completes the exchange `packet_id` if it is open in `state`; returns it if it was.
    #[inline(always)]
    fn complete(&mut self, packet_id: PacketId, state: OutboundState) -> Option<InflightEntry> {
        self.inflight_mut()?.complete(packet_id, state)
    }

    /// The queue of protocol replies, allocated if this is its first use. Called before the
    /// reply is built (`self.transmit_mut().push_back(reply)`), so that the reply is built
    /// in its slot rather than on the stack and copied past the allocation check.
    #[inline(always)]
    fn transmit_mut(&mut self) -> &mut VecDeque<Packet> {
        &mut self.traffic_mut().transmit
    }

    /// Copies the messages kept for re-sending out of the buffers they were decoded from
    /// (see [`crate::Delivery::into_detached`]): the server calls it as the session is
    /// parked, where they may wait for hours and would otherwise keep whole read slabs alive.
    pub fn detach_messages(&mut self) {
        if let Some(inflight) = self.inflight_mut() {
            inflight.detach_messages();
        }
    }

    /// Frees what only a connection in use needs when nothing is in it: the server calls it
    /// as the connection goes dormant. A session with open exchanges or waiting replies keeps
    /// it; the next exchange or reply allocates it again.
    pub fn release_idle_memory(&mut self) {
        if self.traffic.as_deref().is_some_and(Traffic::is_empty) {
            self.traffic = None;
        }
    }

    /// The extras, allocated if this is their first use.
    fn extras_mut(&mut self) -> &mut Extras {
        self.extras.get_or_insert_with(Box::default)
    }

    /// Whether `packet_id` is an inbound QoS 2 id not yet released.
    fn has_inbound_qos2(&self, packet_id: PacketId) -> bool {
        self.extras
            .as_deref()
            .is_some_and(|extras| extras.inbound_qos2.contains(&packet_id))
    }

    /// Releases an inbound QoS 2 id; returns whether it was held.
    fn release_inbound_qos2(&mut self, packet_id: PacketId) -> bool {
        self.extras
            .as_deref_mut()
            .is_some_and(|extras| extras.inbound_qos2.remove(&packet_id))
    }
}

impl Session {
    /// A new session, connected now with the given keep-alive (seconds). It does not know
    /// its client id: the server keeps that (with the session's mailbox and registry slot),
    /// and 16 bytes in every session would only repeat it.
    pub fn new(
        version: ProtocolVersion,
        keep_alive_secs: u16,
        limits: Arc<SessionLimits>,
        now: Instant,
    ) -> Self {
        Session {
            version,
            keep_alive_secs,
            last_received: now,
            extras: Extras::for_limits(None, &limits, now),
            limits,
            client: ClientCapabilities::default(),
            subscriptions: process_keyed::HashMap::default(),
            traffic: None,
            persist_log: None,
        }
    }

    /// Binds a resumed session to a new connection and queues the redelivery of open
    /// exchanges, in their original order, before any new message [MQTT-4.4.0-1]: PUBLISH
    /// with DUP for those awaiting PUBACK/PUBREC, PUBREL for those awaiting PUBCOMP.
    /// Messages that expired meanwhile are dropped instead [MQTT-3.3.2-5].
    pub fn attach(
        &mut self,
        version: ProtocolVersion,
        keep_alive_secs: u16,
        limits: Arc<SessionLimits>,
        now: Instant,
    ) {
        self.version = version;
        self.keep_alive_secs = keep_alive_secs;
        self.last_received = now;
        self.extras = Extras::for_limits(self.extras.take(), &limits, now);
        self.limits = limits;
        self.client = ClientCapabilities::default();
        let Some(traffic) = self.traffic.as_deref_mut() else {
            return;
        };
        traffic.transmit.clear();
        let dropped = traffic.inflight.drop_expired(now);
        let Traffic { inflight, transmit } = traffic;
        for entry in inflight.iter() {
            let packet = match &entry.delivery {
                Some(delivery) => Packet::Publish(build_publish(
                    delivery,
                    Some(entry.packet_id),
                    true,
                    version,
                    now,
                )),
                None => Packet::PubRel(ack(entry.packet_id, ReasonCode::Success)),
            };
            transmit.push_back(packet);
        }
        for packet_id in dropped {
            self.record(Persist::Completed { packet_id });
        }
    }

    /// Applies what an MQTT 5 client said it accepts (CONNECT properties).
    pub fn set_client_capabilities(&mut self, client: ClientCapabilities) {
        self.client = client;
    }

    /// The protocol version of the current (or last) connection.
    pub fn version(&self) -> ProtocolVersion {
        self.version
    }

    /// Whether reason strings may go on packets other than PUBLISH, CONNACK and DISCONNECT
    /// (MQTT 5 Request Problem Information [MQTT-3.1.2-29]; always false for 3.1.1).
    pub fn problem_information_allowed(&self) -> bool {
        self.version.is_v5() && self.client.problem_information
    }

    /// The limits the session runs with.
    pub fn limits(&self) -> &SessionLimits {
        &self.limits
    }

    /// The subscriptions this session holds, by filter.
    pub fn subscriptions(&self) -> &process_keyed::HashMap<TopicFilter, SubscriptionOptions> {
        &self.subscriptions
    }

    /// Records a subscription granted by the router; returns whether it replaced one.
    pub fn add_subscription(&mut self, filter: TopicFilter, options: SubscriptionOptions) -> bool {
        self.subscriptions.insert(filter, options).is_some()
    }

    /// Forgets a subscription; returns whether it existed.
    pub fn remove_subscription(&mut self, filter: &TopicFilter) -> bool {
        self.subscriptions.remove(filter).is_some()
    }

    /// Replaces the keep-alive (e.g. with the MQTT 5 Server Keep Alive the server imposed).
    pub fn set_keep_alive(&mut self, keep_alive_secs: u16) {
        self.keep_alive_secs = keep_alive_secs;
    }

    /// Until when the server must stop reading from the client because it exceeded its
    /// publish rate; `None` when reading may go on.
    pub fn read_paused_until(&self, now: Instant) -> Option<Instant> {
        let extras = self.extras.as_deref()?;
        extras.paused_until.filter(|&until| until > now)
    }

    /// When the connection must be closed if no packet arrives before it.
    pub fn keep_alive_deadline(&self) -> Option<Instant> {
        let grace = Duration::from_millis(u64::from(self.keep_alive_secs) * 1500);
        (self.keep_alive_secs > 0).then(|| self.last_received + grace)
    }

    /// [MQTT-3.1.2-24] fails when no packet arrived within 1.5 × keep-alive.
    pub fn check_keep_alive(&self, now: Instant) -> Result<(), ProtocolError> {
        match self.keep_alive_deadline() {
            Some(deadline) if now >= deadline => Err(ProtocolError::KeepAliveTimeout),
            _ => Ok(()),
        }
    }

    /// Queues a reply the server built (SUBACK, UNSUBACK, AUTH, …) behind the session's own,
    /// so replies leave in the order their requests arrived.
    pub fn queue_transmit(&mut self, packet: Packet) {
        self.transmit_mut().push_back(packet);
    }

    /// The next protocol reply to send, if any.
    ///
    /// Nothing leaves larger than the client's Maximum Packet Size [MQTT-3.1.2-24]: a reply
    /// loses its Reason String and User Properties first ([MQTT-3.4.2-2] and the like), and
    /// a redelivered PUBLISH that is too large (the client lowered its maximum when it
    /// reconnected) is discarded as if it had been sent and acknowledged [MQTT-3.1.2-25].
    pub fn poll_transmit(&mut self) -> Option<Packet> {
        loop {
            let mut packet = self.traffic.as_deref_mut()?.transmit.pop_front()?;
            let Some(max) = self.client.maximum_packet_size else {
                return Some(packet);
            };
            let fits =
                |p: &Packet| encoded_len(p, self.version).is_ok_and(|n| n <= max.get() as usize);
            if fits(&packet) {
                return Some(packet);
            }
            if let Packet::Publish(publish) = &packet {
                if let Some(packet_id) = publish.packet_id {
                    let state = match publish.qos {
                        QoS::ExactlyOnce => OutboundState::AwaitingPubRec,
                        _ => OutboundState::AwaitingPubAck,
                    };
                    let done = self.complete(packet_id, state);
                    self.record_completed(done);
                }
                continue;
            }
            if let Some(properties) = reply_properties(&mut packet) {
                properties.reason_string = None;
                properties.user_properties.clear();
            }
            return Some(packet);
        }
    }

    /// Handles one packet received from the client at `now`.
    pub fn handle(&mut self, packet: Packet, now: Instant) -> Result<Option<Event>, ProtocolError> {
        self.last_received = now;
        match packet {
            Packet::Publish(publish) => self.handle_publish(publish),
            Packet::PubAck(ack) => {
                let done = self.complete(ack.packet_id, OutboundState::AwaitingPubAck);
                self.record_completed(done);
                Ok(None)
            }
            Packet::PubRec(rec) => {
                self.handle_pubrec(rec);
                Ok(None)
            }
            Packet::PubRel(rel) => {
                self.handle_pubrel(rel);
                Ok(None)
            }
            Packet::PubComp(comp) => {
                let done = self.complete(comp.packet_id, OutboundState::AwaitingPubComp);
                self.record_completed(done);
                Ok(None)
            }
            Packet::Subscribe(subscribe) => Ok(Some(Event::Subscribe(subscribe))),
            Packet::Unsubscribe(unsubscribe) => Ok(Some(Event::Unsubscribe(unsubscribe))),
            Packet::PingReq => {
                self.transmit_mut().push_back(Packet::PingResp);
                Ok(None)
            }
            Packet::Disconnect(disconnect) => Ok(Some(Event::Disconnect(disconnect))),
            Packet::Auth(auth) => Ok(Some(Event::Auth(auth))),
            Packet::Connect(_) => Err(ProtocolError::SecondConnect),
            other => Err(ProtocolError::UnexpectedPacket(other.kind_name())),
        }
    }
}

/// The properties of a reply that may carry a Reason String or User Properties.
fn reply_properties(packet: &mut Packet) -> Option<&mut Properties> {
    match packet {
        Packet::PubAck(ack) | Packet::PubRec(ack) | Packet::PubRel(ack) | Packet::PubComp(ack) => {
            Some(&mut ack.properties)
        }
        Packet::SubAck(suback) => Some(&mut suback.properties),
        Packet::UnsubAck(unsuback) => Some(&mut unsuback.properties),
        Packet::Disconnect(disconnect) => Some(&mut disconnect.properties),
        Packet::Auth(auth) => Some(&mut auth.properties),
        _ => None,
    }
}

fn ack(packet_id: PacketId, reason: ReasonCode) -> Ack {
    Ack {
        packet_id,
        reason,
        properties: Properties::default(),
    }
}
