//! Load generator for a running jitledger service.
//!
//! * `loadgen logins`: sets up an org whose IdP is the test IdP (idempotent), pre-signs
//!   `--logins` distinct responses per concurrency level with it (many users, repeat logins,
//!   a role change every second visit and an ACL change every third), then posts them to
//!   the ACS at each `--concurrency` over keep-alive HTTP/1.1 connections. Prints logins/s,
//!   latency p50/p99/p999/max and the answers by status and refusal code. Every 200 answer
//!   was sent after the login's events were on disk, so logins/s is durable logins/s.
//! * `loadgen queries`: `GET /v1/orgs/{org}/users/{user}` at a fixed `--rate`, open loop:
//!   each request has a scheduled send time and its latency is measured from that time, so
//!   a stalled server cannot hide its stall by slowing the client (no coordinated omission).
//!   The users asked for are spread over all `--users` (see `spread`).
//!
//! Signing is not measured; it happens before the clock starts, on every CPU.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand};
use jitledger_tools::client::{Answer, Connection, url_encode};
use jitledger_tools::idp::{
    Attribute, ResponseSpec, fixture_key, metadata_xml, post_binding_value, random_id,
};
use time::OffsetDateTime;

/// The service's allocator (`src/main.rs` says why), so that what is measured matches it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

type Fallible<T> = Result<T, String>;

const IDP_ENTITY: &str = "https://idp.load.example.com/metadata";
const SP_ENTITY: &str = "https://sp.load.example.com/metadata";
const ACS_URL: &str = "https://sp.load.example.com/acs";
const ROLES: [&str; 3] = ["Agent", "Developer", "Admin"];

#[derive(Debug, Parser)]
#[command(about = "Login and query load against a running jitledger service")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Pre-signed logins posted to the ACS at one or more concurrency levels.
    Logins(LoginsArgs),
    /// User queries at a fixed rate.
    Queries(QueriesArgs),
}

#[derive(Debug, Clone, Args)]
struct Target {
    /// The service, `http://HOST:PORT`.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// An admin token able to create the org (the bootstrap token).
    #[arg(long, env = "JITLEDGER_ADMIN_TOKEN", hide_env_values = true)]
    token: String,
    /// The org the load goes to; created with the test IdP if missing.
    #[arg(long, default_value = "loadgen")]
    org: String,
    /// Distinct users; login `i` is user `i % users`.
    #[arg(long, default_value_t = 5_000)]
    users: usize,
}

#[derive(Debug, Args)]
struct LoginsArgs {
    #[command(flatten)]
    target: Target,
    /// Logins posted at each concurrency level (each level gets its own, signed ahead).
    #[arg(long, default_value_t = 10_000)]
    logins: usize,
    /// Concurrent keep-alive connections; a comma-separated list runs each in turn.
    #[arg(long, value_delimiter = ',', default_values_t = [1, 16, 64, 256])]
    concurrency: Vec<usize>,
    /// The first login of the first level is this login number (to continue the visits of
    /// an earlier run against the same data, which refuses a replayed assertion anyway).
    #[arg(long, default_value_t = 0)]
    start: usize,
}

#[derive(Debug, Args)]
struct QueriesArgs {
    #[command(flatten)]
    target: Target,
    /// Requests per second, in all.
    #[arg(long, default_value_t = 5_000)]
    rate: u64,
    /// Measured seconds.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Keep-alive connections sharing the rate.
    #[arg(long, default_value_t = 32)]
    connections: usize,
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Logins(args) => logins(&args),
        Command::Queries(args) => queries(&args),
    };
    if let Err(error) = result {
        eprintln!("loadgen: {error}");
        std::process::exit(1);
    }
}

/// The org with the test IdP and JIT on (IdP-managed roles); an existing org is reused.
fn set_up(target: &Target) -> Fallible<()> {
    let mut connection = Connection::open(&target.url)?;
    let token = Some(target.token.as_str());
    let org = serde_json::json!({
        "org_id": target.org, "sp_entity_id": SP_ENTITY, "acs_url": ACS_URL,
    })
    .to_string();
    let answer = connection.call(
        "POST",
        "/v1/orgs",
        token,
        Some(("application/json", org.as_bytes())),
    )?;
    if answer.status != 201 && answer.status != 409 {
        return Err(format!("create org: {} {}", answer.status, answer.code));
    }
    let signer = fixture_key("rsa2048").map_err(|e| e.to_string())?;
    let metadata = metadata_xml(
        IDP_ENTITY,
        "https://idp.load.example.com/sso",
        signer.certificate_pem(),
    );
    let answer = connection.call(
        "PUT",
        &format!("/v1/orgs/{}/idps/load", target.org),
        token,
        Some(("application/xml", metadata.as_bytes())),
    )?;
    if !(200..300).contains(&answer.status) {
        return Err(format!("IdP metadata: {} {}", answer.status, answer.code));
    }
    let jit = br#"{"enabled": true, "idp_managed_roles": true}"#;
    let answer = connection.call(
        "PUT",
        &format!("/v1/orgs/{}/idps/load/jit", target.org),
        token,
        Some(("application/json", jit)),
    )?;
    if answer.status != 200 {
        return Err(format!("JIT settings: {} {}", answer.status, answer.code));
    }
    Ok(())
}

fn user_id(user: usize) -> String {
    format!("user{user}@load.example.com")
}

/// The ACS form body of login number `i`: user `i % users` on their visit `i / users`,
/// whose role changes every second visit and whose ACL changes every third.
fn signed_login(i: usize, users: usize) -> Fallible<Vec<u8>> {
    let (user, visit) = (i % users, i / users);
    let email = user_id(user);
    let spec = ResponseSpec::new(
        IDP_ENTITY,
        SP_ENTITY,
        ACS_URL,
        &email,
        OffsetDateTime::now_utc(),
    )
    .valid_for(time::Duration::hours(1))
    .ids(
        &random_id().map_err(|e| e.to_string())?,
        &random_id().map_err(|e| e.to_string())?,
    )
    .attribute(Attribute::new("emailAddress", [email.as_str()]))
    .attribute(Attribute::new("firstName", ["Load"]))
    .attribute(Attribute::new("lastName", [format!("User {user}")]))
    .attribute(Attribute::new("role", [ROLES[(visit / 2) % ROLES.len()]]))
    .attribute(Attribute::new("acl[0].roleId", ["Admin"]))
    .attribute(Attribute::new("acl[0].on", [format!("acct-{}", visit / 3)]))
    .attribute(Attribute::new("acl[0].onType", ["account"]));
    let signer = fixture_key("rsa2048").map_err(|e| e.to_string())?;
    let xml = spec.signed_xml(&signer).map_err(|e| e.to_string())?;
    Ok(format!("SAMLResponse={}", url_encode(&post_binding_value(&xml))).into_bytes())
}

/// Signs logins `range` on every CPU.
fn sign_all(range: std::ops::Range<usize>, users: usize) -> Fallible<Vec<Vec<u8>>> {
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let next = AtomicUsize::new(range.start);
    let signed: Mutex<Vec<(usize, Vec<u8>)>> = Mutex::new(Vec::with_capacity(range.len()));
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| -> Fallible<()> {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= range.end {
                            return Ok(());
                        }
                        let body = signed_login(i, users)?;
                        signed.lock().map_err(|_| "poisoned")?.push((i, body));
                    }
                })
            })
            .collect();
        for handle in handles {
            handle.join().map_err(|_| "a signing thread panicked")??;
        }
        Ok::<(), String>(())
    })?;
    let mut signed = signed.into_inner().map_err(|_| "poisoned")?;
    signed.sort_by_key(|(i, _)| *i);
    Ok(signed.into_iter().map(|(_, body)| body).collect())
}

/// Latencies (ns) and answers by `status code`.
#[derive(Default)]
struct Tally {
    latencies: Vec<u64>,
    answers: BTreeMap<String, u64>,
}

impl Tally {
    fn add(&mut self, latency: Duration, answer: &Answer) {
        self.latencies.push(latency.as_nanos() as u64);
        let key = format!("{} {}", answer.status, answer.code);
        *self.answers.entry(key.trim().to_string()).or_default() += 1;
    }

    fn merge(&mut self, other: Tally) {
        self.latencies.extend(other.latencies);
        for (key, n) in other.answers {
            *self.answers.entry(key).or_default() += n;
        }
    }

    fn print(&mut self, label: &str, elapsed: Duration) {
        self.latencies.sort_unstable();
        let quantile = |q: f64| -> f64 {
            if self.latencies.is_empty() {
                return 0.0;
            }
            let at = ((self.latencies.len() - 1) as f64 * q).round() as usize;
            self.latencies[at] as f64 / 1e6
        };
        let ok = self.answers.get("200").copied().unwrap_or(0);
        println!("{label}");
        println!("  requests        {}", self.latencies.len());
        println!("  seconds         {:.2}", elapsed.as_secs_f64());
        println!("  ok_per_s        {:.0}", ok as f64 / elapsed.as_secs_f64());
        println!("  latency_p50_ms  {:.2}", quantile(0.5));
        println!("  latency_p99_ms  {:.2}", quantile(0.99));
        println!("  latency_p999_ms {:.2}", quantile(0.999));
        println!("  latency_max_ms  {:.2}", quantile(1.0));
        for (answer, n) in &self.answers {
            println!("  answer {answer:<24} {n}");
        }
    }
}

fn logins(args: &LoginsArgs) -> Fallible<()> {
    let target = &args.target;
    set_up(target)?;
    let path = format!("/v1/orgs/{}/saml/acs", target.org);
    let mut first = args.start;
    for &concurrency in &args.concurrency {
        let signing = Instant::now();
        let bodies = sign_all(first..first + args.logins, target.users)?;
        eprintln!(
            "signed {} logins in {:.1} s",
            bodies.len(),
            signing.elapsed().as_secs_f64()
        );
        first += args.logins;
        let next = AtomicUsize::new(0);
        let started = Instant::now();
        let mut tally = run_clients(&target.url, concurrency, |connection, _, tally| {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(body) = bodies.get(i) else {
                    return Ok(());
                };
                let sent = Instant::now();
                let answer = connection.call(
                    "POST",
                    &path,
                    None,
                    Some(("application/x-www-form-urlencoded", body)),
                )?;
                tally.add(sent.elapsed(), &answer);
            }
        })?;
        let elapsed = started.elapsed();
        tally.print(&format!("logins concurrency={concurrency}"), elapsed);
    }
    Ok(())
}

/// Runs `work(connection, client number, tally)` on `clients` threads, each with its own
/// keep-alive connection, and merges their tallies.
fn run_clients(
    url: &str,
    clients: usize,
    work: impl Fn(&mut Connection, usize, &mut Tally) -> Fallible<()> + Sync,
) -> Fallible<Tally> {
    let tally = Mutex::new(Tally::default());
    std::thread::scope(|scope| -> Fallible<()> {
        let handles: Vec<_> = (0..clients)
            .map(|client| {
                let (tally, work) = (&tally, &work);
                scope.spawn(move || -> Fallible<()> {
                    let mut connection = Connection::open(url)?;
                    let mut mine = Tally::default();
                    work(&mut connection, client, &mut mine)?;
                    tally.lock().map_err(|_| "poisoned")?.merge(mine);
                    Ok(())
                })
            })
            .collect();
        for handle in handles {
            handle.join().map_err(|_| "a client thread panicked")??;
        }
        Ok(())
    })?;
    tally.into_inner().map_err(|_| "poisoned".to_string())
}

/// Query `i` asks for user `spread(i, users)`: distinct users for the first `users`
/// queries, strided over the whole range, so that a short run at 1M users reads from all of
/// the store and not from its first few pages (which its caches would hold).
fn spread(i: usize, users: usize) -> usize {
    // A prime: coprime with any user count below it, so `i ↦ i·STRIDE mod users` is a
    // permutation.
    const STRIDE: u64 = 2_654_435_761;
    let users = users.max(1) as u64;
    ((i as u64 % users) * STRIDE % users) as usize
}

fn queries(args: &QueriesArgs) -> Fallible<()> {
    let target = &args.target;
    let connections = args.connections.max(1);
    let interval = Duration::from_secs_f64(connections as f64 / args.rate.max(1) as f64);
    let per_connection = (args.rate * args.seconds) as usize / connections;
    let started = Instant::now();
    let mut tally = run_clients(&target.url, connections, |connection, c, tally| {
        // Connections start spread over one interval.
        let offset = interval.mul_f64(c as f64 / connections as f64);
        for n in 0..per_connection {
            let scheduled = started + offset + interval.mul_f64(n as f64);
            if let Some(wait) = scheduled.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            let user = spread(n * connections + c, target.users);
            let path = format!(
                "/v1/orgs/{}/users/{}",
                target.org,
                url_encode(&user_id(user))
            );
            let answer = connection.call("GET", &path, Some(&target.token), None)?;
            tally.add(scheduled.elapsed(), &answer);
        }
        Ok(())
    })?;
    let elapsed = started.elapsed();
    tally.print(
        &format!(
            "queries rate={} connections={connections} (latency from the scheduled send time)",
            args.rate
        ),
        elapsed,
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::spread;

    #[test]
    fn spread_visits_every_user_once() {
        for users in [1, 2, 7, 1_000, 65_536, 99_991] {
            let mut seen = vec![false; users];
            for i in 0..users {
                let user = spread(i, users);
                assert!(!seen[user], "user {user} of {users} asked for twice");
                seen[user] = true;
            }
        }
        // Neighbouring queries are far apart.
        assert!(spread(1, 1_000_000).abs_diff(spread(0, 1_000_000)) > 1_000);
    }
}
