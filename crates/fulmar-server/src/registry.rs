//! Sessions by client identifier, and the hand-over of a session between connections.
//!
//! Each client id has a [`Slot`] guarded by an async mutex. A connection that wants the id
//! locks the slot; if another connection owns it, it sends that owner a [`Kick`] through the
//! owner's mailbox and waits (bounded) for the owner to hand its session back
//! [MQTT-3.1.4-2]. The owner, when it ends on its own, locks the slot to park a persistent
//! session there, while still listening for a kick so that the two can never wait for each
//! other.
//!
//! The broker's shutdown reaches every connected owner the same way ([`Registry::shut_down`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use ahash::HashMap;
use fulmar_core::{Session, SessionKey};
use tokio::sync::{oneshot, Mutex as AsyncMutex};

use crate::mailbox::{Mailbox, Signal};

/// A session between connections, or on its way from one connection to the next.
#[derive(Debug)]
pub struct DetachedSession {
    /// The session incarnation's key (router entries use it).
    pub key: SessionKey,
    /// Protocol state.
    pub session: Session,
    /// Its outbox (router entries point to it).
    pub mailbox: Arc<Mailbox>,
    /// Session Expiry Interval in seconds: 0 ends the session with its connection,
    /// `u32::MAX` never expires (3.1.1 clean session 0).
    pub expiry_secs: u32,
    /// An MQTT 5 will whose delay had not passed when the connection ended; published when
    /// the delay passes or the session ends, cancelled when the session resumes
    /// [MQTT-3.1.3-9].
    pub pending_will: Option<fulmar_proto::Will>,
    /// The authenticated username of its last connection (stored with the session, so that
    /// ACL checks of its subscriptions still see it after a restart).
    pub username: Option<String>,
}

impl DetachedSession {
    /// Whether the session outlives its connection.
    pub fn is_persistent(&self) -> bool {
        self.expiry_secs > 0
    }
}

/// A request to the owning connection to close and hand its session over.
#[derive(Debug)]
pub struct Kick {
    /// Where to send the session.
    pub reply: oneshot::Sender<DetachedSession>,
}

/// What the registry knows of one client id. 16 bytes, the slot 56 (see [`Slot`]).
#[derive(Debug, Default)]
pub struct SlotState {
    /// The mailbox of the session the connected owner holds, if a connection owns the id.
    /// The owner listens to it for signals ([`Mailbox::listen`]): a [`Kick`] ends that
    /// connection and asks for its session.
    ///
    /// It also tells the owner apart: a session, and so its mailbox, is held by one
    /// connection at a time, and passes to another only through a [`Kick`] or by being
    /// parked, both of which end the first connection's claim.
    pub owner: Option<Arc<Mailbox>>,
    /// A persistent session with no connection. Boxed: it is absent while the client is
    /// connected, which is when most slots exist, and inline it would triple the slot.
    pub detached: Option<Box<Parked>>,
}

/// A persistent session with no connection, and its timers.
#[derive(Debug)]
pub struct Parked {
    /// The session, as its last connection left it.
    pub session: DetachedSession,
    /// Expiry and delayed will; aborted when the session is taken. Here rather than in the
    /// slot: only a parked session has timers, and every connected client has a slot.
    pub timers: Vec<tokio::task::AbortHandle>,
}

impl SlotState {
    /// Takes the parked session, cancelling its timers.
    pub fn take_detached(&mut self) -> Option<DetachedSession> {
        let parked = self.detached.take()?;
        for timer in &parked.timers {
            timer.abort();
        }
        Some(parked.session)
    }
}

/// The per-client-id slot: an async mutex, because it is held while a kicked owner hands
/// its session over. Every connected client has one: 56 bytes, an 80-byte glibc chunk with
/// its `Arc`.
///
/// A slot is live while the registry's map holds it for its client id; once removed it is
/// never registered again, so a holder of its lock that finds it unregistered looks the id
/// up anew ([`Registry::lock`]).
pub type Slot = AsyncMutex<SlotState>;

/// All client ids with a connection or a parked session.
#[derive(Debug, Default)]
pub struct Registry {
    /// Keyed by the client id its connections and session share.
    slots: parking_lot::Mutex<HashMap<Arc<str>, Arc<Slot>>>,
    /// The broker is stopping: a connection that becomes an owner after
    /// [`Registry::shut_down`] went past its slot sees this instead of the signal.
    closing: AtomicBool,
}

impl Registry {
    /// The slot for `client_id`, created when absent.
    pub fn slot(&self, client_id: &Arc<str>) -> Arc<Slot> {
        let mut slots = self.slots.lock();
        if let Some(slot) = slots.get(client_id) {
            return Arc::clone(slot);
        }
        let slot = Arc::new(Slot::default());
        slots.insert(Arc::clone(client_id), Arc::clone(&slot));
        slot
    }

    /// Locks the live slot for `client_id`; a slot removed while we waited is looked up
    /// again, so the returned one is always the registered one.
    pub async fn lock(
        &self,
        client_id: &Arc<str>,
    ) -> (Arc<Slot>, tokio::sync::OwnedMutexGuard<SlotState>) {
        loop {
            let slot = self.slot(client_id);
            let state = Arc::clone(&slot).lock_owned().await;
            // Stable while the lock is held: only `remove` unregisters a slot, under its lock.
            if self.is_registered(client_id, &slot) {
                return (slot, state);
            }
        }
    }

    fn is_registered(&self, client_id: &str, slot: &Arc<Slot>) -> bool {
        let slots = self.slots.lock();
        slots.get(client_id).is_some_and(|s| Arc::ptr_eq(s, slot))
    }

    /// Removes `slot` from the map if it is still the one registered for `client_id`. The
    /// caller holds the slot's lock (`state`) and leaves it empty.
    pub fn remove(&self, client_id: &str, slot: &Arc<Slot>, state: &SlotState) {
        debug_assert!(state.owner.is_none() && state.detached.is_none());
        let mut slots = self.slots.lock();
        if slots.get(client_id).is_some_and(|s| Arc::ptr_eq(s, slot)) {
            slots.remove(client_id);
        }
    }

    /// Asks every connected owner to close ([`Signal::Shutdown`]).
    ///
    /// A connection that registers as owner concurrently either is found here (it locked
    /// its slot first) or sees [`Registry::is_closing`] afterwards (it locked the map or its
    /// slot after this did): both locks order it after the flag is set.
    pub async fn shut_down(&self) {
        self.closing.store(true, Ordering::SeqCst);
        let slots: Vec<Arc<Slot>> = self.slots.lock().values().cloned().collect();
        for slot in slots {
            if let Some(owner) = &slot.lock().await.owner {
                let _ = owner.signal(Signal::Shutdown);
            }
        }
    }

    /// Whether [`Registry::shut_down`] began; checked by a connection once it is an owner.
    pub fn is_closing(&self) -> bool {
        self.closing.load(Ordering::SeqCst)
    }

    /// Number of client ids known (connected or parked).
    pub fn len(&self) -> usize {
        self.slots.lock().len()
    }

    /// Whether no client id is known.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
