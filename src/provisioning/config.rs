//! The organisation's configuration as folded from its configuration events: SP settings,
//! IdPs with their JIT settings, roles and token hashes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::events::{
    BUILT_IN_ROLES, DEFAULT_ROLE, Event, JitSettings, OrgCreated, ProfileField, TokenScope,
};

/// The mapping key of the role attribute.
pub const USER_ROLE: &str = "USER_ROLE";

/// One connected IdP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdpConfig {
    pub idp_id: String,
    pub entity_id: String,
    pub metadata_xml: String,
    pub jit: JitSettings,
}

/// An organisation's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrgConfig {
    pub org_id: String,
    pub sp_entity_id: String,
    pub acs_url: String,
    pub clock_skew_seconds: i64,
    pub allow_idp_initiated: bool,
    pub idps: BTreeMap<String, IdpConfig>,
    /// Custom roles, id → name. The built-in roles are always there too.
    pub custom_roles: BTreeMap<String, String>,
    pub tokens: BTreeMap<String, (TokenScope, [u8; 32])>,
}

impl OrgConfig {
    pub fn created(org_id: &str, created: &OrgCreated) -> OrgConfig {
        OrgConfig {
            org_id: org_id.to_string(),
            sp_entity_id: created.sp_entity_id.clone(),
            acs_url: created.acs_url.clone(),
            clock_skew_seconds: created.clock_skew_seconds,
            allow_idp_initiated: created.allow_idp_initiated,
            idps: BTreeMap::new(),
            custom_roles: BTreeMap::new(),
            tokens: BTreeMap::new(),
        }
    }

    /// Applies one configuration event. User events leave the configuration alone.
    pub fn apply(&mut self, event: &Event) {
        match event {
            Event::OrgCreated(created) => *self = OrgConfig::created(&self.org_id, created),
            Event::IdpRegistered(idp) | Event::IdpMetadataReplaced(idp) => {
                let jit = self
                    .idps
                    .get(&idp.idp_id)
                    .map(|existing| existing.jit.clone());
                self.idps.insert(
                    idp.idp_id.clone(),
                    IdpConfig {
                        idp_id: idp.idp_id.clone(),
                        entity_id: idp.entity_id.clone(),
                        metadata_xml: idp.metadata_xml.clone(),
                        jit: jit.unwrap_or_default(),
                    },
                );
            }
            Event::JitSettingsChanged(changed) => {
                if let Some(idp) = self.idps.get_mut(&changed.idp_id) {
                    idp.jit = changed.settings.clone();
                }
            }
            Event::RoleDefined(role) => {
                self.custom_roles
                    .insert(role.role_id.clone(), role.name.clone());
            }
            Event::RoleRemoved(role) => {
                self.custom_roles.remove(&role.role_id);
            }
            Event::TokenIssued(token) => {
                self.tokens
                    .insert(token.token_id.clone(), (token.scope, token.token_sha256));
            }
            Event::TokenRevoked(token) => {
                self.tokens.remove(&token.token_id);
            }
            Event::UserProvisioned(_)
            | Event::ProfileUpdated(_)
            | Event::RoleChanged(_)
            | Event::AclReplaced(_)
            | Event::LoginRecorded(_) => {}
        }
    }

    /// The role id a value from an IdP or an admin names: a role's id or name, compared
    /// case-insensitively (CONTRACT.md). Built-in roles are their own id and name.
    pub fn role_id_for(&self, value: &str) -> Option<String> {
        let value = value.trim();
        let built_in = BUILT_IN_ROLES
            .iter()
            .find(|role| role.eq_ignore_ascii_case(value));
        if let Some(role) = built_in {
            return Some(role.to_string());
        }
        self.custom_roles
            .iter()
            .find(|(id, name)| id.eq_ignore_ascii_case(value) || name.eq_ignore_ascii_case(value))
            .map(|(id, _)| id.clone())
    }

    /// The entity IDs of the org's IdPs, to route a response by its Issuer.
    pub fn idp_by_entity_id(&self, entity_id: &str) -> Option<&IdpConfig> {
        self.idps.values().find(|idp| idp.entity_id == entity_id)
    }
}

impl Default for JitSettings {
    /// CONTRACT.md defaults: off, default role Agent, the Yext attribute names, ACL
    /// attributes on, email and names required to create a user.
    fn default() -> Self {
        JitSettings {
            enabled: false,
            default_role: DEFAULT_ROLE.to_string(),
            idp_managed_roles: false,
            attribute_mapping: mapping_preset("yext").unwrap_or_default(),
            acl_attributes: true,
            required_for_creation: vec![
                ProfileField::Email,
                ProfileField::FirstName,
                ProfileField::LastName,
            ],
            user_id_attribute: None,
            allow_sha1: false,
        }
    }
}

/// Named attribute mappings for common IdPs, so admins need not type claim URIs.
/// `yext` is the default; `entra` covers Entra ID and ADFS claim types; `okta` Okta's usual
/// attribute statements; `shibboleth` the eduPerson/inetOrgPerson OIDs.
pub fn mapping_preset(name: &str) -> Option<Vec<(String, String)>> {
    let pairs: [(&str, &str); 6] = match name {
        "yext" => [
            (USER_ROLE, "role"),
            ("USER_FIRST_NAME", "firstName"),
            ("USER_LAST_NAME", "lastName"),
            ("USER_DISPLAY_NAME", "displayName"),
            ("USER_PHONE_NUMBER", "phoneNumber"),
            ("USER_EMAIL", "emailAddress"),
        ],
        "entra" => [
            (
                USER_ROLE,
                "http://schemas.microsoft.com/ws/2008/06/identity/claims/role",
            ),
            (
                "USER_FIRST_NAME",
                "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/givenname",
            ),
            (
                "USER_LAST_NAME",
                "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/surname",
            ),
            (
                "USER_DISPLAY_NAME",
                "http://schemas.microsoft.com/identity/claims/displayname",
            ),
            (
                "USER_PHONE_NUMBER",
                "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/mobilephone",
            ),
            (
                "USER_EMAIL",
                "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress",
            ),
        ],
        "okta" => [
            (USER_ROLE, "role"),
            ("USER_FIRST_NAME", "firstName"),
            ("USER_LAST_NAME", "lastName"),
            ("USER_DISPLAY_NAME", "displayName"),
            ("USER_PHONE_NUMBER", "mobilePhone"),
            ("USER_EMAIL", "email"),
        ],
        "shibboleth" => [
            (USER_ROLE, "urn:oid:1.3.6.1.4.1.5923.1.1.1.1"),
            ("USER_FIRST_NAME", "urn:oid:2.5.4.42"),
            ("USER_LAST_NAME", "urn:oid:2.5.4.4"),
            ("USER_DISPLAY_NAME", "urn:oid:2.16.840.1.113730.3.1.241"),
            ("USER_PHONE_NUMBER", "urn:oid:2.5.4.20"),
            ("USER_EMAIL", "urn:oid:0.9.2342.19200300.100.1.3"),
        ],
        _ => return None,
    };
    Some(
        pairs
            .iter()
            .map(|(key, attribute)| (key.to_string(), attribute.to_string()))
            .collect(),
    )
}

/// Why JIT settings were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct SettingsError {
    pub field: String,
    pub reason: String,
}

/// Checks settings against the organisation before they are accepted: every mapping key is
/// a known field, the default role exists, attribute names are not empty.
pub fn check_jit_settings(org: &OrgConfig, settings: &JitSettings) -> Result<(), SettingsError> {
    let error = |field: &str, reason: String| SettingsError {
        field: field.to_string(),
        reason,
    };
    if org.role_id_for(&settings.default_role).is_none() {
        return Err(error(
            "default_role",
            format!("unknown role {:?}", settings.default_role),
        ));
    }
    for (key, attribute) in &settings.attribute_mapping {
        if key != USER_ROLE && ProfileField::from_mapping_key(key).is_none() {
            return Err(error("attribute_mapping", format!("unknown field {key:?}")));
        }
        if attribute.trim().is_empty() {
            return Err(error(
                "attribute_mapping",
                format!("{key} maps to an empty name"),
            ));
        }
    }
    if let Some(attribute) = &settings.user_id_attribute
        && attribute.trim().is_empty()
    {
        return Err(error(
            "user_id_attribute",
            "empty attribute name".to_string(),
        ));
    }
    Ok(())
}
