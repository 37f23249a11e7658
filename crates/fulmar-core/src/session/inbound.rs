//! Messages from the client: PUBLISH checks, topic aliases, and the QoS 1/2 replies.

use fulmar_proto::{Ack, Packet, PacketId, ProtocolVersion, Publish, QoS, ReasonCode};

use super::{ack, Event, Session};
use crate::error::ProtocolError;

impl Session {
    pub(super) fn handle_publish(
        &mut self,
        mut publish: Publish,
    ) -> Result<Option<Event>, ProtocolError> {
        self.resolve_topic_alias(&mut publish)?;
        let topic = publish.topic.as_str();
        let max_levels = usize::from(self.limits.max_topic_levels);
        // A topic of n bytes has at most n + 1 levels: short ones need no count.
        if topic.len() > usize::from(self.limits.max_topic_len)
            || (topic.len() >= max_levels
                && topic.bytes().filter(|&b| b == b'/').count() + 1 > max_levels)
        {
            return Err(ProtocolError::TopicNameTooLong);
        }
        if let Some(extras) = self.extras.as_deref_mut() {
            let payload_len = publish.payload.len();
            if let Some(until) = extras.publish_rate.charge(payload_len, self.last_received) {
                extras.paused_until = Some(until);
            }
        }
        // [MQTT-3.2.2-11] a QoS above the advertised Maximum QoS is a violation (0x9B).
        if publish.qos > self.limits.max_qos {
            return Err(ProtocolError::QoSNotSupported(publish.qos));
        }
        // [MQTT-3.2.2-14] RETAIN when Retain Available is 0 is a violation (0x9A).
        if publish.retain && !self.limits.retain_available {
            return Err(ProtocolError::RetainNotSupported);
        }
        if self.limits.validate_utf8_payload
            && publish.properties.payload_format_indicator == Some(1)
            && std::str::from_utf8(&publish.payload).is_err()
        {
            // [MQTT-3.3.2-4] MQTT 5 §3.3.2.3.2: refuse with 0x99.
            return match publish.packet_id {
                Some(packet_id) if publish.qos > QoS::AtMostOnce => {
                    let mut reply = ack(packet_id, ReasonCode::PayloadFormatInvalid);
                    if self.problem_information_allowed() {
                        let text = explain(ReasonCode::PayloadFormatInvalid).to_string();
                        reply.properties.reason_string = Some(text);
                    }
                    self.transmit_mut().push_back(match publish.qos {
                        QoS::AtLeastOnce => Packet::PubAck(reply),
                        _ => Packet::PubRec(reply),
                    });
                    Ok(None)
                }
                _ => Err(ProtocolError::PayloadFormatInvalid),
            };
        }
        if let (QoS::ExactlyOnce, Some(packet_id)) = (publish.qos, publish.packet_id) {
            if self.has_inbound_qos2(packet_id) {
                // [MQTT-4.3.3-2] already received, not yet released: acknowledge again,
                // do not deliver again.
                self.transmit_mut()
                    .push_back(Packet::PubRec(ack(packet_id, ReasonCode::Success)));
                return Ok(None);
            }
            // [MQTT-3.3.4-9] more unreleased QoS 2 messages than Receive Maximum: 0x93.
            let max = usize::from(self.limits.max_inbound_qos2);
            let open = &mut self.extras_mut().inbound_qos2;
            if open.len() >= max {
                return Err(ProtocolError::ReceiveMaximumExceeded(open.len()));
            }
            open.insert(packet_id);
        }
        Ok(Some(Event::Publish(publish)))
    }

    /// Queues PUBACK (QoS 1) or PUBREC (QoS 2) for a routed PUBLISH. `reason` is the routing
    /// outcome (MQTT 5: Success, No Matching Subscribers, Not Authorized, Quota Exceeded, …).
    /// An error PUBREC ends the QoS 2 exchange: the id is released at once (MQTT 5 §4.3.3).
    pub fn acknowledge_publish(&mut self, publish: &Publish, reason: ReasonCode) {
        self.acknowledge(publish.qos, publish.packet_id, reason);
    }

    /// [`Session::acknowledge_publish`] from the PUBLISH's QoS and packet id alone (for an
    /// acknowledgement the server held back).
    pub fn acknowledge(&mut self, qos: QoS, packet_id: Option<PacketId>, reason: ReasonCode) {
        let Some(packet_id) = packet_id else {
            return;
        };
        let reason = if self.version == ProtocolVersion::V5 {
            reason
        } else {
            ReasonCode::Success
        };
        let mut reply = ack(packet_id, reason);
        if reason.is_error() && self.problem_information_allowed() {
            reply.properties.reason_string = Some(explain(reason).to_string());
        }
        match qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => self.transmit_mut().push_back(Packet::PubAck(reply)),
            QoS::ExactlyOnce => {
                if reason.is_error() {
                    self.release_inbound_qos2(packet_id);
                }
                self.transmit_mut().push_back(Packet::PubRec(reply));
            }
        }
    }

    /// Forgets an inbound QoS 2 id whose PUBLISH the server could not take and will not
    /// acknowledge (the connection closes instead): the client's re-sent PUBLISH must be
    /// taken as new, not as a duplicate of a message that was never routed.
    pub fn abandon_inbound_qos2(&mut self, packet_id: PacketId) {
        self.release_inbound_qos2(packet_id);
    }

    /// [MQTT-4.3.3-2] PUBREL releases the id; PUBCOMP goes back even for an unknown id (a
    /// client that lost our PUBCOMP can finish), with 0x92 for MQTT 5.
    pub(super) fn handle_pubrel(&mut self, rel: Ack) {
        let known = self.release_inbound_qos2(rel.packet_id);
        if known && self.is_recording() {
            // The server sends PUBCOMP once the release is committed (see `Persist`).
            self.record(super::Persist::InboundReleased {
                packet_id: rel.packet_id,
            });
            return;
        }
        let reason = if known || !self.version.is_v5() {
            ReasonCode::Success
        } else {
            ReasonCode::PacketIdentifierNotFound
        };
        self.transmit_mut()
            .push_back(Packet::PubComp(ack(rel.packet_id, reason)));
    }

    /// [MQTT-3.3.2-8..12] resolves an MQTT 5 topic alias and strips it from the properties,
    /// since an alias is only meaningful on the connection that set it.
    fn resolve_topic_alias(&mut self, publish: &mut Publish) -> Result<(), ProtocolError> {
        // Read before taking: a write to an empty property block would allocate it.
        if publish.properties.topic_alias.is_none() {
            return Ok(());
        }
        let Some(alias) = publish.properties.topic_alias.take() else {
            return Ok(());
        };
        if alias == 0 || alias > self.limits.topic_alias_maximum {
            return Err(ProtocolError::TopicAliasInvalid(alias));
        }
        if publish.topic.is_empty() {
            let known = self
                .extras
                .as_deref()
                .and_then(|e| e.inbound_aliases.get(&alias));
            match known {
                Some(topic) => publish.topic = topic.clone(),
                None => return Err(ProtocolError::TopicAliasInvalid(alias)),
            }
        } else {
            let topic = publish.topic.clone();
            self.extras_mut().inbound_aliases.insert(alias, topic);
        }
        Ok(())
    }
}

/// A short human explanation of a refusal, sent as Reason String where the client allows it.
pub fn explain(reason: ReasonCode) -> &'static str {
    match reason {
        ReasonCode::NotAuthorized => "not authorized by the broker's ACL",
        ReasonCode::QuotaExceeded => "quota exceeded (a configured limit was reached)",
        ReasonCode::PayloadFormatInvalid => "payload is marked UTF-8 but is not valid UTF-8",
        ReasonCode::TopicNameInvalid => "topic name exceeds the configured limits",
        ReasonCode::TopicFilterInvalid => "topic filter exceeds the configured limits",
        ReasonCode::SharedSubscriptionsNotSupported => "shared subscriptions are disabled",
        ReasonCode::WildcardSubscriptionsNotSupported => "wildcard subscriptions are disabled",
        ReasonCode::ImplementationSpecificError => "refused by the broker",
        _ => "refused",
    }
}
