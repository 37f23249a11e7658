//! A session's outbox shared between fan-out (any task) and its connection (one task), and
//! the one wake-up of that connection: new deliveries, a takeover and the broker's shutdown
//! all come through it, so that an idle connection waits on a single future.

use fulmar_core::{Delivery, Outbox, PushOutcome, QueueLimits};
use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::futures::Notified;
use tokio::sync::Notify;

use crate::persist::StoreSlot;
use crate::registry::Kick;

/// The bounded outbox of one session plus the wake-up for its connection task.
///
/// # Invariants
/// - The locks are held only for queue and signal operations, never across `.await`.
/// - A [`Signal`] is stored only while a connection listens (`signals.listener != 0`), and
///   `signalled` is true whenever one is stored.
#[derive(Debug)]
pub struct Mailbox {
    client_id: Arc<str>,
    outbox: Mutex<Outbox>,
    /// Wakes the connection: a push into an empty queue, or a [`Signal`].
    notify: Notify,
    signals: Mutex<Signals>,
    /// A signal waits in `signals` (read on every wake-up without taking the lock).
    signalled: AtomicBool,
    /// Set when a push found the queue congested; cleared (and `drained` notified) by the
    /// consumer once it is relieved.
    congested: AtomicBool,
    drained: Notify,
    /// A hold for this queue expired: publishers are not held for it until it drains.
    stalled: AtomicBool,
    /// Times the queue went from congested to relieved (see `connection::hold`).
    drains: AtomicU64,
    /// The stored session behind this mailbox, for a persistent session when persistence is
    /// on: QoS 1/2 deliveries to it are queued in the store too.
    /// Boxed: only persistent sessions of a broker with persistence have one, and inline it
    /// would cost every mailbox 32 bytes more.
    store: Option<Box<StoreSlot>>,
}

/// A request to the connection that holds the session.
#[derive(Debug)]
pub enum Signal {
    /// Another connection takes the client id over [MQTT-3.1.4-2]: close and hand the
    /// session over.
    Kick(Kick),
    /// The broker is stopping.
    Shutdown,
}

/// Who listens for signals, and the one waiting.
#[derive(Debug, Default)]
struct Signals {
    /// The listening connection's id; 0 when none listens, so that a taker never waits for
    /// a connection that is gone.
    listener: u64,
    pending: Option<Signal>,
}

/// What a push did, and whether the queue is now congested.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pushed {
    /// Queued or dropped.
    pub outcome: PushOutcome,
    /// The queue is congested (see [`Outbox::is_congested`]); QoS 1/2 publishers should wait.
    pub congested: bool,
}

impl Mailbox {
    /// An empty mailbox for an online session.
    pub fn new(client_id: Arc<str>, limits: QueueLimits) -> Self {
        Mailbox::with_store(client_id, limits, None)
    }

    /// An empty mailbox whose session is stored through `store` (see [`StoreSlot`]).
    pub fn with_store(client_id: Arc<str>, limits: QueueLimits, store: Option<StoreSlot>) -> Self {
        Mailbox {
            client_id,
            outbox: Mutex::new(Outbox::new(limits)),
            notify: Notify::new(),
            signals: Mutex::new(Signals::default()),
            signalled: AtomicBool::new(false),
            congested: AtomicBool::new(false),
            drained: Notify::new(),
            stalled: AtomicBool::new(false),
            drains: AtomicU64::new(0),
            store: store.map(Box::new),
        }
    }

    /// The stored session behind this mailbox, if it is stored.
    pub fn store(&self) -> Option<&StoreSlot> {
        self.store.as_deref()
    }

    /// Queues a delivery and wakes the consumer when the queue was empty (a consumer that
    /// left messages queued re-checks by itself when its window opens).
    pub fn push(&self, delivery: Delivery) -> Pushed {
        let (outcome, congested) = {
            let mut outbox = self.outbox.lock();
            let outcome = outbox.push(delivery);
            (outcome, outbox.is_congested())
        };
        if outcome == (PushOutcome::Queued { was_empty: true }) {
            self.notify.notify_one();
        }
        if congested {
            self.congested.store(true, Ordering::Release);
        }
        let congested = congested && !self.stalled.load(Ordering::Acquire);
        Pushed { outcome, congested }
    }

    /// Called by the consumer after taking from the queue: wakes held-back publishers once
    /// the queue is relieved (see [`Outbox::is_relieved`]).
    pub fn after_drain(&self) {
        if self.congested.load(Ordering::Acquire) && self.with(|outbox| outbox.is_relieved()) {
            self.relieve();
        }
    }

    /// Marks the session offline: nobody drains the queue any more, so QoS 0 is no longer
    /// queued and nobody may stay held for it.
    pub fn go_offline(&self) {
        self.with(|outbox| outbox.set_online(false));
        if self.congested.load(Ordering::Acquire) {
            self.relieve();
        }
    }

    fn relieve(&self) {
        self.congested.store(false, Ordering::Release);
        self.stalled.store(false, Ordering::Release);
        self.drains.fetch_add(1, Ordering::AcqRel);
        self.drained.notify_waiters();
    }

    /// Whether publishers must still be held for this queue: a push found it congested and
    /// the consumer has not seen it relieved since. The flag, not the queue's length, decides,
    /// so that every holder is released by the one `drained` notification that clears it
    /// (between the two marks the length alone says neither).
    pub fn holds_publishers(&self) -> bool {
        self.congested.load(Ordering::Acquire)
    }

    /// How many times the queue went from congested to relieved so far.
    pub fn drains(&self) -> u64 {
        self.drains.load(Ordering::Acquire)
    }

    /// Marks the queue stalled: a publisher was held for it as long as allowed.
    pub fn mark_stalled(&self) {
        if !self.stalled.swap(true, Ordering::AcqRel) {
            tracing::info!(client_id = %self.client_id, "subscriber stalled: publishers are no longer held for it until its queue drains; what does not fit is dropped");
        }
    }

    /// Waits until publishers are no longer held for this queue (see [`Self::holds_publishers`]).
    pub async fn relieved(&self) {
        loop {
            let drained = self.drained.notified();
            tokio::pin!(drained);
            drained.as_mut().enable();
            if !self.holds_publishers() {
                return;
            }
            drained.await;
        }
    }

    /// The client identifier of the session (for logs).
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// Runs `f` on the locked outbox.
    pub fn with<R>(&self, f: impl FnOnce(&mut Outbox) -> R) -> R {
        f(&mut self.outbox.lock())
    }

    /// Waits until a push or a signal wakes this mailbox (a permit is kept if none waits).
    /// tokio's future itself rather than an async fn around it: the run loop of every idle
    /// connection holds it.
    pub fn notified(&self) -> Notified<'_> {
        self.notify.notified()
    }

    /// Makes connection `connection_id` (never 0) the one that receives signals, dropping
    /// any left for a previous one. Called under the registry slot's lock by the connection
    /// that becomes the owner.
    pub fn listen(&self, connection_id: u64) {
        debug_assert_ne!(connection_id, 0);
        let mut signals = self.signals.lock();
        signals.listener = connection_id;
        signals.pending = None;
        self.signalled.store(false, Ordering::Release);
    }

    /// Stops connection `connection_id` listening, if it still does, and returns the signal
    /// that waited for it (a kick must still be answered). Later signals are refused.
    pub fn stop_listening(&self, connection_id: u64) -> Option<Signal> {
        let mut signals = self.signals.lock();
        if signals.listener != connection_id {
            return None;
        }
        signals.listener = 0;
        self.signalled.store(false, Ordering::Release);
        signals.pending.take()
    }

    /// Delivers `signal` to the listening connection and wakes it; gives it back when no
    /// connection listens. A kick is never replaced by a shutdown (the session must still
    /// be handed over).
    pub fn signal(&self, signal: Signal) -> Result<(), Signal> {
        {
            let mut signals = self.signals.lock();
            if signals.listener == 0 {
                return Err(signal);
            }
            if matches!(signal, Signal::Shutdown)
                && matches!(signals.pending, Some(Signal::Kick(_)))
            {
                return Ok(());
            }
            signals.pending = Some(signal);
            self.signalled.store(true, Ordering::Release);
        }
        self.notify.notify_one();
        Ok(())
    }

    /// Waits for a kick, dropping any other signal: for a connection that is closing anyway.
    pub async fn kicked(&self) -> Kick {
        loop {
            if let Some(Signal::Kick(kick)) = self.take_signal() {
                return kick;
            }
            // A signal stored after the check leaves a permit, so this returns at once.
            self.notify.notified().await;
        }
    }

    /// The signal waiting for the listening connection, if any (one atomic load when none).
    pub fn take_signal(&self) -> Option<Signal> {
        if !self.signalled.load(Ordering::Acquire) {
            return None;
        }
        let mut signals = self.signals.lock();
        self.signalled.store(false, Ordering::Release);
        signals.pending.take()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;
    use fulmar_core::Message;
    use fulmar_proto::{Properties, QoS, TopicName};

    use super::*;
    use tokio::sync::oneshot;

    fn delivery() -> Delivery {
        let message = Message {
            topic: TopicName::new("t").unwrap(),
            payload: Bytes::from_static(b"x"),
            qos: QoS::AtLeastOnce,
            retain: false,
            properties: Properties::default(),
            origin: None,
            expires_at: None,
        };
        Delivery::new(Arc::new(message), QoS::AtLeastOnce, false)
    }

    fn limits(max_messages: usize) -> QueueLimits {
        QueueLimits {
            max_messages,
            max_bytes: 1 << 20,
        }
    }

    fn drain(mailbox: &Mailbox, count: usize) {
        let mut out = Vec::new();
        mailbox.with(|outbox| outbox.pop_batch(usize::MAX, count, &mut out));
        mailbox.after_drain();
    }

    #[test]
    fn publishers_stay_held_until_the_queue_is_at_half_the_mark() {
        let mailbox = Mailbox::new("sub".into(), limits(32));
        for _ in 0..11 {
            assert!(!mailbox.push(delivery()).congested);
        }
        assert!(mailbox.push(delivery()).congested, "12 of 32: the mark");
        assert!(mailbox.holds_publishers());
        drain(&mailbox, 5);
        assert!(
            mailbox.holds_publishers(),
            "7 of 32: below the mark, not relieved"
        );
        assert!(
            !mailbox.push(delivery()).congested,
            "8 of 32 holds no new publisher"
        );
        assert_eq!(mailbox.drains(), 0);
        drain(&mailbox, 2);
        assert!(!mailbox.holds_publishers(), "6 of 32 is three sixteenths");
        assert_eq!(mailbox.drains(), 1);
    }

    #[test]
    fn going_offline_releases_held_publishers() {
        let mailbox = Mailbox::new("sub".into(), limits(8));
        while !mailbox.push(delivery()).congested {}
        mailbox.go_offline();
        assert!(!mailbox.holds_publishers());
    }

    /// Every session has one: with the `Arc` counts and malloc's header it stays within a
    /// 256-byte allocation.
    #[test]
    fn a_mailbox_fits_a_256_byte_allocation() {
        assert!(std::mem::size_of::<Mailbox>() <= 232);
    }

    fn kick_signal() -> (Signal, oneshot::Receiver<crate::registry::DetachedSession>) {
        let (reply, handed_over) = oneshot::channel();
        (Signal::Kick(Kick { reply }), handed_over)
    }

    #[tokio::test]
    async fn a_signal_reaches_only_a_listening_connection() {
        let mailbox = Mailbox::new("c".into(), QueueLimits::default());
        assert!(
            mailbox.signal(Signal::Shutdown).is_err(),
            "nobody listens yet"
        );
        mailbox.listen(1);
        let (kick, _handed_over) = kick_signal();
        assert!(mailbox.signal(kick).is_ok());
        // The wake-up that a waiting connection would get.
        mailbox.notified().await;
        // A kick is never replaced by a shutdown: the session must still be handed over.
        assert!(mailbox.signal(Signal::Shutdown).is_ok());
        assert!(matches!(mailbox.take_signal(), Some(Signal::Kick(_))));
        assert!(mailbox.take_signal().is_none());
    }

    #[tokio::test]
    async fn a_connection_that_stops_listening_refuses_kicks_at_once() {
        let mailbox = Mailbox::new("c".into(), QueueLimits::default());
        mailbox.listen(1);
        let (kick, handed_over) = kick_signal();
        mailbox.signal(kick).unwrap();
        // The old owner goes away without answering: the taker learns it at once.
        drop(mailbox.stop_listening(1));
        assert!(handed_over.await.is_err());
        let (late, _) = kick_signal();
        assert!(mailbox.signal(late).is_err());
        // A successor listens; a late stop of the old connection does not silence it.
        mailbox.listen(2);
        assert!(mailbox.stop_listening(1).is_none());
        assert!(mailbox.signal(Signal::Shutdown).is_ok());
        assert!(matches!(mailbox.take_signal(), Some(Signal::Shutdown)));
    }
}
