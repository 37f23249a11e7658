//! Skipping writes that a later mutation of the same group undoes.
//!
//! Under load one group commit often holds a message's whole life: its `Enqueue`, the
//! `PutInflight` + `Dequeue` of its delivery, and the `DeleteInflight` of its PUBACK (or an
//! inbound QoS 2 id and its release). Writing the queue entry, the inflight entry and the body
//! only to remove them in the same transaction costs B-tree work and pages for nothing.
//!
//! # Rule
//! A put is skipped when a later mutation in the same batch deletes or replaces the same key:
//! `Enqueue` (client, seq) before a `Dequeue` covering seq; `PutInflight` (client, packet id)
//! before a `DeleteInflight` or another `PutInflight` of that id; `PutInboundQos2` before its
//! `DeleteInboundQos2`; `PutRetained` before another `PutRetained` or a `DeleteRetained` of
//! its topic. The later mutation is always applied, and it removes (or replaces) whatever
//! the key held before the batch, so the final state is the same as applying everything; a
//! body referenced only by skipped puts is never written. A `DeleteSession` between the two
//! changes nothing: the put would have been cascaded away.

use std::collections::{HashMap, HashSet};
use std::ops::RangeInclusive;

use crate::record::Mutation;

/// For each mutation of `batch`, whether applying it can be skipped (see the module docs).
pub(crate) fn superseded(batch: &[Mutation]) -> Vec<bool> {
    let mut skip = vec![false; batch.len()];
    let mut dequeued: HashMap<&str, Vec<&RangeInclusive<u64>>> = HashMap::new();
    let mut inflight_later: HashSet<(&str, u16)> = HashSet::new();
    let mut inbound_later: HashSet<(&str, u16)> = HashSet::new();
    let mut retained_later: HashSet<&str> = HashSet::new();
    for (i, mutation) in batch.iter().enumerate().rev() {
        match mutation {
            Mutation::Dequeue { client_id, seqs } => {
                dequeued.entry(client_id).or_default().push(seqs);
            }
            Mutation::Enqueue { client_id, seq, .. } => {
                skip[i] = dequeued
                    .get(&**client_id)
                    .is_some_and(|ranges| ranges.iter().any(|r| r.contains(seq)));
            }
            Mutation::DeleteInflight {
                client_id,
                packet_id,
            } => {
                inflight_later.insert((client_id, packet_id.get()));
            }
            Mutation::PutInflight {
                client_id,
                inflight,
            } => {
                skip[i] = !inflight_later.insert((client_id, inflight.packet_id.get()));
            }
            Mutation::DeleteInboundQos2 {
                client_id,
                packet_id,
            } => {
                inbound_later.insert((client_id, packet_id.get()));
            }
            Mutation::PutInboundQos2 {
                client_id,
                packet_id,
            } => skip[i] = inbound_later.contains(&(&**client_id, packet_id.get())),
            Mutation::DeleteRetained { topic } => {
                retained_later.insert(topic.as_str());
            }
            Mutation::PutRetained(body) => {
                skip[i] = !retained_later.insert(body.topic.as_str());
            }
            _ => {}
        }
    }
    skip
}
