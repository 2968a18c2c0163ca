//! The `jitledger` command line: parses arguments, sets up logging and runs the service.
//!
//! It is not for business rules: it wires the adapters in `jitledger::http` to the outside
//! world (sockets, signals, the data directory) and nothing more.

use std::{io::IsTerminal, path::PathBuf, process::ExitCode, sync::Arc};

use clap::{Parser, Subcommand, ValueEnum};
use jitledger::cli::{self, CliError, Format, Source};
use jitledger::http::{AppState, serve as serve_http};
use jitledger::service::{Service, system_clock, tokens};
use jitledger::store::history::AsOf;
use jitledger::store::{Store, StoreConfig};
use tokio::net::TcpListener;

/// sled allocates and frees a node copy per write; under glibc's malloc its bookkeeping was a
/// third of the log writer's time (BENCHMARKS.md, "Event log"). Binaries choose it, not the
/// library, so that the fuzz targets keep the allocator their sanitizer watches.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const EXIT_CODES_HELP: &str = "\
Exit codes:
  0  success; `serve` stopped cleanly after SIGINT or SIGTERM
  1  a check failed (verify, import) or a login was refused (login --dry-run)
  2  usage error (unknown subcommand, bad option)
  3  operational error (cannot open the data directory, listen, read or reach)";

/// Event-sourced SAML 2.0 Just-In-Time user provisioning.
#[derive(Debug, Parser)]
#[command(name = "jitledger", version, about, after_help = EXIT_CODES_HELP)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the HTTP service until SIGINT or SIGTERM.
    ///
    /// Once the socket is bound, prints `listening on http://ADDR` to stdout, with the
    /// real address (useful with port 0). On a fresh data directory without
    /// JITLEDGER_ADMIN_TOKEN, first prints `admin token: TOKEN` once. Logs go to stderr.
    #[command(after_help = EXIT_CODES_HELP)]
    Serve(ServeArgs),
    /// Check the hash chain and that the projections equal a fresh replay.
    #[command(after_help = EXIT_CODES_HELP)]
    Verify(DataArgs),
    /// Drop and rebuild the projections from the log.
    #[command(after_help = EXIT_CODES_HELP)]
    Rebuild(DataArgs),
    /// Write the log to a file that `import` and `replay --log` read back.
    #[command(after_help = EXIT_CODES_HELP)]
    Export {
        #[arg(long, value_name = "DIR")]
        data: PathBuf,
        /// The file to write.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Load an export into an empty data directory, proving its chain first.
    #[command(after_help = EXIT_CODES_HELP)]
    Import {
        #[arg(long, value_name = "DIR")]
        data: PathBuf,
        #[arg(long, value_name = "FILE")]
        file: PathBuf,
    },
    /// Replay the log and print every user as of a point in time.
    #[command(after_help = EXIT_CODES_HELP)]
    Replay {
        #[command(flatten)]
        source: SourceArgs,
        /// Only this organisation.
        #[arg(long)]
        org: Option<String>,
        /// An RFC 3339 instant.
        #[arg(long, conflicts_with = "to_seq")]
        as_of: Option<String>,
        /// The last sequence number to include.
        #[arg(long)]
        to_seq: Option<u64>,
        #[arg(long, value_enum, default_value_t = OutputFormat::Json)]
        format: OutputFormat,
    },
    /// Validate a response against an org's settings and print what it would write.
    #[command(after_help = EXIT_CODES_HELP)]
    Login {
        #[command(flatten)]
        source: SourceArgs,
        #[arg(long)]
        org: String,
        /// The response: raw XML or base64.
        #[arg(long, value_name = "FILE")]
        file: PathBuf,
        /// Write nothing (the only mode).
        #[arg(long, required = true)]
        dry_run: bool,
    },
}

#[derive(Debug, clap::Args)]
struct DataArgs {
    #[arg(long, value_name = "DIR")]
    data: PathBuf,
}

/// Where to read: exactly one of `--data`, `--url` (with `--token`) or `--log`.
#[derive(Debug, clap::Args)]
struct SourceArgs {
    /// A data directory (the service must not be running on it).
    #[arg(long, value_name = "DIR", conflicts_with_all = ["url", "log"])]
    data: Option<PathBuf>,
    /// A running service, read through /v1/events.
    #[arg(long, value_name = "URL", requires = "token", conflicts_with = "log")]
    url: Option<String>,
    /// The bootstrap admin token for --url.
    #[arg(long, requires = "url")]
    token: Option<String>,
    /// An export file.
    #[arg(long, value_name = "FILE")]
    log: Option<PathBuf>,
}

impl SourceArgs {
    fn source(self) -> Option<Source> {
        match (self.data, self.url, self.log) {
            (Some(data), _, _) => Some(Source::Data(data)),
            (_, Some(url), _) => Some(Source::Url {
                url,
                token: self.token.unwrap_or_default(),
            }),
            (_, _, Some(log)) => Some(Source::Log(log)),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum OutputFormat {
    Json,
    Table,
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// Directory holding the service's data; created if missing.
    #[arg(long, value_name = "DIR", default_value = "./data")]
    data: PathBuf,
    /// Address to listen on, `HOST:PORT`; port 0 picks a free port.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    listen: String,
    /// Log line format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// Why `serve` stopped before a clean shutdown.
#[derive(Debug, thiserror::Error)]
enum ServeError {
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open the event log: {0}")]
    Store(#[from] jitledger::store::StoreError),
    #[error("cannot listen on {address}: {source}")]
    Listen {
        address: String,
        source: std::io::Error,
    },
    #[error("server failed: {0}")]
    Server(std::io::Error),
    /// A write of the log failed while serving; appends were refused from then on. The
    /// next open recovers the log: the supervisor should know a restart is needed.
    #[error("the event log refused appends after a storage failure; a restart recovers it")]
    StorageFailed,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome: Result<String, CliError> = match cli.command {
        Command::Serve(args) => return run_serve(args),
        Command::Verify(args) => cli::verify(&args.data),
        Command::Rebuild(args) => cli::rebuild(&args.data),
        Command::Export { data, out } => cli::export(&data, &out),
        Command::Import { data, file } => cli::import(&data, &file),
        Command::Replay {
            source,
            org,
            as_of,
            to_seq,
            format,
        } => {
            let point = match (as_of, to_seq) {
                (Some(text), _) => match time::OffsetDateTime::parse(
                    &text,
                    &time::format_description::well_known::Rfc3339,
                ) {
                    Ok(instant) => AsOf::Time(instant.unix_timestamp_nanos()),
                    Err(_) => {
                        eprintln!("--as-of must be an RFC 3339 instant");
                        return ExitCode::from(2);
                    }
                },
                (None, Some(seq)) => AsOf::Seq(seq),
                (None, None) => AsOf::Now,
            };
            let format = match format {
                OutputFormat::Json => Format::Json,
                OutputFormat::Table => Format::Table,
            };
            let Some(source) = source.source() else {
                return missing_source();
            };
            cli::replay(&source, org.as_deref(), point, format)
        }
        Command::Login {
            source, org, file, ..
        } => {
            let Some(source) = source.source() else {
                return missing_source();
            };
            cli::login_dry_run(&source, &org, &file)
        }
    };
    match outcome {
        Ok(text) => {
            cli::print(&text);
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("{}", error.message);
            ExitCode::from(error.exit_code)
        }
    }
}

fn missing_source() -> ExitCode {
    eprintln!("give one of --data DIR, --url URL --token T, or --log FILE");
    ExitCode::from(2)
}

fn run_serve(args: ServeArgs) -> ExitCode {
    init_logging(args.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(jitledger::http::BLOCKING_THREADS_MAX)
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(%error, "cannot start the async runtime");
            return ExitCode::from(cli::EXIT_ERROR);
        }
    };
    match runtime.block_on(serve(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "serve stopped");
            ExitCode::from(cli::EXIT_ERROR)
        }
    }
}

/// Logs to stderr, filtered by `RUST_LOG` (default `info`), so stdout stays for output
/// that scripts read.
fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn serve(args: ServeArgs) -> Result<(), ServeError> {
    std::fs::create_dir_all(&args.data).map_err(|source| ServeError::DataDir {
        path: args.data.clone(),
        source,
    })?;
    let config = StoreConfig {
        chain_key: cli::chain_key(),
        ..StoreConfig::new(&args.data)
    };
    let store = Arc::new(Store::open(&config)?);
    let (token_hash, new_token) =
        tokens::bootstrap(&args.data, std::env::var("JITLEDGER_ADMIN_TOKEN").ok()).map_err(
            |source| ServeError::DataDir {
                path: args.data.clone(),
                source,
            },
        )?;
    if let Some(token) = new_token {
        // Shown once: only its hash is kept.
        println!("admin token: {token}");
    }
    let service = Arc::new(Service::new(Arc::clone(&store), system_clock(), token_hash));
    let listener = TcpListener::bind(&args.listen)
        .await
        .map_err(|source| ServeError::Listen {
            address: args.listen.clone(),
            source,
        })?;
    let address = listener.local_addr().map_err(ServeError::Server)?;
    tracing::info!(%address, data = %args.data.display(), "listening");
    // The documented start-up line: tests and scripts read it to learn the bound port.
    println!("listening on http://{address}");

    let pruner = tokio::spawn(prune_assertions_periodically(Arc::clone(&service)));
    let served = serve_http(listener, AppState::new(service), shutdown_signal()).await;
    pruner.abort();
    let _ = pruner.await;
    served.map_err(ServeError::Server)?;
    // In-flight requests have finished; their appends were acknowledged only when durable.
    // The router, and with it the service's handle on the store, is gone: stop the writer
    // after what it has queued and flush sled before exiting.
    // The server's connection tasks drop their handles on the router a moment after the
    // last answer was sent: wait for them, boundedly.
    let deadline = tokio::time::Instant::now() + STORE_RELEASE_WAIT;
    while Arc::strong_count(&store) > 1 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let failed = store
        .stats()
        .failed
        .load(std::sync::atomic::Ordering::Relaxed);
    match Arc::try_unwrap(store) {
        Ok(store) => store.close()?,
        Err(store) => {
            tracing::warn!("the store is still in use at exit; its writer stops when dropped");
            drop(store);
        }
    }
    if failed {
        return Err(ServeError::StorageFailed);
    }
    tracing::info!("stopped");
    Ok(())
}

/// How often `serve` forgets the replay guards of expired assertions. Each run reads the
/// guards still held: those of the assertions of the last few minutes (their validity plus
/// the skew), so it stays small however long the log grows.
const PRUNE_ASSERTIONS_EVERY: std::time::Duration = std::time::Duration::from_secs(300);

/// The pause between two steps of a pruning run: a backlog of millions of guards (after a
/// long stop) is forgotten over a minute or so, beside logins, instead of in one burst.
const PRUNE_PAUSE: std::time::Duration = std::time::Duration::from_millis(10);

/// Forgets expired replay guards every [`PRUNE_ASSERTIONS_EVERY`], from the start: steps of
/// [`jitledger::service::PRUNE_CHUNK_GUARDS`] on the blocking pool, with a pause after each.
async fn prune_assertions_periodically(service: Arc<Service>) {
    let mut every = tokio::time::interval(PRUNE_ASSERTIONS_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let started = std::time::Instant::now();
        let (mut forgotten, mut after) = (0, None);
        loop {
            let service = Arc::clone(&service);
            let from = after.take();
            let step = tokio::task::spawn_blocking(move || {
                service.prune_expired_assertions(from.as_deref())
            })
            .await;
            match step {
                Ok(Ok(pruned)) => {
                    forgotten += pruned.forgotten;
                    match pruned.resume_after {
                        Some(key) => after = Some(key),
                        None => break,
                    }
                }
                Ok(Err(error)) => {
                    tracing::warn!(%error, "forgetting expired replay guards failed");
                    break;
                }
                Err(error) => {
                    tracing::warn!(%error, "forgetting expired replay guards stopped");
                    break;
                }
            }
            tokio::time::sleep(PRUNE_PAUSE).await;
        }
        if forgotten > 0 {
            tracing::info!(
                forgotten,
                seconds = started.elapsed().as_secs_f64(),
                "forgot the replay guards of expired assertions"
            );
        }
    }
}

/// How long a stopping server waits for its last handles on the store to go before it
/// closes the store (drains the writer, flushes sled).
const STORE_RELEASE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Resolves on the first SIGINT or SIGTERM. If a handler cannot be installed, that
/// signal is logged and ignored rather than stopping the server at once.
async fn shutdown_signal() {
    let interrupt = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::warn!(%error, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut stream) => {
                stream.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();

    tokio::select! {
        () = interrupt => tracing::info!("SIGINT received, shutting down"),
        () = terminate => tracing::info!("SIGTERM received, shutting down"),
    }
}
