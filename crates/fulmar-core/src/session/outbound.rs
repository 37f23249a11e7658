//! Messages to the client: expiry, Maximum Packet Size, topic aliases, packet ids, and the
//! acknowledgements that close outbound exchanges.

use std::time::Instant;

use fulmar_proto::{
    publish_encoded_len, Ack, Packet, PacketId, Properties, ProtocolVersion, Publish, QoS,
    ReasonCode, TopicName,
};

use super::inflight::OutboundState;
use super::{ack, Session};
use crate::message::Delivery;

/// What became of a delivery handed to [`Session::deliver`].
#[derive(Debug, Clone, PartialEq, Eq)]
// Send is the common variant on the hot path; boxing it would allocate per delivery.
#[allow(clippy::large_enum_variant)]
pub enum Outbound {
    /// Send this PUBLISH.
    Send(Publish),
    /// The message expired before it could be sent [MQTT-3.3.2-5]; dropped.
    Expired,
    /// Larger than the client's Maximum Packet Size [MQTT-3.1.2-25]; dropped for this client.
    TooLarge,
}

impl Session {
    /// How many more QoS 1/2 deliveries may be sent now.
    pub fn outbound_window(&self) -> usize {
        let limit = self.limits.max_inflight.min(self.client.receive_maximum);
        usize::from(limit).saturating_sub(self.inflight.len())
    }

    /// Ends every open exchange and returns the messages the client never acknowledged,
    /// in send order (for handing shared-subscription messages to another member).
    pub fn take_unacknowledged(&mut self) -> Vec<Delivery> {
        self.inflight.take_unacknowledged()
    }

    /// Number of outbound exchanges open.
    pub fn inflight_len(&self) -> usize {
        self.inflight.len()
    }

    /// Open outbound exchanges in send order (for persistence and inspection).
    pub fn inflight(&self) -> impl Iterator<Item = &super::InflightEntry> {
        self.inflight.iter()
    }

    /// Turns a delivery into the PUBLISH to send, opening an inflight exchange for QoS 1/2.
    /// The caller sends QoS 1/2 only while [`Session::outbound_window`] is non-zero.
    pub fn deliver(&mut self, delivery: Delivery, now: Instant) -> Outbound {
        if delivery.message.is_expired(now) {
            return Outbound::Expired;
        }
        let mut publish = build_publish(&delivery, None, false, self.version, now);
        if delivery.qos > QoS::AtMostOnce {
            // Sized with a placeholder id: ids have a fixed width.
            publish.packet_id = PacketId::new(1);
        }
        // Sized with the alias: its 3-byte property is more than a topic of one or two bytes
        // saves [MQTT-3.1.2-24]. Too large with it, the PUBLISH may still fit without.
        let topic = publish.topic.clone();
        let new_alias = self.apply_outbound_alias(&mut publish);
        if let Some(max) = self.client.maximum_packet_size {
            let fits = |p: &Publish| {
                publish_encoded_len(p, self.version).is_ok_and(|size| size <= max as usize)
            };
            if !fits(&publish) {
                publish.properties.topic_alias = None;
                publish.topic = topic.clone();
                if !fits(&publish) {
                    return Outbound::TooLarge;
                }
            }
        }
        if let (Some(alias), Some(_)) = (new_alias, publish.properties.topic_alias) {
            self.outbound_aliases.insert(topic, alias);
        }
        let state = match delivery.qos {
            QoS::AtMostOnce => return Outbound::Send(publish),
            QoS::AtLeastOnce => OutboundState::AwaitingPubAck,
            QoS::ExactlyOnce => OutboundState::AwaitingPubRec,
        };
        debug_assert!(self.outbound_window() > 0, "caller must respect the window");
        let stored = delivery.stored.is_some() && self.is_recording();
        let record = stored.then(|| delivery.clone());
        let packet_id = self.inflight.start(delivery, state);
        publish.packet_id = Some(packet_id);
        if let Some(delivery) = record {
            self.record(super::Persist::Sent {
                packet_id,
                state,
                delivery,
            });
        }
        Outbound::Send(publish)
    }

    /// MQTT 5 §3.3.2.3.4: the first PUBLISH of a topic carries topic and a new alias, later
    /// ones only the alias; once the client's Topic Alias Maximum is used up, new topics go
    /// out in full (aliases are never reassigned, so no ordering hazards arise).
    /// Returns a new alias for the caller to register once the PUBLISH is sure to be sent.
    fn apply_outbound_alias(&self, publish: &mut Publish) -> Option<u16> {
        if !self.limits.outbound_topic_aliases || self.client.topic_alias_maximum == 0 {
            return None;
        }
        if let Some(&alias) = self.outbound_aliases.get(&publish.topic) {
            publish.properties.topic_alias = Some(alias);
            publish.topic = TopicName::empty();
            return None;
        }
        let next = self.outbound_aliases.len() + 1;
        if next <= usize::from(self.client.topic_alias_maximum) {
            let alias = next as u16;
            publish.properties.topic_alias = Some(alias);
            return Some(alias);
        }
        None
    }

    pub(super) fn handle_pubrec(&mut self, rec: Ack) {
        if self.version.is_v5() && rec.reason.is_error() {
            // MQTT 5 §4.3.3: an error PUBREC ends the exchange; no PUBREL.
            let done = self
                .inflight
                .complete(rec.packet_id, OutboundState::AwaitingPubRec);
            self.record_completed(done);
            return;
        }
        let (known, moved) = self.inflight.received(rec.packet_id);
        if let Some(Some(seq)) = moved {
            self.record(super::Persist::Released {
                packet_id: rec.packet_id,
                seq,
            });
        }
        let reason = if known || !self.version.is_v5() {
            ReasonCode::Success
        } else {
            ReasonCode::PacketIdentifierNotFound
        };
        self.transmit
            .push_back(Packet::PubRel(ack(rec.packet_id, reason)));
    }
}

/// The PUBLISH a recipient gets for `delivery`: shared topic and payload, per-recipient flags.
/// MQTT 5 properties are forwarded only to MQTT 5 clients, with this recipient's
/// subscription identifiers [MQTT-3.3.4-3] and the remaining expiry [MQTT-3.3.2-6].
pub fn build_publish(
    delivery: &Delivery,
    packet_id: Option<PacketId>,
    dup: bool,
    version: ProtocolVersion,
    now: Instant,
) -> Publish {
    let message = &delivery.message;
    let properties = if version.is_v5() {
        let mut properties = message.properties.clone();
        // Written only when they differ: a write allocates the values of an empty block.
        if properties.subscription_identifiers[..] != delivery.subscription_ids[..] {
            properties.subscription_identifiers = delivery.subscription_ids.to_vec();
        }
        let expiry = message.remaining_expiry_secs(now);
        if properties.message_expiry_interval != expiry {
            properties.message_expiry_interval = expiry;
        }
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
