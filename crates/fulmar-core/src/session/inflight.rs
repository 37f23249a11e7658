//! The outbound inflight window: QoS 1/2 PUBLISHes sent to the client and not yet completed.

use super::id_set::IdSet;
use std::collections::VecDeque;

use fulmar_proto::PacketId;

use crate::message::Delivery;
use crate::spare_messages;

/// Where an outbound QoS 1/2 exchange stands.
///
/// ```text
///  QoS 1:  PUBLISH ──► AwaitingPubAck ──PUBACK──► done
///  QoS 2:  PUBLISH ──► AwaitingPubRec ──PUBREC──► AwaitingPubComp ──PUBCOMP──► done
///                                        (send PUBREL)
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboundState {
    /// QoS 1 PUBLISH sent; on resume it is re-sent with DUP [MQTT-4.4.0-1].
    AwaitingPubAck,
    /// QoS 2 PUBLISH sent; on resume it is re-sent with DUP.
    AwaitingPubRec,
    /// PUBREL sent; on resume PUBREL is re-sent, never the PUBLISH [MQTT-4.3.3-3].
    AwaitingPubComp,
}

/// One open outbound exchange.
#[derive(Debug, Clone)]
pub struct InflightEntry {
    /// The packet id the exchange uses.
    pub packet_id: PacketId,
    /// The message, kept until PUBREC/PUBACK makes a re-send impossible.
    pub delivery: Option<Delivery>,
    /// Progress of the exchange.
    pub state: OutboundState,
    /// The delivery's sequence in the durable store, when the exchange is stored
    /// (kept past PUBREC, when `delivery` is gone).
    pub stored_seq: Option<u64>,
}

/// Open outbound exchanges in the order they were started.
///
/// # Invariants
/// - Packet ids in `entries` are pairwise distinct [MQTT-2.3.1-2]: an id is never reused
///   while its exchange is open.
/// - `entries` is in send order, so redelivery on resume keeps the original order
///   [MQTT-4.6.0-1].
/// - `delivery` is `Some` exactly for the states that may re-send the PUBLISH.
#[derive(Debug, Default)]
pub struct Inflight {
    entries: VecDeque<InflightEntry>,
    last_id: u16,
    /// How many exchanges at the front of `entries` got their ids before `last_id` last
    /// wrapped (or were restored): their ids may lie above `last_id`. Every later exchange's
    /// id is at most `last_id` (ids rise within a wrap), so while this is 0 the id after
    /// `last_id` is free without a lookup.
    older_than_wrap: usize,
    /// The ids in `entries` (see [`IdSet`]'s invariant), for the lookups a fresh id needs
    /// while `older_than_wrap > 0`; dropped whenever `older_than_wrap` is 0.
    ids: IdSet,
}

impl Inflight {
    /// Number of open exchanges.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// A fresh packet id for the next exchange: not used by any open one. The caller keeps
    /// `len()` below 65535 (the inflight limit is at most that).
    pub fn next_id(&mut self) -> PacketId {
        debug_assert!(self.entries.len() < usize::from(u16::MAX));
        self.allocate_id()
    }

    /// Opens an exchange for `delivery` under `packet_id`, taken from [`Inflight::next_id`]
    /// with no exchange opened since.
    pub fn start(&mut self, packet_id: PacketId, delivery: Delivery, state: OutboundState) {
        debug_assert!(!self.contains(packet_id), "packet id in use [MQTT-2.3.1-2]");
        self.entries.push_back(InflightEntry {
            packet_id,
            stored_seq: delivery.stored.map(|s| s.seq),
            delivery: Some(delivery),
            state,
        });
        self.ids.insert(packet_id.get());
    }

    /// Rebuilds the window from restored exchanges, in send order; ids continue after the
    /// last one so a fresh id never collides with a restored one.
    pub fn restore(entries: Vec<InflightEntry>) -> Self {
        let last_id = entries.last().map_or(0, |e| e.packet_id.get());
        let entries: VecDeque<InflightEntry> = entries.into();
        Inflight {
            older_than_wrap: entries.len(),
            entries,
            last_id,
            ids: IdSet::default(),
        }
    }

    /// Next id after the last one handed out that no open exchange uses. Acks mostly arrive
    /// in order, so the scan normally stops at its first candidate.
    fn allocate_id(&mut self) -> PacketId {
        loop {
            match self.last_id.checked_add(1) {
                Some(next) => self.last_id = next,
                None => {
                    self.last_id = 1;
                    self.older_than_wrap = self.entries.len();
                }
            }
            if let Some(id) = PacketId::new(self.last_id) {
                if self.older_than_wrap == 0 || self.is_free_after_wrap(id) {
                    return id;
                }
            }
        }
    }

    /// Whether `id` is free while exchanges from before the last wrap are open. Out of line:
    /// it runs for one window's worth of ids per 65,535, and inlined it made every
    /// `next_id` save and restore more registers.
    #[inline(never)]
    fn is_free_after_wrap(&mut self, id: PacketId) -> bool {
        let open = self.entries.iter().map(|e| e.packet_id.get());
        self.ids.prepare(self.entries.len(), open);
        !self.contains(id)
    }

    fn contains(&self, packet_id: PacketId) -> bool {
        let open = self.entries.iter().map(|e| e.packet_id.get());
        self.ids.contains(packet_id.get(), open)
    }

    fn position(&self, packet_id: PacketId, state: OutboundState) -> Option<usize> {
        self.entries
            .iter()
            .position(|e| e.packet_id == packet_id && e.state == state)
    }

    /// Completes the exchange `packet_id` if it is in `state`; returns it if it was.
    pub fn complete(&mut self, packet_id: PacketId, state: OutboundState) -> Option<InflightEntry> {
        let index = self.position(packet_id, state)?;
        // Acks mostly come in send order: the oldest exchange is the usual one.
        let entry = if index == 0 {
            self.entries.pop_front()
        } else {
            self.entries.remove(index)
        }?;
        if index < self.older_than_wrap {
            self.older_than_wrap -= 1;
        }
        if self.older_than_wrap == 0 {
            self.ids.clear();
        } else {
            self.ids.remove(packet_id.get());
        }
        Some(entry)
    }

    /// PUBREC for `packet_id`: the exchange moves on to awaiting PUBCOMP and the message is
    /// released. Returns whether such an exchange was open, and whether this PUBREC moved it
    /// (with its stored sequence) rather than repeating an earlier one.
    pub fn received(&mut self, packet_id: PacketId) -> (bool, Option<Option<u64>>) {
        match self.position(packet_id, OutboundState::AwaitingPubRec) {
            Some(index) => {
                let entry = &mut self.entries[index];
                entry.state = OutboundState::AwaitingPubComp;
                if let Some(delivery) = entry.delivery.take() {
                    spare_messages::release(delivery.message);
                }
                (true, Some(entry.stored_seq))
            }
            None => (
                self.position(packet_id, OutboundState::AwaitingPubComp)
                    .is_some(),
                None,
            ),
        }
    }

    /// Drops the exchanges whose PUBLISH would be re-sent but whose message has expired
    /// [MQTT-3.3.2-5]; exchanges past PUBREC only need PUBREL and stay. Returns the dropped
    /// ones that were stored.
    pub fn drop_expired(&mut self, now: std::time::Instant) -> Vec<PacketId> {
        let mut dropped = Vec::new();
        let (older, mut index, mut older_kept) = (self.older_than_wrap, 0, 0);
        self.entries.retain(|e| {
            let keep = e
                .delivery
                .as_ref()
                .is_none_or(|d| !d.message.is_expired(now));
            if !keep && e.stored_seq.is_some() {
                dropped.push(e.packet_id);
            }
            older_kept += usize::from(keep && index < older);
            index += 1;
            keep
        });
        self.older_than_wrap = older_kept;
        // Rebuilt on the next lookup, if one is needed.
        self.ids.clear();
        dropped
    }

    /// Removes every exchange, returning the messages that were never acknowledged (those
    /// past PUBREC are the client's already and are not returned).
    pub fn take_unacknowledged(&mut self) -> Vec<Delivery> {
        self.ids.clear();
        self.older_than_wrap = 0;
        self.entries.drain(..).filter_map(|e| e.delivery).collect()
    }

    /// Replaces every message kept for a re-send with a copy that owns its bytes (see
    /// [`Delivery::into_detached`]).
    pub fn detach_messages(&mut self) {
        for entry in &mut self.entries {
            entry.delivery = entry.delivery.take().map(Delivery::into_detached);
        }
    }

    /// Open exchanges in send order.
    pub fn iter(&self) -> impl Iterator<Item = &InflightEntry> {
        self.entries.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn qos1_delivery() -> Delivery {
        let message = crate::message::Message {
            topic: fulmar_proto::TopicName::new("t").unwrap(),
            payload: bytes::Bytes::new(),
            qos: fulmar_proto::QoS::AtLeastOnce,
            retain: false,
            properties: fulmar_proto::Properties::default(),
            origin: None,
            expires_at: None,
        };
        Delivery::new(
            std::sync::Arc::new(message),
            fulmar_proto::QoS::AtLeastOnce,
            false,
        )
    }

    #[test]
    fn detached_messages_keep_no_read_buffer_alive() {
        let read = bytes::Bytes::from(vec![b'x'; 256 * 1024]);
        let mut delivery = qos1_delivery();
        std::sync::Arc::make_mut(&mut delivery.message).payload = read.slice(10..4106);
        let mut inflight = Inflight::default();
        let id = inflight.next_id();
        inflight.start(id, delivery, OutboundState::AwaitingPubAck);
        inflight.detach_messages();
        let kept = inflight.iter().next().unwrap().delivery.as_ref().unwrap();
        assert_eq!(kept.message.payload, read.slice(10..4106));
        assert!(!read.as_ptr_range().contains(&kept.message.payload.as_ptr()));
    }

    #[test]
    fn ids_skip_those_in_flight_and_wrap_past_zero() {
        let mut inflight = Inflight {
            last_id: u16::MAX - 1,
            ..Inflight::default()
        };
        let dummy = qos1_delivery;
        let start = |inflight: &mut Inflight| {
            let id = inflight.next_id();
            inflight.start(id, dummy(), OutboundState::AwaitingPubAck);
            id
        };
        let a = start(&mut inflight);
        let b = start(&mut inflight);
        assert_eq!((a.get(), b.get()), (u16::MAX, 1));
        inflight.last_id = u16::MAX - 1;
        let c = start(&mut inflight);
        assert_eq!(c.get(), 2, "65535 and 1 are in flight, so 2 is next");
        assert!(inflight
            .complete(a, OutboundState::AwaitingPubAck)
            .is_some());
        assert!(inflight
            .complete(a, OutboundState::AwaitingPubAck)
            .is_none());
    }

    /// A restored window can hold ids above the last one handed out (sent before a wrap);
    /// counting up from there must skip them.
    #[test]
    fn restored_ids_above_the_last_are_skipped() {
        let entry = |id: u16| InflightEntry {
            packet_id: PacketId::new(id).unwrap(),
            delivery: Some(qos1_delivery()),
            state: OutboundState::AwaitingPubAck,
            stored_seq: None,
        };
        let mut inflight = Inflight::restore(vec![entry(40_000), entry(2)]);
        for _ in 3..40_000 {
            inflight.next_id();
        }
        assert_eq!(inflight.next_id().get(), 40_001, "40,000 is still open");
        let restored = PacketId::new(40_000).unwrap();
        assert!(inflight
            .complete(restored, OutboundState::AwaitingPubAck)
            .is_some());
        assert_eq!(inflight.older_than_wrap, 1, "2 was restored too");
    }

    /// Random opens and out-of-order completions with windows up to 300 (past the bitmap
    /// threshold and back, across the id wrap): every new id is one no open exchange uses.
    #[test]
    fn fresh_ids_never_collide_with_open_ones_in_large_windows() {
        let mut inflight = Inflight::default();
        let mut open: Vec<PacketId> = Vec::new();
        let mut state = 0x9e37_79b9_u32;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state
        };
        for step in 0..200_000u32 {
            let target = if (step / 20_000) % 2 == 0 { 300 } else { 10 };
            if open.len() < target && next() % 3 != 0 {
                let id = inflight.next_id();
                assert!(!open.contains(&id), "step {step}: id {id:?} is open");
                inflight.start(id, qos1_delivery(), OutboundState::AwaitingPubAck);
                open.push(id);
            } else if !open.is_empty() {
                // Mostly in order, sometimes from the middle.
                let at = if next() % 4 == 0 {
                    next() as usize % open.len()
                } else {
                    0
                };
                let id = open.remove(at);
                assert!(inflight
                    .complete(id, OutboundState::AwaitingPubAck)
                    .is_some());
            }
            assert_eq!(inflight.len(), open.len());
        }
        let restored = Inflight::restore(inflight.entries.drain(..).collect());
        let mut restored = restored;
        for _ in 0..1000 {
            let id = restored.next_id();
            assert!(!open.contains(&id));
        }
    }
}
