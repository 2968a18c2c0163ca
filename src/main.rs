//! The `jitledger` command line: parses arguments, sets up logging and runs the service.
//!
//! It is not for business rules: it wires the adapters in `jitledger::http` to the outside
//! world (sockets, signals, the data directory) and nothing more.

use std::{io::IsTerminal, path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand, ValueEnum};
use jitledger::http::{AppState, app};
use tokio::net::TcpListener;

const EXIT_CODES_HELP: &str = "\
Exit codes:
  0  success; `serve` stopped cleanly after SIGINT or SIGTERM
  1  runtime failure (data directory, listening socket, server error)
  2  usage error (unknown subcommand, bad option)";

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
    /// Once the socket is bound, prints exactly one line to stdout,
    /// `listening on http://ADDR`, with the real address (useful with port 0).
    /// Logs go to stderr.
    #[command(after_help = EXIT_CODES_HELP)]
    Serve(ServeArgs),
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
    #[error("cannot listen on {address}: {source}")]
    Listen {
        address: String,
        source: std::io::Error,
    },
    #[error("server failed: {0}")]
    Server(std::io::Error),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => {
            init_logging(args.log_format);
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(runtime) => runtime,
                Err(error) => {
                    tracing::error!(%error, "cannot start the async runtime");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(serve(args)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    tracing::error!(%error, "serve stopped");
                    ExitCode::FAILURE
                }
            }
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

    axum::serve(listener, app(AppState::new(args.data)))
        .with_graceful_shutdown(shutdown_signal())
        .await
        .map_err(ServeError::Server)?;
    tracing::info!("stopped");
    Ok(())
}

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
