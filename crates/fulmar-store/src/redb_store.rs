//! The on-disk backend, on redb.
//!
//! Layout: one file, `<data dir>/fulmar.redb`, with one redb table per [`Table`] (byte keys,
//! byte values). The `meta` table holds `format_version`; a file without it, or with another
//! version, is refused.
//!
//! A new store is built as `fulmar.redb.new` and renamed into place only once its metadata
//! is durable, so an existing `fulmar.redb` is always a complete store: a file that is empty,
//! truncated or lacks the metadata is reported as corrupt, never taken for a fresh start.

use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use redb::{ReadableDatabase, ReadableTable, TableDefinition};

use crate::record::{MessageId, Mutation, QueuedDelivery, Snapshot};
use crate::tables::{ReadTables, Table, Tables, Visit};
use crate::usage::{QueueUsage, StoreUsage, UsageTracker};
use crate::{Durability, Store, StoreError};

/// The store format this build writes. Bump it with any change to keys, values or tables;
/// a store of a version this build cannot read is refused with
/// [`StoreError::UnsupportedVersion`].
///
/// History: 1, the first; 2 adds the username to session records. A version 1 store is
/// read as it is (its session records simply have no username) and marked version 2 on
/// open, since this build then writes version 2 records into it.
pub const FORMAT_VERSION: u32 = 2;

/// The oldest format version this build opens (see [`FORMAT_VERSION`]).
const OLDEST_READABLE_VERSION: u32 = 1;

/// The store file's name inside the data directory.
pub const FILE_NAME: &str = "fulmar.redb";

const VERSION_KEY: &[u8] = b"format_version";

type Def = TableDefinition<'static, &'static [u8], &'static [u8]>;

fn def(table: Table) -> Def {
    TableDefinition::new(table.name())
}

/// Options of [`RedbStore::open`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RedbOptions {
    /// Verify the checksum of every page when the store opens. Costs a read of the whole
    /// file at startup; in return a damaged file is reported as [`StoreError::Corrupt`]
    /// rather than trusted (redb checks the header and the tree it reads, not every page).
    pub verify_on_open: bool,
    /// redb's page cache, bytes.
    pub cache_bytes: usize,
}

impl Default for RedbOptions {
    fn default() -> Self {
        RedbOptions {
            verify_on_open: true,
            cache_bytes: 64 * 1024 * 1024,
        }
    }
}

/// A [`Store`] in a redb file.
pub struct RedbStore {
    db: redb::Database,
    path: PathBuf,
    /// Serialises `apply`, so usage deltas merge in commit order.
    writer: Mutex<()>,
    usage: Mutex<UsageTracker>,
    next_id: AtomicU64,
}

impl std::fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbStore")
            .field("path", &self.path)
            .finish()
    }
}

fn engine(e: impl std::fmt::Display) -> StoreError {
    StoreError::Engine(e.to_string())
}

impl RedbStore {
    /// Opens the store in `dir`, creating the directory and an empty store on first start.
    ///
    /// Errors: [`StoreError::Corrupt`] for a damaged or foreign file,
    /// [`StoreError::UnsupportedVersion`], [`StoreError::Locked`] when another process has
    /// it open. A store left by a crash opens normally (redb rolls back to its last durable
    /// commit and repairs its allocator state).
    pub fn open(dir: &Path, options: RedbOptions) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::io(format!("creating data directory {}", dir.display()), e))?;
        let path = dir.join(FILE_NAME);
        if !path.exists() {
            create_new(dir, &path)?;
        }
        let shown = path.display().to_string();
        let corrupt = |detail: String| StoreError::Corrupt {
            path: shown.clone(),
            detail,
        };
        // redb may panic on some malformed files instead of returning an error; a panic
        // while opening is a corrupt store too, not a crash of the broker.
        let opened = std::panic::catch_unwind(|| {
            let db = redb::Builder::new()
                .set_check_integrity_on_open(options.verify_on_open)
                .set_cache_size(options.cache_bytes)
                .open(&path)?;
            Ok::<_, redb::DatabaseError>(db)
        });
        let db = match opened {
            Ok(Ok(db)) => db,
            Ok(Err(redb::DatabaseError::DatabaseAlreadyOpen)) => {
                return Err(StoreError::Locked(shown))
            }
            // redb reports a foreign, empty or truncated file as an I/O error of kind
            // InvalidData / UnexpectedEof: that is a corrupt store, not a failing disk.
            Ok(Err(redb::DatabaseError::Storage(redb::StorageError::Io(e))))
                if !matches!(
                    e.kind(),
                    std::io::ErrorKind::InvalidData | std::io::ErrorKind::UnexpectedEof
                ) =>
            {
                return Err(StoreError::io(format!("opening {shown}"), e))
            }
            Ok(Err(e)) => return Err(corrupt(e.to_string())),
            Err(_) => return Err(corrupt("the storage engine panicked while opening".into())),
        };
        check_version(&db).map_err(|e| match e {
            StoreError::Engine(detail) | StoreError::Decode(detail) => corrupt(detail),
            other => other,
        })?;
        let read = db.begin_read().map_err(engine)?;
        let scanned = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            crate::load::scan_usage(&RedbRead::open(&read)?)
        }));
        let (usage, next_id) = match scanned {
            Ok(Ok(found)) => found,
            Ok(Err(e)) => return Err(corrupt(e.to_string())),
            Err(_) => return Err(corrupt("the storage engine panicked while reading".into())),
        };
        drop(read);
        Ok(RedbStore {
            db,
            path,
            writer: Mutex::new(()),
            usage: Mutex::new(usage),
            next_id: AtomicU64::new(next_id),
        })
    }

    /// The store file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Size of the store file on disk, bytes.
    pub fn file_bytes(&self) -> Result<u64, StoreError> {
        std::fs::metadata(&self.path)
            .map(|m| m.len())
            .map_err(|e| StoreError::io("reading store file size", e))
    }

    /// The format version recorded in the store.
    pub fn format_version(&self) -> Result<u32, StoreError> {
        let read = self.db.begin_read().map_err(engine)?;
        read_version(&read)
    }

    /// Overwrites the format version (tests of the version check only).
    #[doc(hidden)]
    pub fn set_format_version_for_test(&self, version: u32) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(engine)?;
        {
            let mut meta = txn.open_table(def(Table::Meta)).map_err(engine)?;
            meta.insert(VERSION_KEY, version.to_le_bytes().as_slice())
                .map_err(engine)?;
        }
        txn.commit().map_err(engine)
    }
}

/// Builds an empty store beside `path` and renames it into place once durable.
fn create_new(dir: &Path, path: &Path) -> Result<(), StoreError> {
    let fresh = dir.join(format!("{FILE_NAME}.new"));
    // A leftover from a crash during a first start: nothing was ever acknowledged from it.
    let _ = std::fs::remove_file(&fresh);
    let db = redb::Database::create(&fresh).map_err(engine)?;
    let txn = db.begin_write().map_err(engine)?;
    for table in Table::ALL {
        txn.open_table(def(table)).map_err(engine)?;
    }
    {
        let mut meta = txn.open_table(def(Table::Meta)).map_err(engine)?;
        meta.insert(VERSION_KEY, FORMAT_VERSION.to_le_bytes().as_slice())
            .map_err(engine)?;
    }
    txn.commit().map_err(engine)?;
    drop(db);
    std::fs::rename(&fresh, path).map_err(|e| StoreError::io("installing the new store", e))?;
    // Make the rename itself durable.
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::io("syncing the data directory", e))
}

fn read_version(read: &redb::ReadTransaction) -> Result<u32, StoreError> {
    let meta = read.open_table(def(Table::Meta)).map_err(engine)?;
    let value = meta
        .get(VERSION_KEY)
        .map_err(engine)?
        .ok_or_else(|| StoreError::Decode("no format version: not a Fulmar store".into()))?;
    let bytes: [u8; 4] = value
        .value()
        .try_into()
        .map_err(|_| StoreError::Decode("format version is not 4 bytes".into()))?;
    Ok(u32::from_le_bytes(bytes))
}

fn check_version(db: &redb::Database) -> Result<(), StoreError> {
    let found = read_version(&db.begin_read().map_err(engine)?)?;
    if !(OLDEST_READABLE_VERSION..=FORMAT_VERSION).contains(&found) {
        return Err(StoreError::UnsupportedVersion {
            found,
            supported: FORMAT_VERSION,
        });
    }
    if found < FORMAT_VERSION {
        let txn = db.begin_write().map_err(engine)?;
        {
            let mut meta = txn.open_table(def(Table::Meta)).map_err(engine)?;
            meta.insert(VERSION_KEY, FORMAT_VERSION.to_le_bytes().as_slice())
                .map_err(engine)?;
        }
        txn.commit().map_err(engine)?;
    }
    Ok(())
}

fn bounds<'k>(lo: &'k [u8], hi: Option<&'k [u8]>) -> (Bound<&'k [u8]>, Bound<&'k [u8]>) {
    (
        Bound::Included(lo),
        hi.map_or(Bound::Unbounded, Bound::Excluded),
    )
}

/// `get` of [`ReadTables`] on one redb table, read-only or inside a write transaction.
fn get_in(
    table: &impl ReadableTable<&'static [u8], &'static [u8]>,
    key: &[u8],
) -> Result<Option<Vec<u8>>, StoreError> {
    let got = table.get(key).map_err(engine)?;
    Ok(got.map(|v| v.value().to_vec()))
}

/// `scan` of [`ReadTables`] on one redb table (see [`get_in`]).
fn scan_in(
    table: &impl ReadableTable<&'static [u8], &'static [u8]>,
    lo: &[u8],
    hi: Option<&[u8]>,
    visit: Visit<'_>,
) -> Result<(), StoreError> {
    if hi.is_some_and(|hi| hi <= lo) {
        return Ok(());
    }
    for entry in table.range::<&[u8]>(bounds(lo, hi)).map_err(engine)? {
        let (k, v) = entry.map_err(engine)?;
        visit(k.value(), v.value())?;
    }
    Ok(())
}

/// All tables of one write transaction.
struct RedbWrite<'txn>(Vec<redb::Table<'txn, &'static [u8], &'static [u8]>>);

impl ReadTables for RedbWrite<'_> {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        get_in(&self.0[table.index()], key)
    }

    fn scan(
        &self,
        table: Table,
        lo: &[u8],
        hi: Option<&[u8]>,
        visit: Visit<'_>,
    ) -> Result<(), StoreError> {
        scan_in(&self.0[table.index()], lo, hi, visit)
    }
}

impl Tables for RedbWrite<'_> {
    fn put(&mut self, table: Table, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.0[table.index()].insert(key, value).map_err(engine)?;
        Ok(())
    }

    fn remove(&mut self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let old = self.0[table.index()].remove(key).map_err(engine)?;
        Ok(old.map(|v| v.value().to_vec()))
    }
}

/// All tables of one read transaction.
struct RedbRead(Vec<redb::ReadOnlyTable<&'static [u8], &'static [u8]>>);

impl RedbRead {
    fn open(txn: &redb::ReadTransaction) -> Result<Self, StoreError> {
        let tables = Table::ALL
            .iter()
            .map(|&t| txn.open_table(def(t)).map_err(engine))
            .collect::<Result<_, _>>()?;
        Ok(RedbRead(tables))
    }
}

impl ReadTables for RedbRead {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        get_in(&self.0[table.index()], key)
    }

    fn scan(
        &self,
        table: Table,
        lo: &[u8],
        hi: Option<&[u8]>,
        visit: Visit<'_>,
    ) -> Result<(), StoreError> {
        scan_in(&self.0[table.index()], lo, hi, visit)
    }
}

fn redb_durability(durability: Durability) -> redb::Durability {
    match durability {
        Durability::Immediate => redb::Durability::Immediate,
        Durability::Deferred => redb::Durability::None,
    }
}

impl Store for RedbStore {
    fn apply(&self, mutations: &[Mutation], durability: Durability) -> Result<(), StoreError> {
        let _writer = self.writer.lock();
        let mut txn = self.db.begin_write().map_err(engine)?;
        txn.set_durability(redb_durability(durability))
            .map_err(engine)?;
        let applied = (|| {
            let tables = Table::ALL
                .iter()
                .map(|&t| txn.open_table(def(t)).map_err(engine))
                .collect::<Result<_, _>>()?;
            crate::apply::apply(&mut RedbWrite(tables), mutations)
        })();
        match applied {
            Ok(effects) => {
                txn.commit().map_err(engine)?;
                self.usage.lock().merge(effects);
                Ok(())
            }
            Err(e) => {
                txn.abort().map_err(engine)?;
                Err(e)
            }
        }
    }

    fn sync(&self) -> Result<(), StoreError> {
        self.apply(&[], Durability::Immediate)
    }

    fn load_all(&self) -> Result<Snapshot, StoreError> {
        let read = self.db.begin_read().map_err(engine)?;
        crate::load::load_all(&RedbRead::open(&read)?)
    }

    fn load_queued(
        &self,
        client_id: &str,
        seqs: &[u64],
    ) -> Result<Vec<Option<QueuedDelivery>>, StoreError> {
        let read = self.db.begin_read().map_err(engine)?;
        crate::load::load_queued(&RedbRead::open(&read)?, client_id, seqs)
    }

    fn next_message_id(&self) -> MessageId {
        MessageId(self.next_id.fetch_add(1, Ordering::Relaxed))
    }

    fn queue_usage(&self, client_id: &str) -> QueueUsage {
        self.usage.lock().session(client_id)
    }

    fn usage(&self) -> StoreUsage {
        self.usage.lock().total()
    }
}
