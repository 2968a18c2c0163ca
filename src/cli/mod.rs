//! The audit and admin commands: `verify`, `export`, `import`, `rebuild`, `replay` and
//! `login --dry-run`. Each reads the store directly (`--data`, with the service stopped:
//! sled allows one process) or a running service (`--url`), or an export file (`--log`).

pub mod client;

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine as _;
use serde_json::{Value, json};

use crate::service::{Service, system_clock, view};
use crate::store::envelope::Envelope;
use crate::store::export::read_envelopes;
use crate::store::history::{AsOf, Replay};
use crate::store::{ChainHasher, Store, StoreConfig};

/// Exit code of a check that failed or a login that was refused.
pub const EXIT_FAILED: u8 = 1;
/// Exit code of an operational error (cannot open, read or reach).
pub const EXIT_ERROR: u8 = 3;

/// A command's failure: its exit code and what to print.
#[derive(Debug)]
pub struct CliError {
    pub exit_code: u8,
    pub message: String,
}

fn error(message: impl Into<String>) -> CliError {
    CliError {
        exit_code: EXIT_ERROR,
        message: message.into(),
    }
}

fn failed(message: impl Into<String>) -> CliError {
    CliError {
        exit_code: EXIT_FAILED,
        message: message.into(),
    }
}

fn store_config(data: &Path) -> StoreConfig {
    StoreConfig {
        chain_key: chain_key(),
        ..StoreConfig::new(data)
    }
}

/// The optional HMAC chain key, from `JITLEDGER_CHAIN_KEY`.
pub fn chain_key() -> Option<Vec<u8>> {
    std::env::var("JITLEDGER_CHAIN_KEY")
        .ok()
        .filter(|k| !k.is_empty())
        .map(String::into_bytes)
}

fn open(data: &Path) -> Result<Store, CliError> {
    if !data.join("db").exists() {
        return Err(error(format!("no store in {}", data.display())));
    }
    Store::open(&store_config(data))
        .map_err(|e| error(format!("cannot open {}: {e}", data.display())))
}

/// A progress line on stderr, only when it is a terminal.
fn progress(label: &'static str) -> impl FnMut(u64, u64) {
    let terminal = std::io::stderr().is_terminal();
    move |done, total| {
        if terminal {
            eprint!("\r{label}: {done}/{total} events");
            if done >= total {
                eprintln!();
            }
        }
    }
}

pub fn verify(data: &Path) -> Result<String, CliError> {
    let store = open(data)?;
    match store.verify() {
        Ok(report) => Ok(format!(
            "ok: {} events, hash chain unbroken, projections equal a fresh replay; head {}",
            report.events,
            view::hex(&report.last_hash)
        )),
        Err(failure) => Err(failed(format!("verify failed: {failure}"))),
    }
}

pub fn rebuild(data: &Path) -> Result<String, CliError> {
    let mut store = open(data)?;
    let count = store
        .rebuild(progress("rebuild"))
        .map_err(|e| error(e.to_string()))?;
    Ok(format!("rebuilt projections from {count} events"))
}

pub fn export(data: &Path, out: &Path) -> Result<String, CliError> {
    let store = open(data)?;
    let count = store.export(out).map_err(|e| error(e.to_string()))?;
    Ok(format!("exported {count} events to {}", out.display()))
}

pub fn import(data: &Path, file: &Path) -> Result<String, CliError> {
    std::fs::create_dir_all(data).map_err(|e| error(e.to_string()))?;
    let mut store = Store::open(&store_config(data)).map_err(|e| error(e.to_string()))?;
    let count = store
        .import(file)
        .map_err(|e| failed(format!("import refused: {e}")))?;
    Ok(format!(
        "imported {count} events; chain proven, projections rebuilt"
    ))
}

/// Where `replay` reads the log.
#[derive(Debug, Clone)]
pub enum Source {
    Data(PathBuf),
    Url { url: String, token: String },
    Log(PathBuf),
}

/// Output of `replay`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Table,
}

/// Folds the log up to `as_of` and prints every user of the org(s).
pub fn replay(
    source: &Source,
    org: Option<&str>,
    as_of: AsOf,
    format: Format,
) -> Result<String, CliError> {
    let replay = match source {
        Source::Data(data) => {
            let store = open(data)?;
            store
                .replay(org, as_of, progress("replay"))
                .map_err(|e| error(e.to_string()))?
        }
        Source::Log(file) => {
            let hasher = chain_key().map_or(ChainHasher::Sha256, |k| ChainHasher::keyed(&k));
            let envelopes =
                read_envelopes(file, &hasher).map_err(|e| failed(format!("log refused: {e}")))?;
            fold(envelopes.iter(), org, as_of)
        }
        Source::Url { url, token } => {
            let envelopes = fetch_events(url, token)?;
            fold(envelopes.iter(), org, as_of)
        }
    };
    Ok(render(&replay, format))
}

fn fold<'e>(
    envelopes: impl Iterator<Item = &'e Envelope>,
    org: Option<&str>,
    as_of: AsOf,
) -> Replay {
    let mut replay = Replay::default();
    for envelope in envelopes {
        if !as_of.includes(envelope) {
            break;
        }
        if org.is_none_or(|o| o == envelope.org_id) {
            replay.fold(envelope);
        }
    }
    replay
}

fn render(replay: &Replay, format: Format) -> String {
    match format {
        Format::Json => {
            let users: Vec<Value> = replay
                .users
                .iter()
                .map(|((org, _), user)| {
                    let mut view = serde_json::to_value(view::user(user)).unwrap_or(Value::Null);
                    view["org_id"] = Value::String(org.clone());
                    view
                })
                .collect();
            serde_json::to_string_pretty(&users).unwrap_or_default()
        }
        Format::Table => {
            let mut out = format!(
                "{:<16} {:<32} {:<12} {:<32} {}\n",
                "ORG", "USER", "ROLE", "EMAIL", "ACL"
            );
            for ((org, user_id), user) in &replay.users {
                let email = user
                    .field(crate::events::ProfileField::Email)
                    .unwrap_or("-");
                let acl: Vec<String> = user
                    .acl
                    .value
                    .iter()
                    .map(|e| format!("{}@{}:{}", e.role_id, e.on_type.as_str(), e.on))
                    .collect();
                out.push_str(&format!(
                    "{org:<16} {user_id:<32} {:<12} {email:<32} {}\n",
                    user.role.value,
                    acl.join(",")
                ));
            }
            out
        }
    }
}

/// Reads the whole log from a running service through `/v1/events`.
fn fetch_events(url: &str, token: &str) -> Result<Vec<Envelope>, CliError> {
    let base = url.trim_end_matches('/');
    let mut envelopes: Vec<Envelope> = Vec::new();
    let mut after = 0;
    loop {
        let answer = client::send(
            "GET",
            &format!("{base}/v1/events?after={after}&limit=1000"),
            Some(token),
            None,
        )
        .map_err(error)?;
        if answer.status != 200 {
            return Err(error(format!(
                "{base}/v1/events answered {}",
                answer.status
            )));
        }
        let page: Value = serde_json::from_slice(&answer.body).map_err(|e| error(e.to_string()))?;
        let events = page["events"].as_array().cloned().unwrap_or_default();
        if events.is_empty() {
            return Ok(envelopes);
        }
        for event in &events {
            let envelope = envelope_from_json(event)
                .ok_or_else(|| error("undecodable event in /v1/events"))?;
            after = envelope.seq;
            envelopes.push(envelope);
        }
    }
}

fn unhex32(text: &str) -> Option<[u8; 32]> {
    let bytes: Option<Vec<u8>> = (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect();
    bytes?.try_into().ok()
}

/// The inverse of [`view::envelope`].
pub fn envelope_from_json(value: &Value) -> Option<Envelope> {
    let recorded_at = time::OffsetDateTime::parse(
        value["recorded_at"].as_str()?,
        &time::format_description::well_known::Rfc3339,
    )
    .ok()?
    .unix_timestamp_nanos();
    let event =
        serde_json::from_value(json!({ value["type"].as_str()?: value["data"].clone() })).ok()?;
    Some(Envelope {
        seq: value["seq"].as_u64()?,
        org_id: value["org_id"].as_str()?.to_string(),
        stream: value["stream"].as_str()?.to_string(),
        stream_version: value["stream_version"].as_u64()?,
        recorded_at,
        cause: serde_json::from_value::<view::CauseView>(value["cause"].clone())
            .ok()?
            .into(),
        event,
        prev_hash: unhex32(value["prev_hash"].as_str()?)?,
        hash: unhex32(value["hash"].as_str()?)?,
    })
}

/// Reads a response file: raw XML, or base64 of it.
fn response_base64(file: &Path) -> Result<Vec<u8>, CliError> {
    let bytes =
        std::fs::read(file).map_err(|e| error(format!("cannot read {}: {e}", file.display())))?;
    let trimmed = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .map_or(&bytes[..], |at| &bytes[at..]);
    if trimmed.starts_with(b"<") {
        Ok(base64::engine::general_purpose::STANDARD
            .encode(trimmed)
            .into_bytes())
    } else {
        Ok(bytes)
    }
}

/// `login --dry-run`: validates and decides against the stored settings, writes nothing.
pub fn login_dry_run(source: &Source, org: &str, file: &Path) -> Result<String, CliError> {
    let response = response_base64(file)?;
    let answer = match source {
        Source::Data(data) => {
            let store = Arc::new(open(data)?);
            let service = Service::new(store, system_clock(), [0; 32]);
            let preview = service.preview(org, &response, None).map_err(|e| {
                failed(serde_json::to_string_pretty(&e.body("cli")).unwrap_or_default())
            })?;
            serde_json::to_value(preview).map_err(|e| error(e.to_string()))?
        }
        Source::Url { url, token } => {
            let body = json!({ "saml_response": String::from_utf8_lossy(&response) }).to_string();
            let answer = client::send(
                "POST",
                &format!("{}/v1/orgs/{org}/logins/preview", url.trim_end_matches('/')),
                Some(token),
                Some(("application/json", body.as_bytes())),
            )
            .map_err(error)?;
            let value: Value =
                serde_json::from_slice(&answer.body).map_err(|e| error(e.to_string()))?;
            if answer.status != 200 {
                return Err(failed(
                    serde_json::to_string_pretty(&value).unwrap_or_default(),
                ));
            }
            value
        }
        Source::Log(_) => return Err(error("login --dry-run needs --data or --url")),
    };
    Ok(serde_json::to_string_pretty(&answer).unwrap_or_default())
}

/// Writes `text` and a newline to stdout.
pub fn print(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{text}");
}
