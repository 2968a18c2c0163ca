//! The stored form of events and envelopes: a format byte, then bincode 1.3.3.
//!
//! bincode 1.x is frozen (and marked unmaintained, RUSTSEC-2025-0141): its format will not
//! drift under us, and the leading format byte leaves room to move to another codec without
//! rewriting history. Each event carries its type name and schema version; an old version
//! is decoded with its old shape and upcast to the current one.

use serde::{Deserialize, Serialize};

use super::*;

/// The byte every stored record starts with.
pub const FORMAT_VERSION: u8 = 1;

/// Why stored bytes could not be read back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    #[error("unknown format version {0}")]
    UnknownFormat(u8),
    #[error("empty record")]
    Empty,
    #[error("undecodable record: {0}")]
    Bincode(String),
    #[error("unknown event type {type_name} at schema version {schema_version}")]
    UnknownEvent {
        type_name: String,
        schema_version: u16,
    },
}

fn bincode_error(error: bincode::Error) -> CodecError {
    CodecError::Bincode(error.to_string())
}

/// An event as stored: its type, the schema version its payload was written with, and the
/// payload (bincode of that version's struct).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredEvent {
    pub type_name: String,
    pub schema_version: u16,
    pub payload: Vec<u8>,
}

/// The schema version each event type is written with today.
pub fn current_schema_version(type_name: &str) -> u16 {
    match type_name {
        "LoginRecorded" => 2,
        _ => 1,
    }
}

/// Shapes of earlier schema versions, kept only to read old records.
mod legacy {
    use serde::Deserialize;

    /// LoginRecorded v1: before SessionNotOnOrAfter was recorded.
    #[derive(Debug, Deserialize)]
    pub struct LoginRecordedV1 {
        pub assertion_id: String,
        pub idp_id: String,
        pub authn_instant: i128,
        pub session_index: Option<String>,
    }

    impl From<LoginRecordedV1> for super::LoginRecorded {
        fn from(v1: LoginRecordedV1) -> Self {
            super::LoginRecorded {
                assertion_id: v1.assertion_id,
                idp_id: v1.idp_id,
                authn_instant: v1.authn_instant,
                session_index: v1.session_index,
                session_not_on_or_after: None,
            }
        }
    }
}

fn payload<T: Serialize>(value: &T) -> Vec<u8> {
    // Serialising these plain structs into a Vec cannot fail.
    bincode::serialize(value).unwrap_or_default()
}

impl StoredEvent {
    pub fn from_event(event: &Event) -> StoredEvent {
        let payload = match event {
            Event::OrgCreated(inner) => payload(inner),
            Event::IdpRegistered(inner) | Event::IdpMetadataReplaced(inner) => payload(inner),
            Event::JitSettingsChanged(inner) => payload(inner),
            Event::RoleDefined(inner) => payload(inner),
            Event::RoleRemoved(inner) => payload(inner),
            Event::TokenIssued(inner) => payload(inner),
            Event::TokenRevoked(inner) => payload(inner),
            Event::UserProvisioned(inner) => payload(inner),
            Event::ProfileUpdated(inner) => payload(inner),
            Event::RoleChanged(inner) => payload(inner),
            Event::AclReplaced(inner) => payload(inner),
            Event::LoginRecorded(inner) => payload(inner),
        };
        let type_name = event.type_name();
        StoredEvent {
            type_name: type_name.to_string(),
            schema_version: current_schema_version(type_name),
            payload,
        }
    }

    /// Decodes the payload, upcasting older schema versions.
    pub fn to_event(&self) -> Result<Event, CodecError> {
        fn read<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, CodecError> {
            bincode::deserialize(bytes).map_err(bincode_error)
        }
        let bytes = self.payload.as_slice();
        Ok(match (self.type_name.as_str(), self.schema_version) {
            ("OrgCreated", 1) => Event::OrgCreated(read(bytes)?),
            ("IdpRegistered", 1) => Event::IdpRegistered(read(bytes)?),
            ("IdpMetadataReplaced", 1) => Event::IdpMetadataReplaced(read(bytes)?),
            ("JitSettingsChanged", 1) => Event::JitSettingsChanged(read(bytes)?),
            ("RoleDefined", 1) => Event::RoleDefined(read(bytes)?),
            ("RoleRemoved", 1) => Event::RoleRemoved(read(bytes)?),
            ("TokenIssued", 1) => Event::TokenIssued(read(bytes)?),
            ("TokenRevoked", 1) => Event::TokenRevoked(read(bytes)?),
            ("UserProvisioned", 1) => Event::UserProvisioned(read(bytes)?),
            ("ProfileUpdated", 1) => Event::ProfileUpdated(read(bytes)?),
            ("RoleChanged", 1) => Event::RoleChanged(read(bytes)?),
            ("AclReplaced", 1) => Event::AclReplaced(read(bytes)?),
            ("LoginRecorded", 1) => {
                Event::LoginRecorded(read::<legacy::LoginRecordedV1>(bytes)?.into())
            }
            ("LoginRecorded", 2) => Event::LoginRecorded(read(bytes)?),
            (type_name, schema_version) => {
                return Err(CodecError::UnknownEvent {
                    type_name: type_name.to_string(),
                    schema_version,
                });
            }
        })
    }
}

/// Encodes one event on its own: the format byte, then the stored event.
pub fn encode_event(event: &Event) -> Vec<u8> {
    let mut bytes = vec![FORMAT_VERSION];
    bytes.extend(payload(&StoredEvent::from_event(event)));
    bytes
}

pub fn decode_event(bytes: &[u8]) -> Result<Event, CodecError> {
    let body = check_format(bytes)?;
    let stored: StoredEvent = bincode::deserialize(body).map_err(bincode_error)?;
    stored.to_event()
}

/// Strips the format byte after checking it.
pub fn check_format(bytes: &[u8]) -> Result<&[u8], CodecError> {
    match bytes.split_first() {
        None => Err(CodecError::Empty),
        Some((&FORMAT_VERSION, body)) => Ok(body),
        Some((&other, _)) => Err(CodecError::UnknownFormat(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn login_recorded() -> Event {
        Event::LoginRecorded(LoginRecorded {
            assertion_id: "_assertion-1".to_string(),
            idp_id: "okta".to_string(),
            authn_instant: 1_780_000_000_000_000_000,
            session_index: Some("_session-1".to_string()),
            session_not_on_or_after: Some(1_780_028_800_000_000_000),
        })
    }

    fn golden_path(name: &str) -> std::path::PathBuf {
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/events")
            .join(name)
    }

    #[test]
    fn events_round_trip() {
        let event = login_recorded();
        assert_eq!(decode_event(&encode_event(&event)), Ok(event));
    }

    #[test]
    fn unknown_format_is_refused() {
        let mut bytes = encode_event(&login_recorded());
        bytes[0] = 9;
        assert_eq!(decode_event(&bytes), Err(CodecError::UnknownFormat(9)));
        assert_eq!(decode_event(&[]), Err(CodecError::Empty));
    }

    /// The bytes of a LoginRecorded written at schema version 1, committed once and never
    /// regenerated: whatever the schema becomes, they must still decode, upcast.
    #[test]
    fn login_recorded_schema_v1_golden_file_decodes_upcast() {
        let bytes = std::fs::read(golden_path("login_recorded_v1.bin")).unwrap();
        let expected = Event::LoginRecorded(LoginRecorded {
            assertion_id: "_assertion-1".to_string(),
            idp_id: "okta".to_string(),
            authn_instant: 1_780_000_000_000_000_000,
            session_index: Some("_session-1".to_string()),
            session_not_on_or_after: None,
        });
        assert_eq!(decode_event(&bytes).unwrap(), expected);
    }

    #[test]
    fn login_recorded_is_written_at_schema_v2() {
        let stored = StoredEvent::from_event(&login_recorded());
        assert_eq!(stored.schema_version, 2);
    }
}
