//! Application messages as they travel through the router.

use std::num::NonZeroU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use fulmar_proto::{Properties, Publish, QoS, TopicName};
use smallvec::SmallVec;

/// Identifies one session incarnation. A persistent session keeps its key across connections;
/// a new session (clean start, or after expiry) gets a fresh one, so a stale router entry can
/// never reach a new client.
///
/// Never zero, so that `Option<SessionKey>` is one word (see [`Message`]'s size).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionKey(pub NonZeroU64);

/// A message accepted from a publisher, shared (`Arc`) by every recipient.
///
/// # Invariants
/// - `topic` is a complete, validated topic name (topic aliases are already resolved).
/// - At most 104 bytes: its `Arc` allocation (two counts more) then stays within glibc's
///   fast bins (chunks up to 128 bytes). There is one allocation per routed message, freed
///   when the last recipient is done with it; allocated and freed in waves of up to the
///   inflight window, it overflows the per-thread cache, and a larger chunk then takes
///   malloc's and free's sorted-bin paths (~300 instructions per message more). Routed
///   messages are allocated through [`crate::spare_messages`], which reuses finished ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Topic the message was published to.
    pub topic: TopicName,
    /// Application payload, shared with the publisher's read buffer slice.
    pub payload: Bytes,
    /// QoS the publisher sent it with; recipients get `min(qos, granted)`.
    pub qos: QoS,
    /// The publisher's RETAIN flag.
    pub retain: bool,
    /// MQTT 5 properties to forward (empty for 3.1.1 publishers).
    pub properties: Properties,
    /// The publishing session, for MQTT 5 No Local; `None` for wills and broker messages.
    pub origin: Option<SessionKey>,
    /// MQTT 5 Message Expiry: when the message stops being deliverable [MQTT-3.3.2-5].
    pub expires_at: Option<Instant>,
}

const _: () = assert!(std::mem::size_of::<Message>() <= 104);

impl Message {
    /// A copy whose topic and payload own their bytes, for a message kept long (retained):
    /// decoded ones are slices of the read buffer they arrived in, which can be far larger
    /// than the message (reads of 4 KiB or more share a 256 KiB slab).
    pub fn detached(&self) -> Message {
        Message {
            topic: self.topic.detached(),
            payload: Bytes::copy_from_slice(&self.payload),
            properties: self.properties.clone(),
            ..*self
        }
    }

    /// Builds the routed message from an inbound PUBLISH whose topic is resolved.
    /// `now` starts the Message Expiry Interval, if the publisher set one.
    pub fn from_publish(publish: Publish, origin: Option<SessionKey>, now: Instant) -> Self {
        let expires_at = publish
            .properties
            .message_expiry_interval
            .map(|secs| now + Duration::from_secs(u64::from(secs)));
        Message {
            expires_at,
            topic: publish.topic,
            payload: publish.payload,
            qos: publish.qos,
            retain: publish.retain,
            properties: publish.properties,
            origin,
        }
    }

    /// Whether the message has expired at `now` and must not be delivered any more.
    pub fn is_expired(&self, now: Instant) -> bool {
        self.expires_at.is_some_and(|at| now >= at)
    }

    /// Seconds of expiry left at `now`, rounded up, for the forwarded Message Expiry
    /// Interval [MQTT-3.3.2-6]; `None` when the message does not expire.
    pub fn remaining_expiry_secs(&self, now: Instant) -> Option<u32> {
        self.expires_at.map(|at| {
            let left = at.saturating_duration_since(now);
            let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
            u32::try_from(secs).unwrap_or(u32::MAX).max(1)
        })
    }

    /// Bytes this message accounts for in queue limits (payload, topic and a fixed overhead
    /// for headers and bookkeeping).
    pub fn queued_size(&self) -> usize {
        const OVERHEAD: usize = 64;
        self.payload.len() + self.topic.as_str().len() + OVERHEAD
    }
}

/// One recipient's copy of a message: the shared message plus what differs per recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The shared message.
    pub message: Arc<Message>,
    /// Effective QoS: minimum of the publish QoS and the subscription's granted QoS.
    pub qos: QoS,
    /// RETAIN flag as sent to this recipient ([MQTT-3.3.1-8] set for retained messages sent
    /// because of a new subscription, [MQTT-3.3.1-9] clear for live traffic in 3.1.1).
    pub retain: bool,
    /// MQTT 5 subscription identifiers of the matching subscriptions.
    pub subscription_ids: SmallVec<[u32; 2]>,
    /// The shared subscription (`$share/{group}/{filter}`) this delivery was chosen for, so
    /// that it can go to another member if this session ends without acknowledging it.
    pub shared_filter: Option<Arc<str>>,
    /// Where this delivery sits in the durable store, when it was queued there for a
    /// persistent session (`None`: memory only).
    pub stored: Option<StoredRef>,
}

/// A delivery's place in the durable store: its position in the session's stored queue and
/// the id of the shared message body (one per message, however many sessions hold it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredRef {
    /// Sequence in the session's stored queue (also the send order of its inflight entry).
    pub seq: u64,
    /// The stored message body's id.
    pub body_id: u64,
}

impl Delivery {
    /// A delivery of `message` at `qos` with no subscription identifiers.
    pub fn new(message: Arc<Message>, qos: QoS, retain: bool) -> Self {
        Delivery {
            message,
            qos,
            retain,
            subscription_ids: SmallVec::new(),
            shared_filter: None,
            stored: None,
        }
    }

    /// Bytes this delivery accounts for in queue limits.
    pub fn queued_size(&self) -> usize {
        self.message.queued_size()
    }

    /// This delivery with a copy of its message that owns its bytes ([`Message::detached`]),
    /// for a delivery that may wait long: one decoded from a large read keeps the whole
    /// read slab alive, far more than its queue limits count.
    pub fn into_detached(self) -> Delivery {
        Delivery {
            message: Arc::new(self.message.detached()),
            ..self
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_detached_message_keeps_nothing_of_the_read_buffer() {
        let read = Bytes::from(vec![b'x'; 256 * 1024]);
        let topic = TopicName::from_bytes(read.slice(0..5)).unwrap();
        let message = Message {
            topic,
            payload: read.slice(5..4101),
            qos: QoS::AtLeastOnce,
            retain: true,
            properties: Properties::default(),
            origin: None,
            expires_at: None,
        };
        let detached = message.detached();
        assert_eq!(detached, message);
        let buffer = read.as_ptr_range();
        assert!(!buffer.contains(&detached.payload.as_ptr()));
        assert!(!buffer.contains(&detached.topic.as_bytes().as_ptr()));
    }
}
