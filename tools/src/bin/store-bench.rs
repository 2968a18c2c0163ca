//! `store-bench`: throughput and cost of the sled event log (`jitledger::store`), against the
//! floor of the disk it runs on. BENCHMARKS.md (section "Event log (store)") records results.
//!
//! * `store-bench floor`: median latency of a 4 KiB write + `fdatasync` (appending to a file,
//!   and overwriting one block) and of an `fdatasync` with nothing written, and raw sled inserts/s with one `flush` per 100 inserts
//!   (and with `flush` + `fdatasync` per 100): what no durable append can beat.
//! * `store-bench appends --concurrency 1,16,256 --seconds 10`: N threads each append
//!   login-shaped requests (UserProvisioned + LoginRecorded of a new user, a unique assertion
//!   guard) to a fresh store with `Store::append_blocking` for a fixed time, after a warm-up.
//!   Reports appends/s, events/s, append latency p50/p99/max, the CPU the process and the
//!   writer thread used per append, and from `Store::stats` the batches (how many, their
//!   size, the time in flush + fdatasync). Runs the floor first (`--no-floor` to skip).
//! * `store-bench build --events 1000000`: builds a log of that many events with many
//!   concurrent appenders (large batches), reports the build time and bytes on disk per event.
//! * `store-bench replay --dir DIR`: opens an existing log (`Store::open` + `head()`), then
//!   `rebuild` and `verify`, with RSS after each step (`--open-only`: the open alone).
//! * `store-bench rebuild --events 1000000`: `build`, then `replay` of that log in a fresh
//!   process (so that RSS is that of an open, not of the build).
//!
//! Every subcommand takes `--runs N` (prints each run, then the median of each figure) and
//! `--wait-load L` (before each run, waits up to `--wait-max` seconds, ten minutes by default,
//! for the 1-minute load average to fall to L). Data goes under `--base` (default: the workspace's `target/store-bench`, on the
//! disk the workspace is on — not a tmpfs) and is removed afterwards unless `--keep`.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::{Args, Parser, Subcommand};
use jitledger::events::{Event, FieldChange, LoginRecorded, ProfileField, Source, UserProvisioned};
use jitledger::store::conformance::org_request;
use jitledger::store::envelope::Unsealed;
use jitledger::store::{
    AppendError, AppendRequest, AssertionGuard, Cause, ChainHasher, Store, StoreConfig, user_stream,
};

/// The service's allocator (`src/main.rs` says why), so that what is measured matches it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const ORG: &str = "acme";
const IDP: &str = "okta";
/// Events of the org's configuration append (`conformance::org_request`).
const ORG_EVENTS: u64 = 2;
/// Events of one login append.
const LOGIN_EVENTS: u64 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "store-bench",
    about = "Benchmarks of the jitledger event log against the disk's floor"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// fdatasync latency and raw sled inserts/s with a flush per 100.
    Floor(FloorCommand),
    /// Durable appends/s at one or more concurrency levels.
    Appends(AppendsCommand),
    /// Builds a log of N events with concurrent appenders.
    Build(BuildCommand),
    /// Opens an existing log, then rebuilds its projections and verifies it.
    Replay(ReplayCommand),
    /// `build`, then `replay` of that log in a fresh process.
    Rebuild(RebuildCommand),
}

#[derive(Debug, Clone, Args)]
struct Common {
    /// Directory under which each run makes its data directory.
    #[arg(long, default_value_os_t = default_base())]
    base: PathBuf,
    /// Repeat the measurement and report the median of each figure.
    #[arg(long, default_value_t = 1)]
    runs: usize,
    /// Before each run, wait (up to --wait-max seconds) until the 1-minute load average is
    /// ≤ this.
    #[arg(long)]
    wait_load: Option<f64>,
    #[arg(long, default_value_t = 600.0)]
    wait_max: f64,
    /// Leave the data directories in place.
    #[arg(long)]
    keep: bool,
}

#[derive(Debug, Clone, Args)]
struct FloorArgs {
    /// 4 KiB write + fdatasync rounds, for each of the three modes.
    #[arg(long, default_value_t = 1000)]
    sync_rounds: usize,
    /// sled inserts for each of the two flush modes.
    #[arg(long, default_value_t = 200_000)]
    inserts: u64,
    /// Bytes of each sled value (default: the mean stored size of this benchmark's events).
    #[arg(long)]
    value_bytes: Option<usize>,
}

#[derive(Debug, Args)]
struct FloorCommand {
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    floor: FloorArgs,
}

#[derive(Debug, Args)]
struct AppendsCommand {
    #[command(flatten)]
    common: Common,
    /// Appending threads; a comma-separated list runs each level in turn.
    #[arg(long, value_delimiter = ',', default_values_t = [1, 16, 256])]
    concurrency: Vec<usize>,
    /// Measured seconds per level.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Seconds of appending before the measurement starts (not counted).
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Skip the floor measured before the appends.
    #[arg(long)]
    no_floor: bool,
    /// How the appenders run: OS threads calling `append_blocking`, or tokio tasks awaiting
    /// `append` on a runtime of `--workers` threads (as the service runs them).
    #[arg(long, value_enum, default_value_t = Mode::Threads)]
    mode: Mode,
    /// Worker threads of the runtime in `--mode tasks` (default: one per CPU).
    #[arg(long)]
    workers: Option<usize>,
    /// What each append is: the first login of a new user (UserProvisioned + LoginRecorded),
    /// or a repeat login of the appender's own user (LoginRecorded alone, after one first
    /// login during the warm-up) that changes nothing else.
    #[arg(long, value_enum, default_value_t = Shape::First)]
    shape: Shape,
    #[command(flatten)]
    floor: FloorArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Shape {
    First,
    Repeat,
}

impl Shape {
    /// The `n`th append of appender `thread`.
    fn request(self, thread: u64, n: u64) -> AppendRequest {
        match (self, n) {
            (Shape::First, _) | (Shape::Repeat, 0) => login_request(thread, n),
            (Shape::Repeat, _) => repeat_login_request(thread, n),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Mode {
    Threads,
    Tasks,
}

#[derive(Debug, Clone, Args)]
struct BuildArgs {
    /// Events in the log (the org's 2 configuration events, then 2 per login).
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Concurrent appenders while building: many, so that batches are large.
    #[arg(long, default_value_t = 256)]
    appenders: usize,
    /// Distinct users: with 0, every login is the first of a new user; with N, the first N
    /// logins provision `user{i}@load.example.com` (the names `loadgen` queries) and every
    /// later login is a repeat login of user `(n - N) % N` (LoginRecorded alone).
    #[arg(long, default_value_t = 0)]
    users: u64,
    /// Forget expired replay guards every this many seconds while building, as `serve`
    /// does every five minutes (0: never, and every guard of the build stays).
    #[arg(long, default_value_t = 0)]
    prune_every_s: u64,
}

#[derive(Debug, Args)]
struct BuildCommand {
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    build: BuildArgs,
    /// Build here (must not exist) instead of a fresh directory under --base; implies --keep.
    #[arg(long)]
    dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct ReplayCommand {
    /// The store's directory.
    #[arg(long)]
    dir: PathBuf,
    /// Skip `verify`.
    #[arg(long)]
    no_verify: bool,
    /// Only open the store and read its head (no rebuild, no verify).
    #[arg(long)]
    open_only: bool,
    /// Print figures as `name=value` lines only (how `rebuild` reads them).
    #[arg(long, hide = true)]
    machine: bool,
}

#[derive(Debug, Args)]
struct RebuildCommand {
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    build: BuildArgs,
    /// Skip `verify`.
    #[arg(long)]
    no_verify: bool,
}

fn default_base() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/store-bench")
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Floor(command) => repeat("floor", &command.common, |common| {
            floor(common, &command.floor)
        }),
        Command::Appends(command) => appends(&command),
        Command::Build(command) => build_command(&command),
        Command::Replay(command) => replay_command(&command),
        Command::Rebuild(command) => repeat("rebuild", &command.common, |common| {
            rebuild(common, &command.build, command.no_verify)
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("store-bench: {message}");
            ExitCode::FAILURE
        }
    }
}

type Fallible<T> = Result<T, String>;

/// Named figures of one run, in the order they were measured.
#[derive(Debug, Default, Clone)]
struct Figures(Vec<(String, f64)>);

impl Figures {
    fn set(&mut self, name: &str, value: f64) {
        self.0.push((name.to_string(), value));
    }

    fn extend(&mut self, other: Figures) {
        self.0.extend(other.0);
    }

    fn print(&self, indent: &str) {
        let width = self.0.iter().map(|(name, _)| name.len()).max().unwrap_or(0);
        for (name, value) in &self.0 {
            println!("{indent}{name:width$}  {}", format_value(*value));
        }
    }
}

fn format_value(value: f64) -> String {
    if value.abs() >= 100.0 || value == value.trunc() {
        format!("{value:.0}")
    } else if value.abs() >= 1.0 {
        format!("{value:.2}")
    } else {
        format!("{value:.4}")
    }
}

/// Runs `measure` `common.runs` times, printing each run, then the medians.
fn repeat(
    label: &str,
    common: &Common,
    mut measure: impl FnMut(&Common) -> Fallible<Figures>,
) -> Fallible<()> {
    print_machine(&common.base)?;
    let mut runs = Vec::new();
    for run in 1..=common.runs {
        wait_for_load(common.wait_load, common.wait_max);
        println!("{label}: run {run}/{}", common.runs);
        let figures = measure(common)?;
        figures.print("  ");
        runs.push(figures);
    }
    if runs.len() > 1 {
        println!("{label}: median of {} runs", runs.len());
        medians(&runs).print("  ");
    }
    Ok(())
}

fn medians(runs: &[Figures]) -> Figures {
    let mut by_name: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for run in runs {
        for (name, value) in &run.0 {
            by_name.entry(name).or_default().push(*value);
        }
    }
    let mut result = Figures::default();
    // In the order of the first run.
    for (name, _) in &runs[0].0 {
        if let Some(values) = by_name.get_mut(name.as_str()) {
            values.sort_by(f64::total_cmp);
            result.set(name, values[values.len() / 2]);
        }
    }
    result
}

// ---------------------------------------------------------------------------------------
// Machine, load, memory, disk

fn print_machine(base: &Path) -> Fallible<()> {
    std::fs::create_dir_all(base).map_err(|e| format!("creating {}: {e}", base.display()))?;
    let cpu = read_to_string("/proc/cpuinfo")
        .lines()
        .find(|line| line.starts_with("model name"))
        .and_then(|line| line.split(':').nth(1))
        .map(|model| model.trim().to_string())
        .unwrap_or_else(|| "?".into());
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let memory = proc_kib("/proc/meminfo", "MemTotal:").unwrap_or(0);
    let base = base.canonicalize().unwrap_or_else(|_| base.to_path_buf());
    let (device, fs_type, mount) = mount_of(&base);
    println!(
        "machine: {cpus} CPUs ({cpu}), {:.1} GiB memory; data under {} on {device} ({fs_type}, mounted at {mount})",
        memory as f64 / (1024.0 * 1024.0),
        base.display(),
    );
    if fs_type == "tmpfs" || fs_type == "ramfs" {
        eprintln!(
            "store-bench: warning: {} is on {fs_type}, not a disk",
            base.display()
        );
    }
    Ok(())
}

fn read_to_string(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// (device, file system type, mount point) of the mount holding `path`.
fn mount_of(path: &Path) -> (String, String, String) {
    let mut best = ("?".to_string(), "?".to_string(), String::new());
    for line in read_to_string("/proc/mounts").lines() {
        let parts: Vec<&str> = line.split_whitespace().collect();
        if parts.len() < 3 {
            continue;
        }
        if path.starts_with(parts[1]) && parts[1].len() >= best.2.len() {
            best = (parts[0].into(), parts[2].into(), parts[1].into());
        }
    }
    best
}

/// The first three fields of /proc/loadavg.
fn load_average() -> [f64; 3] {
    let text = read_to_string("/proc/loadavg");
    let mut fields = text
        .split_whitespace()
        .map(|field| field.parse().unwrap_or(f64::NAN));
    [(); 3].map(|_| fields.next().unwrap_or(f64::NAN))
}

fn wait_for_load(limit: Option<f64>, wait_max: f64) {
    let Some(limit) = limit else { return };
    let deadline = Instant::now() + Duration::from_secs_f64(wait_max);
    let started = Instant::now();
    while load_average()[0] > limit && Instant::now() < deadline {
        std::thread::sleep(Duration::from_secs(5));
    }
    let load = load_average()[0];
    println!(
        "  (waited {:.0} s for load ≤ {limit}: load is {load:.2})",
        started.elapsed().as_secs_f64()
    );
}

/// A `key:   123 kB` line of a /proc file, in KiB.
fn proc_kib(path: &str, key: &str) -> Option<u64> {
    read_to_string(path)
        .lines()
        .find(|line| line.starts_with(key))
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|value| value.parse().ok())
}

fn rss_mib() -> f64 {
    proc_kib("/proc/self/status", "VmRSS:").unwrap_or(0) as f64 / 1024.0
}

fn peak_rss_mib() -> f64 {
    proc_kib("/proc/self/status", "VmHWM:").unwrap_or(0) as f64 / 1024.0
}

/// CPU seconds (user + system) of the whole process, dead threads included.
fn process_cpu_seconds() -> f64 {
    let stat = read_to_string("/proc/self/stat");
    // Fields after the command (which may hold spaces), from field 3 on.
    let rest = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |index: usize| -> f64 {
        fields
            .get(index)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15: indexes 11 and 12 after the command. USER_HZ
    // is 100 on every Linux this runs on.
    (ticks(11) + ticks(12)) / 100.0
}

/// The task ID of this process's thread with that name (as truncated in `comm`).
fn thread_id(name: &str) -> Option<String> {
    let wanted: String = name.chars().take(15).collect();
    std::fs::read_dir("/proc/self/task")
        .ok()?
        .filter_map(Result::ok)
        .find(|entry| {
            std::fs::read_to_string(entry.path().join("comm"))
                .is_ok_and(|comm| comm.trim_end() == wanted)
        })
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
}

/// CPU seconds a thread of this process has run (schedstat, nanosecond resolution).
fn thread_cpu_seconds(tid: &str) -> f64 {
    read_to_string(&format!("/proc/self/task/{tid}/schedstat"))
        .split_whitespace()
        .next()
        .and_then(|ns| ns.parse::<f64>().ok())
        .map_or(0.0, |ns| ns / 1e9)
}

/// Allocated bytes (like `du`) and apparent bytes of every file under `path`.
fn disk_usage(path: &Path) -> (u64, u64) {
    let mut allocated = 0;
    let mut apparent = 0;
    let mut pending = vec![path.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.filter_map(Result::ok) {
            let Ok(metadata) = entry.metadata() else {
                continue;
            };
            if metadata.is_dir() {
                pending.push(entry.path());
            } else {
                allocated += metadata.blocks() * 512;
                apparent += metadata.len();
            }
        }
    }
    (allocated, apparent)
}

/// A fresh directory under `base`.
fn fresh_dir(base: &Path, label: &str) -> Fallible<PathBuf> {
    let nanos = unix_nanos();
    let dir = base.join(format!("{label}-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    Ok(dir)
}

fn remove_unless_kept(dir: &Path, keep: bool) {
    if keep {
        println!("  (kept {})", dir.display());
    } else if let Err(error) = std::fs::remove_dir_all(dir) {
        eprintln!("store-bench: removing {}: {error}", dir.display());
    }
}

fn unix_nanos() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}

/// Value at quantile `q` of sorted samples.
fn quantile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

// ---------------------------------------------------------------------------------------
// Requests

/// A deterministic 64-bit mix (splitmix64), for IDs that look random.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn attribute(name: &str) -> Source {
    Source::Attribute {
        idp_id: IDP.into(),
        attribute: name.into(),
    }
}

/// The first login of a new user, as the service appends it: UserProvisioned (email, first
/// and last name from attributes, the IdP's default role) and LoginRecorded, caused by the
/// login, guarded by its assertion ID (shaped like an IdP's: `_` and 40 hex digits).
/// `thread` and `n` make the user and the assertion unique.
fn login_request(thread: u64, n: u64) -> AppendRequest {
    let now = unix_nanos();
    let key = (thread << 40) | n;
    let assertion_id = format!("_{:016x}{:016x}{:08x}", mix(key), mix(!key), n as u32);
    let login_id = format!("{:016x}{:016x}", mix(key ^ 0x5a5a), mix(key ^ 0xa5a5));
    let user_id = format!("user{thread}.{n}@bench.example.com");
    let provisioned = Event::UserProvisioned(UserProvisioned {
        user_id: user_id.clone(),
        idp_id: IDP.into(),
        profile: vec![
            FieldChange {
                field: ProfileField::Email,
                from: None,
                to: Some(user_id.clone()),
                source: attribute("emailAddress"),
            },
            FieldChange {
                field: ProfileField::FirstName,
                from: None,
                to: Some("Bench".into()),
                source: attribute("firstName"),
            },
            FieldChange {
                field: ProfileField::LastName,
                from: None,
                to: Some(format!("User {thread}-{n}")),
                source: attribute("lastName"),
            },
        ],
        role: "Agent".into(),
        role_source: Source::DefaultRole { idp_id: IDP.into() },
        acl: Vec::new(),
        acl_source: None,
    });
    let recorded = Event::LoginRecorded(LoginRecorded {
        assertion_id: assertion_id.clone(),
        idp_id: IDP.into(),
        authn_instant: now,
        session_index: Some(format!("_session{:016x}", mix(key ^ 0x77))),
        session_not_on_or_after: Some(now + 8 * 3600 * 1_000_000_000),
    });
    AppendRequest {
        org_id: ORG.into(),
        stream: user_stream(&user_id),
        expected_version: 0,
        events: vec![provisioned, recorded],
        cause: Cause::Login {
            login_id,
            assertion_id: assertion_id.clone(),
            idp_id: IDP.into(),
        },
        assertion: Some(AssertionGuard {
            assertion_id,
            not_on_or_after: now + 300 * 1_000_000_000,
        }),
        recorded_at: now,
    }
}

/// Login `n` (≥ 1) of the user whose first login was `login_request(thread, 0)`: only its
/// LoginRecorded, at stream version `n + 2`.
fn repeat_login_request(thread: u64, n: u64) -> AppendRequest {
    let mut request = login_request(thread, n);
    let first_user = format!("user{thread}.0@bench.example.com");
    request.stream = user_stream(&first_user);
    request.expected_version = n + 1;
    request
        .events
        .retain(|event| matches!(event, Event::LoginRecorded(_)));
    request
}

/// Login `n` of a log of `users` named users: the first `users` logins provision them, each
/// later one is a repeat login of user `(n - users) % users`.
fn named_user_login(n: u64, users: u64) -> AppendRequest {
    let user = n % users;
    let visit = n / users;
    let user_id = format!("user{user}@load.example.com");
    let mut request = login_request(user, visit);
    request.stream = user_stream(&user_id);
    request.expected_version = if visit == 0 { 0 } else { visit + 1 };
    for event in &mut request.events {
        if let Event::UserProvisioned(provisioned) = event {
            provisioned.user_id = user_id.clone();
            for change in &mut provisioned.profile {
                if change.field == ProfileField::Email {
                    change.to = Some(user_id.clone());
                }
            }
        }
    }
    if visit > 0 {
        request
            .events
            .retain(|event| matches!(event, Event::LoginRecorded(_)));
    }
    request
}

/// The mean stored size (envelope with its hash) of the events of one login request.
fn mean_event_bytes() -> usize {
    let request = login_request(123, 456_789);
    let total: usize = request
        .events
        .iter()
        .enumerate()
        .map(|(offset, event)| {
            let unsealed = Unsealed {
                seq: 1_000_000 + offset as u64,
                org_id: request.org_id.clone(),
                stream: request.stream.clone(),
                stream_version: offset as u64 + 1,
                recorded_at: request.recorded_at,
                cause: request.cause.clone(),
                event: event.clone(),
            };
            unsealed.seal([0; 32], &ChainHasher::Sha256).0.len()
        })
        .sum();
    total / request.events.len()
}

/// Appends the login `(thread, n)`, retrying while the queue is full; `request` is its first
/// attempt, built ahead. Returns the number of `Busy` refusals.
fn append_retrying(store: &Store, make: impl Fn() -> AppendRequest) -> Fallible<u64> {
    let mut busy = 0;
    loop {
        match store.append_blocking(make()) {
            Ok(_) => return Ok(busy),
            Err(AppendError::Busy) => {
                busy += 1;
                std::thread::sleep(Duration::from_micros(200));
            }
            Err(other) => return Err(format!("append failed: {other}")),
        }
    }
}

fn open_store(dir: &Path) -> Fallible<Store> {
    Store::open(&StoreConfig::new(dir)).map_err(|e| format!("opening {}: {e}", dir.display()))
}

/// Threads with a small stack: 256 of them are cheap.
fn spawn_scoped<'scope, 'env, T: Send + 'scope>(
    scope: &'scope std::thread::Scope<'scope, 'env>,
    body: impl FnOnce() -> T + Send + 'scope,
) -> Fallible<std::thread::ScopedJoinHandle<'scope, T>> {
    std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn_scoped(scope, body)
        .map_err(|e| format!("spawning a thread: {e}"))
}

// ---------------------------------------------------------------------------------------
// Floor

fn floor(common: &Common, args: &FloorArgs) -> Fallible<Figures> {
    let dir = fresh_dir(&common.base, "floor")?;
    let load = load_average();
    let mut figures = Figures::default();
    figures.set("load1_start", load[0]);
    for (mode, name) in [
        (SyncMode::Append, "4k_append"),
        (SyncMode::Overwrite, "4k_overwrite"),
        (SyncMode::Clean, "nothing_written"),
    ] {
        let mut samples = fdatasync_samples(&dir, mode, args.sync_rounds)?;
        samples.sort_unstable();
        figures.set(
            &format!("fdatasync_{name}_p50_us"),
            quantile(&samples, 0.5) as f64 / 1e3,
        );
        figures.set(
            &format!("fdatasync_{name}_p99_us"),
            quantile(&samples, 0.99) as f64 / 1e3,
        );
    }
    let value_bytes = args.value_bytes.unwrap_or_else(mean_event_bytes);
    figures.set("sled_value_bytes", value_bytes as f64);
    for (sync, name) in [
        (false, "sled_inserts_per_s_flush_per_100"),
        (true, "sled_inserts_per_s_flush_fdatasync_per_100"),
    ] {
        let sled_dir = dir.join(if sync { "sled-sync" } else { "sled" });
        let rate = sled_inserts(&sled_dir, args.inserts, value_bytes, sync)?;
        figures.set(name, rate);
    }
    figures.set("load1_end", load_average()[0]);
    remove_unless_kept(&dir, common.keep);
    Ok(figures)
}

#[derive(Debug, Clone, Copy)]
enum SyncMode {
    /// Each write extends the file (its size changes: a metadata update per sync).
    Append,
    /// Each write overwrites the same block of an allocated file.
    Overwrite,
    /// No write: `fdatasync` of a clean file, the device cache flush alone.
    Clean,
}

/// Nanoseconds of each 4 KiB write (none in `Clean` mode) + fdatasync.
fn fdatasync_samples(dir: &Path, mode: SyncMode, rounds: usize) -> Fallible<Vec<u64>> {
    let path = dir.join(format!("sync-{mode:?}"));
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| format!("creating {}: {e}", path.display()))?;
    let block = vec![0xa5u8; 4096];
    let io = |e: std::io::Error| format!("{}: {e}", path.display());
    if let SyncMode::Overwrite | SyncMode::Clean = mode {
        file.write_all(&block).map_err(io)?;
        file.sync_all().map_err(io)?;
    }
    let mut samples = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let start = Instant::now();
        match mode {
            SyncMode::Append => file.write_all(&block).map_err(io)?,
            SyncMode::Overwrite => file.write_all_at(&block, 0).map_err(io)?,
            SyncMode::Clean => {}
        }
        file.sync_data().map_err(io)?;
        samples.push(start.elapsed().as_nanos() as u64);
    }
    Ok(samples)
}

/// Inserts/s of sequential 8-byte keys into a sled tree configured as the store configures
/// its database, with `flush` (and, with `sync`, `fdatasync` of the data file) per 100.
fn sled_inserts(dir: &Path, inserts: u64, value_bytes: usize, sync: bool) -> Fallible<f64> {
    let db = sled::Config::new()
        .path(dir)
        .cache_capacity(jitledger::store::CACHE_BYTES)
        .flush_every_ms(None)
        .open()
        .map_err(|e| format!("sled: {e}"))?;
    let tree = db.open_tree("events").map_err(|e| format!("sled: {e}"))?;
    let data_file = dir.join("db");
    let mut value = vec![0u8; value_bytes];
    let start = Instant::now();
    for i in 0..inserts {
        value[..8.min(value_bytes)].copy_from_slice(&i.to_le_bytes()[..8.min(value_bytes)]);
        tree.insert(i.to_be_bytes(), value.as_slice())
            .map_err(|e| format!("sled: {e}"))?;
        if (i + 1) % 100 == 0 {
            db.flush().map_err(|e| format!("sled: {e}"))?;
            if sync {
                File::open(&data_file)
                    .and_then(|file| file.sync_data())
                    .map_err(|e| format!("{}: {e}", data_file.display()))?;
            }
        }
    }
    db.flush().map_err(|e| format!("sled: {e}"))?;
    Ok(inserts as f64 / start.elapsed().as_secs_f64())
}

// ---------------------------------------------------------------------------------------
// Appends

fn appends(command: &AppendsCommand) -> Fallible<()> {
    let common = &command.common;
    if !command.no_floor {
        repeat("floor", common, |common| floor(common, &command.floor))?;
    } else {
        print_machine(&common.base)?;
    }
    let mut all_medians = Vec::new();
    for &concurrency in &command.concurrency {
        let label = format!(
            "appends mode={:?} shape={:?} concurrency={concurrency}",
            command.mode, command.shape
        )
        .to_lowercase();
        let mut runs = Vec::new();
        for run in 1..=common.runs {
            wait_for_load(common.wait_load, common.wait_max);
            println!("{label}: run {run}/{}", common.runs);
            let figures = append_run(common, command, concurrency)?;
            figures.print("  ");
            runs.push(figures);
        }
        if runs.len() > 1 {
            let medians = medians(&runs);
            println!("{label}: median of {} runs", runs.len());
            medians.print("  ");
            all_medians.push((label, medians));
        }
    }
    if all_medians.len() > 1 {
        println!("summary (medians): concurrency, appends/s, events/s, p50 ms, p99 ms");
        for (label, figures) in &all_medians {
            let get = |name: &str| {
                figures
                    .0
                    .iter()
                    .find(|(n, _)| n == name)
                    .map_or(f64::NAN, |(_, v)| *v)
            };
            println!(
                "  {label}: {:.0} appends/s, {:.0} events/s, p50 {:.2} ms, p99 {:.2} ms",
                get("appends_per_s"),
                get("events_per_s"),
                get("latency_p50_ms"),
                get("latency_p99_ms"),
            );
        }
    }
    Ok(())
}

/// One completed append: when it completed and how long it took, in ns since the start.
type Sample = (u64, u64);

/// What the appenders of one run did.
#[derive(Debug)]
struct Appended {
    samples: Vec<Sample>,
    window: WindowStats,
    busy: u64,
}

/// The measured window, from the start of the appenders.
#[derive(Debug, Clone, Copy)]
struct Window {
    start: Duration,
    end: Duration,
}

impl Window {
    /// Sleeps until the window starts, then until it ends; returns the CPU seconds (process,
    /// writer thread) spent in it.
    fn measure(self, began: Instant, writer: Option<&str>, store: &Store) -> WindowStats {
        let snapshot = || {
            let stats = store.stats();
            WindowStats {
                process_cpu: process_cpu_seconds(),
                writer_cpu: writer.map_or(0.0, thread_cpu_seconds),
                batches: stats.batches.load(Ordering::Relaxed),
                requests: stats.requests.load(Ordering::Relaxed),
                durable_seconds: stats.durable_nanos.load(Ordering::Relaxed) as f64 / 1e9,
            }
        };
        std::thread::sleep(self.start.saturating_sub(began.elapsed()));
        let before = snapshot();
        std::thread::sleep(self.end.saturating_sub(began.elapsed()));
        let after = snapshot();
        WindowStats {
            process_cpu: after.process_cpu - before.process_cpu,
            writer_cpu: after.writer_cpu - before.writer_cpu,
            batches: after.batches - before.batches,
            requests: after.requests - before.requests,
            durable_seconds: after.durable_seconds - before.durable_seconds,
        }
    }
}

/// What happened during the measured window.
#[derive(Debug, Clone, Copy)]
struct WindowStats {
    /// CPU seconds of the whole process.
    process_cpu: f64,
    /// CPU seconds of the writer thread.
    writer_cpu: f64,
    /// Batches the writer committed (`Store::stats`).
    batches: u64,
    /// Requests in those batches.
    requests: u64,
    /// Seconds the writer spent in sled's flush and the fdatasync after it.
    durable_seconds: f64,
}

fn append_run(common: &Common, command: &AppendsCommand, concurrency: usize) -> Fallible<Figures> {
    let seconds = command.seconds;
    let dir = fresh_dir(&common.base, &format!("appends-c{concurrency}"))?;
    let load_start = load_average();
    let store = open_store(&dir)?;
    store
        .append_blocking(org_request())
        .map_err(|e| format!("org: {e}"))?;
    let window = Window {
        start: Duration::from_secs_f64(command.warmup),
        end: Duration::from_secs_f64(command.warmup + seconds),
    };
    let (store, appended) = match command.mode {
        Mode::Threads => {
            let appended = appenders_threads(&store, concurrency, command.shape, window)?;
            (store, appended)
        }
        Mode::Tasks => {
            let workers = command
                .workers
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
            appenders_tasks(store, concurrency, workers, command.shape, window)?
        }
    };
    let Appended {
        samples,
        window: stats,
        busy,
    } = appended;
    let (head, _) = store.head().map_err(|e| format!("head: {e}"))?;
    store.close().map_err(|e| format!("close: {e}"))?;
    let (allocated, _) = disk_usage(&dir);

    let (from, to) = (window.start.as_nanos() as u64, window.end.as_nanos() as u64);
    let mut latencies: Vec<u64> = samples
        .iter()
        .filter(|(ended, _)| (from..to).contains(ended))
        .map(|(_, latency)| *latency)
        .collect();
    latencies.sort_unstable();
    let appended = latencies.len() as f64;
    let mut figures = Figures::default();
    figures.set("concurrency", concurrency as f64);
    figures.set("load1_start", load_start[0]);
    figures.set("appends_per_s", appended / seconds);
    figures.set("events_per_s", appended * LOGIN_EVENTS as f64 / seconds);
    figures.set("latency_p50_ms", quantile(&latencies, 0.5) as f64 / 1e6);
    figures.set("latency_p99_ms", quantile(&latencies, 0.99) as f64 / 1e6);
    figures.set("latency_max_ms", quantile(&latencies, 1.0) as f64 / 1e6);
    figures.set(
        "process_cpu_us_per_append",
        stats.process_cpu * 1e6 / appended.max(1.0),
    );
    figures.set(
        "writer_cpu_us_per_append",
        stats.writer_cpu * 1e6 / appended.max(1.0),
    );
    figures.set("writer_cpu_percent", stats.writer_cpu * 100.0 / seconds);
    let batches = stats.batches.max(1) as f64;
    figures.set("batches_per_s", stats.batches as f64 / seconds);
    figures.set("requests_per_batch", stats.requests as f64 / batches);
    figures.set(
        "flush_and_sync_ms_per_batch",
        stats.durable_seconds * 1e3 / batches,
    );
    figures.set(
        "flush_and_sync_percent",
        stats.durable_seconds * 100.0 / seconds,
    );
    figures.set(
        // The writer's wall time per batch outside flush and sync: the transaction, the
        // replies, and waiting for the next request when the queue is empty.
        "outside_flush_ms_per_batch",
        (seconds - stats.durable_seconds) * 1e3 / batches,
    );
    figures.set("busy_refusals", busy as f64);
    figures.set("events_in_log", head as f64);
    figures.set(
        "disk_bytes_per_event",
        allocated as f64 / head.max(1) as f64,
    );
    figures.set("load1_end", load_average()[0]);
    remove_unless_kept(&dir, common.keep);
    Ok(figures)
}

/// `concurrency` OS threads calling `append_blocking` in a loop.
fn appenders_threads(
    store: &Store,
    concurrency: usize,
    shape: Shape,
    window: Window,
) -> Fallible<Appended> {
    let writer = thread_id("jitledger-writer");
    let stop = AtomicBool::new(false);
    let busy = AtomicU64::new(0);
    let began = Instant::now();
    std::thread::scope(|scope| -> Fallible<Appended> {
        let mut handles = Vec::new();
        for thread in 0..concurrency as u64 {
            let (stop, busy) = (&stop, &busy);
            handles.push(spawn_scoped(scope, move || -> Fallible<Vec<Sample>> {
                let mut samples = Vec::with_capacity(4096);
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    let start = began.elapsed();
                    busy.fetch_add(
                        append_retrying(store, || shape.request(thread, n))?,
                        Ordering::Relaxed,
                    );
                    let end = began.elapsed();
                    samples.push((end.as_nanos() as u64, (end - start).as_nanos() as u64));
                    n += 1;
                }
                Ok(samples)
            })?);
        }
        let stats = window.measure(began, writer.as_deref(), store);
        stop.store(true, Ordering::Relaxed);
        let mut samples = Vec::new();
        for handle in handles {
            let thread_samples = handle
                .join()
                .map_err(|_| "an appending thread panicked".to_string())??;
            samples.extend(thread_samples);
        }
        Ok(Appended {
            samples,
            window: stats,
            busy: busy.load(Ordering::Relaxed),
        })
    })
}

/// `concurrency` tokio tasks awaiting `Store::append` in a loop, on `workers` threads.
fn appenders_tasks(
    store: Store,
    concurrency: usize,
    workers: usize,
    shape: Shape,
    window: Window,
) -> Fallible<(Store, Appended)> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    let writer = thread_id("jitledger-writer");
    let store = Arc::new(store);
    let stop = Arc::new(AtomicBool::new(false));
    let busy = Arc::new(AtomicU64::new(0));
    let began = Instant::now();
    let handles: Vec<_> = (0..concurrency as u64)
        .map(|thread| {
            let (store, stop, busy) = (Arc::clone(&store), Arc::clone(&stop), Arc::clone(&busy));
            runtime.spawn(async move {
                let mut samples: Vec<Sample> = Vec::with_capacity(4096);
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    let mut request = shape.request(thread, n);
                    let start = began.elapsed();
                    loop {
                        match store.append(request).await {
                            Ok(_) => break,
                            Err(AppendError::Busy) => {
                                busy.fetch_add(1, Ordering::Relaxed);
                                tokio::task::yield_now().await;
                                request = shape.request(thread, n);
                            }
                            Err(other) => return Err(format!("append failed: {other}")),
                        }
                    }
                    let end = began.elapsed();
                    samples.push((end.as_nanos() as u64, (end - start).as_nanos() as u64));
                    n += 1;
                }
                Ok(samples)
            })
        })
        .collect();
    let stats = window.measure(began, writer.as_deref(), &store);
    stop.store(true, Ordering::Relaxed);
    let samples = runtime.block_on(async {
        let mut samples = Vec::new();
        for handle in handles {
            let task_samples = handle
                .await
                .map_err(|e| format!("an appending task failed: {e}"))??;
            samples.extend(task_samples);
        }
        Ok::<_, String>(samples)
    })?;
    drop(runtime);
    let store = Arc::try_unwrap(store).map_err(|_| "store still shared".to_string())?;
    Ok((
        store,
        Appended {
            samples,
            window: stats,
            busy: busy.load(Ordering::Relaxed),
        },
    ))
}

// ---------------------------------------------------------------------------------------
// Build, replay, rebuild

/// Forgets every expired replay guard of the store, as `serve`'s pruner does.
fn forget_expired_guards(store: &Store) -> Fallible<()> {
    let now = unix_nanos();
    let mut after: Option<Vec<u8>> = None;
    loop {
        let step = store
            .prune_assertions(now, after.as_deref(), 1024)
            .map_err(|e| format!("prune: {e}"))?;
        match step.resume_after {
            Some(key) => after = Some(key),
            None => return Ok(()),
        }
    }
}

/// Builds a log of `args.events` events (rounded up to a whole login) in `dir`.
fn build(dir: &Path, args: &BuildArgs) -> Fallible<Figures> {
    let after_org = args.events.saturating_sub(ORG_EVENTS);
    let logins = match args.users {
        0 => after_org.div_ceil(LOGIN_EVENTS),
        users => {
            if users < 4 * args.appenders as u64 {
                return Err(
                    "--users must be at least 4 × --appenders (one user's logins must not overlap)"
                        .into(),
                );
            }
            let first = users.min(after_org / LOGIN_EVENTS);
            first + (after_org - first * LOGIN_EVENTS)
        }
    };
    let users = args.users;
    let load_start = load_average();
    let started = Instant::now();
    let store = open_store(dir)?;
    store
        .append_blocking(org_request())
        .map_err(|e| format!("org: {e}"))?;
    let next = AtomicU64::new(0);
    let busy = AtomicU64::new(0);
    let failure: Mutex<Option<String>> = Mutex::new(None);
    let progress = Arc::new(AtomicU64::new(0));
    std::thread::scope(|scope| -> Fallible<()> {
        for thread in 0..args.appenders as u64 {
            let (store, next, busy, failure, progress) =
                (&store, &next, &busy, &failure, &progress);
            spawn_scoped(scope, move || {
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= logins {
                        return;
                    }
                    let request = || match users {
                        0 => login_request(thread, n),
                        users => named_user_login(n, users),
                    };
                    match append_retrying(store, request) {
                        Ok(refused) => {
                            busy.fetch_add(refused, Ordering::Relaxed);
                            progress.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(error) => {
                            *failure.lock().unwrap_or_else(|e| e.into_inner()) = Some(error);
                            next.store(logins, Ordering::Relaxed);
                            return;
                        }
                    }
                }
            })?;
        }
        // Progress on stderr, every 10 s.
        let reporter = Arc::clone(&progress);
        let mut last = Instant::now();
        let mut last_prune = Instant::now();
        while reporter.load(Ordering::Relaxed) < logins
            && failure.lock().unwrap_or_else(|e| e.into_inner()).is_none()
        {
            std::thread::sleep(Duration::from_millis(100));
            if args.prune_every_s > 0
                && last_prune.elapsed() >= Duration::from_secs(args.prune_every_s)
            {
                last_prune = Instant::now();
                forget_expired_guards(&store)?;
            }
            if last.elapsed() >= Duration::from_secs(10) {
                last = Instant::now();
                eprintln!(
                    "  build: {} / {logins} logins after {:.0} s",
                    reporter.load(Ordering::Relaxed),
                    started.elapsed().as_secs_f64()
                );
            }
        }
        Ok(())
    })?;
    if let Some(error) = failure.into_inner().unwrap_or_else(|e| e.into_inner()) {
        return Err(error);
    }
    let (head, _) = store.head().map_err(|e| format!("head: {e}"))?;
    store.close().map_err(|e| format!("close: {e}"))?;
    let seconds = started.elapsed().as_secs_f64();
    let (allocated, apparent) = disk_usage(dir);
    let mut figures = Figures::default();
    figures.set("load1_start", load_start[0]);
    figures.set("events", head as f64);
    figures.set("build_appenders", args.appenders as f64);
    figures.set("build_seconds", seconds);
    figures.set("build_appends_per_s", logins as f64 / seconds);
    figures.set("build_events_per_s", head as f64 / seconds);
    figures.set("build_busy_refusals", busy.load(Ordering::Relaxed) as f64);
    figures.set("disk_mib_after_build", allocated as f64 / (1024.0 * 1024.0));
    figures.set(
        "disk_bytes_per_event_after_build",
        allocated as f64 / head as f64,
    );
    figures.set(
        "apparent_bytes_per_event_after_build",
        apparent as f64 / head as f64,
    );
    figures.set("stored_bytes_per_event_envelope", mean_event_bytes() as f64);
    figures.set("load1_end_build", load_average()[0]);
    Ok(figures)
}

fn build_command(command: &BuildCommand) -> Fallible<()> {
    repeat("build", &command.common, |common| {
        let (dir, keep) = match &command.dir {
            Some(dir) if dir.exists() => {
                return Err(format!("{} exists", dir.display()));
            }
            Some(dir) => (dir.clone(), true),
            None => (
                fresh_dir(&common.base, &format!("log-{}", command.build.events))?,
                common.keep,
            ),
        };
        let figures = build(&dir, &command.build)?;
        remove_unless_kept(&dir, keep);
        Ok(figures)
    })
}

/// Opens the log in `dir`, rebuilds it and verifies it, with RSS after each step.
fn replay(dir: &Path, rebuild: bool, verify: bool) -> Fallible<Figures> {
    let mut figures = Figures::default();
    figures.set("load1_start_replay", load_average()[0]);
    figures.set("rss_mib_before_open", rss_mib());
    let started = Instant::now();
    let mut store = open_store(dir)?;
    let (head, _) = store.head().map_err(|e| format!("head: {e}"))?;
    let open_seconds = started.elapsed().as_secs_f64();
    figures.set("open_ms", open_seconds * 1e3);
    figures.set("head_seq", head as f64);
    figures.set("rss_mib_after_open", rss_mib());
    if !rebuild {
        store.close().map_err(|e| format!("close: {e}"))?;
        return Ok(figures);
    }

    let started = Instant::now();
    let rebuilt = store
        .rebuild(|_, _| {})
        .map_err(|e| format!("rebuild: {e}"))?;
    let rebuild_seconds = started.elapsed().as_secs_f64();
    figures.set("rebuild_events", rebuilt as f64);
    figures.set("rebuild_seconds", rebuild_seconds);
    let rebuild_per_s = rebuilt as f64 / rebuild_seconds;
    figures.set("rebuild_events_per_s", rebuild_per_s);
    figures.set("rss_mib_after_rebuild", rss_mib());
    figures.set("peak_rss_mib_after_rebuild", peak_rss_mib());

    if verify {
        let started = Instant::now();
        let report = store.verify().map_err(|e| format!("verify: {e}"))?;
        let verify_seconds = started.elapsed().as_secs_f64();
        figures.set("verify_seconds", verify_seconds);
        figures.set("verify_events_per_s", report.events as f64 / verify_seconds);
        figures.set("rss_mib_after_verify", rss_mib());
        figures.set("peak_rss_mib_after_verify", peak_rss_mib());
    }
    store.close().map_err(|e| format!("close: {e}"))?;
    let scanned_per_s = scan_floor(dir, head)?;
    figures.set("floor_scan_events_per_s", scanned_per_s);
    figures.set("rebuild_share_of_floor_scan", rebuild_per_s / scanned_per_s);
    let (allocated, _) = disk_usage(dir);
    figures.set(
        "disk_bytes_per_event_after_rebuild",
        allocated as f64 / head.max(1) as f64,
    );
    figures.set("load1_end_replay", load_average()[0]);
    Ok(figures)
}

/// The floor of `rebuild` and `verify`: reading the log's records from its segment files
/// (framing and checksums, no decoding), one thread.
fn scan_floor(dir: &Path, head: u64) -> Fallible<f64> {
    let log = jitledger::store::segments::SegmentLog::open(dir, head)
        .map_err(|e| format!("open the log for the scan floor: {e}"))?
        .log;
    let started = Instant::now();
    let (mut records, mut bytes) = (0u64, 0usize);
    for record in log.read(1, head) {
        let record = record.map_err(|e| format!("scan: {e}"))?;
        records += 1;
        bytes += record.payload.len();
    }
    let seconds = started.elapsed().as_secs_f64();
    std::hint::black_box(bytes);
    Ok(records as f64 / seconds)
}

fn replay_command(command: &ReplayCommand) -> Fallible<()> {
    let figures = replay(&command.dir, !command.open_only, !command.no_verify)?;
    if command.machine {
        for (name, value) in &figures.0 {
            println!("{name}={value}");
        }
    } else {
        figures.print("");
    }
    Ok(())
}

/// `build`, then `replay` in a child process.
fn rebuild(common: &Common, args: &BuildArgs, no_verify: bool) -> Fallible<Figures> {
    let dir = fresh_dir(&common.base, &format!("log-{}", args.events))?;
    let mut figures = build(&dir, args)?;
    let exe = std::env::current_exe().map_err(|e| format!("own path: {e}"))?;
    let mut child = std::process::Command::new(exe);
    child.arg("replay").arg("--machine").arg("--dir").arg(&dir);
    if no_verify {
        child.arg("--no-verify");
    }
    let output = child.output().map_err(|e| format!("running replay: {e}"))?;
    std::io::stderr().write_all(&output.stderr).ok();
    if !output.status.success() {
        return Err(format!("replay failed: {}", output.status));
    }
    let mut replayed = Figures::default();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        if let Some((name, value)) = line.split_once('=') {
            replayed.set(name, value.parse().unwrap_or(f64::NAN));
        }
    }
    figures.extend(replayed);
    remove_unless_kept(&dir, common.keep);
    Ok(figures)
}
