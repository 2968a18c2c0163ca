//! The store driven by the provisioning rules, as the login pipeline drives it.

use std::sync::Arc;

use super::*;
use crate::events::{IdpMetadata, JitSettings, JitSettingsChanged};
use crate::provisioning::{Outcome, decide};
use crate::saml::response::ValidatedLogin;

fn org_with_jit(store: &Store) {
    let mut request = conformance::org_request();
    request.events.push(Event::IdpRegistered(IdpMetadata {
        idp_id: "okta".into(),
        entity_id: "https://okta.example.com".into(),
        metadata_xml: String::new(),
    }));
    request
        .events
        .push(Event::JitSettingsChanged(JitSettingsChanged {
            idp_id: "okta".into(),
            settings: JitSettings {
                enabled: true,
                ..JitSettings::default()
            },
        }));
    store.append_blocking(request).unwrap();
}

/// One login as the pipeline runs it: read, decide, append; on a conflict decide again on
/// fresh state.
fn log_in(store: &Store, login: &ValidatedLogin) -> Outcome {
    loop {
        let org = store.org("acme").unwrap().unwrap();
        let user = store.user("acme", "alice@example.com").unwrap();
        let decision = decide(&org, "okta", user.as_ref(), login).unwrap();
        let request = AppendRequest {
            org_id: "acme".into(),
            stream: user_stream(&decision.user_id),
            expected_version: user.as_ref().map_or(0, |u| u.version),
            events: decision.events.clone(),
            cause: Cause::Login {
                login_id: format!("login{}", login.assertion_id()),
                assertion_id: login.assertion_id().into(),
                idp_id: "okta".into(),
            },
            assertion: Some(AssertionGuard {
                assertion_id: login.assertion_id().into(),
                not_on_or_after: i128::MAX,
            }),
            recorded_at: 1,
        };
        match store.append_blocking(request) {
            Ok(_) => return decision.outcome,
            Err(AppendError::Conflict { .. }) => continue,
            Err(other) => panic!("{other:?}"),
        }
    }
}

#[test]
fn sixty_four_concurrent_first_logins_provision_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&StoreConfig::new(dir.path())).unwrap());
    org_with_jit(&store);
    let attributes: &[(&str, &[&str])] = &[
        ("emailAddress", &["alice@example.com"]),
        ("firstName", &["Alice"]),
        ("lastName", &["Liddell"]),
    ];
    let outcomes: Vec<Outcome> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..64)
            .map(|n| {
                let store = Arc::clone(&store);
                let login = ValidatedLogin::for_tests(
                    &format!("_a{n}"),
                    "alice@example.com",
                    None,
                    attributes,
                );
                scope.spawn(move || log_in(&store, &login))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let provisioned = outcomes
        .iter()
        .filter(|o| **o == Outcome::Provisioned)
        .count();
    assert_eq!(provisioned, 1);
    assert!(outcomes.iter().all(|o| *o != Outcome::Updated));
    let stream = store
        .stream("acme", &user_stream("alice@example.com"), None)
        .unwrap();
    let kinds: Vec<&str> = stream.iter().map(|e| e.event.type_name()).collect();
    assert_eq!(kinds.iter().filter(|k| **k == "UserProvisioned").count(), 1);
    assert_eq!(kinds.iter().filter(|k| **k == "LoginRecorded").count(), 64);
    let versions: Vec<u64> = stream.iter().map(|e| e.stream_version).collect();
    assert_eq!(versions, (1..=65).collect::<Vec<_>>());
    store.verify().unwrap();
}
