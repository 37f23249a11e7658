//! Reading a session's spilled queue back from the store (see `fulmar_core::outbox`), and
//! forgetting stored deliveries that were dropped instead of sent.
//!
//! # Why a spilled entry is always in the store when it is read
//! An entry spills only while its session is offline, and its `Enqueue` was submitted
//! before it was pushed. A connection resumes a session by marking it online and then
//! awaiting its own session record's commit (`handshake::store_connected`) before it
//! drains anything; the commit queue is FIFO, so every `Enqueue` of a spilled entry has
//! committed by then.

use std::sync::Arc;
use std::time::Instant;

use fulmar_core::{Delivery, SpilledRef, StoredRef};
use fulmar_store::Mutation;

use super::{Connection, BATCH};
use crate::metrics::bump;
use crate::persist::{delivery_of, message_of, unix_ms_now};

impl Connection {
    /// Takes the spilled entries at the front of the outbox (at most `window`, the free
    /// inflight slots) and puts their deliveries, read from the store, into `batch`.
    /// `now` must be the instant the caller checks expiry against.
    pub(super) fn unspill(&mut self, window: usize, now: Instant, batch: &mut Vec<Delivery>) {
        let mut spilled: Vec<SpilledRef> = Vec::new();
        self.mailbox
            .with(|outbox| outbox.pop_spilled(window.min(BATCH), &mut spilled));
        if spilled.is_empty() {
            return;
        }
        let (Some(client_id), Some(persistence)) = (self.stored_id(), self.broker.persistence())
        else {
            // Only stored sessions spill; this is unreachable short of a bug.
            tracing::error!(client_id = %self.client_id(), lost = spilled.len(), "spilled queue without a store");
            return;
        };
        let seqs: Vec<u64> = spilled.iter().map(|s| s.stored.seq).collect();
        let found = match persistence.load_queued(&client_id, &seqs) {
            Ok(found) => found,
            Err(error) => {
                // The entries stay in the store and come back with the next resume or
                // restart; this connection cannot send them.
                tracing::error!(client_id = %self.client_id(), %error, entries = seqs.len(), "cannot read the queue back from the store");
                bump(&self.broker.metrics().store_read_failures);
                return;
            }
        };
        let now_ms = unix_ms_now();
        for (seq, queued) in seqs.into_iter().zip(found) {
            let Some(queued) = queued else {
                tracing::error!(client_id = %self.client_id(), seq, "spilled delivery missing from the store");
                bump(&self.broker.metrics().store_read_failures);
                continue;
            };
            let message = Arc::new(message_of(&queued.message, now, now_ms));
            batch.push(delivery_of(&queued, message, seq));
        }
    }

    /// Removes stored deliveries that were dropped rather than sent (expired, or too large
    /// for the client) from the stored queue; no reply waits for this commit.
    pub(super) fn forget_stored(&self, dropped: &[StoredRef]) {
        if dropped.is_empty() {
            return;
        }
        let (Some(client_id), Some(persistence)) = (self.stored_id(), self.broker.persistence())
        else {
            return;
        };
        let batch = dropped
            .iter()
            .map(|stored| Mutation::Dequeue {
                client_id: Arc::clone(&client_id),
                seqs: stored.seq..=stored.seq,
            })
            .collect();
        drop(persistence.submit(batch));
    }
}
