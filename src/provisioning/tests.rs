//! Given/when/then tests of the provisioning rules, with no storage: given an organisation
//! and the events so far, when a login arrives, then these events (snapshots in
//! `snapshots/`) or this refusal.

use proptest::prelude::*;

use super::config::{check_jit_settings, mapping_preset};
use super::user::{Applied, apply};
use super::*;
use crate::events::{JitSettings, JitSettingsChanged, OrgCreated, RoleDefined};
use crate::saml::response::ValidatedLogin;

const OKTA: &str = "okta";
const ENTRA: &str = "entra";

/// An org with two IdPs (JIT on, defaults) and a custom role "support" named "Support Agent".
fn org() -> OrgConfig {
    let mut org = OrgConfig::created(
        "acme",
        &OrgCreated {
            sp_entity_id: "https://sp.example.com".into(),
            acs_url: "https://sp.example.com/acs".into(),
            clock_skew_seconds: 120,
            allow_idp_initiated: true,
        },
    );
    for idp in [OKTA, ENTRA] {
        org.apply(&Event::IdpRegistered(crate::events::IdpMetadata {
            idp_id: idp.into(),
            entity_id: format!("https://{idp}.example.com"),
            metadata_xml: String::new(),
        }));
        org.apply(&Event::JitSettingsChanged(JitSettingsChanged {
            idp_id: idp.into(),
            settings: JitSettings {
                enabled: true,
                ..JitSettings::default()
            },
        }));
    }
    org.apply(&Event::RoleDefined(RoleDefined {
        role_id: "support".into(),
        name: "Support Agent".into(),
    }));
    org
}

fn with_settings(change: impl FnOnce(&mut JitSettings)) -> OrgConfig {
    let mut org = org();
    if let Some(idp) = org.idps.get_mut(OKTA) {
        change(&mut idp.jit);
    }
    org
}

fn login(assertion_id: &str, attributes: &[(&str, &[&str])]) -> ValidatedLogin {
    ValidatedLogin::for_tests(assertion_id, "alice@example.com", None, attributes)
}

const ALICE: &[(&str, &[&str])] = &[
    ("emailAddress", &["alice@example.com"]),
    ("firstName", &["Alice"]),
    ("lastName", &["Liddell"]),
];

/// Folds a decision's events onto `state`, as the store would after appending them.
fn fold(mut state: Option<UserState>, decision: &Decision, first_seq: u64) -> Option<UserState> {
    let base_version = state.as_ref().map_or(0, |s| s.version);
    for (offset, event) in decision.events.iter().enumerate() {
        let applied = Applied {
            seq: first_seq + offset as u64,
            stream_version: base_version + offset as u64 + 1,
            recorded_at: (first_seq + offset as u64) as i128 * 1_000_000_000,
            cause: "login-1".into(),
        };
        state = apply(state, event, &applied);
    }
    state
}

/// Given a user provisioned by `attributes` through Okta.
fn existing(org: &OrgConfig, attributes: &[(&str, &[&str])]) -> UserState {
    let decision = decide(org, OKTA, None, &login("_first", attributes)).unwrap();
    fold(None, &decision, 1).unwrap()
}

fn types(decision: &Decision) -> Vec<&'static str> {
    decision.events.iter().map(Event::type_name).collect()
}

macro_rules! assert_events_snapshot {
    ($name:expr, $decision:expr) => {
        insta::with_settings!({ snapshot_path => "../../snapshots", prepend_module_to_snapshot => false }, {
            insta::assert_debug_snapshot!($name, $decision.events);
        });
    };
}

fn refusal(result: Result<Decision, Refusal>) -> Refusal {
    result.expect_err("expected a refusal")
}

// ---- Creation (Yext: create only with enough attributes; Airkit: default role Agent).

#[test]
fn yext_unknown_user_with_enough_attributes_is_provisioned() {
    let decision = decide(&org(), OKTA, None, &login("_a1", ALICE)).unwrap();
    assert_eq!(decision.outcome, Outcome::Provisioned);
    assert_eq!(decision.user_id, "alice@example.com");
    assert_events_snapshot!("provisioning_new_user", decision);
}

#[test]
fn yext_unknown_user_without_enough_attributes_is_refused_naming_each_missing_field() {
    let result = decide(
        &org(),
        OKTA,
        None,
        &login("_a1", &[("firstName", &["Alice"])]),
    );
    assert_eq!(
        refusal(result),
        Refusal::InsufficientAttributes {
            user_id: "alice@example.com".into(),
            missing: vec!["USER_EMAIL".into(), "USER_LAST_NAME".into()],
        }
    );
}

#[test]
fn required_for_creation_is_configurable() {
    let org = with_settings(|jit| jit.required_for_creation = vec![ProfileField::Email]);
    let decision = decide(
        &org,
        OKTA,
        None,
        &login("_a1", &[("emailAddress", &["a@example.com"])]),
    );
    assert_eq!(decision.unwrap().outcome, Outcome::Provisioned);
}

#[test]
fn unknown_user_with_jit_off_is_user_not_found() {
    let org = with_settings(|jit| jit.enabled = false);
    let result = decide(&org, OKTA, None, &login("_a1", ALICE));
    assert_eq!(refusal(result).code(), "user_not_found");
}

#[test]
fn known_user_with_jit_off_only_records_the_login() {
    let user = existing(&org(), ALICE);
    let org = with_settings(|jit| jit.enabled = false);
    let decision = decide(
        &org,
        OKTA,
        Some(&user),
        &login("_a2", &[("firstName", &["Alicia"])]),
    )
    .unwrap();
    assert_eq!(types(&decision), ["LoginRecorded"]);
}

#[test]
fn airkit_default_role_is_agent() {
    let user = existing(&org(), ALICE);
    assert_eq!(user.role.value, "Agent");
    assert_eq!(
        user.role.provenance.source,
        Source::DefaultRole {
            idp_id: OKTA.into()
        }
    );
}

#[test]
fn yext_id_username_and_sso_cannot_be_set_by_attributes() {
    let org = with_settings(|jit| {
        jit.attribute_mapping
            .push(("USER_DISPLAY_NAME".into(), "username".into()));
    });
    let attributes: &[(&str, &[&str])] = &[
        ("emailAddress", &["alice@example.com"]),
        ("firstName", &["Alice"]),
        ("lastName", &["Liddell"]),
        ("username", &["root"]),
        ("id", &["0"]),
        ("sso", &["false"]),
    ];
    let user = existing(&org, attributes);
    assert_eq!(user.user_id, "alice@example.com");
    assert_eq!(user.field(ProfileField::DisplayName), None);
}

// ---- Updates (Airkit: profile changes reach existing accounts; Yext: absent leaves alone).

#[test]
fn airkit_profile_change_in_idp_reaches_existing_account_at_next_login() {
    let user = existing(&org(), ALICE);
    let attributes: &[(&str, &[&str])] = &[
        ("lastName", &["Hargreaves"]),
        ("phoneNumber", &["+44 20 7946 0000"]),
    ];
    let decision = decide(&org(), OKTA, Some(&user), &login("_a2", attributes)).unwrap();
    assert_eq!(decision.outcome, Outcome::Updated);
    assert_events_snapshot!("provisioning_profile_updated", decision);
}

#[test]
fn yext_absent_attributes_leave_stored_values_alone() {
    let user = existing(&org(), ALICE);
    let decision = decide(&org(), OKTA, Some(&user), &login("_a2", &[])).unwrap();
    assert_eq!(decision.outcome, Outcome::Unchanged);
    assert_eq!(types(&decision), ["LoginRecorded"]);
}

#[test]
fn every_accepted_login_ends_with_login_recorded() {
    let decision = decide(&org(), OKTA, None, &login("_a1", ALICE)).unwrap();
    match decision.events.last() {
        Some(Event::LoginRecorded(recorded)) => {
            assert_eq!(recorded.assertion_id, "_a1");
            assert_eq!(recorded.idp_id, OKTA);
            assert_eq!(recorded.session_index.as_deref(), Some("_a1-session"));
            assert!(recorded.session_not_on_or_after.is_some());
        }
        other => panic!("last event is {other:?}"),
    }
}

#[test]
fn login_through_another_idp_of_the_org_is_idp_mismatch() {
    let user = existing(&org(), ALICE);
    let result = decide(&org(), ENTRA, Some(&user), &login("_a2", ALICE));
    assert_eq!(refusal(result).code(), "idp_mismatch");
}

// ---- Identity.

#[test]
fn yext_username_is_the_name_id_lower_cased_for_email_format() {
    let login = ValidatedLogin::for_tests(
        "_a1",
        "Alice@Example.COM",
        Some("urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"),
        ALICE,
    );
    assert_eq!(
        decide(&org(), OKTA, None, &login).unwrap().user_id,
        "alice@example.com"
    );
    let unspecified = ValidatedLogin::for_tests("_a1", "Alice", None, ALICE);
    assert_eq!(
        decide(&org(), OKTA, None, &unspecified).unwrap().user_id,
        "Alice"
    );
}

#[test]
fn transient_name_id_needs_a_user_id_attribute() {
    let transient = "urn:oasis:names:tc:SAML:2.0:nameid-format:transient";
    let mut attributes = ALICE.to_vec();
    attributes.push(("employeeNumber", &["E-1234"]));
    let login = ValidatedLogin::for_tests("_a1", "_9f8e7d", Some(transient), &attributes);
    assert_eq!(
        refusal(decide(&org(), OKTA, None, &login)),
        Refusal::TransientNameId
    );
    let org = with_settings(|jit| jit.user_id_attribute = Some("employeeNumber".into()));
    assert_eq!(decide(&org, OKTA, None, &login).unwrap().user_id, "E-1234");
}

// ---- Roles.

fn managed() -> OrgConfig {
    with_settings(|jit| jit.idp_managed_roles = true)
}

fn with_role(role: &'static [&'static str]) -> Vec<(&'static str, &'static [&'static str])> {
    let mut attributes = ALICE.to_vec();
    attributes.push(("role", role));
    attributes
}

#[test]
fn airkit_idp_managed_role_matches_built_in_and_custom_roles_by_id_or_name() {
    for value in ["developer", "SUPPORT", "support agent"] {
        let user = existing(&managed(), &with_role(Box::leak(Box::new([value]))));
        let expected = if value == "developer" {
            "Developer"
        } else {
            "support"
        };
        assert_eq!(user.role.value, expected, "{value}");
    }
}

#[test]
fn airkit_idp_managed_roles_without_role_attribute_give_the_default_role() {
    let org = with_settings(|jit| {
        jit.idp_managed_roles = true;
        jit.default_role = "Developer".into();
    });
    let user = existing(&org, ALICE);
    assert_eq!(user.role.value, "Developer");
}

#[test]
fn unknown_role_value_is_refused() {
    let result = decide(
        &managed(),
        OKTA,
        None,
        &login("_a1", &with_role(&["Overlord"])),
    );
    assert_eq!(
        refusal(result),
        Refusal::UnknownRole {
            value: "Overlord".into(),
            acl_index: None
        }
    );
}

#[test]
fn several_different_role_values_are_ambiguous() {
    let result = decide(
        &managed(),
        OKTA,
        None,
        &login("_a1", &with_role(&["Admin", "Agent"])),
    );
    assert_eq!(refusal(result).code(), "ambiguous_attribute");
}

#[test]
fn airkit_role_change_in_idp_reaches_existing_account_with_its_reason() {
    let user = existing(&managed(), &with_role(&["Agent"]));
    let decision = decide(
        &managed(),
        OKTA,
        Some(&user),
        &login("_a2", &[("role", &["Admin"])]),
    )
    .unwrap();
    assert_events_snapshot!("provisioning_role_changed", decision);
}

#[test]
fn without_idp_managed_roles_existing_users_keep_their_role() {
    let user = existing(&managed(), &with_role(&["Admin"]));
    let decision = decide(
        &org(),
        OKTA,
        Some(&user),
        &login("_a2", &[("role", &["Agent"])]),
    )
    .unwrap();
    assert_eq!(types(&decision), ["LoginRecorded"]);
}

// ---- ACL (Yext).

fn acl(entries: &[(&str, &str, &str, &str)]) -> Vec<(String, Vec<String>)> {
    let mut attributes = Vec::new();
    for (index, role, on, on_type) in entries {
        for (field, value) in [("roleId", role), ("on", on), ("onType", on_type)] {
            if !value.is_empty() {
                attributes.push((format!("acl[{index}].{field}"), vec![value.to_string()]));
            }
        }
    }
    attributes
}

fn login_with(
    assertion_id: &str,
    base: &[(&str, &[&str])],
    extra: &[(String, Vec<String>)],
) -> ValidatedLogin {
    let extra: Vec<(&str, Vec<&str>)> = extra
        .iter()
        .map(|(n, v)| (n.as_str(), v.iter().map(String::as_str).collect()))
        .collect();
    let mut attributes: Vec<(&str, &[&str])> = base.to_vec();
    for (name, values) in &extra {
        attributes.push((name, values.as_slice()));
    }
    login(assertion_id, &attributes)
}

#[test]
fn yext_acl_entries_are_provisioned_sparse_indexes_allowed() {
    let entries = acl(&[
        ("0", "Admin", "acct-1", "account"),
        ("7", "support", "folder-9", "FOLDER"),
    ]);
    let decision = decide(&org(), OKTA, None, &login_with("_a1", ALICE, &entries)).unwrap();
    assert_events_snapshot!("provisioning_acl", decision);
}

#[test]
fn yext_incomplete_acl_entry_names_the_index_and_the_missing_field() {
    let entries = acl(&[
        ("0", "Admin", "acct-1", "ACCOUNT"),
        ("3", "Admin", "", "FOLDER"),
    ]);
    let result = decide(&org(), OKTA, None, &login_with("_a1", ALICE, &entries));
    assert_eq!(
        refusal(result),
        Refusal::IncompleteAclEntry {
            index: 3,
            missing: "on"
        }
    );
}

#[test]
fn acl_on_type_must_be_account_folder_or_location() {
    let entries = acl(&[("0", "Admin", "acct-1", "REGION")]);
    let result = decide(&org(), OKTA, None, &login_with("_a1", ALICE, &entries));
    assert_eq!(refusal(result).code(), "invalid_acl_entry");
}

#[test]
fn acl_role_must_be_a_role_of_the_org() {
    let entries = acl(&[("2", "Overlord", "acct-1", "ACCOUNT")]);
    let result = decide(&org(), OKTA, None, &login_with("_a1", ALICE, &entries));
    assert_eq!(
        refusal(result),
        Refusal::UnknownRole {
            value: "Overlord".into(),
            acl_index: Some(2)
        }
    );
}

#[test]
fn yext_same_acl_set_in_another_order_with_duplicates_writes_nothing() {
    let first = acl(&[
        ("0", "Admin", "a", "ACCOUNT"),
        ("1", "Agent", "f", "FOLDER"),
    ]);
    let user = fold(
        None,
        &decide(&org(), OKTA, None, &login_with("_a1", ALICE, &first)).unwrap(),
        1,
    )
    .unwrap();
    let again = acl(&[
        ("0", "agent", "f", "folder"),
        ("1", "ADMIN", "a", "Account"),
        ("2", "Admin", "a", "ACCOUNT"),
    ]);
    let decision = decide(&org(), OKTA, Some(&user), &login_with("_a2", &[], &again)).unwrap();
    assert_eq!(types(&decision), ["LoginRecorded"]);
}

#[test]
fn yext_supplied_acl_list_is_exhaustive() {
    let first = acl(&[
        ("0", "Admin", "a", "ACCOUNT"),
        ("1", "Agent", "f", "FOLDER"),
    ]);
    let user = fold(
        None,
        &decide(&org(), OKTA, None, &login_with("_a1", ALICE, &first)).unwrap(),
        1,
    )
    .unwrap();
    let narrower = acl(&[("0", "Agent", "f", "FOLDER")]);
    let decision = decide(
        &org(),
        OKTA,
        Some(&user),
        &login_with("_a2", &[], &narrower),
    )
    .unwrap();
    assert_events_snapshot!("provisioning_acl_replaced", decision);
}

#[test]
fn no_acl_attributes_leave_the_acl_untouched() {
    let first = acl(&[("0", "Admin", "a", "ACCOUNT")]);
    let user = fold(
        None,
        &decide(&org(), OKTA, None, &login_with("_a1", ALICE, &first)).unwrap(),
        1,
    )
    .unwrap();
    let decision = decide(&org(), OKTA, Some(&user), &login("_a2", &[])).unwrap();
    assert_eq!(types(&decision), ["LoginRecorded"]);
}

#[test]
fn acl_entry_count_is_bounded() {
    let many: Vec<(String, String, String, String)> = (0..=values::ACL_ENTRIES_MAX)
        .map(|i| {
            (
                i.to_string(),
                "Agent".to_string(),
                format!("r{i}"),
                "ACCOUNT".to_string(),
            )
        })
        .collect();
    let borrowed: Vec<(&str, &str, &str, &str)> = many
        .iter()
        .map(|(a, b, c, d)| (a.as_str(), b.as_str(), c.as_str(), d.as_str()))
        .collect();
    let result = decide(
        &org(),
        OKTA,
        None,
        &login_with("_a1", ALICE, &acl(&borrowed)),
    );
    assert_eq!(refusal(result).code(), "invalid_acl_entry");
}

#[test]
fn acl_attributes_off_ignores_acl() {
    let org = with_settings(|jit| jit.acl_attributes = false);
    let entries = acl(&[("0", "Admin", "a", "")]);
    let user = fold(
        None,
        &decide(&org, OKTA, None, &login_with("_a1", ALICE, &entries)).unwrap(),
        1,
    )
    .unwrap();
    assert!(user.acl.value.is_empty());
}

// ---- Mapping and values.

#[test]
fn entra_preset_maps_claim_uris() {
    let org = with_settings(|jit| jit.attribute_mapping = mapping_preset("entra").unwrap());
    let claims = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims";
    let attributes: Vec<(String, Vec<String>)> = [
        (format!("{claims}/emailaddress"), "alice@example.com"),
        (format!("{claims}/givenname"), "Alice"),
        (format!("{claims}/surname"), "Liddell"),
    ]
    .into_iter()
    .map(|(name, value)| (name, vec![value.to_string()]))
    .collect();
    let user = fold(
        None,
        &decide(&org, OKTA, None, &login_with("_a1", &[], &attributes)).unwrap(),
        1,
    )
    .unwrap();
    assert_eq!(user.field(ProfileField::LastName), Some("Liddell"));
}

#[test]
fn mapping_matches_friendly_name_too() {
    let mut login = login("_a1", ALICE);
    // ValidatedLogin::attribute falls back to FriendlyName; exercised through the SAML
    // layer's own tests. Here: the Name wins when both could match.
    assert!(login.attribute("firstName").is_some());
    login = ValidatedLogin::for_tests("_a1", "bob@example.com", None, &[]);
    assert!(login.attribute("firstName").is_none());
}

#[test]
fn invalid_email_is_refused_naming_the_field() {
    let attributes: &[(&str, &[&str])] = &[
        ("emailAddress", &["not an email"]),
        ("firstName", &["A"]),
        ("lastName", &["B"]),
    ];
    let result = decide(&org(), OKTA, None, &login("_a1", attributes));
    assert_eq!(
        refusal(result),
        Refusal::InvalidAttributeValue {
            field: "email".into(),
            reason: "\"not an email\" is not an email address".into()
        }
    );
}

#[test]
fn control_characters_and_overlong_values_are_refused() {
    let control: &[(&str, &[&str])] = &[("firstName", &["Al\u{7}ice"])];
    let user = existing(&org(), ALICE);
    assert_eq!(
        refusal(decide(&org(), OKTA, Some(&user), &login("_a2", control))).code(),
        "invalid_attribute_value"
    );
    let long = "x".repeat(values::PROFILE_VALUE_CHARS_MAX + 1);
    let overlong: Vec<(String, Vec<String>)> = vec![("firstName".into(), vec![long])];
    let result = decide(
        &org(),
        OKTA,
        Some(&user),
        &login_with("_a2", &[], &overlong),
    );
    assert_eq!(refusal(result).code(), "invalid_attribute_value");
}

#[test]
fn settings_naming_unknown_roles_or_fields_are_refused() {
    let org = org();
    let unknown_role = JitSettings {
        default_role: "Overlord".into(),
        ..JitSettings::default()
    };
    assert_eq!(
        check_jit_settings(&org, &unknown_role).unwrap_err().field,
        "default_role"
    );
    let mut unknown_field = JitSettings::default();
    unknown_field
        .attribute_mapping
        .push(("USER_SHOE_SIZE".into(), "shoe".into()));
    assert_eq!(
        check_jit_settings(&org, &unknown_field).unwrap_err().field,
        "attribute_mapping"
    );
    assert!(check_jit_settings(&org, &JitSettings::default()).is_ok());
}

#[test]
fn airkit_jit_is_switched_on_per_idp() {
    let mut org = org();
    if let Some(entra) = org.idps.get_mut(ENTRA) {
        entra.jit.enabled = false;
    }
    assert!(decide(&org, OKTA, None, &login("_a1", ALICE)).is_ok());
    assert_eq!(
        refusal(decide(&org, ENTRA, None, &login("_a1", ALICE))).code(),
        "user_not_found"
    );
}

#[test]
fn airkit_attribute_mapping_fills_every_user_field() {
    let org = with_settings(|jit| {
        jit.idp_managed_roles = true;
        jit.attribute_mapping = vec![
            ("USER_ROLE".into(), "grp".into()),
            ("USER_FIRST_NAME".into(), "given".into()),
            ("USER_LAST_NAME".into(), "sn".into()),
            ("USER_DISPLAY_NAME".into(), "cn".into()),
            ("USER_PHONE_NUMBER".into(), "tel".into()),
            ("USER_EMAIL".into(), "mail".into()),
        ];
    });
    let attributes: &[(&str, &[&str])] = &[
        ("grp", &["Developer"]),
        ("given", &["Alice"]),
        ("sn", &["Liddell"]),
        ("cn", &["Alice L."]),
        ("tel", &["+1 555 0100"]),
        ("mail", &["Alice@Example.com"]),
    ];
    let user = existing(&org, attributes);
    let fields: Vec<_> = ProfileField::ALL.iter().map(|f| user.field(*f)).collect();
    assert_eq!(
        fields,
        [
            Some("alice@example.com"),
            Some("Alice"),
            Some("Liddell"),
            Some("Alice L."),
            Some("+1 555 0100")
        ]
    );
    assert_eq!(user.role.value, "Developer");
}

#[test]
fn preview_with_a_draft_mapping_shows_events_and_diff_without_state() {
    let user = existing(&org(), ALICE);
    let mut draft = org().idps[OKTA].jit.clone();
    draft
        .attribute_mapping
        .retain(|(key, _)| key != "USER_LAST_NAME");
    draft
        .attribute_mapping
        .push(("USER_LAST_NAME".into(), "surname".into()));
    let login = login("_a2", &[("surname", &["Hargreaves"])]);
    let preview = preview(&org(), OKTA, Some(&draft), Some(&user), &login).unwrap();
    assert_eq!(
        types(&preview.decision),
        ["ProfileUpdated", "LoginRecorded"]
    );
    insta::with_settings!({ snapshot_path => "../../snapshots", prepend_module_to_snapshot => false }, {
        insta::assert_debug_snapshot!("provisioning_preview_diff", preview.diff);
    });
    // The stored configuration still maps lastName.
    let stored = decide(&org(), OKTA, Some(&user), &login).unwrap();
    assert_eq!(types(&stored), ["LoginRecorded"]);
}

// ---- Properties.

fn attribute_strategy() -> impl Strategy<Value = Vec<(String, Vec<String>)>> {
    let names = prop::sample::select(vec![
        "emailAddress",
        "firstName",
        "lastName",
        "displayName",
        "phoneNumber",
        "role",
        "acl[0].roleId",
        "acl[0].on",
        "acl[0].onType",
        "acl[1].roleId",
        "acl[1].on",
        "acl[1].onType",
        "acl[x].on",
        "username",
        "sso",
    ]);
    let values = prop::collection::vec(
        prop_oneof![
            Just("alice@example.com".to_string()),
            Just("Admin".to_string()),
            Just("support agent".to_string()),
            Just("ACCOUNT".to_string()),
            Just("folder".to_string()),
            Just(String::new()),
            "\\PC{0,12}",
        ],
        0..3,
    );
    prop::collection::vec((names.prop_map(str::to_string), values), 0..12)
}

proptest! {
    #[test]
    fn decide_never_panics_and_is_idempotent(attributes in attribute_strategy(), managed_roles in any::<bool>()) {
        let org = with_settings(|jit| jit.idp_managed_roles = managed_roles);
        let first = login_with("_p1", ALICE, &attributes);
        if let Ok(decision) = decide(&org, OKTA, None, &first) {
            let user = fold(None, &decision, 1);
            prop_assert!(user.is_some());
            // The same login again changes nothing but recording itself.
            let again = decide(&org, OKTA, user.as_ref(), &login_with("_p2", ALICE, &attributes)).unwrap();
            prop_assert_eq!(types(&again), vec!["LoginRecorded"]);
            prop_assert_eq!(again.outcome, Outcome::Unchanged);
        }
    }

    #[test]
    fn acl_comparison_ignores_order_and_duplicates(order in Just(vec![0usize, 1, 2]).prop_shuffle(), duplicate in 0usize..3) {
        let entries = [("Admin", "a", "ACCOUNT"), ("Agent", "f", "FOLDER"), ("support", "l", "LOCATION")];
        let first = acl(&[("0", "Admin", "a", "ACCOUNT"), ("1", "Agent", "f", "FOLDER"), ("2", "support", "l", "LOCATION")]);
        let user = fold(None, &decide(&org(), OKTA, None, &login_with("_p1", ALICE, &first)).unwrap(), 1).unwrap();
        let mut shuffled: Vec<(String, String, String, String)> = order
            .iter()
            .enumerate()
            .map(|(i, &e)| (i.to_string(), entries[e].0.into(), entries[e].1.into(), entries[e].2.into()))
            .collect();
        let (role, on, on_type) = entries[duplicate];
        shuffled.push(("9".into(), role.into(), on.into(), on_type.into()));
        let borrowed: Vec<(&str, &str, &str, &str)> =
            shuffled.iter().map(|(a, b, c, d)| (a.as_str(), b.as_str(), c.as_str(), d.as_str())).collect();
        let decision = decide(&org(), OKTA, Some(&user), &login_with("_p2", &[], &acl(&borrowed))).unwrap();
        prop_assert_eq!(types(&decision), vec!["LoginRecorded"]);
    }
}
