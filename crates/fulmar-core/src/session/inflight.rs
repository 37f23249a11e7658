//! The outbound inflight window: QoS 1/2 PUBLISHes sent to the client and not yet completed.

use std::collections::VecDeque;

use fulmar_proto::PacketId;

use crate::message::Delivery;

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
    }

    /// Rebuilds the window from restored exchanges, in send order; ids continue after the
    /// last one so a fresh id never collides with a restored one.
    pub fn restore(entries: Vec<InflightEntry>) -> Self {
        let last_id = entries.last().map_or(0, |e| e.packet_id.get());
        Inflight {
            entries: entries.into(),
            last_id,
        }
    }

    /// Next id after the last one handed out that no open exchange uses. Acks mostly arrive
    /// in order, so the scan normally stops at its first candidate.
    fn allocate_id(&mut self) -> PacketId {
        loop {
            self.last_id = self.last_id.checked_add(1).unwrap_or(1);
            if let Some(id) = PacketId::new(self.last_id) {
                if !self.contains(id) {
                    return id;
                }
            }
        }
    }

    fn contains(&self, packet_id: PacketId) -> bool {
        self.entries.iter().any(|e| e.packet_id == packet_id)
    }

    fn position(&self, packet_id: PacketId, state: OutboundState) -> Option<usize> {
        self.entries
            .iter()
            .position(|e| e.packet_id == packet_id && e.state == state)
    }

    /// Completes the exchange `packet_id` if it is in `state`; returns it if it was.
    pub fn complete(&mut self, packet_id: PacketId, state: OutboundState) -> Option<InflightEntry> {
        let index = self.position(packet_id, state)?;
        self.entries.remove(index)
    }

    /// PUBREC for `packet_id`: the exchange moves on to awaiting PUBCOMP and the message is
    /// released. Returns whether such an exchange was open, and whether this PUBREC moved it
    /// (with its stored sequence) rather than repeating an earlier one.
    pub fn received(&mut self, packet_id: PacketId) -> (bool, Option<Option<u64>>) {
        match self.position(packet_id, OutboundState::AwaitingPubRec) {
            Some(index) => {
                let entry = &mut self.entries[index];
                entry.state = OutboundState::AwaitingPubComp;
                entry.delivery = None;
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
        self.entries.retain(|e| {
            let keep = e
                .delivery
                .as_ref()
                .is_none_or(|d| !d.message.is_expired(now));
            if !keep && e.stored_seq.is_some() {
                dropped.push(e.packet_id);
            }
            keep
        });
        dropped
    }

    /// Removes every exchange, returning the messages that were never acknowledged (those
    /// past PUBREC are the client's already and are not returned).
    pub fn take_unacknowledged(&mut self) -> Vec<Delivery> {
        self.entries.drain(..).filter_map(|e| e.delivery).collect()
    }

    /// Open exchanges in send order.
    pub fn iter(&self) -> impl Iterator<Item = &InflightEntry> {
        self.entries.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_skip_those_in_flight_and_wrap_past_zero() {
        let mut inflight = Inflight {
            entries: VecDeque::new(),
            last_id: u16::MAX - 1,
        };
        let dummy = || {
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
        };
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
}
