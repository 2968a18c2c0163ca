//! Projections: the current users (with provenance), users by role, ACL grants by
//! resource, and each org's configuration — all folded from envelopes by one function,
//! [`project`], whether into sled trees inside the append transaction or into memory to
//! check those trees against a fresh fold.

use std::collections::{BTreeMap, BTreeSet};

use crate::events::Event;
use crate::provisioning::config::OrgConfig;
use crate::provisioning::user::{Applied, UserState, apply};

use super::envelope::{CONFIG_STREAM, Envelope};
use super::keys;

/// The projection trees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Projection {
    Users,
    UsersByRole,
    Acl,
    Orgs,
}

impl Projection {
    pub const ALL: [Projection; 4] = [
        Projection::Users,
        Projection::UsersByRole,
        Projection::Acl,
        Projection::Orgs,
    ];

    pub fn tree_name(self) -> &'static str {
        match self {
            Projection::Users => "users",
            Projection::UsersByRole => "users_by_role",
            Projection::Acl => "acl",
            Projection::Orgs => "orgs",
        }
    }
}

/// Where projections are kept: sled trees in a transaction, or memory.
pub trait ProjectionStore {
    type Error;
    fn get(&self, projection: Projection, key: &[u8]) -> Result<Option<Vec<u8>>, Self::Error>;
    fn insert(
        &mut self,
        projection: Projection,
        key: Vec<u8>,
        value: Vec<u8>,
    ) -> Result<(), Self::Error>;
    fn remove(&mut self, projection: Projection, key: &[u8]) -> Result<(), Self::Error>;
}

/// Projections held in memory: a fresh fold to compare with what is stored.
pub type InMemory = BTreeMap<Projection, BTreeMap<Vec<u8>, Vec<u8>>>;

impl ProjectionStore for InMemory {
    type Error = std::convert::Infallible;
    fn get(&self, projection: Projection, key: &[u8]) -> Result<Option<Vec<u8>>, Self::Error> {
        Ok(self
            .get(&projection)
            .and_then(|tree| tree.get(key))
            .cloned())
    }
    fn insert(
        &mut self,
        projection: Projection,
        key: Vec<u8>,
        value: Vec<u8>,
    ) -> Result<(), Self::Error> {
        self.entry(projection).or_default().insert(key, value);
        Ok(())
    }
    fn remove(&mut self, projection: Projection, key: &[u8]) -> Result<(), Self::Error> {
        if let Some(tree) = self.get_mut(&projection) {
            tree.remove(key);
        }
        Ok(())
    }
}

/// Why an envelope could not be projected.
#[derive(Debug)]
pub enum ProjectError<E> {
    Store(E),
    /// Stored projection bytes that do not decode: corruption.
    Corrupt(String),
}

impl<E> From<E> for ProjectError<E> {
    fn from(error: E) -> Self {
        ProjectError::Store(error)
    }
}

fn encode<T: serde::Serialize>(value: &T) -> Vec<u8> {
    // Plain data into a Vec cannot fail to serialise.
    bincode::serialize(value).unwrap_or_default()
}

fn decode<T: serde::de::DeserializeOwned, E>(bytes: &[u8]) -> Result<T, ProjectError<E>> {
    bincode::deserialize(bytes).map_err(|error| ProjectError::Corrupt(error.to_string()))
}

/// Folds one envelope into the projections.
pub fn project<S: ProjectionStore>(
    store: &mut S,
    envelope: &Envelope,
) -> Result<(), ProjectError<S::Error>> {
    let org_id = envelope.org_id.as_str();
    if envelope.stream == CONFIG_STREAM {
        let key = org_id.as_bytes().to_vec();
        let mut config = match (store.get(Projection::Orgs, &key)?, &envelope.event) {
            (_, Event::OrgCreated(created)) => OrgConfig::created(org_id, created),
            (Some(bytes), _) => decode(&bytes)?,
            (None, _) => {
                return Err(ProjectError::Corrupt(format!(
                    "{org_id}: configuration before OrgCreated"
                )));
            }
        };
        config.apply(&envelope.event);
        store.insert(Projection::Orgs, key, encode(&config))?;
        return Ok(());
    }
    let Some(user_id) = envelope.stream.strip_prefix("user:") else {
        return Err(ProjectError::Corrupt(format!(
            "unknown stream {:?}",
            envelope.stream
        )));
    };
    let key = keys::user(org_id, user_id);
    let before: Option<UserState> = match store.get(Projection::Users, &key)? {
        Some(bytes) => Some(decode(&bytes)?),
        None => None,
    };
    let applied = Applied {
        seq: envelope.seq,
        stream_version: envelope.stream_version,
        recorded_at: envelope.recorded_at,
        cause: envelope.cause.id().to_string(),
    };
    let after = apply(before.clone(), &envelope.event, &applied);
    // Index entries are removed and added by difference, so that a login that changes
    // neither role nor ACL (the common repeat login) rewrites the user alone.
    let grants = |state: &Option<UserState>| -> BTreeSet<Vec<u8>> {
        state
            .iter()
            .flat_map(|state| {
                state.acl.value.iter().map(|entry| {
                    keys::acl_grant(
                        org_id,
                        entry.on_type.as_str(),
                        &entry.on,
                        user_id,
                        &entry.role_id,
                    )
                })
            })
            .collect()
    };
    let role_key = |state: &Option<UserState>| {
        state
            .as_ref()
            .map(|state| keys::role_member(org_id, &state.role.value, user_id))
    };
    let (role_before, role_after) = (role_key(&before), role_key(&after));
    if role_before != role_after {
        if let Some(key) = role_before {
            store.remove(Projection::UsersByRole, &key)?;
        }
        if let Some(key) = role_after {
            store.insert(Projection::UsersByRole, key, Vec::new())?;
        }
    }
    let (grants_before, grants_after) = (grants(&before), grants(&after));
    for grant in grants_before.difference(&grants_after) {
        store.remove(Projection::Acl, grant)?;
    }
    for grant in grants_after.difference(&grants_before) {
        store.insert(Projection::Acl, grant.clone(), Vec::new())?;
    }
    match after {
        Some(after) => store.insert(Projection::Users, key, encode(&after))?,
        None => store.remove(Projection::Users, &key)?,
    }
    Ok(())
}
