//! The event log: envelopes in append-only segment files ([`segments`]), linked back along
//! their streams; everything looked up by key in sled (stream heads, replay guards,
//! projections). One writer thread takes batches of requests, writes their events to the
//! segment files and syncs them, indexes and projects them in one sled transaction, flushes
//! and syncs sled, and only then answers every request of the batch.
//!
//! What an acknowledged append promises: its events, the chain through them and the
//! projections they change are on the device (`fdatasync` of the segment file; sled's flush,
//! then `fdatasync` of the files it writes), so they survive a process crash and a power
//! loss of a device that honours flushes.

pub mod conformance;
pub mod durability;
pub mod envelope;
pub mod export;
mod heads;
pub mod history;
pub mod keys;
mod migrate;
mod org_cache;
pub mod projections;
mod scan;
pub mod segments;
pub mod verify;
mod writer;

pub use writer::WriterStats;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{SyncSender, TrySendError};

use crate::events::Event;
use crate::events::codec::CodecError;
use crate::provisioning::config::OrgConfig;
use crate::provisioning::user::UserState;

pub use envelope::{CONFIG_STREAM, Cause, ChainHasher, Envelope, user_stream};
use projections::Projection;

/// sled's page cache. Its 1 GiB default is sized for a database that is mostly reads; the
/// log is mostly appends and the projections are small, so 64 MiB keeps RSS predictable.
pub const CACHE_BYTES: u64 = 64 * 1024 * 1024;
/// Requests one batch takes at most: bounds the work between two flushes.
pub const BATCH_REQUESTS_MAX: usize = 512;
/// Requests waiting for the writer. A full queue is back-pressure: callers get `Busy`.
pub const QUEUE_REQUESTS_MAX: usize = 4096;
/// Events one append may carry (a login writes at most five).
pub const APPEND_EVENTS_MAX: usize = 64;

/// Settings of a store.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub path: PathBuf,
    /// With a key, the chain is HMAC-SHA-256 under it instead of SHA-256.
    pub chain_key: Option<Vec<u8>>,
}

impl StoreConfig {
    pub fn new(path: impl Into<PathBuf>) -> StoreConfig {
        StoreConfig {
            path: path.into(),
            chain_key: None,
        }
    }
}

/// The replay guard an append carries: the assertion may be appended once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssertionGuard {
    pub assertion_id: String,
    /// Unix nanoseconds after which the assertion is refused anyway and may be forgotten.
    pub not_on_or_after: i128,
}

/// One atomic append to one stream.
#[derive(Debug, Clone)]
pub struct AppendRequest {
    pub org_id: String,
    pub stream: String,
    /// The stream version the caller decided on (0 for a new stream).
    pub expected_version: u64,
    pub events: Vec<Event>,
    pub cause: Cause,
    pub assertion: Option<AssertionGuard>,
    /// Unix nanoseconds, read by the caller.
    pub recorded_at: i128,
}

/// Why an append was not acknowledged. For every variant but `Storage`, nothing of it was
/// written. After `Storage` (a failed flush or sync) the outcome is unknown until the store
/// is opened again: the batch may or may not be in the recovered log, whole or not at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AppendError {
    /// The stream moved on since the caller read it: decide again on fresh state.
    #[error("stream is at version {actual}, not {expected}")]
    Conflict { expected: u64, actual: u64 },
    #[error("assertion {assertion_id} was already used")]
    ReplayedAssertion { assertion_id: String },
    #[error("the write queue is full")]
    Busy,
    #[error("invalid append: {0}")]
    Invalid(String),
    /// The flush or sync of the batch failed, or an earlier one did: the writer acknowledges
    /// nothing more (see `WriterStats::failed`).
    #[error("storage failure: {0}")]
    Storage(String),
}

/// Why the store could not be opened or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("sled: {0}")]
    Sled(#[from] sled::Error),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("undecodable record: {0}")]
    Codec(#[from] CodecError),
    #[error("corrupt store: {0}")]
    Corrupt(String),
}

/// The event log as any engine must provide it. `Store` (sled) is the embedded one; the
/// conformance suite in [`conformance`] is written against this trait so that another engine
/// (PostgreSQL, NATS JetStream) is held to the same behaviour.
pub trait EventLog: Send + Sync {
    /// Appends atomically and returns when durable.
    fn append(&self, request: AppendRequest) -> Result<Vec<Envelope>, AppendError>;
    fn events_after(&self, after: u64, limit: usize) -> Result<Vec<Envelope>, StoreError>;
    fn stream(
        &self,
        org_id: &str,
        stream: &str,
        up_to_seq: Option<u64>,
    ) -> Result<Vec<Envelope>, StoreError>;
    fn stream_version(&self, org_id: &str, stream: &str) -> Result<u64, StoreError>;
    fn head(&self) -> Result<(u64, [u8; 32]), StoreError>;
}

/// Reads of the projections, as any engine must provide them.
pub trait ProjectionReads: Send + Sync {
    fn user(&self, org_id: &str, user_id: &str) -> Result<Option<UserState>, StoreError>;
    fn users_with_role(&self, org_id: &str, role: &str) -> Result<Vec<String>, StoreError>;
    fn grants_on(
        &self,
        org_id: &str,
        on_type: &str,
        on: &str,
    ) -> Result<Vec<(String, String)>, StoreError>;
    fn org(&self, org_id: &str) -> Result<Option<Arc<OrgConfig>>, StoreError>;
}

impl EventLog for Store {
    fn append(&self, request: AppendRequest) -> Result<Vec<Envelope>, AppendError> {
        self.append_blocking(request)
    }
    fn events_after(&self, after: u64, limit: usize) -> Result<Vec<Envelope>, StoreError> {
        Store::events_after(self, after, limit)
    }
    fn stream(
        &self,
        org_id: &str,
        stream: &str,
        up_to_seq: Option<u64>,
    ) -> Result<Vec<Envelope>, StoreError> {
        Store::stream(self, org_id, stream, up_to_seq)
    }
    fn stream_version(&self, org_id: &str, stream: &str) -> Result<u64, StoreError> {
        Store::stream_version(self, org_id, stream)
    }
    fn head(&self) -> Result<(u64, [u8; 32]), StoreError> {
        Store::head(self)
    }
}

impl ProjectionReads for Store {
    fn user(&self, org_id: &str, user_id: &str) -> Result<Option<UserState>, StoreError> {
        Store::user(self, org_id, user_id)
    }
    fn users_with_role(&self, org_id: &str, role: &str) -> Result<Vec<String>, StoreError> {
        Store::users_with_role(self, org_id, role)
    }
    fn grants_on(
        &self,
        org_id: &str,
        on_type: &str,
        on: &str,
    ) -> Result<Vec<(String, String)>, StoreError> {
        Store::grants_on(self, org_id, on_type, on)
    }
    fn org(&self, org_id: &str) -> Result<Option<Arc<OrgConfig>>, StoreError> {
        Store::org(self, org_id)
    }
}

/// The trees of the store.
#[derive(Debug, Clone)]
pub(crate) struct Trees {
    /// Heads of the streams that are not users' (a user's is in `users`: see `heads`).
    pub heads: sled::Tree,
    pub assertions: sled::Tree,
    pub meta: sled::Tree,
    pub users: sled::Tree,
    pub users_by_role: sled::Tree,
    pub acl: sled::Tree,
    pub orgs: sled::Tree,
}

impl Trees {
    fn open(db: &sled::Db) -> Result<Trees, sled::Error> {
        Ok(Trees {
            heads: db.open_tree("heads")?,
            assertions: db.open_tree("assertions")?,
            meta: db.open_tree("meta")?,
            users: db.open_tree(Projection::Users.tree_name())?,
            users_by_role: db.open_tree(Projection::UsersByRole.tree_name())?,
            acl: db.open_tree(Projection::Acl.tree_name())?,
            orgs: db.open_tree(Projection::Orgs.tree_name())?,
        })
    }

    /// A stream's head, wherever it is kept (see `heads`).
    pub fn head(&self, key: &heads::HeadKey) -> Result<heads::Head, StoreError> {
        let stored = match key {
            heads::HeadKey::User(key) => self.users.get(key)?,
            heads::HeadKey::Stream(key) => self.heads.get(key)?,
        };
        key.decode(stored.as_deref())
    }

    pub fn projection(&self, projection: Projection) -> &sled::Tree {
        match projection {
            Projection::Users => &self.users,
            Projection::UsersByRole => &self.users_by_role,
            Projection::Acl => &self.acl,
            Projection::Orgs => &self.orgs,
        }
    }
}

/// How long a replay guard restored from the log lasts: the assertion's own NotOnOrAfter
/// is not in its events, and no IdP's assertion is valid for a day.
const RECOVERED_GUARD_NANOS: i128 = 24 * 3600 * 1_000_000_000;

/// The replay guard of a login's event, restored from the log (import, crash recovery).
pub(crate) fn recovered_guard(envelope: &Envelope) -> Option<(Vec<u8>, i128)> {
    match &envelope.cause {
        Cause::Login { assertion_id, .. } => Some((
            keys::assertion(&envelope.org_id, assertion_id),
            envelope.recorded_at.saturating_add(RECOVERED_GUARD_NANOS),
        )),
        _ => None,
    }
}

/// How many guards one pruning call reads at most, per guard it may forget: bounds a call
/// that meets mostly live guards.
pub const PRUNE_READ_PER_FORGOTTEN: usize = 8;

/// What one call of [`Store::prune_assertions`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrunedGuards {
    pub forgotten: usize,
    /// The key to go on after; `None` once the last guard was read.
    pub resume_after: Option<Vec<u8>>,
}

/// What a stream read reserves before it knows how many events it keeps.
const STREAM_CAPACITY_MAX: u64 = 1024;

/// `meta` keys.
pub(crate) const META_LAST_SEQ: &[u8] = b"last_seq";
pub(crate) const META_LAST_HASH: &[u8] = b"last_hash";
pub(crate) const META_LAST_RECORDED_AT: &[u8] = b"last_recorded_at";
/// Present while a rebuild runs: the projections are incomplete until it is gone.
pub(crate) const META_REBUILDING: &[u8] = b"rebuilding";

/// The event log and its projections.
#[derive(Debug)]
pub struct Store {
    db: sled::Db,
    trees: Trees,
    log: Arc<segments::SegmentLog>,
    hasher: ChainHasher,
    sender: Option<SyncSender<writer::Job>>,
    writer: Option<std::thread::JoinHandle<()>>,
    path: PathBuf,
    stats: Arc<WriterStats>,
    orgs: Arc<org_cache::OrgCache>,
}

impl Store {
    /// Opens (or creates) the store. Opening reads the head from `meta`; it does not replay
    /// the log.
    pub fn open(config: &StoreConfig) -> Result<Store, StoreError> {
        std::fs::create_dir_all(&config.path)?;
        let sled_config = sled::Config::new()
            .path(&config.path)
            .cache_capacity(CACHE_BYTES)
            // Every batch flushes explicitly; a timer flush would only add writes.
            .flush_every_ms(None);
        let db = open_with_lock_retry(&sled_config)?;
        let trees = Trees::open(&db)?;
        let hasher = match &config.chain_key {
            Some(key) => ChainHasher::keyed(key),
            None => ChainHasher::Sha256,
        };
        migrate::to_current_layout(&db, &config.path)?;
        let (acknowledged, _) = writer::read_head(&trees.meta)?;
        let recovered = segments::SegmentLog::open(&config.path, acknowledged)?;
        if !recovered.unindexed.is_empty() {
            writer::index_logged(&trees, &hasher, &recovered.unindexed)?;
            db.flush()?;
            durability::Syncer::new(&config.path).sync()?;
        }
        durability::sync_directory(&config.path)?;
        let mut store = Store {
            db,
            trees,
            log: Arc::new(recovered.log),
            hasher,
            sender: None,
            writer: None,
            path: config.path.clone(),
            stats: Arc::new(WriterStats::default()),
            orgs: Arc::default(),
        };
        if store.trees.meta.contains_key(META_REBUILDING)? {
            // The last rebuild did not finish: the projections are not the log's.
            store.rebuild(|_, _| {})?;
        } else {
            store.start_writer()?;
        }
        Ok(store)
    }

    fn start_writer(&mut self) -> Result<(), StoreError> {
        let storage = writer::Storage {
            db: self.db.clone(),
            trees: self.trees.clone(),
            log: Arc::clone(&self.log),
        };
        let (sender, handle) = writer::spawn(
            storage,
            self.hasher.clone(),
            self.path.clone(),
            Arc::clone(&self.stats),
            Arc::clone(&self.orgs),
        )?;
        self.sender = Some(sender);
        self.writer = Some(handle);
        Ok(())
    }

    /// The writer's counters (batches, requests, durable time, queue depth).
    pub fn stats(&self) -> &WriterStats {
        &self.stats
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn hasher(&self) -> &ChainHasher {
        &self.hasher
    }

    fn submit(
        &self,
        request: AppendRequest,
    ) -> Result<tokio::sync::oneshot::Receiver<writer::Reply>, AppendError> {
        if request.events.is_empty() || request.events.len() > APPEND_EVENTS_MAX {
            return Err(AppendError::Invalid(format!(
                "{} events (1 to {APPEND_EVENTS_MAX})",
                request.events.len()
            )));
        }
        let (reply, receiver) = tokio::sync::oneshot::channel();
        let sender = self
            .sender
            .as_ref()
            .ok_or_else(|| AppendError::Storage("store closed".into()))?;
        self.stats
            .queued
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        match sender.try_send(writer::Job { request, reply }) {
            Ok(()) => Ok(receiver),
            Err(TrySendError::Full(_)) => {
                self.stats
                    .queued
                    .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
                Err(AppendError::Busy)
            }
            Err(TrySendError::Disconnected(_)) => {
                Err(AppendError::Storage("writer stopped".into()))
            }
        }
    }

    /// Appends and waits until the events are durable.
    pub async fn append(&self, request: AppendRequest) -> Result<Vec<Envelope>, AppendError> {
        let receiver = self.submit(request)?;
        receiver
            .await
            .map_err(|_| AppendError::Storage("writer stopped".into()))?
    }

    /// [`Store::append`] for threads outside an async runtime.
    pub fn append_blocking(&self, request: AppendRequest) -> Result<Vec<Envelope>, AppendError> {
        let receiver = self.submit(request)?;
        receiver
            .blocking_recv()
            .map_err(|_| AppendError::Storage("writer stopped".into()))?
    }

    /// The last sequence number and hash (0 and the genesis hash when empty).
    pub fn head(&self) -> Result<(u64, [u8; 32]), StoreError> {
        writer::read_head(&self.trees.meta)
    }

    /// Envelopes with `seq > after`, in order, at most `limit`.
    pub fn events_after(&self, after: u64, limit: usize) -> Result<Vec<Envelope>, StoreError> {
        let (head, _) = self.head()?;
        let through = head.min(after.saturating_add(limit as u64));
        self.log
            .read(after.saturating_add(1), through)
            .map(|record| Ok(envelope::decode(&record?.payload)?))
            .collect()
    }

    /// The stored bytes of every event from `from` through `through`, in order.
    pub(crate) fn records(&self, from: u64, through: u64) -> segments::Records<'_> {
        self.log.read(from, through)
    }

    /// The envelopes of one stream, in order; `up_to_seq` cuts it for history and as-of.
    /// Read from the stream's head back along the records' links.
    pub fn stream(
        &self,
        org_id: &str,
        stream: &str,
        up_to_seq: Option<u64>,
    ) -> Result<Vec<Envelope>, StoreError> {
        let head = self.stream_head(org_id, stream)?;
        let mut envelopes = Vec::with_capacity(head.version.min(STREAM_CAPACITY_MAX) as usize);
        let (mut seq, mut version) = (head.last_seq, head.version);
        while seq != 0 {
            let record = self
                .log
                .read(seq, seq)
                .next()
                .ok_or_else(|| corrupt("indexed event missing"))??;
            let envelope = envelope::decode(&record.payload)?;
            // Links only point back, so a damaged one cannot send the walk round in a loop.
            if envelope.org_id != org_id
                || envelope.stream != stream
                || envelope.stream_version != version
                || record.prev_in_stream >= seq
            {
                return Err(corrupt(&format!("the stream link of event {seq}")));
            }
            (seq, version) = (record.prev_in_stream, version.saturating_sub(1));
            if up_to_seq.is_none_or(|last| envelope.seq <= last) {
                envelopes.push(envelope);
            }
        }
        if version != 0 {
            return Err(corrupt(&format!(
                "stream {stream} of org {org_id} ends {version} events early"
            )));
        }
        envelopes.reverse();
        Ok(envelopes)
    }

    /// The current version of a stream (0 when it has no event).
    pub fn stream_version(&self, org_id: &str, stream: &str) -> Result<u64, StoreError> {
        Ok(self.stream_head(org_id, stream)?.version)
    }

    /// A stream's head, wherever it is kept (see `heads`).
    fn stream_head(&self, org_id: &str, stream: &str) -> Result<heads::Head, StoreError> {
        self.trees.head(&heads::HeadKey::of(org_id, stream))
    }

    /// The user as projected now.
    pub fn user(&self, org_id: &str, user_id: &str) -> Result<Option<UserState>, StoreError> {
        match self.trees.users.get(keys::user(org_id, user_id))? {
            Some(bytes) => Ok(Some(
                bincode::deserialize(&bytes).map_err(|e| corrupt(&e.to_string()))?,
            )),
            None => Ok(None),
        }
    }

    /// Users of an org in user ID order, after `cursor`, at most `limit`.
    pub fn users(
        &self,
        org_id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<UserState>, StoreError> {
        let prefix = keys::org_prefix(org_id);
        let start = match after {
            Some(user_id) => {
                let mut key = keys::user(org_id, user_id);
                key.push(0);
                key
            }
            None => prefix.clone(),
        };
        let mut users = Vec::new();
        for entry in self.trees.users.range(start..).take(limit) {
            let (key, bytes) = entry?;
            if !key.starts_with(&prefix) {
                break;
            }
            users.push(bincode::deserialize(&bytes).map_err(|e| corrupt(&e.to_string()))?);
        }
        Ok(users)
    }

    /// User IDs holding `role` in an org.
    pub fn users_with_role(&self, org_id: &str, role: &str) -> Result<Vec<String>, StoreError> {
        let prefix = keys::role_prefix(org_id, role);
        self.trees
            .users_by_role
            .scan_prefix(&prefix)
            .map(|entry| Ok(String::from_utf8_lossy(&entry?.0[prefix.len()..]).into_owned()))
            .collect()
    }

    /// (user ID, role ID) of every grant on a resource.
    pub fn grants_on(
        &self,
        org_id: &str,
        on_type: &str,
        on: &str,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let prefix = keys::acl_prefix(org_id, on_type, on);
        let mut grants = Vec::new();
        for entry in self.trees.acl.scan_prefix(&prefix) {
            let (key, _) = entry?;
            let rest = &key[prefix.len()..];
            let (user, role) = rest
                .iter()
                .position(|b| *b == keys::SEPARATOR)
                .map(|at| (&rest[..at], &rest[at + 1..]))
                .ok_or_else(|| corrupt("acl key"))?;
            grants.push((
                String::from_utf8_lossy(user).into_owned(),
                String::from_utf8_lossy(role).into_owned(),
            ));
        }
        Ok(grants)
    }

    /// An org's configuration as projected now.
    /// The org's configuration, decoded once and shared until a configuration event of the
    /// org is committed.
    pub fn org(&self, org_id: &str) -> Result<Option<Arc<OrgConfig>>, StoreError> {
        self.orgs
            .get_or_load(org_id, || match self.trees.orgs.get(org_id.as_bytes())? {
                Some(bytes) => Ok(Some(
                    bincode::deserialize(&bytes).map_err(|e| corrupt(&e.to_string()))?,
                )),
                None => Ok(None),
            })
    }

    /// Forgets the replay guards whose NotOnOrAfter is before `now` (Unix nanoseconds): the
    /// validator refuses those assertions as expired anyway. One call goes through the
    /// guards in key order after `after`, and stops once it has forgotten `limit` of them (one
    /// at least) or
    /// read [`PRUNE_READ_PER_FORGOTTEN`] times that many, so that a caller can pause between
    /// calls and a large backlog does not starve logins. Guards are removed one by one:
    /// a sled batch would hold the lock every read waits on for all of them.
    pub fn prune_assertions(
        &self,
        now: i128,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<PrunedGuards, StoreError> {
        let mut pruned = PrunedGuards {
            forgotten: 0,
            resume_after: None,
        };
        let range = match after {
            Some(key) => self
                .trees
                .assertions
                .range::<&[u8], _>((std::ops::Bound::Excluded(key), std::ops::Bound::Unbounded)),
            None => self.trees.assertions.iter(),
        };
        // A call forgets one guard at least, so that every call makes progress.
        let limit = limit.max(1);
        let read_max = limit.saturating_mul(PRUNE_READ_PER_FORGOTTEN);
        for (read, entry) in range.enumerate() {
            let (key, value) = entry?;
            let expiry = i128::from_be_bytes(
                value
                    .as_ref()
                    .try_into()
                    .map_err(|_| corrupt("assertion expiry"))?,
            );
            if expiry < now {
                self.trees.assertions.remove(&key)?;
                pruned.forgotten += 1;
            }
            if pruned.forgotten >= limit || read + 1 >= read_max {
                pruned.resume_after = Some(key.to_vec());
                break;
            }
        }
        Ok(pruned)
    }

    pub(crate) fn trees(&self) -> &Trees {
        &self.trees
    }

    /// Stops the writer after the requests already queued, and flushes.
    pub fn close(mut self) -> Result<(), StoreError> {
        self.stop_writer();
        self.db.flush()?;
        Ok(())
    }

    /// Stops the writer once it has answered what it holds; appends are refused until
    /// [`Store::start_writer`].
    fn stop_writer(&mut self) {
        self.sender.take();
        if let Some(handle) = self.writer.take() {
            let _ = handle.join();
        }
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        self.stop_writer();
    }
}

/// How long `open` waits for the directory lock: sled's background threads release it a
/// moment after the previous owner (a closing store, an exiting process) lets go.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

fn open_with_lock_retry(config: &sled::Config) -> Result<sled::Db, sled::Error> {
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    loop {
        match config.open() {
            Err(sled::Error::Io(error))
                if error.to_string().contains("could not acquire lock")
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

pub(crate) fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(what.to_string())
}
