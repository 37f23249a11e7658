//! Conversions between the broker's in-memory messages and the store's records.
//!
//! Times: a message's expiry is an `Instant` in memory and absolute Unix milliseconds in the
//! store; both directions go through "now" on each clock.

use std::sync::Arc;
use std::time::{Duration, Instant};

use fulmar_core::{Delivery, InflightEntry, Message, OutboundState, StoredRef};
use fulmar_store::{InflightRecord, InflightState, MessageBody, MessageId, QueuedDelivery};

/// The stored body of `message` under `id`.
pub fn body_of(message: &Message, id: u64, now: Instant, now_ms: u64) -> Arc<MessageBody> {
    let expires_at_ms = message.expires_at.map(|at| {
        let left = at.saturating_duration_since(now);
        now_ms.saturating_add(u64::try_from(left.as_millis()).unwrap_or(u64::MAX))
    });
    Arc::new(MessageBody {
        id: MessageId(id),
        topic: message.topic.clone(),
        payload: message.payload.clone(),
        qos: message.qos,
        retain: message.retain,
        properties: message.properties.clone(),
        expires_at_ms,
    })
}

/// The in-memory message of a stored body. Its origin is unknown after a restart (MQTT 5
/// No Local then cannot apply to it any more; it was already applied when it was queued).
pub fn message_of(body: &MessageBody, now: Instant, now_ms: u64) -> Message {
    // An expiry already past stays in the past (where the clock allows), so that the message
    // counts as expired at `now` and at any later instant.
    let expires_at = body.expires_at_ms.map(|at| match at.checked_sub(now_ms) {
        Some(left) => now + Duration::from_millis(left),
        None => now
            .checked_sub(Duration::from_millis(now_ms - at))
            .unwrap_or(now),
    });
    Message {
        topic: body.topic.clone(),
        payload: body.payload.clone(),
        qos: body.qos,
        retain: body.retain,
        properties: body.properties.clone(),
        origin: None,
        expires_at,
    }
}

/// One recipient's stored copy of `delivery`, sharing `body`.
pub fn queued_of(delivery: &Delivery, body: Arc<MessageBody>) -> QueuedDelivery {
    QueuedDelivery {
        message: body,
        qos: delivery.qos,
        retain: delivery.retain,
        subscription_ids: delivery.subscription_ids.to_vec(),
    }
}

/// The in-memory delivery of a stored one, at queue position `seq`.
pub fn delivery_of(queued: &QueuedDelivery, message: Arc<Message>, seq: u64) -> Delivery {
    let mut delivery = Delivery::new(message, queued.qos, queued.retain);
    delivery
        .subscription_ids
        .extend(queued.subscription_ids.iter().copied());
    delivery.stored = Some(StoredRef {
        seq,
        body_id: queued.message.id.0,
    });
    delivery
}

/// The stored form of an inflight exchange.
pub fn inflight_record(
    packet_id: fulmar_proto::PacketId,
    seq: u64,
    state: OutboundState,
    delivery: Option<QueuedDelivery>,
) -> InflightRecord {
    InflightRecord {
        packet_id,
        seq,
        state: match state {
            OutboundState::AwaitingPubAck => InflightState::AwaitingPubAck,
            OutboundState::AwaitingPubRec => InflightState::AwaitingPubRec,
            OutboundState::AwaitingPubComp => InflightState::AwaitingPubComp,
        },
        delivery,
    }
}

/// The in-memory exchange of a stored one (`message` is its body as a message, if any).
pub fn inflight_entry(record: &InflightRecord, message: Option<Arc<Message>>) -> InflightEntry {
    let delivery = match (&record.delivery, message) {
        (Some(queued), Some(message)) => Some(delivery_of(queued, message, record.seq)),
        _ => None,
    };
    InflightEntry {
        packet_id: record.packet_id,
        delivery,
        state: match record.state {
            InflightState::AwaitingPubAck => OutboundState::AwaitingPubAck,
            InflightState::AwaitingPubRec => OutboundState::AwaitingPubRec,
            InflightState::AwaitingPubComp => OutboundState::AwaitingPubComp,
        },
        stored_seq: Some(record.seq),
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use fulmar_proto::{Properties, QoS, TopicName};

    use super::*;

    fn body(expires_at_ms: Option<u64>) -> MessageBody {
        MessageBody {
            id: MessageId(1),
            topic: TopicName::new("t").unwrap(),
            payload: Bytes::from_static(b"x"),
            qos: QoS::AtLeastOnce,
            retain: false,
            properties: Properties::default(),
            expires_at_ms,
        }
    }

    #[test]
    fn a_stored_expiry_in_the_past_is_expired_at_now() {
        let (now, now_ms) = (Instant::now(), 1_700_000_000_000);
        let message = message_of(&body(Some(now_ms - 5_000)), now, now_ms);
        assert!(message.is_expired(now));
        let message = message_of(&body(Some(now_ms + 5_000)), now, now_ms);
        assert!(!message.is_expired(now));
        assert_eq!(message.remaining_expiry_secs(now), Some(5));
        assert!(!message_of(&body(None), now, now_ms).is_expired(now));
    }
}
