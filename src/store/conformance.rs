//! The behaviour every event log engine must show, written once against [`EventLog`] and
//! [`ProjectionReads`]. Each check panics with what went wrong; `tests/store_conformance.rs`
//! runs them on sled, and a future engine runs the same list.

use super::envelope::{CONFIG_STREAM, Cause, user_stream};
use super::{AppendError, AppendRequest, AssertionGuard, EventLog, ProjectionReads};
use crate::events::{
    Event, FieldChange, JitSettings, JitSettingsChanged, LoginRecorded, OrgCreated, ProfileField,
    Source, UserProvisioned,
};

/// A named check.
pub type Check = (&'static str, fn(&dyn Engine));

/// Every check, by name, for a fresh empty log each.
pub const CHECKS: &[Check] = &[
    (
        "numbers_are_gap_free_and_chained",
        numbers_are_gap_free_and_chained,
    ),
    ("expected_version_is_enforced", expected_version_is_enforced),
    ("assertions_append_once", assertions_append_once),
    (
        "streams_read_in_order_and_cut",
        streams_read_in_order_and_cut,
    ),
    (
        "refused_appends_write_nothing",
        refused_appends_write_nothing,
    ),
    ("projections_follow_appends", projections_follow_appends),
    ("concurrent_writers_serialise", concurrent_writers_serialise),
];

/// What the checks need of an engine.
pub trait Engine: EventLog + ProjectionReads {}
impl<T: EventLog + ProjectionReads> Engine for T {}

pub fn org_request() -> AppendRequest {
    AppendRequest {
        org_id: "acme".into(),
        stream: CONFIG_STREAM.into(),
        expected_version: 0,
        events: vec![
            Event::OrgCreated(OrgCreated {
                sp_entity_id: "https://sp.example.com".into(),
                acs_url: "https://sp.example.com/acs".into(),
                clock_skew_seconds: 120,
                allow_idp_initiated: true,
            }),
            Event::JitSettingsChanged(JitSettingsChanged {
                idp_id: "okta".into(),
                settings: JitSettings::default(),
            }),
        ],
        cause: Cause::System,
        assertion: None,
        recorded_at: 1,
    }
}

pub(crate) fn login(user: &str, expected_version: u64, n: u64) -> AppendRequest {
    let recorded = Event::LoginRecorded(LoginRecorded {
        assertion_id: format!("_a{n}"),
        idp_id: "okta".into(),
        authn_instant: n as i128,
        session_index: None,
        session_not_on_or_after: None,
    });
    let mut events = Vec::new();
    if expected_version == 0 {
        events.push(Event::UserProvisioned(UserProvisioned {
            user_id: user.into(),
            idp_id: "okta".into(),
            profile: vec![FieldChange {
                field: ProfileField::Email,
                from: None,
                to: Some(format!("{user}@example.com")),
                source: Source::Attribute {
                    idp_id: "okta".into(),
                    attribute: "emailAddress".into(),
                },
            }],
            role: "Agent".into(),
            role_source: Source::DefaultRole {
                idp_id: "okta".into(),
            },
            acl: Vec::new(),
            acl_source: None,
        }));
    }
    events.push(recorded);
    AppendRequest {
        org_id: "acme".into(),
        stream: user_stream(user),
        expected_version,
        events,
        cause: Cause::Login {
            login_id: format!("login-{n}"),
            assertion_id: format!("_a{n}"),
            idp_id: "okta".into(),
        },
        assertion: Some(AssertionGuard {
            assertion_id: format!("_a{n}"),
            not_on_or_after: i128::MAX,
        }),
        recorded_at: 100 + n as i128,
    }
}

fn numbers_are_gap_free_and_chained(log: &dyn Engine) {
    log.append(org_request()).expect("org");
    log.append(login("alice", 0, 1)).expect("alice");
    log.append(login("bob", 0, 2)).expect("bob");
    let all = log.events_after(0, 100).expect("read");
    let seqs: Vec<u64> = all.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5, 6]);
    assert_eq!(all[0].prev_hash, [0; 32]);
    for pair in all.windows(2) {
        assert_eq!(pair[1].prev_hash, pair[0].hash, "chain at {}", pair[1].seq);
    }
    assert_eq!(log.head().expect("head"), (6, all[5].hash));
    assert_eq!(log.events_after(4, 1).expect("page").len(), 1);
}

fn expected_version_is_enforced(log: &dyn Engine) {
    log.append(org_request()).expect("org");
    log.append(login("alice", 0, 1)).expect("alice");
    assert_eq!(
        log.append(login("alice", 0, 2)),
        Err(AppendError::Conflict {
            expected: 0,
            actual: 2
        })
    );
    log.append(login("alice", 2, 3)).expect("continues at 2");
    assert_eq!(
        log.stream_version("acme", &user_stream("alice"))
            .expect("version"),
        3
    );
}

fn assertions_append_once(log: &dyn Engine) {
    log.append(org_request()).expect("org");
    log.append(login("alice", 0, 1)).expect("first");
    assert_eq!(
        log.append(login("alice", 2, 1)),
        Err(AppendError::ReplayedAssertion {
            assertion_id: "_a1".into()
        })
    );
}

fn streams_read_in_order_and_cut(log: &dyn Engine) {
    log.append(org_request()).expect("org");
    log.append(login("alice", 0, 1)).expect("alice");
    log.append(login("bob", 0, 2)).expect("bob");
    log.append(login("alice", 2, 3)).expect("alice again");
    let alice = log
        .stream("acme", &user_stream("alice"), None)
        .expect("stream");
    let versions: Vec<u64> = alice.iter().map(|e| e.stream_version).collect();
    assert_eq!(versions, [1, 2, 3]);
    let cut = log
        .stream("acme", &user_stream("alice"), Some(5))
        .expect("cut");
    assert_eq!(cut.len(), 2);
    assert!(
        log.stream("other", &user_stream("alice"), None)
            .expect("other org")
            .is_empty()
    );
}

fn refused_appends_write_nothing(log: &dyn Engine) {
    log.append(org_request()).expect("org");
    let head = log.head().expect("head");
    let _ = log.append(login("alice", 5, 1));
    let mut orphan = login("carol", 0, 2);
    orphan.events.remove(0);
    assert!(matches!(log.append(orphan), Err(AppendError::Invalid(_))));
    assert_eq!(log.head().expect("head"), head);
    // The refused append's assertion is still unused.
    log.append(login("alice", 0, 1))
        .expect("assertion still free");
}

fn projections_follow_appends(log: &dyn Engine) {
    log.append(org_request()).expect("org");
    log.append(login("alice", 0, 1)).expect("alice");
    let alice = log.user("acme", "alice").expect("read").expect("projected");
    assert_eq!(alice.field(ProfileField::Email), Some("alice@example.com"));
    assert_eq!(alice.last_login_at, Some(101));
    assert_eq!(
        log.users_with_role("acme", "Agent").expect("roles"),
        ["alice"]
    );
    assert!(log.org("acme").expect("org").is_some());
}

fn concurrent_writers_serialise(log: &dyn Engine) {
    log.append(org_request()).expect("org");
    log.append(login("alice", 0, 0)).expect("alice");
    std::thread::scope(|scope| {
        for n in 1..=16u64 {
            scope.spawn(move || {
                loop {
                    let version = log
                        .stream_version("acme", &user_stream("alice"))
                        .expect("version");
                    match log.append(login("alice", version, n)) {
                        Ok(_) => return,
                        Err(AppendError::Conflict { .. }) => continue,
                        Err(other) => panic!("{other:?}"),
                    }
                }
            });
        }
    });
    let versions: Vec<u64> = log
        .stream("acme", &user_stream("alice"), None)
        .expect("stream")
        .iter()
        .map(|e| e.stream_version)
        .collect();
    assert_eq!(versions, (1..=18).collect::<Vec<_>>());
}
