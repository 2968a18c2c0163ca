//! Projections: the current users (with provenance), users by role, ACL grants by
//! resource, and each org's configuration — all folded from envelopes by one function,
//! [`project`], whether into sled trees inside the append transaction or into memory to
//! check those trees against a fresh fold.

use std::collections::{BTreeMap, BTreeSet};

use crate::events::{AclEntry, Event};
use crate::provisioning::config::OrgConfig;
use crate::provisioning::user::UserState;

use super::envelope::{CONFIG_STREAM, Envelope, user_of_stream};
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

    /// The user at `key`, which [`project`] writes back with [`ProjectionStore::put_user`]
    /// once it has applied the event: a store that keeps users decoded may hand over its own
    /// copy instead of decoding one.
    fn take_user(&mut self, key: &[u8]) -> Result<Option<UserState>, ProjectError<Self::Error>> {
        match self.get(Projection::Users, key)? {
            Some(bytes) => Ok(Some(decode(&bytes)?)),
            None => Ok(None),
        }
    }

    /// Stores (or, with `None`, removes) the user at `key`.
    fn put_user(&mut self, key: Vec<u8>, user: Option<UserState>) -> Result<(), Self::Error> {
        match user {
            Some(user) => self.insert(Projection::Users, key, encode(&user)),
            None => self.remove(Projection::Users, &key),
        }
    }
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

pub(super) fn encode<T: serde::Serialize>(value: &T) -> Vec<u8> {
    // Plain data into a Vec cannot fail to serialise.
    bincode::serialize(value).unwrap_or_default()
}

pub(super) fn decode<T: serde::de::DeserializeOwned, E>(
    bytes: &[u8],
) -> Result<T, ProjectError<E>> {
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
    let Some(user_id) = user_of_stream(&envelope.stream) else {
        return Err(ProjectError::Corrupt(format!(
            "unknown stream {:?}",
            envelope.stream
        )));
    };
    let key = keys::user(org_id, user_id);
    let before = store.take_user(&key)?;
    // Only the role and ACL of the state before are needed once the event is applied: they
    // are kept, not the whole state.
    let role_before = before.as_ref().map(|state| state.role.value.clone());
    let acl_before = before.as_ref().map(|state| state.acl.value.clone());
    let after = envelope.apply_to(before);
    // Index entries are removed and added by difference, so that a login that changes
    // neither role nor ACL (the common repeat login) rewrites the user alone.
    let role_after = after.as_ref().map(|state| &state.role.value);
    if role_before.as_ref() != role_after {
        if let Some(role) = &role_before {
            store.remove(
                Projection::UsersByRole,
                &keys::role_member(org_id, role, user_id),
            )?;
        }
        if let Some(role) = role_after {
            store.insert(
                Projection::UsersByRole,
                keys::role_member(org_id, role, user_id),
                Vec::new(),
            )?;
        }
    }
    let acl_after = after.as_ref().map(|state| &state.acl.value);
    if acl_before.as_ref() != acl_after {
        let grants = |acl: Option<&Vec<AclEntry>>| -> BTreeSet<Vec<u8>> {
            acl.into_iter()
                .flatten()
                .map(|entry| {
                    keys::acl_grant(
                        org_id,
                        entry.on_type.as_str(),
                        &entry.on,
                        user_id,
                        &entry.role_id,
                    )
                })
                .collect()
        };
        let (grants_before, grants_after) = (grants(acl_before.as_ref()), grants(acl_after));
        for grant in grants_before.difference(&grants_after) {
            store.remove(Projection::Acl, grant)?;
        }
        for grant in grants_after.difference(&grants_before) {
            store.insert(Projection::Acl, grant.clone(), Vec::new())?;
        }
    }
    store.put_user(key, after)?;
    Ok(())
}
