//! Properties of the log over random event sequences: the incremental projections equal a
//! rebuild and a fold, a user as of any seq equals the fold of the prefix, and export then
//! import is the identity.

use jitledger::events::{
    AclEntry, AclReplaced, Event, FieldChange, LoginRecorded, OnType, ProfileField, ProfileUpdated,
    RoleChanged, Source, UserProvisioned,
};
use jitledger::store::conformance::org_request;
use jitledger::store::history::{AsOf, Replay};
use jitledger::store::{AppendRequest, Cause, Store, StoreConfig, user_stream};
use proptest::prelude::*;

const USERS: [&str; 4] = ["alice", "bob", "carol", "dave"];
const ROLES: [&str; 3] = ["Admin", "Developer", "Agent"];

/// One step: which user, and what happens to them.
#[derive(Debug, Clone)]
enum Step {
    Login {
        user: usize,
    },
    Profile {
        user: usize,
        field: usize,
        value: Option<u8>,
    },
    Role {
        user: usize,
        role: usize,
    },
    Acl {
        user: usize,
        entries: Vec<(usize, u8, u8)>,
    },
}

fn step() -> impl Strategy<Value = Step> {
    let user = 0..USERS.len();
    prop_oneof![
        user.clone().prop_map(|user| Step::Login { user }),
        (user.clone(), 0..5usize, proptest::option::of(0..4u8))
            .prop_map(|(user, field, value)| Step::Profile { user, field, value }),
        (user.clone(), 0..ROLES.len()).prop_map(|(user, role)| Step::Role { user, role }),
        (
            user,
            proptest::collection::vec((0..ROLES.len(), 0..3u8, 0..3u8), 0..4)
        )
            .prop_map(|(user, entries)| Step::Acl { user, entries }),
    ]
}

fn source() -> Source {
    Source::Attribute {
        idp_id: "okta".into(),
        attribute: "a".into(),
    }
}

/// Turns steps into appends the way provisioning would: a user's first step provisions.
fn appends(steps: &[Step]) -> Vec<AppendRequest> {
    let mut versions = [0u64; USERS.len()];
    let mut roles = [
        "Agent".to_string(),
        "Agent".into(),
        "Agent".into(),
        "Agent".into(),
    ];
    let mut acls: [Vec<AclEntry>; 4] = Default::default();
    let mut requests = vec![org_request()];
    for (n, step) in steps.iter().enumerate() {
        let user = match step {
            Step::Login { user }
            | Step::Profile { user, .. }
            | Step::Role { user, .. }
            | Step::Acl { user, .. } => *user,
        };
        let mut events = Vec::new();
        if versions[user] == 0 {
            events.push(Event::UserProvisioned(UserProvisioned {
                user_id: USERS[user].into(),
                idp_id: "okta".into(),
                profile: Vec::new(),
                role: "Agent".into(),
                role_source: Source::DefaultRole {
                    idp_id: "okta".into(),
                },
                acl: Vec::new(),
                acl_source: None,
            }));
        }
        match step {
            Step::Login { .. } => {}
            Step::Profile { field, value, .. } => {
                events.push(Event::ProfileUpdated(ProfileUpdated {
                    changes: vec![FieldChange {
                        field: ProfileField::ALL[*field],
                        from: None,
                        to: value.map(|v| format!("value-{v}")),
                        source: source(),
                    }],
                }))
            }
            Step::Role { role, .. } => {
                events.push(Event::RoleChanged(RoleChanged {
                    from: roles[user].clone(),
                    to: ROLES[*role].into(),
                    reason: source(),
                }));
                roles[user] = ROLES[*role].into();
            }
            Step::Acl { entries, .. } => {
                let mut to: Vec<AclEntry> = entries
                    .iter()
                    .map(|(role, on, on_type)| AclEntry {
                        role_id: ROLES[*role].into(),
                        on: format!("r{on}"),
                        on_type: [OnType::Account, OnType::Folder, OnType::Location]
                            [*on_type as usize],
                    })
                    .collect();
                to.sort();
                to.dedup();
                events.push(Event::AclReplaced(AclReplaced {
                    from: acls[user].clone(),
                    to: to.clone(),
                    source: source(),
                }));
                acls[user] = to;
            }
        }
        events.push(Event::LoginRecorded(LoginRecorded {
            assertion_id: format!("_a{n}"),
            idp_id: "okta".into(),
            authn_instant: n as i128,
            session_index: None,
            session_not_on_or_after: None,
        }));
        let expected_version = versions[user];
        versions[user] += events.len() as u64;
        requests.push(AppendRequest {
            org_id: "acme".into(),
            stream: user_stream(USERS[user]),
            expected_version,
            events,
            cause: Cause::Login {
                login_id: format!("login-{n}"),
                assertion_id: format!("_a{n}"),
                idp_id: "okta".into(),
            },
            assertion: None,
            recorded_at: 1_000 + n as i128,
        });
    }
    requests
}

fn users_of(store: &Store) -> Vec<jitledger::provisioning::UserState> {
    store.users("acme", None, 100).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn incremental_equals_rebuild_equals_fold(steps in proptest::collection::vec(step(), 1..30), chunk_keys in 1usize..8) {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&StoreConfig::new(dir.path())).unwrap();
        for request in appends(&steps) {
            store.append_blocking(request).unwrap();
        }
        let incremental = users_of(&store);
        let fold: Vec<_> = store.replay(Some("acme"), AsOf::Now, |_, _| {}).unwrap().users.into_values().collect();
        prop_assert_eq!(&incremental, &fold);
        store.verify().unwrap();
        store.rebuild_in_chunks(chunk_keys, |_, _| {}).unwrap();
        prop_assert_eq!(&users_of(&store), &incremental);
        store.verify().unwrap();
        for user in USERS {
            for role in ROLES {
                let holders = store.users_with_role("acme", role).unwrap();
                let holds = incremental.iter().any(|u| u.user_id == user && u.role.value == role);
                prop_assert_eq!(holders.contains(&user.to_string()), holds);
            }
        }
        // The ACL index holds exactly the grants of the users' current ACLs.
        for on_type in [OnType::Account, OnType::Folder, OnType::Location] {
            for on in 0..3 {
                let on = format!("r{on}");
                let mut stored = store.grants_on("acme", on_type.as_str(), &on).unwrap();
                stored.sort();
                let mut expected: Vec<(String, String)> = incremental
                    .iter()
                    .flat_map(|u| u.acl.value.iter().map(move |e| (u, e)))
                    .filter(|(_, e)| e.on_type == on_type && e.on == on)
                    .map(|(u, e)| (u.user_id.clone(), e.role_id.clone()))
                    .collect();
                expected.sort();
                prop_assert_eq!(stored, expected);
            }
        }
    }

    #[test]
    fn as_of_seq_equals_the_fold_of_the_prefix(steps in proptest::collection::vec(step(), 1..20), cut in 0u64..80) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&StoreConfig::new(dir.path())).unwrap();
        for request in appends(&steps) {
            store.append_blocking(request).unwrap();
        }
        let all = store.events_after(0, 1_000).unwrap();
        let mut prefix = Replay::default();
        for envelope in all.iter().filter(|e| e.seq <= cut) {
            prefix.fold(envelope);
        }
        let whole = store.replay(Some("acme"), AsOf::Seq(cut), |_, _| {}).unwrap();
        prop_assert_eq!(&whole.users, &prefix.users);
        for user in USERS {
            let as_of = store.user_as_of("acme", user, AsOf::Seq(cut)).unwrap();
            prop_assert_eq!(as_of.as_ref(), prefix.users.get(&("acme".to_string(), user.to_string())));
        }
    }

    #[test]
    fn export_then_import_is_the_identity(steps in proptest::collection::vec(step(), 1..20)) {
        let source_dir = tempfile::tempdir().unwrap();
        let target_dir = tempfile::tempdir().unwrap();
        let file = source_dir.path().join("log.export");
        let source = Store::open(&StoreConfig::new(source_dir.path().join("db"))).unwrap();
        for request in appends(&steps) {
            source.append_blocking(request).unwrap();
        }
        let count = source.export(&file).unwrap();
        let mut target = Store::open(&StoreConfig::new(target_dir.path())).unwrap();
        prop_assert_eq!(target.import(&file).unwrap(), count);
        prop_assert_eq!(target.events_after(0, 1_000).unwrap(), source.events_after(0, 1_000).unwrap());
        prop_assert_eq!(target.head().unwrap(), source.head().unwrap());
        prop_assert_eq!(users_of(&target), users_of(&source));
        target.verify().unwrap();
    }
}

#[test]
fn a_damaged_export_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("log.export");
    let store = Store::open(&StoreConfig::new(dir.path().join("db"))).unwrap();
    for request in appends(&[Step::Login { user: 0 }, Step::Role { user: 0, role: 0 }]) {
        store.append_blocking(request).unwrap();
    }
    store.export(&file).unwrap();
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[40] ^= 1;
    std::fs::write(&file, &bytes).unwrap();
    let target = tempfile::tempdir().unwrap();
    let mut fresh = Store::open(&StoreConfig::new(target.path())).unwrap();
    assert!(matches!(
        fresh.import(&file),
        Err(jitledger::store::export::ImportError::Checksum)
    ));
    assert_eq!(fresh.head().unwrap().0, 0);
}
