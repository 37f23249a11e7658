//! Reading the whole store back at startup, and rebuilding the in-memory usage counters.
//! Both backends run this code. A dangling reference or an entry without its session is
//! reported as an error: recovery never guesses.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::apply::{id_value, will_value};
use crate::codec::{self, split_session_key, DeliveryRef, Reader};
use crate::record::{InflightRecord, MessageBody, MessageId, QueuedDelivery, SessionSnapshot};
use crate::record::{Snapshot, WillRecord};
use crate::tables::{ReadTables, Table};
use crate::usage::{Effects, UsageTracker};
use crate::StoreError;

/// Message bodies decoded once and shared by everything that refers to them.
struct Bodies<'t, T> {
    tables: &'t T,
    cache: HashMap<MessageId, Arc<MessageBody>>,
}

impl<T: ReadTables> Bodies<'_, T> {
    fn get(&mut self, id: MessageId) -> Result<Arc<MessageBody>, StoreError> {
        if let Some(body) = self.cache.get(&id) {
            return Ok(Arc::clone(body));
        }
        let value = self
            .tables
            .get(Table::Messages, &id.0.to_be_bytes())?
            .ok_or_else(|| StoreError::Decode(format!("reference to missing body {}", id.0)))?;
        let body = Arc::new(codec::decode_message(id, &value)?);
        self.cache.insert(id, Arc::clone(&body));
        Ok(body)
    }

    fn delivery(&mut self, r: DeliveryRef) -> Result<QueuedDelivery, StoreError> {
        Ok(QueuedDelivery {
            message: self.get(r.message)?,
            qos: r.qos,
            retain: r.retain,
            subscription_ids: r.subscription_ids,
        })
    }
}

/// The queue entries of one session at `seqs` (see [`crate::Store::load_queued`]).
pub(crate) fn load_queued(
    t: &impl ReadTables,
    client_id: &str,
    seqs: &[u64],
) -> Result<Vec<Option<QueuedDelivery>>, StoreError> {
    let mut bodies = Bodies {
        tables: t,
        cache: HashMap::new(),
    };
    seqs.iter()
        .map(|seq| {
            let key = codec::session_key(client_id, &seq.to_be_bytes());
            let Some(value) = t.get(Table::Queue, &key)? else {
                return Ok(None);
            };
            let reference = codec::read_delivery_ref(&mut Reader(&value))?;
            bodies.delivery(reference).map(Some)
        })
        .collect()
}

/// Reads every record into a [`Snapshot`].
pub(crate) fn load_all(t: &impl ReadTables) -> Result<Snapshot, StoreError> {
    let mut sessions: BTreeMap<String, SessionSnapshot> = BTreeMap::new();
    t.scan(Table::Sessions, &[], None, &mut |key, value| {
        let client_id = std::str::from_utf8(key).map_err(|_| codec::decode_err("client id"))?;
        let session = codec::decode_session(client_id, value)?;
        sessions.insert(
            client_id.to_string(),
            SessionSnapshot {
                session,
                subscriptions: Vec::new(),
                queue: Vec::new(),
                inflight: Vec::new(),
                inbound_qos2: Vec::new(),
                will: None,
            },
        );
        Ok(())
    })?;
    let mut bodies = Bodies {
        tables: t,
        cache: HashMap::new(),
    };
    t.scan(Table::Subscriptions, &[], None, &mut |key, value| {
        let (id, filter) = split_session_key(key)?;
        let sub = codec::decode_subscription(filter, value)?;
        session_of(&mut sessions, id)?.subscriptions.push(sub);
        Ok(())
    })?;
    let mut queue_refs = Vec::new();
    t.scan(Table::Queue, &[], None, &mut |key, value| {
        let (id, seq) = split_session_key(key)?;
        let seq = u64::from_be_bytes(Reader(seq).array()?);
        let reference = codec::read_delivery_ref(&mut Reader(value))?;
        queue_refs.push((id.to_string(), seq, reference));
        Ok(())
    })?;
    for (id, seq, reference) in queue_refs {
        let delivery = bodies.delivery(reference)?;
        session_of(&mut sessions, &id)?.queue.push((seq, delivery));
    }
    let mut inflight_raw = Vec::new();
    t.scan(Table::Inflight, &[], None, &mut |key, value| {
        let (id, pid) = split_session_key(key)?;
        let packet_id = codec::packet_id(u16::from_be_bytes(Reader(pid).array()?))?;
        let mut r = Reader(value);
        let seq = r.u64()?;
        let state = codec::inflight_state(r.u8()?)?;
        let reference = if r.0.is_empty() {
            None
        } else {
            Some(codec::read_delivery_ref(&mut r)?)
        };
        inflight_raw.push((id.to_string(), packet_id, seq, state, reference));
        Ok(())
    })?;
    for (id, packet_id, seq, state, reference) in inflight_raw {
        let delivery = reference.map(|r| bodies.delivery(r)).transpose()?;
        session_of(&mut sessions, &id)?
            .inflight
            .push(InflightRecord {
                packet_id,
                seq,
                state,
                delivery,
            });
    }
    t.scan(Table::InboundQos2, &[], None, &mut |key, _| {
        let (id, pid) = split_session_key(key)?;
        let packet_id = codec::packet_id(u16::from_be_bytes(Reader(pid).array()?))?;
        session_of(&mut sessions, id)?.inbound_qos2.push(packet_id);
        Ok(())
    })?;
    let mut wills = Vec::new();
    t.scan(Table::Wills, &[], None, &mut |key, value| {
        let id = std::str::from_utf8(key).map_err(|_| codec::decode_err("client id"))?;
        wills.push((id.to_string(), will_value(value)?));
        Ok(())
    })?;
    for (id, (publish_at_ms, body)) in wills {
        let message = bodies.get(body)?;
        session_of(&mut sessions, &id)?.will = Some(WillRecord {
            message,
            publish_at_ms,
        });
    }
    let mut retained_ids = Vec::new();
    t.scan(Table::Retained, &[], None, &mut |_, value| {
        retained_ids.push(id_value(value)?);
        Ok(())
    })?;
    let retained = retained_ids
        .into_iter()
        .map(|id| bodies.get(id))
        .collect::<Result<_, _>>()?;
    let mut sessions: Vec<SessionSnapshot> = sessions.into_values().collect();
    for s in &mut sessions {
        s.inflight.sort_by_key(|i| i.seq);
    }
    Ok(Snapshot { sessions, retained })
}

fn session_of<'s>(
    sessions: &'s mut BTreeMap<String, SessionSnapshot>,
    id: &str,
) -> Result<&'s mut SessionSnapshot, StoreError> {
    sessions
        .get_mut(id)
        .ok_or_else(|| StoreError::Decode(format!("entry of missing session {id:?}")))
}

/// Rebuilds the usage counters and finds the next free message id.
pub(crate) fn scan_usage(t: &impl ReadTables) -> Result<(UsageTracker, u64), StoreError> {
    let mut effects = Effects::default();
    t.scan(Table::Queue, &[], None, &mut |key, value| {
        let (id, _) = split_session_key(key)?;
        let reference = codec::read_delivery_ref(&mut Reader(value))?;
        effects.queue_delta(id, 1, reference.size as i64);
        Ok(())
    })?;
    let mut next_id = 1u64;
    t.scan(Table::Messages, &[], None, &mut |key, value| {
        let id = u64::from_be_bytes(Reader(key).array()?);
        next_id = next_id.max(id + 1);
        effects.body_delta(1, value.len() as i64);
        Ok(())
    })?;
    let mut usage = UsageTracker::default();
    usage.merge(effects);
    Ok((usage, next_id))
}
