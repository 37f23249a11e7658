//! The broker's side of durability: the store handle, the commit queue, and the conversions
//! between in-memory messages and stored records.
//!
//! What is stored (see `fulmar_store` for the data model): persistent sessions (expiry > 0)
//! with their subscriptions, the QoS 1/2 deliveries queued for them, their outbound inflight
//! exchanges, their inbound QoS 2 ids awaiting PUBREL and their delayed wills; and the
//! retained messages. Non-persistent sessions are never stored.
//!
//! # Ordering
//! Every mutation goes through one FIFO [`CommitQueue`]. A delivery's `Enqueue` is submitted
//! before the delivery is pushed into the recipient's mailbox, so the recipient's `Dequeue`
//! (submitted after it pops the delivery) always follows it. Replies that claim durability
//! wait for their batch's ticket (`connection::hold`).
//!
//! # Sessions that end while messages are routed to them
//! A [`StoreSlot`] guards the stored session of a mailbox: publishers hold its read lock
//! while they submit their `Enqueue`s, the session's end takes the write lock to close it
//! and submit `DeleteSession`. So no `Enqueue` of a stale mailbox can follow the delete (it
//! would fail the publisher's whole batch, or land in a new session of the same client id).

mod records;
pub mod recover;
pub mod settings;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use fulmar_store::{
    CommitQueue, CommitTicket, LimitExceeded, Mutation, RedbStore, Snapshot, Store, StoreError,
    StoreLimits,
};
use parking_lot::{RwLock, RwLockReadGuard};

pub use records::{body_of, delivery_of, inflight_record, message_of, queued_of};
use settings::PersistenceSettings;

/// Wall-clock Unix milliseconds (stored times must mean something after a restart).
pub fn unix_ms_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The open store and its commit queue.
pub struct Persistence {
    store: Arc<dyn Store>,
    /// `None` once closed at shutdown: later submissions fail with `StoreError::Closed`.
    queue: RwLock<Option<CommitQueue>>,
    limits: StoreLimits,
}

impl std::fmt::Debug for Persistence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Persistence").finish_non_exhaustive()
    }
}

impl Persistence {
    /// Opens (or creates) the store of `settings.data_dir`, reads it whole and starts the
    /// commit queue. A corrupt, locked or foreign-version store is an error: the broker must
    /// not start with an empty store in its place.
    pub fn open(
        settings: &PersistenceSettings,
        limits: StoreLimits,
    ) -> Result<(Persistence, Snapshot), StoreError> {
        let store = RedbStore::open(&settings.data_dir, settings.redb_options())?;
        let snapshot = store.load_all()?;
        let store: Arc<dyn Store> = Arc::new(store);
        let queue = CommitQueue::start(Arc::clone(&store), settings.commit_config())?;
        let persistence = Persistence {
            store,
            queue: RwLock::new(Some(queue)),
            limits,
        };
        Ok((persistence, snapshot))
    }

    /// Submits `batch` as one atomic commit. Never blocks an async runtime thread for long:
    /// when the queue is full it waits in `block_in_place` (multi-thread runtime) — that is
    /// the store's back-pressure on publishers.
    pub fn submit(&self, batch: Vec<Mutation>) -> CommitTicket {
        let queue = self.queue.read();
        let Some(queue) = queue.as_ref() else {
            return closed_ticket();
        };
        match queue.try_submit(batch) {
            Ok(ticket) => ticket,
            Err(batch) => {
                let multi_thread = tokio::runtime::Handle::try_current().is_ok_and(|h| {
                    h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread
                });
                if multi_thread {
                    tokio::task::block_in_place(|| queue.submit(batch))
                } else {
                    queue.submit(batch)
                }
            }
        }
    }

    /// Reads queue entries of `client_id` back (see `fulmar_store::Store::load_queued`).
    pub fn load_queued(
        &self,
        client_id: &str,
        seqs: &[u64],
    ) -> Result<Vec<Option<fulmar_store::QueuedDelivery>>, StoreError> {
        self.store.load_queued(client_id, seqs)
    }

    /// A fresh id for a message body.
    pub fn new_body_id(&self) -> u64 {
        self.store.next_message_id().0
    }

    /// Whether a message body of `size` bytes fits the store (`max_store_bytes`; refused
    /// with 0x97 Quota exceeded otherwise). Session queues are bounded by their outboxes.
    pub fn check_room(&self, size: u64) -> Result<(), LimitExceeded> {
        self.limits.check_store(self.store.usage(), size)
    }

    /// Commits what is queued, fsyncs and stops the writer.
    pub async fn close(&self) {
        let queue = self.queue.write().take();
        if let Some(queue) = queue {
            let _ = tokio::task::spawn_blocking(move || queue.shutdown()).await;
        }
    }
}

fn closed_ticket() -> CommitTicket {
    CommitTicket::failed(StoreError::Closed)
}

/// The stored side of one persistent session's mailbox (see the module docs).
///
/// # Invariants
/// `open` turns false only under the write lock of `gate`, together with the submission of
/// `DeleteSession`; an `Enqueue` built under the read lock with `open` true is submitted
/// before that lock is released, so it precedes the delete in the commit queue.
#[derive(Debug)]
pub struct StoreSlot {
    /// The session's client id, the key of its stored records.
    pub client_id: Arc<str>,
    gate: RwLock<()>,
    open: AtomicBool,
    /// Next sequence for this session's stored queue.
    next_seq: AtomicU64,
}

impl StoreSlot {
    /// The slot of a stored session whose queue continues at `next_seq`.
    pub fn new(client_id: Arc<str>, next_seq: u64) -> Self {
        StoreSlot {
            client_id,
            gate: RwLock::new(()),
            open: AtomicBool::new(true),
            next_seq: AtomicU64::new(next_seq),
        }
    }

    /// Read-locks the slot for enqueuing. Publishers lock several slots: always in address
    /// order, each once, so two publishers and two deletes can never wait in a cycle.
    pub fn gate(&self) -> RwLockReadGuard<'_, ()> {
        self.gate.read()
    }

    /// Whether the stored session still exists (check under [`StoreSlot::gate`]).
    pub fn is_open(&self) -> bool {
        self.open.load(Ordering::Acquire)
    }

    /// Allocates the next queue sequence (call under [`StoreSlot::gate`]).
    pub fn next_seq(&self) -> u64 {
        self.next_seq.fetch_add(1, Ordering::Relaxed)
    }

    /// Closes the slot and submits `DeleteSession`, unless it was closed already.
    pub fn delete(&self, persistence: &Persistence) -> Option<CommitTicket> {
        let _gate = self.gate.write();
        if !self.open.swap(false, Ordering::AcqRel) {
            return None;
        }
        Some(persistence.submit(vec![Mutation::DeleteSession {
            client_id: Arc::clone(&self.client_id),
        }]))
    }
}
