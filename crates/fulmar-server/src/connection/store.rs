//! A connection's writes to the durable store: what its session logged (sends, PUBREC,
//! completions, released inbound QoS 2 ids), its subscriptions, its record at CONNECT and
//! at the end of the connection. See `crate::persist` for the ordering rules.

use std::sync::Arc;
use std::time::Instant;

use fulmar_core::{OutboundState, Persist};
use fulmar_proto::{Ack, Packet, Properties, ReasonCode, SubscriptionOptions, TopicFilter};
use fulmar_store::{CommitTicket, Mutation, SessionRecord, SubscriptionRecord, WillRecord};

use super::hold::Reply;
use super::Connection;
use crate::broker::Broker;
use crate::persist::{body_of, inflight_record, queued_of, unix_ms_now};
use crate::registry::DetachedSession;

/// A subscription to store (granted options and identifier) or, with `None`, to remove.
pub(super) type SubscriptionChange = (TopicFilter, Option<(SubscriptionOptions, Option<u32>)>);

impl Connection {
    /// The stored client id, when this session is stored.
    pub(super) fn stored_id(&self) -> Option<Arc<str>> {
        self.broker.persistence()?;
        self.mailbox.store().map(|s| Arc::clone(&s.client_id))
    }

    /// Turns what the session logged into a batch and submits it. A PUBCOMP for a released
    /// inbound QoS 2 id waits for that batch (and later replies queue behind it).
    ///
    /// QoS 2 PUBLISHes just sent, and PUBRELs, go into a batch of their own whose ticket is
    /// returned: the caller must not let them reach the socket before it commits, or a crash
    /// in between would send the message again (a duplicate, breaking exactly once
    /// [MQTT-4.3.3]).
    #[inline]
    pub(super) fn flush_persist(&mut self) -> Option<CommitTicket> {
        // Checked at every call site (after every packet): nothing logged is the usual case.
        if !self.session.has_persist() {
            return None;
        }
        self.flush_persist_log()
    }

    fn flush_persist_log(&mut self) -> Option<CommitTicket> {
        let records = self.session.take_persist();
        let (Some(client_id), Some(persistence)) = (self.stored_id(), self.broker.persistence())
        else {
            return None;
        };
        if records.is_empty() {
            return None;
        }
        let mut gated = Vec::new();
        let (now, now_ms) = (Instant::now(), unix_ms_now());
        let mut batch = Vec::with_capacity(records.len() * 2);
        let mut pubcomps = Vec::new();
        for record in records {
            let client_id = Arc::clone(&client_id);
            match record {
                Persist::Sent {
                    packet_id,
                    state,
                    delivery,
                } => {
                    let Some(stored) = delivery.stored else {
                        continue;
                    };
                    let body = body_of(&delivery.message, stored.body_id, now, now_ms);
                    let queued = queued_of(&delivery, body);
                    let inflight = inflight_record(packet_id, stored.seq, state, Some(queued));
                    let target = if state == OutboundState::AwaitingPubRec {
                        &mut gated
                    } else {
                        &mut batch
                    };
                    // Inflight first: the body's reference count never drops to zero between.
                    target.push(Mutation::PutInflight {
                        client_id: Arc::clone(&client_id),
                        inflight,
                    });
                    target.push(Mutation::Dequeue {
                        client_id,
                        seqs: stored.seq..=stored.seq,
                    });
                }
                Persist::Released { packet_id, seq } => {
                    let state = OutboundState::AwaitingPubComp;
                    let inflight = inflight_record(packet_id, seq, state, None);
                    // The PUBREL must not leave before this commits: after PUBREL the PUBLISH
                    // is never re-sent [MQTT-4.3.3-3], so a crash must not bring it back.
                    gated.push(Mutation::PutInflight {
                        client_id,
                        inflight,
                    });
                }
                Persist::Completed { packet_id } => batch.push(Mutation::DeleteInflight {
                    client_id,
                    packet_id,
                }),
                Persist::InboundReleased { packet_id } => {
                    batch.push(Mutation::DeleteInboundQos2 {
                        client_id,
                        packet_id,
                    });
                    pubcomps.push(packet_id);
                }
            }
        }
        let mut ticket = (!batch.is_empty()).then(|| persistence.submit(batch));
        for packet_id in pubcomps {
            let pubcomp = Packet::PubComp(Ack {
                packet_id,
                reason: ReasonCode::Success,
                properties: Properties::default(),
            });
            self.hold.reply(
                &mut self.session,
                Reply::Packet(Box::new(pubcomp)),
                ticket.take(),
            );
        }
        (!gated.is_empty()).then(|| persistence.submit(gated))
    }

    /// Stores the granted subscriptions (or removals); the SUBACK/UNSUBACK waits for it.
    pub(super) fn store_subscriptions(
        &self,
        granted: Vec<SubscriptionChange>,
    ) -> Option<CommitTicket> {
        let client_id = self.stored_id()?;
        let persistence = self.broker.persistence()?;
        let batch: Vec<Mutation> = granted
            .into_iter()
            .map(|(filter, granted)| match granted {
                Some((options, subscription_id)) => Mutation::PutSubscription {
                    client_id: Arc::clone(&client_id),
                    subscription: SubscriptionRecord {
                        filter,
                        options,
                        subscription_id,
                    },
                },
                None => Mutation::DeleteSubscription {
                    client_id: Arc::clone(&client_id),
                    filter,
                },
            })
            .collect();
        (!batch.is_empty()).then(|| persistence.submit(batch))
    }
}

/// Stores a session being parked as disconnected now, with its pending delayed will.
pub(super) fn store_parked(broker: &Broker, detached: &DetachedSession) {
    let stored = detached.mailbox.store().map(|s| Arc::clone(&s.client_id));
    let (Some(client_id), Some(persistence)) = (stored, broker.persistence()) else {
        return;
    };
    {
        let now_ms = unix_ms_now();
        let mut batch = vec![Mutation::PutSession(SessionRecord {
            client_id: Arc::clone(&client_id),
            expiry_interval_secs: detached.expiry_secs,
            last_disconnect_ms: Some(now_ms),
            protocol_version: detached.session.version(),
            username: detached.username.clone(),
        })];
        if let Some(will) = &detached.pending_will {
            let delay = will.properties.will_delay_interval.unwrap_or(0);
            let message = fulmar_core::Message {
                topic: will.topic.clone(),
                payload: will.payload.clone(),
                qos: will.qos,
                retain: will.retain,
                properties: will.properties.clone(),
                origin: None,
                expires_at: None,
            };
            let body = body_of(&message, persistence.new_body_id(), Instant::now(), now_ms);
            batch.push(Mutation::PutWill {
                client_id,
                will: WillRecord {
                    message: body,
                    publish_at_ms: now_ms + u64::from(delay) * 1000,
                },
            });
        }
        drop(persistence.submit(batch));
    }
}
