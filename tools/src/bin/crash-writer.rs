//! `crash-writer`: the two halves of the crash drill (see `tools/crash-drill` and
//! `tools/tests/crash_drill.rs`).
//!
//! `crash-writer --data DIR --seed N --threads T` opens the store, creates the drill's org
//! when absent, then appends from T threads until it is killed: mostly new users
//! (UserProvisioned + LoginRecorded), some updates of existing users (ProfileUpdated +
//! LoginRecorded at the stream version just read; a conflict reads again). After every
//! acknowledged append it writes one line to stdout, in one `write` and flushed:
//!
//! ```text
//! ack <org> <stream> <stream version of the last event> <seq of the last event> <assertion id>
//! ```
//!
//! (`-` as assertion ID for the org's configuration append). A printed line therefore means
//! an acknowledged — durable — append.
//!
//! `crash-writer check --data DIR --acks FILE…` opens the store and checks that every
//! acknowledged append is there (the envelope at that stream version has that seq, and its
//! LoginRecorded carries that assertion ID), that the acknowledged streams are whole, and
//! that `Store::verify` passes. It exits 1 naming the first missing ack or the verify
//! failure, 2 when the store does not open, 3 when an acks file cannot be read or parsed.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use clap::{Args, Parser, Subcommand};
use jitledger::events::{
    AclEntry, Event, FieldChange, IdpMetadata, JitSettings, JitSettingsChanged, LoginRecorded,
    OnType, OrgCreated, ProfileField, ProfileUpdated, Source, UserProvisioned,
};
use jitledger::store::{
    AppendError, AppendRequest, AssertionGuard, CONFIG_STREAM, Cause, Envelope, Store, StoreConfig,
    user_stream,
};

/// The service's allocator (`src/main.rs` says why), so that what is measured matches it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The org every drill run appends to.
const ORG: &str = "drill";
const IDP: &str = "okta";
/// Recently provisioned users that updates pick from: few enough that threads collide.
const RECENT_USERS_MAX: usize = 32;
/// Share of appends, in percent, that update an existing user.
const UPDATE_PERCENT: u64 = 30;

#[derive(Debug, Parser)]
#[command(
    name = "crash-writer",
    about = "Appends to a jitledger store until killed, or checks acknowledged appends",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    write: Option<WriteArgs>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check a store against the ack lines of earlier runs.
    Check(CheckArgs),
}

#[derive(Debug, Args)]
struct WriteArgs {
    /// The store's directory.
    #[arg(long)]
    data: PathBuf,
    #[arg(long)]
    seed: u64,
    #[arg(long, default_value_t = 4)]
    threads: u32,
}

#[derive(Debug, Args)]
struct CheckArgs {
    #[arg(long)]
    data: PathBuf,
    /// Files of `ack` lines; may be given more than once.
    #[arg(long, required = true)]
    acks: Vec<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match (cli.command, cli.write) {
        (Some(Command::Check(args)), _) => check(&args),
        (None, Some(args)) => write(&args),
        (None, None) => {
            eprintln!("crash-writer: give --data, --seed (and --threads), or `check`");
            ExitCode::from(2)
        }
    }
}

// ---- Writing until killed.

/// xorshift64*: reproducible from `--seed`, no dependency.
#[derive(Debug)]
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> XorShift {
        // splitmix64 of the seed, so that neighbouring seeds diverge and 0 is not a fixpoint.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        XorShift((z ^ (z >> 31)) | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn now_nanos() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}

/// Writes one ack line in a single `write` and flushes it: once it returns, the line is in
/// the pipe or file, whatever happens to this process next.
fn print_ack(stream: &str, last: &Envelope, assertion_id: &str) {
    let line = format!(
        "ack {ORG} {stream} {} {} {assertion_id}\n",
        last.stream_version, last.seq
    );
    let mut out = std::io::stdout().lock();
    if out
        .write_all(line.as_bytes())
        .and_then(|()| out.flush())
        .is_err()
    {
        // Nobody reads the acks any more: appending on would be unobserved.
        std::process::exit(3);
    }
}

fn fail(what: &str) -> ! {
    eprintln!("crash-writer: {what}");
    std::process::exit(1);
}

fn org_created() -> Vec<Event> {
    vec![
        Event::OrgCreated(OrgCreated {
            sp_entity_id: "https://sp.drill.example.com".into(),
            acs_url: "https://sp.drill.example.com/acs".into(),
            clock_skew_seconds: 120,
            allow_idp_initiated: true,
        }),
        Event::IdpRegistered(IdpMetadata {
            idp_id: IDP.into(),
            entity_id: "https://okta.drill.example.com".into(),
            metadata_xml: "<md:EntityDescriptor/>".into(),
        }),
        Event::JitSettingsChanged(JitSettingsChanged {
            idp_id: IDP.into(),
            settings: JitSettings {
                enabled: true,
                default_role: "Agent".into(),
                idp_managed_roles: false,
                attribute_mapping: Vec::new(),
                acl_attributes: false,
                required_for_creation: Vec::new(),
                user_id_attribute: None,
                allow_sha1: false,
            },
        }),
    ]
}

/// Creates the org unless a previous run did (and was acknowledged or not).
fn ensure_org(store: &Store) {
    let version = store
        .stream_version(ORG, CONFIG_STREAM)
        .unwrap_or_else(|e| fail(&format!("reading the config stream: {e}")));
    if version > 0 {
        return;
    }
    let request = AppendRequest {
        org_id: ORG.into(),
        stream: CONFIG_STREAM.into(),
        expected_version: 0,
        events: org_created(),
        cause: Cause::System,
        assertion: None,
        recorded_at: now_nanos(),
    };
    match store.append_blocking(request) {
        Ok(envelopes) => match envelopes.last() {
            Some(last) => print_ack(CONFIG_STREAM, last, "-"),
            None => fail("org append acknowledged without envelopes"),
        },
        Err(e) => fail(&format!("creating the org: {e}")),
    }
}

struct Writer {
    store: Store,
    /// Unique to this process: the seed, the process ID and the head seq at start.
    nonce: String,
    recent: Mutex<Vec<String>>,
}

impl Writer {
    fn login(&self, assertion_id: &str, at: i128) -> (Cause, Event, AssertionGuard) {
        let cause = Cause::Login {
            login_id: format!("login{assertion_id}"),
            assertion_id: assertion_id.into(),
            idp_id: IDP.into(),
        };
        let event = Event::LoginRecorded(LoginRecorded {
            assertion_id: assertion_id.into(),
            idp_id: IDP.into(),
            authn_instant: at,
            session_index: Some(format!("s{assertion_id}")),
            session_not_on_or_after: Some(at + 3_600_000_000_000),
        });
        let guard = AssertionGuard {
            assertion_id: assertion_id.into(),
            not_on_or_after: at + 600_000_000_000,
        };
        (cause, event, guard)
    }

    fn attribute(name: &str) -> Source {
        Source::Attribute {
            idp_id: IDP.into(),
            attribute: name.into(),
        }
    }

    /// Appends, and on success prints the ack. False on a conflict (updates only).
    fn append(
        &self,
        stream: &str,
        expected_version: u64,
        first: Event,
        assertion_id: &str,
    ) -> bool {
        let at = now_nanos();
        let (cause, login, guard) = self.login(assertion_id, at);
        let request = AppendRequest {
            org_id: ORG.into(),
            stream: stream.into(),
            expected_version,
            events: vec![first, login],
            cause,
            assertion: Some(guard),
            recorded_at: at,
        };
        match self.store.append_blocking(request) {
            Ok(envelopes) => {
                let Some(last) = envelopes.last() else {
                    fail("append acknowledged without envelopes")
                };
                print_ack(stream, last, assertion_id);
                true
            }
            Err(AppendError::Conflict { .. }) if expected_version > 0 => false,
            Err(e) => fail(&format!("append to {stream} failed: {e}")),
        }
    }

    fn provision(&self, thread: u32, counter: u64, rng: &mut XorShift) {
        let user_id = format!("u{}t{thread}n{counter}", self.nonce);
        let assertion_id = format!("_{}-t{thread}-n{counter}", self.nonce);
        let acl = if rng.below(4) == 0 {
            vec![AclEntry {
                role_id: "Admin".into(),
                on: format!("acct-{}", rng.below(8)),
                on_type: OnType::Account,
            }]
        } else {
            Vec::new()
        };
        let event = Event::UserProvisioned(UserProvisioned {
            user_id: user_id.clone(),
            idp_id: IDP.into(),
            profile: vec![FieldChange {
                field: ProfileField::Email,
                from: None,
                to: Some(format!("{user_id}@drill.example.com")),
                source: Self::attribute("emailAddress"),
            }],
            role: if acl.is_empty() { "Agent" } else { "Admin" }.into(),
            role_source: Source::DefaultRole { idp_id: IDP.into() },
            acl_source: (!acl.is_empty()).then(|| Self::attribute("acl")),
            acl,
        });
        self.append(&user_stream(&user_id), 0, event, &assertion_id);
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        if recent.len() >= RECENT_USERS_MAX {
            recent.remove(0);
        }
        recent.push(user_id);
    }

    fn update(&self, thread: u32, counter: &mut u64, rng: &mut XorShift, user_id: &str) {
        let stream = user_stream(user_id);
        loop {
            *counter += 1;
            let assertion_id = format!("_{}-t{thread}-n{counter}", self.nonce);
            let version = self
                .store
                .stream_version(ORG, &stream)
                .unwrap_or_else(|e| fail(&format!("reading {stream}: {e}")));
            let before = self
                .store
                .user(ORG, user_id)
                .unwrap_or_else(|e| fail(&format!("reading user {user_id}: {e}")))
                .and_then(|user| user.field(ProfileField::FirstName).map(str::to_string));
            let event = Event::ProfileUpdated(ProfileUpdated {
                changes: vec![FieldChange {
                    field: ProfileField::FirstName,
                    from: before,
                    to: Some(format!("n{}", rng.below(1_000_000))),
                    source: Self::attribute("firstName"),
                }],
            });
            if self.append(&stream, version, event, &assertion_id) {
                return;
            }
        }
    }

    fn run(&self, thread: u32, seed: u64) -> ! {
        let mut rng = XorShift::new(seed ^ u64::from(thread).wrapping_mul(0xA076_1D64_78BD_642F));
        let mut counter = 0u64;
        loop {
            counter += 1;
            let pick = if rng.below(100) < UPDATE_PERCENT {
                let recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
                (!recent.is_empty())
                    .then(|| recent[rng.below(recent.len() as u64) as usize].clone())
            } else {
                None
            };
            match pick {
                Some(user_id) => self.update(thread, &mut counter, &mut rng, &user_id),
                None => self.provision(thread, counter, &mut rng),
            }
        }
    }
}

fn write(args: &WriteArgs) -> ExitCode {
    let store = Store::open(&StoreConfig::new(&args.data))
        .unwrap_or_else(|e| fail(&format!("opening {}: {e}", args.data.display())));
    let (head, _) = store
        .head()
        .unwrap_or_else(|e| fail(&format!("reading the head: {e}")));
    ensure_org(&store);
    // Users of earlier runs, so that updates also reach streams written before a crash.
    let earlier: Vec<String> = store
        .users(ORG, None, RECENT_USERS_MAX)
        .unwrap_or_else(|e| fail(&format!("listing users: {e}")))
        .into_iter()
        .map(|user| user.user_id)
        .collect();
    // A restart never reuses an assertion ID or user ID: every run that made anything
    // durable moved the head past what the next run reads.
    let nonce = format!("{:x}p{}h{head}", args.seed, std::process::id());
    eprintln!(
        "crash-writer: seed {} pid {} head {head} threads {} nonce {nonce}",
        args.seed,
        std::process::id(),
        args.threads
    );
    let writer = Arc::new(Writer {
        store,
        nonce,
        recent: Mutex::new(earlier),
    });
    let threads: Vec<_> = (0..args.threads.max(1))
        .map(|thread| {
            let writer = Arc::clone(&writer);
            let seed = args.seed;
            std::thread::spawn(move || writer.run(thread, seed))
        })
        .collect();
    for thread in threads {
        // `run` never returns; a panic ends the drill run loudly.
        if thread.join().is_err() {
            fail("a writer thread panicked");
        }
    }
    ExitCode::SUCCESS
}

// ---- Checking after a crash.

#[derive(Debug)]
struct Ack {
    org: String,
    stream: String,
    version: u64,
    seq: u64,
    assertion_id: String,
    /// `file:line`, to name it.
    at: String,
}

impl std::fmt::Display for Ack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ack {} {} {} {} {} ({})",
            self.org, self.stream, self.version, self.seq, self.assertion_id, self.at
        )
    }
}

/// Reads ack lines. A last line without its newline is a write the kill cut short (a
/// single `write` of a short line normally cannot be cut): reported and skipped. Anything
/// else that is not an ack line is an error.
fn read_acks(files: &[PathBuf]) -> Result<(Vec<Ack>, usize), String> {
    let mut acks = Vec::new();
    let mut partial = 0;
    for file in files {
        let text = std::fs::read_to_string(file)
            .map_err(|e| format!("reading {}: {e}", file.display()))?;
        let complete = text.ends_with('\n') || text.is_empty();
        let lines: Vec<&str> = text.lines().collect();
        for (index, line) in lines.iter().enumerate() {
            let at = format!("{}:{}", file.display(), index + 1);
            let fields: Vec<&str> = line.split(' ').collect();
            let parsed = match fields.as_slice() {
                ["ack", org, stream, version, seq, assertion_id] => {
                    match (version.parse(), seq.parse()) {
                        (Ok(version), Ok(seq)) => Some(Ack {
                            org: org.to_string(),
                            stream: stream.to_string(),
                            version,
                            seq,
                            assertion_id: assertion_id.to_string(),
                            at: at.clone(),
                        }),
                        _ => None,
                    }
                }
                _ => None,
            };
            match parsed {
                Some(ack) => acks.push(ack),
                None if !complete && index + 1 == lines.len() => {
                    eprintln!("crash-writer check: {at}: partial last line {line:?} skipped");
                    partial += 1;
                }
                None => return Err(format!("{at}: not an ack line: {line:?}")),
            }
        }
    }
    Ok((acks, partial))
}

/// Why an ack is not in the store, if it is not.
fn missing(ack: &Ack, by_version: &BTreeMap<u64, &Envelope>) -> Option<String> {
    let Some(envelope) = by_version.get(&ack.version) else {
        return Some(format!(
            "stream has no version {} (it ends at {})",
            ack.version,
            by_version.keys().next_back().copied().unwrap_or(0)
        ));
    };
    if envelope.seq != ack.seq {
        return Some(format!(
            "version {} is seq {}, not {}",
            ack.version, envelope.seq, ack.seq
        ));
    }
    if ack.assertion_id == "-" {
        return (ack.stream != CONFIG_STREAM)
            .then(|| "a user append acknowledged without assertion ID".to_string());
    }
    match &envelope.event {
        Event::LoginRecorded(login) if login.assertion_id == ack.assertion_id => {}
        Event::LoginRecorded(login) => {
            return Some(format!(
                "LoginRecorded carries assertion {}",
                login.assertion_id
            ));
        }
        other => return Some(format!("seq {} is {}", envelope.seq, other.type_name())),
    }
    match &envelope.cause {
        Cause::Login { assertion_id, .. } if *assertion_id == ack.assertion_id => None,
        cause => Some(format!("cause is {cause:?}")),
    }
}

fn check(args: &CheckArgs) -> ExitCode {
    let started = std::time::Instant::now();
    let (acks, partial) = match read_acks(&args.acks) {
        Ok(read) => read,
        Err(e) => {
            eprintln!("crash-writer check: {e}");
            return ExitCode::from(3);
        }
    };
    let store = match Store::open(&StoreConfig::new(&args.data)) {
        Ok(store) => store,
        Err(e) => {
            println!("OPEN FAILED: {}: {e}", args.data.display());
            return ExitCode::from(2);
        }
    };
    let opened = started.elapsed();
    let mut problems: Vec<String> = Vec::new();
    let mut lost = 0u64;

    // Two acks naming one seq, or one assertion ID, mean the writer was told something twice.
    let mut seqs = HashSet::new();
    let mut assertion_ids = HashSet::new();
    for ack in &acks {
        if !seqs.insert(ack.seq)
            || (ack.assertion_id != "-" && !assertion_ids.insert(ack.assertion_id.as_str()))
        {
            problems.push(format!(
                "DUPLICATE: {ack}: seq or assertion ID acknowledged twice"
            ));
        }
    }

    let mut by_stream: HashMap<(&str, &str), Vec<&Ack>> = HashMap::new();
    for ack in &acks {
        by_stream
            .entry((ack.org.as_str(), ack.stream.as_str()))
            .or_default()
            .push(ack);
    }
    let mut streams: Vec<_> = by_stream.into_iter().collect();
    // In order of the first ack of each stream, so that "first missing" is meaningful.
    streams.sort_by_key(|(_, acks)| acks.iter().map(|a| a.seq).min());
    for ((org, stream), stream_acks) in &streams {
        let envelopes = match store.stream(org, stream, None) {
            Ok(envelopes) => envelopes,
            Err(e) => {
                problems.push(format!("READ FAILED: stream {org}/{stream}: {e}"));
                lost += stream_acks.len() as u64;
                continue;
            }
        };
        // The stream is whole: versions 1..=n, and its head says n.
        let whole = envelopes
            .iter()
            .enumerate()
            .all(|(i, e)| e.stream_version == i as u64 + 1 && e.stream == *stream);
        let head = store.stream_version(org, stream).unwrap_or(u64::MAX);
        if !whole || head != envelopes.len() as u64 {
            problems.push(format!(
                "TORN STREAM: {org}/{stream}: {} envelopes, head {head}, consecutive {whole}",
                envelopes.len()
            ));
        }
        let by_version: BTreeMap<u64, &Envelope> =
            envelopes.iter().map(|e| (e.stream_version, e)).collect();
        for ack in stream_acks {
            if let Some(reason) = missing(ack, &by_version) {
                lost += 1;
                problems.push(format!("MISSING: {ack}: {reason}"));
            }
        }
    }

    let looked_up = started.elapsed();
    let verified = store.verify();
    let verified_at = started.elapsed();
    let head = store.head().map(|(seq, _)| seq).unwrap_or(0);
    match &verified {
        Ok(report) => {
            if let Some(max) = acks.iter().map(|a| a.seq).max()
                && max > report.events
            {
                problems.push(format!(
                    "HEAD BEHIND: acknowledged seq {max}, log has {} events",
                    report.events
                ));
            }
        }
        Err(failure) => problems.push(format!("VERIFY FAILED: {failure}")),
    }
    if let Err(e) = store.close() {
        problems.push(format!("CLOSE FAILED: {e}"));
    }
    let events = verified.as_ref().map_or(0, |r| r.events);
    println!(
        "check: acks {} streams {} lost {lost} events {events} head {head} partial {partial} \
         problems {} (read+open {:.2}s, acks {:.2}s, verify {:.2}s) in {:.2}s",
        acks.len(),
        streams.len(),
        problems.len(),
        opened.as_secs_f64(),
        (looked_up - opened).as_secs_f64(),
        (verified_at - looked_up).as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    if problems.is_empty() {
        return ExitCode::SUCCESS;
    }
    for problem in problems.iter().take(20) {
        println!("{problem}");
    }
    if problems.len() > 20 {
        println!("… and {} more", problems.len() - 20);
    }
    ExitCode::from(1)
}
