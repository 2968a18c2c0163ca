//! Opening a store written by an earlier layout brings it to the current one, once:
//!
//! 1. Envelopes in a sled tree `events` (seq → envelope) move into segment files.
//! 2. Segment files without stream links (`*.seg`, 16-byte record headers) are rewritten
//!    with them (`*.events`).
//! 3. The `streams` tree (org ‖ stream ‖ version → seq) becomes the seq of each stream's
//!    last event in its head, and is dropped: the links replace it.
//! 4. Each user stream's head leaves the `heads` tree for the user's projection, which
//!    gains the seq of its last event (its version is already there).
//!
//! New segments are written into a directory of their own and swapped in by renames, and a
//! tree is dropped only after what replaces it is durable, so a crash at any point either
//! redoes a step or finishes it.

use std::collections::HashMap;
use std::path::Path;

use super::durability::{Syncer, sync_directory};
use super::heads::Head;
use super::projections::Projection;
use super::segments::{LEGACY_SEGMENT_SUFFIX, LOG_DIRECTORY, Record, SegmentLog};
use super::{META_LAST_SEQ, META_REBUILDING, StoreError, corrupt, envelope, keys, writer};
use crate::provisioning::user::UserState;

const EVENTS_TREE: &[u8] = b"events";
const STREAMS_TREE: &[u8] = b"streams";
/// The segment directory while it is being written.
const MIGRATING_DIRECTORY: &str = "log.migrating";
/// The replaced segment directory, between the two renames of a swap.
const LEGACY_DIRECTORY: &str = "log.legacy";
/// Envelopes moved per segment append.
const MIGRATE_BATCH_RECORDS: usize = 4096;
/// Bytes of a legacy record header: length word, CRC-32, seq.
const LEGACY_HEADER_BYTES: usize = 16;
const LEGACY_BATCH_END: u32 = 1 << 31;

/// Brings the store at `path` to the current layout (see the module's text).
pub fn to_current_layout(db: &sled::Db, path: &Path) -> Result<(), StoreError> {
    events_tree_to_segments(db, path)?;
    legacy_segments_to_linked(db, path)?;
    heads_from_streams_tree(db, path)?;
    user_heads_into_users(db, path)
}

fn has_tree(db: &sled::Db, name: &[u8]) -> bool {
    db.tree_names().iter().any(|tree| tree == name)
}

/// Writes envelopes into new segment files, linking each to the previous event of its
/// stream.
struct LinkedWriter {
    log: SegmentLog,
    last_in_stream: HashMap<Vec<u8>, Head>,
    batch: Vec<Record>,
    written: u64,
}

impl LinkedWriter {
    fn create(dir: &Path) -> Result<LinkedWriter, StoreError> {
        if dir.exists() {
            std::fs::remove_dir_all(dir)?;
        }
        Ok(LinkedWriter {
            log: SegmentLog::open_in(dir, 0)?.log,
            last_in_stream: HashMap::new(),
            batch: Vec::with_capacity(MIGRATE_BATCH_RECORDS),
            written: 0,
        })
    }

    fn push(&mut self, seq: u64, payload: Vec<u8>) -> Result<(), StoreError> {
        if seq != self.written + 1 {
            return Err(corrupt(&format!(
                "the log holds seq {seq} where {} belongs: it was altered, and is left as it \
                 is",
                self.written + 1
            )));
        }
        let envelope = envelope::decode(&payload)?;
        let head = self
            .last_in_stream
            .entry(keys::head(&envelope.org_id, &envelope.stream))
            .or_default();
        let prev_in_stream = head.last_seq;
        *head = match head.follow(seq, envelope.stream_version) {
            Ok(next) if envelope.seq == seq => next,
            _ => {
                return Err(corrupt(&format!(
                    "event {seq} does not continue its stream: the log was altered, and is \
                     left as it is"
                )));
            }
        };
        self.batch.push(Record {
            seq,
            prev_in_stream,
            payload,
        });
        self.written = seq;
        if self.batch.len() == MIGRATE_BATCH_RECORDS {
            self.log.append(&self.batch)?;
            self.batch.clear();
        }
        Ok(())
    }

    fn finish(self) -> Result<u64, StoreError> {
        self.log.append(&self.batch)?;
        Ok(self.written)
    }
}

/// Step 1: the envelopes of an `events` tree, if the store has one, into segment files.
fn events_tree_to_segments(db: &sled::Db, path: &Path) -> Result<(), StoreError> {
    if !has_tree(db, EVENTS_TREE) {
        return Ok(());
    }
    let log = path.join(LOG_DIRECTORY);
    if !log.exists() {
        let migrating = path.join(MIGRATING_DIRECTORY);
        let mut writer = LinkedWriter::create(&migrating)?;
        for entry in db.open_tree(EVENTS_TREE)?.iter() {
            let (key, bytes) = entry?;
            let seq = u64::from_be_bytes(
                key.as_ref()
                    .try_into()
                    .map_err(|_| corrupt("events tree key"))?,
            );
            writer.push(seq, bytes.to_vec())?;
        }
        let moved = writer.finish()?;
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

/// The legacy segment files in `dir`, in seq order.
fn legacy_segments(dir: &Path) -> Result<Vec<(u64, std::path::PathBuf)>, StoreError> {
    let mut found = Vec::new();
    if !dir.exists() {
        return Ok(found);
    }
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let first = path
            .file_name()
            .and_then(|name| name.to_str())
            .and_then(|name| name.strip_suffix(LEGACY_SEGMENT_SUFFIX))
            .and_then(|stem| stem.parse::<u64>().ok());
        if let Some(first) = first {
            found.push((first, path));
        }
    }
    found.sort_unstable();
    Ok(found)
}

/// Step 2: segment files without stream links, rewritten with them. Whole batches are
/// copied; a torn tail after the last one was never acknowledged. A damaged record that was
/// acknowledged stops the migration, leaving the files as they are.
fn legacy_segments_to_linked(db: &sled::Db, path: &Path) -> Result<(), StoreError> {
    let (log, migrating, legacy) = (
        path.join(LOG_DIRECTORY),
        path.join(MIGRATING_DIRECTORY),
        path.join(LEGACY_DIRECTORY),
    );
    if !legacy.exists() {
        let segments = legacy_segments(&log)?;
        if segments.is_empty() {
            return Ok(());
        }
        let acknowledged = writer::read_u64(&db.open_tree("meta")?, META_LAST_SEQ)?;
        let mut writer = LinkedWriter::create(&migrating)?;
        for (position, (first_seq, file)) in segments.iter().enumerate() {
            if *first_seq != writer.written + 1 {
                return Err(corrupt(&format!(
                    "legacy segment {} does not follow seq {}",
                    file.display(),
                    writer.written
                )));
            }
            let bytes = std::fs::read(file)?;
            let stopped = read_legacy(&bytes, |seq, payload| writer.push(seq, payload.to_vec()))?;
            let last = position + 1 == segments.len();
            if let Some(reason) = stopped
                && (!last || writer.written < acknowledged)
            {
                return Err(corrupt(&format!(
                    "legacy segment {} is damaged after seq {}: {reason}; it is left as it is \
                     (the release that wrote it still opens it, for verify and export)",
                    file.display(),
                    writer.written
                )));
            }
        }
        let moved = writer.finish()?;
        if moved < acknowledged {
            return Err(corrupt(&format!(
                "the legacy segments end at seq {moved}, before the acknowledged {acknowledged}"
            )));
        }
        std::fs::rename(&log, &legacy)?;
        tracing::info!(
            events = moved,
            "rewrote the log's segments with stream links"
        );
    }
    // From here the swap only finishes: the legacy directory is set aside.
    if migrating.exists() {
        std::fs::rename(&migrating, &log)?;
    }
    sync_directory(path)?;
    std::fs::remove_dir_all(&legacy)?;
    sync_directory(path)?;
    Ok(())
}

/// Walks the records of a legacy segment file, calling `visit` with those of each whole
/// batch. Returns why it stopped before the end of the file, if it did.
fn read_legacy(
    bytes: &[u8],
    mut visit: impl FnMut(u64, &[u8]) -> Result<(), StoreError>,
) -> Result<Option<String>, StoreError> {
    let mut batch: Vec<(u64, &[u8])> = Vec::new();
    let mut offset = 0;
    while offset < bytes.len() {
        let Some(header) = bytes.get(offset..offset + LEGACY_HEADER_BYTES) else {
            return Ok(Some("torn record header".into()));
        };
        let word = |at: usize| {
            u32::from_be_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]])
        };
        let (first_word, crc) = (word(0), word(4));
        let length = (first_word & !LEGACY_BATCH_END) as usize;
        let start = offset + LEGACY_HEADER_BYTES;
        let Some(payload) = bytes.get(start..start + length) else {
            return Ok(Some("torn record".into()));
        };
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&header[..4]);
        hasher.update(&header[8..16]);
        hasher.update(payload);
        if hasher.finalize() != crc {
            return Ok(Some("record checksum does not match".into()));
        }
        let mut seq = [0; 8];
        seq.copy_from_slice(&header[8..16]);
        batch.push((u64::from_be_bytes(seq), payload));
        offset = start + length;
        if first_word & LEGACY_BATCH_END != 0 {
            for (seq, payload) in batch.drain(..) {
                visit(seq, payload)?;
            }
        }
    }
    Ok((!batch.is_empty()).then(|| "a batch without its end".into()))
}

/// Step 3: each stream's last seq from the `streams` tree into its head, then the tree
/// dropped. Rewriting every head is the same whether or not an earlier attempt got part way.
fn heads_from_streams_tree(db: &sled::Db, path: &Path) -> Result<(), StoreError> {
    if !has_tree(db, STREAMS_TREE) {
        return Ok(());
    }
    let heads = db.open_tree("heads")?;
    let mut last: Option<(Vec<u8>, Head)> = None;
    let mut streams = 0u64;
    for entry in db.open_tree(STREAMS_TREE)?.iter() {
        let (key, seq) = entry?;
        // org ‖ 0 ‖ stream ‖ 0 ‖ version (8 bytes, big-endian): the head's key is the part
        // before the separator that precedes the version.
        let split = key
            .len()
            .checked_sub(9)
            .filter(|at| key[*at] == keys::SEPARATOR)
            .ok_or_else(|| corrupt("streams tree key"))?;
        let number = |bytes: &[u8]| -> Result<u64, StoreError> {
            Ok(u64::from_be_bytes(
                bytes
                    .try_into()
                    .map_err(|_| corrupt("streams tree entry"))?,
            ))
        };
        let head = Head {
            version: number(&key[split + 1..])?,
            last_seq: number(&seq)?,
        };
        if let Some((previous, previous_head)) = &last
            && previous.as_slice() != &key[..split]
        {
            heads.insert(previous.as_slice(), &previous_head.encode())?;
            streams += 1;
        }
        last = Some((key[..split].to_vec(), head));
    }
    if let Some((key, head)) = last {
        heads.insert(key, &head.encode())?;
        streams += 1;
    }
    db.flush()?;
    Syncer::new(path).sync()?;
    db.drop_tree(STREAMS_TREE)?;
    db.flush()?;
    tracing::info!(streams, "stream heads now hold their last seq");
    Ok(())
}

/// User heads moved per sled transaction in step 4.
const MOVE_HEADS_CHUNK: usize = 4096;

/// Step 4: each user stream's head from the `heads` tree into the user's projection. A
/// user stored by the earlier layout is the current encoding without its last field,
/// `last_seq` (bincode: a fixed 8 bytes, little-endian, at the end), so the head's seq is
/// appended and the result must decode, exactly, to a user at the head's version. Each
/// chunk of users moves in one transaction with the removal of their heads: a crash leaves
/// every user either moved or not, and a head left in the tree is a user still to move.
/// While a rebuild is pending the heads are only removed: the rebuild writes every user.
fn user_heads_into_users(db: &sled::Db, path: &Path) -> Result<(), StoreError> {
    use bincode::Options;
    use sled::Transactional;
    use sled::transaction::ConflictableTransactionError::Abort;

    let heads = db.open_tree("heads")?;
    let users = db.open_tree(Projection::Users.tree_name())?;
    let rebuilding = db.open_tree("meta")?.contains_key(META_REBUILDING)?;
    let strict = bincode::options()
        .with_fixint_encoding()
        .reject_trailing_bytes();
    let mut moved = 0u64;
    loop {
        let mut chunk = Vec::with_capacity(MOVE_HEADS_CHUNK);
        for entry in heads.iter() {
            let (key, head) = entry?;
            if let Some(user_key) = user_key_of_head(&key) {
                chunk.push((key, user_key, Head::decode(&head)?));
                if chunk.len() == MOVE_HEADS_CHUNK {
                    break;
                }
            }
        }
        if chunk.is_empty() {
            break;
        }
        (&heads, &users)
            .transaction(|(heads, users)| {
                for (key, user_key, head) in &chunk {
                    heads.remove(key)?;
                    if rebuilding {
                        continue;
                    }
                    let refused = |what: &str| {
                        Abort(format!(
                            "the user of stream head {}: {what}",
                            keys::display(key)
                        ))
                    };
                    let mut bytes = users
                        .get(user_key)?
                        .ok_or_else(|| refused("no projection"))?
                        .to_vec();
                    bytes.extend_from_slice(&head.last_seq.to_le_bytes());
                    let user: UserState = strict
                        .deserialize(&bytes)
                        .map_err(|error| refused(&error.to_string()))?;
                    if user.version != head.version {
                        return Err(refused("its version is not its stream's"));
                    }
                    users.insert(user_key.as_slice(), bytes)?;
                }
                Ok(())
            })
            .map_err(
                |error: sled::transaction::TransactionError<String>| match error {
                    sled::transaction::TransactionError::Abort(reason) => corrupt(&reason),
                    sled::transaction::TransactionError::Storage(error) => StoreError::Sled(error),
                },
            )?;
        moved += chunk.len() as u64;
    }
    if moved > 0 {
        db.flush()?;
        Syncer::new(path).sync()?;
        tracing::info!(users = moved, "user stream heads now live in the users");
    }
    Ok(())
}

/// The users-tree key (org ‖ user ID) of a `heads` key (org ‖ stream) of a user stream.
fn user_key_of_head(key: &[u8]) -> Option<Vec<u8>> {
    let split = key.iter().position(|byte| *byte == keys::SEPARATOR)?;
    let stream = std::str::from_utf8(&key[split + 1..]).ok()?;
    let user_id = envelope::user_of_stream(stream)?;
    Some(keys::join(&[&key[..split], user_id.as_bytes()]))
}
