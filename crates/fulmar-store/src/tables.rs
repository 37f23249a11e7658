//! The key-value view both backends give the shared logic in `apply` and `load`.
//!
//! Each backend only has to store bytes under bytes in ten ordered tables, inside one
//! transaction; what the records mean, cascades, reference counts and limits live once, in
//! code both backends run.

use crate::StoreError;

/// The logical tables of a store. See `codec` for the key and value layouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Table {
    /// `name → value`: the format version.
    Meta,
    /// `client id → SessionRecord`.
    Sessions,
    /// `session prefix ‖ filter → options`.
    Subscriptions,
    /// `session prefix ‖ seq BE → DeliveryRef`.
    Queue,
    /// `session prefix ‖ packet id BE → seq, state, optional DeliveryRef`.
    Inflight,
    /// `session prefix ‖ packet id BE → ()`.
    InboundQos2,
    /// `topic → message id`.
    Retained,
    /// `client id → publish-at, message id`.
    Wills,
    /// `message id BE → body`.
    Messages,
    /// `message id BE → reference count`. A body exists exactly while its count is positive.
    Refs,
}

impl Table {
    /// Every table, in a fixed order (the index of each in backends' arrays).
    pub(crate) const ALL: [Table; 10] = [
        Table::Meta,
        Table::Sessions,
        Table::Subscriptions,
        Table::Queue,
        Table::Inflight,
        Table::InboundQos2,
        Table::Retained,
        Table::Wills,
        Table::Messages,
        Table::Refs,
    ];

    /// Position in [`Table::ALL`].
    pub(crate) fn index(self) -> usize {
        self as usize
    }

    /// The table's name in the redb file (part of the store format).
    pub(crate) fn name(self) -> &'static str {
        match self {
            Table::Meta => "meta",
            Table::Sessions => "sessions",
            Table::Subscriptions => "subscriptions",
            Table::Queue => "queue",
            Table::Inflight => "inflight",
            Table::InboundQos2 => "inbound_qos2",
            Table::Retained => "retained",
            Table::Wills => "wills",
            Table::Messages => "messages",
            Table::Refs => "refs",
        }
    }
}

/// Visitor of one table entry; returning an error stops the scan.
pub(crate) type Visit<'f> = &'f mut dyn FnMut(&[u8], &[u8]) -> Result<(), StoreError>;

/// Reads inside one transaction.
pub(crate) trait ReadTables {
    /// The value under `key`.
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    /// Visits the entries with `lo <= key < hi` (`hi == None`: to the end) in key order.
    fn scan(
        &self,
        table: Table,
        lo: &[u8],
        hi: Option<&[u8]>,
        visit: Visit<'_>,
    ) -> Result<(), StoreError>;
}

/// Reads and writes inside one transaction; nothing is visible to others until it commits.
pub(crate) trait Tables: ReadTables {
    /// Inserts or replaces.
    fn put(&mut self, table: Table, key: &[u8], value: &[u8]) -> Result<(), StoreError>;
    /// Removes `key`, returning its value.
    fn remove(&mut self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
}

/// Owned key-value pairs.
pub(crate) type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// Keys (with values) of the entries with `lo <= key < hi`, collected so they can be
/// removed while the table is not borrowed.
pub(crate) fn collect(
    t: &impl ReadTables,
    table: Table,
    lo: &[u8],
    hi: Option<&[u8]>,
) -> Result<Entries, StoreError> {
    let mut out = Vec::new();
    t.scan(table, lo, hi, &mut |k, v| {
        out.push((k.to_vec(), v.to_vec()));
        Ok(())
    })?;
    Ok(out)
}
