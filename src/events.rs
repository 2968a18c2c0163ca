//! The events of the ledger: what happened, in the past tense, with everything needed to
//! fold state from them and to explain that state to an auditor.
//!
//! Not for: storage or hashing (see `store`), or deciding which events to write (see
//! `provisioning`). Every event has a type name and a schema version; older versions are
//! upcast when read (see [`codec`]).
//!
//! Two serde forms. Stored: bincode, which writes neither field nor variant names, so the
//! renames below leave the stored bytes alone (`tests/events_golden.rs` holds them). JSON
//! (the `data` of `/v1/events`, history and previews): snake_case fields, enum values as
//! stable strings, sources as `{"kind": ...}` objects, hashes in hex. Where the two forms
//! differ in shape, the type asks the format `is_human_readable` (bincode says no).

use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub mod codec;

/// Roles every organisation has without defining them.
pub const BUILT_IN_ROLES: [&str; 3] = ["Admin", "Developer", "Agent"];

/// The role a provisioned user gets when nothing else decides.
pub const DEFAULT_ROLE: &str = "Agent";

/// A profile field that an IdP attribute can fill. JSON: its view name (`email`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
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

/// What an ACL entry is on. JSON: `ACCOUNT`, `FOLDER` or `LOCATION`, as the API shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
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

/// Where a value came from: the answer to an auditor's "why". JSON:
/// `{"kind": "attribute" | "default_role" | "admin", ...its fields}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A SAML attribute of a login through this IdP.
    Attribute { idp_id: String, attribute: String },
    /// The IdP's default role, for lack of a role attribute.
    DefaultRole { idp_id: String },
    /// An admin action.
    Admin { token_id: String },
}

/// The two serde forms of [`Source`]. Variant order is the stored form: never reorder.
mod source_form {
    use serde::{Deserialize, Serialize};

    /// Stored: serde's derived enum, as the bytes in the log were written.
    #[derive(Debug, Serialize, Deserialize)]
    #[serde(rename = "Source")]
    pub enum Stored {
        Attribute { idp_id: String, attribute: String },
        DefaultRole { idp_id: String },
        Admin { token_id: String },
    }

    /// JSON: internally tagged by `kind`.
    #[derive(Debug, Serialize, Deserialize)]
    #[serde(rename = "Source", tag = "kind", rename_all = "snake_case")]
    pub enum Json {
        Attribute { idp_id: String, attribute: String },
        DefaultRole { idp_id: String },
        Admin { token_id: String },
    }

    macro_rules! convert {
        ($form:ident) => {
            impl From<&super::Source> for $form {
                fn from(source: &super::Source) -> $form {
                    match source.clone() {
                        super::Source::Attribute { idp_id, attribute } => {
                            $form::Attribute { idp_id, attribute }
                        }
                        super::Source::DefaultRole { idp_id } => $form::DefaultRole { idp_id },
                        super::Source::Admin { token_id } => $form::Admin { token_id },
                    }
                }
            }

            impl From<$form> for super::Source {
                fn from(form: $form) -> super::Source {
                    match form {
                        $form::Attribute { idp_id, attribute } => {
                            super::Source::Attribute { idp_id, attribute }
                        }
                        $form::DefaultRole { idp_id } => super::Source::DefaultRole { idp_id },
                        $form::Admin { token_id } => super::Source::Admin { token_id },
                    }
                }
            }
        };
    }
    convert!(Stored);
    convert!(Json);
}

impl Serialize for Source {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            source_form::Json::from(self).serialize(serializer)
        } else {
            source_form::Stored::from(self).serialize(serializer)
        }
    }
}

impl<'de> Deserialize<'de> for Source {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Source, D::Error> {
        if deserializer.is_human_readable() {
            source_form::Json::deserialize(deserializer).map(Source::from)
        } else {
            source_form::Stored::deserialize(deserializer).map(Source::from)
        }
    }
}

/// JSON: an attribute mapping as an object, key → attribute; stored: the list of pairs.
mod mapping_form {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(
        mapping: &[(String, String)],
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.collect_map(mapping.iter().map(|(key, attribute)| (key, attribute)))
        } else {
            mapping.serialize(serializer)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<(String, String)>, D::Error> {
        if deserializer.is_human_readable() {
            deserializer.deserialize_map(InOrder)
        } else {
            Vec::deserialize(deserializer)
        }
    }

    /// Collects the object's entries in the order they come.
    struct InOrder;

    impl<'de> serde::de::Visitor<'de> for InOrder {
        type Value = Vec<(String, String)>;

        fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            formatter.write_str("an object of mapping key to attribute name")
        }

        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut map: A,
        ) -> Result<Self::Value, A::Error> {
            let mut entries = Vec::new();
            while let Some(entry) = map.next_entry()? {
                entries.push(entry);
            }
            Ok(entries)
        }
    }
}

/// JSON: a SHA-256 as lower-case hex; stored: the 32 bytes.
mod sha256_form {
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(digest: &[u8; 32], serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
            serializer.serialize_str(&hex)
        } else {
            digest.serialize(serializer)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<[u8; 32], D::Error> {
        if !deserializer.is_human_readable() {
            return <[u8; 32]>::deserialize(deserializer);
        }
        let hex = String::deserialize(deserializer)?;
        let bytes: Option<Vec<u8>> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
            .collect();
        bytes
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .ok_or_else(|| D::Error::custom("a SHA-256 is 64 hex digits"))
    }
}

/// One changed profile field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldChange {
    pub field: ProfileField,
    pub from: Option<String>,
    pub to: Option<String>,
    pub source: Source,
}

/// Scope of an API token. JSON: `read` or `admin`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
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
    #[serde(with = "mapping_form")]
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
    #[serde(with = "sha256_form")]
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn provisioned() -> Event {
        Event::UserProvisioned(UserProvisioned {
            user_id: "alice@example.com".to_string(),
            idp_id: "okta".to_string(),
            profile: vec![FieldChange {
                field: ProfileField::FirstName,
                from: None,
                to: Some("Alice".to_string()),
                source: Source::Attribute {
                    idp_id: "okta".to_string(),
                    attribute: "firstName".to_string(),
                },
            }],
            role: "Agent".to_string(),
            role_source: Source::DefaultRole {
                idp_id: "okta".to_string(),
            },
            acl: vec![AclEntry {
                role_id: "Admin".to_string(),
                on: "acct-1".to_string(),
                on_type: OnType::Account,
            }],
            acl_source: Some(Source::Admin {
                token_id: "t1".to_string(),
            }),
        })
    }

    #[test]
    fn json_form_is_snake_case_with_string_enum_values() {
        let value = serde_json::to_value(provisioned()).unwrap();
        assert_eq!(
            value["UserProvisioned"],
            json!({
                "user_id": "alice@example.com",
                "idp_id": "okta",
                "profile": [{
                    "field": "first_name", "from": null, "to": "Alice",
                    "source": {"kind": "attribute", "idp_id": "okta", "attribute": "firstName"},
                }],
                "role": "Agent",
                "role_source": {"kind": "default_role", "idp_id": "okta"},
                "acl": [{"role_id": "Admin", "on": "acct-1", "on_type": "ACCOUNT"}],
                "acl_source": {"kind": "admin", "token_id": "t1"},
            })
        );
        let issued = Event::TokenIssued(TokenIssued {
            token_id: "t1".to_string(),
            scope: TokenScope::Read,
            token_sha256: [0xab; 32],
        });
        let value = serde_json::to_value(&issued).unwrap();
        assert_eq!(value["TokenIssued"]["scope"], "read");
        assert_eq!(value["TokenIssued"]["token_sha256"], "ab".repeat(32));
        let settings = JitSettings {
            attribute_mapping: vec![("USER_ROLE".to_string(), "role".to_string())],
            required_for_creation: vec![ProfileField::Email],
            ..JitSettings::default()
        };
        let value = serde_json::to_value(&settings).unwrap();
        assert_eq!(value["attribute_mapping"], json!({"USER_ROLE": "role"}));
        assert_eq!(value["required_for_creation"], json!(["email"]));
    }

    #[test]
    fn json_form_reads_back() {
        for event in [
            provisioned(),
            Event::TokenIssued(TokenIssued {
                token_id: "t1".to_string(),
                scope: TokenScope::Admin,
                token_sha256: [3; 32],
            }),
            Event::JitSettingsChanged(JitSettingsChanged {
                idp_id: "okta".to_string(),
                settings: JitSettings::default(),
            }),
        ] {
            let text = serde_json::to_string(&event).unwrap();
            assert_eq!(serde_json::from_str::<Event>(&text).unwrap(), event);
        }
    }
}
