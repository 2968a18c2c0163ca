//! Proof that the store is what its log says: the hash chain is unbroken and gap-free, each
//! event links to the previous event of its stream at the next version, and the stream heads
//! and the stored projections equal a fresh fold of the log. Also `rebuild`, which replaces
//! the projections by that fold.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::provisioning::user::UserState;

use super::envelope::{self, Envelope, GENESIS_HASH};
use super::heads::{Head, HeadKey};
use super::projections::{
    InMemory, ProjectError, Projection, ProjectionStore, decode, encode, project,
};
use super::scan::with_scan;
use super::{META_REBUILDING, Store, StoreError, Trees, corrupt, keys};

/// What a successful verification covered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    pub events: u64,
    pub last_hash: [u8; 32],
}

/// The first thing found wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyFailure {
    /// The chain breaks at this sequence number: missing, out of place, altered or
    /// undecodable.
    #[error("hash chain broken at seq {seq}: {reason}")]
    Chain { seq: u64, reason: String },
    /// A stored projection differs from the fold of the log.
    #[error("projection {projection} differs from a fresh fold at key {key}")]
    Projection {
        projection: &'static str,
        key: String,
    },
    /// The record of this seq does not link to the previous event of its stream, or does
    /// not carry the stream's next version.
    #[error("stream link broken at seq {seq}: {reason}")]
    StreamLink { seq: u64, reason: String },
    /// A stream's head in the `heads` tree (version, last seq) differs from the log. (A
    /// user's head is part of their projection: a difference there names `users`.)
    #[error("stream head {key} differs from the log")]
    StreamHead { key: String },
    #[error("storage: {0}")]
    Storage(String),
}

impl From<StoreError> for VerifyFailure {
    fn from(error: StoreError) -> Self {
        VerifyFailure::Storage(error.to_string())
    }
}

impl Store {
    /// Checks the chain from genesis, each record's link to the previous event of its
    /// stream, and the stream heads and the projections against a fresh fold.
    pub fn verify(&self) -> Result<VerifyReport, VerifyFailure> {
        let mut fold = InMemory::new();
        let mut heads: BTreeMap<HeadKey, Head> = BTreeMap::new();
        let (head_seq, head_hash) = self.head()?;
        let records = self.records(1, head_seq).map(|record| match record {
            Ok(record) => Ok((
                Linked {
                    seq: keys::seq(record.seq),
                    prev_in_stream: record.prev_in_stream,
                },
                record.payload,
            )),
            Err(error) => Err(VerifyFailure::Chain {
                seq: error.seq,
                reason: error.reason,
            }),
        });
        let (events, running) = with_scan(records, |records| {
            walk_chain(records, self.hasher(), |linked, envelope| {
                let head = heads
                    .entry(HeadKey::of(&envelope.org_id, &envelope.stream))
                    .or_default();
                let broken = |reason: String| VerifyFailure::StreamLink {
                    seq: envelope.seq,
                    reason,
                };
                if linked.prev_in_stream != head.last_seq {
                    return Err(broken(format!(
                        "it links to seq {}, the stream's previous event is {}",
                        linked.prev_in_stream, head.last_seq
                    )));
                }
                *head = head
                    .follow(envelope.seq, envelope.stream_version)
                    .map_err(broken)?;
                fold_into(&mut fold, envelope)
            })
        })?;
        if head_seq != events || head_hash != running {
            return Err(VerifyFailure::Chain {
                seq: events + 1,
                reason: format!("head says seq {head_seq}"),
            });
        }
        // A user's head is in their projection, compared with the fold's below.
        let heads = heads
            .into_iter()
            .filter_map(|(key, head)| match key {
                HeadKey::Stream(key) => Some((key, head.encode().to_vec())),
                HeadKey::User(_) => None,
            })
            .collect();
        compare(&self.trees().heads, Some(&heads), "heads").map_err(|failure| match failure {
            VerifyFailure::Projection { key, .. } => VerifyFailure::StreamHead { key },
            other => other,
        })?;
        for projection in Projection::ALL {
            compare(
                self.trees().projection(projection),
                fold.get(&projection),
                projection.tree_name(),
            )?;
        }
        Ok(VerifyReport {
            events,
            last_hash: running,
        })
    }

    /// Drops the projections and refills them from the log. It takes the store for itself
    /// (`&mut`): the writer stops for the rebuild and starts again after it. `progress` gets
    /// (events done, events total).
    ///
    /// A rebuild that does not finish (a crash, a kill) leaves a mark in `meta`; the next
    /// [`Store::open`] sees it and rebuilds before anything reads the projections.
    pub fn rebuild(&mut self, progress: impl FnMut(u64, u64)) -> Result<u64, StoreError> {
        self.rebuild_in_chunks(REBUILD_CHUNK_KEYS, progress)
    }

    /// [`Store::rebuild`], writing the projections out every `chunk_keys` pending keys
    /// (tests use tiny chunks, so that later events read what earlier chunks wrote).
    pub fn rebuild_in_chunks(
        &mut self,
        chunk_keys: usize,
        progress: impl FnMut(u64, u64),
    ) -> Result<u64, StoreError> {
        self.stop_writer();
        self.trees.meta.insert(META_REBUILDING, &[])?;
        self.db.flush()?;
        // Dropping a tree frees its nodes; `clear` would remove (and log) every key, which
        // costs about as much as writing them again.
        for projection in Projection::ALL {
            self.db.drop_tree(projection.tree_name())?;
        }
        self.trees = Trees::open(&self.db)?;
        self.orgs.clear();
        let done = self.refill(chunk_keys, progress)?;
        self.trees.meta.remove(META_REBUILDING)?;
        self.db.flush()?;
        self.start_writer()?;
        Ok(done)
    }

    /// Folds the whole log into the (empty) projection trees.
    fn refill(
        &self,
        chunk_keys: usize,
        mut progress: impl FnMut(u64, u64),
    ) -> Result<u64, StoreError> {
        let trees = self.trees();
        let (total, _) = self.head()?;
        let mut chunk = Chunk {
            trees,
            users: HashMap::new(),
            pending: BTreeMap::new(),
            written_users: HashSet::new(),
            hasher: RandomState::new(),
        };
        let done = with_scan(self.records(1, total), |records| {
            let mut done = 0;
            for record in records {
                let envelope = envelope::decode(&record?.payload)?;
                project(&mut chunk, &envelope).map_err(|error| match error {
                    ProjectError::Store(error) => StoreError::Sled(error),
                    ProjectError::Corrupt(reason) => corrupt(&reason),
                })?;
                if chunk.len() >= chunk_keys {
                    chunk.write()?;
                }
                done += 1;
                if done % 65_536 == 0 {
                    progress(done, total);
                }
            }
            Ok::<u64, StoreError>(done)
        })?;
        chunk.write()?;
        progress(done, total);
        Ok(done)
    }
}

/// Walks (key, stored bytes) records in key order from genesis: keys are consecutive from
/// seq 1, each record decodes to its own seq, links to the previous hash and hashes to its
/// own. Folds each envelope into `fold`. Returns the event count and the last hash.
pub fn check_chain<K: AsRef<[u8]>, V: AsRef<[u8]>>(
    records: impl Iterator<Item = Result<(K, V), VerifyFailure>>,
    hasher: &super::ChainHasher,
    fold: &mut InMemory,
) -> Result<(u64, [u8; 32]), VerifyFailure> {
    walk_chain(records, hasher, |_, envelope| fold_into(fold, envelope))
}

/// A record's seq key and its link to the previous event of its stream.
struct Linked {
    seq: [u8; 8],
    prev_in_stream: u64,
}

impl AsRef<[u8]> for Linked {
    fn as_ref(&self) -> &[u8] {
        &self.seq
    }
}

fn fold_into(fold: &mut InMemory, envelope: &Envelope) -> Result<(), VerifyFailure> {
    project(fold, envelope).map_err(|_| VerifyFailure::Chain {
        seq: envelope.seq,
        reason: "cannot be folded".into(),
    })
}

/// [`check_chain`], handing each checked envelope with its key to `visit`.
fn walk_chain<K: AsRef<[u8]>, V: AsRef<[u8]>>(
    records: impl Iterator<Item = Result<(K, V), VerifyFailure>>,
    hasher: &super::ChainHasher,
    mut visit: impl FnMut(&K, &Envelope) -> Result<(), VerifyFailure>,
) -> Result<(u64, [u8; 32]), VerifyFailure> {
    let mut running = GENESIS_HASH;
    let mut expected_seq = 1;
    for record in records {
        let (key, bytes) = record?;
        let chain = |reason: &str| VerifyFailure::Chain {
            seq: expected_seq,
            reason: reason.to_string(),
        };
        let (key_bytes, bytes) = (key.as_ref(), bytes.as_ref());
        if key_bytes != keys::seq(expected_seq) {
            return Err(chain("missing event"));
        }
        let envelope = envelope::decode(bytes).map_err(|e| chain(&format!("undecodable: {e}")))?;
        if envelope.seq != expected_seq {
            return Err(chain(&format!(
                "record of seq {} stored here",
                envelope.seq
            )));
        }
        if envelope.prev_hash != running || !envelope::check_hash(bytes, &running, hasher) {
            return Err(chain("hash does not match"));
        }
        running = envelope.hash;
        visit(&key, &envelope)?;
        expected_seq += 1;
    }
    Ok((expected_seq - 1, running))
}

/// Projection entries rebuild holds in memory before writing them out. Users are held
/// decoded (about 1 KiB each), so this bounds rebuild's memory to roughly 150 MiB, while a
/// log of up to ~65,000 users (each with its role entry) is written once, at the end.
const REBUILD_CHUNK_KEYS: usize = 131_072;

/// Rebuild's projection writes for a stretch of the log: kept in memory, where later events
/// of the stretch read them, then written in key order (see [`Chunk::write`]). Users are
/// kept decoded, so that the many logins of one user cost no decode and encode each. Nothing
/// else writes meanwhile (rebuild runs alone), so a key not pending is read from its tree.
struct Chunk<'t> {
    trees: &'t super::Trees,
    /// The state each touched user ends with; `None` removes it.
    users: HashMap<Vec<u8>, Option<UserState>>,
    /// The value each other touched key ends with; `None` removes it.
    pending: BTreeMap<(Projection, Vec<u8>), Option<Vec<u8>>>,
    /// Hashes of the user keys earlier chunks wrote. The trees start empty, so a user whose
    /// hash is not here is new: its first login costs no lookup in sled.
    written_users: HashSet<u64>,
    hasher: RandomState,
}

impl Chunk<'_> {
    fn len(&self) -> usize {
        self.users.len() + self.pending.len()
    }

    /// Writes the chunk out in key order from two threads: sled's inserts take most of a
    /// rebuild's time, and plain inserts run side by side. One thread writes the index
    /// trees while the other starts on the users; then both take runs of users until none
    /// are left, so that neither waits for the other.
    fn write(&mut self) -> Result<(), sled::Error> {
        let mut users: Vec<_> = self.users.drain().collect();
        users.sort_unstable_by(|(a, _), (b, _)| a.cmp(b));
        self.written_users
            .extend(users.iter().map(|(key, _)| self.hasher.hash_one(key)));
        let (trees, pending) = (self.trees, &self.pending);
        let taken = AtomicUsize::new(0);
        let write_users = || -> Result<(), sled::Error> {
            loop {
                let start = taken.fetch_add(USERS_PER_TAKE, Ordering::Relaxed);
                if start >= users.len() {
                    return Ok(());
                }
                let run = users[start..users.len().min(start + USERS_PER_TAKE)]
                    .iter()
                    .map(|(key, user)| (key.as_slice(), user.as_ref().map(encode)));
                write_sorted(&trees.users, run)?;
            }
        };
        let written = std::thread::scope(|scope| {
            let helper = scope.spawn(write_users);
            let others = Projection::ALL.into_iter().try_for_each(|projection| {
                let start = (projection, Vec::new());
                let entries = pending
                    .range(start..)
                    .take_while(|((p, _), _)| *p == projection)
                    .map(|((_, key), value)| (key.as_slice(), value.as_deref()));
                write_sorted(trees.projection(projection), entries)
            });
            let mine = others.and_then(|()| write_users());
            let helped = helper
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            mine.and(helped)
        });
        self.pending.clear();
        written
    }
}

/// Users one thread of [`Chunk::write`] takes at a time.
const USERS_PER_TAKE: usize = 512;

/// Writes (key, value or removal) pairs in key order, one sled insert each. Not a
/// `sled::Batch`: applying one takes sled's global write lock, so two trees could not be
/// written at once, and it holds every node it splits until it ends. A rebuild needs no
/// batch's atomicity: the `rebuilding` mark makes the next open redo an unfinished one.
fn write_sorted<K: AsRef<[u8]> + Into<sled::IVec>, V: Into<sled::IVec>>(
    tree: &sled::Tree,
    entries: impl Iterator<Item = (K, Option<V>)>,
) -> Result<(), sled::Error> {
    for (key, value) in entries {
        match value {
            Some(value) => tree.insert(key, value)?,
            None => tree.remove(key)?,
        };
    }
    Ok(())
}

impl ProjectionStore for Chunk<'_> {
    type Error = sled::Error;
    fn get(&self, projection: Projection, key: &[u8]) -> Result<Option<Vec<u8>>, Self::Error> {
        match self.pending.get(&(projection, key.to_vec())) {
            Some(value) => Ok(value.clone()),
            None => Ok(self
                .trees
                .projection(projection)
                .get(key)?
                .map(|value| value.to_vec())),
        }
    }
    fn insert(
        &mut self,
        projection: Projection,
        key: Vec<u8>,
        value: Vec<u8>,
    ) -> Result<(), Self::Error> {
        self.pending.insert((projection, key), Some(value));
        Ok(())
    }
    fn remove(&mut self, projection: Projection, key: &[u8]) -> Result<(), Self::Error> {
        self.pending.insert((projection, key.to_vec()), None);
        Ok(())
    }
    fn take_user(&mut self, key: &[u8]) -> Result<Option<UserState>, ProjectError<Self::Error>> {
        // A pending user is handed over, leaving `None` until `put_user` returns it.
        if let Some(user) = self.users.get_mut(key) {
            return Ok(user.take());
        }
        if !self.written_users.contains(&self.hasher.hash_one(key)) {
            return Ok(None);
        }
        match self.trees.users.get(key)? {
            Some(bytes) => Ok(Some(decode(&bytes)?)),
            None => Ok(None),
        }
    }
    fn put_user(&mut self, key: Vec<u8>, user: Option<UserState>) -> Result<(), Self::Error> {
        self.users.insert(key, user);
        Ok(())
    }
}

fn compare(
    stored: &sled::Tree,
    expected: Option<&BTreeMap<Vec<u8>, Vec<u8>>>,
    name: &'static str,
) -> Result<(), VerifyFailure> {
    let empty = BTreeMap::new();
    let mut expected = expected.unwrap_or(&empty).iter();
    let mut stored = stored.iter();
    loop {
        let differs = |key: &[u8]| VerifyFailure::Projection {
            projection: name,
            key: keys::display(key),
        };
        match (stored.next(), expected.next()) {
            (None, None) => return Ok(()),
            (Some(entry), want) => {
                let (key, value) = entry.map_err(|e| VerifyFailure::Storage(e.to_string()))?;
                match want {
                    Some((want_key, want_value)) if want_key.as_slice() == key.as_ref() => {
                        if want_value.as_slice() != value.as_ref() {
                            return Err(differs(&key));
                        }
                    }
                    Some((want_key, _)) => return Err(differs(want_key.min(&key.to_vec()))),
                    None => return Err(differs(&key)),
                }
            }
            (None, Some((want_key, _))) => return Err(differs(want_key)),
        }
    }
}
