//! The stored bytes of every event type, written once by `encode_event` at schema version 1
//! (LoginRecorded: 2) and committed, never regenerated: whatever the Rust types and their serde attributes become, these
//! bytes must decode to the same events, and today's events must encode to these bytes.
//! Every variant of every enum inside an event (sources, profile fields, ACL resource
//! types, token scopes) appears at least once.

use jitledger::events::codec::{decode_event, encode_event};
use jitledger::events::*;

fn attribute(attribute: &str) -> Source {
    Source::Attribute {
        idp_id: "okta".to_string(),
        attribute: attribute.to_string(),
    }
}

fn change(field: ProfileField, from: Option<&str>, to: &str, source: Source) -> FieldChange {
    FieldChange {
        field,
        from: from.map(str::to_string),
        to: Some(to.to_string()),
        source,
    }
}

fn acl(role_id: &str, on: &str, on_type: OnType) -> AclEntry {
    AclEntry {
        role_id: role_id.to_string(),
        on: on.to_string(),
        on_type,
    }
}

fn idp_metadata() -> IdpMetadata {
    IdpMetadata {
        idp_id: "okta".to_string(),
        entity_id: "https://idp.example.com/metadata".to_string(),
        metadata_xml: "<md:EntityDescriptor/>".to_string(),
    }
}

/// One event of each type, named for its golden file.
fn samples() -> Vec<(&'static str, Event)> {
    vec![
        (
            "org_created",
            Event::OrgCreated(OrgCreated {
                sp_entity_id: "https://sp.example.com/metadata".to_string(),
                acs_url: "https://sp.example.com/acs".to_string(),
                clock_skew_seconds: 120,
                allow_idp_initiated: true,
            }),
        ),
        ("idp_registered", Event::IdpRegistered(idp_metadata())),
        (
            "idp_metadata_replaced",
            Event::IdpMetadataReplaced(idp_metadata()),
        ),
        (
            "jit_settings_changed",
            Event::JitSettingsChanged(JitSettingsChanged {
                idp_id: "okta".to_string(),
                settings: JitSettings {
                    enabled: true,
                    default_role: "Agent".to_string(),
                    idp_managed_roles: true,
                    attribute_mapping: vec![
                        ("USER_EMAIL".to_string(), "emailAddress".to_string()),
                        ("USER_ROLE".to_string(), "role".to_string()),
                    ],
                    acl_attributes: true,
                    required_for_creation: ProfileField::ALL.to_vec(),
                    user_id_attribute: Some("uid".to_string()),
                    allow_sha1: false,
                },
            }),
        ),
        (
            "role_defined",
            Event::RoleDefined(RoleDefined {
                role_id: "auditor".to_string(),
                name: "Auditor".to_string(),
            }),
        ),
        (
            "role_removed",
            Event::RoleRemoved(RoleRemoved {
                role_id: "auditor".to_string(),
            }),
        ),
        (
            "token_issued_read",
            Event::TokenIssued(TokenIssued {
                token_id: "0011223344556677".to_string(),
                scope: TokenScope::Read,
                token_sha256: [7; 32],
            }),
        ),
        (
            "token_issued_admin",
            Event::TokenIssued(TokenIssued {
                token_id: "8899aabbccddeeff".to_string(),
                scope: TokenScope::Admin,
                token_sha256: [9; 32],
            }),
        ),
        (
            "token_revoked",
            Event::TokenRevoked(TokenRevoked {
                token_id: "0011223344556677".to_string(),
            }),
        ),
        (
            "user_provisioned",
            Event::UserProvisioned(UserProvisioned {
                user_id: "alice@example.com".to_string(),
                idp_id: "okta".to_string(),
                profile: vec![
                    change(
                        ProfileField::Email,
                        None,
                        "alice@example.com",
                        attribute("mail"),
                    ),
                    change(
                        ProfileField::FirstName,
                        None,
                        "Alice",
                        attribute("firstName"),
                    ),
                    change(
                        ProfileField::LastName,
                        None,
                        "Liddell",
                        attribute("lastName"),
                    ),
                ],
                role: "Agent".to_string(),
                role_source: Source::DefaultRole {
                    idp_id: "okta".to_string(),
                },
                acl: vec![
                    acl("Admin", "acct-1", OnType::Account),
                    acl("Agent", "folder-2", OnType::Folder),
                ],
                acl_source: Some(attribute("acl")),
            }),
        ),
        (
            "profile_updated",
            Event::ProfileUpdated(ProfileUpdated {
                changes: vec![
                    change(
                        ProfileField::DisplayName,
                        Some("Al"),
                        "Alice L.",
                        Source::Admin {
                            token_id: "8899aabbccddeeff".to_string(),
                        },
                    ),
                    change(
                        ProfileField::PhoneNumber,
                        None,
                        "+1 555 0100",
                        attribute("phoneNumber"),
                    ),
                ],
            }),
        ),
        (
            "role_changed",
            Event::RoleChanged(RoleChanged {
                from: "Agent".to_string(),
                to: "Admin".to_string(),
                reason: attribute("role"),
            }),
        ),
        (
            "acl_replaced",
            Event::AclReplaced(AclReplaced {
                from: vec![acl("Admin", "acct-1", OnType::Account)],
                to: vec![acl("Developer", "loc-3", OnType::Location)],
                source: attribute("acl"),
            }),
        ),
        (
            "login_recorded",
            Event::LoginRecorded(LoginRecorded {
                assertion_id: "_assertion-1".to_string(),
                idp_id: "okta".to_string(),
                authn_instant: 1_780_000_000_000_000_000,
                session_index: Some("_session-1".to_string()),
                session_not_on_or_after: Some(1_780_028_800_000_000_000),
            }),
        ),
    ]
}

fn golden_path(name: &str) -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/events")
        .join(format!("{name}.bin"))
}

#[test]
fn every_event_type_decodes_from_and_encodes_to_its_golden_bytes() {
    let mut types = std::collections::BTreeSet::new();
    for (name, event) in samples() {
        let path = golden_path(name);
        let golden =
            std::fs::read(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
        assert_eq!(decode_event(&golden).as_ref(), Ok(&event), "{name} decodes");
        assert_eq!(
            encode_event(&event),
            golden,
            "{name} encodes to the same bytes"
        );
        types.insert(event.type_name());
    }
    assert_eq!(types.len(), 13, "one sample of every event type: {types:?}");
}
