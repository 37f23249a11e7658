//! Startup recovery: rebuild the retained index and every stored session from the snapshot,
//! before any listener accepts.
//!
//! For each stored session: one stored as connected (no disconnect time) was cut off by the
//! crash, so the restart time is its disconnect time; one whose expiry has passed publishes
//! its will and is deleted; the others are rebuilt (fresh `SessionKey`, subscriptions into
//! the router, inbound QoS 2 ids, inflight in send order, queue in sequence order) and parked
//! with the time left on their expiry and will timers.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fulmar_core::{Message, RestoredState, Session};
use fulmar_proto::Will;
use fulmar_store::{MessageBody, Mutation, SessionSnapshot, Snapshot};

use super::records::{delivery_of, inflight_entry, message_of};
use super::{unix_ms_now, StoreSlot};
use crate::broker::{Broker, Subscriber, Username};
use crate::lifecycle;
use crate::mailbox::Mailbox;
use crate::registry::DetachedSession;

/// What recovery found, for the startup log.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Recovered {
    /// Retained messages restored.
    pub retained: usize,
    /// Sessions parked again.
    pub sessions: usize,
    /// Sessions that had expired meanwhile (deleted, wills published).
    pub expired: usize,
    /// Queued deliveries restored.
    pub queued: usize,
    /// Inflight exchanges restored.
    pub inflight: usize,
}

/// Message bodies turned into shared messages once each.
struct Messages {
    now: Instant,
    now_ms: u64,
    by_id: HashMap<u64, Arc<Message>>,
}

impl Messages {
    fn get(&mut self, body: &MessageBody) -> Arc<Message> {
        let (now, now_ms) = (self.now, self.now_ms);
        Arc::clone(
            self.by_id
                .entry(body.id.0)
                .or_insert_with(|| Arc::new(message_of(body, now, now_ms))),
        )
    }
}

impl Broker {
    /// Rebuilds the broker's state from `snapshot` (call once, before accepting).
    pub async fn recover(self: &Arc<Self>, snapshot: Snapshot) -> Recovered {
        let mut found = Recovered::default();
        let mut messages = Messages {
            now: Instant::now(),
            now_ms: unix_ms_now(),
            by_id: HashMap::new(),
        };
        {
            let mut retained = self.retained.write();
            for body in &snapshot.retained {
                retained.insert(body.topic.as_str(), messages.get(body));
                found.retained += 1;
            }
        }
        let mut fixes = Vec::new();
        for stored in snapshot.sessions {
            self.recover_session(stored, &mut messages, &mut found, &mut fixes)
                .await;
        }
        if let (Some(persistence), false) = (self.persistence(), fixes.is_empty()) {
            if let Err(e) = persistence.submit(fixes).await {
                tracing::error!(error = %e, "cannot record the sessions' disconnect times");
            }
        }
        found
    }

    async fn recover_session(
        self: &Arc<Self>,
        stored: SessionSnapshot,
        messages: &mut Messages,
        found: &mut Recovered,
        fixes: &mut Vec<Mutation>,
    ) {
        let now_ms = messages.now_ms;
        let record = &stored.session;
        let client_id = Arc::clone(&record.client_id);
        let disconnected_ms = match record.last_disconnect_ms {
            Some(ms) => ms,
            None => {
                let mut fixed = record.clone();
                fixed.last_disconnect_ms = Some(now_ms);
                fixes.push(Mutation::PutSession(fixed));
                now_ms
            }
        };
        let expiry_left = (record.expiry_interval_secs != u32::MAX).then(|| {
            let ends = disconnected_ms + u64::from(record.expiry_interval_secs) * 1000;
            Duration::from_millis(ends.saturating_sub(now_ms))
        });
        let will = stored.will.as_ref().map(|w| {
            let message = messages.get(&w.message);
            let left = Duration::from_millis(w.publish_at_ms.saturating_sub(now_ms));
            (will_of(&message, left), left)
        });
        if expiry_left.is_some_and(|left| left.is_zero()) {
            if let Some((will, _)) = will {
                self.publish_will(will);
            }
            fixes.push(Mutation::DeleteSession { client_id });
            found.expired += 1;
            return;
        }
        let config = self.config();
        let inflight = stored
            .inflight
            .iter()
            .map(|r| {
                let message = r.delivery.as_ref().map(|d| messages.get(&d.message));
                inflight_entry(r, message)
            })
            .collect();
        let state = RestoredState {
            subscriptions: stored
                .subscriptions
                .iter()
                .map(|s| (s.filter.clone(), s.options))
                .collect(),
            inflight,
            inbound_qos2: stored.inbound_qos2.clone(),
        };
        let session = Session::restore(
            record.protocol_version,
            self.session_limits(),
            state,
            messages.now,
        );
        let slot = StoreSlot::new(Arc::clone(&client_id), stored.next_seq());
        let mailbox = Arc::new(Mailbox::with_store(
            Arc::clone(&client_id),
            config.queue_limits(),
            Some(slot),
        ));
        mailbox.go_offline();
        for (seq, queued) in &stored.queue {
            let message = messages.get(&queued.message);
            self.push_delivery(&mailbox, delivery_of(queued, message, *seq));
        }
        let key = self.new_session_key();
        let username = Username::new(record.username.clone());
        {
            let mut tree = self.subscriptions.write();
            for sub in &stored.subscriptions {
                let shared = sub.filter.shared().is_some();
                let subscriber = Subscriber {
                    mailbox: Arc::clone(&mailbox),
                    options: sub.options,
                    subscription_id: sub.subscription_id,
                    shared_filter: shared.then(|| Arc::from(sub.filter.as_str())),
                    username: username.clone(),
                };
                tree.insert(sub.filter.as_str(), key, subscriber);
            }
        }
        found.sessions += 1;
        found.queued += stored.queue.len();
        found.inflight += stored.inflight.len();
        let detached = DetachedSession {
            key,
            session,
            mailbox,
            expiry_secs: record.expiry_interval_secs,
            pending_will: will.as_ref().map(|(w, _)| w.clone()),
            username: record.username.clone(),
        };
        let (slot, mut state) = self.registry.lock(&client_id).await;
        let timers = (expiry_left, will.map(|(_, left)| left));
        lifecycle::park_for(self, &client_id, &slot, &mut state, detached, timers);
    }
}

/// The will to publish from a stored will message.
fn will_of(message: &Message, delay: Duration) -> Will {
    let mut properties = message.properties.clone();
    properties.will_delay_interval = Some(u32::try_from(delay.as_secs()).unwrap_or(u32::MAX));
    Will {
        topic: message.topic.clone(),
        payload: message.payload.clone(),
        qos: message.qos,
        retain: message.retain,
        properties,
    }
}
