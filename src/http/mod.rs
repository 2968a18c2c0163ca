//! The HTTP adapter: every route of CONTRACT.md on axum. Handlers translate between HTTP
//! and [`Service`]; they hold no rules of their own.

mod form;
mod handlers;
pub mod openapi;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::handler::Handler;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, on};
use axum::{Json, Router};
use tokio::sync::Semaphore;

use crate::service::{ApiError, Service, tokens};
use crate::store::Store;

/// Body bound of the SAML routes (CONTRACT.md).
pub const SAML_BODY_BYTES_MAX: usize = 1024 * 1024;
/// Body bound of the metadata route.
pub const METADATA_BODY_BYTES_MAX: usize = 4 * 1024 * 1024;
/// Body bound of every other route: JSON settings are small.
pub const JSON_BODY_BYTES_MAX: usize = 64 * 1024;
/// Requests in flight at once; beyond it, 503 with Retry-After rather than a queue that
/// grows until every request times out.
pub const REQUESTS_IN_FLIGHT_MAX: usize = 1024;
/// Threads running blocking work: a login's validation (CPU), an admin change until it is
/// durable, a query's store reads, the pruning of replay guards. A login waits for the disk
/// without a thread, so this bounds CPU work, a few times the cores of a small machine, and
/// memory: each thread keeps its own allocator heap (about 2.5 MiB after a login); tokio's
/// default of 512 once let 256 concurrent logins grow the process past 800 MiB. Beyond it,
/// work queues.
pub const BLOCKING_THREADS_MAX: usize = 16;
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

    /// Requests being served now (the one asking included).
    pub fn requests_in_flight(&self) -> usize {
        REQUESTS_IN_FLIGHT_MAX - self.in_flight.available_permits()
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

/// The router and the (method, path) pairs it serves, built together: `/openapi.json` is
/// checked against the pairs, so a route cannot be served undocumented.
struct Routes {
    router: Router<AppState>,
    served: Vec<(Method, &'static str)>,
}

impl Routes {
    fn new() -> Routes {
        Routes {
            router: Router::new(),
            served: Vec::new(),
        }
    }

    /// Serves `handler` for `method` on `path`, with a body bound when one is given.
    fn add<H, T>(
        mut self,
        method: Method,
        path: &'static str,
        handler: H,
        body_bytes_max: Option<usize>,
    ) -> Routes
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        let filter = MethodFilter::try_from(method.clone())
            .unwrap_or_else(|_| panic!("axum cannot route {method}"));
        let mut route = on(filter, handler);
        if let Some(max) = body_bytes_max {
            route = route.layer(DefaultBodyLimit::max(max));
        }
        self.router = self.router.route(path, route);
        self.served.push((method, path));
        self
    }
}

fn routes() -> Routes {
    let saml = Some(SAML_BODY_BYTES_MAX);
    let json = Some(JSON_BODY_BYTES_MAX);
    Routes::new()
        .add(Method::GET, "/healthz", handlers::healthz, None)
        .add(Method::GET, "/metrics", handlers::metrics, None)
        .add(Method::GET, "/openapi.json", openapi::document, None)
        .add(Method::POST, "/v1/orgs", handlers::create_org, json)
        .add(
            Method::PUT,
            "/v1/orgs/{org}/idps/{idp}",
            handlers::put_idp,
            Some(METADATA_BODY_BYTES_MAX),
        )
        .add(
            Method::PUT,
            "/v1/orgs/{org}/idps/{idp}/jit",
            handlers::put_jit,
            json,
        )
        .add(
            Method::PUT,
            "/v1/orgs/{org}/roles/{role}",
            handlers::put_role,
            json,
        )
        .add(
            Method::POST,
            "/v1/orgs/{org}/tokens",
            handlers::issue_token,
            json,
        )
        .add(
            Method::DELETE,
            "/v1/orgs/{org}/tokens/{token_id}",
            handlers::revoke_token,
            None,
        )
        .add(Method::GET, "/v1/events", handlers::events, None)
        .add(
            Method::GET,
            "/v1/orgs/{org}/saml/metadata",
            handlers::sp_metadata,
            None,
        )
        .add(
            Method::GET,
            "/v1/orgs/{org}/idps/{idp}/login",
            handlers::start_login,
            None,
        )
        .add(Method::POST, "/v1/orgs/{org}/saml/acs", handlers::acs, saml)
        .add(Method::POST, "/v1/orgs/{org}/logins", handlers::login, saml)
        .add(
            Method::POST,
            "/v1/orgs/{org}/logins/preview",
            handlers::preview,
            saml,
        )
        .add(
            Method::GET,
            "/v1/orgs/{org}/logins/rejected",
            handlers::rejected,
            None,
        )
        .add(Method::GET, "/v1/orgs/{org}/users", handlers::users, None)
        .add(
            Method::GET,
            "/v1/orgs/{org}/users/{user}",
            handlers::user,
            None,
        )
        .add(
            Method::GET,
            "/v1/orgs/{org}/users/{user}/history",
            handlers::history,
            None,
        )
        .add(Method::GET, "/v1/orgs/{org}/acl", handlers::acl, None)
}

/// Every (method, path) the router serves.
pub fn served_routes() -> Vec<(Method, &'static str)> {
    routes().served
}

/// The service's routes.
pub fn app(state: AppState) -> Router {
    routes()
        .router
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
    if !is_json(&response)
        && (response.status().is_client_error() || response.status().is_server_error())
    {
        response = Failure(framework_error(response.status()), request_id.clone()).into_response();
    }
    tracing::debug!(%method, %path, status = response.status().as_u16(), request_id, "request");
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}

fn is_json(response: &Response) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/json"))
}

/// The error of a refusal made by axum itself (a path, query or method it cannot take),
/// so that every error answer has the body of CONTRACT.md.
fn framework_error(status: StatusCode) -> ApiError {
    match status {
        StatusCode::BAD_REQUEST => ApiError::malformed("the request could not be read"),
        StatusCode::NOT_FOUND => ApiError::not_found("route"),
        StatusCode::METHOD_NOT_ALLOWED => ApiError::new(
            405,
            "method_not_allowed",
            "this route does not take this method",
        ),
        StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::new(413, "too_large", "the request body is too large")
        }
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::new(
            415,
            "unsupported_media_type",
            "this content type is not taken here",
        ),
        status if status.is_client_error() => ApiError::new(
            status.as_u16(),
            "malformed_request",
            "the request could not be taken",
        ),
        _ => ApiError::internal(),
    }
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

/// Runs blocking service work off the async workers: appends wait for the disk, and a
/// store read that misses sled's cache reads its file (at 1M users most do, and with a cold
/// OS page cache each waits on the device; two workers doing that in turn queue every
/// other request behind them).
async fn blocking<T: Send + 'static>(
    request_id: &str,
    work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, Failure> {
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result.map_err(|error| Failure(error, request_id.to_string())),
        Err(_) => Err(Failure(ApiError::internal(), request_id.to_string())),
    }
}

/// Reads the store on the blocking pool (see [`blocking`]): every query goes through here.
async fn read_store<T: Send + 'static>(
    state: &AppState,
    request_id: &str,
    read: impl FnOnce(&Store) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, Failure> {
    let service = Arc::clone(&state.service);
    blocking(request_id, move || read(service.store())).await
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
