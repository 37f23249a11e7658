//! Holding back a publisher whose messages fill a subscriber's queue.
//!
//! A message goes into every matching session's bounded queue. When an online subscriber's
//! queue reaches its congestion mark, the publisher is held: the broker stops reading from it
//! and holds its PUBACK/PUBREC until the queue drains, so TCP backpressure slows the publisher
//! to the subscriber's pace instead of it outrunning the queue into drops. The hold lasts at
//! most `limits.max_publisher_hold_ms`: a subscriber that stays stuck is then marked stalled,
//! nobody is held for it again until it drains, and what no longer fits its queue is dropped
//! and counted. A publisher is never held for its own queue.
//!
//! # Invariants
//! Acknowledgements leave in the order their PUBLISHes arrived [MQTT-4.6.0-2..4]: once one is
//! held, every later one queues behind it.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fulmar_core::Session;
use fulmar_proto::{PacketId, QoS, ReasonCode};

use crate::mailbox::Mailbox;

/// Acknowledgements held back, and the queues they wait for.
#[derive(Debug, Default)]
pub struct PublisherHold {
    acks: VecDeque<(QoS, Option<PacketId>, ReasonCode)>,
    waiting_on: Vec<Arc<Mailbox>>,
    deadline: Option<Instant>,
}

impl PublisherHold {
    /// Acknowledges a routed PUBLISH now, or holds the acknowledgement when `congested`
    /// queues (or earlier held acknowledgements) say so.
    pub fn acknowledge(
        &mut self,
        session: &mut Session,
        (qos, packet_id, reason): (QoS, Option<PacketId>, ReasonCode),
        congested: impl IntoIterator<Item = Arc<Mailbox>>,
        max_hold: Duration,
    ) {
        self.waiting_on.extend(congested);
        if !self.waiting_on.is_empty() {
            self.deadline
                .get_or_insert_with(|| Instant::now() + max_hold);
        }
        if qos == QoS::AtMostOnce {
            return;
        }
        if self.is_holding() {
            self.acks.push_back((qos, packet_id, reason));
        } else {
            session.acknowledge(qos, packet_id, reason);
        }
    }

    /// Whether the publisher is being held: reads paused, acknowledgements queued.
    pub fn is_holding(&self) -> bool {
        !self.acks.is_empty() || !self.waiting_on.is_empty()
    }

    /// Resolves when the first awaited queue is no longer congested or the hold expires.
    pub async fn wait(&self) {
        let deadline = self.deadline.unwrap_or_else(Instant::now);
        let drained = async {
            match self.waiting_on.first() {
                Some(mailbox) => mailbox.uncongested().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = drained => {}
            _ = tokio::time::sleep_until(deadline.into()) => {}
        }
    }

    /// Releases the held acknowledgements (in order) when no awaited queue is congested any
    /// more or the hold expired. On expiry the queues still congested are marked stalled, so
    /// no publisher is held for them again until they drain (a stuck subscriber costs its
    /// publishers one hold, not one per message). Returns whether the hold expired.
    pub fn release_ready(&mut self, session: &mut Session, now: Instant) -> bool {
        self.waiting_on
            .retain(|mailbox| mailbox.with(|outbox| outbox.is_congested()));
        let expired = self.deadline.is_some_and(|deadline| now >= deadline);
        if self.waiting_on.is_empty() || expired {
            for (qos, packet_id, reason) in self.acks.drain(..) {
                session.acknowledge(qos, packet_id, reason);
            }
            for mailbox in self.waiting_on.drain(..) {
                mailbox.mark_stalled();
            }
            self.deadline = None;
        }
        expired
    }
}
