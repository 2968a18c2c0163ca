//! Proof that the store is what its log says: the hash chain is unbroken and gap-free, and
//! the stored projections equal a fresh fold of the log. Also `rebuild`, which replaces the
//! projections by that fold.

use std::collections::BTreeMap;

use super::envelope::{self, GENESIS_HASH};
use super::projections::{InMemory, Projection, ProjectionStore, project};
use super::{Store, StoreError, corrupt, keys};

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
    #[error("storage: {0}")]
    Storage(String),
}

impl From<StoreError> for VerifyFailure {
    fn from(error: StoreError) -> Self {
        VerifyFailure::Storage(error.to_string())
    }
}

impl Store {
    /// Checks the chain from genesis and the projections against a fresh fold.
    pub fn verify(&self) -> Result<VerifyReport, VerifyFailure> {
        let mut fold = InMemory::new();
        let records = self.trees().events.iter().map(|entry| {
            let (key, value) = entry.map_err(|e| VerifyFailure::Storage(e.to_string()))?;
            Ok((key.to_vec(), value.to_vec()))
        });
        let (events, running) = check_chain(records, self.hasher(), &mut fold)?;
        let (head_seq, head_hash) = self.head()?;
        if head_seq != events || head_hash != running {
            return Err(VerifyFailure::Chain {
                seq: events + 1,
                reason: format!("head says seq {head_seq}"),
            });
        }
        for projection in Projection::ALL {
            compare(
                self.trees().projection(projection),
                fold.get(&projection),
                projection,
            )?;
        }
        Ok(VerifyReport {
            events,
            last_hash: running,
        })
    }

    /// Drops the projections and refills them from the log. Run it with no appends in
    /// flight (the CLI opens the store alone). `progress` gets (events done, events total).
    pub fn rebuild(&self, progress: impl FnMut(u64, u64)) -> Result<u64, StoreError> {
        self.rebuild_in_chunks(REBUILD_CHUNK_KEYS, progress)
    }

    /// [`Store::rebuild`], writing the projections out every `chunk_keys` pending keys
    /// (tests use tiny chunks, so that later events read what earlier chunks wrote).
    pub fn rebuild_in_chunks(
        &self,
        chunk_keys: usize,
        mut progress: impl FnMut(u64, u64),
    ) -> Result<u64, StoreError> {
        let trees = self.trees();
        for projection in Projection::ALL {
            trees.projection(projection).clear()?;
        }
        let (total, _) = self.head()?;
        let mut chunk = Chunk {
            trees,
            pending: BTreeMap::new(),
        };
        let mut done = 0;
        for entry in trees.events.iter() {
            let (_, bytes) = entry?;
            let envelope = envelope::decode(&bytes)?;
            project(&mut chunk, &envelope).map_err(|error| match error {
                super::projections::ProjectError::Store(error) => StoreError::Sled(error),
                super::projections::ProjectError::Corrupt(reason) => corrupt(&reason),
            })?;
            if chunk.pending.len() >= chunk_keys {
                chunk.write()?;
            }
            done += 1;
            if done % 65_536 == 0 {
                progress(done, total);
            }
        }
        chunk.write()?;
        progress(done, total);
        self.db().flush()?;
        Ok(done)
    }
}

/// Walks (key, stored bytes) records in key order from genesis: keys are consecutive from
/// seq 1, each record decodes to its own seq, links to the previous hash and hashes to its
/// own. Folds each envelope into `fold`. Returns the event count and the last hash.
pub fn check_chain(
    records: impl Iterator<Item = Result<(Vec<u8>, Vec<u8>), VerifyFailure>>,
    hasher: &super::ChainHasher,
    fold: &mut InMemory,
) -> Result<(u64, [u8; 32]), VerifyFailure> {
    let mut running = GENESIS_HASH;
    let mut expected_seq = 1;
    for record in records {
        let (key, bytes) = record?;
        let chain = |reason: &str| VerifyFailure::Chain {
            seq: expected_seq,
            reason: reason.to_string(),
        };
        if key != keys::seq(expected_seq) {
            return Err(chain("missing event"));
        }
        let envelope = envelope::decode(&bytes).map_err(|e| chain(&format!("undecodable: {e}")))?;
        if envelope.seq != expected_seq {
            return Err(chain(&format!(
                "record of seq {} stored here",
                envelope.seq
            )));
        }
        if envelope.prev_hash != running || !envelope::check_hash(&bytes, &running, hasher) {
            return Err(chain("hash does not match"));
        }
        running = envelope.hash;
        project(fold, &envelope).map_err(|_| chain("cannot be folded"))?;
        expected_seq += 1;
    }
    Ok((expected_seq - 1, running))
}

/// Projection keys rebuild holds in memory before writing them out: bounds its memory
/// (about 40 MiB of users at this size) while most keys are written once per chunk, not once
/// per event.
const REBUILD_CHUNK_KEYS: usize = 65_536;

/// Rebuild's projection writes for a stretch of the log: kept in memory, where later events
/// of the stretch read them, then written in key order with one batch per tree. Nothing else
/// writes meanwhile (rebuild runs alone), so a key not pending is read from its tree.
struct Chunk<'t> {
    trees: &'t super::Trees,
    /// The value each touched key ends with; `None` removes it.
    pending: BTreeMap<(Projection, Vec<u8>), Option<Vec<u8>>>,
}

impl Chunk<'_> {
    fn write(&mut self) -> Result<(), sled::Error> {
        for projection in Projection::ALL {
            let mut batch = sled::Batch::default();
            let start = (projection, Vec::new());
            for ((_, key), value) in self
                .pending
                .range(start..)
                .take_while(|((p, _), _)| *p == projection)
            {
                match value {
                    Some(value) => batch.insert(key.as_slice(), value.as_slice()),
                    None => batch.remove(key.as_slice()),
                }
            }
            self.trees.projection(projection).apply_batch(batch)?;
        }
        self.pending.clear();
        Ok(())
    }
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
}

fn compare(
    stored: &sled::Tree,
    expected: Option<&BTreeMap<Vec<u8>, Vec<u8>>>,
    projection: Projection,
) -> Result<(), VerifyFailure> {
    let empty = BTreeMap::new();
    let mut expected = expected.unwrap_or(&empty).iter();
    let mut stored = stored.iter();
    loop {
        let differs = |key: &[u8]| VerifyFailure::Projection {
            projection: projection.tree_name(),
            key: String::from_utf8_lossy(key).replace('\0', "/"),
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
