//! Provisioning rules: from a validated login and the current state to the events that
//! record it. `decide` holds every business rule; [`user::apply`] only changes state.
//!
//! Architecture invariant: nothing here does I/O or reads the clock.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod config;
pub mod refusal;
pub mod user;
pub mod values;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use crate::events::{
    AclEntry, AclReplaced, Event, FieldChange, LoginRecorded, ProfileField, ProfileUpdated,
    RoleChanged, Source, UserProvisioned,
};
use crate::saml::response::ValidatedLogin;

pub use config::{IdpConfig, OrgConfig};
pub use refusal::Refusal;
pub use user::UserState;

const EMAIL_NAME_ID_FORMAT: &str = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress";
const TRANSIENT_NAME_ID_FORMAT: &str = "urn:oasis:names:tc:SAML:2.0:nameid-format:transient";

/// Attribute names that can never set anything: the user ID comes from the NameID, and
/// `sso` is always true for JIT users.
const IGNORED_ATTRIBUTES: [&str; 3] = ["id", "username", "sso"];

/// What a login did to its user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Provisioned,
    Updated,
    Unchanged,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Provisioned => "provisioned",
            Outcome::Updated => "updated",
            Outcome::Unchanged => "unchanged",
        }
    }
}

/// The events one login writes, all to the user's stream, ending with `LoginRecorded`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub user_id: String,
    pub outcome: Outcome,
    pub events: Vec<Event>,
}

/// The user ID a login names (CONTRACT.md: the Subject's NameID): emailAddress-format
/// NameIDs lower-cased; a transient NameID only through `user_id_attribute`.
pub fn identify(idp: &IdpConfig, login: &ValidatedLogin) -> Result<String, Refusal> {
    if let Some(attribute) = &idp.jit.user_id_attribute {
        let value =
            single_value(login, attribute)?.ok_or_else(|| Refusal::MissingUserIdAttribute {
                attribute: attribute.clone(),
            })?;
        values::check_user_id(&value)?;
        return Ok(value);
    }
    let name_id = login.name_id();
    let user_id = match name_id.format.as_deref() {
        Some(TRANSIENT_NAME_ID_FORMAT) => return Err(Refusal::TransientNameId),
        Some(EMAIL_NAME_ID_FORMAT) => name_id.value.to_lowercase(),
        _ => name_id.value.clone(),
    };
    values::check_user_id(&user_id)?;
    Ok(user_id)
}

/// Decides what a validated login through `idp_id` writes for the user it names, given the
/// user's current state (`None` if unknown). `login_id` names the login in provenance.
pub fn decide(
    org: &OrgConfig,
    idp_id: &str,
    user: Option<&UserState>,
    login: &ValidatedLogin,
) -> Result<Decision, Refusal> {
    let idp = org.idps.get(idp_id).ok_or_else(|| Refusal::UnknownIdp {
        idp_id: idp_id.to_string(),
    })?;
    let user_id = identify(idp, login)?;
    let login_recorded = Event::LoginRecorded(LoginRecorded {
        assertion_id: login.assertion_id().to_string(),
        idp_id: idp_id.to_string(),
        authn_instant: login.authn_instant().unix_timestamp_nanos(),
        session_index: login.session_index().map(str::to_string),
        session_not_on_or_after: login
            .session_not_on_or_after()
            .map(|t| t.unix_timestamp_nanos()),
    });
    let Some(user) = user else {
        if !idp.jit.enabled {
            return Err(Refusal::UserNotFound {
                user_id,
                idp_id: idp_id.to_string(),
            });
        }
        let provisioned = provision(org, idp, &user_id, login)?;
        return Ok(Decision {
            user_id,
            outcome: Outcome::Provisioned,
            events: vec![provisioned, login_recorded],
        });
    };
    if user.idp_id != idp_id {
        return Err(Refusal::IdpMismatch {
            user_id,
            owner_idp_id: user.idp_id.clone(),
            idp_id: idp_id.to_string(),
        });
    }
    // With JIT off the IdP does not manage accounts: the login is recorded, nothing else.
    let mut events = if idp.jit.enabled {
        updates(org, idp, user, login)?
    } else {
        Vec::new()
    };
    let outcome = if events.is_empty() {
        Outcome::Unchanged
    } else {
        Outcome::Updated
    };
    events.push(login_recorded);
    Ok(Decision {
        user_id,
        outcome,
        events,
    })
}

fn provision(
    org: &OrgConfig,
    idp: &IdpConfig,
    user_id: &str,
    login: &ValidatedLogin,
) -> Result<Event, Refusal> {
    let profile = mapped_profile(idp, login)?;
    let missing: Vec<String> = idp
        .jit
        .required_for_creation
        .iter()
        .filter(|field| !profile.contains_key(field))
        .map(|field| field.mapping_key().to_string())
        .collect();
    if !missing.is_empty() {
        return Err(Refusal::InsufficientAttributes {
            user_id: user_id.to_string(),
            missing,
        });
    }
    let (role, role_source) = desired_role(org, idp, login)?;
    let acl = acl_from(org, idp, login)?;
    let acl_source = acl.as_ref().map(|_| attribute_source(idp, "acl"));
    Ok(Event::UserProvisioned(UserProvisioned {
        user_id: user_id.to_string(),
        idp_id: idp.idp_id.clone(),
        profile: profile
            .into_iter()
            .map(|(field, (value, source))| FieldChange {
                field,
                from: None,
                to: Some(value),
                source,
            })
            .collect(),
        role,
        role_source,
        acl: acl.unwrap_or_default(),
        acl_source,
    }))
}

fn updates(
    org: &OrgConfig,
    idp: &IdpConfig,
    user: &UserState,
    login: &ValidatedLogin,
) -> Result<Vec<Event>, Refusal> {
    let mut events = Vec::new();
    // Absent attributes leave stored values alone: only supplied fields are compared.
    let changes: Vec<FieldChange> = mapped_profile(idp, login)?
        .into_iter()
        .filter(|(field, (value, _))| user.field(*field) != Some(value.as_str()))
        .map(|(field, (value, source))| FieldChange {
            field,
            from: user.field(field).map(str::to_string),
            to: Some(value),
            source,
        })
        .collect();
    if !changes.is_empty() {
        events.push(Event::ProfileUpdated(ProfileUpdated { changes }));
    }
    if idp.jit.idp_managed_roles {
        let (role, reason) = desired_role(org, idp, login)?;
        if role != user.role.value {
            events.push(Event::RoleChanged(RoleChanged {
                from: user.role.value.clone(),
                to: role,
                reason,
            }));
        }
    }
    if let Some(acl) = acl_from(org, idp, login)?
        && acl != user.acl.value
    {
        events.push(Event::AclReplaced(AclReplaced {
            from: user.acl.value.clone(),
            to: acl,
            source: attribute_source(idp, "acl"),
        }));
    }
    Ok(events)
}

fn attribute_source(idp: &IdpConfig, attribute: &str) -> Source {
    Source::Attribute {
        idp_id: idp.idp_id.clone(),
        attribute: attribute.to_string(),
    }
}

/// The attribute a mapping names, unless it is one that can never set anything.
fn mapped_attribute<'l>(
    login: &'l ValidatedLogin,
    name: &str,
) -> Option<&'l crate::saml::response::SamlAttribute> {
    if IGNORED_ATTRIBUTES
        .iter()
        .any(|ignored| ignored.eq_ignore_ascii_case(name))
    {
        return None;
    }
    login.attribute(name)
}

/// The one value of an attribute: empty values do not count; several different values are
/// ambiguous.
fn single_value(login: &ValidatedLogin, name: &str) -> Result<Option<String>, Refusal> {
    let Some(attribute) = mapped_attribute(login, name) else {
        return Ok(None);
    };
    let mut values: Vec<String> = attribute
        .values
        .iter()
        .map(|value| value.trim().to_string())
        .filter(|value| !value.is_empty())
        .collect();
    values.sort();
    values.dedup();
    match values.len() {
        0 => Ok(None),
        1 => Ok(values.pop()),
        _ => Err(Refusal::AmbiguousAttribute {
            attribute: name.to_string(),
            values,
        }),
    }
}

/// Profile fields the login supplies through the mapping, checked, with their sources.
fn mapped_profile(
    idp: &IdpConfig,
    login: &ValidatedLogin,
) -> Result<BTreeMap<ProfileField, (String, Source)>, Refusal> {
    let mut profile = BTreeMap::new();
    for (key, attribute) in &idp.jit.attribute_mapping {
        let Some(field) = ProfileField::from_mapping_key(key) else {
            continue;
        };
        if let Some(value) = single_value(login, attribute)? {
            let value = values::check_profile_value(field, &value)?;
            profile.insert(field, (value, attribute_source(idp, attribute)));
        }
    }
    Ok(profile)
}

/// The role the login asks for with IdP-managed roles: the role attribute matched to a role
/// of the org, or the default role when the attribute is absent. Without IdP-managed roles,
/// the default role.
fn desired_role(
    org: &OrgConfig,
    idp: &IdpConfig,
    login: &ValidatedLogin,
) -> Result<(String, Source), Refusal> {
    let default = || {
        let role = org
            .role_id_for(&idp.jit.default_role)
            .unwrap_or_else(|| idp.jit.default_role.clone());
        (
            role,
            Source::DefaultRole {
                idp_id: idp.idp_id.clone(),
            },
        )
    };
    if !idp.jit.idp_managed_roles {
        return Ok(default());
    }
    let attribute = idp
        .jit
        .attribute_mapping
        .iter()
        .find(|(key, _)| key == config::USER_ROLE)
        .map(|(_, attribute)| attribute.as_str());
    let Some(attribute) = attribute else {
        return Ok(default());
    };
    match single_value(login, attribute)? {
        None => Ok(default()),
        Some(value) => {
            let role = org.role_id_for(&value).ok_or(Refusal::UnknownRole {
                value,
                acl_index: None,
            })?;
            Ok((role, attribute_source(idp, attribute)))
        }
    }
}

/// The ACL the login supplies (Yext `acl[n].roleId`, `acl[n].on`, `acl[n].onType`), as a
/// sorted set; `None` when it supplies no ACL attribute at all.
fn acl_from(
    org: &OrgConfig,
    idp: &IdpConfig,
    login: &ValidatedLogin,
) -> Result<Option<Vec<AclEntry>>, Refusal> {
    if !idp.jit.acl_attributes {
        return Ok(None);
    }
    let mut parts: BTreeMap<u32, [Option<String>; 3]> = BTreeMap::new();
    for attribute in login.attributes() {
        let Some((index, part)) = values::parse_acl_name(&attribute.name) else {
            continue;
        };
        if parts.len() >= values::ACL_ENTRIES_MAX && !parts.contains_key(&index) {
            return Err(Refusal::TooManyAclEntries {
                count: parts.len() + 1,
                max: values::ACL_ENTRIES_MAX,
            });
        }
        let value = single_value(login, &attribute.name)?;
        parts.entry(index).or_default()[part] = value;
    }
    if parts.is_empty() {
        return Ok(None);
    }
    let mut entries = Vec::with_capacity(parts.len());
    for (index, [role_id, on, on_type]) in parts {
        // All three or none: an entry with only some is a mistake in the IdP's set-up.
        if role_id.is_none() && on.is_none() && on_type.is_none() {
            continue;
        }
        let role_id = role_id.ok_or(Refusal::IncompleteAclEntry {
            index,
            missing: "roleId",
        })?;
        let on = on.ok_or(Refusal::IncompleteAclEntry {
            index,
            missing: "on",
        })?;
        let on_type = on_type.ok_or(Refusal::IncompleteAclEntry {
            index,
            missing: "onType",
        })?;
        entries.push(values::acl_entry(org, index, &role_id, &on, &on_type)?);
    }
    entries.sort();
    entries.dedup();
    Ok(Some(entries))
}

/// One line of a user diff: a field, its value before and after.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldDiff {
    pub field: &'static str,
    pub before: Option<String>,
    pub after: Option<String>,
}

/// What a login would do, computed and not written: the events and a readable diff.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preview {
    pub decision: Decision,
    pub diff: Vec<FieldDiff>,
}

/// Dry run: [`decide`] against the stored configuration, or with `draft` JIT settings for
/// the IdP, and the user diff its events would make. Nothing is written.
pub fn preview(
    org: &OrgConfig,
    idp_id: &str,
    draft: Option<&crate::events::JitSettings>,
    user: Option<&UserState>,
    login: &ValidatedLogin,
) -> Result<Preview, Refusal> {
    let mut org = org.clone();
    if let (Some(draft), Some(idp)) = (draft, org.idps.get_mut(idp_id)) {
        idp.jit = draft.clone();
    }
    let decision = decide(&org, idp_id, user, login)?;
    let mut after = user.cloned();
    let base_version = user.map_or(0, |u| u.version);
    for (offset, event) in decision.events.iter().enumerate() {
        let applied = user::Applied {
            seq: 0,
            stream_version: base_version + offset as u64 + 1,
            recorded_at: login.authn_instant().unix_timestamp_nanos(),
            cause: "preview".to_string(),
        };
        after = user::apply(after, event, &applied);
    }
    Ok(Preview {
        diff: diff(user, after.as_ref()),
        decision,
    })
}

/// The fields that differ between two states of a user, in a fixed order.
pub fn diff(before: Option<&UserState>, after: Option<&UserState>) -> Vec<FieldDiff> {
    let mut lines = Vec::new();
    let mut push = |field, before: Option<String>, after: Option<String>| {
        if before != after {
            lines.push(FieldDiff {
                field,
                before,
                after,
            });
        }
    };
    for field in ProfileField::ALL {
        let value =
            |state: Option<&UserState>| state.and_then(|s| s.field(field)).map(str::to_string);
        push(field.view_name(), value(before), value(after));
    }
    let role = |state: Option<&UserState>| state.map(|s| s.role.value.clone());
    push("role", role(before), role(after));
    let acl = |state: Option<&UserState>| {
        state.map(|s| {
            let entries: Vec<String> = s
                .acl
                .value
                .iter()
                .map(|e| format!("{} on {} {}", e.role_id, e.on_type.as_str(), e.on))
                .collect();
            entries.join(", ")
        })
    };
    push("acl", acl(before), acl(after));
    lines
}
