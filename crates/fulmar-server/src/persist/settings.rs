//! The `[persistence]` table: where the store lives and how hard it tries to keep what it
//! acknowledged (see docs/configuration.md and `fulmar_store::FsyncPolicy`).

use std::path::PathBuf;
use std::time::Duration;

use fulmar_store::{CommitConfig, FsyncPolicy, RedbOptions};
use serde::Deserialize;

/// When commits reach stable storage. What each loses is documented on
/// [`fulmar_store::FsyncPolicy`] and in docs/configuration.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FsyncSetting {
    /// fsync every group commit before its acknowledgements leave: nothing acknowledged is
    /// lost on `kill -9` or power loss.
    #[default]
    Always,
    /// fsync every `fsync_interval_ms`: up to that long of acknowledged messages is lost on
    /// `kill -9` as on power loss (redb keeps no un-fsynced commit across a process kill).
    Interval,
    /// fsync once a minute and at a clean shutdown: up to a minute is lost on a crash.
    Never,
}

/// Durable storage of persistent sessions, their queues, retained messages and delayed wills.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct PersistenceSettings {
    /// Store state on disk. `false`: everything lives in memory and is gone at exit.
    pub enabled: bool,
    /// Directory of the store (`fulmar.redb`); created on first start.
    pub data_dir: PathBuf,
    /// When commits are fsynced.
    pub fsync: FsyncSetting,
    /// How long the writer gathers batches into one commit, milliseconds. 0 (recommended):
    /// commit at once; groups still form while the previous commit's fsync runs (measured 3x
    /// the throughput of 2 ms under `always`, `fulmar-store/examples/commit_bench.rs`).
    pub commit_interval_ms: u64,
    /// For `fsync = "interval"`: the longest a commit stays un-fsynced, milliseconds.
    pub fsync_interval_ms: u64,
    /// Most bytes of message bodies the store holds (queued, inflight, retained, wills);
    /// beyond it new QoS 1/2 messages for stored sessions are refused (0x97 on MQTT 5).
    pub max_store_bytes: u64,
    /// The storage engine's page cache, bytes: the memory the store may use however many
    /// sessions and messages it holds (offline queues are read back through it).
    pub cache_bytes: u64,
}

impl Default for PersistenceSettings {
    fn default() -> Self {
        PersistenceSettings {
            enabled: true,
            data_dir: PathBuf::from("./fulmar-data"),
            fsync: FsyncSetting::Always,
            commit_interval_ms: 0,
            fsync_interval_ms: 100,
            max_store_bytes: 1024 * 1024 * 1024,
            cache_bytes: 64 * 1024 * 1024,
        }
    }
}

impl PersistenceSettings {
    /// The storage engine options these imply.
    pub fn redb_options(&self) -> RedbOptions {
        RedbOptions {
            cache_bytes: usize::try_from(self.cache_bytes).unwrap_or(usize::MAX),
            ..RedbOptions::default()
        }
    }

    /// The commit queue settings these imply.
    pub fn commit_config(&self) -> CommitConfig {
        CommitConfig {
            commit_interval: Duration::from_millis(self.commit_interval_ms),
            fsync: match self.fsync {
                FsyncSetting::Always => FsyncPolicy::Always,
                FsyncSetting::Interval => FsyncPolicy::Interval,
                FsyncSetting::Never => FsyncPolicy::Never,
            },
            fsync_interval: Duration::from_millis(self.fsync_interval_ms.max(1)),
            ..CommitConfig::default()
        }
    }
}
