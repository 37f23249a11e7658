//! The store file on disk: first start, format version, damage. A store that cannot be read
//! must be an error, never an empty store.

mod common;

use std::io::{Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::Arc;

use fulmar_store::{Durability, Mutation, RedbOptions, RedbStore, Store, StoreError, FILE_NAME};

use common::{body, enqueue, session};

fn filled(dir: &Path) {
    let store = RedbStore::open(dir, RedbOptions::default()).unwrap();
    let mut batch = vec![session("a")];
    for seq in 0..200 {
        let m = body(&store, "t", &[seq as u8; 512]);
        batch.push(enqueue("a", seq, &m));
        batch.push(Mutation::PutRetained(Arc::clone(&m)));
    }
    store.apply(&batch, Durability::Immediate).unwrap();
}

fn overwrite(path: &Path, offset: u64, bytes: &[u8]) {
    let mut file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    file.seek(SeekFrom::Start(offset)).unwrap();
    file.write_all(bytes).unwrap();
    file.sync_all().unwrap();
}

#[test]
fn first_start_creates_the_data_directory_and_an_empty_store() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("nested/fulmar-data");
    let store = RedbStore::open(&dir, RedbOptions::default()).unwrap();
    assert!(dir.join(FILE_NAME).is_file());
    assert!(store.load_all().unwrap().sessions.is_empty());
}

#[test]
fn a_store_of_an_unknown_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    filled(dir.path());
    {
        let store = RedbStore::open(dir.path(), RedbOptions::default()).unwrap();
        store
            .set_format_version_for_test(fulmar_store::FORMAT_VERSION + 1)
            .unwrap();
    }
    let err = RedbStore::open(dir.path(), RedbOptions::default()).unwrap_err();
    assert!(
        matches!(err, StoreError::UnsupportedVersion { found, .. } if found == fulmar_store::FORMAT_VERSION + 1),
        "{err}"
    );
}

#[test]
fn a_version_1_store_opens_with_its_data_and_is_marked_current() {
    let dir = tempfile::tempdir().unwrap();
    filled(dir.path());
    let before = {
        let store = RedbStore::open(dir.path(), RedbOptions::default()).unwrap();
        store.set_format_version_for_test(1).unwrap();
        store.load_all().unwrap()
    };
    let store = RedbStore::open(dir.path(), RedbOptions::default()).unwrap();
    assert_eq!(
        store.format_version().unwrap(),
        fulmar_store::FORMAT_VERSION
    );
    assert_eq!(store.load_all().unwrap(), before);
}

#[test]
fn a_damaged_header_is_reported_as_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    filled(dir.path());
    overwrite(&dir.path().join(FILE_NAME), 0, &[0xAB; 64]);
    let err = RedbStore::open(dir.path(), RedbOptions::default()).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
}

#[test]
fn damaged_pages_are_reported_as_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    filled(dir.path());
    let path = dir.path().join(FILE_NAME);
    let len = std::fs::metadata(&path).unwrap().len();
    // Scribble over the data pages (past redb's header region).
    let mut offset = 8192;
    while offset + 4096 < len {
        overwrite(&path, offset, &[0x5A; 512]);
        offset += 4096;
    }
    let err = RedbStore::open(dir.path(), RedbOptions::default()).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
}

#[test]
fn a_truncated_or_empty_store_file_is_corrupt_not_fresh() {
    let dir = tempfile::tempdir().unwrap();
    filled(dir.path());
    let path = dir.path().join(FILE_NAME);
    let len = std::fs::metadata(&path).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(len / 3)
        .unwrap();
    let err = RedbStore::open(dir.path(), RedbOptions::default()).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
    std::fs::write(&path, b"").unwrap();
    let err = RedbStore::open(dir.path(), RedbOptions::default()).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
}

#[test]
fn a_file_that_is_not_a_store_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(FILE_NAME), b"retained messages, please").unwrap();
    let err = RedbStore::open(dir.path(), RedbOptions::default()).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
}

#[test]
fn a_second_open_of_the_same_store_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _first = RedbStore::open(dir.path(), RedbOptions::default()).unwrap();
    let err = RedbStore::open(dir.path(), RedbOptions::default()).unwrap_err();
    assert!(matches!(err, StoreError::Locked(_)), "{err}");
}
