//! The narrow interface the broker persists through.

use crate::record::{MessageId, Mutation, QueuedDelivery, Snapshot};
use crate::usage::{QueueUsage, StoreUsage};
use crate::StoreError;

/// How durable a commit must be when [`Store::apply`] returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// On stable storage (fsync) before `apply` returns: survives a process kill and a
    /// power loss.
    Immediate,
    /// Visible to later reads, but made durable only by a later `Immediate` commit or
    /// [`Store::sync`]. With redb such a commit is lost on a process kill as well as on a
    /// power loss: redb writes its pages but not the file header that points at them, so a
    /// reopened file shows the last durable commit.
    Deferred,
}

/// Persistent broker state behind one narrow interface (see the crate docs for the data model).
///
/// Implementations are `Send + Sync`; `apply` calls are serialised internally, and queries
/// (`queue_usage`, `usage`, `next_message_id`) never wait for a commit.
pub trait Store: Send + Sync + 'static {
    /// Applies `mutations`, in order, as one atomic transaction: after a crash either all of
    /// them are there or none (for `Deferred`, "there" needs a later durable commit). On
    /// error nothing was applied.
    fn apply(&self, mutations: &[Mutation], durability: Durability) -> Result<(), StoreError>;

    /// Makes every commit so far durable (an empty `Immediate` commit).
    fn sync(&self) -> Result<(), StoreError>;

    /// Reads everything, for recovery at startup.
    fn load_all(&self) -> Result<Snapshot, StoreError>;

    /// The committed queue entries of `client_id` at the sequences `seqs`, in the same order;
    /// `None` for a sequence with no entry. This is how a session's queue, spilled to the
    /// store while it was offline, is read back as its connection drains it.
    fn load_queued(
        &self,
        client_id: &str,
        seqs: &[u64],
    ) -> Result<Vec<Option<QueuedDelivery>>, StoreError>;

    /// A fresh message id, never handed out before by this store (also across restarts,
    /// as long as a body with a larger id was committed durably).
    fn next_message_id(&self) -> MessageId;

    /// The committed queue usage of one session.
    fn queue_usage(&self, client_id: &str) -> QueueUsage;

    /// The committed usage of the whole store.
    fn usage(&self) -> StoreUsage;
}
