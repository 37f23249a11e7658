//! Broker-wide counters. Relaxed atomics: they are statistics, not synchronisation.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Counters of what the broker did and what it refused or dropped.
#[derive(Debug)]
pub struct Metrics {
    started: Instant,
    /// Connections accepted by the listeners.
    pub connections_accepted: AtomicU64,
    /// PUBLISH packets accepted from clients.
    pub messages_received: AtomicU64,
    /// PUBLISH packets written to clients.
    pub messages_sent: AtomicU64,
    /// Deliveries dropped because a session's queue was full.
    pub dropped_queue_full: AtomicU64,
    /// QoS 0 deliveries dropped because the session was offline.
    pub dropped_offline_qos0: AtomicU64,
    /// Deliveries dropped because the message expired before it could be sent.
    pub dropped_expired: AtomicU64,
    /// Deliveries dropped because they exceed the client's Maximum Packet Size.
    pub dropped_too_large: AtomicU64,
    /// Connections refused by the connection caps or the per-IP rate.
    pub connections_refused: AtomicU64,
    /// Times a client's reads were paused for exceeding its publish rate.
    pub publish_rate_pauses: AtomicU64,
    /// Retained messages not stored because `limits.max_retained_messages` was reached.
    pub retained_refused: AtomicU64,
    /// SUBSCRIBE filters refused by `limits.max_subscriptions_per_client` or topic limits.
    pub subscriptions_refused: AtomicU64,
    /// PUBLISH packets denied by the ACL.
    pub publishes_denied: AtomicU64,
    /// SUBSCRIBE filters denied by the ACL.
    pub subscriptions_denied: AtomicU64,
    /// Deliveries withheld because the ACL denies the subscriber reading the topic.
    pub deliveries_denied: AtomicU64,
    /// TLS handshakes that failed (bad certificate, wrong protocol, …).
    pub tls_handshake_failures: AtomicU64,
    /// Publisher acknowledgements released because a congested subscriber stayed congested
    /// longer than `limits.max_publisher_hold_ms`.
    pub publisher_holds_expired: AtomicU64,
    /// Connections closed for a protocol violation or malformed packet.
    pub protocol_errors: AtomicU64,
    /// Connections closed because CONNECT did not arrive in time.
    pub connect_timeouts: AtomicU64,
    /// Connections closed by keep-alive expiry.
    pub keep_alive_timeouts: AtomicU64,
    /// Spilled queue entries that could not be read back from the store (an I/O error, or
    /// an entry missing: both logged as errors).
    pub store_read_failures: AtomicU64,
    last_drop_log_ms: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            started: Instant::now(),
            connections_accepted: AtomicU64::new(0),
            messages_received: AtomicU64::new(0),
            messages_sent: AtomicU64::new(0),
            dropped_queue_full: AtomicU64::new(0),
            dropped_offline_qos0: AtomicU64::new(0),
            dropped_expired: AtomicU64::new(0),
            publisher_holds_expired: AtomicU64::new(0),
            tls_handshake_failures: AtomicU64::new(0),
            publishes_denied: AtomicU64::new(0),
            subscriptions_denied: AtomicU64::new(0),
            deliveries_denied: AtomicU64::new(0),
            connections_refused: AtomicU64::new(0),
            publish_rate_pauses: AtomicU64::new(0),
            retained_refused: AtomicU64::new(0),
            subscriptions_refused: AtomicU64::new(0),
            dropped_too_large: AtomicU64::new(0),
            protocol_errors: AtomicU64::new(0),
            connect_timeouts: AtomicU64::new(0),
            keep_alive_timeouts: AtomicU64::new(0),
            store_read_failures: AtomicU64::new(0),
            last_drop_log_ms: AtomicU64::new(0),
        }
    }
}

/// Adds one to a counter.
pub fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl Metrics {
    /// Counts a delivery dropped on a full queue and logs, at most every 5 seconds, the
    /// running total (so a flood of drops cannot flood the log).
    pub fn record_queue_full(&self, client_id: &str) {
        let total = self.dropped_queue_full.fetch_add(1, Ordering::Relaxed) + 1;
        let now_ms = self.started.elapsed().as_millis() as u64;
        let last = self.last_drop_log_ms.load(Ordering::Relaxed);
        if (last == 0 || now_ms.saturating_sub(last) >= 5000)
            && self
                .last_drop_log_ms
                .compare_exchange(last, now_ms.max(1), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                client_id,
                dropped_total = total,
                "session queue full: message dropped (limits.max_queued_messages / max_queued_bytes)"
            );
        }
    }

    /// Counts an accepted connection (those open now: [`crate::admission::Admission::open`]).
    pub(crate) fn connection_accepted(&self) {
        self.connections_accepted.fetch_add(1, Ordering::Relaxed);
    }

    /// Reads a counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}
