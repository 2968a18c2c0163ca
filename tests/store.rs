//! The sled event log: appends, optimistic concurrency, replay protection, the hash chain
//! and its tamper evidence, projections against a fresh fold, and group commit under
//! concurrency.

use std::sync::Arc;

use jitledger::events::{
    AclEntry, Event, FieldChange, JitSettings, JitSettingsChanged, LoginRecorded, OnType,
    OrgCreated, ProfileField, ProfileUpdated, Source, UserProvisioned,
};
use jitledger::provisioning::UserState;
use jitledger::store::verify::{VerifyFailure, check_chain};
use jitledger::store::{
    AppendError, AppendRequest, AssertionGuard, CONFIG_STREAM, Cause, ChainHasher, Store,
    StoreConfig, user_stream,
};

fn open(dir: &tempfile::TempDir) -> Store {
    Store::open(&StoreConfig::new(dir.path())).unwrap()
}

fn org_created() -> AppendRequest {
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
            Event::IdpRegistered(jitledger::events::IdpMetadata {
                idp_id: "okta".into(),
                entity_id: "https://okta.example.com".into(),
                metadata_xml: "<md:EntityDescriptor/>".into(),
            }),
            Event::JitSettingsChanged(JitSettingsChanged {
                idp_id: "okta".into(),
                settings: JitSettings {
                    enabled: true,
                    ..JitSettings::default()
                },
            }),
        ],
        cause: Cause::Admin {
            token_id: "bootstrap".into(),
        },
        assertion: None,
        recorded_at: 1,
    }
}

fn login_cause(n: u64) -> Cause {
    Cause::Login {
        login_id: format!("login-{n}"),
        assertion_id: format!("_a{n}"),
        idp_id: "okta".into(),
    }
}

fn provisioned(user: &str, role: &str, acl: Vec<AclEntry>) -> Event {
    Event::UserProvisioned(UserProvisioned {
        user_id: user.into(),
        idp_id: "okta".into(),
        profile: vec![FieldChange {
            field: ProfileField::Email,
            from: None,
            to: Some(user.into()),
            source: Source::Attribute {
                idp_id: "okta".into(),
                attribute: "emailAddress".into(),
            },
        }],
        role: role.into(),
        role_source: Source::DefaultRole {
            idp_id: "okta".into(),
        },
        acl,
        acl_source: None,
    })
}

fn recorded(n: u64) -> Event {
    Event::LoginRecorded(LoginRecorded {
        assertion_id: format!("_a{n}"),
        idp_id: "okta".into(),
        authn_instant: n as i128,
        session_index: None,
        session_not_on_or_after: None,
    })
}

fn user_append(user: &str, expected_version: u64, events: Vec<Event>, n: u64) -> AppendRequest {
    AppendRequest {
        org_id: "acme".into(),
        stream: user_stream(user),
        expected_version,
        events,
        cause: login_cause(n),
        assertion: Some(AssertionGuard {
            assertion_id: format!("_a{n}"),
            not_on_or_after: 1_000 + n as i128,
        }),
        recorded_at: 10 + n as i128,
    }
}

/// An org and three users, one of them updated.
fn populated(store: &Store) {
    store.append_blocking(org_created()).unwrap();
    let acl = vec![AclEntry {
        role_id: "Admin".into(),
        on: "acct-1".into(),
        on_type: OnType::Account,
    }];
    store
        .append_blocking(user_append(
            "alice",
            0,
            vec![provisioned("alice", "Admin", acl), recorded(1)],
            1,
        ))
        .unwrap();
    store
        .append_blocking(user_append(
            "bob",
            0,
            vec![provisioned("bob", "Agent", vec![]), recorded(2)],
            2,
        ))
        .unwrap();
    store
        .append_blocking(user_append(
            "carol",
            0,
            vec![provisioned("carol", "Agent", vec![]), recorded(3)],
            3,
        ))
        .unwrap();
    let update = Event::ProfileUpdated(ProfileUpdated {
        changes: vec![FieldChange {
            field: ProfileField::FirstName,
            from: None,
            to: Some("Bob".into()),
            source: Source::Attribute {
                idp_id: "okta".into(),
                attribute: "firstName".into(),
            },
        }],
    });
    store
        .append_blocking(user_append("bob", 2, vec![update, recorded(4)], 4))
        .unwrap();
}

#[test]
fn appends_are_numbered_chained_and_projected() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    populated(&store);
    let all = store.events_after(0, 100).unwrap();
    let seqs: Vec<u64> = all.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=11).collect::<Vec<_>>());
    for pair in all.windows(2) {
        assert_eq!(pair[1].prev_hash, pair[0].hash);
    }
    let bob = store.user("acme", "bob").unwrap().unwrap();
    assert_eq!(bob.field(ProfileField::FirstName), Some("Bob"));
    assert_eq!(bob.version, 4);
    assert_eq!(
        store.users_with_role("acme", "Agent").unwrap(),
        ["bob", "carol"]
    );
    assert_eq!(
        store.grants_on("acme", "ACCOUNT", "acct-1").unwrap(),
        [("alice".to_string(), "Admin".to_string())]
    );
    assert!(store.org("acme").unwrap().unwrap().idps["okta"].jit.enabled);
    assert_eq!(
        store
            .stream("acme", &user_stream("bob"), None)
            .unwrap()
            .len(),
        4
    );
    assert_eq!(store.verify().unwrap().events, 11);
}

#[test]
fn wrong_expected_version_is_a_conflict_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    populated(&store);
    let before = store.head().unwrap();
    let stale = user_append("bob", 1, vec![recorded(9)], 9);
    assert_eq!(
        store.append_blocking(stale),
        Err(AppendError::Conflict {
            expected: 1,
            actual: 4
        })
    );
    assert_eq!(store.head().unwrap(), before);
}

/// A directory holding a populated store, closed.
fn populated_and_closed() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    populated(&store);
    store.close().unwrap();
    dir
}

#[test]
fn an_assertion_can_be_appended_once_even_after_restart() {
    let dir = populated_and_closed();
    let store = open(&dir);
    let replay = user_append("bob", 4, vec![recorded(2)], 2);
    assert_eq!(
        store.append_blocking(replay),
        Err(AppendError::ReplayedAssertion {
            assertion_id: "_a2".into()
        })
    );
    assert_eq!(store.head().unwrap().0, 11);
    // Once expired, the ID is forgotten (the validator refuses the assertion as expired).
    let pruned = store.prune_assertions(1_003, None, 1_000).unwrap();
    assert_eq!((pruned.forgotten, pruned.resume_after), (2, None));
}

#[test]
fn pruning_in_steps_forgets_every_expired_guard_and_no_live_one() {
    let dir = populated_and_closed();
    let store = open(&dir);
    // One guard per step: the run resumes after the last key it read.
    let (mut forgotten, mut after, mut steps) = (0, None, 0);
    loop {
        let step = store.prune_assertions(1_003, after.as_deref(), 1).unwrap();
        assert!(step.forgotten <= 1);
        forgotten += step.forgotten;
        steps += 1;
        match step.resume_after {
            Some(key) => after = Some(key),
            None => break,
        }
    }
    assert_eq!(forgotten, 2);
    assert!(steps >= 3, "{steps}");
    // The live guards stay: their assertions are still refused as replays.
    assert_eq!(
        store.append_blocking(user_append("carol", 2, vec![recorded(3)], 3)),
        Err(AppendError::ReplayedAssertion {
            assertion_id: "_a3".into()
        })
    );
    // The forgotten ones went.
    store
        .append_blocking(user_append("alice", 2, vec![recorded(1)], 1))
        .unwrap();
}

/// Copies a closed store's sled files (everything but the segment files of `log/`).
fn copy_sled_files(from: &std::path::Path, to: &std::path::Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let (source, target) = (entry.path(), to.join(entry.file_name()));
        if entry.file_name() == "log" {
            continue;
        }
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_sled_files(&source, &target);
        } else {
            std::fs::copy(&source, &target).unwrap();
        }
    }
}

/// A crash after the segment file's sync and before sled's: the files hold alice's third
/// event (seq 12), sled is as it was before it. `edit` may change the segment file first.
fn appended_but_not_indexed(
    edit: impl FnOnce(&mut Vec<u8>, &[(u64, std::ops::Range<usize>)]),
) -> tempfile::TempDir {
    let dir = populated_and_closed();
    let before = tempfile::tempdir().unwrap();
    copy_sled_files(dir.path(), before.path());
    {
        let store = open(&dir);
        store
            .append_blocking(user_append("alice", 2, vec![recorded(9)], 9))
            .unwrap();
        store.close().unwrap();
    }
    std::thread::sleep(std::time::Duration::from_millis(100));
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let entry = entry.unwrap();
        if entry.file_name() != "log" {
            let path = entry.path();
            if path.is_dir() {
                std::fs::remove_dir_all(path).unwrap();
            } else {
                std::fs::remove_file(path).unwrap();
            }
        }
    }
    copy_sled_files(before.path(), dir.path());
    let path = segment_path(&dir);
    let mut bytes = std::fs::read(&path).unwrap();
    let records = records_in(&bytes);
    edit(&mut bytes, &records);
    std::fs::write(&path, &bytes).unwrap();
    dir
}

#[test]
fn an_unindexed_event_that_does_not_continue_its_stream_is_refused_on_open() {
    let dir = appended_but_not_indexed(|bytes, records| relink(bytes, records, 11, 0));
    let error = Store::open(&StoreConfig::new(dir.path())).unwrap_err();
    assert!(error.to_string().contains("event 12"), "{error}");
}

#[test]
fn events_synced_to_the_files_but_not_indexed_by_sled_are_indexed_on_open() {
    let dir = appended_but_not_indexed(|_, _| {});
    let store = open(&dir);
    assert_eq!(store.head().unwrap().0, 12);
    assert_eq!(
        store.stream_version("acme", &user_stream("alice")).unwrap(),
        3
    );
    let alice = store.user("acme", "alice").unwrap().unwrap();
    assert_eq!(alice.version, 3);
    let stream = store.stream("acme", &user_stream("alice"), None).unwrap();
    assert_eq!(stream.iter().map(|e| e.seq).collect::<Vec<_>>(), [4, 5, 12]);
    // The replay guard came back with the event.
    assert_eq!(
        store.append_blocking(user_append("alice", 3, vec![recorded(9)], 9)),
        Err(AppendError::ReplayedAssertion {
            assertion_id: "_a9".into()
        })
    );
    store.verify().unwrap();
}

/// Turns a closed store's indexes into the layout of an earlier release: each head holds
/// the stream's version alone, and a `streams` tree (org ‖ stream ‖ version → seq) is the
/// stream index. Removes the segment files and returns their records (seq, stored
/// envelope), for the caller to put where that release kept them.
fn to_earlier_index_layout(dir: &tempfile::TempDir) -> Vec<(u64, Vec<u8>)> {
    let file = std::fs::read(segment_path(dir)).unwrap();
    let records: Vec<(u64, Vec<u8>)> = records_in(&file)
        .into_iter()
        .map(|(seq, range)| (seq, file[range.start + HEADER..range.end].to_vec()))
        .collect();
    std::fs::remove_dir_all(dir.path().join("log")).unwrap();
    to_heads_tree_layout(dir, &[]);
    let db = raw_sled(dir);
    let (heads, streams) = (
        db.open_tree("heads").unwrap(),
        db.open_tree("streams").unwrap(),
    );
    for (seq, payload) in &records {
        let envelope = jitledger::store::envelope::decode(payload).unwrap();
        let stream = [envelope.org_id.as_bytes(), &[0], envelope.stream.as_bytes()].concat();
        let version = envelope.stream_version.to_be_bytes();
        streams
            .insert([&stream[..], &[0], &version].concat(), &seq.to_be_bytes())
            .unwrap();
        heads.insert(stream, &version).unwrap();
    }
    db.flush().unwrap();
    records
}

/// Turns a closed store's user heads into the layout of an earlier release: users are
/// stored without `last_seq` (the last 8 bytes of their encoding), and each user stream's
/// head is a key of the `heads` tree. The users in `moved` are left as they are, as if a
/// migration had moved them before a crash.
fn to_heads_tree_layout(dir: &tempfile::TempDir, moved: &[&str]) {
    let db = raw_sled(dir);
    let (users, heads) = (
        db.open_tree("users").unwrap(),
        db.open_tree("heads").unwrap(),
    );
    for entry in users.iter() {
        let (key, value) = entry.unwrap();
        let user: UserState = bincode::deserialize(&value).unwrap();
        if moved.contains(&user.user_id.as_str()) {
            continue;
        }
        users.insert(&key, &value[..value.len() - 8]).unwrap();
        let head = [user.version.to_be_bytes(), user.last_seq.to_be_bytes()].concat();
        heads
            .insert(format!("acme\0user:{}", user.user_id), head)
            .unwrap();
    }
    db.flush().unwrap();
}

/// Sets a head in the `heads` tree of a closed store, behind the log's back.
fn set_head(dir: &tempfile::TempDir, key: &[u8], version: u64, last_seq: u64) {
    let db = raw_sled(dir);
    let head = [version.to_be_bytes(), last_seq.to_be_bytes()].concat();
    db.open_tree("heads").unwrap().insert(key, head).unwrap();
    db.flush().unwrap();
}

/// The streams of the populated store, as read through the store.
fn every_stream(store: &Store) -> Vec<Vec<jitledger::store::Envelope>> {
    let mut streams = vec![store.stream("acme", CONFIG_STREAM, None).unwrap()];
    for user in ["alice", "bob", "carol"] {
        streams.push(store.stream("acme", &user_stream(user), None).unwrap());
    }
    streams
}

/// Opens a store migrated from an earlier layout and checks it holds what the store held
/// before, in the current layout, and takes appends.
fn check_migrated(dir: &tempfile::TempDir, streams_before: &[Vec<jitledger::store::Envelope>]) {
    let store = open(dir);
    assert_eq!(store.verify().unwrap().events, 11);
    assert_eq!(every_stream(&store), streams_before);
    assert_eq!(
        store.stream_version("acme", &user_stream("bob")).unwrap(),
        4
    );
    store
        .append_blocking(user_append("alice", 2, vec![recorded(9)], 9))
        .unwrap();
    store.verify().unwrap();
    store.close().unwrap();
    let db = raw_sled(dir);
    let trees = db.tree_names();
    assert!(
        !trees
            .iter()
            .any(|name| name == b"events" || name == b"streams")
    );
    let mut entries: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.starts_with("log"))
        .collect();
    entries.sort();
    assert_eq!(entries, ["log"]);
}

fn streams_of_populated(dir: &tempfile::TempDir) -> Vec<Vec<jitledger::store::Envelope>> {
    let store = open(dir);
    let streams = every_stream(&store);
    store.close().unwrap();
    streams
}

#[test]
fn user_heads_in_the_heads_tree_move_into_the_users() {
    let dir = populated_and_closed();
    let before = streams_of_populated(&dir);
    let users_before = {
        let store = open(&dir);
        let users = store.users("acme", None, 10).unwrap();
        store.close().unwrap();
        users
    };
    // alice was moved before a crash; bob and carol were not.
    to_heads_tree_layout(&dir, &["alice"]);
    {
        let store = open(&dir);
        assert_eq!(store.users("acme", None, 10).unwrap(), users_before);
        store.close().unwrap();
    }
    let db = raw_sled(&dir);
    let heads: Vec<_> = db
        .open_tree("heads")
        .unwrap()
        .iter()
        .keys()
        .map(Result::unwrap)
        .collect();
    assert_eq!(heads, [&b"acme\0config"[..]]);
    drop(db);
    check_migrated(&dir, &before);
}

#[test]
fn user_heads_of_a_store_with_a_rebuild_pending_go_and_the_rebuild_writes_the_users() {
    let dir = populated_and_closed();
    let before = streams_of_populated(&dir);
    to_heads_tree_layout(&dir, &[]);
    {
        // A rebuild stopped part way: carol is not written yet.
        let db = raw_sled(&dir);
        db.open_tree("users")
            .unwrap()
            .remove(b"acme\0carol")
            .unwrap();
        db.open_tree("meta")
            .unwrap()
            .insert("rebuilding", &[])
            .unwrap();
        db.flush().unwrap();
    }
    check_migrated(&dir, &before);
}

#[test]
fn a_user_whose_stored_state_does_not_fit_its_head_stops_the_move() {
    let dir = populated_and_closed();
    to_heads_tree_layout(&dir, &[]);
    set_head(&dir, b"acme\0user:bob", 3, 7);
    let error = Store::open(&StoreConfig::new(dir.path())).unwrap_err();
    assert!(error.to_string().contains("acme/user:bob"), "{error}");
}

#[test]
fn a_store_with_its_events_in_a_sled_tree_moves_them_into_linked_segment_files() {
    // The first layout: envelopes in a sled tree `events`, seq → bytes.
    let dir = populated_and_closed();
    let before = streams_of_populated(&dir);
    let records = to_earlier_index_layout(&dir);
    {
        let db = raw_sled(&dir);
        let events = db.open_tree("events").unwrap();
        for (seq, payload) in records {
            events.insert(seq.to_be_bytes(), payload).unwrap();
        }
        db.flush().unwrap();
    }
    check_migrated(&dir, &before);
}

/// A segment file of the layout without stream links: a 16-byte header (payload length with
/// the batch-end flag, CRC-32 over that word ‖ seq ‖ payload, seq), each record its own
/// batch, and a torn record after them that was never acknowledged.
fn legacy_segment(records: &[(u64, Vec<u8>)]) -> Vec<u8> {
    let mut file = Vec::new();
    for (seq, payload) in records {
        let word = (payload.len() as u32 | 1 << 31).to_be_bytes();
        let mut crc = crc32fast::Hasher::new();
        crc.update(&word);
        crc.update(&seq.to_be_bytes());
        crc.update(payload);
        file.extend_from_slice(&word);
        file.extend_from_slice(&crc.finalize().to_be_bytes());
        file.extend_from_slice(&seq.to_be_bytes());
        file.extend_from_slice(payload);
    }
    file.extend_from_slice(&[0, 0, 1]);
    file
}

/// Writes `file` as the one legacy segment of the store's log; returns its path.
fn write_legacy_log(dir: &tempfile::TempDir, file: &[u8]) -> std::path::PathBuf {
    let log = dir.path().join("log");
    std::fs::create_dir(&log).unwrap();
    let path = log.join(format!("{:020}.seg", 1));
    std::fs::write(&path, file).unwrap();
    path
}

#[test]
fn segment_files_without_stream_links_are_rewritten_with_them() {
    let dir = populated_and_closed();
    let before = streams_of_populated(&dir);
    let records = to_earlier_index_layout(&dir);
    write_legacy_log(&dir, &legacy_segment(&records));
    check_migrated(&dir, &before);
}

#[test]
fn a_rewrite_of_the_segments_cut_short_is_done_again() {
    // A crash while writing `log.migrating`: a partial directory beside the legacy one.
    let dir = populated_and_closed();
    let before = streams_of_populated(&dir);
    let records = to_earlier_index_layout(&dir);
    write_legacy_log(&dir, &legacy_segment(&records));
    let migrating = dir.path().join("log.migrating");
    std::fs::create_dir(&migrating).unwrap();
    std::fs::write(migrating.join(format!("{:020}.events", 1)), b"half a rec").unwrap();
    check_migrated(&dir, &before);
}

#[test]
fn heads_rewritten_in_part_before_a_crash_are_rewritten_whole() {
    // The segments are already linked; the `streams` tree is still there and one head
    // already holds its last seq.
    let dir = populated_and_closed();
    let before = streams_of_populated(&dir);
    let linked = std::fs::read(segment_path(&dir)).unwrap();
    to_earlier_index_layout(&dir);
    std::fs::create_dir(dir.path().join("log")).unwrap();
    std::fs::write(segment_path(&dir), linked).unwrap();
    set_head(&dir, b"acme\0user:alice", 2, 5);
    check_migrated(&dir, &before);
}

#[test]
fn a_damaged_acknowledged_record_in_a_legacy_segment_stops_the_rewrite() {
    let dir = populated_and_closed();
    let records = to_earlier_index_layout(&dir);
    let mut legacy = legacy_segment(&records);
    // A byte of seq 6's payload: 16-byte headers, so this is inside the sixth record.
    let sixth: usize = records[..5]
        .iter()
        .map(|(_, p)| 16 + p.len())
        .sum::<usize>()
        + 16
        + 30;
    legacy[sixth] ^= 0x01;
    let path = write_legacy_log(&dir, &legacy);
    let error = Store::open(&StoreConfig::new(dir.path())).unwrap_err();
    assert!(error.to_string().contains("damaged after seq 5"), "{error}");
    // The evidence is left as it was.
    assert_eq!(std::fs::read(&path).unwrap(), legacy);
}

#[test]
fn a_rewrite_of_the_segments_that_stopped_between_its_renames_is_finished() {
    // The rewritten segments are complete in `log.migrating`, the old ones were moved aside
    // to `log.legacy`, and then the process died.
    let dir = populated_and_closed();
    let before = streams_of_populated(&dir);
    let rewritten = std::fs::read(segment_path(&dir)).unwrap();
    let migrating = dir.path().join("log.migrating");
    std::fs::create_dir(&migrating).unwrap();
    std::fs::write(migrating.join(format!("{:020}.events", 1)), rewritten).unwrap();
    let records = to_earlier_index_layout(&dir);
    let legacy = dir.path().join("log.legacy");
    std::fs::create_dir(&legacy).unwrap();
    std::fs::write(
        legacy.join(format!("{:020}.seg", 1)),
        legacy_segment(&records),
    )
    .unwrap();
    check_migrated(&dir, &before);
}

#[test]
fn streams_must_start_right() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    store.append_blocking(org_created()).unwrap();
    let orphan = user_append("dave", 0, vec![recorded(5)], 5);
    assert!(matches!(
        store.append_blocking(orphan),
        Err(AppendError::Invalid(_))
    ));
    assert_eq!(store.head().unwrap().0, 3);
}

#[test]
fn reopening_does_not_replay_and_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let head = {
        let store = open(&dir);
        populated(&store);
        let head = store.head().unwrap();
        store.close().unwrap();
        head
    };
    let store = open(&dir);
    assert_eq!(store.head().unwrap(), head);
    assert_eq!(store.verify().unwrap().events, 11);
}

#[test]
fn rebuild_equals_the_incremental_projections() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(&dir);
    populated(&store);
    let before: Vec<_> = store.users("acme", None, 100).unwrap();
    assert_eq!(store.rebuild(|_, _| {}).unwrap(), 11);
    assert_eq!(store.users("acme", None, 100).unwrap(), before);
    store.verify().unwrap();
    // The writer is back after the rebuild.
    store
        .append_blocking(user_append("alice", 2, vec![recorded(9)], 9))
        .unwrap();
    store.verify().unwrap();
}

#[test]
fn rebuild_writes_every_user_of_a_chunk_larger_than_one_thread_takes() {
    // More users than the runs of users the two writing threads take, so that both write.
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(&dir);
    store.append_blocking(org_created()).unwrap();
    let users = 1_500;
    for n in 0..users {
        let user = format!("user-{n:04}");
        let events = vec![provisioned(&user, "Admin", Vec::new()), recorded(n)];
        store
            .append_blocking(user_append(&user, 0, events, n))
            .unwrap();
    }
    let before = store.users("acme", None, 2_000).unwrap();
    assert_eq!(before.len(), users as usize);
    store.rebuild(|_, _| {}).unwrap();
    assert_eq!(store.users("acme", None, 2_000).unwrap(), before);
    store.verify().unwrap();
}

#[test]
fn a_rebuild_that_did_not_finish_is_finished_by_the_next_open() {
    let dir = populated_and_closed();
    {
        // What a rebuild killed half-way leaves: its mark, and projections short of the log.
        let db = raw_sled(&dir);
        db.open_tree("meta")
            .unwrap()
            .insert("rebuilding", "")
            .unwrap();
        db.open_tree("users").unwrap().clear().unwrap();
        db.flush().unwrap();
    }
    let store = open(&dir);
    assert_eq!(store.users("acme", None, 100).unwrap().len(), 3);
    store.verify().unwrap();
    store
        .append_blocking(user_append("alice", 2, vec![recorded(9)], 9))
        .unwrap();
}

// ---- Tamper evidence: verify names the first bad seq.

/// The one segment file of a small store's log.
fn segment_path(dir: &tempfile::TempDir) -> std::path::PathBuf {
    dir.path().join("log").join(format!("{:020}.events", 1))
}

/// A segment record's header: payload length with the batch-end flag in its top bit, CRC,
/// seq, stream link.
const HEADER: usize = 24;

/// The records of a segment file as its format defines them: (seq, the record's byte range).
fn records_in(file: &[u8]) -> Vec<(u64, std::ops::Range<usize>)> {
    let mut records = Vec::new();
    let mut at = 0;
    while at < file.len() {
        let word = u32::from_be_bytes(file[at..at + 4].try_into().unwrap());
        let length = (word & !(1 << 31)) as usize;
        let seq = u64::from_be_bytes(file[at + 8..at + 16].try_into().unwrap());
        records.push((seq, at..at + HEADER + length));
        at += HEADER + length;
    }
    records
}

/// Closes the store, edits its segment file (given the file's bytes and its records), and
/// verifies a reopened store.
fn tampered(edit: impl FnOnce(&mut Vec<u8>, &[(u64, std::ops::Range<usize>)])) -> VerifyFailure {
    let dir = populated_and_closed();
    let path = segment_path(&dir);
    let mut bytes = std::fs::read(&path).unwrap();
    let records = records_in(&bytes);
    assert_eq!(records.len(), 11);
    edit(&mut bytes, &records);
    std::fs::write(&path, &bytes).unwrap();
    open(&dir).verify().unwrap_err()
}

/// The raw sled database under a closed store (its lock is released a moment after close).
fn raw_sled(dir: &tempfile::TempDir) -> sled::Db {
    for _ in 0..500 {
        match sled::open(dir.path()) {
            Ok(db) => return db,
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(20)),
        }
    }
    panic!("sled directory stays locked")
}

/// The file without the record at `index`.
fn without(bytes: &[u8], records: &[(u64, std::ops::Range<usize>)], index: usize) -> Vec<u8> {
    let range = records[index].1.clone();
    [&bytes[..range.start], &bytes[range.end..]].concat()
}

#[test]
fn flipping_a_byte_of_a_stored_event_fails_verify_at_its_seq() {
    let failure = tampered(|bytes, records| {
        bytes[records[4].1.start + HEADER + 40] ^= 0x01;
    });
    assert!(
        matches!(failure, VerifyFailure::Chain { seq: 5, .. }),
        "{failure:?}"
    );
}

#[test]
fn flipping_any_byte_of_any_event_breaks_the_chain_at_its_seq() {
    // The chain alone (without the segment files' checksums) catches every flipped bit of
    // every envelope: the files' checksums are not what tamper evidence rests on.
    let dir = populated_and_closed();
    let file = std::fs::read(segment_path(&dir)).unwrap();
    let records: Vec<([u8; 8], Vec<u8>)> = records_in(&file)
        .into_iter()
        .map(|(seq, range)| {
            (
                seq.to_be_bytes(),
                file[range.start + HEADER..range.end].to_vec(),
            )
        })
        .collect();
    let hasher = ChainHasher::Sha256;
    let intact = check_chain(
        records.iter().cloned().map(Ok),
        &hasher,
        &mut Default::default(),
    );
    assert_eq!(intact.unwrap().0, 11);
    for (index, (_, bytes)) in records.iter().enumerate() {
        for position in 0..bytes.len() {
            let mut copy = records.clone();
            copy[index].1[position] ^= 0x01;
            let failure = check_chain(copy.into_iter().map(Ok), &hasher, &mut Default::default())
                .unwrap_err();
            let seq = index as u64 + 1;
            assert!(
                matches!(failure, VerifyFailure::Chain { seq: s, .. } if s == seq),
                "{seq}/{position}: {failure:?}"
            );
        }
    }
}

/// Sets the stream link of the record at `index` and recomputes its CRC, as someone able to
/// edit the files would: the CRC catches damage, not intent.
fn relink(bytes: &mut [u8], records: &[(u64, std::ops::Range<usize>)], index: usize, to: u64) {
    let at = records[index].1.start;
    bytes[at + 16..at + 24].copy_from_slice(&to.to_be_bytes());
    let mut crc = crc32fast::Hasher::new();
    crc.update(&bytes[at..at + 4]);
    crc.update(&bytes[at + 8..records[index].1.end]);
    bytes[at + 4..at + 8].copy_from_slice(&crc.finalize().to_be_bytes());
}

#[test]
fn a_stream_link_pointing_elsewhere_fails_verify_at_its_seq() {
    // Seq 10 is bob's third event; its link says 7. Pointing it at alice's last event would
    // make bob's history read hers.
    for wrong in [5, 0, 9] {
        let failure = tampered(|bytes, records| relink(bytes, records, 9, wrong));
        assert!(
            matches!(failure, VerifyFailure::StreamLink { seq: 10, .. }),
            "{wrong}: {failure:?}"
        );
    }
}

/// The populated store's events with seq 10 (bob's third) claiming stream version 4, the
/// chain hashed again from genesis: what someone able to edit the files of a store without
/// a chain key could write.
fn resealed_with_a_version_gap(file: &[u8]) -> Vec<(u64, u64, Vec<u8>)> {
    let mut prev_hash = [0; 32];
    records_in(file)
        .into_iter()
        .map(|(seq, range)| {
            let link =
                u64::from_be_bytes(file[range.start + 16..range.start + 24].try_into().unwrap());
            let envelope =
                jitledger::store::envelope::decode(&file[range.start + HEADER..range.end]).unwrap();
            let unsealed = jitledger::store::envelope::Unsealed {
                seq: envelope.seq,
                org_id: envelope.org_id,
                stream: envelope.stream,
                stream_version: envelope.stream_version + u64::from(seq == 10),
                recorded_at: envelope.recorded_at,
                cause: envelope.cause,
                event: envelope.event,
            };
            let (bytes, sealed) = unsealed.seal(prev_hash, &ChainHasher::Sha256);
            prev_hash = sealed.hash;
            (seq, link, bytes)
        })
        .collect()
}

#[test]
fn an_event_off_its_stream_version_fails_verify_at_its_seq() {
    let dir = populated_and_closed();
    let path = segment_path(&dir);
    let mut file = Vec::new();
    for (seq, link, payload) in resealed_with_a_version_gap(&std::fs::read(&path).unwrap()) {
        let word = (payload.len() as u32 | 1 << 31).to_be_bytes();
        let numbers = [seq.to_be_bytes(), link.to_be_bytes()].concat();
        let mut crc = crc32fast::Hasher::new();
        crc.update(&word);
        crc.update(&numbers);
        crc.update(&payload);
        file.extend_from_slice(&word);
        file.extend_from_slice(&crc.finalize().to_be_bytes());
        file.extend_from_slice(&numbers);
        file.extend_from_slice(&payload);
    }
    std::fs::write(&path, file).unwrap();
    let failure = open(&dir).verify().unwrap_err();
    assert!(
        matches!(&failure, VerifyFailure::StreamLink { seq: 10, reason } if reason.contains("version")),
        "{failure:?}"
    );
}

#[test]
fn an_import_off_its_stream_version_writes_nothing() {
    let dir = populated_and_closed();
    let events = resealed_with_a_version_gap(&std::fs::read(segment_path(&dir)).unwrap());
    // The export format: magic, format byte, length-prefixed records, trailer, count, SHA-256.
    let mut file = b"JITLEDGER-LOG\n\x01".to_vec();
    for (_, _, payload) in &events {
        file.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        file.extend_from_slice(payload);
    }
    file.extend_from_slice(b"END\n");
    file.extend_from_slice(&(events.len() as u64).to_be_bytes());
    let sum = ring::digest::digest(&ring::digest::SHA256, &file);
    file.extend_from_slice(sum.as_ref());
    let export = dir.path().join("edited.export");
    std::fs::write(&export, file).unwrap();
    let target = tempfile::tempdir().unwrap();
    let mut store = open(&target);
    let failure = store.import(&export).unwrap_err();
    assert!(
        matches!(
            failure,
            jitledger::store::export::ImportError::Chain(VerifyFailure::StreamLink { seq: 10, .. })
        ),
        "{failure:?}"
    );
    assert_eq!(store.head().unwrap().0, 0);
    store.close().unwrap();
    assert_eq!(open(&target).head().unwrap().0, 0);
}

#[test]
fn a_stream_read_refuses_a_link_to_another_stream() {
    let dir = populated_and_closed();
    let path = segment_path(&dir);
    let mut bytes = std::fs::read(&path).unwrap();
    let records = records_in(&bytes);
    relink(&mut bytes, &records, 9, 5);
    std::fs::write(&path, &bytes).unwrap();
    let store = open(&dir);
    assert!(store.stream("acme", &user_stream("bob"), None).is_err());
    assert_eq!(
        store
            .stream("acme", &user_stream("alice"), None)
            .unwrap()
            .len(),
        2
    );
}

#[test]
fn deleting_an_event_is_detected_at_its_seq() {
    let failure = tampered(|bytes, records| *bytes = without(bytes, records, 6));
    assert!(
        matches!(failure, VerifyFailure::Chain { seq: 7, .. }),
        "{failure:?}"
    );
}

#[test]
fn deleting_the_last_event_is_detected() {
    let failure = tampered(|bytes, records| *bytes = without(bytes, records, 10));
    assert!(
        matches!(failure, VerifyFailure::Chain { seq: 11, .. }),
        "{failure:?}"
    );
}

#[test]
fn reordering_two_events_is_detected_at_the_first() {
    let failure = tampered(|bytes, records| {
        let (four, six) = (records[3].1.clone(), records[5].1.clone());
        *bytes = [
            &bytes[..four.start],
            &bytes[six.clone()],
            &bytes[four.end..six.start],
            &bytes[four.clone()],
            &bytes[six.end..],
        ]
        .concat();
    });
    assert!(
        matches!(failure, VerifyFailure::Chain { seq: 4, .. }),
        "{failure:?}"
    );
}

#[test]
fn a_projection_edited_behind_the_log_is_detected() {
    let dir = populated_and_closed();
    {
        let db = raw_sled(&dir);
        let roles = db.open_tree("users_by_role").unwrap();
        roles.insert(b"acme\0Admin\0mallory", b"".to_vec()).unwrap();
        db.flush().unwrap();
    }
    let failure = open(&dir).verify().unwrap_err();
    assert!(
        matches!(
            failure,
            VerifyFailure::Projection {
                projection: "users_by_role",
                ..
            }
        ),
        "{failure:?}"
    );
}

#[test]
fn a_stream_head_edited_behind_the_log_is_detected() {
    // The org's configuration head moved back to its first event: its next change would
    // fork the stream.
    let dir = populated_and_closed();
    set_head(&dir, b"acme\0config", 1, 1);
    let failure = open(&dir).verify().unwrap_err();
    assert_eq!(
        failure,
        VerifyFailure::StreamHead {
            key: "acme/config".into()
        }
    );
}

#[test]
fn a_user_head_edited_behind_the_log_is_detected() {
    // bob's head, in his projection, moved back to his second event.
    let dir = populated_and_closed();
    {
        let db = raw_sled(&dir);
        let users = db.open_tree("users").unwrap();
        let key = b"acme\0bob";
        let mut bob: UserState = bincode::deserialize(&users.get(key).unwrap().unwrap()).unwrap();
        (bob.version, bob.last_seq) = (2, 7);
        users
            .insert(key, bincode::serialize(&bob).unwrap())
            .unwrap();
        db.flush().unwrap();
    }
    let failure = open(&dir).verify().unwrap_err();
    assert_eq!(
        failure,
        VerifyFailure::Projection {
            projection: "users",
            key: "acme/bob".into()
        }
    );
}

#[test]
fn a_chain_key_makes_the_chain_unforgeable_without_it() {
    let dir = tempfile::tempdir().unwrap();
    let keyed = StoreConfig {
        chain_key: Some(b"secret".to_vec()),
        ..StoreConfig::new(dir.path())
    };
    {
        let store = Store::open(&keyed).unwrap();
        populated(&store);
        store.verify().unwrap();
        store.close().unwrap();
    }
    // Verified without the key, the chain does not hold.
    let failure = open(&dir).verify().unwrap_err();
    assert!(
        matches!(failure, VerifyFailure::Chain { seq: 1, .. }),
        "{failure:?}"
    );
}

// ---- Concurrency: group commit and optimistic concurrency.

#[test]
fn concurrent_appends_to_one_stream_keep_consecutive_versions() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open(&dir));
    store.append_blocking(org_created()).unwrap();
    store
        .append_blocking(user_append(
            "alice",
            0,
            vec![provisioned("alice", "Agent", vec![]), recorded(0)],
            0,
        ))
        .unwrap();
    let threads: Vec<_> = (1..=64u64)
        .map(|n| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                loop {
                    // Read, decide (here: always one LoginRecorded), append; on conflict, again.
                    let version = store.stream_version("acme", &user_stream("alice")).unwrap();
                    match store.append_blocking(user_append("alice", version, vec![recorded(n)], n))
                    {
                        Ok(envelopes) => return envelopes[0].stream_version,
                        Err(AppendError::Conflict { .. }) => continue,
                        Err(other) => panic!("{other:?}"),
                    }
                }
            })
        })
        .collect();
    let mut versions: Vec<u64> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    versions.sort();
    assert_eq!(versions, (3..=66).collect::<Vec<_>>());
    assert_eq!(store.user("acme", "alice").unwrap().unwrap().version, 66);
    store.verify().unwrap();
}
