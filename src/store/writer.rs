//! The single writer: takes queued append requests in batches, decides each batch, writes
//! its events to the log files and syncs them, indexes and projects them in one sled
//! transaction, flushes and syncs sled, then answers. Group commit: many concurrent logins
//! share one sync of each.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use sled::Transactional;
use sled::transaction::{
    ConflictableTransactionError, TransactionError, TransactionalTree, UnabortableTransactionError,
};

use super::heads::{Head, HeadKey};
use super::segments::{Record, SegmentLog};

use super::envelope::{
    self, CONFIG_STREAM, ChainHasher, Envelope, GENESIS_HASH, Unsealed, user_of_stream,
};
use super::org_cache::OrgCache;
use super::projections::{ProjectError, Projection, ProjectionStore, project};
use super::{
    AppendError, AppendRequest, BATCH_REQUESTS_MAX, META_LAST_HASH, META_LAST_RECORDED_AT,
    META_LAST_SEQ, QUEUE_REQUESTS_MAX, StoreError, Trees, corrupt, durability, keys,
    recovered_guard,
};
use crate::events::Event;

pub(crate) type Reply = Result<Vec<Envelope>, AppendError>;

pub(crate) struct Job {
    pub request: AppendRequest,
    pub reply: tokio::sync::oneshot::Sender<Reply>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("request", &self.request)
            .finish()
    }
}

/// What the writer has done, for `/metrics`. Counters only grow; `queued` is a gauge.
#[derive(Debug, Default)]
pub struct WriterStats {
    pub batches: AtomicU64,
    pub requests: AtomicU64,
    /// Largest batch so far.
    pub batch_requests_max: AtomicU64,
    /// Time spent in flush and sync, nanoseconds in total.
    pub durable_nanos: AtomicU64,
    /// Requests submitted and not yet taken by the writer.
    pub queued: AtomicU64,
    /// Set when a flush or sync failed: from then on every append is refused (the files'
    /// state is unknown until the store is opened again, which recovers a consistent log).
    pub failed: AtomicBool,
}

/// What the writer writes to: the log files, then sled.
pub(crate) struct Storage {
    pub db: sled::Db,
    pub trees: Trees,
    pub log: Arc<SegmentLog>,
}

pub(crate) fn spawn(
    storage: Storage,
    hasher: ChainHasher,
    path: PathBuf,
    stats: Arc<WriterStats>,
    orgs: Arc<OrgCache>,
) -> std::io::Result<(SyncSender<Job>, std::thread::JoinHandle<()>)> {
    let (sender, receiver) = sync_channel(QUEUE_REQUESTS_MAX);
    let handle = std::thread::Builder::new()
        .name("jitledger-writer".into())
        .spawn(move || {
            run(
                &storage,
                &hasher,
                durability::Syncer::new(&path),
                &receiver,
                &stats,
                &orgs,
            )
        })?;
    Ok((sender, handle))
}

fn run(
    storage: &Storage,
    hasher: &ChainHasher,
    mut syncer: durability::Syncer,
    receiver: &Receiver<Job>,
    stats: &WriterStats,
    orgs: &OrgCache,
) {
    // After a failed flush or sync the state of the files is unknown (an fsync error can
    // drop dirty pages); every later append is refused rather than acknowledged on top.
    let mut failed: Option<String> = None;
    while let Ok(first) = receiver.recv() {
        let mut batch = vec![first];
        while batch.len() < BATCH_REQUESTS_MAX {
            match receiver.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let taken = batch.len() as u64;
        stats.queued.fetch_sub(
            taken.min(stats.queued.load(Ordering::Relaxed)),
            Ordering::Relaxed,
        );
        stats.batches.fetch_add(1, Ordering::Relaxed);
        stats.requests.fetch_add(taken, Ordering::Relaxed);
        stats.batch_requests_max.fetch_max(taken, Ordering::Relaxed);
        let replies: Vec<Reply> = match &failed {
            Some(reason) => batch
                .iter()
                .map(|_| Err(AppendError::Storage(reason.clone())))
                .collect(),
            None => match commit(&storage.trees, &storage.log, hasher, &batch).and_then(|replies| {
                // Readers see the committed configuration from here on, durable or not
                // (as they see every committed value); the cache must not hide it.
                for (job, reply) in batch.iter().zip(&replies) {
                    if reply.is_ok() && job.request.stream == CONFIG_STREAM {
                        orgs.invalidate(&job.request.org_id);
                    }
                }
                let started = std::time::Instant::now();
                storage.db.flush().map_err(|e| e.to_string())?;
                syncer.sync().map_err(|e| e.to_string())?;
                let nanos = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
                stats.durable_nanos.fetch_add(nanos, Ordering::Relaxed);
                Ok(replies)
            }) {
                Ok(replies) => replies,
                Err(reason) => {
                    tracing::error!(%reason, "append batch failed; refusing further appends");
                    stats.failed.store(true, Ordering::Relaxed);
                    failed = Some(reason.clone());
                    batch
                        .iter()
                        .map(|_| Err(AppendError::Storage(reason.clone())))
                        .collect()
                }
            },
        };
        for (job, reply) in batch.into_iter().zip(replies) {
            // A caller that stopped waiting is no reason to stop the writer.
            let _ = job.reply.send(reply);
        }
    }
}

pub(crate) fn read_u64(tree: &sled::Tree, key: &[u8]) -> Result<u64, StoreError> {
    match tree.get(key)? {
        Some(bytes) => decode_u64(&bytes),
        None => Ok(0),
    }
}

pub(crate) fn read_head(meta: &sled::Tree) -> Result<(u64, [u8; 32]), StoreError> {
    let seq = read_u64(meta, META_LAST_SEQ)?;
    let hash = match meta.get(META_LAST_HASH)? {
        Some(bytes) => bytes
            .as_ref()
            .try_into()
            .map_err(|_| corrupt("last hash"))?,
        None => GENESIS_HASH,
    };
    Ok((seq, hash))
}

/// The projection trees of a transaction.
struct TxProjections<'t> {
    users: &'t TransactionalTree,
    users_by_role: &'t TransactionalTree,
    acl: &'t TransactionalTree,
    orgs: &'t TransactionalTree,
}

impl TxProjections<'_> {
    fn tree(&self, projection: Projection) -> &TransactionalTree {
        match projection {
            Projection::Users => self.users,
            Projection::UsersByRole => self.users_by_role,
            Projection::Acl => self.acl,
            Projection::Orgs => self.orgs,
        }
    }
}

impl ProjectionStore for TxProjections<'_> {
    type Error = UnabortableTransactionError;
    fn get(&self, projection: Projection, key: &[u8]) -> Result<Option<Vec<u8>>, Self::Error> {
        Ok(self.tree(projection).get(key)?.map(|value| value.to_vec()))
    }
    fn insert(
        &mut self,
        projection: Projection,
        key: Vec<u8>,
        value: Vec<u8>,
    ) -> Result<(), Self::Error> {
        self.tree(projection).insert(key, value)?;
        Ok(())
    }
    fn remove(&mut self, projection: Projection, key: &[u8]) -> Result<(), Self::Error> {
        self.tree(projection).remove(key)?;
        Ok(())
    }
}

/// Whether `events` may start or continue a stream at `version`: a user stream starts with
/// `UserProvisioned` and holds user events only; a configuration stream starts with
/// `OrgCreated` and holds configuration events only.
fn check_shape(request: &AppendRequest, version: u64) -> Result<(), AppendError> {
    let is_user_event = |event: &Event| {
        matches!(
            event,
            Event::UserProvisioned(_)
                | Event::ProfileUpdated(_)
                | Event::RoleChanged(_)
                | Event::AclReplaced(_)
                | Event::LoginRecorded(_)
        )
    };
    let (first_ok, all_ok) = if request.stream == CONFIG_STREAM {
        (
            version > 0 || matches!(request.events.first(), Some(Event::OrgCreated(_))),
            request.events.iter().all(|e| !is_user_event(e)),
        )
    } else if user_of_stream(&request.stream).is_some() {
        (
            version > 0 || matches!(request.events.first(), Some(Event::UserProvisioned(_))),
            request.events.iter().all(is_user_event),
        )
    } else {
        (false, false)
    };
    if first_ok && all_ok {
        Ok(())
    } else {
        Err(AppendError::Invalid(format!(
            "events do not fit stream {:?} at version {version}",
            request.stream
        )))
    }
}

/// What one accepted append writes to sled besides its events: the stream's head and the
/// replay guard, and (through `project`) the projections.
pub(crate) struct Indexed {
    pub envelopes: Vec<Envelope>,
    pub head: (HeadKey, Head),
    pub guard: Option<(Vec<u8>, i128)>,
}

/// The log's end after a batch, as `meta` records it.
#[derive(Clone, Copy)]
pub(crate) struct LastEnd {
    pub seq: u64,
    pub hash: [u8; 32],
    pub recorded_at: i128,
}

type TxError = ConflictableTransactionError<String>;

fn tx_corrupt(error: StoreError) -> TxError {
    ConflictableTransactionError::Abort(error.to_string())
}

/// The sled trees of the append transaction, by name.
struct Tx<'t> {
    heads: &'t TransactionalTree,
    assertions: &'t TransactionalTree,
    meta: &'t TransactionalTree,
    projections: TxProjections<'t>,
}

impl Tx<'_> {
    fn head(&self, key: &HeadKey) -> Result<Head, TxError> {
        let stored = match key {
            HeadKey::User(key) => self.projections.users.get(key)?,
            HeadKey::Stream(key) => self.heads.get(key)?,
        };
        key.decode(stored.as_deref()).map_err(tx_corrupt)
    }

    /// Projects an append's envelopes and records its stream's head (a user's is in the
    /// user, which `project` writes) and replay guard. Later reads in the same transaction
    /// see all of it.
    fn put(&mut self, item: &Indexed) -> Result<(), TxError> {
        for envelope in &item.envelopes {
            project(&mut self.projections, envelope).map_err(|error| match error {
                ProjectError::Store(error) => ConflictableTransactionError::from(error),
                ProjectError::Corrupt(reason) => ConflictableTransactionError::Abort(reason),
            })?;
        }
        if let (HeadKey::Stream(key), head) = &item.head {
            self.heads.insert(key.as_slice(), &head.encode())?;
        }
        if let Some((key, not_on_or_after)) = &item.guard {
            self.assertions
                .insert(key.as_slice(), &not_on_or_after.to_be_bytes())?;
        }
        Ok(())
    }

    fn set_end(&self, end: &LastEnd) -> Result<(), TxError> {
        self.meta.insert(META_LAST_SEQ, &end.seq.to_be_bytes())?;
        self.meta.insert(META_LAST_HASH, &end.hash)?;
        self.meta
            .insert(META_LAST_RECORDED_AT, &end.recorded_at.to_be_bytes())?;
        Ok(())
    }
}

/// Runs `body` in one sled transaction over every tree the writer changes.
fn transaction<T>(
    trees: &Trees,
    body: impl Fn(&mut Tx) -> Result<T, TxError>,
) -> Result<T, String> {
    let all = (
        &trees.heads,
        &trees.assertions,
        &trees.meta,
        &trees.users,
        &trees.users_by_role,
        &trees.acl,
        &trees.orgs,
    );
    let result = all.transaction(
        |(heads, assertions, meta, users, users_by_role, acl, orgs)| {
            body(&mut Tx {
                heads,
                assertions,
                meta,
                projections: TxProjections {
                    users,
                    users_by_role,
                    acl,
                    orgs,
                },
            })
        },
    );
    result.map_err(|error| match error {
        TransactionError::Abort(reason) => reason,
        TransactionError::Storage(error) => format!("sled: {error}"),
    })
}

/// Decides a batch, writes its events to the log files (synced), then indexes and projects
/// them in one sled transaction. Each request gets its envelopes or its refusal.
///
/// The decisions read sled outside the transaction: this thread is the only writer, and
/// what the batch itself changes is kept aside, so they see what the transaction will. That
/// keeps the files' write and sync out of the transaction, which holds sled's global lock:
/// every sled read in the process waits while it runs. The files come first so that sled
/// never indexes an event the files lack; events the files hold past sled's last seq (a
/// crash between the two) are indexed when the store is next opened.
fn commit(
    trees: &Trees,
    log: &SegmentLog,
    hasher: &ChainHasher,
    batch: &[Job],
) -> Result<Vec<Reply>, String> {
    let storage = |error: StoreError| error.to_string();
    let mut end = read_end(&trees.meta).map_err(storage)?;
    let mut heads: HashMap<HeadKey, Head> = HashMap::new();
    let mut guards: HashSet<Vec<u8>> = HashSet::new();
    let mut replies = Vec::with_capacity(batch.len());
    let mut accepted = Vec::new();
    let mut records: Vec<Record> = Vec::new();
    for job in batch {
        let request = &job.request;
        let head_key = HeadKey::of(&request.org_id, &request.stream);
        let mut head = match heads.get(&head_key) {
            Some(head) => *head,
            None => trees.head(&head_key).map_err(storage)?,
        };
        let actual = head.version;
        if actual != request.expected_version {
            replies.push(Err(AppendError::Conflict {
                expected: request.expected_version,
                actual,
            }));
            continue;
        }
        if let Err(refusal) = check_shape(request, actual) {
            replies.push(Err(refusal));
            continue;
        }
        let guard = match &request.assertion {
            Some(guard) => {
                let key = keys::assertion(&request.org_id, &guard.assertion_id);
                let used = guards.contains(&key)
                    || trees
                        .assertions
                        .contains_key(&key)
                        .map_err(|e| e.to_string())?;
                if used {
                    replies.push(Err(AppendError::ReplayedAssertion {
                        assertion_id: guard.assertion_id.clone(),
                    }));
                    continue;
                }
                guards.insert(key.clone());
                Some((key, guard.not_on_or_after))
            }
            None => None,
        };
        // recorded_at never goes back, so that a time bound cuts the log at one seq.
        let recorded_at = request.recorded_at.max(end.recorded_at);
        end.recorded_at = recorded_at;
        let mut envelopes = Vec::with_capacity(request.events.len());
        for (offset, event) in request.events.iter().enumerate() {
            end.seq += 1;
            let unsealed = Unsealed {
                seq: end.seq,
                org_id: request.org_id.clone(),
                stream: request.stream.clone(),
                stream_version: actual + offset as u64 + 1,
                recorded_at,
                cause: request.cause.clone(),
                event: event.clone(),
            };
            let (bytes, envelope) = unsealed.seal(end.hash, hasher);
            end.hash = envelope.hash;
            records.push(Record {
                seq: end.seq,
                prev_in_stream: head.last_seq,
                payload: bytes,
            });
            head = head.after(end.seq);
            envelopes.push(envelope);
        }
        heads.insert(head_key.clone(), head);
        // Filled with the envelopes once they are indexed.
        replies.push(Ok(Vec::new()));
        accepted.push(Indexed {
            envelopes,
            head: (head_key, head),
            guard,
        });
    }
    if accepted.is_empty() {
        return Ok(replies);
    }
    log.append(&records).map_err(storage)?;
    transaction(trees, |tx| {
        for item in &accepted {
            tx.put(item)?;
        }
        tx.set_end(&end)
    })?;
    let mut indexed = accepted.into_iter().map(|item| item.envelopes);
    for envelopes in replies.iter_mut().filter_map(|reply| reply.as_mut().ok()) {
        *envelopes = indexed.next().unwrap_or_default();
    }
    Ok(replies)
}

/// The log's end as `meta` holds it (genesis for an empty log).
fn read_end(meta: &sled::Tree) -> Result<LastEnd, StoreError> {
    let (seq, hash) = read_head(meta)?;
    Ok(LastEnd {
        seq,
        hash,
        recorded_at: read_recorded_at(meta)?,
    })
}

pub(crate) fn read_recorded_at(meta: &sled::Tree) -> Result<i128, StoreError> {
    match meta.get(META_LAST_RECORDED_AT)? {
        Some(bytes) => decode_i128(&bytes),
        None => Ok(i128::MIN),
    }
}

fn decode_u64(bytes: &[u8]) -> Result<u64, StoreError> {
    Ok(u64::from_be_bytes(
        bytes.try_into().map_err(|_| corrupt("u64 value"))?,
    ))
}

fn decode_i128(bytes: &[u8]) -> Result<i128, StoreError> {
    Ok(i128::from_be_bytes(
        bytes.try_into().map_err(|_| corrupt("last recorded_at"))?,
    ))
}

/// Indexes and projects events that are in the log files past sled's last seq, in one sled
/// transaction: those a crash left there (synced, while sled's transaction for them did not
/// commit; at most one batch), and those an import just wrote. They must continue the chain
/// from sled's last seq, and each must link to its stream's last event.
pub(crate) fn index_logged(
    trees: &Trees,
    hasher: &ChainHasher,
    records: &[Record],
) -> Result<(), StoreError> {
    // Nothing else writes meanwhile: the store is being opened, or imported into.
    let start = read_end(&trees.meta)?;
    transaction(trees, |tx| {
        let mut end = start;
        for record in records {
            let envelope = envelope::decode(&record.payload)
                .map_err(|error| ConflictableTransactionError::Abort(error.to_string()))?;
            let refused = |what: &str| {
                ConflictableTransactionError::Abort(format!(
                    "event {} past the indexed end does not continue {what}",
                    record.seq
                ))
            };
            if record.seq != end.seq + 1
                || envelope.seq != record.seq
                || envelope.prev_hash != end.hash
                || !envelope::check_hash(&record.payload, &end.hash, hasher)
            {
                return Err(refused("the chain"));
            }
            let head_key = HeadKey::of(&envelope.org_id, &envelope.stream);
            let head = tx.head(&head_key)?;
            let head = match head.follow(record.seq, envelope.stream_version) {
                Ok(next) if record.prev_in_stream == head.last_seq => next,
                _ => return Err(refused("its stream")),
            };
            end = LastEnd {
                seq: envelope.seq,
                hash: envelope.hash,
                recorded_at: envelope.recorded_at,
            };
            tx.put(&Indexed {
                head: (head_key, head),
                guard: recovered_guard(&envelope),
                envelopes: vec![envelope],
            })?;
        }
        tx.set_end(&end)
    })
    .map_err(StoreError::Corrupt)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Store, StoreConfig, conformance};

    fn job(request: AppendRequest) -> Job {
        let (reply, _) = tokio::sync::oneshot::channel();
        Job { request, reply }
    }

    /// The requests of one batch are decided in order, each on what the earlier ones wrote:
    /// a second start of a stream is a conflict, a second use of an assertion is a replay,
    /// and a stream goes on from the version an earlier request left it at.
    #[test]
    fn a_batch_is_decided_on_what_its_earlier_requests_wrote() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&StoreConfig::new(dir.path())).unwrap();
        let org = store.append_blocking(conformance::org_request()).unwrap();
        let org_end = org.last().unwrap().seq;
        store.stop_writer();
        let batch = [
            job(conformance::login("alice", 0, 1)),
            job(conformance::login("alice", 0, 2)),
            job(conformance::login("bob", 0, 1)),
            job(conformance::login("alice", 2, 3)),
        ];
        let replies = commit(&store.trees, &store.log, &store.hasher, &batch).unwrap();
        let versions = |reply: &Reply| {
            reply
                .as_ref()
                .map(|envelopes| envelopes.iter().map(|e| e.stream_version).collect())
                .map_err(Clone::clone)
        };
        assert_eq!(versions(&replies[0]), Ok(vec![1, 2]));
        assert_eq!(
            versions(&replies[1]),
            Err(AppendError::Conflict {
                expected: 0,
                actual: 2
            })
        );
        assert_eq!(
            versions(&replies[2]),
            Err(AppendError::ReplayedAssertion {
                assertion_id: "_a1".into()
            })
        );
        assert_eq!(versions(&replies[3]), Ok(vec![3]));
        let seqs: Vec<u64> = [&replies[0], &replies[3]]
            .into_iter()
            .flat_map(|reply| reply.as_ref().unwrap().iter().map(|e| e.seq))
            .collect();
        assert_eq!(seqs, vec![org_end + 1, org_end + 2, org_end + 3]);
    }
}
