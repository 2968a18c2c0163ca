//! Stores written before the log moved to segment files kept each envelope in a sled tree
//! `events` (seq → envelope). Opening such a store moves the envelopes into segment files
//! once; the rest of the store (indexes, projections, `meta`) is unchanged.
//!
//! The segments are written into a directory of their own and renamed into place whole, and
//! only then is the tree dropped: a crash before the rename leaves the tree to be moved
//! again, a crash after it leaves a tree that the next open drops.

use std::path::Path;

use super::durability::sync_directory;
use super::segments::{LOG_DIRECTORY, SegmentLog};
use super::{StoreError, corrupt};

const EVENTS_TREE: &[u8] = b"events";
/// The segment directory while it is being written.
const MIGRATING_DIRECTORY: &str = "log.migrating";
/// Envelopes moved per segment append.
const MIGRATE_BATCH_RECORDS: usize = 4096;

/// Moves the envelopes of an `events` tree, if the store has one, into segment files.
pub fn events_tree_to_segments(db: &sled::Db, path: &Path) -> Result<(), StoreError> {
    if !db.tree_names().iter().any(|name| name == EVENTS_TREE) {
        return Ok(());
    }
    let log = path.join(LOG_DIRECTORY);
    if !log.exists() {
        let migrating = path.join(MIGRATING_DIRECTORY);
        if migrating.exists() {
            std::fs::remove_dir_all(&migrating)?;
        }
        let events = db.open_tree(EVENTS_TREE)?;
        let segments = SegmentLog::open_in(&migrating, 0)?.log;
        let mut batch: Vec<(u64, sled::IVec)> = Vec::with_capacity(MIGRATE_BATCH_RECORDS);
        let mut moved = 0u64;
        let append = |batch: &mut Vec<(u64, sled::IVec)>| -> Result<(), StoreError> {
            segments.append(batch)?;
            batch.clear();
            Ok(())
        };
        for entry in events.iter() {
            let (key, bytes) = entry?;
            let seq = u64::from_be_bytes(
                key.as_ref()
                    .try_into()
                    .map_err(|_| corrupt("events tree key"))?,
            );
            moved += 1;
            if seq != moved {
                return Err(corrupt(&format!(
                    "the events tree holds seq {seq} where {moved} belongs: the log was altered, \
                     and it is left in sled unmoved"
                )));
            }
            batch.push((seq, bytes));
            if batch.len() == MIGRATE_BATCH_RECORDS {
                append(&mut batch)?;
            }
        }
        append(&mut batch)?;
        drop(segments);
        std::fs::rename(&migrating, &log)?;
        sync_directory(path)?;
        tracing::info!(
            events = moved,
            "moved the event log from sled into segment files"
        );
    }
    db.drop_tree(EVENTS_TREE)?;
    db.flush()?;
    Ok(())
}
