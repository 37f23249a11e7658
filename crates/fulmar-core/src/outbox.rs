//! The bounded queue between fan-out and one session's writer.
//!
//! Fan-out runs on the publisher's task and pushes into the recipient's outbox; the
//! recipient's connection drains it as its inflight window allows. An outbox never blocks the
//! publisher: when it is full, the message is dropped for this recipient and counted.
//!
//! Overflow policy (documented in docs/limits.md):
//! - QoS 0 to an offline session is dropped (it is not queued for offline clients).
//! - Anything beyond `max_messages` or `max_bytes` is dropped, QoS 0 first: QoS 0 may only
//!   use the first half of the byte and count budget, so a burst of QoS 0 cannot crowd out
//!   QoS 1/2 messages that a persistent session is owed.

use std::collections::VecDeque;

use fulmar_proto::QoS;

use crate::message::Delivery;

/// Limits of one outbox (per session).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueLimits {
    /// Maximum number of queued deliveries.
    pub max_messages: usize,
    /// Maximum bytes of queued deliveries, as counted by [`Delivery::queued_size`].
    pub max_bytes: usize,
}

impl Default for QueueLimits {
    fn default() -> Self {
        QueueLimits {
            max_messages: 1000,
            max_bytes: 16 * 1024 * 1024,
        }
    }
}

/// What happened to a pushed delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushOutcome {
    /// Queued; `was_empty` tells the caller to wake the consumer.
    Queued {
        /// The queue was empty before this push.
        was_empty: bool,
    },
    /// Dropped: QoS 0 for a session that is offline.
    DroppedOffline,
    /// Dropped: the queue is at its limit.
    DroppedFull,
}

/// Bounded FIFO of deliveries for one session.
///
/// # Invariants
/// - `bytes` is the sum of `queued_size()` over `queue`.
/// - `queue.len() <= limits.max_messages` and `bytes <= limits.max_bytes`, except that one
///   delivery larger than `max_bytes` is accepted into an empty queue (so a single large
///   message is never undeliverable).
#[derive(Debug)]
pub struct Outbox {
    queue: VecDeque<Delivery>,
    bytes: usize,
    limits: QueueLimits,
    online: bool,
    dropped_full: u64,
    dropped_offline: u64,
}

impl Outbox {
    /// An empty outbox for an online session.
    pub fn new(limits: QueueLimits) -> Self {
        Outbox {
            queue: VecDeque::new(),
            bytes: 0,
            limits,
            online: true,
            dropped_full: 0,
            dropped_offline: 0,
        }
    }

    /// Marks the session connected or not; offline sessions queue only QoS 1/2.
    pub fn set_online(&mut self, online: bool) {
        self.online = online;
    }

    /// Whether a connection currently drains this outbox.
    pub fn is_online(&self) -> bool {
        self.online
    }

    /// Queues `delivery` unless a limit says otherwise (see the module's overflow policy).
    pub fn push(&mut self, delivery: Delivery) -> PushOutcome {
        let qos0 = delivery.qos == QoS::AtMostOnce;
        if qos0 && !self.online {
            self.dropped_offline += 1;
            return PushOutcome::DroppedOffline;
        }
        let size = delivery.queued_size();
        let (max_messages, max_bytes) = if qos0 {
            (self.limits.max_messages / 2, self.limits.max_bytes / 2)
        } else {
            (self.limits.max_messages, self.limits.max_bytes)
        };
        let was_empty = self.queue.is_empty();
        let fits =
            self.queue.len() < max_messages.max(1) && (was_empty || self.bytes + size <= max_bytes);
        if !fits {
            self.dropped_full += 1;
            return PushOutcome::DroppedFull;
        }
        self.bytes += size;
        self.queue.push_back(delivery);
        PushOutcome::Queued { was_empty }
    }

    /// Whether QoS 1/2 publishers to this session should be held back: the session is online
    /// (someone drains the queue) and the queue has reached three eighths of a limit, i.e.
    /// three quarters of the share QoS 0 may use. Holding publishers there, before anything
    /// is dropped, is what keeps delivery lossless under fan-in while memory stays bounded
    /// (see docs/limits.md).
    pub fn is_congested(&self) -> bool {
        self.online
            && (self.queue.len() * 8 >= self.limits.max_messages * 3
                || self.bytes * 8 >= self.limits.max_bytes * 3)
    }

    /// Moves deliveries from the front into `out`, in order, at most `max` of them, and at most
    /// `window` of QoS 1/2 (the session's free inflight slots). Stops at the first QoS 1/2
    /// delivery that does not fit, so order is kept [MQTT-4.6.0-6].
    pub fn pop_batch(&mut self, mut window: usize, max: usize, out: &mut Vec<Delivery>) {
        let mut taken = 0;
        while taken < max {
            let Some(front) = self.queue.front() else {
                break;
            };
            if front.qos != QoS::AtMostOnce {
                if window == 0 {
                    break;
                }
                window -= 1;
            }
            let Some(delivery) = self.queue.pop_front() else {
                break;
            };
            self.bytes -= delivery.queued_size();
            out.push(delivery);
            taken += 1;
        }
        debug_assert!(self.queue.is_empty() == (self.bytes == 0));
    }

    /// Removes everything (used when a session ends or is discarded), returning the count.
    pub fn clear(&mut self) -> usize {
        let n = self.queue.len();
        self.queue.clear();
        self.bytes = 0;
        n
    }

    /// Takes all queued deliveries out, in order.
    pub fn drain_all(&mut self) -> Vec<Delivery> {
        self.bytes = 0;
        self.queue.drain(..).collect()
    }

    /// Number of queued deliveries.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Bytes queued.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Deliveries dropped because the queue was full.
    pub fn dropped_full(&self) -> u64 {
        self.dropped_full
    }

    /// QoS 0 deliveries dropped because the session was offline.
    pub fn dropped_offline(&self) -> u64 {
        self.dropped_offline
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;
    use fulmar_proto::{Properties, TopicName};

    use super::*;
    use crate::message::Message;

    fn delivery(qos: QoS, payload_len: usize) -> Delivery {
        let message = Message {
            topic: TopicName::new("t").unwrap(),
            payload: Bytes::from(vec![0u8; payload_len]),
            qos,
            retain: false,
            properties: Properties::default(),
            origin: None,
            expires_at: None,
        };
        Delivery::new(Arc::new(message), qos, false)
    }

    #[test]
    fn offline_session_drops_qos0_and_queues_qos1() {
        let mut outbox = Outbox::new(QueueLimits::default());
        outbox.set_online(false);
        assert_eq!(
            outbox.push(delivery(QoS::AtMostOnce, 1)),
            PushOutcome::DroppedOffline
        );
        assert_eq!(
            outbox.push(delivery(QoS::AtLeastOnce, 1)),
            PushOutcome::Queued { was_empty: true }
        );
        assert_eq!(outbox.len(), 1);
        assert_eq!(outbox.dropped_offline(), 1);
    }

    #[test]
    fn full_queue_drops_and_counts() {
        let limits = QueueLimits {
            max_messages: 4,
            max_bytes: 1 << 20,
        };
        let mut outbox = Outbox::new(limits);
        for _ in 0..4 {
            assert!(matches!(
                outbox.push(delivery(QoS::AtLeastOnce, 1)),
                PushOutcome::Queued { .. }
            ));
        }
        assert_eq!(
            outbox.push(delivery(QoS::AtLeastOnce, 1)),
            PushOutcome::DroppedFull
        );
        assert_eq!(outbox.dropped_full(), 1);
    }

    #[test]
    fn qos0_may_use_only_half_the_budget() {
        let limits = QueueLimits {
            max_messages: 4,
            max_bytes: 1 << 20,
        };
        let mut outbox = Outbox::new(limits);
        assert!(matches!(
            outbox.push(delivery(QoS::AtMostOnce, 1)),
            PushOutcome::Queued { .. }
        ));
        assert!(matches!(
            outbox.push(delivery(QoS::AtMostOnce, 1)),
            PushOutcome::Queued { .. }
        ));
        assert_eq!(
            outbox.push(delivery(QoS::AtMostOnce, 1)),
            PushOutcome::DroppedFull
        );
        assert!(matches!(
            outbox.push(delivery(QoS::ExactlyOnce, 1)),
            PushOutcome::Queued { .. }
        ));
    }

    #[test]
    fn byte_limit_applies_but_one_large_message_fits_an_empty_queue() {
        let limits = QueueLimits {
            max_messages: 100,
            max_bytes: 1000,
        };
        let mut outbox = Outbox::new(limits);
        assert!(matches!(
            outbox.push(delivery(QoS::AtLeastOnce, 5000)),
            PushOutcome::Queued { .. }
        ));
        assert_eq!(
            outbox.push(delivery(QoS::AtLeastOnce, 10)),
            PushOutcome::DroppedFull
        );
        let mut out = Vec::new();
        outbox.pop_batch(10, 10, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(outbox.bytes(), 0);
    }

    #[test]
    fn congestion_starts_at_three_eighths_and_only_when_online() {
        let limits = QueueLimits {
            max_messages: 16,
            max_bytes: 1 << 20,
        };
        let mut outbox = Outbox::new(limits);
        for _ in 0..5 {
            outbox.push(delivery(QoS::AtMostOnce, 1));
        }
        assert!(!outbox.is_congested());
        outbox.push(delivery(QoS::AtMostOnce, 1));
        assert!(
            outbox.is_congested(),
            "6 of 16 is three eighths, before QoS 0's half is full"
        );
        outbox.set_online(false);
        assert!(
            !outbox.is_congested(),
            "nobody drains an offline queue: never hold publishers for it"
        );
    }

    #[test]
    fn pop_batch_respects_window_and_order() {
        let mut outbox = Outbox::new(QueueLimits::default());
        outbox.push(delivery(QoS::AtLeastOnce, 1));
        outbox.push(delivery(QoS::AtMostOnce, 2));
        outbox.push(delivery(QoS::AtLeastOnce, 3));
        outbox.push(delivery(QoS::AtMostOnce, 4));
        let mut out = Vec::new();
        outbox.pop_batch(1, 100, &mut out);
        // The second QoS 1 does not fit the window, and the QoS 0 behind it must wait too.
        let sizes: Vec<usize> = out.iter().map(|d| d.message.payload.len()).collect();
        assert_eq!(sizes, vec![1, 2]);
        assert_eq!(outbox.len(), 2);
    }
}
