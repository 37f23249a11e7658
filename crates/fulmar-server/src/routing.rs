//! The publish path and subscription changes: match once, share the message, push into
//! each recipient's bounded outbox. Runs on the publisher's task (as NATS does); never
//! blocks on a slow subscriber.

use std::sync::Arc;
use std::time::Instant;

use fulmar_core::{
    spare_messages, Delivery, Message, ProtocolError, PushOutcome, Session, SessionKey,
};
use fulmar_proto::{QoS, ReasonCode, RetainHandling, Subscribe, SubscriptionOptions, TopicFilter};
use smallvec::SmallVec;

use crate::broker::{Broker, Subscriber, Username};
use crate::mailbox::Mailbox;
use crate::metrics::bump;
use crate::persist::{self, Persistence};
use fulmar_auth::Access;
use fulmar_store::{CommitTicket, MessageBody, Mutation};

/// The result of routing one message.
#[derive(Debug, Default)]
pub struct Published {
    /// Sessions the message was delivered (queued) to.
    pub recipients: usize,
    /// Online sessions whose queues are congested after this delivery: the publisher should
    /// be held until they drain (see `connection::hold`).
    pub congested: SmallVec<[(SessionKey, Arc<Mailbox>); 2]>,
    /// The commit holding what this message changed in the store (queued for persistent
    /// sessions, retained): a QoS 1/2 acknowledgement must wait for it.
    pub ticket: Option<CommitTicket>,
    /// The message was refused (not routed at all): a stored queue or the store is full
    /// (0x97 Quota exceeded).
    pub refused: Option<ReasonCode>,
}

/// One recipient of a message, before deduplication. The mailbox is borrowed from the
/// subscription tree, whose read lock `publish_with` holds until every delivery is pushed:
/// cloning each recipient's `Arc<Mailbox>` (a locked increment, then a decrement) was a quarter
/// of the fan-out loop's time, and 64 B fan-out cost 8 % more broker CPU per message with it.
struct Target<'a> {
    key: SessionKey,
    delivery: Delivery,
    mailbox: &'a Arc<Mailbox>,
}

impl Broker {
    /// Routes an accepted message: updates the retained index when RETAIN is set, then
    /// delivers to every matching subscription.
    pub fn publish(&self, message: Message) -> Published {
        self.publish_with(message, Vec::new())
    }

    /// [`Broker::publish`], committing `extra` mutations (e.g. the publisher's inbound QoS 2
    /// id) in the same batch as the message's own (see `persist`).
    pub fn publish_with(&self, message: Message, extra: Vec<Mutation>) -> Published {
        let message = spare_messages::share(message);
        // Held to the end (see `Target`). Lock order: the subscription tree, then store gates,
        // the retained index, mailboxes and the dormant set; none of those is held by anything
        // that then takes the tree. With the store's queue full, `submit` blocks under it, so
        // SUBSCRIBE and UNSUBSCRIBE wait for the store then, as stored publishers already do.
        let tree = self.subscriptions.read();
        let mut targets: SmallVec<[Target<'_>; 8]> = SmallVec::new();
        let acl = self.security().acl();
        let mut denied = 0u64;
        let sources = {
            let topic = message.topic.as_str();
            tree.for_each_match(topic, |key, subscriber| {
                // A wildcard subscription never delivers what the ACL does not let its
                // client read.
                if let Some(acl) = &acl {
                    let reader = subscriber
                        .username
                        .with_client_id(subscriber.mailbox.client_id());
                    if !acl.check(&reader, Access::Read, topic) {
                        denied += 1;
                        return;
                    }
                }
                if let Some(target) = target_for(&message, key, subscriber) {
                    targets.push(target);
                }
            })
        };
        if denied > 0 {
            self.metrics()
                .deliveries_denied
                .fetch_add(denied, std::sync::atomic::Ordering::Relaxed);
        }
        // One source (one filter's subscribers, or one shared group) never repeats a key.
        if sources > 1 {
            merge_overlapping(&mut targets);
        }
        let mut batch = extra;
        let mut body = None;
        let stored;
        let _gates;
        if let Some(persistence) = self.persistence() {
            // Stored recipients, locked (address order, once each) until the batch is submitted.
            stored = stored_recipients(&targets);
            _gates = stored
                .iter()
                .filter_map(|m| m.store().map(|slot| slot.gate()))
                .collect::<SmallVec<[_; 4]>>();
            if let Err(limit) = stage(persistence, &message, &mut targets, &mut batch, &mut body) {
                bump(&self.metrics().dropped_queue_full);
                tracing::warn!(topic = %message.topic, %limit, "QoS 1/2 message refused: store limit");
                return Published {
                    refused: Some(limit.reason_code()),
                    ..Published::default()
                };
            }
        }
        if message.retain {
            self.update_retained(&message, &mut batch, &mut body);
        }
        let ticket = match self.persistence() {
            Some(persistence) if !batch.is_empty() => Some(persistence.submit(batch)),
            _ => None,
        };
        let mut published = Published {
            recipients: targets.len(),
            ticket,
            ..Published::default()
        };
        // Drained in place: moving the inline array into an iterator copies all eight slots.
        for target in targets.drain(..) {
            if self.push_delivery(target.mailbox, target.delivery) {
                published
                    .congested
                    .push((target.key, Arc::clone(target.mailbox)));
            }
        }
        spare_messages::release(message);
        published
    }

    /// [MQTT-3.3.1-5..7] a retained message replaces the previous one for its topic; an
    /// empty payload removes it and is itself not stored.
    fn update_retained(
        &self,
        message: &Arc<Message>,
        batch: &mut Vec<Mutation>,
        body: &mut Option<Arc<MessageBody>>,
    ) {
        let topic = message.topic.as_str();
        let mut retained = self.retained.write();
        if message.payload.is_empty() {
            let existed = retained.remove(topic).is_some();
            if existed && self.persistence().is_some() {
                batch.push(Mutation::DeleteRetained {
                    topic: message.topic.clone(),
                });
            }
        } else if retained.len() < self.config().limits.max_retained_messages
            || retained.get(topic).is_some()
        {
            retained.insert(topic, Arc::new(message.detached()));
            if let Some(persistence) = self.persistence() {
                batch.push(Mutation::PutRetained(stored_body(
                    persistence,
                    message,
                    body,
                )));
            }
        } else {
            drop(retained);
            bump(&self.metrics().retained_refused);
            tracing::warn!(
                topic,
                "limits.max_retained_messages reached: message not retained"
            );
        }
    }

    /// Pushes one delivery and counts what was dropped; returns whether the queue is now
    /// congested.
    pub(crate) fn push_delivery(&self, mailbox: &Mailbox, delivery: Delivery) -> bool {
        let stored = delivery.stored;
        let pushed = mailbox.push(delivery);
        match pushed.outcome {
            PushOutcome::Queued { .. } => return pushed.congested,
            PushOutcome::DroppedFull => self.metrics().record_queue_full(mailbox.client_id()),
            PushOutcome::DroppedOffline => bump(&self.metrics().dropped_offline_qos0),
        }
        // A dropped delivery's stored copy goes too (its Enqueue was submitted first), so
        // the stored queue never outgrows the outbox's limits.
        if let (Some(stored), Some(slot), Some(persistence)) =
            (stored, mailbox.store(), self.persistence())
        {
            drop(persistence.submit(vec![Mutation::Dequeue {
                client_id: Arc::clone(&slot.client_id),
                seqs: stored.seq..=stored.seq,
            }]));
        }
        pushed.congested
    }

    /// Applies a SUBSCRIBE for `session` and queues the retained messages it asks for.
    /// Returns the SUBACK reason codes, one per filter, in order [MQTT-3.8.4-5].
    pub fn subscribe(
        &self,
        (key, mailbox, username): (SessionKey, &Arc<Mailbox>, &Username),
        session: &mut Session,
        subscribe: &Subscribe,
    ) -> Result<Vec<ReasonCode>, ProtocolError> {
        let config = self.config();
        let settings = &config.mqtt;
        let subscription_id = subscribe
            .properties
            .subscription_identifiers
            .first()
            .copied();
        if subscription_id.is_some() && !settings.subscription_identifiers {
            return Err(ProtocolError::SubscriptionIdentifiersNotSupported);
        }
        let mut reasons = Vec::with_capacity(subscribe.filters.len());
        for (filter, requested) in &subscribe.filters {
            let shared = filter.shared().is_some();
            // [MQTT-3.8.3-4] No Local on a shared subscription is a protocol error.
            if shared && requested.no_local {
                return Err(ProtocolError::UnexpectedPacket(
                    "SUBSCRIBE with No Local on a shared subscription",
                ));
            }
            if !self.security().may_subscribe(
                &username.with_client_id(mailbox.client_id()),
                filter.as_str(),
            ) {
                // SUBACK 0x80 (3.1.1) / 0x87 Not authorized (MQTT 5) for a filter the ACL denies.
                tracing::info!(client_id = mailbox.client_id(), filter = %filter, "subscription denied by ACL");
                bump(&self.metrics().subscriptions_denied);
                reasons.push(ReasonCode::NotAuthorized);
                continue;
            }
            if let Some(refusal) = self.refusal(filter, shared, session) {
                bump(&self.metrics().subscriptions_refused);
                reasons.push(refusal);
                continue;
            }
            let options = SubscriptionOptions {
                qos: requested.qos.min(settings.max_qos()),
                ..*requested
            };
            let existed = session.add_subscription(filter.clone(), options);
            let subscriber = Subscriber {
                mailbox: Arc::clone(mailbox),
                options,
                subscription_id,
                shared_filter: shared.then(|| Arc::from(filter.as_str())),
                username: username.clone(),
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
            if send_retained && !shared {
                self.queue_retained(filter, options.qos, subscription_id, mailbox, username);
            }
            reasons.push(ReasonCode::granted(options.qos));
        }
        Ok(reasons)
    }

    /// The SUBACK refusal for a filter the configuration does not allow, if any.
    fn refusal(&self, filter: &TopicFilter, shared: bool, session: &Session) -> Option<ReasonCode> {
        let config = self.config();
        let (settings, limits) = (&config.mqtt, &config.limits);
        let text = filter.as_str();
        if text.len() > limits.max_topic_len || text.split('/').count() > limits.max_topic_levels {
            return Some(ReasonCode::TopicFilterInvalid);
        }
        let is_new = !session.subscriptions().contains_key(filter);
        if is_new && session.subscriptions().len() >= limits.max_subscriptions_per_client {
            return Some(ReasonCode::QuotaExceeded);
        }
        if shared && !settings.shared_subscriptions {
            return Some(ReasonCode::SharedSubscriptionsNotSupported);
        }
        let wildcard = filter
            .as_str()
            .split('/')
            .any(|level| level == "+" || level == "#");
        if wildcard && !settings.wildcard_subscriptions {
            return Some(ReasonCode::WildcardSubscriptionsNotSupported);
        }
        None
    }

    /// [MQTT-3.3.1-8] retained messages matching a new subscription are sent with RETAIN set;
    /// expired ones are not sent [MQTT-3.3.2-5].
    fn queue_retained(
        &self,
        filter: &TopicFilter,
        granted: fulmar_proto::QoS,
        subscription_id: Option<u32>,
        mailbox: &Mailbox,
        username: &Username,
    ) {
        let reader = username.with_client_id(mailbox.client_id());
        let now = Instant::now();
        let acl = self.security().acl();
        let mut matching: Vec<Arc<Message>> = Vec::new();
        self.retained
            .read()
            .for_each_matching(filter.as_str(), |topic, message| {
                let readable = acl
                    .as_ref()
                    .is_none_or(|acl| acl.check(&reader, Access::Read, topic));
                if readable && !message.is_expired(now) {
                    matching.push(Arc::clone(message));
                }
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

    /// Sends `delivery`, chosen for a shared subscription whose member `leaving` ended
    /// without acknowledging it, to another member of the same group, if there is one.
    pub(crate) fn redeliver_shared(&self, leaving: SessionKey, delivery: Delivery) -> bool {
        let Some(shared_filter) = delivery.shared_filter.clone() else {
            return false;
        };
        let mut chosen: Option<Arc<Mailbox>> = None;
        {
            let tree = self.subscriptions.read();
            let topic = delivery.message.topic.as_str();
            tree.for_each_match_picking(
                topic,
                |_, members| {
                    let same_group = members
                        .first()
                        .is_some_and(|(_, s)| s.shared_filter.as_deref() == Some(&*shared_filter));
                    if !same_group {
                        return None;
                    }
                    members.iter().position(|(key, _)| *key != leaving)
                },
                |key, subscriber| {
                    if key != leaving
                        && subscriber.shared_filter.as_deref() == Some(&*shared_filter)
                    {
                        chosen = Some(Arc::clone(&subscriber.mailbox));
                    }
                },
            );
        }
        match chosen {
            Some(mailbox) => {
                let mut delivery = delivery;
                delivery.retain = false;
                self.push_delivery(&mailbox, delivery);
                true
            }
            None => false,
        }
    }
}

/// The mailboxes of the QoS 1/2 recipients that have a stored session, in address order,
/// once each. Only with persistence on: without it no mailbox has a store slot.
fn stored_recipients(targets: &[Target<'_>]) -> SmallVec<[Arc<Mailbox>; 4]> {
    let mut stored: SmallVec<[Arc<Mailbox>; 4]> = targets
        .iter()
        .filter(|t| t.mailbox.store().is_some() && t.delivery.qos > QoS::AtMostOnce)
        .map(|t| Arc::clone(t.mailbox))
        .collect();
    stored.sort_unstable_by_key(|m| Arc::as_ptr(m) as usize);
    stored.dedup_by(|a, b| Arc::ptr_eq(a, b));
    stored
}

/// Adds an `Enqueue` for every QoS 1/2 delivery to a stored session, sharing one body, and
/// marks those deliveries stored. The caller holds the slots' gates until it has submitted
/// the batch (see `persist`). Fails, adding nothing, when the store is full.
fn stage(
    persistence: &Persistence,
    message: &Arc<Message>,
    targets: &mut [Target<'_>],
    batch: &mut Vec<Mutation>,
    body: &mut Option<Arc<MessageBody>>,
) -> Result<(), fulmar_store::LimitExceeded> {
    // The body is stored once however many queues hold it. A full session queue is not
    // checked here: that session's outbox drops the delivery (counted) and `push_delivery`
    // takes its stored copy back, while the other recipients still get the message.
    let stored_anywhere = targets
        .iter()
        .any(|t| t.mailbox.store().is_some() && t.delivery.qos > QoS::AtMostOnce);
    if stored_anywhere {
        persistence.check_room(message.queued_size() as u64)?;
    }
    for target in targets.iter_mut() {
        let Some(slot) = target.mailbox.store() else {
            continue;
        };
        if target.delivery.qos == QoS::AtMostOnce || !slot.is_open() {
            continue;
        }
        let body = stored_body(persistence, message, body);
        let seq = slot.next_seq();
        target.delivery.stored = Some(fulmar_core::StoredRef {
            seq,
            body_id: body.id.0,
        });
        batch.push(Mutation::Enqueue {
            client_id: Arc::clone(&slot.client_id),
            seq,
            delivery: persist::queued_of(&target.delivery, body),
        });
    }
    Ok(())
}

/// The message's stored body, made once per message however many records refer to it.
fn stored_body(
    persistence: &Persistence,
    message: &Message,
    body: &mut Option<Arc<MessageBody>>,
) -> Arc<MessageBody> {
    Arc::clone(body.get_or_insert_with(|| {
        let id = persistence.new_body_id();
        persist::body_of(message, id, Instant::now(), persist::unix_ms_now())
    }))
}

fn target_for<'a>(
    message: &Arc<Message>,
    key: SessionKey,
    subscriber: &'a Subscriber,
) -> Option<Target<'a>> {
    let options = &subscriber.options;
    // MQTT 5 No Local [MQTT-3.8.3-3]: not back to the publishing session.
    if options.no_local && message.origin == Some(key) {
        return None;
    }
    // [MQTT-3.3.1-9] live messages go out with RETAIN clear, unless Retain As Published.
    let retain = options.retain_as_published && message.retain;
    let mut delivery = Delivery::new(Arc::clone(message), message.qos.min(options.qos), retain);
    if let Some(id) = subscriber.subscription_id {
        delivery.subscription_ids.push(id);
    }
    delivery.shared_filter = subscriber.shared_filter.clone();
    Some(Target {
        key,
        delivery,
        mailbox: &subscriber.mailbox,
    })
}

/// [MQTT-3.3.5-1] a client with several matching non-shared subscriptions gets the message
/// once, at the highest QoS among them, carrying every subscription identifier (MQTT 5
/// §3.3.4). Shared subscriptions are separate deliveries (MQTT 5 §4.8.2).
fn merge_overlapping(targets: &mut SmallVec<[Target<'_>; 8]>) {
    if targets.len() < 2 {
        return;
    }
    // Plain deliveries of one key end up adjacent: shared ones (`Some`) sort after them.
    targets.sort_unstable_by(|a, b| {
        (a.key, &a.delivery.shared_filter).cmp(&(b.key, &b.delivery.shared_filter))
    });
    targets.dedup_by(|target, kept| {
        let same = kept.key == target.key
            && kept.delivery.shared_filter.is_none()
            && target.delivery.shared_filter.is_none();
        if same {
            kept.delivery.qos = kept.delivery.qos.max(target.delivery.qos);
            kept.delivery.retain |= target.delivery.retain;
            let ids = std::mem::take(&mut target.delivery.subscription_ids);
            kept.delivery.subscription_ids.extend(ids);
        }
        same
    });
}
