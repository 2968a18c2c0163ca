//! A user's state, folded from their stream: `apply` changes state and decides nothing.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::events::{AclEntry, Event, ProfileField, Source};

/// Where a value came from and which event set it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Provenance {
    pub source: Source,
    /// Global sequence number of the event that set it.
    pub seq: u64,
    /// The login ID or admin token ID behind that event.
    pub cause: String,
}

/// A value with its provenance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Traced<T> {
    pub value: T,
    pub provenance: Provenance,
}

/// The facts of the envelope an event arrives in that state keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub seq: u64,
    pub stream_version: u64,
    /// Unix nanoseconds.
    pub recorded_at: i128,
    pub cause: String,
}

/// One user of one organisation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserState {
    pub user_id: String,
    /// The IdP that provisioned the user; logins through another IdP are refused.
    pub idp_id: String,
    pub profile: BTreeMap<ProfileField, Traced<String>>,
    pub role: Traced<String>,
    /// Sorted, without duplicates.
    pub acl: Traced<Vec<AclEntry>>,
    pub created_at: i128,
    pub updated_at: i128,
    pub last_login_at: Option<i128>,
    /// The stream version of the last event applied.
    pub version: u64,
    /// The seq of the last event applied: with `version`, the head of the user's stream,
    /// where a read of the stream starts.
    pub last_seq: u64,
}

impl UserState {
    pub fn field(&self, field: ProfileField) -> Option<&str> {
        self.profile.get(&field).map(|traced| traced.value.as_str())
    }
}

/// Applies one event of a user's stream. Events of other kinds leave the state unchanged.
pub fn apply(state: Option<UserState>, event: &Event, applied: &Applied) -> Option<UserState> {
    let provenance = |source: &Source| Provenance {
        source: source.clone(),
        seq: applied.seq,
        cause: applied.cause.clone(),
    };
    if let Event::UserProvisioned(provisioned) = event {
        let profile = provisioned
            .profile
            .iter()
            .filter_map(|change| {
                let value = change.to.clone()?;
                Some((
                    change.field,
                    Traced {
                        value,
                        provenance: provenance(&change.source),
                    },
                ))
            })
            .collect();
        let acl_source = provisioned
            .acl_source
            .as_ref()
            .unwrap_or(&provisioned.role_source);
        return Some(UserState {
            user_id: provisioned.user_id.clone(),
            idp_id: provisioned.idp_id.clone(),
            profile,
            role: Traced {
                value: provisioned.role.clone(),
                provenance: provenance(&provisioned.role_source),
            },
            acl: Traced {
                value: provisioned.acl.clone(),
                provenance: provenance(acl_source),
            },
            created_at: applied.recorded_at,
            updated_at: applied.recorded_at,
            last_login_at: None,
            version: applied.stream_version,
            last_seq: applied.seq,
        });
    }
    let mut state = state?;
    match event {
        Event::ProfileUpdated(updated) => {
            for change in &updated.changes {
                match &change.to {
                    Some(value) => {
                        let traced = Traced {
                            value: value.clone(),
                            provenance: provenance(&change.source),
                        };
                        state.profile.insert(change.field, traced);
                    }
                    None => {
                        state.profile.remove(&change.field);
                    }
                }
            }
            state.updated_at = applied.recorded_at;
        }
        Event::RoleChanged(changed) => {
            state.role = Traced {
                value: changed.to.clone(),
                provenance: provenance(&changed.reason),
            };
            state.updated_at = applied.recorded_at;
        }
        Event::AclReplaced(replaced) => {
            state.acl = Traced {
                value: replaced.to.clone(),
                provenance: provenance(&replaced.source),
            };
            state.updated_at = applied.recorded_at;
        }
        Event::LoginRecorded(_) => state.last_login_at = Some(applied.recorded_at),
        _ => return Some(state),
    }
    state.version = applied.stream_version;
    state.last_seq = applied.seq;
    Some(state)
}
