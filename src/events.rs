//! The events of the ledger: what happened, in the past tense, with everything needed to
//! fold state from them and to explain that state to an auditor.
//!
//! Not for: storage or hashing (see `store`), or deciding which events to write (see
//! `provisioning`). Every event has a type name and a schema version; older versions are
//! upcast when read (see [`codec`]).

use serde::{Deserialize, Serialize};

pub mod codec;

/// Roles every organisation has without defining them.
pub const BUILT_IN_ROLES: [&str; 3] = ["Admin", "Developer", "Agent"];

/// The role a provisioned user gets when nothing else decides.
pub const DEFAULT_ROLE: &str = "Agent";

/// A profile field that an IdP attribute can fill.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ProfileField {
    Email,
    FirstName,
    LastName,
    DisplayName,
    PhoneNumber,
}

impl ProfileField {
    pub const ALL: [ProfileField; 5] = [
        ProfileField::Email,
        ProfileField::FirstName,
        ProfileField::LastName,
        ProfileField::DisplayName,
        ProfileField::PhoneNumber,
    ];

    /// The mapping key of CONTRACT.md (`USER_EMAIL`, …).
    pub fn mapping_key(self) -> &'static str {
        match self {
            ProfileField::Email => "USER_EMAIL",
            ProfileField::FirstName => "USER_FIRST_NAME",
            ProfileField::LastName => "USER_LAST_NAME",
            ProfileField::DisplayName => "USER_DISPLAY_NAME",
            ProfileField::PhoneNumber => "USER_PHONE_NUMBER",
        }
    }

    /// The field name in the user view (`email`, `first_name`, …).
    pub fn view_name(self) -> &'static str {
        match self {
            ProfileField::Email => "email",
            ProfileField::FirstName => "first_name",
            ProfileField::LastName => "last_name",
            ProfileField::DisplayName => "display_name",
            ProfileField::PhoneNumber => "phone_number",
        }
    }

    pub fn from_mapping_key(key: &str) -> Option<ProfileField> {
        ProfileField::ALL
            .into_iter()
            .find(|field| field.mapping_key() == key)
    }
}

/// What an ACL entry is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum OnType {
    Account,
    Folder,
    Location,
}

impl OnType {
    /// Case-insensitive, as IdPs send it.
    pub fn parse(text: &str) -> Option<OnType> {
        match text.trim().to_ascii_uppercase().as_str() {
            "ACCOUNT" => Some(OnType::Account),
            "FOLDER" => Some(OnType::Folder),
            "LOCATION" => Some(OnType::Location),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            OnType::Account => "ACCOUNT",
            OnType::Folder => "FOLDER",
            OnType::Location => "LOCATION",
        }
    }
}

/// One access grant: a role on a resource.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AclEntry {
    pub role_id: String,
    pub on: String,
    pub on_type: OnType,
}

/// Where a value came from: the answer to an auditor's "why".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Source {
    /// A SAML attribute of a login through this IdP.
    Attribute { idp_id: String, attribute: String },
    /// The IdP's default role, for lack of a role attribute.
    DefaultRole { idp_id: String },
    /// An admin action.
    Admin { token_id: String },
}

/// One changed profile field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldChange {
    pub field: ProfileField,
    pub from: Option<String>,
    pub to: Option<String>,
    pub source: Source,
}

/// Scope of an API token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TokenScope {
    Read,
    Admin,
}

/// JIT settings of one IdP (CONTRACT.md `PUT …/jit`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JitSettings {
    pub enabled: bool,
    pub default_role: String,
    pub idp_managed_roles: bool,
    /// Profile field or `USER_ROLE` mapping key → SAML attribute Name or FriendlyName.
    pub attribute_mapping: Vec<(String, String)>,
    pub acl_attributes: bool,
    pub required_for_creation: Vec<ProfileField>,
    /// When set, the user ID comes from this attribute instead of the NameID.
    pub user_id_attribute: Option<String>,
    pub allow_sha1: bool,
}

/// The organisation's SP side was set up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrgCreated {
    pub sp_entity_id: String,
    pub acs_url: String,
    pub clock_skew_seconds: i64,
    pub allow_idp_initiated: bool,
}

/// An IdP was connected, or its metadata replaced (same shape, two meanings).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdpMetadata {
    pub idp_id: String,
    pub entity_id: String,
    pub metadata_xml: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JitSettingsChanged {
    pub idp_id: String,
    pub settings: JitSettings,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleDefined {
    pub role_id: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleRemoved {
    pub role_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenIssued {
    pub token_id: String,
    pub scope: TokenScope,
    /// Only the hash is kept: a leaked log does not leak tokens.
    pub token_sha256: [u8; 32],
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRevoked {
    pub token_id: String,
}

/// A user was created by their first JIT login.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserProvisioned {
    pub user_id: String,
    pub idp_id: String,
    /// The profile fields set, each with its source (`from` is always `None`).
    pub profile: Vec<FieldChange>,
    pub role: String,
    pub role_source: Source,
    pub acl: Vec<AclEntry>,
    pub acl_source: Option<Source>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileUpdated {
    pub changes: Vec<FieldChange>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleChanged {
    pub from: String,
    pub to: String,
    pub reason: Source,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclReplaced {
    pub from: Vec<AclEntry>,
    pub to: Vec<AclEntry>,
    pub source: Source,
}

/// Every accepted login ends with one. Instants are Unix nanoseconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginRecorded {
    pub assertion_id: String,
    pub idp_id: String,
    pub authn_instant: i128,
    pub session_index: Option<String>,
    /// When the IdP says the session ends (AuthnStatement SessionNotOnOrAfter). Added in
    /// schema version 2; version 1 events did not record it and read back as `None`.
    pub session_not_on_or_after: Option<i128>,
}

/// Every event of the ledger. Variants are past tense; each has a [`Event::type_name`] and
/// a schema version (see [`codec`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    OrgCreated(OrgCreated),
    IdpRegistered(IdpMetadata),
    IdpMetadataReplaced(IdpMetadata),
    JitSettingsChanged(JitSettingsChanged),
    RoleDefined(RoleDefined),
    RoleRemoved(RoleRemoved),
    TokenIssued(TokenIssued),
    TokenRevoked(TokenRevoked),
    UserProvisioned(UserProvisioned),
    ProfileUpdated(ProfileUpdated),
    RoleChanged(RoleChanged),
    AclReplaced(AclReplaced),
    LoginRecorded(LoginRecorded),
}

impl Event {
    /// The stable name of the event type, as stored and as shown in the API.
    pub fn type_name(&self) -> &'static str {
        match self {
            Event::OrgCreated(_) => "OrgCreated",
            Event::IdpRegistered(_) => "IdpRegistered",
            Event::IdpMetadataReplaced(_) => "IdpMetadataReplaced",
            Event::JitSettingsChanged(_) => "JitSettingsChanged",
            Event::RoleDefined(_) => "RoleDefined",
            Event::RoleRemoved(_) => "RoleRemoved",
            Event::TokenIssued(_) => "TokenIssued",
            Event::TokenRevoked(_) => "TokenRevoked",
            Event::UserProvisioned(_) => "UserProvisioned",
            Event::ProfileUpdated(_) => "ProfileUpdated",
            Event::RoleChanged(_) => "RoleChanged",
            Event::AclReplaced(_) => "AclReplaced",
            Event::LoginRecorded(_) => "LoginRecorded",
        }
    }
}
