//! One client's protocol state machine, sans IO.
//!
//! The server feeds a [`Session`] the packets it decodes and the current time; the session
//! answers with [`Event`]s for the server to carry out (route a message, subscribe, …) and
//! queues the protocol's own replies (PUBACK, PUBREC, PUBCOMP, PINGRESP, PUBREL) for
//! [`Session::poll_transmit`]. Outbound messages enter through [`Session::deliver`], which
//! assigns packet ids and tracks the inflight window.
//!
//! A session outlives its connection when it is persistent: [`Session::attach`] binds it to
//! a new connection and queues the redelivery of every open exchange.

mod inflight;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use ahash::{HashMap, HashMapExt, HashSet, HashSetExt};
use fulmar_proto::{
    Ack, Auth, Disconnect, Packet, PacketId, Properties, ProtocolVersion, Publish, QoS, ReasonCode,
    Subscribe, SubscriptionOptions, TopicFilter, TopicName, Unsubscribe,
};

use crate::error::ProtocolError;
use crate::message::Delivery;
use inflight::Inflight;
pub use inflight::{InflightEntry, OutboundState};

/// Per-session limits, from the broker's configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionLimits {
    /// Outbound QoS 1/2 PUBLISHes sent and not yet acknowledged (1..=65535).
    pub max_inflight: u16,
    /// Inbound QoS 2 messages awaiting PUBREL (the server's Receive Maximum).
    pub max_inbound_qos2: u16,
    /// Highest MQTT 5 topic alias the client may use (0: none).
    pub topic_alias_maximum: u16,
}

impl Default for SessionLimits {
    fn default() -> Self {
        SessionLimits {
            max_inflight: 32,
            max_inbound_qos2: 1024,
            topic_alias_maximum: 0,
        }
    }
}

/// What the server must do after a packet was handled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Route this message (topic resolved; already acknowledged per its QoS flow).
    Publish(Publish),
    /// Apply the subscriptions, then send SUBACK.
    Subscribe(Subscribe),
    /// Remove the subscriptions, then send UNSUBACK.
    Unsubscribe(Unsubscribe),
    /// The client disconnects cleanly.
    Disconnect(Disconnect),
    /// MQTT 5 enhanced authentication exchange.
    Auth(Auth),
}

/// One client's session.
///
/// # Invariants
/// - `inflight.len() <= outbound window` once the caller respects [`Session::outbound_window`].
/// - `inbound_qos2.len() <= limits.max_inbound_qos2`.
/// - `transmit` only holds replies for the current connection; [`Session::attach`] clears it.
#[derive(Debug)]
pub struct Session {
    client_id: String,
    version: ProtocolVersion,
    /// 1.5 × the negotiated keep-alive [MQTT-3.1.2-24]; `None` when keep-alive is 0.
    keep_alive_grace: Option<Duration>,
    last_received: Instant,
    limits: SessionLimits,
    /// The client's Receive Maximum (MQTT 5; 65535 when absent).
    client_receive_maximum: u16,
    inflight: Inflight,
    /// [MQTT-4.3.3-2] inbound QoS 2 ids received and not yet released: a re-sent PUBLISH
    /// with one of these ids is acknowledged but not delivered again.
    inbound_qos2: HashSet<PacketId>,
    /// MQTT 5 topic aliases the client set on this connection.
    inbound_aliases: HashMap<u16, TopicName>,
    subscriptions: HashMap<TopicFilter, SubscriptionOptions>,
    transmit: VecDeque<Packet>,
}

impl Session {
    /// A new session for `client_id`, connected now with the given keep-alive (seconds).
    pub fn new(
        client_id: String,
        version: ProtocolVersion,
        keep_alive_secs: u16,
        limits: SessionLimits,
        now: Instant,
    ) -> Self {
        Session {
            client_id,
            version,
            keep_alive_grace: grace(keep_alive_secs),
            last_received: now,
            limits,
            client_receive_maximum: u16::MAX,
            inflight: Inflight::default(),
            inbound_qos2: HashSet::new(),
            inbound_aliases: HashMap::new(),
            subscriptions: HashMap::new(),
            transmit: VecDeque::new(),
        }
    }

    /// Binds a resumed session to a new connection and queues the redelivery of open
    /// exchanges, in their original order, before any new message [MQTT-4.4.0-1]: PUBLISH
    /// with DUP for those awaiting PUBACK/PUBREC, PUBREL for those awaiting PUBCOMP.
    pub fn attach(
        &mut self,
        version: ProtocolVersion,
        keep_alive_secs: u16,
        limits: SessionLimits,
        now: Instant,
    ) {
        self.version = version;
        self.keep_alive_grace = grace(keep_alive_secs);
        self.last_received = now;
        self.limits = limits;
        self.client_receive_maximum = u16::MAX;
        self.inbound_aliases.clear();
        self.transmit.clear();
        let version = self.version;
        for entry in self.inflight.iter() {
            let packet = match (&entry.delivery, entry.state) {
                (Some(delivery), _) => Packet::Publish(build_publish(
                    delivery,
                    Some(entry.packet_id),
                    true,
                    version,
                )),
                (None, _) => Packet::PubRel(ack(entry.packet_id, ReasonCode::Success)),
            };
            self.transmit.push_back(packet);
        }
    }

    /// Sets the client's MQTT 5 Receive Maximum from its CONNECT properties.
    pub fn set_client_receive_maximum(&mut self, receive_maximum: u16) {
        self.client_receive_maximum = receive_maximum.max(1);
    }

    /// The client identifier.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The protocol version of the current (or last) connection.
    pub fn version(&self) -> ProtocolVersion {
        self.version
    }

    /// The subscriptions this session holds, by filter.
    pub fn subscriptions(&self) -> &HashMap<TopicFilter, SubscriptionOptions> {
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

    /// When the connection must be closed if no packet arrives before it.
    pub fn keep_alive_deadline(&self) -> Option<Instant> {
        self.keep_alive_grace
            .map(|grace| self.last_received + grace)
    }

    /// [MQTT-3.1.2-24] fails when no packet arrived within 1.5 × keep-alive.
    pub fn check_keep_alive(&self, now: Instant) -> Result<(), ProtocolError> {
        match self.keep_alive_deadline() {
            Some(deadline) if now >= deadline => Err(ProtocolError::KeepAliveTimeout),
            _ => Ok(()),
        }
    }

    /// How many more QoS 1/2 deliveries may be sent now.
    pub fn outbound_window(&self) -> usize {
        let limit = self.limits.max_inflight.min(self.client_receive_maximum);
        usize::from(limit).saturating_sub(self.inflight.len())
    }

    /// Number of outbound exchanges open.
    pub fn inflight_len(&self) -> usize {
        self.inflight.len()
    }

    /// Open outbound exchanges in send order (for persistence and inspection).
    pub fn inflight(&self) -> impl Iterator<Item = &InflightEntry> {
        self.inflight.iter()
    }

    /// Turns a delivery into the PUBLISH to send, opening an inflight exchange for QoS 1/2.
    /// The caller sends QoS 1/2 only while [`Session::outbound_window`] is non-zero.
    pub fn deliver(&mut self, delivery: Delivery) -> Publish {
        let state = match delivery.qos {
            QoS::AtMostOnce => {
                return build_publish(&delivery, None, false, self.version);
            }
            QoS::AtLeastOnce => OutboundState::AwaitingPubAck,
            QoS::ExactlyOnce => OutboundState::AwaitingPubRec,
        };
        debug_assert!(self.outbound_window() > 0, "caller must respect the window");
        let publish_without_id = build_publish(&delivery, None, false, self.version);
        let packet_id = self.inflight.start(delivery, state);
        Publish {
            packet_id: Some(packet_id),
            ..publish_without_id
        }
    }

    /// Queues a reply the server built (SUBACK, UNSUBACK, AUTH, …) behind the session's own,
    /// so replies leave in the order their requests arrived.
    pub fn queue_transmit(&mut self, packet: Packet) {
        self.transmit.push_back(packet);
    }

    /// The next protocol reply to send, if any.
    pub fn poll_transmit(&mut self) -> Option<Packet> {
        self.transmit.pop_front()
    }

    /// Handles one packet received from the client at `now`.
    pub fn handle(&mut self, packet: Packet, now: Instant) -> Result<Option<Event>, ProtocolError> {
        self.last_received = now;
        match packet {
            Packet::Publish(publish) => self.handle_publish(publish),
            Packet::PubAck(ack) => {
                self.inflight
                    .complete(ack.packet_id, OutboundState::AwaitingPubAck);
                Ok(None)
            }
            Packet::PubRec(rec) => {
                self.handle_pubrec(rec);
                Ok(None)
            }
            Packet::PubRel(rel) => {
                // [MQTT-4.3.3-2] release the id; reply PUBCOMP even for an unknown id so a
                // client that lost our PUBCOMP can finish.
                let known = self.inbound_qos2.remove(&rel.packet_id);
                let reason = if known || !self.version.is_v5() {
                    ReasonCode::Success
                } else {
                    ReasonCode::PacketIdentifierNotFound
                };
                self.transmit
                    .push_back(Packet::PubComp(ack(rel.packet_id, reason)));
                Ok(None)
            }
            Packet::PubComp(comp) => {
                self.inflight
                    .complete(comp.packet_id, OutboundState::AwaitingPubComp);
                Ok(None)
            }
            Packet::Subscribe(subscribe) => Ok(Some(Event::Subscribe(subscribe))),
            Packet::Unsubscribe(unsubscribe) => Ok(Some(Event::Unsubscribe(unsubscribe))),
            Packet::PingReq => {
                self.transmit.push_back(Packet::PingResp);
                Ok(None)
            }
            Packet::Disconnect(disconnect) => Ok(Some(Event::Disconnect(disconnect))),
            Packet::Auth(auth) => Ok(Some(Event::Auth(auth))),
            Packet::Connect(_) => Err(ProtocolError::SecondConnect),
            other => Err(ProtocolError::UnexpectedPacket(other.kind_name())),
        }
    }

    fn handle_publish(&mut self, mut publish: Publish) -> Result<Option<Event>, ProtocolError> {
        self.resolve_topic_alias(&mut publish)?;
        match (publish.qos, publish.packet_id) {
            (QoS::AtMostOnce, _) | (_, None) => Ok(Some(Event::Publish(publish))),
            (QoS::AtLeastOnce, Some(packet_id)) => {
                self.transmit
                    .push_back(Packet::PubAck(ack(packet_id, ReasonCode::Success)));
                Ok(Some(Event::Publish(publish)))
            }
            (QoS::ExactlyOnce, Some(packet_id)) => {
                let first_time = if self.inbound_qos2.contains(&packet_id) {
                    false
                } else if self.inbound_qos2.len() >= usize::from(self.limits.max_inbound_qos2) {
                    return Err(ProtocolError::ReceiveMaximumExceeded(
                        self.inbound_qos2.len(),
                    ));
                } else {
                    self.inbound_qos2.insert(packet_id);
                    true
                };
                self.transmit
                    .push_back(Packet::PubRec(ack(packet_id, ReasonCode::Success)));
                // [MQTT-4.3.3-2] deliver on first receipt only, until PUBREL.
                Ok(first_time.then_some(Event::Publish(publish)))
            }
        }
    }

    /// [MQTT-3.3.2-8..12] resolves an MQTT 5 topic alias and strips it from the properties,
    /// since an alias is only meaningful on the connection that set it.
    fn resolve_topic_alias(&mut self, publish: &mut Publish) -> Result<(), ProtocolError> {
        let Some(alias) = publish.properties.topic_alias.take() else {
            return Ok(());
        };
        if alias == 0 || alias > self.limits.topic_alias_maximum {
            return Err(ProtocolError::TopicAliasInvalid(alias));
        }
        if publish.topic.is_empty() {
            match self.inbound_aliases.get(&alias) {
                Some(topic) => publish.topic = topic.clone(),
                None => return Err(ProtocolError::TopicAliasInvalid(alias)),
            }
        } else {
            self.inbound_aliases.insert(alias, publish.topic.clone());
        }
        Ok(())
    }

    fn handle_pubrec(&mut self, rec: Ack) {
        if self.version.is_v5() && rec.reason.is_error() {
            // MQTT 5 §4.3.3: an error PUBREC ends the exchange; no PUBREL.
            self.inflight
                .complete(rec.packet_id, OutboundState::AwaitingPubRec);
            return;
        }
        let known = self.inflight.received(rec.packet_id);
        let reason = if known || !self.version.is_v5() {
            ReasonCode::Success
        } else {
            ReasonCode::PacketIdentifierNotFound
        };
        self.transmit
            .push_back(Packet::PubRel(ack(rec.packet_id, reason)));
    }
}

fn grace(keep_alive_secs: u16) -> Option<Duration> {
    (keep_alive_secs > 0).then(|| Duration::from_millis(u64::from(keep_alive_secs) * 1500))
}

fn ack(packet_id: PacketId, reason: ReasonCode) -> Ack {
    Ack {
        packet_id,
        reason,
        properties: Properties::default(),
    }
}

/// The PUBLISH a recipient gets for `delivery`: shared topic and payload, per-recipient flags.
/// MQTT 5 properties are forwarded only to MQTT 5 clients, with this recipient's
/// subscription identifiers [MQTT-3.3.4-3].
pub fn build_publish(
    delivery: &Delivery,
    packet_id: Option<PacketId>,
    dup: bool,
    version: ProtocolVersion,
) -> Publish {
    let message = &delivery.message;
    let properties = if version.is_v5() {
        let mut properties = message.properties.clone();
        properties.subscription_identifiers = delivery.subscription_ids.to_vec();
        properties
    } else {
        Properties::default()
    };
    Publish {
        dup,
        qos: delivery.qos,
        retain: delivery.retain,
        topic: message.topic.clone(),
        packet_id,
        properties,
        payload: message.payload.clone(),
    }
}
