//! The publish path and subscription changes: match once, share the message, push into
//! each recipient's bounded outbox. Runs on the publisher's task (as NATS does); never
//! blocks on a slow subscriber.

use std::sync::Arc;

use fulmar_core::{Delivery, Message, PushOutcome, Session, SessionKey};
use fulmar_proto::{ReasonCode, RetainHandling, Subscribe, TopicFilter};
use smallvec::SmallVec;

use crate::broker::{Broker, Subscriber};
use crate::mailbox::Mailbox;
use crate::metrics::bump;

/// One recipient of a message, before deduplication.
struct Target {
    key: SessionKey,
    delivery: Delivery,
    mailbox: Arc<Mailbox>,
}

impl Broker {
    /// Routes an accepted message: updates the retained index when RETAIN is set, then
    /// delivers to every matching subscription. Returns the number of recipients.
    pub fn publish(&self, message: Message) -> usize {
        let message = Arc::new(message);
        if message.retain {
            self.update_retained(&message);
        }
        let mut targets: SmallVec<[Target; 8]> = SmallVec::new();
        {
            let tree = self.subscriptions.read();
            tree.for_each_match(message.topic.as_str(), |key, subscriber| {
                if let Some(target) = target_for(&message, key, subscriber) {
                    targets.push(target);
                }
            });
        }
        let targets = merge_overlapping(targets);
        for target in &targets {
            self.push_delivery(&target.mailbox, target.delivery.clone());
        }
        targets.len()
    }

    /// [MQTT-3.3.1-5..7] a retained message replaces the previous one for its topic; an
    /// empty payload removes it and is itself not stored.
    fn update_retained(&self, message: &Arc<Message>) {
        let topic = message.topic.as_str();
        let mut retained = self.retained.write();
        if message.payload.is_empty() {
            retained.remove(topic);
        } else {
            retained.insert(topic, Arc::clone(message));
        }
    }

    /// Pushes one delivery and counts what was dropped.
    pub(crate) fn push_delivery(&self, mailbox: &Mailbox, delivery: Delivery) {
        match mailbox.push(delivery) {
            PushOutcome::Queued { .. } => {}
            PushOutcome::DroppedFull => self.metrics().record_queue_full(mailbox.client_id()),
            PushOutcome::DroppedOffline => bump(&self.metrics().dropped_offline_qos0),
        }
    }

    /// Applies a SUBSCRIBE for `session` and queues the retained messages it asks for.
    /// Returns the SUBACK reason codes, one per filter, in order [MQTT-3.8.4-5].
    pub fn subscribe(
        &self,
        key: SessionKey,
        mailbox: &Arc<Mailbox>,
        session: &mut Session,
        subscribe: &Subscribe,
    ) -> Vec<ReasonCode> {
        let subscription_id = subscribe
            .properties
            .subscription_identifiers
            .first()
            .copied();
        let mut reasons = Vec::with_capacity(subscribe.filters.len());
        for (filter, options) in &subscribe.filters {
            let existed = session.add_subscription(filter.clone(), *options);
            let subscriber = Subscriber {
                mailbox: Arc::clone(mailbox),
                options: *options,
                subscription_id,
            };
            // [MQTT-3.8.4-3] a subscription with the same filter replaces the old one.
            self.subscriptions
                .write()
                .insert(filter.as_str(), key, subscriber);
            let send_retained = match options.retain_handling {
                RetainHandling::SendAtSubscribe => true,
                RetainHandling::SendAtSubscribeIfNew => !existed,
                RetainHandling::DoNotSend => false,
            };
            // MQTT 5 §4.8.2: no retained messages for shared subscriptions.
            if send_retained && filter.shared().is_none() {
                self.queue_retained(filter, options.qos, subscription_id, mailbox);
            }
            reasons.push(ReasonCode::granted(options.qos));
        }
        reasons
    }

    /// [MQTT-3.3.1-8] retained messages matching a new subscription are sent with RETAIN set.
    fn queue_retained(
        &self,
        filter: &TopicFilter,
        granted: fulmar_proto::QoS,
        subscription_id: Option<u32>,
        mailbox: &Mailbox,
    ) {
        let mut matching: Vec<Arc<Message>> = Vec::new();
        self.retained
            .read()
            .for_each_matching(filter.as_str(), |_, message| {
                matching.push(Arc::clone(message))
            });
        for message in matching {
            let qos = message.qos.min(granted);
            let mut delivery = Delivery::new(message, qos, true);
            delivery.subscription_ids.extend(subscription_id);
            self.push_delivery(mailbox, delivery);
        }
    }

    /// Applies an UNSUBSCRIBE; returns the UNSUBACK reason codes (MQTT 5).
    pub fn unsubscribe(
        &self,
        key: SessionKey,
        session: &mut Session,
        filters: &[TopicFilter],
    ) -> Vec<ReasonCode> {
        let mut tree = self.subscriptions.write();
        filters
            .iter()
            .map(|filter| {
                let existed = session.remove_subscription(filter);
                tree.remove(filter.as_str(), key);
                if existed {
                    ReasonCode::Success
                } else {
                    ReasonCode::NoSubscriptionExisted
                }
            })
            .collect()
    }

    /// Ends a session for good: its subscriptions leave the router and its queue is emptied.
    pub fn discard_session(&self, key: SessionKey, session: &Session, mailbox: &Mailbox) {
        {
            let mut tree = self.subscriptions.write();
            for filter in session.subscriptions().keys() {
                tree.remove(filter.as_str(), key);
            }
        }
        mailbox.with(|outbox| outbox.clear());
    }
}

fn target_for(message: &Arc<Message>, key: SessionKey, subscriber: &Subscriber) -> Option<Target> {
    let options = &subscriber.options;
    // MQTT 5 No Local [MQTT-3.8.3-3]: not back to the publishing session.
    if options.no_local && message.origin == Some(key) {
        return None;
    }
    // [MQTT-3.3.1-9] live messages go out with RETAIN clear, unless Retain As Published.
    let retain = options.retain_as_published && message.retain;
    let mut delivery = Delivery::new(Arc::clone(message), message.qos.min(options.qos), retain);
    delivery.subscription_ids.extend(subscriber.subscription_id);
    Some(Target {
        key,
        delivery,
        mailbox: Arc::clone(&subscriber.mailbox),
    })
}

/// [MQTT-3.3.5-1] a client with several matching subscriptions gets the message once, at
/// the highest QoS among them, carrying every subscription identifier (MQTT 5 §3.3.4).
fn merge_overlapping(mut targets: SmallVec<[Target; 8]>) -> SmallVec<[Target; 8]> {
    if targets.len() < 2 {
        return targets;
    }
    targets.sort_unstable_by_key(|t| t.key);
    let mut merged: SmallVec<[Target; 8]> = SmallVec::with_capacity(targets.len());
    for target in targets {
        match merged.last_mut() {
            Some(last) if last.key == target.key => {
                last.delivery.qos = last.delivery.qos.max(target.delivery.qos);
                last.delivery.retain |= target.delivery.retain;
                last.delivery
                    .subscription_ids
                    .extend(target.delivery.subscription_ids);
            }
            _ => merged.push(target),
        }
    }
    merged
}
