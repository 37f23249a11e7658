//! What a connection does with each packet its client sends: PUBLISH is routed and
//! acknowledged (or held, see [`super::hold`]), SUBSCRIBE / UNSUBSCRIBE change the router and
//! the stored session, DISCONNECT and protocol errors end the run loop.

use std::time::Instant;

use fulmar_core::{Event, Message, ProtocolError};
use fulmar_proto::{decode, Packet, Properties, QoS, ReasonCode, SubAck, UnsubAck};

use super::{hold, Connection, Exit, Io};
use crate::metrics::bump;

impl Connection {
    /// Decodes and handles every whole packet in the read buffer.
    pub(super) fn handle_input<R, W>(
        &mut self,
        io: &mut Io<R, W>,
        max_packet: usize,
        now: Instant,
    ) -> Option<Exit> {
        loop {
            match decode(&mut io.rbuf, self.session.version(), max_packet) {
                Ok(Some(packet)) => {
                    if let Some(exit) = self.handle_packet(packet, now) {
                        return Some(exit);
                    }
                    // Over the publish rate, or holding for a congested subscriber: leave the
                    // rest buffered until the pause ends.
                    if self.reading_paused(now) {
                        return None;
                    }
                }
                Ok(None) => return None,
                Err(e) => return Some(Exit::Violation(e.into())),
            }
        }
    }

    /// Routes an accepted PUBLISH and acknowledges it when the spec and the store allow.
    fn handle_publish(&mut self, publish: fulmar_proto::Publish, now: Instant) -> Option<Exit> {
        bump(&self.broker.metrics().messages_received);
        let topic = publish.topic.as_str();
        if !self.broker.security().may_publish(
            &self.username.with_client_id(self.mailbox.client_id()),
            topic,
        ) {
            // 3.1.1 has no way to refuse: the message is dropped (and still
            // acknowledged); MQTT 5 answers 0x87 for QoS 1/2.
            tracing::info!(client_id = %self.client_id(), topic, "publish denied by ACL");
            bump(&self.broker.metrics().publishes_denied);
            let denied = (publish.qos, publish.packet_id, ReasonCode::NotAuthorized);
            self.hold.acknowledge(&mut self.session, denied, None, None);
            return None;
        }
        let (qos, packet_id) = (publish.qos, publish.packet_id);
        let message = Message::from_publish(publish, Some(self.key), now);
        let mut extra = Vec::new();
        if let (QoS::ExactlyOnce, Some(packet_id), Some(client_id)) =
            (qos, packet_id, self.stored_id())
        {
            // [MQTT-4.3.3-2] the id survives a restart, so a re-sent PUBLISH is
            // still recognised; PUBREC waits for this commit.
            extra.push(fulmar_store::Mutation::PutInboundQos2 {
                client_id,
                packet_id,
            });
        }
        let published = self.broker.publish_with(message, extra);
        if let Some(refused) = published.refused {
            if !self.session.version().is_v5() {
                // 3.1.1 has no negative PUBACK, and acknowledging would lose the message:
                // close without acknowledging, so the client sends it again later.
                if let (QoS::ExactlyOnce, Some(packet_id)) = (qos, packet_id) {
                    self.session.abandon_inbound_qos2(packet_id);
                }
                return Some(Exit::CannotStore);
            }
            let ack = (qos, packet_id, refused);
            self.hold.acknowledge(&mut self.session, ack, None, None);
            return None;
        }
        // MQTT 5: 0x10 tells the publisher nobody received it.
        let reason = if published.recipients == 0 {
            ReasonCode::NoMatchingSubscribers
        } else {
            ReasonCode::Success
        };
        // Never wait for our own queue: it drains only as we read our own acks.
        let own = self.key;
        let congested = published
            .congested
            .into_iter()
            .filter(|(key, _)| *key != own)
            .map(|(_, mailbox)| mailbox);
        let ack = (qos, packet_id, reason);
        (self.hold).acknowledge(&mut self.session, ack, congested, published.ticket);
        None
    }

    fn handle_packet(&mut self, packet: Packet, now: Instant) -> Option<Exit> {
        let handled = self.session.handle(packet, now);
        if let Some(gate) = self.flush_persist() {
            self.write_gate = Some(gate);
        }
        let event = match handled {
            Ok(Some(event)) => event,
            Ok(None) => return None,
            Err(e) => return Some(Exit::Violation(e)),
        };
        match event {
            Event::Publish(publish) => return self.handle_publish(publish, now),
            Event::Subscribe(subscribe) => {
                let subscriber = (self.key, &self.mailbox.mailbox, &self.username);
                let reasons = match self
                    .broker
                    .subscribe(subscriber, &mut self.session, &subscribe)
                {
                    Ok(reasons) => reasons,
                    Err(e) => return Some(Exit::Violation(e)),
                };
                let mut properties = Properties::default();
                let refused = reasons.iter().find(|r| r.is_error());
                if let Some(&refused) =
                    refused.filter(|_| self.session.problem_information_allowed())
                {
                    properties.reason_string =
                        Some(fulmar_core::session::explain(refused).to_string());
                }
                let subscription_id = subscribe.properties.subscription_identifiers.first();
                let granted = subscribe
                    .filters
                    .iter()
                    .zip(&reasons)
                    .filter(|(_, reason)| !reason.is_error())
                    .filter_map(|((filter, _), _)| {
                        let options = *self.session.subscriptions().get(filter)?;
                        Some((filter.clone(), Some((options, subscription_id.copied()))))
                    })
                    .collect();
                let ticket = self.store_subscriptions(granted);
                let suback = SubAck {
                    packet_id: subscribe.packet_id,
                    properties,
                    reasons,
                };
                let reply = hold::Reply::Packet(Box::new(Packet::SubAck(suback)));
                self.hold.reply(&mut self.session, reply, ticket);
            }
            Event::Unsubscribe(unsubscribe) => {
                let reasons =
                    self.broker
                        .unsubscribe(self.key, &mut self.session, &unsubscribe.filters);
                let removed = unsubscribe
                    .filters
                    .iter()
                    .zip(&reasons)
                    .filter(|(_, reason)| **reason == ReasonCode::Success)
                    .map(|(filter, _)| (filter.clone(), None))
                    .collect();
                let ticket = self.store_subscriptions(removed);
                let unsuback = UnsubAck {
                    packet_id: unsubscribe.packet_id,
                    properties: Properties::default(),
                    reasons,
                };
                let reply = hold::Reply::Packet(Box::new(Packet::UnsubAck(unsuback)));
                self.hold.reply(&mut self.session, reply, ticket);
            }
            Event::Disconnect(disconnect) => {
                // [MQTT-3.14.2-2] a session expiry may change on DISCONNECT, but not from 0.
                if let Some(expiry) = disconnect.properties.session_expiry_interval {
                    if self.expiry_secs == 0 && expiry != 0 {
                        return Some(Exit::Violation(ProtocolError::SessionExpiryAfterZero));
                    }
                    self.expiry_secs =
                        expiry.min(self.broker.config().mqtt.max_session_expiry_secs);
                }
                // [MQTT-3.14.4-3] a clean DISCONNECT discards the will, unless MQTT 5 0x04.
                let with_will = disconnect.reason == ReasonCode::DisconnectWithWillMessage;
                return Some(Exit::ClientDisconnect { with_will });
            }
            // No authentication method is offered, so CONNECT never starts an exchange and
            // any AUTH is a protocol error (MQTT 5 §4.12).
            Event::Auth(_) => return Some(Exit::Violation(ProtocolError::UnexpectedAuth)),
        }
        None
    }
}
