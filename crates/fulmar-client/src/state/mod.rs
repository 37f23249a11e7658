//! [`ClientState`]: the sans-IO MQTT client. Packets and timestamps go in; packets to send,
//! [`StateEvent`]s and the next deadline come out. No sockets, no runtime, no clock.
//!
//! ```text
//!                connect()                 CONNACK Success
//!  Disconnected ──────────► Connecting ─────────────────────► Connected
//!       ▲                       │ CONNACK failure / lost            │
//!       └───────────────────────┴───────── connection_lost() ◄──────┘
//! ```
//!
//! Outgoing QoS 1/2 messages live in `outgoing`, in publish order, until their flow completes:
//!
//! ```text
//!  QoS 1:  Publish ──PUBACK──► done
//!  QoS 2:  Publish ──PUBREC──► Release (PUBREL sent) ──PUBCOMP──► done
//! ```
//!
//! A message published while disconnected waits in `outgoing` unsent and goes out after CONNACK.
//! After a reconnect every message of `outgoing` is sent again in order: PUBLISH with DUP if it
//! was sent before, PUBREL for those in Release [MQTT-4.4.0-1]. If the broker has no session for
//! us (Session Present 0, e.g. it restarted), sent-but-unacknowledged messages are published
//! afresh (DUP 0) so none is lost (at least once), and those in Release are complete: the broker
//! had taken ownership of them with PUBREC.

use std::collections::{HashSet, VecDeque};
use std::time::{Duration, Instant};

use fulmar_proto::{
    Ack, ConnAck, Disconnect, Packet, PacketId, Properties, ProtocolVersion, Publish, QoS,
    ReasonCode, SubAck, Subscribe, SubscriptionOptions, TopicFilter, UnsubAck, Unsubscribe,
};

use crate::{ClientError, ConnectOptions, OutgoingMessage};

mod flows;
#[cfg(test)]
mod tests;

/// Stands in for a packet id before one is allocated (only for size and validity checks).
const PLACEHOLDER_ID: PacketId = match PacketId::new(1) {
    Some(id) => id,
    None => panic!("1 is a valid packet id"),
};

/// Where the connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// No connection; publishes of QoS > 0 are queued in the in-flight window.
    Disconnected,
    /// CONNECT handed out, waiting for CONNACK.
    Connecting,
    /// CONNACK Success received.
    Connected,
}

/// What the state machine reports to its driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateEvent {
    /// CONNACK Success.
    Connected {
        /// The broker resumed our session (subscriptions are still there).
        session_present: bool,
        /// CONNACK properties (5.0).
        properties: Properties,
    },
    /// An application message from the broker, to hand to the user exactly as often as the
    /// QoS promises (QoS 2: once, even if the broker sends it again before PUBREL).
    Message(Publish),
    /// The flow of an outgoing QoS 1/2 message ended (PUBACK, PUBREC with an error, PUBCOMP).
    Published {
        /// The id the message had.
        packet_id: PacketId,
        /// Success, or the broker's failure reason (5.0).
        reason: ReasonCode,
    },
    /// The answer to one of our SUBSCRIBEs.
    SubAck(SubAck),
    /// The answer to one of our UNSUBSCRIBEs.
    UnsubAck(UnsubAck),
}

/// Where an outgoing QoS 1/2 message is in its flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// PUBLISH to send (`sent` false) or sent and waiting for PUBACK / PUBREC.
    Publish { sent: bool },
    /// PUBREC received, PUBREL sent, waiting for PUBCOMP.
    Release,
}

#[derive(Debug)]
struct Outgoing {
    publish: Publish,
    stage: Stage,
}

/// The client side of one MQTT session, across any number of connections.
///
/// # Invariants
/// - Packet ids in `outgoing` and `pending_acks` are pairwise distinct.
/// - `outgoing.len() <= inflight_limit()` unless the server lowered its Receive Maximum after
///   messages were queued; then nothing new is accepted until it drains.
/// - Outside `Connected`, `transmit` holds at most the CONNECT.
#[derive(Debug)]
pub struct ClientState {
    /// What CONNECT carries; `version` also selects the codec.
    options: ConnectOptions,
    /// Connection phase.
    phase: Phase,
    /// The last packet id handed out; allocation continues after it, skipping ids in use.
    last_id: u16,
    /// Outgoing QoS 1/2 messages not yet complete, in publish order (resent in this order).
    outgoing: VecDeque<Outgoing>,
    /// Incoming QoS 2 ids received but not yet released by PUBREL: a PUBLISH with one of these
    /// ids is a duplicate and is not delivered again [MQTT-4.3.3-2].
    incoming_qos2: HashSet<PacketId>,
    /// SUBSCRIBE / UNSUBSCRIBE ids waiting for their ack.
    pending_acks: HashSet<PacketId>,
    /// Packets to send, oldest first.
    transmit: VecDeque<Packet>,
    /// Events for the driver, oldest first.
    events: VecDeque<StateEvent>,
    /// Keep-alive actually in force (5.0 Server Keep Alive may replace ours); zero: none.
    keep_alive: Duration,
    /// When we last handed out a packet (keep-alive counts from there).
    last_sent: Instant,
    /// When the unanswered PINGREQ was sent.
    ping_sent: Option<Instant>,
    /// The server's Receive Maximum (5.0), 65535 otherwise.
    server_receive_max: u16,
}

impl ClientState {
    /// A disconnected client with these options; `now` starts the keep-alive clock.
    pub fn new(options: ConnectOptions, now: Instant) -> Self {
        Self {
            keep_alive: Duration::from_secs(options.keep_alive.into()),
            options,
            phase: Phase::Disconnected,
            last_id: 0,
            outgoing: VecDeque::new(),
            incoming_qos2: HashSet::new(),
            pending_acks: HashSet::new(),
            transmit: VecDeque::new(),
            events: VecDeque::new(),
            last_sent: now,
            ping_sent: None,
            server_receive_max: u16::MAX,
        }
    }

    /// The protocol version, for the codec.
    pub fn version(&self) -> ProtocolVersion {
        self.options.version
    }

    /// The options this client connects with.
    pub fn options(&self) -> &ConnectOptions {
        &self.options
    }

    /// The connection phase.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Starts a connection on a fresh transport: queues CONNECT.
    pub fn connect(&mut self, now: Instant) {
        self.transmit.clear();
        self.phase = Phase::Connecting;
        self.keep_alive = Duration::from_secs(self.options.keep_alive.into());
        self.ping_sent = None;
        self.server_receive_max = u16::MAX;
        self.last_sent = now;
        let connect = self.options.connect_packet();
        self.transmit.push_back(Packet::from(connect));
    }

    /// The transport is gone. Returns the ids of SUBSCRIBE/UNSUBSCRIBE requests that will never
    /// be answered (they are not resent: MQTT resends only PUBLISH and PUBREL).
    pub fn connection_lost(&mut self) -> Vec<PacketId> {
        self.phase = Phase::Disconnected;
        self.transmit.clear();
        self.ping_sent = None;
        self.pending_acks.drain().collect()
    }

    /// Queues DISCONNECT (e.g. with a 5.0 Session Expiry Interval of 0 to end the session) and
    /// ends the connection from the protocol's point of view.
    pub fn disconnect(&mut self, packet: Disconnect) {
        if self.phase == Phase::Connected {
            self.transmit.push_back(Packet::Disconnect(packet));
        }
        self.phase = Phase::Disconnected;
    }

    /// The most QoS 1/2 messages allowed in flight now.
    pub fn inflight_limit(&self) -> usize {
        usize::from(
            self.options
                .max_inflight
                .min(self.server_receive_max)
                .max(1),
        )
    }

    /// True if [`ClientState::publish`] accepts a QoS 1/2 message now.
    pub fn can_publish(&self) -> bool {
        self.outgoing.len() < self.inflight_limit()
    }

    /// Number of outgoing QoS 1/2 messages not yet complete.
    pub fn inflight(&self) -> usize {
        self.outgoing.len()
    }

    /// Publishes a message. QoS 0 needs a connection; QoS 1/2 are queued while disconnected and
    /// sent after CONNACK. Returns the packet id (QoS > 0), whose flow ends with
    /// [`StateEvent::Published`].
    pub fn publish(&mut self, message: OutgoingMessage) -> Result<Option<PacketId>, ClientError> {
        let publish = Publish {
            dup: false,
            qos: message.qos,
            retain: message.retain,
            topic: message.topic,
            // A placeholder for the encodability check; the real id is allocated below.
            packet_id: (message.qos != QoS::AtMostOnce).then_some(PLACEHOLDER_ID),
            properties: message.properties,
            payload: message.payload,
        };
        let mut publish = check_encodable(publish, self.options.version)?;
        if message.qos == QoS::AtMostOnce {
            if self.phase != Phase::Connected {
                return Err(ClientError::NotConnected);
            }
            self.transmit.push_back(Packet::Publish(publish));
            return Ok(None);
        }
        if !self.can_publish() {
            return Err(ClientError::InflightFull);
        }
        let id = self.allocate_id()?;
        publish.packet_id = Some(id);
        let sent = self.phase == Phase::Connected;
        if sent {
            self.transmit.push_back(Packet::Publish(publish.clone()));
        }
        self.outgoing.push_back(Outgoing {
            publish,
            stage: Stage::Publish { sent },
        });
        Ok(Some(id))
    }

    /// Sends SUBSCRIBE; the answer comes as [`StateEvent::SubAck`] with the returned id.
    pub fn subscribe(
        &mut self,
        filters: Vec<(TopicFilter, SubscriptionOptions)>,
        properties: Properties,
    ) -> Result<PacketId, ClientError> {
        self.require_connected()?;
        let packet_id = self.allocate_id()?;
        let packet = Packet::Subscribe(Subscribe {
            packet_id,
            properties,
            filters,
        });
        fulmar_proto::encoded_len(&packet, self.options.version)?;
        self.pending_acks.insert(packet_id);
        self.transmit.push_back(packet);
        Ok(packet_id)
    }

    /// Sends UNSUBSCRIBE; the answer comes as [`StateEvent::UnsubAck`] with the returned id.
    pub fn unsubscribe(&mut self, filters: Vec<TopicFilter>) -> Result<PacketId, ClientError> {
        self.require_connected()?;
        let packet_id = self.allocate_id()?;
        self.pending_acks.insert(packet_id);
        self.transmit.push_back(Packet::Unsubscribe(Unsubscribe {
            packet_id,
            properties: Properties::default(),
            filters,
        }));
        Ok(packet_id)
    }

    /// The next packet to write; handing it out counts as sending it for keep-alive.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Packet> {
        let packet = self.transmit.pop_front()?;
        self.last_sent = now;
        Some(packet)
    }

    /// The next event for the driver.
    pub fn poll_event(&mut self) -> Option<StateEvent> {
        self.events.pop_front()
    }

    /// When [`ClientState::handle_timeout`] must be called next, if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.phase != Phase::Connected || self.keep_alive.is_zero() {
            return None;
        }
        Some(match self.ping_sent {
            Some(sent) => sent + self.keep_alive,
            None => self.last_sent + self.keep_alive,
        })
    }

    /// Keep-alive: sends PINGREQ when nothing was sent for the interval; fails when a PINGREQ
    /// stayed unanswered for a whole interval.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), ClientError> {
        let Some(deadline) = self.poll_timeout() else {
            return Ok(());
        };
        if now < deadline {
            return Ok(());
        }
        if self.ping_sent.is_some() {
            return Err(ClientError::KeepAliveTimeout);
        }
        self.ping_sent = Some(now);
        self.transmit.push_back(Packet::PingReq);
        Ok(())
    }

    /// Handles one packet from the broker. An error means the connection must be closed.
    pub fn handle(&mut self, packet: Packet) -> Result<(), ClientError> {
        if self.phase == Phase::Connecting {
            return match packet {
                Packet::ConnAck(connack) => self.handle_connack(connack),
                // [MQTT-3.2.0-1] the first packet from the server is CONNACK
                _ => Err(ClientError::Protocol(
                    "first packet from the broker is not CONNACK",
                )),
            };
        }
        if self.phase == Phase::Disconnected {
            return Ok(()); // late packets after our DISCONNECT
        }
        match packet {
            Packet::Publish(publish) => self.handle_publish(publish),
            Packet::PubAck(ack) => {
                self.complete(
                    ack.packet_id,
                    QoS::AtLeastOnce,
                    Stage::Publish { sent: true },
                    ack.reason,
                );
                Ok(())
            }
            Packet::PubRec(ack) => {
                self.handle_pubrec(ack);
                Ok(())
            }
            Packet::PubRel(ack) => {
                // [MQTT-4.3.3-2] the id may be reused for a new message from now on
                self.incoming_qos2.remove(&ack.packet_id);
                self.transmit
                    .push_back(Packet::PubComp(Ack::new(ack.packet_id)));
                Ok(())
            }
            Packet::PubComp(ack) => {
                self.complete(ack.packet_id, QoS::ExactlyOnce, Stage::Release, ack.reason);
                Ok(())
            }
            Packet::SubAck(ack) => {
                if self.pending_acks.remove(&ack.packet_id) {
                    self.events.push_back(StateEvent::SubAck(ack));
                }
                Ok(())
            }
            Packet::UnsubAck(ack) => {
                if self.pending_acks.remove(&ack.packet_id) {
                    self.events.push_back(StateEvent::UnsubAck(ack));
                }
                Ok(())
            }
            Packet::PingResp => {
                self.ping_sent = None;
                Ok(())
            }
            Packet::Disconnect(disconnect) => {
                self.phase = Phase::Disconnected;
                Err(ClientError::ServerDisconnect {
                    reason: disconnect.reason,
                    text: disconnect.properties.into_values().reason_string,
                })
            }
            Packet::ConnAck(_) => Err(ClientError::Protocol("second CONNACK")),
            Packet::Auth(_) => Err(ClientError::Protocol(
                "AUTH without an authentication method",
            )),
            Packet::Connect(_)
            | Packet::Subscribe(_)
            | Packet::Unsubscribe(_)
            | Packet::PingReq => Err(ClientError::Protocol("client-only packet from the broker")),
        }
    }

    fn handle_connack(&mut self, connack: ConnAck) -> Result<(), ClientError> {
        if connack.reason.is_error() {
            self.phase = Phase::Disconnected;
            self.transmit.clear();
            return Err(ClientError::Refused(connack.reason));
        }
        self.phase = Phase::Connected;
        let props = &connack.properties;
        if let Some(keep_alive) = props.server_keep_alive {
            // MQTT 5.0 section 3.2.2.3.14: the client must use the server's value.
            self.keep_alive = Duration::from_secs(keep_alive.into());
        }
        self.server_receive_max = props.receive_maximum.unwrap_or(u16::MAX);
        if let Some(id) = &props.assigned_client_identifier {
            self.options.client_id.clone_from(id);
        }
        if !connack.session_present {
            // The broker has no state for us: QoS 2 ids it may resend are new messages.
            self.incoming_qos2.clear();
        }
        self.resend(connack.session_present);
        self.events.push_back(StateEvent::Connected {
            session_present: connack.session_present,
            properties: connack.properties,
        });
        Ok(())
    }

    fn require_connected(&self) -> Result<(), ClientError> {
        if self.phase == Phase::Connected {
            Ok(())
        } else {
            Err(ClientError::NotConnected)
        }
    }

    /// The next free packet id after the last one handed out [MQTT-2.3.1-2].
    fn allocate_id(&mut self) -> Result<PacketId, ClientError> {
        for _ in 0..u16::MAX {
            self.last_id = self.last_id.checked_add(1).unwrap_or(1);
            let Some(id) = PacketId::new(self.last_id) else {
                continue;
            };
            let in_use = self.pending_acks.contains(&id)
                || self
                    .outgoing
                    .iter()
                    .any(|e| e.publish.packet_id == Some(id));
            if !in_use {
                return Ok(id);
            }
        }
        Err(ClientError::InflightFull)
    }
}

/// Fails with the encoder's complaint now, rather than when the message is written (where an
/// error would end the connection and the message would be resent forever).
fn check_encodable(publish: Publish, version: ProtocolVersion) -> Result<Publish, ClientError> {
    let packet = Packet::Publish(publish);
    fulmar_proto::encoded_len(&packet, version)?;
    match packet {
        Packet::Publish(publish) => Ok(publish),
        _ => Err(ClientError::Protocol("unreachable: not a PUBLISH")),
    }
}
