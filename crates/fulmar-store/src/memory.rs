//! The in-memory backend: for `--no-persistence` and for tests. Same semantics as the redb
//! backend (it runs the same `apply` and `load` code over ordered maps), nothing on disk.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

use crate::record::{MessageId, Mutation, QueuedDelivery, Snapshot};
use crate::tables::{ReadTables, Table, Tables, Visit};
use crate::usage::{QueueUsage, StoreUsage, UsageTracker};
use crate::{Durability, Store, StoreError};

type Map = BTreeMap<Vec<u8>, Vec<u8>>;

/// A [`Store`] in memory.
#[derive(Debug)]
pub struct MemoryStore {
    tables: Mutex<Vec<Map>>,
    usage: Mutex<UsageTracker>,
    next_id: AtomicU64,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        MemoryStore {
            tables: Mutex::new(vec![Map::new(); Table::ALL.len()]),
            usage: Mutex::new(UsageTracker::default()),
            next_id: AtomicU64::new(1),
        }
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

/// One transaction over the maps, with an undo log so a failed batch leaves no trace.
struct MemTxn<'a> {
    maps: &'a mut [Map],
    undo: Vec<(Table, Vec<u8>, Option<Vec<u8>>)>,
}

impl MemTxn<'_> {
    fn rollback(self) {
        for (table, key, old) in self.undo.into_iter().rev() {
            let map = &mut self.maps[table.index()];
            match old {
                Some(value) => map.insert(key, value),
                None => map.remove(&key),
            };
        }
    }
}

fn scan_map(map: &Map, lo: &[u8], hi: Option<&[u8]>, visit: Visit<'_>) -> Result<(), StoreError> {
    let upper = hi.map_or(Bound::Unbounded, Bound::Excluded);
    if hi.is_some_and(|hi| hi <= lo) {
        return Ok(());
    }
    for (k, v) in map.range::<[u8], _>((Bound::Included(lo), upper)) {
        visit(k, v)?;
    }
    Ok(())
}

impl ReadTables for MemTxn<'_> {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.maps[table.index()].get(key).cloned())
    }

    fn scan(
        &self,
        table: Table,
        lo: &[u8],
        hi: Option<&[u8]>,
        visit: Visit<'_>,
    ) -> Result<(), StoreError> {
        scan_map(&self.maps[table.index()], lo, hi, visit)
    }
}

impl Tables for MemTxn<'_> {
    fn put(&mut self, table: Table, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        let old = self.maps[table.index()].insert(key.to_vec(), value.to_vec());
        self.undo.push((table, key.to_vec(), old));
        Ok(())
    }

    fn remove(&mut self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let old = self.maps[table.index()].remove(key);
        if old.is_some() {
            self.undo.push((table, key.to_vec(), old.clone()));
        }
        Ok(old)
    }
}

/// Read-only view for `load_all`.
struct MemRead<'a>(&'a [Map]);

impl ReadTables for MemRead<'_> {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.0[table.index()].get(key).cloned())
    }

    fn scan(
        &self,
        table: Table,
        lo: &[u8],
        hi: Option<&[u8]>,
        visit: Visit<'_>,
    ) -> Result<(), StoreError> {
        scan_map(&self.0[table.index()], lo, hi, visit)
    }
}

impl Store for MemoryStore {
    fn apply(&self, mutations: &[Mutation], _durability: Durability) -> Result<(), StoreError> {
        let mut maps = self.tables.lock();
        let mut txn = MemTxn {
            maps: &mut maps,
            undo: Vec::new(),
        };
        match crate::apply::apply(&mut txn, mutations) {
            Ok(effects) => {
                self.usage.lock().merge(effects);
                Ok(())
            }
            Err(e) => {
                txn.rollback();
                Err(e)
            }
        }
    }

    fn sync(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn load_all(&self) -> Result<Snapshot, StoreError> {
        crate::load::load_all(&MemRead(&self.tables.lock()))
    }

    fn load_queued(
        &self,
        client_id: &str,
        seqs: &[u64],
    ) -> Result<Vec<Option<QueuedDelivery>>, StoreError> {
        crate::load::load_queued(&MemRead(&self.tables.lock()), client_id, seqs)
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
