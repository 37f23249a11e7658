//! Durable storage of Fulmar's persistent MQTT state.
//!
//! What is stored: persistent sessions (client id, expiry, last disconnect time, protocol
//! version), their subscriptions with options, the deliveries queued for them, their outbound
//! inflight exchanges, their inbound QoS 2 packet ids awaiting PUBREL, their delayed wills,
//! and the retained messages. Message bodies are stored once and shared by reference (with a
//! reference count) by every queue, inflight window, retained entry or will that holds them,
//! so a fan-out to N persistent sessions writes the payload once.
//!
//! # Map
//! - [`Store`] (`store.rs`): the narrow trait the broker uses: [`Store::apply`] a batch of
//!   [`Mutation`]s atomically, [`Store::load_all`] a [`Snapshot`] at startup, and usage
//!   queries for the limits.
//! - `record.rs`: the records and [`Mutation`]s, in `fulmar_proto` types; times are Unix ms.
//! - [`MemoryStore`] (`memory.rs`) and [`RedbStore`] (`redb_store.rs`): the two backends.
//!   Both run the same logic (`apply.rs`, `load.rs`) over the byte tables of `tables.rs`,
//!   whose layout is in `codec.rs`.
//! - [`CommitQueue`] (`commit.rs`): group commit on a writer thread, the fsync policies and
//!   what each can lose; [`CommitTicket`] (`ticket.rs`) is the caller's completion handle.
//! - `usage.rs`: [`StoreLimits`] and the usage queries behind 0x97 Quota exceeded.
//!
//! # Why redb
//! redb is pure Rust (no C toolchain, unlike RocksDB or LMDB bindings), embedded (no server),
//! ACID with serialisable single-writer transactions, and crash-safe by design: copy-on-write
//! B-trees with checksums and a two-slot header, so a crash at any moment leaves either the
//! old or the new commit, never a mix. It is actively maintained and has a stable file format
//! within a major version, which is why the dependency is pinned to one major (`redb = "4"`).
//! Its one durability trade-off (a non-fsynced commit does not survive a process kill) is
//! spelled out in `commit.rs`.
#![warn(missing_docs)]

mod apply;
mod coalesce;
mod codec;
mod commit;
mod error;
mod load;
mod memory;
mod record;
mod redb_store;
mod store;
mod tables;
mod ticket;
mod usage;

pub use commit::{CommitConfig, CommitQueue, CommitStats, FsyncPolicy, NEVER_CHECKPOINT};
pub use error::StoreError;
pub use memory::MemoryStore;
pub use record::{
    ClientId, InflightRecord, InflightState, MessageBody, MessageId, Mutation, QueuedDelivery,
    SessionRecord, SessionSnapshot, Snapshot, SubscriptionRecord, WillRecord,
};
pub use redb_store::{RedbOptions, RedbStore, FILE_NAME, FORMAT_VERSION};
pub use store::{Durability, Store};
pub use ticket::CommitTicket;
pub use usage::{LimitExceeded, QueueUsage, StoreLimits, StoreUsage};
