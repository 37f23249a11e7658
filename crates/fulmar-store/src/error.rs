//! The store's one error type.

use std::sync::Arc;

/// Why a store operation failed.
///
/// `Clone`, so that one failed group commit can hand the same error to every waiting caller.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The file is not a readable Fulmar store: damaged, truncated, or written by something
    /// else. The broker must stop rather than start with an empty store.
    #[error("store file {path} is corrupt or unreadable: {detail}")]
    Corrupt {
        /// The store file.
        path: String,
        /// What was wrong.
        detail: String,
    },
    /// The store was written in a format version this build does not know.
    #[error(
        "store format version {found} is not supported (this build reads versions 1 to {supported})"
    )]
    UnsupportedVersion {
        /// Version found in the store's metadata.
        found: u32,
        /// The version this build reads and writes.
        supported: u32,
    },
    /// Another process (or another `RedbStore` in this one) has the store open.
    #[error("store file {0} is already open by another broker")]
    Locked(String),
    /// A mutation names a session that does not exist; the whole batch was rolled back.
    #[error("no stored session for client id {0:?}")]
    UnknownSession(String),
    /// A record read back from the store does not decode.
    #[error("stored record does not decode: {0}")]
    Decode(String),
    /// An I/O error outside the database engine (data directory, file checks).
    #[error("{context}: {source}")]
    Io {
        /// What the store was doing.
        context: String,
        /// The underlying error (shared, so the error stays `Clone`).
        source: Arc<std::io::Error>,
    },
    /// The database engine failed (I/O error, full disk, …); the batch was not committed.
    #[error("storage engine error: {0}")]
    Engine(String),
    /// The commit queue was shut down before the batch was committed.
    #[error("the commit queue is closed")]
    Closed,
}

impl StoreError {
    /// An [`StoreError::Io`] with context.
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        StoreError::Io {
            context: context.into(),
            source: Arc::new(source),
        }
    }
}
