//! What a persistent session tells the durable store, and how it is rebuilt from it.
//!
//! A session marked persistent ([`Session::set_recording`]) logs every change of its stored
//! state as a [`Persist`] record; the server drains them ([`Session::take_persist`]) after
//! each packet and each batch of sends, and turns them into store mutations. The session
//! itself never touches the store (sans IO).

use std::sync::Arc;
use std::time::Instant;

use fulmar_proto::{PacketId, ProtocolVersion, SubscriptionOptions, TopicFilter};

use super::inflight::{Inflight, InflightEntry, OutboundState};
use super::{Session, SessionLimits};
use crate::message::Delivery;
use crate::spare_messages;

/// One change to a session's durable state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Persist {
    /// A stored delivery was sent: it leaves the stored queue and opens a stored inflight
    /// exchange under `packet_id` (state AwaitingPubAck or AwaitingPubRec).
    Sent {
        /// The packet id the exchange uses.
        packet_id: PacketId,
        /// The exchange's state.
        state: OutboundState,
        /// The delivery (its `stored` says where it was queued).
        delivery: Delivery,
    },
    /// PUBREC arrived for a stored QoS 2 exchange: it now awaits PUBCOMP (only PUBREL is
    /// re-sent on resume [MQTT-4.3.3-3]).
    Released {
        /// The exchange's packet id.
        packet_id: PacketId,
        /// Its stored sequence (send order).
        seq: u64,
    },
    /// A stored exchange ended (PUBACK, PUBCOMP, an error PUBREC, or its message expired).
    Completed {
        /// The exchange's packet id.
        packet_id: PacketId,
    },
    /// PUBREL released an inbound QoS 2 id. The PUBCOMP is not queued by the session: the
    /// server sends it once the id's removal is committed, or a restart could take a new
    /// message under the same id for a duplicate [MQTT-4.3.3-2].
    InboundReleased {
        /// The released id.
        packet_id: PacketId,
    },
}

/// What the store holds of one session, for [`Session::restore`].
#[derive(Debug, Default)]
pub struct RestoredState {
    /// Subscriptions with their granted options.
    pub subscriptions: Vec<(TopicFilter, SubscriptionOptions)>,
    /// Open outbound exchanges, in send order.
    pub inflight: Vec<InflightEntry>,
    /// Inbound QoS 2 ids awaiting PUBREL.
    pub inbound_qos2: Vec<PacketId>,
}

impl Session {
    /// Rebuilds a parked persistent session from the store after a restart. It is attached
    /// to its next connection with [`Session::attach`], which re-sends the open exchanges.
    pub fn restore(
        version: ProtocolVersion,
        limits: Arc<SessionLimits>,
        state: RestoredState,
        now: Instant,
    ) -> Self {
        let mut session = Session::new(version, 0, limits, now);
        session.subscriptions = state.subscriptions.into_iter().collect();
        if !state.inflight.is_empty() {
            session.traffic_mut().inflight = Inflight::restore(state.inflight);
        }
        if !state.inbound_qos2.is_empty() {
            session.extras_mut().inbound_qos2 = state.inbound_qos2.into_iter().collect();
        }
        session.set_recording(true);
        session
    }

    /// Starts (or stops) logging changes of the durable state as [`Persist`] records.
    pub fn set_recording(&mut self, on: bool) {
        self.persist_log = on.then(Box::default);
    }

    /// Whether the session logs [`Persist`] records.
    pub fn is_recording(&self) -> bool {
        self.persist_log.is_some()
    }

    /// Whether records wait to be taken (cheap: the server asks after every packet).
    #[inline]
    pub fn has_persist(&self) -> bool {
        self.persist_log.as_ref().is_some_and(|log| !log.is_empty())
    }

    /// Takes the logged records, oldest first.
    pub fn take_persist(&mut self) -> Vec<Persist> {
        self.persist_log
            .as_deref_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    pub(super) fn record(&mut self, record: Persist) {
        if let Some(log) = &mut self.persist_log {
            log.push(record);
        }
    }

    /// Logs the end of an exchange that was stored.
    pub(super) fn record_completed(&mut self, entry: Option<InflightEntry>) {
        // Matched in place: `Option::filter` moves the entry (ten words), and depending on
        // inlining that became a copy on every acknowledgement (13 instructions in
        // `fulmar bench fanin -q 1`).
        if let Some(InflightEntry {
            packet_id,
            stored_seq,
            delivery,
            ..
        }) = entry
        {
            if stored_seq.is_some() {
                self.record(Persist::Completed { packet_id });
            }
            if let Some(delivery) = delivery {
                spare_messages::release(delivery.message);
            }
        }
    }
}
