//! The single writer: takes queued append requests in batches, decides each batch, writes
//! its events to the log files and syncs them, indexes and projects them in one sled
//! transaction, flushes and syncs sled, then answers. Group commit: many concurrent logins
//! share one sync of each.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use sled::Transactional;
use sled::transaction::{
    ConflictableTransactionError, TransactionalTree, UnabortableTransactionError,
};

use super::heads::{self, Head};
use super::segments::{Record, SegmentLog};

use super::envelope::{CONFIG_STREAM, ChainHasher, Envelope, GENESIS_HASH, Unsealed};
use super::org_cache::OrgCache;
use super::projections::{ProjectError, Projection, ProjectionStore, project};
use super::{
    AppendError, AppendRequest, BATCH_REQUESTS_MAX, META_LAST_HASH, META_LAST_RECORDED_AT,
    META_LAST_SEQ, QUEUE_REQUESTS_MAX, StoreError, Trees, corrupt, durability, keys,
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
        Some(bytes) => Ok(u64::from_be_bytes(
            bytes
                .as_ref()
                .try_into()
                .map_err(|_| corrupt("u64 value"))?,
        )),
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
    } else if request.stream.starts_with("user:") {
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
    pub head: (Vec<u8>, Head),
    pub guard: Option<(Vec<u8>, i128)>,
}

/// The log's end after a batch, as `meta` records it.
pub(crate) struct LastEnd {
    pub seq: u64,
    pub hash: [u8; 32],
    pub recorded_at: i128,
}

/// Decides a batch, writes its events to the log files (synced), then indexes and projects
/// them in one sled transaction. Each request gets its envelopes or its refusal.
///
/// The decisions (version checks, replay guards, the chain) read sled outside the
/// transaction: this thread is the only writer, and what the batch itself changes is kept
/// aside, so they see what the transaction will. The files come first so that sled never
/// indexes an event the files lack; events the files hold past sled's last seq (a crash
/// between the two) are indexed when the store is next opened.
fn commit(
    trees: &Trees,
    log: &SegmentLog,
    hasher: &ChainHasher,
    batch: &[Job],
) -> Result<Vec<Reply>, String> {
    let storage = |error: StoreError| error.to_string();
    let (mut last_seq, mut last_hash) = read_head(&trees.meta).map_err(storage)?;
    // recorded_at never goes back, so that a time bound cuts the log at one seq.
    let mut last_recorded_at = read_recorded_at(&trees.meta).map_err(storage)?;
    let mut heads = heads::Pending::new(&trees.heads);
    let mut guards: HashSet<Vec<u8>> = HashSet::new();
    let mut replies = Vec::with_capacity(batch.len());
    let mut accepted = Vec::new();
    let mut records: Vec<Record> = Vec::new();
    for job in batch {
        let request = &job.request;
        let head_key = keys::head(&request.org_id, &request.stream);
        let mut head = heads.get(&head_key).map_err(storage)?;
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
        let recorded_at = request.recorded_at.max(last_recorded_at);
        last_recorded_at = recorded_at;
        let mut envelopes = Vec::with_capacity(request.events.len());
        for (offset, event) in request.events.iter().enumerate() {
            last_seq += 1;
            let unsealed = Unsealed {
                seq: last_seq,
                org_id: request.org_id.clone(),
                stream: request.stream.clone(),
                stream_version: actual + offset as u64 + 1,
                recorded_at,
                cause: request.cause.clone(),
                event: event.clone(),
            };
            let (bytes, envelope) = unsealed.seal(last_hash, hasher);
            last_hash = envelope.hash;
            records.push(Record {
                seq: last_seq,
                prev_in_stream: head.last_seq,
                payload: bytes,
            });
            head = head.after(last_seq);
            envelopes.push(envelope);
        }
        heads.set(head_key.clone(), head);
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
    let end = LastEnd {
        seq: last_seq,
        hash: last_hash,
        recorded_at: last_recorded_at,
    };
    index(trees, &accepted, &end)?;
    let mut indexed = accepted.into_iter().map(|item| item.envelopes);
    for envelopes in replies.iter_mut().filter_map(|reply| reply.as_mut().ok()) {
        *envelopes = indexed.next().unwrap_or_default();
    }
    Ok(replies)
}

pub(crate) fn read_recorded_at(meta: &sled::Tree) -> Result<i128, StoreError> {
    match meta.get(META_LAST_RECORDED_AT)? {
        Some(bytes) => Ok(i128::from_be_bytes(
            bytes
                .as_ref()
                .try_into()
                .map_err(|_| corrupt("last recorded_at"))?,
        )),
        None => Ok(i128::MIN),
    }
}

/// Indexes and projects appended events in one sled transaction, and records the log's
/// new end in `meta`.
pub(crate) fn index(trees: &Trees, accepted: &[Indexed], end: &LastEnd) -> Result<(), String> {
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
            let mut projections = TxProjections {
                users,
                users_by_role,
                acl,
                orgs,
            };
            for item in accepted {
                for envelope in &item.envelopes {
                    project(&mut projections, envelope).map_err(|error| match error {
                        ProjectError::Store(error) => ConflictableTransactionError::from(error),
                        ProjectError::Corrupt(reason) => {
                            ConflictableTransactionError::Abort(reason)
                        }
                    })?;
                }
                let (head_key, head) = &item.head;
                heads.insert(head_key.as_slice(), &head.encode())?;
                if let Some((key, not_on_or_after)) = &item.guard {
                    assertions.insert(key.as_slice(), &not_on_or_after.to_be_bytes())?;
                }
            }
            meta.insert(META_LAST_SEQ, &end.seq.to_be_bytes())?;
            meta.insert(META_LAST_HASH, &end.hash)?;
            meta.insert(META_LAST_RECORDED_AT, &end.recorded_at.to_be_bytes())?;
            Ok(())
        },
    );
    result.map_err(|error: sled::transaction::TransactionError<String>| {
        format!("transaction failed: {error:?}")
    })
}
