//! How sessions end: parked with their timers (Session Expiry, Will Delay), expired, or
//! ended at once — publishing a pending will and handing unacknowledged shared-subscription
//! messages to another member of the group.

use std::sync::Arc;
use std::time::{Duration, Instant};

use fulmar_core::Message;
use fulmar_proto::Will;
use fulmar_store::Mutation;

use crate::broker::Broker;
use crate::registry::{DetachedSession, Parked, Slot, SlotState};

impl Broker {
    /// Ends a session for good. Its pending will is published; its subscriptions leave the
    /// router; messages it got through a shared subscription and never acknowledged go to
    /// another member of that group (MQTT 5 §4.8.2: a shared-subscription message is not
    /// lost because one member left); everything else queued for it is dropped.
    pub fn end_session(&self, mut detached: DetachedSession) {
        if let Some(will) = detached.pending_will.take() {
            self.publish_will(will);
        }
        // The stored session goes with everything it owns (its commit needs no waiting:
        // nothing is acknowledged on the strength of it).
        if let (Some(slot), Some(persistence)) = (detached.mailbox.store(), self.persistence()) {
            drop(slot.delete(persistence));
        }
        {
            let mut tree = self.subscriptions.write();
            for filter in detached.session.subscriptions().keys() {
                tree.remove(filter.as_str(), detached.key);
            }
        }
        let mut orphans = detached.session.take_unacknowledged();
        orphans.extend(detached.mailbox.with(|outbox| outbox.drain_all()));
        let mut handed_on = 0usize;
        for mut delivery in orphans {
            // Its stored copy belonged to the session that ended.
            delivery.stored = None;
            if delivery.shared_filter.is_some() && self.redeliver_shared(detached.key, delivery) {
                handed_on += 1;
            }
        }
        if handed_on > 0 {
            tracing::debug!(
                client_id = detached.mailbox.client_id(),
                handed_on,
                "shared-subscription messages handed to other members"
            );
        }
    }

    /// Publishes a will message [MQTT-3.1.2-8]; its properties are forwarded like a
    /// PUBLISH's (MQTT 5 §3.1.3.2).
    pub fn publish_will(&self, will: Will) {
        tracing::debug!(topic = %will.topic, "publishing will");
        let expires_at = will
            .properties
            .message_expiry_interval
            .map(|secs| Instant::now() + Duration::from_secs(u64::from(secs)));
        let mut properties = will.properties;
        properties.will_delay_interval = None;
        self.publish(Message {
            topic: will.topic,
            payload: will.payload,
            qos: will.qos,
            retain: will.retain,
            properties,
            origin: None,
            expires_at,
        });
    }
}

/// Parks a persistent session in its slot (the caller holds the slot's lock) and arms its
/// timers: Session Expiry (unless it never expires) and a delayed will, which fires at the
/// earlier of its delay and the session's end [MQTT-3.1.3-9].
pub(crate) fn park(
    broker: &Arc<Broker>,
    client_id: &str,
    slot: &Arc<Slot>,
    state: &mut SlotState,
    detached: DetachedSession,
) {
    let will_delay = detached
        .pending_will
        .as_ref()
        .and_then(|will| will.properties.will_delay_interval)
        .map(|secs| Duration::from_secs(u64::from(secs)));
    let expiry = (detached.expiry_secs != u32::MAX)
        .then(|| Duration::from_secs(u64::from(detached.expiry_secs)));
    park_for(
        broker,
        client_id,
        slot,
        state,
        detached,
        (expiry, will_delay),
    );
}

/// [`park`] with the time left until the session expires and until its will is due (`None`:
/// never / no will); a session restored after a restart has only part of them left.
pub(crate) fn park_for(
    broker: &Arc<Broker>,
    client_id: &str,
    slot: &Arc<Slot>,
    state: &mut SlotState,
    mut detached: DetachedSession,
    (expiry, will_delay): (Option<Duration>, Option<Duration>),
) {
    debug_assert!(detached.is_persistent());
    // A parked session may wait for days: it keeps no room for traffic it does not have
    // (its inflight window and reply queue, with their buffers, when both are empty), and
    // its unacknowledged messages keep no read slab alive.
    detached.session.detach_messages();
    detached.session.release_idle_memory();
    let mut timers = Vec::new();
    if let Some(delay) = will_delay.filter(|_| detached.pending_will.is_some()) {
        let (broker, slot) = (Arc::clone(broker), Arc::clone(slot));
        let timer = tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let mut state = slot.lock().await;
            let Some(detached) = state.detached.as_mut().map(|parked| &mut parked.session) else {
                return;
            };
            if let Some(will) = detached.pending_will.take() {
                broker.publish_will(will);
                let stored = detached.mailbox.store().map(|s| Arc::clone(&s.client_id));
                if let (Some(client_id), Some(persistence)) = (stored, broker.persistence()) {
                    drop(persistence.submit(vec![Mutation::DeleteWill { client_id }]));
                }
            }
        });
        timers.push(timer.abort_handle());
    }
    if let Some(expiry) = expiry {
        let (broker, slot, client_id) =
            (Arc::clone(broker), Arc::clone(slot), client_id.to_string());
        let timer = tokio::spawn(async move {
            tokio::time::sleep(expiry).await;
            let mut state = Arc::clone(&slot).lock_owned().await;
            // Timers are aborted whenever the parked session is taken, so a session found
            // here is the one this timer was armed for. No await follows the take.
            let Some(expired) = state.detached.take() else {
                return;
            };
            tracing::debug!(client_id, "session expired");
            broker.end_session(expired.session);
            if state.owner.is_none() {
                broker.registry.remove(&client_id, &slot, &state);
            }
        });
        timers.push(timer.abort_handle());
    }
    state.detached = Some(Box::new(Parked {
        session: detached,
        timers,
    }));
}
