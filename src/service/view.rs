//! JSON views: the USER of CONTRACT.md (with provenance), envelopes, and key summaries.
//! Each view is a type, so that `/openapi.json` describes exactly what is serialised.
//!
//! Not for: rules or storage; a view only shapes what the service already decided.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use utoipa::ToSchema;

use crate::events::{ProfileField, Source};
use crate::provisioning::user::{Provenance, UserState};
use crate::saml::keys::SigningKey;
use crate::store::{Cause, Envelope};

/// Unix nanoseconds as RFC 3339 (UTC).
pub fn instant_text(nanos: i128) -> Option<String> {
    OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
}

/// Unix nanoseconds as an RFC 3339 JSON string, or null.
pub fn instant(nanos: i128) -> Value {
    instant_text(nanos).map_or(Value::Null, Value::String)
}

/// Where a value came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SourceView {
    /// A SAML attribute of a login through this IdP.
    Attribute { idp_id: String, attribute: String },
    /// The IdP's default role, for lack of a role attribute.
    DefaultRole { idp_id: String },
    /// An admin action, by the token that made it.
    Admin { token_id: String },
}

impl From<&Source> for SourceView {
    fn from(source: &Source) -> SourceView {
        match source {
            Source::Attribute { idp_id, attribute } => SourceView::Attribute {
                idp_id: idp_id.clone(),
                attribute: attribute.clone(),
            },
            Source::DefaultRole { idp_id } => SourceView::DefaultRole {
                idp_id: idp_id.clone(),
            },
            Source::Admin { token_id } => SourceView::Admin {
                token_id: token_id.clone(),
            },
        }
    }
}

/// Which event set a value, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct ProvenanceView {
    pub source: SourceView,
    /// Global sequence number of the event that set the value.
    pub seq: u64,
    /// The login ID or admin token ID behind that event.
    pub cause: String,
}

impl From<&Provenance> for ProvenanceView {
    fn from(provenance: &Provenance) -> ProvenanceView {
        ProvenanceView {
            source: SourceView::from(&provenance.source),
            seq: provenance.seq,
            cause: provenance.cause.clone(),
        }
    }
}

/// One ACL entry of a user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct AclEntryView {
    pub role_id: String,
    pub on: String,
    /// `ACCOUNT`, `FOLDER` or `LOCATION`.
    pub on_type: String,
}

/// The USER object of CONTRACT.md: absent profile fields are null; `provenance` names,
/// for each set value, the event and source that set it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct UserView {
    pub user_id: String,
    pub idp_id: String,
    pub email: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub display_name: Option<String>,
    pub phone_number: Option<String>,
    pub role: String,
    pub acl: Vec<AclEntryView>,
    /// Always true: every user here came through SSO.
    pub sso: bool,
    /// RFC 3339.
    pub created_at: Option<String>,
    /// RFC 3339.
    pub updated_at: Option<String>,
    /// RFC 3339.
    pub last_login_at: Option<String>,
    /// The version of the user's stream.
    pub version: u64,
    /// Keyed by field name (`email`, …, `role`, `acl`).
    pub provenance: BTreeMap<String, ProvenanceView>,
}

/// The USER object of a user's state.
pub fn user(state: &UserState) -> UserView {
    let field = |field: ProfileField| state.field(field).map(str::to_string);
    let mut provenance = BTreeMap::new();
    for name in ProfileField::ALL {
        if let Some(value) = state.profile.get(&name) {
            provenance.insert(
                name.view_name().to_string(),
                ProvenanceView::from(&value.provenance),
            );
        }
    }
    provenance.insert(
        "role".to_string(),
        ProvenanceView::from(&state.role.provenance),
    );
    provenance.insert(
        "acl".to_string(),
        ProvenanceView::from(&state.acl.provenance),
    );
    UserView {
        user_id: state.user_id.clone(),
        idp_id: state.idp_id.clone(),
        email: field(ProfileField::Email),
        first_name: field(ProfileField::FirstName),
        last_name: field(ProfileField::LastName),
        display_name: field(ProfileField::DisplayName),
        phone_number: field(ProfileField::PhoneNumber),
        role: state.role.value.clone(),
        acl: state
            .acl
            .value
            .iter()
            .map(|entry| AclEntryView {
                role_id: entry.role_id.clone(),
                on: entry.on.clone(),
                on_type: entry.on_type.as_str().to_string(),
            })
            .collect(),
        sso: true,
        created_at: instant_text(state.created_at),
        updated_at: instant_text(state.updated_at),
        last_login_at: state.last_login_at.and_then(instant_text),
        version: state.version,
        provenance,
    }
}

/// Why an event was written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CauseView {
    /// A validated login: its ID, the assertion and the IdP.
    Login {
        login_id: String,
        assertion_id: String,
        idp_id: String,
    },
    /// An admin request, by the token that made it.
    Admin { token_id: String },
    /// The service itself.
    System,
}

impl From<&Cause> for CauseView {
    fn from(cause: &Cause) -> CauseView {
        match cause.clone() {
            Cause::Login {
                login_id,
                assertion_id,
                idp_id,
            } => CauseView::Login {
                login_id,
                assertion_id,
                idp_id,
            },
            Cause::Admin { token_id } => CauseView::Admin { token_id },
            Cause::System => CauseView::System,
        }
    }
}

impl From<CauseView> for Cause {
    fn from(view: CauseView) -> Cause {
        match view {
            CauseView::Login {
                login_id,
                assertion_id,
                idp_id,
            } => Cause::Login {
                login_id,
                assertion_id,
                idp_id,
            },
            CauseView::Admin { token_id } => Cause::Admin { token_id },
            CauseView::System => Cause::System,
        }
    }
}

/// One envelope of the log: hashes in hex, the event as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct EnvelopeView {
    /// Global sequence number.
    pub seq: u64,
    pub org_id: String,
    /// `config`, or `user:<user_id>`.
    pub stream: String,
    pub stream_version: u64,
    /// RFC 3339.
    pub recorded_at: Option<String>,
    /// The login, admin token or system action behind the event.
    pub cause: CauseView,
    /// The event type name (`UserProvisioned`, `LoginRecorded`, …).
    #[serde(rename = "type")]
    pub event_type: String,
    /// The event's fields, snake_case.
    pub data: Value,
    /// SHA-256 of the previous envelope, hex.
    pub prev_hash: String,
    /// SHA-256 of this envelope, hex.
    pub hash: String,
}

/// An envelope for `/v1/events` and history.
pub fn envelope(envelope: &Envelope) -> EnvelopeView {
    EnvelopeView {
        seq: envelope.seq,
        org_id: envelope.org_id.clone(),
        stream: envelope.stream.clone(),
        stream_version: envelope.stream_version,
        recorded_at: instant_text(envelope.recorded_at),
        cause: CauseView::from(&envelope.cause),
        event_type: envelope.event.type_name().to_string(),
        data: event_data(&envelope.event),
        prev_hash: hex(&envelope.prev_hash),
        hash: hex(&envelope.hash),
    }
}

/// The fields of an event as a JSON object (its serde form, without the type tag).
pub fn event_data(event: &crate::events::Event) -> Value {
    let value = serde_json::to_value(event).unwrap_or(Value::Null);
    // Externally tagged enum: {"TypeName": {...}} → the inner object.
    match value {
        Value::Object(map) if map.len() == 1 => {
            map.into_iter().next().map_or(Value::Null, |(_, v)| v)
        }
        other => other,
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A signing certificate of an IdP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct CertificateView {
    /// Colon-separated upper-case hex.
    pub sha256_fingerprint: String,
    /// RFC 3339.
    pub not_after: Option<String>,
    pub subject: String,
    /// The key's algorithm and size: `RSA-2048`, `EC-P256` or `EC-P384`.
    pub key: String,
}

pub fn signing_key(key: &SigningKey) -> CertificateView {
    CertificateView {
        sha256_fingerprint: key.fingerprint_hex(),
        not_after: instant_text(key.not_after_unix() as i128 * 1_000_000_000),
        subject: key.subject().to_string(),
        key: key.kind().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{Event, TokenRevoked};
    use serde_json::json;

    fn envelope_with(cause: Cause) -> Envelope {
        Envelope {
            seq: 7,
            org_id: "acme".to_string(),
            stream: "config".to_string(),
            stream_version: 3,
            recorded_at: 1_780_000_000_000_000_000,
            cause,
            event: Event::TokenRevoked(TokenRevoked {
                token_id: "t1".to_string(),
            }),
            prev_hash: [1; 32],
            hash: [2; 32],
        }
    }

    #[test]
    fn envelopes_show_the_cause_by_kind_and_read_back() {
        let causes = [
            (
                Cause::Login {
                    login_id: "login_1".to_string(),
                    assertion_id: "_a1".to_string(),
                    idp_id: "okta".to_string(),
                },
                json!({"kind": "login", "login_id": "login_1", "assertion_id": "_a1",
                    "idp_id": "okta"}),
            ),
            (
                Cause::Admin {
                    token_id: "bootstrap".to_string(),
                },
                json!({"kind": "admin", "token_id": "bootstrap"}),
            ),
            (Cause::System, json!({"kind": "system"})),
        ];
        for (cause, expected) in causes {
            let original = envelope_with(cause);
            let value = serde_json::to_value(envelope(&original)).unwrap();
            assert_eq!(value["cause"], expected);
            assert_eq!(value["type"], "TokenRevoked");
            assert_eq!(value["data"], json!({"token_id": "t1"}));
            assert_eq!(
                crate::cli::envelope_from_json(&value),
                Some(original),
                "the view reads back"
            );
        }
    }
}
