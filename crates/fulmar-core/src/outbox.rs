//! The bounded queue between fan-out and one session's writer.
//!
//! Fan-out runs on the publisher's task and pushes into the recipient's outbox; the
//! recipient's connection drains it as its inflight window allows. An outbox never blocks the
//! publisher: when it is full, the message is dropped for this recipient, and the [`PushOutcome`]
//! tells the caller to count it (the broker keeps the counters, not each of its outboxes).
//!
//! Offline persistent sessions spill to the store: while a session is offline, a delivery
//! that is also queued in the durable store (`Delivery::stored`) keeps only a
//! [`SpilledRef`] here and its message is released from memory; the connection that resumes
//! the session reads spilled entries back from the store as its window allows. Deliveries
//! for a shared subscription stay in memory (if the session ends they go to another member
//! of the group, which needs the message at hand).
//!
//! Overflow policy (documented in docs/limits.md):
//! - QoS 0 to an offline session is dropped (it is not queued for offline clients).
//! - Anything beyond `max_messages` or `max_bytes` is dropped, QoS 0 first: QoS 0 may only
//!   use the first half of the byte and count budget, so a burst of QoS 0 cannot crowd out
//!   QoS 1/2 messages that a persistent session is owed.

use std::collections::VecDeque;

use fulmar_proto::QoS;

use crate::message::{Delivery, StoredRef};

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

/// A delivery whose message lives only in the durable store (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpilledRef {
    /// Where it is stored: its sequence in the session's stored queue.
    pub stored: StoredRef,
    /// Effective QoS (1 or 2: only stored deliveries spill).
    pub qos: QoS,
    /// [`Delivery::queued_size`] of the delivery, still counted against the limits.
    pub size: usize,
}

/// One queued entry: the delivery itself, or a reference to its stored copy.
#[derive(Debug)]
enum Entry {
    InMemory(Delivery),
    Spilled(SpilledRef),
}

/// The entry for `delivery` in an offline session's queue: spilled if it may live in the
/// store only (it is stored there, and it is not for a shared subscription), else kept in
/// memory as a detached copy. An offline session's queue may wait for hours, and a message
/// decoded from a large read would keep that read's whole slab alive (docs/limits.md).
fn spill(delivery: Delivery) -> Entry {
    match delivery.stored {
        Some(stored) if delivery.shared_filter.is_none() => Entry::Spilled(SpilledRef {
            stored,
            qos: delivery.qos,
            size: delivery.queued_size(),
        }),
        _ => Entry::InMemory(delivery.into_detached()),
    }
}

/// Bounded FIFO of deliveries for one session.
///
/// # Invariants
/// - `bytes` is the sum of the sizes of all entries (spilled ones count their delivery's
///   `queued_size()`), so limits do not depend on where an entry lives.
/// - `spilled` is the number of `Entry::Spilled` in `queue`; they are created only while
///   the session is offline. A `u32`: it is at most `max_messages`, which the configuration
///   caps at 10^8, and with `online` beside it the outbox is 64 bytes, so every session's
///   mailbox fits a 208-byte allocation instead of a 224-byte one.
/// - `queue.len() <= limits.max_messages` and `bytes <= limits.max_bytes`, except that one
///   delivery larger than `max_bytes` is accepted into an empty queue (so a single large
///   message is never undeliverable).
#[derive(Debug)]
pub struct Outbox {
    queue: VecDeque<Entry>,
    bytes: usize,
    spilled: u32,
    limits: QueueLimits,
    online: bool,
}

impl Outbox {
    /// An empty outbox for an online session.
    pub fn new(limits: QueueLimits) -> Self {
        Outbox {
            queue: VecDeque::new(),
            bytes: 0,
            spilled: 0,
            limits,
            online: true,
        }
    }

    /// Marks the session connected or not; offline sessions queue only QoS 1/2, and going
    /// offline spills what is queued and stored (see the module docs).
    pub fn set_online(&mut self, online: bool) {
        let going_offline = self.online && !online;
        self.online = online;
        if going_offline && (self.spilled as usize) < self.queue.len() {
            self.queue = std::mem::take(&mut self.queue)
                .into_iter()
                .map(|entry| match entry {
                    Entry::InMemory(delivery) => spill(delivery),
                    spilled => spilled,
                })
                .collect();
            let spilled = self
                .queue
                .iter()
                .filter(|e| matches!(e, Entry::Spilled(_)))
                .count();
            self.spilled = u32::try_from(spilled).unwrap_or(u32::MAX);
        }
    }

    /// Whether a connection currently drains this outbox.
    pub fn is_online(&self) -> bool {
        self.online
    }

    /// Queues `delivery` unless a limit says otherwise (see the module's overflow policy).
    pub fn push(&mut self, delivery: Delivery) -> PushOutcome {
        let qos0 = delivery.qos == QoS::AtMostOnce;
        if qos0 && !self.online {
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
            return PushOutcome::DroppedFull;
        }
        self.bytes += size;
        let entry = if self.online {
            Entry::InMemory(delivery)
        } else {
            spill(delivery)
        };
        self.spilled += u32::from(matches!(entry, Entry::Spilled(_)));
        self.queue.push_back(entry);
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

    /// Whether publishers held for this queue may resume: it is offline, or back at half its
    /// congestion mark (three sixteenths of each limit). The gap between the two marks is
    /// hysteresis: a subscriber that is the bottleneck keeps its queue near the mark, and
    /// releasing there would wake every held publisher for each message sent; releasing at
    /// half lets each of them send a burst per hold instead.
    pub fn is_relieved(&self) -> bool {
        !self.online
            || (self.queue.len() * 16 <= self.limits.max_messages * 3
                && self.bytes * 16 <= self.limits.max_bytes * 3)
    }

    /// Moves deliveries from the front into `out`, in order, at most `max` of them, and at most
    /// `window` of QoS 1/2 (the session's free inflight slots). Stops at the first QoS 1/2
    /// delivery that does not fit, so order is kept [MQTT-4.6.0-6], and at the first spilled
    /// entry (taken with [`Outbox::pop_spilled`]).
    pub fn pop_batch(&mut self, mut window: usize, max: usize, out: &mut Vec<Delivery>) {
        let mut taken = 0;
        while taken < max {
            let Some(Entry::InMemory(front)) = self.queue.front() else {
                break;
            };
            if front.qos != QoS::AtMostOnce {
                if window == 0 {
                    break;
                }
                window -= 1;
            }
            let Some(Entry::InMemory(delivery)) = self.queue.pop_front() else {
                break;
            };
            self.bytes -= delivery.queued_size();
            out.push(delivery);
            taken += 1;
        }
        debug_assert!(self.queue.is_empty() == (self.bytes == 0));
    }

    /// Moves the spilled entries at the front into `out`, in order, at most `window` of them
    /// (all are QoS 1/2). The caller reads their messages from the store and delivers them
    /// before anything else of this queue.
    pub fn pop_spilled(&mut self, window: usize, out: &mut Vec<SpilledRef>) {
        while out.len() < window {
            let Some(Entry::Spilled(spilled)) = self.queue.front() else {
                break;
            };
            let spilled = *spilled;
            self.queue.pop_front();
            self.bytes -= spilled.size;
            self.spilled -= 1;
            out.push(spilled);
        }
    }

    /// Removes everything (used when a session ends or is discarded), returning the count.
    pub fn clear(&mut self) -> usize {
        let n = self.queue.len();
        self.queue.clear();
        self.bytes = 0;
        self.spilled = 0;
        n
    }

    /// Takes all deliveries held in memory out, in order, and forgets the spilled ones (for
    /// a session that ends: its stored queue goes with it).
    pub fn drain_all(&mut self) -> Vec<Delivery> {
        self.bytes = 0;
        self.spilled = 0;
        self.queue
            .drain(..)
            .filter_map(|entry| match entry {
                Entry::InMemory(delivery) => Some(delivery),
                Entry::Spilled(_) => None,
            })
            .collect()
    }

    /// Number of queued entries whose message is only in the store.
    pub fn spilled(&self) -> usize {
        self.spilled as usize
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
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;
    use fulmar_proto::{Properties, TopicName};

    use super::*;
    use crate::message::Message;

    /// Limits that only the message count reaches in these tests.
    fn message_limit(max_messages: usize) -> QueueLimits {
        QueueLimits {
            max_messages,
            max_bytes: 1 << 20,
        }
    }

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

    /// A QoS 1 delivery whose payload is a slice of a 256 KiB read buffer, and that buffer.
    fn delivery_in_read_buffer() -> (Delivery, Bytes) {
        let read = Bytes::from(vec![b'x'; 256 * 1024]);
        let message = Message {
            topic: TopicName::new("t").unwrap(),
            payload: read.slice(100..4196),
            qos: QoS::AtLeastOnce,
            retain: false,
            properties: Properties::default(),
            origin: None,
            expires_at: None,
        };
        (
            Delivery::new(Arc::new(message), QoS::AtLeastOnce, false),
            read,
        )
    }

    /// The delivery at the front of `outbox`, taken.
    fn pop_one(outbox: &mut Outbox) -> Delivery {
        let mut out = Vec::new();
        outbox.pop_batch(usize::MAX, 1, &mut out);
        out.pop().expect("a queued delivery")
    }

    fn in_buffer(delivery: &Delivery, read: &Bytes) -> bool {
        read.as_ptr_range()
            .contains(&delivery.message.payload.as_ptr())
    }

    #[test]
    fn an_offline_queue_keeps_no_read_buffer_alive_and_an_online_one_shares_it() {
        let mut online = Outbox::new(QueueLimits::default());
        let (delivery, read) = delivery_in_read_buffer();
        online.push(delivery);
        assert!(in_buffer(&pop_one(&mut online), &read), "online: zero-copy");

        let mut offline = Outbox::new(QueueLimits::default());
        offline.set_online(false);
        let (delivery, read) = delivery_in_read_buffer();
        offline.push(delivery);
        offline.set_online(true);
        assert!(
            !in_buffer(&pop_one(&mut offline), &read),
            "pushed while offline"
        );

        let mut going = Outbox::new(QueueLimits::default());
        let (delivery, read) = delivery_in_read_buffer();
        let payload = delivery.message.payload.clone();
        going.push(delivery);
        going.set_online(false);
        going.set_online(true);
        let kept = pop_one(&mut going);
        assert!(!in_buffer(&kept, &read), "queued, then went offline");
        assert_eq!(kept.message.payload, payload, "the copy has the same bytes");
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
    }

    #[test]
    fn full_queue_drops() {
        let limits = message_limit(4);
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
        assert_eq!(outbox.len(), 4);
    }

    #[test]
    fn qos0_may_use_only_half_the_budget() {
        let limits = message_limit(4);
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
        let limits = message_limit(16);
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
    fn held_publishers_resume_at_half_the_congestion_mark() {
        let limits = message_limit(32);
        let mut outbox = Outbox::new(limits);
        for _ in 0..12 {
            outbox.push(delivery(QoS::AtLeastOnce, 1));
        }
        assert!(outbox.is_congested(), "12 of 32 is three eighths");
        let mut out = Vec::new();
        outbox.pop_batch(usize::MAX, 1, &mut out);
        assert!(
            !outbox.is_congested() && !outbox.is_relieved(),
            "11 of 32: between the marks"
        );
        outbox.pop_batch(usize::MAX, 5, &mut out);
        assert!(outbox.is_relieved(), "6 of 32 is three sixteenths");
        for _ in 0..10 {
            outbox.push(delivery(QoS::AtLeastOnce, 1));
        }
        outbox.set_online(false);
        assert!(outbox.is_relieved(), "an offline queue never holds anyone");
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

    fn stored(qos: QoS, seq: u64) -> Delivery {
        let mut d = delivery(qos, 10);
        d.stored = Some(StoredRef { seq, body_id: 1 });
        d
    }

    #[test]
    fn offline_stored_deliveries_spill_and_keep_counting_against_limits() {
        let mut outbox = Outbox::new(message_limit(3));
        outbox.set_online(false);
        let size = stored(QoS::AtLeastOnce, 0).queued_size();
        outbox.push(stored(QoS::AtLeastOnce, 0));
        let mut shared = stored(QoS::AtLeastOnce, 1);
        shared.shared_filter = Some(Arc::from("$share/g/t"));
        outbox.push(shared);
        outbox.push(stored(QoS::ExactlyOnce, 2));
        assert_eq!(
            outbox.spilled(),
            2,
            "the shared-subscription delivery stays in memory"
        );
        assert_eq!(outbox.bytes(), 3 * size);
        assert_eq!(
            outbox.push(stored(QoS::AtLeastOnce, 3)),
            PushOutcome::DroppedFull,
            "spilled entries still count against max_messages"
        );
    }

    #[test]
    fn going_offline_spills_what_is_stored_and_keeps_order() {
        let mut outbox = Outbox::new(QueueLimits::default());
        outbox.push(stored(QoS::AtLeastOnce, 7));
        outbox.push(delivery(QoS::AtLeastOnce, 1));
        outbox.push(stored(QoS::AtLeastOnce, 8));
        assert_eq!(outbox.spilled(), 0, "nothing spills while online");
        outbox.set_online(false);
        assert_eq!(outbox.spilled(), 2);
        outbox.set_online(true);

        let (mut spilled, mut ready) = (Vec::new(), Vec::new());
        outbox.pop_batch(10, 10, &mut ready);
        assert!(
            ready.is_empty(),
            "a spilled entry at the front stops pop_batch"
        );
        outbox.pop_spilled(10, &mut spilled);
        assert_eq!(
            spilled.iter().map(|s| s.stored.seq).collect::<Vec<_>>(),
            [7]
        );
        outbox.pop_batch(10, 10, &mut ready);
        assert_eq!(ready.len(), 1, "the in-memory delivery between the two");
        spilled.clear();
        outbox.pop_spilled(0, &mut spilled);
        assert!(spilled.is_empty(), "no window, nothing taken");
        outbox.pop_spilled(1, &mut spilled);
        assert_eq!(spilled[0].stored.seq, 8);
        assert!(outbox.is_empty());
        assert_eq!((outbox.bytes(), outbox.spilled()), (0, 0));
    }

    #[test]
    fn drain_all_returns_only_what_is_in_memory() {
        let mut outbox = Outbox::new(QueueLimits::default());
        outbox.set_online(false);
        outbox.push(stored(QoS::AtLeastOnce, 1));
        let mut shared = stored(QoS::AtLeastOnce, 2);
        shared.shared_filter = Some(Arc::from("$share/g/t"));
        outbox.push(shared);
        let drained = outbox.drain_all();
        assert_eq!(drained.len(), 1);
        assert!(drained[0].shared_filter.is_some());
        assert_eq!((outbox.len(), outbox.bytes(), outbox.spilled()), (0, 0, 0));
    }
}
