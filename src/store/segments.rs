//! The event log's own files. Envelopes are appended to segment files with one
//! `fdatasync` per batch; sled keeps only what is looked up by key (stream heads, replay
//! guards, projections).
//!
//! Why not a sled tree: sled holds about 260 bytes of memory for every page of every tree
//! for as long as the database is open, and an append-only tree fills its pages with about
//! nine keys each, so the log's memory grew with its length; a scan walked sled's nodes one
//! key at a time; and each event was two more sled writes per append. Here a scan reads the
//! files front to back, and the log costs memory only for a sparse index.
//!
//! Layout: `DIR/log/{first seq, 20 digits}.events`. A record is a 24-byte header — a word
//! holding the payload length and, in its top bit, whether the record ends its batch (u32
//! BE); CRC-32 of that word ‖ seq ‖ stream link ‖ payload (u32 BE); the seq (u64 BE); the
//! stream link (u64 BE): the seq of the previous record of the same stream, 0 for a
//! stream's first — then the payload (the stored envelope). The links are the stream index:
//! a stream is read by following them back from its head, so sled holds one key per stream
//! instead of one per event. A batch is written whole into one segment, and a new segment
//! starts at a batch boundary once the last one holds [`SEGMENT_BYTES_MAX`], so only the
//! last segment can end in a torn write. Recovery keeps whole batches only: records after
//! the last batch end were never acknowledged, and part of a batch may hold part of an
//! append.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};

use super::StoreError;
use super::durability::sync_directory;

/// A segment is closed for appends once it holds this much: small enough that opening
/// reads the last one whole (to find its end) in a few tens of milliseconds.
pub const SEGMENT_BYTES_MAX: u64 = 32 * 1024 * 1024;
/// The largest payload a record may declare: an envelope is a few hundred bytes, one that
/// carries IdP metadata up to the service's body limit. A larger length is a corrupt header.
pub const RECORD_BYTES_MAX: u32 = 8 * 1024 * 1024;
const HEADER_BYTES: usize = 24;
/// The name of a segment file ends in this; segments of the earlier layout (16-byte headers,
/// no stream link) end in [`LEGACY_SEGMENT_SUFFIX`] and are rewritten when a store is opened.
const SEGMENT_SUFFIX: &str = ".events";
pub(crate) const LEGACY_SEGMENT_SUFFIX: &str = ".seg";
/// The segments' directory under the store's.
pub const LOG_DIRECTORY: &str = "log";
/// The top bit of a record's first header word: the record ends its batch.
const BATCH_END: u32 = 1 << 31;
/// One sparse index entry per this many records: a lookup by seq skips at most this many
/// record headers past its entry, and the index costs 16 bytes per this many records
/// (2.5 MB for 10,000,000 events).
const INDEX_EVERY_RECORDS: u64 = 64;
/// Bytes a reader fetches from a file at once: it starts small (a lookup of one event reads
/// little) and doubles with every fetch up to the most (a scan reads in large pieces).
const READ_AHEAD_BYTES_MIN: usize = 4 * 1024;
const READ_AHEAD_BYTES_MAX: usize = 256 * 1024;

#[derive(Debug)]
struct Segment {
    first_seq: u64,
    file: File,
    /// (seq, offset) of every [`INDEX_EVERY_RECORDS`]-th record from `first_seq`; built on
    /// first use for a segment that was closed before this process opened it.
    index: Mutex<Option<Vec<(u64, u64)>>>,
}

/// Where the next batch goes.
#[derive(Debug)]
struct Tail {
    end: u64,
    next_seq: u64,
}

/// The segment files of one store.
#[derive(Debug)]
pub struct SegmentLog {
    dir: PathBuf,
    segments: RwLock<Vec<Arc<Segment>>>,
    tail: Mutex<Tail>,
}

/// One record: its seq, the seq of the previous record of the same stream (0 for none) and
/// its payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record<P = Vec<u8>> {
    pub seq: u64,
    pub prev_in_stream: u64,
    pub payload: P,
}

/// What opening found past the acknowledged end.
#[derive(Debug)]
pub struct Recovered {
    pub log: SegmentLog,
    /// Records after `acknowledged`, in order: written and synced, but the store's indexes
    /// and projections may not have them yet.
    pub unindexed: Vec<Record>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The data under these locks stays consistent at every step, so a panic elsewhere
    // leaves nothing half-done to guard against.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn segment_name(first_seq: u64) -> String {
    format!("{first_seq:020}{SEGMENT_SUFFIX}")
}

fn corrupt(reason: String) -> StoreError {
    StoreError::Corrupt(reason)
}

/// One record read from a file, or why none could be.
enum Frame {
    Record {
        record: Record,
        next: u64,
        ends_batch: bool,
    },
    /// The file ends here.
    End,
    /// Bytes here are not a whole, intact record.
    Bad(String),
}

/// A forward reader over one file, fetching ahead of what is asked.
struct Window {
    buffer: Vec<u8>,
    start: u64,
    ahead: usize,
}

impl Window {
    fn new() -> Window {
        Window {
            buffer: Vec::new(),
            start: 0,
            ahead: READ_AHEAD_BYTES_MIN,
        }
    }

    /// `length` bytes at `offset`, or fewer at the end of the file.
    fn bytes(&mut self, file: &File, offset: u64, length: usize) -> io::Result<&[u8]> {
        let end = offset + length as u64;
        let held = self.start + self.buffer.len() as u64;
        if offset < self.start || end > held {
            self.buffer.resize(length.max(self.ahead), 0);
            self.ahead = (self.ahead * 2).min(READ_AHEAD_BYTES_MAX);
            let mut filled = 0;
            while filled < self.buffer.len() {
                match file.read_at(&mut self.buffer[filled..], offset + filled as u64) {
                    Ok(0) => break,
                    Ok(read) => filled += read,
                    Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                    Err(error) => return Err(error),
                }
            }
            self.buffer.truncate(filled);
            self.start = offset;
        }
        let from = (offset - self.start) as usize;
        let to = (from + length).min(self.buffer.len());
        Ok(&self.buffer[from..to])
    }

    /// The seq and the next record's offset of the record at `offset`, from its header
    /// alone (its payload is not read or checked): for skipping to a wanted record.
    fn skip(&mut self, file: &File, offset: u64) -> io::Result<Option<(u64, u64)>> {
        let header = self.bytes(file, offset, HEADER_BYTES)?;
        if header.len() < HEADER_BYTES {
            return Ok(None);
        }
        let length = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) & !BATCH_END;
        let mut seq = [0; 8];
        seq.copy_from_slice(&header[8..16]);
        Ok(Some((
            u64::from_be_bytes(seq),
            offset + HEADER_BYTES as u64 + u64::from(length),
        )))
    }

    fn frame(&mut self, file: &File, offset: u64) -> io::Result<Frame> {
        let header = self.bytes(file, offset, HEADER_BYTES)?;
        if header.is_empty() {
            return Ok(Frame::End);
        }
        if header.len() < HEADER_BYTES {
            return Ok(Frame::Bad("torn record header".into()));
        }
        let word = |at: usize| {
            u32::from_be_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]])
        };
        let (first_word, crc) = (word(0), word(4));
        let (length, ends_batch) = (first_word & !BATCH_END, first_word & BATCH_END != 0);
        let mut numbers = [0; 16];
        numbers.copy_from_slice(&header[8..24]);
        if length > RECORD_BYTES_MAX {
            return Ok(Frame::Bad(format!("record header declares {length} bytes")));
        }
        let payload = self.bytes(file, offset + HEADER_BYTES as u64, length as usize)?;
        if payload.len() < length as usize {
            return Ok(Frame::Bad("torn record".into()));
        }
        if checksum(first_word, &numbers, payload) != crc {
            return Ok(Frame::Bad("record checksum does not match".into()));
        }
        let number = |at: usize| {
            let mut bytes = [0; 8];
            bytes.copy_from_slice(&numbers[at..at + 8]);
            u64::from_be_bytes(bytes)
        };
        Ok(Frame::Record {
            record: Record {
                seq: number(0),
                prev_in_stream: number(8),
                payload: payload.to_vec(),
            },
            next: offset + (HEADER_BYTES + length as usize) as u64,
            ends_batch,
        })
    }
}

/// CRC-32 of a record's first word, its seq and stream link (`numbers`), and its payload.
fn checksum(first_word: u32, numbers: &[u8; 16], payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&first_word.to_be_bytes());
    hasher.update(numbers);
    hasher.update(payload);
    hasher.finalize()
}

/// What walking a segment from its start found, up to the end of its last whole batch.
struct Walk {
    /// The sparse index of the whole batches.
    index: Vec<(u64, u64)>,
    /// Where the last whole batch ends.
    end: u64,
    next_seq: u64,
    /// Why the walk stopped before the end of the file, if it did: a damaged or torn
    /// record, or a batch without its end.
    stopped: Option<String>,
}

/// Walks a segment, calling `visit` with each record of each whole batch.
fn walk(segment: &Segment, mut visit: impl FnMut(Record)) -> io::Result<Walk> {
    let mut window = Window::new();
    let mut walk = Walk {
        index: Vec::new(),
        end: 0,
        next_seq: segment.first_seq,
        stopped: None,
    };
    // The records of the batch being read, until its end is seen.
    let mut batch: Vec<Record> = Vec::new();
    let mut batch_index = Vec::new();
    let mut offset = 0;
    loop {
        match window.frame(&segment.file, offset)? {
            Frame::End => {
                if !batch.is_empty() {
                    walk.stopped = Some("a batch without its end".into());
                }
                return Ok(walk);
            }
            Frame::Bad(reason) => {
                walk.stopped = Some(reason);
                return Ok(walk);
            }
            Frame::Record {
                record,
                next,
                ends_batch,
            } => {
                let seq = record.seq;
                let expected = walk.next_seq + batch.len() as u64;
                if seq != expected {
                    walk.stopped = Some(format!("record of seq {seq} where {expected} belongs"));
                    return Ok(walk);
                }
                if (seq - segment.first_seq).is_multiple_of(INDEX_EVERY_RECORDS) {
                    batch_index.push((seq, offset));
                }
                batch.push(record);
                offset = next;
                if ends_batch {
                    batch.drain(..).for_each(&mut visit);
                    walk.index.append(&mut batch_index);
                    walk.end = offset;
                    walk.next_seq = seq + 1;
                }
            }
        }
    }
}

fn frame_into(
    out: &mut Vec<u8>,
    record: &Record<&[u8]>,
    ends_batch: bool,
) -> Result<(), StoreError> {
    let payload = record.payload;
    let length = u32::try_from(payload.len())
        .ok()
        .filter(|length| *length <= RECORD_BYTES_MAX)
        .ok_or_else(|| corrupt(format!("an envelope of {} bytes", payload.len())))?;
    let first_word = if ends_batch {
        length | BATCH_END
    } else {
        length
    };
    let mut numbers = [0; 16];
    numbers[..8].copy_from_slice(&record.seq.to_be_bytes());
    numbers[8..].copy_from_slice(&record.prev_in_stream.to_be_bytes());
    out.extend_from_slice(&first_word.to_be_bytes());
    out.extend_from_slice(&checksum(first_word, &numbers, payload).to_be_bytes());
    out.extend_from_slice(&numbers);
    out.extend_from_slice(payload);
    Ok(())
}

impl SegmentLog {
    /// Opens the segments under `dir/log`, creating the first one for an empty store.
    /// `acknowledged` is the last seq the store's indexes hold: records after it may be
    /// torn (cut off, then overwritten by the next batch) or whole (returned to be indexed).
    /// A damaged record at or before it is left as it is, for `verify` to name.
    pub fn open(dir: &Path, acknowledged: u64) -> Result<Recovered, StoreError> {
        Self::open_in(&dir.join(LOG_DIRECTORY), acknowledged)
    }

    /// [`SegmentLog::open`] on the segment directory itself.
    pub(crate) fn open_in(dir: &Path, acknowledged: u64) -> Result<Recovered, StoreError> {
        let dir = dir.to_path_buf();
        if !dir.exists() {
            std::fs::create_dir_all(&dir)?;
            sync_directory(dir.parent().unwrap_or(&dir))?;
        }
        let mut firsts = Vec::new();
        for entry in std::fs::read_dir(&dir)? {
            let name = entry?.file_name();
            let Some(first) = name
                .to_str()
                .and_then(|name| name.strip_suffix(SEGMENT_SUFFIX))
                .and_then(|stem| stem.parse::<u64>().ok())
            else {
                continue;
            };
            firsts.push(first);
        }
        firsts.sort_unstable();
        if firsts.is_empty() {
            if acknowledged > 0 {
                return Err(corrupt(format!(
                    "the store holds {acknowledged} events but {} has no segment",
                    dir.display()
                )));
            }
            firsts.push(1);
            create_segment_file(&dir, 1)?;
        }
        let mut segments = Vec::with_capacity(firsts.len());
        for (position, first_seq) in firsts.iter().enumerate() {
            let path = dir.join(segment_name(*first_seq));
            let last = position + 1 == firsts.len();
            let file = OpenOptions::new().read(true).write(last).open(&path)?;
            segments.push(Arc::new(Segment {
                first_seq: *first_seq,
                file,
                index: Mutex::new(None),
            }));
        }
        // Records past `acknowledged` can only be in the segment holding the seq after it and
        // in later ones (a batch that started a segment).
        let from = segments
            .partition_point(|segment| segment.first_seq <= acknowledged + 1)
            .saturating_sub(1);
        let mut unindexed = Vec::new();
        let mut tail = None;
        for (position, segment) in segments.iter().enumerate().skip(from) {
            let walked = walk(segment, |record| {
                if record.seq > acknowledged {
                    unindexed.push(record);
                }
            })?;
            let file_length = segment.file.metadata()?.len();
            let last = position + 1 == segments.len();
            let torn_tail = walked.stopped.is_some() && walked.next_seq > acknowledged;
            let end = if last && (walked.stopped.is_none() || torn_tail) {
                // Whatever follows the intact records was never acknowledged: cut it off.
                if walked.end < file_length {
                    segment.file.set_len(walked.end)?;
                    segment.file.sync_data()?;
                }
                walked.end
            } else {
                if let Some(reason) = &walked.stopped {
                    // Acknowledged records are damaged: keep the evidence; verify names them.
                    tracing::error!(
                        first_bad_seq = walked.next_seq,
                        reason = reason.as_str(),
                        "event log segment is damaged"
                    );
                }
                file_length
            };
            *lock(&segment.index) = Some(walked.index);
            tail = Some(Tail {
                end,
                next_seq: walked.next_seq.max(acknowledged + 1),
            });
        }
        let tail = tail.ok_or_else(|| corrupt("no segment".into()))?;
        Ok(Recovered {
            log: SegmentLog {
                dir,
                segments: RwLock::new(segments),
                tail: Mutex::new(tail),
            },
            unindexed,
        })
    }

    /// Appends records with consecutive seqs, starting at the next seq, and makes them
    /// durable (`fdatasync`) before returning. On an error nothing of the batch counts: the
    /// next batch overwrites whatever part of it reached the file.
    pub fn append(&self, records: &[Record<impl AsRef<[u8]>>]) -> Result<(), StoreError> {
        let Some(first) = records.first().map(|record| record.seq) else {
            return Ok(());
        };
        let mut tail = lock(&self.tail);
        if first != tail.next_seq {
            return Err(corrupt(format!(
                "append of seq {first} where {} is next",
                tail.next_seq
            )));
        }
        if let Some((seq, _)) = (records.iter().enumerate())
            .map(|(position, record)| (record.seq, first + position as u64))
            .find(|(seq, expected)| seq != expected)
        {
            return Err(corrupt(format!("seq {seq} out of order in a batch")));
        }
        if tail.end >= SEGMENT_BYTES_MAX {
            self.start_segment(first)?;
            tail.end = 0;
        }
        let mut bytes = Vec::with_capacity(
            records
                .iter()
                .map(|record| record.payload.as_ref().len() + HEADER_BYTES)
                .sum(),
        );
        let segment = self.last();
        let mut index_entries = Vec::new();
        for (position, record) in records.iter().enumerate() {
            if (record.seq - segment.first_seq).is_multiple_of(INDEX_EVERY_RECORDS) {
                index_entries.push((record.seq, tail.end + bytes.len() as u64));
            }
            let borrowed = Record {
                seq: record.seq,
                prev_in_stream: record.prev_in_stream,
                payload: record.payload.as_ref(),
            };
            frame_into(&mut bytes, &borrowed, position + 1 == records.len())?;
        }
        let written = segment
            .file
            .write_all_at(&bytes, tail.end)
            .and_then(|()| segment.file.sync_data());
        if let Err(error) = written {
            // Best effort: a part left behind is not a whole batch, which recovery ignores.
            let _ = segment.file.set_len(tail.end);
            return Err(error.into());
        }
        if let Some(index) = lock(&segment.index).as_mut() {
            index.extend(index_entries);
        }
        tail.end += bytes.len() as u64;
        tail.next_seq = first + records.len() as u64;
        Ok(())
    }

    /// The seq the next append must start with.
    pub fn next_seq(&self) -> u64 {
        lock(&self.tail).next_seq
    }

    fn last(&self) -> Arc<Segment> {
        let segments = self.segments.read().unwrap_or_else(PoisonError::into_inner);
        // `open` leaves at least one segment and none is ever removed.
        Arc::clone(&segments[segments.len() - 1])
    }

    fn start_segment(&self, first_seq: u64) -> Result<(), StoreError> {
        let file = create_segment_file(&self.dir, first_seq)?;
        let segment = Arc::new(Segment {
            first_seq,
            file,
            index: Mutex::new(Some(Vec::new())),
        });
        self.segments
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .push(segment);
        Ok(())
    }

    /// Records from `from` through `through`, in order. Every record in that range must be
    /// there and intact; the first that is not ends the iteration with an error naming it.
    pub fn read(&self, from: u64, through: u64) -> Records<'_> {
        Records {
            log: self,
            segment: None,
            window: Window::new(),
            offset: 0,
            next_seq: from.max(1),
            through,
        }
    }

    /// The segment holding `seq` and its position in the list.
    fn segment_for(&self, seq: u64) -> Option<(usize, Arc<Segment>)> {
        let segments = self.segments.read().unwrap_or_else(PoisonError::into_inner);
        let position = segments.partition_point(|segment| segment.first_seq <= seq);
        let position = position.checked_sub(1)?;
        Some((position, Arc::clone(&segments[position])))
    }

    fn segment_after(&self, first_seq: u64) -> Option<Arc<Segment>> {
        let segments = self.segments.read().unwrap_or_else(PoisonError::into_inner);
        segments
            .iter()
            .find(|segment| segment.first_seq > first_seq)
            .cloned()
    }
}

fn create_segment_file(dir: &Path, first_seq: u64) -> Result<File, StoreError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(dir.join(segment_name(first_seq)))?;
    sync_directory(dir)?;
    Ok(file)
}

/// The offset of the indexed record at or before `seq` in `segment`, building the index
/// of a segment that has none yet.
fn indexed_offset(segment: &Segment, seq: u64) -> io::Result<(u64, u64)> {
    let mut index = lock(&segment.index);
    if index.is_none() {
        *index = Some(walk(segment, |_| {})?.index);
    }
    let entries = index.as_deref().unwrap_or_default();
    let position = entries.partition_point(|(indexed, _)| *indexed <= seq);
    Ok(match position.checked_sub(1) {
        Some(position) => entries[position],
        None => (segment.first_seq, 0),
    })
}

/// Why the record of `seq` could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("event {seq}: {reason}")]
pub struct RecordError {
    pub seq: u64,
    pub reason: String,
}

impl From<RecordError> for StoreError {
    fn from(error: RecordError) -> Self {
        StoreError::Corrupt(error.to_string())
    }
}

/// An iteration over records by seq (see [`SegmentLog::read`]).
#[allow(
    missing_debug_implementations,
    reason = "holds a read buffer, nothing to show"
)]
pub struct Records<'l> {
    log: &'l SegmentLog,
    segment: Option<Arc<Segment>>,
    window: Window,
    offset: u64,
    next_seq: u64,
    through: u64,
}

impl Records<'_> {
    fn missing(&mut self, reason: &str) -> Option<Result<Record, RecordError>> {
        let seq = self.next_seq;
        self.next_seq = u64::MAX;
        Some(Err(RecordError {
            seq,
            reason: reason.to_string(),
        }))
    }
}

impl Iterator for Records<'_> {
    type Item = Result<Record, RecordError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.next_seq > self.through {
            return None;
        }
        loop {
            let segment = match &self.segment {
                Some(segment) => Arc::clone(segment),
                None => {
                    let Some((_, segment)) = self.log.segment_for(self.next_seq) else {
                        return self.missing("no segment holds it");
                    };
                    let (seq, offset) = match indexed_offset(&segment, self.next_seq) {
                        Ok(found) => found,
                        Err(error) => return self.missing(&error.to_string()),
                    };
                    self.offset = offset;
                    self.window = Window::new();
                    let wanted = self.next_seq;
                    self.next_seq = seq;
                    self.segment = Some(Arc::clone(&segment));
                    // Skip from the indexed record to the wanted one.
                    while self.next_seq < wanted {
                        match self.window.skip(&segment.file, self.offset) {
                            Ok(Some((seq, next))) if seq == self.next_seq => {
                                self.offset = next;
                                self.next_seq += 1;
                            }
                            Ok(_) => {
                                self.next_seq = wanted;
                                return self.missing("the records before it are damaged");
                            }
                            Err(error) => {
                                self.next_seq = wanted;
                                return self.missing(&error.to_string());
                            }
                        }
                    }
                    segment
                }
            };
            match self.window.frame(&segment.file, self.offset) {
                Ok(Frame::Record { record, next, .. }) if record.seq == self.next_seq => {
                    self.offset = next;
                    self.next_seq += 1;
                    return Some(Ok(record));
                }
                Ok(Frame::Record { record, .. }) => {
                    return self.missing(&format!(
                        "a record of seq {} stands in its place",
                        record.seq
                    ));
                }
                Ok(Frame::End) => match self.log.segment_after(segment.first_seq) {
                    Some(next) if next.first_seq == self.next_seq => {
                        self.segment = Some(next);
                        self.offset = 0;
                        self.window = Window::new();
                    }
                    _ => return self.missing("missing"),
                },
                Ok(Frame::Bad(reason)) => return self.missing(&reason),
                Err(error) => return self.missing(&error.to_string()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(seq: u64) -> Vec<u8> {
        format!("envelope {seq} ")
            .repeat(1 + (seq % 7) as usize)
            .into_bytes()
    }

    /// A made-up stream link: every third record continues the stream of two before it.
    fn link(seq: u64) -> u64 {
        if seq.is_multiple_of(3) { seq - 2 } else { 0 }
    }

    fn record(seq: u64) -> Record {
        Record {
            seq,
            prev_in_stream: link(seq),
            payload: payload(seq),
        }
    }

    fn append_range(log: &SegmentLog, seqs: std::ops::RangeInclusive<u64>) {
        let records: Vec<Record> = seqs.map(record).collect();
        log.append(&records).unwrap();
    }

    fn all(log: &SegmentLog, from: u64, through: u64) -> Vec<u64> {
        log.read(from, through)
            .map(|read| {
                let read = read.unwrap();
                assert_eq!(read, record(read.seq));
                read.seq
            })
            .collect()
    }

    fn raw(seq: u64, payload: &[u8]) -> Record<&[u8]> {
        Record {
            seq,
            prev_in_stream: 0,
            payload,
        }
    }

    fn segment_files(dir: &Path) -> Vec<PathBuf> {
        let mut files: Vec<_> = std::fs::read_dir(dir.join("log"))
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .collect();
        files.sort();
        files
    }

    #[test]
    fn reads_back_any_range_after_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let log = SegmentLog::open(dir.path(), 0).unwrap().log;
        append_range(&log, 1..=300);
        append_range(&log, 301..=1000);
        assert_eq!(all(&log, 1, 1000), (1..=1000).collect::<Vec<_>>());
        drop(log);
        let recovered = SegmentLog::open(dir.path(), 1000).unwrap();
        assert!(recovered.unindexed.is_empty());
        let log = recovered.log;
        assert_eq!(all(&log, 257, 270), (257..=270).collect::<Vec<_>>());
        assert_eq!(all(&log, 999, 1000), vec![999, 1000]);
        // Past the end is an error, not a short answer: callers read up to the head.
        assert!(log.read(1000, 1001).last().unwrap().is_err());
        assert_eq!(log.next_seq(), 1001);
    }

    #[test]
    fn a_new_segment_starts_at_a_batch_once_the_last_is_full() {
        let dir = tempfile::tempdir().unwrap();
        let log = SegmentLog::open(dir.path(), 0).unwrap().log;
        let big = vec![7u8; RECORD_BYTES_MAX as usize];
        let records = (SEGMENT_BYTES_MAX / RECORD_BYTES_MAX as u64) + 2;
        for seq in 1..=records {
            log.append(&[raw(seq, &big)]).unwrap();
        }
        assert_eq!(segment_files(dir.path()).len(), 2);
        let seqs: Vec<u64> = log.read(1, records).map(|r| r.unwrap().seq).collect();
        assert_eq!(seqs, (1..=records).collect::<Vec<_>>());
        drop(log);
        let log = SegmentLog::open(dir.path(), records).unwrap().log;
        let seqs: Vec<u64> = log
            .read(records - 2, records)
            .map(|r| r.unwrap().seq)
            .collect();
        assert_eq!(seqs, (records - 2..=records).collect::<Vec<_>>());
    }

    #[test]
    fn records_past_the_acknowledged_end_come_back_to_be_indexed() {
        let dir = tempfile::tempdir().unwrap();
        let log = SegmentLog::open(dir.path(), 0).unwrap().log;
        append_range(&log, 1..=10);
        drop(log);
        let recovered = SegmentLog::open(dir.path(), 7).unwrap();
        let seqs: Vec<u64> = recovered.unindexed.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, [8, 9, 10]);
        assert_eq!(recovered.unindexed[1], record(9));
        assert_eq!(recovered.log.next_seq(), 11);
    }

    #[test]
    fn a_torn_unacknowledged_tail_is_cut_off_and_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let log = SegmentLog::open(dir.path(), 0).unwrap().log;
        append_range(&log, 1..=9);
        append_range(&log, 10..=10);
        drop(log);
        let file = segment_files(dir.path())[0].clone();
        let length = std::fs::metadata(&file).unwrap().len();
        // A crash in the middle of writing seq 10.
        OpenOptions::new()
            .write(true)
            .open(&file)
            .unwrap()
            .set_len(length - 5)
            .unwrap();
        let recovered = SegmentLog::open(dir.path(), 9).unwrap();
        assert!(recovered.unindexed.is_empty());
        assert_eq!(recovered.log.next_seq(), 10);
        append_range(&recovered.log, 10..=12);
        assert_eq!(all(&recovered.log, 1, 12), (1..=12).collect::<Vec<_>>());
    }

    #[test]
    fn whole_records_of_a_batch_without_its_end_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let log = SegmentLog::open(dir.path(), 0).unwrap().log;
        append_range(&log, 1..=5);
        append_range(&log, 6..=8);
        drop(log);
        let file = segment_files(dir.path())[0].clone();
        let bytes = std::fs::read(&file).unwrap();
        // Records 6 and 7 reached the disk whole, 8 (which ends the batch) did not: the
        // batch may hold part of an append, so none of it is kept.
        let end_of_7: usize = (1..=7).map(|seq| HEADER_BYTES + payload(seq).len()).sum();
        std::fs::write(&file, &bytes[..end_of_7]).unwrap();
        let recovered = SegmentLog::open(dir.path(), 5).unwrap();
        assert!(recovered.unindexed.is_empty());
        assert_eq!(recovered.log.next_seq(), 6);
        let end_of_5: usize = (1..=5).map(|seq| HEADER_BYTES + payload(seq).len()).sum();
        assert_eq!(std::fs::metadata(&file).unwrap().len() as usize, end_of_5);
    }

    #[test]
    fn a_damaged_acknowledged_record_is_kept_and_named_on_read() {
        let dir = tempfile::tempdir().unwrap();
        let log = SegmentLog::open(dir.path(), 0).unwrap().log;
        append_range(&log, 1..=10);
        drop(log);
        let file = segment_files(dir.path())[0].clone();
        let mut bytes = std::fs::read(&file).unwrap();
        let length = bytes.len();
        // A byte of seq 10's payload (the last record), which was acknowledged.
        bytes[length - 3] ^= 1;
        std::fs::write(&file, &bytes).unwrap();
        let log = SegmentLog::open(dir.path(), 10).unwrap().log;
        assert_eq!(std::fs::metadata(&file).unwrap().len() as usize, length);
        let results: Vec<_> = log.read(1, 10).collect();
        assert_eq!(results.len(), 10);
        let error = results[9].as_ref().unwrap_err().to_string();
        assert!(error.contains("event 10"), "{error}");
    }

    #[test]
    fn flipping_any_byte_of_the_file_is_named_at_its_record() {
        let dir = tempfile::tempdir().unwrap();
        let log = SegmentLog::open(dir.path(), 0).unwrap().log;
        append_range(&log, 1..=4);
        drop(log);
        let path = segment_files(dir.path())[0].clone();
        let intact = std::fs::read(&path).unwrap();
        let mut starts = vec![0];
        for seq in 1..=4 {
            starts.push(starts[starts.len() - 1] + HEADER_BYTES + payload(seq).len());
        }
        for position in 0..intact.len() {
            let mut bytes = intact.clone();
            bytes[position] ^= 0x10;
            std::fs::write(&path, &bytes).unwrap();
            let seq = starts.partition_point(|start| *start <= position) as u64;
            let log = SegmentLog::open(dir.path(), 4).unwrap().log;
            let first_error = log.read(1, 4).find_map(Result::err);
            assert_eq!(first_error.map(|e| e.seq), Some(seq), "byte {position}");
        }
    }

    #[test]
    fn a_missing_segment_with_acknowledged_events_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let log = SegmentLog::open(dir.path(), 0).unwrap().log;
        append_range(&log, 1..=3);
        drop(log);
        std::fs::remove_file(&segment_files(dir.path())[0]).unwrap();
        assert!(SegmentLog::open(dir.path(), 3).is_err());
    }

    #[test]
    fn an_append_must_continue_the_sequence() {
        let dir = tempfile::tempdir().unwrap();
        let log = SegmentLog::open(dir.path(), 0).unwrap().log;
        append_range(&log, 1..=2);
        assert!(log.append(&[raw(4, b"x")]).is_err());
        assert!(log.append(&[raw(3, b"x"), raw(5, b"y")]).is_err());
        assert_eq!(log.next_seq(), 3);
    }
}
