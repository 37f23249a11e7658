//! Applying a batch of mutations inside one transaction: cascades, shared bodies and their
//! reference counts, and the usage deltas the limits need. Both backends run this code.
//!
//! # Invariants (hold between batches)
//! - Every per-session entry belongs to a session in `Sessions` (checked on put, cascaded
//!   on delete).
//! - `Refs[id]` equals the number of queue, inflight, retained and will entries that refer
//!   to body `id`, and `Messages[id]` exists exactly while it is positive.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::codec::{self, session_key, session_prefix, DeliveryRef, Reader};
use crate::record::{InflightRecord, InflightState, MessageBody, MessageId, Mutation};
use crate::record::{QueuedDelivery, WillRecord};
use crate::tables::{collect, Table, Tables};
use crate::usage::Effects;
use crate::StoreError;

/// Applies `mutations` in order. On error the caller must roll the transaction back: the
/// tables may hold part of the batch.
pub(crate) fn apply(t: &mut impl Tables, mutations: &[Mutation]) -> Result<Effects, StoreError> {
    let mut cx = Batch::default();
    let skip = crate::coalesce::superseded(mutations);
    for (mutation, _) in mutations.iter().zip(skip).filter(|(_, skip)| !skip) {
        cx.one(t, mutation)?;
    }
    cx.settle_refs(t)?;
    Ok(cx.effects)
}

/// What one batch has done so far.
#[derive(Default)]
struct Batch {
    /// Reference count changes, written once at the end of the batch.
    refs: HashMap<MessageId, i64>,
    /// Bodies known to be in `Messages` (found or written during this batch).
    bodies: HashSet<MessageId>,
    /// Sessions known to exist at this point of the batch.
    sessions: HashSet<Arc<str>>,
    effects: Effects,
}

impl Batch {
    fn one(&mut self, t: &mut impl Tables, mutation: &Mutation) -> Result<(), StoreError> {
        match mutation {
            Mutation::PutSession(record) => {
                let value = codec::encode_session(record);
                t.put(Table::Sessions, record.client_id.as_bytes(), &value)?;
                self.sessions.insert(Arc::clone(&record.client_id));
            }
            Mutation::DeleteSession { client_id } => self.delete_session(t, client_id)?,
            Mutation::PutSubscription {
                client_id,
                subscription,
            } => {
                self.require_session(t, client_id)?;
                let key = session_key(client_id, subscription.filter.as_str().as_bytes());
                let value = codec::encode_subscription(subscription);
                t.put(Table::Subscriptions, &key, &value)?;
            }
            Mutation::DeleteSubscription { client_id, filter } => {
                let key = session_key(client_id, filter.as_str().as_bytes());
                t.remove(Table::Subscriptions, &key)?;
            }
            Mutation::Enqueue {
                client_id,
                seq,
                delivery,
            } => self.enqueue(t, client_id, *seq, delivery)?,
            Mutation::Dequeue { client_id, seqs } if !seqs.is_empty() => {
                let lo = session_key(client_id, &seqs.start().to_be_bytes());
                let hi = match seqs.end().checked_add(1) {
                    Some(end) => Some(session_key(client_id, &end.to_be_bytes())),
                    None => codec::prefix_end(&session_prefix(client_id)),
                };
                for (key, value) in collect(t, Table::Queue, &lo, hi.as_deref())? {
                    t.remove(Table::Queue, &key)?;
                    self.drop_queue_entry(client_id, &value)?;
                }
            }
            Mutation::Dequeue { .. } => {}
            Mutation::PutInflight {
                client_id,
                inflight,
            } => self.put_inflight(t, client_id, inflight)?,
            Mutation::DeleteInflight {
                client_id,
                packet_id,
            } => {
                let key = session_key(client_id, &packet_id.get().to_be_bytes());
                if let Some(old) = t.remove(Table::Inflight, &key)? {
                    self.release_inflight(&old)?;
                }
            }
            Mutation::PutInboundQos2 {
                client_id,
                packet_id,
            } => {
                self.require_session(t, client_id)?;
                let key = session_key(client_id, &packet_id.get().to_be_bytes());
                t.put(Table::InboundQos2, &key, &[])?;
            }
            Mutation::DeleteInboundQos2 {
                client_id,
                packet_id,
            } => {
                let key = session_key(client_id, &packet_id.get().to_be_bytes());
                t.remove(Table::InboundQos2, &key)?;
            }
            Mutation::PutRetained(body) => {
                let topic = body.topic.as_str().as_bytes();
                if let Some(old) = t.remove(Table::Retained, topic)? {
                    self.release(id_value(&old)?);
                }
                self.reference(t, body)?;
                t.put(Table::Retained, topic, &body.id.0.to_le_bytes())?;
            }
            Mutation::DeleteRetained { topic } => {
                if let Some(old) = t.remove(Table::Retained, topic.as_str().as_bytes())? {
                    self.release(id_value(&old)?);
                }
            }
            Mutation::PutWill { client_id, will } => self.put_will(t, client_id, will)?,
            Mutation::DeleteWill { client_id } => {
                if let Some(old) = t.remove(Table::Wills, client_id.as_bytes())? {
                    self.release(will_value(&old)?.1);
                }
            }
        }
        Ok(())
    }

    fn require_session(&mut self, t: &impl Tables, client_id: &Arc<str>) -> Result<(), StoreError> {
        if self.sessions.contains(client_id) {
            return Ok(());
        }
        if t.get(Table::Sessions, client_id.as_bytes())?.is_none() {
            return Err(StoreError::UnknownSession(client_id.to_string()));
        }
        self.sessions.insert(Arc::clone(client_id));
        Ok(())
    }

    fn delete_session(
        &mut self,
        t: &mut impl Tables,
        client_id: &Arc<str>,
    ) -> Result<(), StoreError> {
        t.remove(Table::Sessions, client_id.as_bytes())?;
        self.sessions.remove(client_id);
        self.effects.reset_session(client_id);
        let prefix = session_prefix(client_id);
        let end = codec::prefix_end(&prefix);
        for table in [
            Table::Subscriptions,
            Table::Queue,
            Table::Inflight,
            Table::InboundQos2,
        ] {
            for (key, value) in collect(t, table, &prefix, end.as_deref())? {
                t.remove(table, &key)?;
                match table {
                    Table::Queue => {
                        self.release(codec::read_delivery_ref(&mut Reader(&value))?.message)
                    }
                    Table::Inflight => self.release_inflight(&value)?,
                    _ => {}
                }
            }
        }
        if let Some(old) = t.remove(Table::Wills, client_id.as_bytes())? {
            self.release(will_value(&old)?.1);
        }
        Ok(())
    }

    fn enqueue(
        &mut self,
        t: &mut impl Tables,
        client_id: &Arc<str>,
        seq: u64,
        delivery: &QueuedDelivery,
    ) -> Result<(), StoreError> {
        self.require_session(t, client_id)?;
        let key = session_key(client_id, &seq.to_be_bytes());
        if let Some(old) = t.remove(Table::Queue, &key)? {
            self.drop_queue_entry(client_id, &old)?;
        }
        let reference = self.reference(t, &delivery.message)?;
        let mut value = Vec::with_capacity(32);
        codec::put_delivery_ref(&mut value, &delivery_ref(reference, delivery));
        t.put(Table::Queue, &key, &value)?;
        self.effects.queue_delta(client_id, 1, reference.1 as i64);
        Ok(())
    }

    fn drop_queue_entry(&mut self, client_id: &Arc<str>, value: &[u8]) -> Result<(), StoreError> {
        let old = codec::read_delivery_ref(&mut Reader(value))?;
        self.release(old.message);
        self.effects.queue_delta(client_id, -1, -(old.size as i64));
        Ok(())
    }

    fn put_inflight(
        &mut self,
        t: &mut impl Tables,
        client_id: &Arc<str>,
        inflight: &InflightRecord,
    ) -> Result<(), StoreError> {
        self.require_session(t, client_id)?;
        let resendable = inflight.state != InflightState::AwaitingPubComp;
        if resendable != inflight.delivery.is_some() {
            return Err(StoreError::Decode(format!(
                "inflight {:?} must carry a message exactly while the PUBLISH may be re-sent",
                inflight.state
            )));
        }
        let key = session_key(client_id, &inflight.packet_id.get().to_be_bytes());
        if let Some(old) = t.remove(Table::Inflight, &key)? {
            self.release_inflight(&old)?;
        }
        let mut value = Vec::with_capacity(40);
        value.extend_from_slice(&inflight.seq.to_le_bytes());
        value.push(codec::inflight_state_byte(inflight.state));
        if let Some(delivery) = &inflight.delivery {
            let reference = self.reference(t, &delivery.message)?;
            codec::put_delivery_ref(&mut value, &delivery_ref(reference, delivery));
        }
        t.put(Table::Inflight, &key, &value)
    }

    fn release_inflight(&mut self, value: &[u8]) -> Result<(), StoreError> {
        let mut r = Reader(value);
        r.u64()?;
        r.u8()?;
        if !r.0.is_empty() {
            self.release(codec::read_delivery_ref(&mut r)?.message);
        }
        Ok(())
    }

    fn put_will(
        &mut self,
        t: &mut impl Tables,
        client_id: &Arc<str>,
        will: &WillRecord,
    ) -> Result<(), StoreError> {
        self.require_session(t, client_id)?;
        if let Some(old) = t.remove(Table::Wills, client_id.as_bytes())? {
            self.release(will_value(&old)?.1);
        }
        self.reference(t, &will.message)?;
        let mut value = will.publish_at_ms.to_le_bytes().to_vec();
        value.extend_from_slice(&will.message.id.0.to_le_bytes());
        t.put(Table::Wills, client_id.as_bytes(), &value)
    }

    /// Counts one more reference to `body`, writing the body if the store does not hold it
    /// yet. Returns its id and size.
    fn reference(
        &mut self,
        t: &mut impl Tables,
        body: &MessageBody,
    ) -> Result<(MessageId, u64), StoreError> {
        let key = body.id.0.to_be_bytes();
        if !self.bodies.contains(&body.id) {
            if t.get(Table::Refs, &key)?.is_none() {
                let value = codec::encode_message(body)?;
                t.put(Table::Messages, &key, &value)?;
                self.effects.body_delta(1, value.len() as i64);
            }
            self.bodies.insert(body.id);
        }
        *self.refs.entry(body.id).or_insert(0) += 1;
        Ok((body.id, body.queued_size()))
    }

    fn release(&mut self, id: MessageId) {
        *self.refs.entry(id).or_insert(0) -= 1;
    }

    /// Writes the reference counts changed by the batch; bodies that nothing refers to any
    /// more are deleted (the store's garbage collection).
    fn settle_refs(&mut self, t: &mut impl Tables) -> Result<(), StoreError> {
        for (&id, &delta) in &self.refs {
            let key = id.0.to_be_bytes();
            let old = match t.get(Table::Refs, &key)? {
                Some(v) => i64::from(Reader(&v).u32()?),
                None => 0,
            };
            let count = old + delta;
            if count < 0 {
                return Err(StoreError::Decode(format!(
                    "body {} released too often",
                    id.0
                )));
            }
            if count == 0 {
                t.remove(Table::Refs, &key)?;
                if let Some(body) = t.remove(Table::Messages, &key)? {
                    self.effects.body_delta(-1, -(body.len() as i64));
                }
            } else {
                let count = u32::try_from(count).unwrap_or(u32::MAX);
                t.put(Table::Refs, &key, &count.to_le_bytes())?;
            }
        }
        Ok(())
    }
}

fn delivery_ref((message, size): (MessageId, u64), delivery: &QueuedDelivery) -> DeliveryRef {
    DeliveryRef {
        message,
        size,
        qos: delivery.qos,
        retain: delivery.retain,
        subscription_ids: delivery.subscription_ids.clone(),
    }
}

/// A retained entry's value: the body id.
pub(crate) fn id_value(value: &[u8]) -> Result<MessageId, StoreError> {
    let mut r = Reader(value);
    let id = MessageId(r.u64()?);
    r.finish()?;
    Ok(id)
}

/// A will entry's value: publish-at (Unix ms) and the body id.
pub(crate) fn will_value(value: &[u8]) -> Result<(u64, MessageId), StoreError> {
    let mut r = Reader(value);
    let at = r.u64()?;
    let id = MessageId(r.u64()?);
    r.finish()?;
    Ok((at, id))
}
