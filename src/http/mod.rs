//! The HTTP adapter: the axum router and the state its handlers share.
//!
//! It is not for SAML or provisioning rules; those stay in the pure modules, and handlers
//! here only translate between HTTP and them.

use std::path::PathBuf;

use axum::{Router, http::header, response::IntoResponse, routing::get};

/// What every handler can reach. Cloned once per request, so it holds only cheap handles.
#[derive(Clone, Debug)]
pub struct AppState {
    data_dir: PathBuf,
}

impl AppState {
    /// State for a service whose data lives in `data_dir`.
    pub fn new(data_dir: PathBuf) -> Self {
        Self { data_dir }
    }

    /// The directory that holds the service's data.
    pub fn data_dir(&self) -> &std::path::Path {
        &self.data_dir
    }
}

/// The service's routes. Built apart from the listener so tests can drive it directly.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .with_state(state)
}

/// Liveness: answers as soon as the process serves HTTP at all.
async fn healthz() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        r#"{"status":"ok"}"#,
    )
}
