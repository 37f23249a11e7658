//! A session's outbox shared between fan-out (any task) and its connection (one task).

use fulmar_core::{Delivery, Outbox, PushOutcome, QueueLimits};
use parking_lot::Mutex;
use tokio::sync::Notify;

/// The bounded outbox of one session plus the wake-up for its connection task.
///
/// # Invariants
/// The lock is held only for queue operations, never across `.await`.
#[derive(Debug)]
pub struct Mailbox {
    client_id: String,
    outbox: Mutex<Outbox>,
    notify: Notify,
}

impl Mailbox {
    /// An empty mailbox for an online session.
    pub fn new(client_id: String, limits: QueueLimits) -> Self {
        Mailbox {
            client_id,
            outbox: Mutex::new(Outbox::new(limits)),
            notify: Notify::new(),
        }
    }

    /// Queues a delivery and wakes the consumer when the queue was empty (a consumer that
    /// left messages queued re-checks by itself when its window opens).
    pub fn push(&self, delivery: Delivery) -> PushOutcome {
        let outcome = self.outbox.lock().push(delivery);
        if outcome == (PushOutcome::Queued { was_empty: true }) {
            self.notify.notify_one();
        }
        outcome
    }

    /// The client identifier of the session (for logs).
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// Runs `f` on the locked outbox.
    pub fn with<R>(&self, f: impl FnOnce(&mut Outbox) -> R) -> R {
        f(&mut self.outbox.lock())
    }

    /// Waits until a push wakes this mailbox (a permit is kept if none waits).
    pub async fn notified(&self) {
        self.notify.notified().await;
    }
}
