//! A whole-log read for `rebuild` and `verify`: sled's iterator runs on a second thread and
//! hands over batches of records, so that walking sled's nodes (the larger part of a scan:
//! each step finds its node again in the page cache) runs beside the decoding, hashing and
//! folding of the records instead of before them.

use std::sync::mpsc::sync_channel;

use sled::IVec;

/// Records per hand-over: large enough that the channel costs nothing per record.
const SCAN_BATCH_RECORDS: usize = 1024;
/// Batches read ahead of the consumer: bounds the memory of a scan to a few MiB.
const SCAN_BATCHES_AHEAD: usize = 4;

/// Calls `consume` with an iterator over every record of `tree` in key order, read on a
/// second thread. If `consume` stops early, the reading thread stops at its next hand-over.
pub fn with_scan<R>(
    tree: &sled::Tree,
    consume: impl FnOnce(&mut dyn Iterator<Item = sled::Result<(IVec, IVec)>>) -> R,
) -> R {
    std::thread::scope(|scope| {
        let (sender, receiver) =
            sync_channel::<Vec<sled::Result<(IVec, IVec)>>>(SCAN_BATCHES_AHEAD);
        scope.spawn(move || {
            let mut batch = Vec::with_capacity(SCAN_BATCH_RECORDS);
            for record in tree.iter() {
                let failed = record.is_err();
                batch.push(record);
                if failed || batch.len() == SCAN_BATCH_RECORDS {
                    let full =
                        std::mem::replace(&mut batch, Vec::with_capacity(SCAN_BATCH_RECORDS));
                    // A read error ends the scan (the consumer gets it last); a dropped
                    // receiver means the consumer stopped.
                    if sender.send(full).is_err() || failed {
                        return;
                    }
                }
            }
            if !batch.is_empty() {
                let _ = sender.send(batch);
            }
        });
        let mut records = receiver.into_iter().flatten();
        consume(&mut records)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree_of(records: u32) -> sled::Tree {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let tree = db.open_tree("t").unwrap();
        for n in 0..records {
            tree.insert(n.to_be_bytes(), &n.to_le_bytes()).unwrap();
        }
        tree
    }

    #[test]
    fn every_record_arrives_once_in_key_order_across_batches() {
        let records = 3 * SCAN_BATCH_RECORDS as u32 + 7;
        let tree = tree_of(records);
        let keys: Vec<u32> = with_scan(&tree, |scan| {
            scan.map(|record| {
                let (key, _) = record.unwrap();
                u32::from_be_bytes(key.as_ref().try_into().unwrap())
            })
            .collect()
        });
        assert_eq!(keys, (0..records).collect::<Vec<_>>());
    }

    #[test]
    fn a_consumer_that_stops_early_ends_the_scan() {
        // More batches than the channel holds: the reader must notice the consumer left.
        let tree = tree_of((SCAN_BATCHES_AHEAD as u32 + 4) * SCAN_BATCH_RECORDS as u32);
        let first = with_scan(&tree, |scan| scan.take(3).count());
        assert_eq!(first, 3);
    }
}
