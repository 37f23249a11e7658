//! A session's outbox shared between fan-out (any task) and its connection (one task), and
//! the one wake-up of that connection: new deliveries, a takeover and the broker's shutdown
//! all come through it, so that an idle connection waits on a single future.

use fulmar_core::{Delivery, Outbox, PushOutcome, QueueLimits};
use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;

use once_cell::race::OnceBox;
use tokio::sync::futures::Notified;
use tokio::sync::Notify;

use crate::dormant::WakeTicket;
use crate::persist::StoreSlot;
use crate::registry::Kick;

/// The bounded outbox of one session plus the wake-up for its connection task.
///
/// # Invariants
/// - The locks are held only for queue and signal operations, never across `.await`.
/// - A [`Signal`] is stored only while a connection listens (`signals.listener != 0`), and
///   `signalled` is true whenever one is stored (in `signals.waiting`).
/// - `dormant` is true whenever `signals.waiting` holds a ticket, and a connection is dormant
///   only while its ticket is here or on its way to [`WakeTicket::wake`]: whoever takes it
///   wakes the connection (see [`crate::dormant`]).
#[derive(Debug)]
pub struct Mailbox {
    client_id: Arc<str>,
    outbox: Mutex<Outbox>,
    /// Wakes the connection: a push into an empty queue, or a [`Signal`].
    notify: Notify,
    signals: Mutex<Signals>,
    /// A signal waits in `signals` (read on every wake-up without taking the lock).
    signalled: AtomicBool,
    /// The connection is dormant: a push must wake it through its ticket, not `notify`.
    dormant: AtomicBool,
    /// Set when a push found the queue congested; cleared (and `drained` notified) by the
    /// consumer once it is relieved.
    congested: AtomicBool,
    /// Wakes held publishers. Allocated by the first push that finds the queue congested,
    /// before it sets `congested`: so it exists for anyone who saw the flag set, and most
    /// mailboxes (never congested) save 24 bytes.
    drained: OnceBox<Notify>,
    /// A hold for this queue expired: publishers are not held for it until it drains.
    stalled: AtomicBool,
    /// Times the queue went from congested to relieved (see `connection::hold`).
    /// (Wrapping: holds only compare it for a change within one hold.)
    drains: AtomicU32,
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

/// Who listens for signals, and what waits for it.
#[derive(Debug, Default)]
struct Signals {
    /// The listening connection's id; 0 when none listens, so that a taker never waits for
    /// a connection that is gone.
    listener: u64,
    waiting: Waiting,
}

/// What waits for the listening connection: a signal, or (while it is dormant) the ticket
/// that wakes it. Never both: a connection with a signal waiting does not go dormant, and a
/// signal for a dormant one takes its ticket to wake it.
#[derive(Debug, Default)]
enum Waiting {
    #[default]
    Nothing,
    Signal(Signal),
    Dormant(WakeTicket),
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
            dormant: AtomicBool::new(false),
            congested: AtomicBool::new(false),
            drained: OnceBox::new(),
            stalled: AtomicBool::new(false),
            drains: AtomicU32::new(0),
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
            self.wake_consumer();
        }
        if congested {
            self.drained.get_or_init(Box::default);
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
        if let Some(drained) = self.drained.get() {
            drained.notify_waiters();
        }
    }

    /// Whether publishers must still be held for this queue: a push found it congested and
    /// the consumer has not seen it relieved since. The flag, not the queue's length, decides,
    /// so that every holder is released by the one `drained` notification that clears it
    /// (between the two marks the length alone says neither).
    pub fn holds_publishers(&self) -> bool {
        self.congested.load(Ordering::Acquire)
    }

    /// How many times the queue went from congested to relieved so far.
    pub fn drains(&self) -> u32 {
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
        if !self.holds_publishers() {
            return;
        }
        // Seeing the flag set, this sees the notifier allocated before it (see `drained`).
        let drained = self.drained.get_or_init(Box::default);
        loop {
            let notified = drained.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if !self.holds_publishers() {
                return;
            }
            notified.await;
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
        let left = {
            let mut signals = self.signals.lock();
            signals.listener = connection_id;
            self.clear_waiting(&mut signals)
        };
        wake_if_dormant(left);
    }

    /// Stops connection `connection_id` listening, if it still does, and returns the signal
    /// that waited for it (a kick must still be answered). Later signals are refused.
    pub fn stop_listening(&self, connection_id: u64) -> Option<Signal> {
        let left = {
            let mut signals = self.signals.lock();
            if signals.listener != connection_id {
                return None;
            }
            signals.listener = 0;
            self.clear_waiting(&mut signals)
        };
        match left {
            Waiting::Signal(signal) => Some(signal),
            other => {
                wake_if_dormant(other);
                None
            }
        }
    }

    /// Empties `waiting`, keeping the flags that mirror it in step.
    fn clear_waiting(&self, signals: &mut Signals) -> Waiting {
        self.signalled.store(false, Ordering::Release);
        self.dormant.store(false, Ordering::SeqCst);
        std::mem::replace(&mut signals.waiting, Waiting::Nothing)
    }

    /// Delivers `signal` to the listening connection and wakes it; gives it back when no
    /// connection listens. A kick is never replaced by a shutdown (the session must still
    /// be handed over).
    pub fn signal(&self, signal: Signal) -> Result<(), Signal> {
        let replaced = {
            let mut signals = self.signals.lock();
            if signals.listener == 0 {
                return Err(signal);
            }
            if matches!(signal, Signal::Shutdown)
                && matches!(signals.waiting, Waiting::Signal(Signal::Kick(_)))
            {
                return Ok(());
            }
            self.signalled.store(true, Ordering::Release);
            self.dormant.store(false, Ordering::SeqCst);
            std::mem::replace(&mut signals.waiting, Waiting::Signal(signal))
        };
        match replaced {
            Waiting::Dormant(ticket) => ticket.wake(),
            _ => self.notify.notify_one(),
        }
        Ok(())
    }

    /// Wakes the consuming connection: through its ticket when it is dormant.
    fn wake_consumer(&self) {
        // SeqCst pairs with the store in `try_go_dormant`: either the connection going
        // dormant sees what was pushed (the outbox lock orders the two), or this sees it
        // dormant.
        if self.dormant.load(Ordering::SeqCst) {
            if let Some(ticket) = self.take_dormant() {
                ticket.wake();
                return;
            }
        }
        self.notify.notify_one();
    }

    /// Lets the listening connection go dormant with `ticket`, unless work waits for it (a
    /// delivery or a signal): then the ticket is dropped and `false` returned. `true` also
    /// when work arrived meanwhile but its pusher took the ticket (and wakes the connection).
    pub fn try_go_dormant(&self, ticket: WakeTicket) -> bool {
        {
            let mut signals = self.signals.lock();
            if !matches!(signals.waiting, Waiting::Nothing) || signals.listener == 0 {
                return false;
            }
            signals.waiting = Waiting::Dormant(ticket);
            self.dormant.store(true, Ordering::SeqCst);
        }
        if self.with(|outbox| outbox.is_empty()) {
            return true;
        }
        self.take_dormant().is_none()
    }

    /// Takes the dormant connection's ticket, if it has one: its taker must wake it.
    fn take_dormant(&self) -> Option<WakeTicket> {
        let mut signals = self.signals.lock();
        if !matches!(signals.waiting, Waiting::Dormant(_)) {
            return None;
        }
        match self.clear_waiting(&mut signals) {
            Waiting::Dormant(ticket) => Some(ticket),
            _ => None,
        }
    }

    /// Takes back the ticket for the dormant connection in slot `key` of `generation`;
    /// `false` when someone else took it (and wakes the connection). Called by the dormant
    /// set, under its table's lock.
    pub fn claim_dormant(&self, key: u32, generation: u32) -> bool {
        let mut signals = self.signals.lock();
        if !matches!(&signals.waiting, Waiting::Dormant(ticket) if ticket.is_for(key, generation)) {
            return false;
        }
        self.clear_waiting(&mut signals);
        true
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
        if !matches!(signals.waiting, Waiting::Signal(_)) {
            return None;
        }
        match self.clear_waiting(&mut signals) {
            Waiting::Signal(signal) => Some(signal),
            _ => None,
        }
    }
}

/// Wakes the connection whose ticket was left in a mailbox that is being reset, so that it
/// is never stranded in the dormant set.
fn wake_if_dormant(left: Waiting) {
    if let Waiting::Dormant(ticket) = left {
        ticket.wake();
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Arc;

    use bytes::Bytes;
    use fulmar_core::Message;
    use fulmar_proto::{Properties, QoS, TopicName};

    use super::*;
    use tokio::sync::oneshot;

    /// A QoS 1 delivery of a one-byte message (also for the connection's hold tests).
    pub(crate) fn delivery() -> Delivery {
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
    /// 208-byte allocation (256 before the outbox's own drop counters and the eager
    /// `drained` notifier went, 224 before the outbox's spilled count became a `u32`).
    #[test]
    fn a_mailbox_fits_a_208_byte_allocation() {
        let size = std::mem::size_of::<Mailbox>();
        assert!(size <= 184, "Mailbox is {size} bytes");
    }

    #[test]
    fn a_connection_with_work_waiting_does_not_go_dormant() {
        let mailbox = Mailbox::new("c".into(), QueueLimits::default());
        assert!(
            !mailbox.try_go_dormant(WakeTicket::unstarted(0, 1)),
            "nobody listens"
        );
        mailbox.listen(1);
        mailbox.push(delivery());
        assert!(!mailbox.try_go_dormant(WakeTicket::unstarted(0, 1)));
        assert!(
            !mailbox.claim_dormant(0, 1),
            "the refused ticket was dropped"
        );
        drain(&mailbox, 1);
        mailbox.signal(Signal::Shutdown).unwrap();
        assert!(!mailbox.try_go_dormant(WakeTicket::unstarted(0, 2)));
    }

    #[test]
    fn a_push_takes_the_ticket_of_a_dormant_connection() {
        let mailbox = Mailbox::new("c".into(), QueueLimits::default());
        mailbox.listen(1);
        assert!(mailbox.try_go_dormant(WakeTicket::unstarted(3, 7)));
        mailbox.push(delivery());
        assert!(
            !mailbox.claim_dormant(3, 7),
            "the pusher took the ticket: it wakes the connection, not the dormant set"
        );
    }

    #[test]
    fn a_signal_takes_the_ticket_of_a_dormant_connection() {
        let mailbox = Mailbox::new("c".into(), QueueLimits::default());
        mailbox.listen(1);
        assert!(mailbox.try_go_dormant(WakeTicket::unstarted(3, 7)));
        mailbox.signal(Signal::Shutdown).unwrap();
        assert!(!mailbox.claim_dormant(3, 7));
        assert!(matches!(mailbox.take_signal(), Some(Signal::Shutdown)));
    }

    #[tokio::test]
    async fn a_claimed_connection_is_woken_by_notify_again() {
        let mailbox = Mailbox::new("c".into(), QueueLimits::default());
        mailbox.listen(1);
        assert!(mailbox.try_go_dormant(WakeTicket::unstarted(3, 7)));
        assert!(!mailbox.claim_dormant(3, 8), "another generation's claim");
        assert!(mailbox.claim_dormant(3, 7));
        assert!(!mailbox.claim_dormant(3, 7), "claimed once only");
        mailbox.push(delivery());
        tokio::time::timeout(std::time::Duration::from_secs(5), mailbox.notified())
            .await
            .expect("an awake connection is notified of a push");
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
