//! The HTTP adapter: every route of CONTRACT.md on axum. Handlers translate between HTTP
//! and [`Service`]; they hold no rules of their own.

mod handlers;
pub mod openapi;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use tokio::sync::Semaphore;

use crate::service::{ApiError, Service, tokens};

/// Body bound of the SAML routes (CONTRACT.md).
pub const SAML_BODY_BYTES_MAX: usize = 1024 * 1024;
/// Body bound of the metadata route.
pub const METADATA_BODY_BYTES_MAX: usize = 4 * 1024 * 1024;
/// Body bound of every other route: JSON settings are small.
pub const JSON_BODY_BYTES_MAX: usize = 64 * 1024;
/// Requests in flight at once; beyond it, 503 with Retry-After rather than a queue that
/// grows until every request times out.
pub const REQUESTS_IN_FLIGHT_MAX: usize = 1024;
/// Threads running blocking work (a login's validation, then its wait for the disk). A
/// login holds one until its batch is durable, so this also caps a batch's size; each
/// thread keeps its own allocator heap (about 2.5 MiB after a login), and tokio's default of
/// 512 let 256 concurrent logins grow the process past 800 MiB. Beyond it, logins queue.
pub const BLOCKING_THREADS_MAX: usize = 64;
/// How long one request may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// What every handler can reach.
#[derive(Clone, Debug)]
pub struct AppState {
    pub service: Arc<Service>,
    in_flight: Arc<Semaphore>,
}

impl AppState {
    pub fn new(service: Arc<Service>) -> AppState {
        AppState {
            service,
            in_flight: Arc::new(Semaphore::new(REQUESTS_IN_FLIGHT_MAX)),
        }
    }
}

/// The request ID of the current request: in every error body, the logs and the
/// rejected-logins record.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// An error answer: the error and the request it belongs to.
#[derive(Debug)]
pub struct Failure(pub ApiError, pub String);

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let Failure(error, request_id) = self;
        let status =
            StatusCode::from_u16(error.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, Json(error.body(&request_id))).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

/// The service's routes.
pub fn app(state: AppState) -> Router {
    let saml_limit = DefaultBodyLimit::max(SAML_BODY_BYTES_MAX);
    let json_limit = DefaultBodyLimit::max(JSON_BODY_BYTES_MAX);
    Router::new()
        .route("/healthz", get(handlers::healthz))
        .route("/metrics", get(handlers::metrics))
        .route("/openapi.json", get(openapi::document))
        .route("/v1/orgs", post(handlers::create_org).layer(json_limit))
        .route(
            "/v1/orgs/{org}/idps/{idp}",
            put(handlers::put_idp).layer(DefaultBodyLimit::max(METADATA_BODY_BYTES_MAX)),
        )
        .route(
            "/v1/orgs/{org}/idps/{idp}/jit",
            put(handlers::put_jit).layer(json_limit),
        )
        .route(
            "/v1/orgs/{org}/roles/{role}",
            put(handlers::put_role).layer(json_limit),
        )
        .route(
            "/v1/orgs/{org}/tokens",
            post(handlers::issue_token).layer(json_limit),
        )
        .route("/v1/events", get(handlers::events))
        .route("/v1/orgs/{org}/saml/metadata", get(handlers::sp_metadata))
        .route(
            "/v1/orgs/{org}/idps/{idp}/login",
            get(handlers::start_login),
        )
        .route(
            "/v1/orgs/{org}/saml/acs",
            post(handlers::acs).layer(saml_limit),
        )
        .route(
            "/v1/orgs/{org}/logins",
            post(handlers::login).layer(saml_limit),
        )
        .route(
            "/v1/orgs/{org}/logins/preview",
            post(handlers::preview).layer(saml_limit),
        )
        .route("/v1/orgs/{org}/logins/rejected", get(handlers::rejected))
        .route("/v1/orgs/{org}/users", get(handlers::users))
        .route("/v1/orgs/{org}/users/{user}", get(handlers::user))
        .route(
            "/v1/orgs/{org}/users/{user}/history",
            get(handlers::history),
        )
        .route("/v1/orgs/{org}/acl", get(handlers::acl))
        .fallback(handlers::not_found)
        .layer(middleware::from_fn_with_state(state.clone(), guard))
        .with_state(state)
}

/// Every request: an ID, a place among the requests in flight (or 503), a time limit.
async fn guard(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let request_id = format!("req_{}", tokens::random_hex(8));
    request
        .extensions_mut()
        .insert(RequestId(request_id.clone()));
    let Ok(_permit) = state.in_flight.clone().try_acquire_owned() else {
        return Failure(
            ApiError::unavailable("too many requests in flight; retry"),
            request_id,
        )
        .into_response();
    };
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let mut response = match tokio::time::timeout(REQUEST_TIMEOUT, next.run(request)).await {
        Ok(response) => response,
        Err(_) => Failure(
            ApiError::unavailable("request timed out"),
            request_id.clone(),
        )
        .into_response(),
    };
    tracing::debug!(%method, %path, status = response.status().as_u16(), request_id, "request");
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}

/// The bearer token of a request, if any.
fn bearer(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

/// Parses an `application/x-www-form-urlencoded` body.
fn form(body: &[u8]) -> Result<HashMap<String, String>, ApiError> {
    serde_urlencoded::from_bytes(body).map_err(|_| ApiError::malformed("body is not a valid form"))
}

/// Runs blocking service work (appends wait for the disk) off the async workers.
async fn blocking<T: Send + 'static>(
    request_id: &str,
    work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, Failure> {
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result.map_err(|error| Failure(error, request_id.to_string())),
        Err(_) => Err(Failure(ApiError::internal(), request_id.to_string())),
    }
}

/// Serves on `listener` until `shutdown` resolves; in-flight requests finish first.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app(state))
        .with_graceful_shutdown(shutdown)
        .await
}
