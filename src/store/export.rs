//! Export and import: the log as one file that rebuilds everything.
//!
//! Layout: the magic `JITLEDGER-LOG\n`, a format byte, then each stored envelope as a
//! big-endian u32 length and its bytes (exactly as in the log, hash included), then `END\n`,
//! the record count (u64) and a SHA-256 of everything before it. Import checks the
//! checksum, then the hash chain, and only then writes.

use std::collections::HashMap;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;

use ring::digest;

use super::envelope::{self, Envelope};
use super::heads::Head;
use super::projections::InMemory;
use super::segments::Record;
use super::verify::{VerifyFailure, check_chain};
use super::{ChainHasher, Store, StoreError, corrupt, keys};

const MAGIC: &[u8] = b"JITLEDGER-LOG\n";
const EXPORT_FORMAT: u8 = 1;
const TRAILER: &[u8] = b"END\n";
/// One record at most: a 4 MiB metadata document plus its envelope.
const RECORD_BYTES_MAX: u32 = 8 * 1024 * 1024;
/// Events an import writes and indexes at a time.
const IMPORT_CHUNK_RECORDS: usize = 4096;

/// Why an export file was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImportError {
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("not a jitledger export: {0}")]
    Format(String),
    #[error("checksum mismatch: the file is damaged")]
    Checksum,
    #[error("{0}")]
    Chain(#[from] VerifyFailure),
    #[error("the target store is not empty")]
    NotEmpty,
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

impl From<sled::Error> for ImportError {
    fn from(error: sled::Error) -> Self {
        ImportError::Store(StoreError::Sled(error))
    }
}

impl Store {
    /// Writes the whole log to `path`. Returns the number of events.
    pub fn export(&self, path: &Path) -> Result<u64, StoreError> {
        let mut file = BufWriter::new(std::fs::File::create(path)?);
        let mut checksum = digest::Context::new(&digest::SHA256);
        let mut write = |bytes: &[u8]| -> Result<(), StoreError> {
            checksum.update(bytes);
            file.write_all(bytes)?;
            Ok(())
        };
        write(MAGIC)?;
        write(&[EXPORT_FORMAT])?;
        let mut count: u64 = 0;
        let (head, _) = self.head()?;
        for record in self.records(1, head) {
            let bytes = record?.payload;
            let length = u32::try_from(bytes.len()).map_err(|_| corrupt("record too long"))?;
            write(&length.to_be_bytes())?;
            write(&bytes)?;
            count += 1;
        }
        write(TRAILER)?;
        write(&count.to_be_bytes())?;
        let sum = checksum.finish();
        file.write_all(sum.as_ref())?;
        let file = file
            .into_inner()
            .map_err(|e| StoreError::Io(e.into_error()))?;
        file.sync_all()?;
        Ok(count)
    }

    /// Imports an export into this (empty) store and rebuilds the projections.
    pub fn import(&mut self, path: &Path) -> Result<u64, ImportError> {
        if self.head()?.0 != 0 {
            return Err(ImportError::NotEmpty);
        }
        let records = read_records(path)?;
        // The store is empty, so each event's stream link is found in the file itself; and
        // each must continue its stream before anything is written.
        let mut heads: HashMap<Vec<u8>, Head> = HashMap::new();
        let mut links = Vec::with_capacity(records.len());
        let chain_input = records.iter().map(|bytes| {
            let envelope = envelope::decode(bytes).map_err(|e| VerifyFailure::Chain {
                seq: 0,
                reason: format!("undecodable: {e}"),
            })?;
            let head = heads
                .entry(keys::head(&envelope.org_id, &envelope.stream))
                .or_default();
            links.push(head.last_seq);
            *head = head
                .follow(envelope.seq, envelope.stream_version)
                .map_err(|reason| VerifyFailure::StreamLink {
                    seq: envelope.seq,
                    reason,
                })?;
            Ok((keys::seq(envelope.seq).to_vec(), bytes.clone()))
        });
        let (count, last_hash) = check_chain(chain_input, self.hasher(), &mut InMemory::new())?;
        // Written and indexed a chunk at a time, as the writer does a batch: a crash leaves
        // at most one chunk for the next open to index.
        for (chunk_index, chunk) in records.chunks(IMPORT_CHUNK_RECORDS).enumerate() {
            let first = chunk_index * IMPORT_CHUNK_RECORDS;
            let chunk: Vec<Record> = (first..)
                .zip(chunk)
                .map(|(position, payload)| Record {
                    seq: position as u64 + 1,
                    prev_in_stream: links[position],
                    payload: payload.clone(),
                })
                .collect();
            self.log.append(&chunk)?;
            super::writer::index_logged(self.trees(), self.hasher(), &chunk)?;
        }
        let (head, head_hash) = self.head()?;
        if (head, head_hash) != (count, last_hash) {
            return Err(
                StoreError::Corrupt("imported log does not end at its last event".into()).into(),
            );
        }
        self.db.flush().map_err(StoreError::from)?;
        super::durability::Syncer::new(self.path())
            .sync()
            .map_err(StoreError::from)?;
        Ok(count)
    }
}

/// Reads and checks an export file: magic, format, every record, the count and the
/// checksum. Returns the stored envelope bytes in order.
pub fn read_records(path: &Path) -> Result<Vec<Vec<u8>>, ImportError> {
    let mut file = BufReader::new(std::fs::File::open(path)?);
    let mut checksum = digest::Context::new(&digest::SHA256);
    let mut read = |length: usize| -> Result<Vec<u8>, ImportError> {
        let mut buffer = vec![0; length];
        file.read_exact(&mut buffer)
            .map_err(|_| ImportError::Format("truncated".into()))?;
        checksum.update(&buffer);
        Ok(buffer)
    };
    if read(MAGIC.len())? != MAGIC {
        return Err(ImportError::Format("bad magic".into()));
    }
    if read(1)? != [EXPORT_FORMAT] {
        return Err(ImportError::Format("unknown format version".into()));
    }
    let mut records = Vec::new();
    loop {
        let head = read(4)?;
        if head == TRAILER {
            break;
        }
        let length = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
        if length > RECORD_BYTES_MAX {
            return Err(ImportError::Format(format!("record of {length} bytes")));
        }
        records.push(read(length as usize)?);
    }
    let count = read(8)?;
    let count: [u8; 8] = count.try_into().unwrap_or_default();
    if u64::from_be_bytes(count) != records.len() as u64 {
        return Err(ImportError::Format("record count does not match".into()));
    }
    let expected = checksum.finish();
    let mut stored = [0; 32];
    file.read_exact(&mut stored)
        .map_err(|_| ImportError::Format("truncated".into()))?;
    if expected.as_ref() != stored {
        return Err(ImportError::Checksum);
    }
    Ok(records)
}

/// Reads an export file into envelopes after checking it and its chain (for `replay --log`).
pub fn read_envelopes(path: &Path, hasher: &ChainHasher) -> Result<Vec<Envelope>, ImportError> {
    let records = read_records(path)?;
    let mut envelopes = Vec::with_capacity(records.len());
    let mut input = Vec::with_capacity(records.len());
    for bytes in records {
        let envelope = envelope::decode(&bytes).map_err(|e| ImportError::Format(e.to_string()))?;
        input.push(Ok((keys::seq(envelope.seq).to_vec(), bytes)));
        envelopes.push(envelope);
    }
    check_chain(input.into_iter(), hasher, &mut InMemory::new())?;
    Ok(envelopes)
}
