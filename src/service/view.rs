//! JSON views: the USER of CONTRACT.md (with provenance), envelopes, and key summaries.

use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::events::{ProfileField, Source};
use crate::provisioning::user::{Provenance, UserState};
use crate::saml::keys::SigningKey;
use crate::store::Envelope;

/// Unix nanoseconds as RFC 3339 (UTC).
pub fn instant(nanos: i128) -> Value {
    OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .map_or(Value::Null, Value::String)
}

fn source(source: &Source) -> Value {
    match source {
        Source::Attribute { idp_id, attribute } => {
            json!({ "kind": "attribute", "idp_id": idp_id, "attribute": attribute })
        }
        Source::DefaultRole { idp_id } => json!({ "kind": "default_role", "idp_id": idp_id }),
        Source::Admin { token_id } => json!({ "kind": "admin", "token_id": token_id }),
    }
}

fn provenance(provenance: &Provenance) -> Value {
    json!({ "source": source(&provenance.source), "seq": provenance.seq, "cause": provenance.cause })
}

/// The USER object: CONTRACT.md's fields (absent profile fields null) plus `provenance`.
pub fn user(state: &UserState) -> Value {
    let mut view = json!({
        "user_id": state.user_id,
        "idp_id": state.idp_id,
        "role": state.role.value,
        "acl": state.acl.value.iter().map(|entry| json!({
            "role_id": entry.role_id, "on": entry.on, "on_type": entry.on_type.as_str(),
        })).collect::<Vec<_>>(),
        "sso": true,
        "created_at": instant(state.created_at),
        "updated_at": instant(state.updated_at),
        "last_login_at": state.last_login_at.map_or(Value::Null, instant),
        "version": state.version,
    });
    let mut traced = serde_json::Map::new();
    for field in ProfileField::ALL {
        let value = state.profile.get(&field);
        view[field.view_name()] = value.map_or(Value::Null, |v| Value::String(v.value.clone()));
        if let Some(value) = value {
            traced.insert(field.view_name().to_string(), provenance(&value.provenance));
        }
    }
    traced.insert("role".to_string(), provenance(&state.role.provenance));
    traced.insert("acl".to_string(), provenance(&state.acl.provenance));
    view["provenance"] = Value::Object(traced);
    view
}

/// An envelope for `/v1/events` and history: hashes in hex, the event as JSON.
pub fn envelope(envelope: &Envelope) -> Value {
    json!({
        "seq": envelope.seq,
        "org_id": envelope.org_id,
        "stream": envelope.stream,
        "stream_version": envelope.stream_version,
        "recorded_at": instant(envelope.recorded_at),
        "cause": serde_json::to_value(&envelope.cause).unwrap_or(Value::Null),
        "type": envelope.event.type_name(),
        "data": event_data(&envelope.event),
        "prev_hash": hex(&envelope.prev_hash),
        "hash": hex(&envelope.hash),
    })
}

fn event_data(event: &crate::events::Event) -> Value {
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

pub fn signing_key(key: &SigningKey) -> Value {
    json!({
        "sha256_fingerprint": key.fingerprint_hex(),
        "not_after": instant(key.not_after_unix() as i128 * 1_000_000_000),
        "subject": key.subject(),
        "key": format!("{:?}", key.kind()),
    })
}
