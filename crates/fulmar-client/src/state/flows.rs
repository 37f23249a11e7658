//! The QoS 1 / QoS 2 message flows of [`ClientState`] in both directions, and resending after a
//! reconnect (see the diagrams in the parent module).

use fulmar_proto::{Ack, Packet, PacketId, Publish, QoS, ReasonCode};

use super::{ClientState, Stage, StateEvent};
use crate::ClientError;

impl ClientState {
    /// Sends `outgoing` again after CONNACK (see the module docs for the rules).
    pub(super) fn resend(&mut self, session_present: bool) {
        let mut completed = Vec::new();
        for entry in &mut self.outgoing {
            match entry.stage {
                Stage::Publish { sent } => {
                    // [MQTT-3.3.1-1] DUP marks a re-delivery the broker may have seen
                    entry.publish.dup = sent && session_present;
                    entry.stage = Stage::Publish { sent: true };
                    self.transmit
                        .push_back(Packet::Publish(entry.publish.clone()));
                }
                Stage::Release if session_present => {
                    let Some(id) = entry.publish.packet_id else {
                        continue;
                    };
                    self.transmit.push_back(Packet::PubRel(Ack::new(id)));
                }
                Stage::Release => completed.extend(entry.publish.packet_id),
            }
        }
        for id in completed {
            self.complete(id, QoS::ExactlyOnce, Stage::Release, ReasonCode::Success);
        }
    }

    pub(super) fn handle_publish(&mut self, publish: Publish) -> Result<(), ClientError> {
        if publish.properties.topic_alias.is_some() {
            // We send no Topic Alias Maximum, so the broker may not use aliases [MQTT-3.3.2-9].
            return Err(ClientError::Protocol(
                "topic alias the client did not allow",
            ));
        }
        match (publish.qos, publish.packet_id) {
            (QoS::AtMostOnce, _) => self.events.push_back(StateEvent::Message(publish)),
            (QoS::AtLeastOnce, Some(id)) => {
                self.events.push_back(StateEvent::Message(publish));
                self.transmit.push_back(Packet::PubAck(Ack::new(id)));
            }
            (QoS::ExactlyOnce, Some(id)) => {
                // [MQTT-4.3.3-2] deliver once; a resend before PUBREL only gets PUBREC again
                if self.incoming_qos2.insert(id) {
                    self.events.push_back(StateEvent::Message(publish));
                }
                self.transmit.push_back(Packet::PubRec(Ack::new(id)));
            }
            (_, None) => return Err(ClientError::Protocol("QoS > 0 PUBLISH without packet id")),
        }
        Ok(())
    }

    pub(super) fn handle_pubrec(&mut self, ack: Ack) {
        let id = ack.packet_id;
        let Some(index) = self
            .outgoing
            .iter()
            .position(|e| e.publish.packet_id == Some(id))
        else {
            // Unknown id: answer anyway so the broker can free it (5.0 section 4.3.3).
            let mut rel = Ack::new(id);
            if self.options.version.is_v5() {
                rel.reason = ReasonCode::PacketIdentifierNotFound;
            }
            self.transmit.push_back(Packet::PubRel(rel));
            return;
        };
        if self.outgoing[index].publish.qos != QoS::ExactlyOnce {
            return;
        }
        if ack.reason.is_error() {
            // 5.0 section 4.3.3: a failed PUBREC ends the flow.
            self.outgoing.remove(index);
            self.events.push_back(StateEvent::Published {
                packet_id: id,
                reason: ack.reason,
            });
            return;
        }
        self.outgoing[index].stage = Stage::Release;
        self.transmit.push_back(Packet::PubRel(Ack::new(id)));
    }

    /// Ends the flow of `id` if it is a `qos` message at `stage`.
    pub(super) fn complete(&mut self, id: PacketId, qos: QoS, stage: Stage, reason: ReasonCode) {
        let found = self.outgoing.iter().position(|e| {
            e.publish.packet_id == Some(id) && e.publish.qos == qos && e.stage == stage
        });
        if let Some(index) = found {
            self.outgoing.remove(index);
            self.events.push_back(StateEvent::Published {
                packet_id: id,
                reason,
            });
        }
    }
}
