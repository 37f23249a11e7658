//! The records the store keeps, and the mutations that change them.
//!
//! Everything here is plain data with validated `fulmar_proto` types; no backend type appears.
//! Times are absolute wall-clock Unix milliseconds chosen by the caller (the store never reads
//! a clock), because an `Instant` means nothing after a restart.

use std::ops::RangeInclusive;
use std::sync::Arc;

use bytes::Bytes;
use fulmar_proto::{PacketId, Properties, ProtocolVersion, QoS, SubscriptionOptions};
use fulmar_proto::{TopicFilter, TopicName};

/// A client identifier, cheap to clone into many mutations.
pub type ClientId = Arc<str>;

/// Identifies one stored message body. Allocated by [`crate::Store::next_message_id`], unique
/// for the life of the store (also across restarts).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId(pub u64);

/// One application message as stored: written once however many queues, inflight windows,
/// retained entries or wills refer to it.
///
/// # Invariants
/// Two bodies with the same `id` are the same message; the store writes the first one it sees
/// and ignores the content of later ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageBody {
    /// Store-wide identity (see [`MessageId`]).
    pub id: MessageId,
    /// Topic the message was published to (aliases resolved).
    pub topic: TopicName,
    /// Application payload.
    pub payload: Bytes,
    /// QoS the publisher used.
    pub qos: QoS,
    /// The publisher's RETAIN flag.
    pub retain: bool,
    /// MQTT 5 PUBLISH properties to forward (stored encoded as a PUBLISH property block).
    pub properties: Properties,
    /// Message Expiry as absolute Unix milliseconds; `None` never expires.
    pub expires_at_ms: Option<u64>,
}

impl MessageBody {
    /// Bytes this message accounts for in queue limits, the same measure as
    /// `fulmar_core::Message::queued_size` (payload, topic, 64 bytes of overhead).
    pub fn queued_size(&self) -> u64 {
        const OVERHEAD: u64 = 64;
        self.payload.len() as u64 + self.topic.as_str().len() as u64 + OVERHEAD
    }
}

/// A persistent session's own record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// The client identifier (the key of everything the session owns).
    pub client_id: ClientId,
    /// Session Expiry Interval, seconds; `u32::MAX` never expires.
    pub expiry_interval_secs: u32,
    /// When the last connection ended (Unix ms); `None` while connected. After a restart the
    /// session expires at `last_disconnect_ms + expiry`; a session stored as connected was cut
    /// off by the crash, so the broker takes the restart time as its disconnect time.
    pub last_disconnect_ms: Option<u64>,
    /// Protocol version of the last connection.
    pub protocol_version: ProtocolVersion,
    /// The authenticated username of the last connection: ACL read checks of the restored
    /// session's subscriptions use it after a restart.
    pub username: Option<String>,
}

/// One subscription of a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionRecord {
    /// The filter (may be `$share/…`).
    pub filter: TopicFilter,
    /// Granted options (QoS, No Local, Retain As Published, Retain Handling).
    pub options: SubscriptionOptions,
    /// MQTT 5 Subscription Identifier.
    pub subscription_id: Option<u32>,
}

/// One recipient's copy of a message: the shared body plus what differs per recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedDelivery {
    /// The shared body.
    pub message: Arc<MessageBody>,
    /// Effective QoS for this recipient.
    pub qos: QoS,
    /// RETAIN flag as it will be sent to this recipient.
    pub retain: bool,
    /// MQTT 5 subscription identifiers of the matching subscriptions.
    pub subscription_ids: Vec<u32>,
}

/// Where an outbound QoS 1/2 exchange stands (mirrors `fulmar_core::OutboundState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InflightState {
    /// QoS 1 PUBLISH sent; re-sent with DUP on resume.
    AwaitingPubAck,
    /// QoS 2 PUBLISH sent; re-sent with DUP on resume.
    AwaitingPubRec,
    /// PUBREL sent; PUBREL is re-sent on resume, never the PUBLISH [MQTT-4.3.3-3].
    AwaitingPubComp,
}

/// One open outbound exchange of a session.
///
/// # Invariants
/// `delivery` is `Some` exactly for `AwaitingPubAck` and `AwaitingPubRec` (checked on apply).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InflightRecord {
    /// The packet id the exchange uses.
    pub packet_id: PacketId,
    /// Send order: the snapshot lists a session's inflight by this, so redelivery keeps the
    /// original order [MQTT-4.6.0-1]. Callers use the queue sequence the delivery came from.
    pub seq: u64,
    /// Progress of the exchange.
    pub state: InflightState,
    /// The message, while a re-send of the PUBLISH is still possible.
    pub delivery: Option<QueuedDelivery>,
}

/// A will whose delay had not passed when its connection ended [MQTT-3.1.3-9].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WillRecord {
    /// The will message (its topic, QoS, retain and properties, without Will Delay).
    pub message: Arc<MessageBody>,
    /// When to publish it (Unix ms), unless the session resumes or ends first.
    pub publish_at_ms: u64,
}

/// One change to the stored state. A batch of them is applied atomically by
/// [`crate::Store::apply`]: all of it becomes visible (and, per the durability, durable) or
/// none of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mutation {
    /// Creates or replaces a session record.
    PutSession(SessionRecord),
    /// Removes a session and everything it owns: subscriptions, queue, inflight, inbound
    /// QoS 2 ids and its will (publish the will before deleting the session).
    DeleteSession {
        /// The session.
        client_id: ClientId,
    },
    /// Adds or replaces (same filter) a subscription.
    PutSubscription {
        /// The owning session (must exist).
        client_id: ClientId,
        /// The subscription.
        subscription: SubscriptionRecord,
    },
    /// Removes a subscription, if present.
    DeleteSubscription {
        /// The owning session.
        client_id: ClientId,
        /// Its filter.
        filter: TopicFilter,
    },
    /// Appends a delivery to a session's queue at `seq`. Callers allocate `seq` increasing
    /// per session; the queue is read back in `seq` order.
    Enqueue {
        /// The owning session (must exist).
        client_id: ClientId,
        /// Position in the session's queue.
        seq: u64,
        /// What to deliver; its body is stored once however many queues hold it.
        delivery: QueuedDelivery,
    },
    /// Removes the queued deliveries whose sequence lies in `seqs` (a single one: `s..=s`).
    Dequeue {
        /// The owning session.
        client_id: ClientId,
        /// Sequences to remove.
        seqs: RangeInclusive<u64>,
    },
    /// Creates or replaces (same packet id) an outbound inflight exchange.
    PutInflight {
        /// The owning session (must exist).
        client_id: ClientId,
        /// The exchange.
        inflight: InflightRecord,
    },
    /// Ends an outbound exchange (PUBACK or PUBCOMP received).
    DeleteInflight {
        /// The owning session.
        client_id: ClientId,
        /// The exchange's packet id.
        packet_id: PacketId,
    },
    /// Records an inbound QoS 2 packet id awaiting PUBREL [MQTT-4.3.3-2].
    PutInboundQos2 {
        /// The owning session (must exist).
        client_id: ClientId,
        /// The id.
        packet_id: PacketId,
    },
    /// Forgets an inbound QoS 2 packet id (PUBREL received).
    DeleteInboundQos2 {
        /// The owning session.
        client_id: ClientId,
        /// The id.
        packet_id: PacketId,
    },
    /// Sets the retained message of the body's topic, replacing any previous one.
    PutRetained(Arc<MessageBody>),
    /// Removes the retained message of a topic, if any.
    DeleteRetained {
        /// The topic.
        topic: TopicName,
    },
    /// Stores a session's delayed will, replacing any previous one.
    PutWill {
        /// The owning session (must exist).
        client_id: ClientId,
        /// The will.
        will: WillRecord,
    },
    /// Removes a session's delayed will (published, or cancelled by a resume).
    DeleteWill {
        /// The owning session.
        client_id: ClientId,
    },
}

/// Everything stored, as read at startup by [`crate::Store::load_all`]. Message bodies
/// referenced from several places are one shared `Arc`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Every session with what it owns, ordered by client id.
    pub sessions: Vec<SessionSnapshot>,
    /// Retained messages, ordered by topic (the topic is the body's).
    pub retained: Vec<Arc<MessageBody>>,
}

/// One stored session and everything it owns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionSnapshot {
    /// The session record.
    pub session: SessionRecord,
    /// Subscriptions, ordered by filter.
    pub subscriptions: Vec<SubscriptionRecord>,
    /// Queued deliveries with their sequence, in sequence order.
    pub queue: Vec<(u64, QueuedDelivery)>,
    /// Open outbound exchanges in send order (`seq`).
    pub inflight: Vec<InflightRecord>,
    /// Inbound QoS 2 ids awaiting PUBREL, ascending.
    pub inbound_qos2: Vec<PacketId>,
    /// The delayed will, if one is pending.
    pub will: Option<WillRecord>,
}

impl SessionSnapshot {
    /// The first sequence the broker may use for new queue entries of this session.
    pub fn next_seq(&self) -> u64 {
        let queued = self.queue.last().map(|(seq, _)| *seq);
        let inflight = self.inflight.iter().map(|i| i.seq).max();
        queued.max(inflight).map_or(0, |s| s + 1)
    }
}
