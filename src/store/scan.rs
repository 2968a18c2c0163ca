//! A whole-log read for `rebuild` and `verify`: the records are read on a second thread and
//! handed over in batches, so that reading runs beside the decoding, hashing and folding of
//! the records instead of before them.

use std::sync::mpsc::sync_channel;

/// Records per hand-over: large enough that the channel costs nothing per record.
const SCAN_BATCH_RECORDS: usize = 1024;
/// Batches read ahead of the consumer: bounds the memory of a scan to a few MiB.
const SCAN_BATCHES_AHEAD: usize = 4;

/// Calls `consume` with an iterator over `records`, which are read on a second thread. If
/// `consume` stops early, the reading thread stops at its next hand-over.
pub fn with_scan<T: Send, R>(
    records: impl Iterator<Item = T> + Send,
    consume: impl FnOnce(&mut dyn Iterator<Item = T>) -> R,
) -> R {
    std::thread::scope(|scope| {
        let (sender, receiver) = sync_channel::<Vec<T>>(SCAN_BATCHES_AHEAD);
        scope.spawn(move || {
            let mut batch = Vec::with_capacity(SCAN_BATCH_RECORDS);
            for record in records {
                batch.push(record);
                if batch.len() == SCAN_BATCH_RECORDS {
                    let full =
                        std::mem::replace(&mut batch, Vec::with_capacity(SCAN_BATCH_RECORDS));
                    // A dropped receiver means the consumer stopped.
                    if sender.send(full).is_err() {
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

    #[test]
    fn every_record_arrives_once_in_order_across_batches() {
        let records = 3 * SCAN_BATCH_RECORDS as u32 + 7;
        let seen: Vec<u32> = with_scan(0..records, |scan| scan.collect());
        assert_eq!(seen, (0..records).collect::<Vec<_>>());
    }

    #[test]
    fn a_consumer_that_stops_early_ends_the_scan() {
        // Endless records: the reader must notice the consumer left.
        let first = with_scan(0u64.., |scan| scan.take(3).count());
        assert_eq!(first, 3);
    }
}
