//! How full the store is, per session and in total, and the limits the broker checks before
//! it accepts a QoS 1/2 message (refusing with 0x97 Quota exceeded when one is reached).
//!
//! Usage is kept in memory, rebuilt by a scan when the store opens and updated after each
//! commit, so a query never touches the disk or waits for a commit. It counts committed
//! state only: mutations still waiting in the commit queue are not in it, so a limit can be
//! overshot by at most what one group commit holds.

use std::collections::HashMap;

use fulmar_proto::ReasonCode;

/// One session's queue.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueUsage {
    /// Queued deliveries.
    pub messages: u64,
    /// Their [`crate::MessageBody::queued_size`], summed per delivery (a body queued for two
    /// sessions counts in both, as in `fulmar_core::Outbox`).
    pub bytes: u64,
}

/// The whole store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreUsage {
    /// Queued deliveries over all sessions.
    pub queued: u64,
    /// Distinct message bodies stored (each once, however many references it has).
    pub bodies: u64,
    /// Encoded bytes of those bodies: the bulk of the store, and what `max_store_bytes`
    /// bounds (the file itself is larger by B-tree overhead and pages not yet reused).
    pub body_bytes: u64,
}

/// Limits on what the store holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreLimits {
    /// Most deliveries queued for one session.
    pub max_queued_messages: u64,
    /// Most bytes queued for one session.
    pub max_queued_bytes: u64,
    /// Most body bytes in the whole store.
    pub max_store_bytes: u64,
}

impl Default for StoreLimits {
    fn default() -> Self {
        StoreLimits {
            max_queued_messages: 1000,
            max_queued_bytes: 16 * 1024 * 1024,
            max_store_bytes: 1024 * 1024 * 1024,
        }
    }
}

/// Which limit a message would break.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LimitExceeded {
    /// The session's queue holds `max_queued_messages`.
    #[error("session queue is full (messages)")]
    SessionMessages,
    /// The session's queue holds `max_queued_bytes`.
    #[error("session queue is full (bytes)")]
    SessionBytes,
    /// The store holds `max_store_bytes`.
    #[error("store is full")]
    StoreBytes,
}

impl LimitExceeded {
    /// The reason code to refuse the PUBLISH with (MQTT 5: PUBACK/PUBREC 0x97).
    pub fn reason_code(self) -> ReasonCode {
        ReasonCode::QuotaExceeded
    }
}

impl StoreLimits {
    /// Whether one more delivery of `size` bytes fits a session with `session` usage in a
    /// store with `store` usage. A message larger than the byte limit still fits an empty
    /// queue, as in `fulmar_core::Outbox`, so no single message is undeliverable.
    pub fn check(
        &self,
        session: QueueUsage,
        store: StoreUsage,
        size: u64,
    ) -> Result<(), LimitExceeded> {
        if session.messages >= self.max_queued_messages {
            return Err(LimitExceeded::SessionMessages);
        }
        if session.messages > 0 && session.bytes + size > self.max_queued_bytes {
            return Err(LimitExceeded::SessionBytes);
        }
        self.check_store(store, size)
    }

    /// Whether one more message body of `size` bytes fits a store with `store` usage.
    pub fn check_store(&self, store: StoreUsage, size: u64) -> Result<(), LimitExceeded> {
        if store.body_bytes + size > self.max_store_bytes {
            return Err(LimitExceeded::StoreBytes);
        }
        Ok(())
    }
}

/// Usage changes made by one committed batch.
#[derive(Debug, Default)]
pub(crate) struct Effects {
    /// Per session: whether its queue was emptied first (session deleted), then the delta.
    sessions: HashMap<String, (bool, i64, i64)>,
    bodies: i64,
    body_bytes: i64,
}

impl Effects {
    pub(crate) fn queue_delta(&mut self, client_id: &str, messages: i64, bytes: i64) {
        let entry = self
            .sessions
            .entry(client_id.to_string())
            .or_insert((false, 0, 0));
        entry.1 += messages;
        entry.2 += bytes;
    }

    pub(crate) fn reset_session(&mut self, client_id: &str) {
        self.sessions.insert(client_id.to_string(), (true, 0, 0));
    }

    pub(crate) fn body_delta(&mut self, bodies: i64, bytes: i64) {
        self.bodies += bodies;
        self.body_bytes += bytes;
    }
}

/// Usage of the committed state.
///
/// # Invariants
/// `total.queued` is the sum of `sessions[*].messages`; no session has an all-zero entry.
#[derive(Debug, Default)]
pub(crate) struct UsageTracker {
    sessions: HashMap<String, QueueUsage>,
    total: StoreUsage,
}

fn add(value: u64, delta: i64) -> u64 {
    value.saturating_add_signed(delta)
}

impl UsageTracker {
    /// Folds in what a committed batch changed.
    pub(crate) fn merge(&mut self, effects: Effects) {
        for (client_id, (reset, messages, bytes)) in effects.sessions {
            let usage = self.sessions.entry(client_id.clone()).or_default();
            if reset {
                self.total.queued -= usage.messages;
                *usage = QueueUsage::default();
            }
            usage.messages = add(usage.messages, messages);
            usage.bytes = add(usage.bytes, bytes);
            self.total.queued = add(self.total.queued, messages);
            if *usage == QueueUsage::default() {
                self.sessions.remove(&client_id);
            }
        }
        self.total.bodies = add(self.total.bodies, effects.bodies);
        self.total.body_bytes = add(self.total.body_bytes, effects.body_bytes);
        debug_assert_eq!(
            self.total.queued,
            self.sessions.values().map(|u| u.messages).sum::<u64>()
        );
    }

    pub(crate) fn session(&self, client_id: &str) -> QueueUsage {
        self.sessions.get(client_id).copied().unwrap_or_default()
    }

    pub(crate) fn total(&self) -> StoreUsage {
        self.total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_refuse_with_quota_exceeded() {
        let limits = StoreLimits {
            max_queued_messages: 2,
            max_queued_bytes: 100,
            max_store_bytes: 1000,
        };
        let empty = QueueUsage::default();
        let store = StoreUsage::default();
        assert_eq!(
            limits.check(empty, store, 500),
            Ok(()),
            "one big message fits"
        );
        let one = QueueUsage {
            messages: 1,
            bytes: 90,
        };
        assert_eq!(
            limits.check(one, store, 20),
            Err(LimitExceeded::SessionBytes)
        );
        let two = QueueUsage {
            messages: 2,
            bytes: 2,
        };
        assert_eq!(
            limits.check(two, store, 1),
            Err(LimitExceeded::SessionMessages)
        );
        let full = StoreUsage {
            body_bytes: 999,
            ..store
        };
        let err = limits.check(empty, full, 2).unwrap_err();
        assert_eq!(err, LimitExceeded::StoreBytes);
        assert_eq!(err.reason_code(), ReasonCode::QuotaExceeded);
    }
}
