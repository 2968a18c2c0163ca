//! Route handlers: parse the request, authorise, call the service, shape the answer.

use std::collections::HashMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use utoipa::ToSchema;

use super::{AppState, Failure, RequestId, bearer, blocking, form, read_store};
use crate::events::{JitSettings, OrgCreated, ProfileField, TokenScope};
use crate::provisioning::config::{USER_ROLE, mapping_preset};
use crate::service::view::{EnvelopeView, UserView};
use crate::service::{
    ApiError, IdpView, JitView, LoginAnswer, OrgView, PreviewView, RejectedPage, RoleView,
    TokenView, check_id, view,
};
use crate::store::history::AsOf;
use crate::store::user_stream;

type Answer = Result<Response, Failure>;

fn fail(request_id: &RequestId) -> impl Fn(ApiError) -> Failure + '_ {
    move |error| Failure(error, request_id.0.clone())
}

/// The body, or the refusal for one that is too large or unreadable.
fn body(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(413, "too_large", "the request body is too large")
        } else {
            ApiError::malformed("the request body could not be read")
        }
    })
}

fn json_body<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| ApiError::malformed(format!("invalid JSON: {e}")))
}

/// The answer of `/healthz`.
#[derive(Serialize, ToSchema)]
pub struct Health {
    /// `ok`.
    #[schema(example = "ok")]
    pub status: String,
}

/// Liveness: 200 while the event log can write. After a failed flush or sync the writer
/// acknowledges nothing more (the files' state is unknown, as after a failed fsync), so the
/// service answers 503 `storage_unavailable` here too: its supervisor restarts it, and the
/// restart recovers the log from disk.
#[utoipa::path(get, path = "/healthz", tag = "service",
    summary = "Liveness",
    responses((status = 200, description = "The service answers and its event log can write",
        body = Health)))]
pub async fn healthz(
    State(state): State<AppState>,
    Extension(request_id): Extension<RequestId>,
) -> Answer {
    let failed = state
        .service
        .store()
        .stats()
        .failed
        .load(std::sync::atomic::Ordering::Relaxed);
    if failed {
        return Err(Failure(
            ApiError::new(
                503,
                "storage_unavailable",
                "the event log failed to write; restart the service to recover it from disk",
            ),
            request_id.0,
        ));
    }
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        r#"{"status":"ok"}"#,
    )
        .into_response())
}

#[utoipa::path(get, path = "/metrics", tag = "service",
    summary = "Prometheus metrics",
    responses((status = 200, description = "Prometheus text exposition format",
        body = String, content_type = "text/plain")))]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let mut text = state.service.metrics_text();
    text.push_str(&format!(
        "# HELP jitledger_http_requests_in_flight Requests being served, this one included.\n\
         # TYPE jitledger_http_requests_in_flight gauge\n\
         jitledger_http_requests_in_flight {}\n",
        state.requests_in_flight()
    ));
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}

pub async fn not_found(Extension(request_id): Extension<RequestId>) -> Failure {
    Failure(ApiError::not_found("route"), request_id.0)
}

// ---- Admin.

/// `POST /v1/orgs`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateOrg {
    /// Letters, digits, `.`, `_`, `-`; 1 to 64 characters, not starting with `.`.
    #[schema(pattern = r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$")]
    org_id: String,
    #[schema(pattern = r"\S")]
    sp_entity_id: String,
    #[schema(pattern = r"\S")]
    acs_url: String,
    /// 0 to 3600; default 120.
    #[serde(default = "default_skew")]
    #[schema(default = 120, minimum = 0, maximum = 3600)]
    clock_skew_seconds: i64,
    /// Default true.
    #[serde(default = "default_true")]
    #[schema(default = true)]
    allow_idp_initiated: bool,
}

fn default_skew() -> i64 {
    120
}

fn default_true() -> bool {
    true
}

#[utoipa::path(post, path = "/v1/orgs", tag = "admin",
    summary = "Create an organisation",
    description = "Bootstrap admin token only.",
    security(("bearer" = [])),
    request_body(content = CreateOrg, content_type = "application/json"),
    responses(
        (status = 201, description = "Created", body = OrgView),
        (status = 400, description = "Malformed JSON, invalid ID or field"),
        (status = 401), (status = 403, description = "Not the bootstrap admin token"),
        (status = 409, description = "The organisation exists"),
        (status = 413),
    ))]
pub async fn create_org(
    State(state): State<AppState>,
    Extension(request_id): Extension<RequestId>,
    headers: HeaderMap,
    payload: Result<Bytes, BytesRejection>,
) -> Answer {
    let service = state.service.clone();
    let caller = service
        .authorize(bearer(&headers), None, true)
        .map_err(fail(&request_id))?;
    let payload: CreateOrg = body(payload)
        .and_then(|b| json_body(&b))
        .map_err(fail(&request_id))?;
    let created = OrgCreated {
        sp_entity_id: payload.sp_entity_id,
        acs_url: payload.acs_url,
        clock_skew_seconds: payload.clock_skew_seconds,
        allow_idp_initiated: payload.allow_idp_initiated,
    };
    let view = blocking(&request_id.0, move || {
        service.create_org(&caller, &payload.org_id, created)
    })
    .await?;
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

#[utoipa::path(put, path = "/v1/orgs/{org}/idps/{idp}", tag = "admin",
    summary = "Register or replace an IdP from its metadata XML",
    description = "Admin token of the org. The body is the IdP's SAML metadata \
        (`md:EntityDescriptor`), whatever the Content-Type.",
    security(("bearer" = [])),
    params(OrgPath, IdpPath),
    request_body(description = "SAML 2.0 IdP metadata XML", content(
        (String = "application/samlmetadata+xml"),
        (String = "application/xml"),
        (String = "text/xml"),
    )),
    responses(
        (status = 200, description = "Replaced", body = IdpView),
        (status = 201, description = "Registered", body = IdpView),
        (status = 400, description = "Invalid IdP ID"),
        (status = 401), (status = 403), (status = 404, description = "Unknown organisation"),
        (status = 413),
        (status = 422, description = "`invalid_metadata` (or another XML refusal), the \
            message naming what is missing or wrong"),
    ))]
pub async fn put_idp(
    State(state): State<AppState>,
    Extension(request_id): Extension<RequestId>,
    Path((org, idp)): Path<(String, String)>,
    headers: HeaderMap,
    payload: Result<Bytes, BytesRejection>,
) -> Answer {
    let service = state.service.clone();
    let caller = service
        .authorize(bearer(&headers), Some(&org), true)
        .map_err(fail(&request_id))?;
    let metadata = body(payload).map_err(fail(&request_id))?;
    let (created, view) = blocking(&request_id.0, move || {
        service.put_idp(&caller, &org, &idp, &metadata)
    })
    .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(view)).into_response())
}

/// `PUT …/jit`: omitted fields take the defaults of CONTRACT.md; `preset` names a mapping.
#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JitPayload {
    /// Default false.
    enabled: Option<bool>,
    /// A built-in or custom role; default `Agent`.
    default_role: Option<String>,
    /// Default false.
    idp_managed_roles: Option<bool>,
    /// Mapping key (`USER_ROLE`, `USER_FIRST_NAME`, `USER_LAST_NAME`, `USER_DISPLAY_NAME`,
    /// `USER_PHONE_NUMBER`, `USER_EMAIL`) → SAML attribute; merged over the preset.
    attribute_mapping: Option<HashMap<String, String>>,
    /// A named mapping preset to start from.
    preset: Option<String>,
    /// Default true.
    acl_attributes: Option<bool>,
    /// Mapping keys a login must carry to create a user; default email, first and last name.
    required_for_creation: Option<Vec<String>>,
    /// Take the user ID from this attribute instead of the NameID.
    user_id_attribute: Option<String>,
    /// Accept RSA-SHA1 signatures from this IdP; default false.
    allow_sha1: Option<bool>,
}

impl JitPayload {
    pub fn into_settings(self) -> Result<JitSettings, ApiError> {
        let defaults = JitSettings::default();
        let mut mapping = match &self.preset {
            Some(name) => mapping_preset(name)
                .ok_or_else(|| ApiError::malformed(format!("unknown preset {name:?}")))?,
            None => defaults.attribute_mapping.clone(),
        };
        for (key, attribute) in self.attribute_mapping.unwrap_or_default() {
            if key != USER_ROLE && ProfileField::from_mapping_key(&key).is_none() {
                return Err(ApiError::new(
                    422,
                    "invalid_settings",
                    format!("unknown field {key:?}"),
                ));
            }
            mapping.retain(|(existing, _)| *existing != key);
            mapping.push((key, attribute));
        }
        mapping.sort();
        let required = match self.required_for_creation {
            Some(keys) => keys
                .iter()
                .map(|key| {
                    ProfileField::from_mapping_key(key).ok_or_else(|| {
                        ApiError::new(422, "invalid_settings", format!("unknown field {key:?}"))
                    })
                })
                .collect::<Result<Vec<_>, _>>()?,
            None => defaults.required_for_creation.clone(),
        };
        Ok(JitSettings {
            enabled: self.enabled.unwrap_or(defaults.enabled),
            default_role: self.default_role.unwrap_or(defaults.default_role),
            idp_managed_roles: self.idp_managed_roles.unwrap_or(defaults.idp_managed_roles),
            attribute_mapping: mapping,
            acl_attributes: self.acl_attributes.unwrap_or(defaults.acl_attributes),
            required_for_creation: required,
            user_id_attribute: self.user_id_attribute,
            allow_sha1: self.allow_sha1.unwrap_or(defaults.allow_sha1),
        })
    }
}

#[utoipa::path(put, path = "/v1/orgs/{org}/idps/{idp}/jit", tag = "admin",
    summary = "Set an IdP's JIT settings",
    description = "Admin token of the org.",
    security(("bearer" = [])),
    params(OrgPath, IdpPath),
    request_body(content = JitPayload, content_type = "application/json"),
    responses(
        (status = 200, description = "The settings now in force", body = JitView),
        (status = 400, description = "Malformed JSON or unknown preset"),
        (status = 401), (status = 403),
        (status = 404, description = "Unknown organisation or IdP"),
        (status = 413),
        (status = 422, description = "`invalid_settings`: unknown field or role"),
    ))]
pub async fn put_jit(
    State(state): State<AppState>,
    Extension(request_id): Extension<RequestId>,
    Path((org, idp)): Path<(String, String)>,
    headers: HeaderMap,
    payload: Result<Bytes, BytesRejection>,
) -> Answer {
    let service = state.service.clone();
    let caller = service
        .authorize(bearer(&headers), Some(&org), true)
        .map_err(fail(&request_id))?;
    let settings = body(payload)
        .and_then(|b| json_body::<JitPayload>(&b))
        .and_then(JitPayload::into_settings)
        .map_err(fail(&request_id))?;
    let view = blocking(&request_id.0, move || {
        service.put_jit(&caller, &org, &idp, settings)
    })
    .await?;
    Ok(Json(view).into_response())
}

/// `PUT …/roles/{role}`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RolePayload {
    /// 1 to 128 printable characters, unique in the org (case-insensitively).
    name: String,
}

#[utoipa::path(put, path = "/v1/orgs/{org}/roles/{role}", tag = "admin",
    summary = "Define or rename a custom role",
    description = "Admin token of the org.",
    security(("bearer" = [])),
    params(OrgPath, ("role" = String, Path, description = "Role ID", max_length = 64,
        pattern = r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$")),
    request_body(content = RolePayload, content_type = "application/json"),
    responses(
        (status = 200, description = "The role", body = RoleView),
        (status = 400, description = "Malformed JSON, invalid role ID or name"),
        (status = 401), (status = 403), (status = 404, description = "Unknown organisation"),
        (status = 409, description = "A built-in role, or another role has this name"),
        (status = 413),
    ))]
pub async fn put_role(
    State(state): State<AppState>,
    Extension(request_id): Extension<RequestId>,
    Path((org, role)): Path<(String, String)>,
    headers: HeaderMap,
    payload: Result<Bytes, BytesRejection>,
) -> Answer {
    let service = state.service.clone();
    let caller = service
        .authorize(bearer(&headers), Some(&org), true)
        .map_err(fail(&request_id))?;
    let payload: RolePayload = body(payload)
        .and_then(|b| json_body(&b))
        .map_err(fail(&request_id))?;
    let view = blocking(&request_id.0, move || {
        service.put_role(&caller, &org, &role, &payload.name)
    })
    .await?;
    Ok(Json(view).into_response())
}

/// `POST …/tokens`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenPayload {
    scope: ScopeName,
}

/// What a token may do: `read` the org's users and refusals, or `admin` it too.
#[derive(Deserialize, ToSchema, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub enum ScopeName {
    Read,
    Admin,
}

#[utoipa::path(post, path = "/v1/orgs/{org}/tokens", tag = "admin",
    summary = "Issue an API token (shown once)",
    description = "Admin token of the org.",
    security(("bearer" = [])),
    params(OrgPath),
    request_body(content = TokenPayload, content_type = "application/json"),
    responses(
        (status = 201, description = "Issued: the token is shown this once", body = TokenView),
        (status = 400, description = "Malformed JSON or unknown scope"),
        (status = 401), (status = 403), (status = 404, description = "Unknown organisation"),
        (status = 413),
    ))]
pub async fn issue_token(
    State(state): State<AppState>,
    Extension(request_id): Extension<RequestId>,
    Path(org): Path<String>,
    headers: HeaderMap,
    payload: Result<Bytes, BytesRejection>,
) -> Answer {
    let service = state.service.clone();
    let caller = service
        .authorize(bearer(&headers), Some(&org), true)
        .map_err(fail(&request_id))?;
    let payload: TokenPayload = body(payload)
        .and_then(|b| json_body(&b))
        .map_err(fail(&request_id))?;
    let scope = match payload.scope {
        ScopeName::Read => TokenScope::Read,
        ScopeName::Admin => TokenScope::Admin,
    };
    let view = blocking(&request_id.0, move || {
        service.issue_token(&caller, &org, scope)
    })
    .await?;
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

#[utoipa::path(delete, path = "/v1/orgs/{org}/tokens/{token_id}", tag = "admin",
    summary = "Revoke an API token",
    description = "Admin token of the org. The revoked token is refused (401) from then on.",
    security(("bearer" = [])),
    params(OrgPath, ("token_id" = String, Path, description = "The `token_id` given at issue")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 401), (status = 403),
        (status = 404, description = "Unknown organisation or token"),
    ))]
pub async fn revoke_token(
    State(state): State<AppState>,
    Extension(request_id): Extension<RequestId>,
    Path((org, token_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Answer {
    let service = state.service.clone();
    let caller = service
        .authorize(bearer(&headers), Some(&org), true)
        .map_err(fail(&request_id))?;
    blocking(&request_id.0, move || {
        service.revoke_token(&caller, &org, &token_id)
    })
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The org of a path.
#[derive(utoipa::IntoParams)]
#[into_params(names("org"), parameter_in = Path)]
#[allow(dead_code)]
pub struct OrgPath(
    /// Organisation ID.
    #[param(max_length = 64)]
    String,
);

/// The IdP of a path.
#[derive(utoipa::IntoParams)]
#[into_params(names("idp"), parameter_in = Path)]
#[allow(dead_code)]
pub struct IdpPath(
    /// IdP ID within the organisation: letters, digits, `.`, `_`, `-`, not starting with `.`.
    #[param(max_length = 64, pattern = r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$")]
    String,
);

fn number(
    query: &HashMap<String, String>,
    name: &str,
    default: u64,
    max: u64,
) -> Result<u64, ApiError> {
    match query.get(name) {
        None => Ok(default),
        Some(text) => text
            .parse::<u64>()
            .ok()
            .filter(|n| *n <= max)
            .ok_or_else(|| ApiError::malformed(format!("{name} must be a number up to {max}"))),
    }
}

/// A page of the global log.
#[derive(Serialize, ToSchema)]
pub struct EventsPage {
    pub events: Vec<EnvelopeView>,
    /// The `after` of the next page; null when this page is empty.
    pub next_after: Option<u64>,
}

#[utoipa::path(get, path = "/v1/events", tag = "admin",
    summary = "The global log, in order",
    description = "Bootstrap admin token only.",
    security(("bearer" = [])),
    params(
        ("after" = Option<u64>, Query, description = "Envelopes with a greater seq; default 0"),
        ("limit" = Option<u64>, Query, description = "Default 100", maximum = 1000),
    ),
    responses(
        (status = 200, description = "A page of envelopes", body = EventsPage),
        (status = 400, description = "after or limit is not a number in range"),
        (status = 401), (status = 403, description = "Not the bootstrap admin token"),
    ))]
pub async fn events(
    State(state): State<AppState>,
    Extension(request_id): Extension<RequestId>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Answer {
    state
        .service
        .authorize(bearer(&headers), None, true)
        .map_err(fail(&request_id))?;
    let after = number(&query, "after", 0, u64::MAX).map_err(fail(&request_id))?;
    let limit = number(&query, "limit", 100, 1000).map_err(fail(&request_id))?;
    let events = read_store(&state, &request_id.0, move |store| {
        Ok(store.events_after(after, limit as usize)?)
    })
    .await?;
    let next_after = events.last().map(|e| e.seq);
    Ok(Json(EventsPage {
        events: events.iter().map(view::envelope).collect(),
        next_after,
    })
    .into_response())
}

// ---- SAML.

#[utoipa::path(get, path = "/v1/orgs/{org}/saml/metadata", tag = "saml",
    summary = "The SP's metadata XML",
    params(OrgPath),
    responses(
        (status = 200, description = "SP metadata: entityID and ACS URL", body = String,
            content_type = "application/samlmetadata+xml"),
        (status = 404, description = "Unknown organisation"),
    ))]
pub async fn sp_metadata(
    State(state): State<AppState>,
    Extension(request_id): Extension<RequestId>,
    Path(org): Path<String>,
) -> Answer {
    let xml = state.service.sp_metadata(&org).map_err(fail(&request_id))?;
    Ok((
        [(header::CONTENT_TYPE, "application/samlmetadata+xml")],
        xml,
    )
        .into_response())
}

#[utoipa::path(get, path = "/v1/orgs/{org}/idps/{idp}/login", tag = "saml",
    summary = "Start an SP-initiated login",
    description = "302 to the IdP's SSO URL with an AuthnRequest (HTTP-Redirect binding); its ID \
        is remembered so that the answer's InResponseTo is accepted once.",
    params(OrgPath, IdpPath,
        ("relay_state" = Option<String>, Query, description = "Returned by the IdP", max_length = 320)),
    responses(
        (status = 302, description = "Redirect to the IdP",
            headers(("location" = String, description = "The IdP's SSO URL with SAMLRequest"))),
        (status = 400, description = "relay_state too long"),
        (status = 404, description = "Unknown organisation or IdP"),
        (status = 422, description = "The IdP has no HTTP-Redirect SSO endpoint"),
    ))]
pub async fn start_login(
    State(state): State<AppState>,
    Extension(request_id): Extension<RequestId>,
    Path((org, idp)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
) -> Answer {
    let relay_state = query.get("relay_state").map(String::as_str);
    let url = state
        .service
        .start_login(&org, &idp, relay_state)
        .map_err(fail(&request_id))?;
    // CONTRACT.md: 302, the status the HTTP-Redirect binding names (Bindings §3.4.4).
    Ok((StatusCode::FOUND, [(header::LOCATION, url)]).into_response())
}

/// The HTTP-POST binding's form.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct LoginForm {
    /// Base64 of the signed Response.
    #[schema(rename = "SAMLResponse")]
    saml_response: String,
    #[schema(rename = "RelayState")]
    relay_state: Option<String>,
}

/// The login webhook's JSON body.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginJson {
    /// Base64 of the signed Response.
    saml_response: String,
    #[serde(default)]
    #[allow(dead_code)]
    relay_state: Option<String>,
}

/// The `SAMLResponse` of a form, or JSON `{"saml_response"}`.
fn saml_response(headers: &HeaderMap, bytes: &[u8]) -> Result<Vec<u8>, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if content_type.starts_with("application/json") {
        let payload: LoginJson = json_body(bytes)?;
        return Ok(payload.saml_response.into_bytes());
    }
    form::field(bytes, "SAMLResponse")
        .map_err(ApiError::malformed)?
        .ok_or_else(|| ApiError::malformed("SAMLResponse is missing"))
}

async fn run_login(
    state: AppState,
    request_id: RequestId,
    headers: HeaderMap,
    payload: Result<Bytes, BytesRejection>,
    org: String,
) -> Answer {
    let service = state.service.clone();
    check_id("org", &org).map_err(fail(&request_id))?;
    let response = body(payload)
        .and_then(|b| saml_response(&headers, &b))
        .map_err(fail(&request_id))?;
    // A task of its own, so that a client that goes away (or the request timeout) cannot
    // stop a login between its append and what follows it (the request ID consumed, the
    // metrics); a panic in it is a 500.
    let login = tokio::spawn(service.login(org, response, request_id.0.clone()));
    let answer = match login.await {
        Ok(answer) => answer.map_err(fail(&request_id))?,
        Err(_) => return Err(fail(&request_id)(ApiError::internal())),
    };
    Ok(Json(answer).into_response())
}

#[utoipa::path(post, path = "/v1/orgs/{org}/saml/acs", tag = "saml",
    summary = "Assertion Consumer Service (HTTP-POST binding)",
    description = "No token: the IdP's signature is the credential. The events are durable \
        before the answer.",
    params(OrgPath),
    request_body(content(
        (LoginForm = "application/x-www-form-urlencoded"),
        (LoginJson = "application/json"),
    )),
    responses(
        (status = 200, description = "Accepted and recorded", body = LoginAnswer),
        (status = 400, description = "Malformed form, base64 or org ID"),
        (status = 404, description = "Unknown organisation"),
        (status = 409, description = "`replayed_assertion`, or a concurrent change"),
        (status = 413),
        (status = 422, description = "Refused: the code names the SAML or provisioning rule"),
    ))]
pub async fn acs(
    State(state): State<AppState>,
    Extension(request_id): Extension<RequestId>,
    Path(org): Path<String>,
    headers: HeaderMap,
    payload: Result<Bytes, BytesRejection>,
) -> Answer {
    run_login(state, request_id, headers, payload, org).await
}

#[utoipa::path(post, path = "/v1/orgs/{org}/logins", tag = "saml",
    summary = "Login webhook (form or JSON)",
    description = "No token: the IdP's signature is the credential. The events are durable \
        before the answer.",
    params(OrgPath),
    request_body(content(
        (LoginJson = "application/json"),
        (LoginForm = "application/x-www-form-urlencoded"),
    )),
    responses(
        (status = 200, description = "Accepted and recorded", body = LoginAnswer),
        (status = 400, description = "Malformed body, base64 or org ID"),
        (status = 404, description = "Unknown organisation"),
        (status = 409, description = "`replayed_assertion`, or a concurrent change"),
        (status = 413),
        (status = 422, description = "Refused: the code names the SAML or provisioning rule"),
    ))]
pub async fn login(
    State(state): State<AppState>,
    Extension(request_id): Extension<RequestId>,
    Path(org): Path<String>,
    headers: HeaderMap,
    payload: Result<Bytes, BytesRejection>,
) -> Answer {
    run_login(state, request_id, headers, payload, org).await
}

/// `POST …/logins/preview` as JSON: a response and optionally draft JIT settings.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PreviewPayload {
    /// Base64 of the signed Response.
    saml_response: String,
    /// Draft settings to decide with instead of the stored ones.
    jit: Option<JitPayload>,
}

#[utoipa::path(post, path = "/v1/orgs/{org}/logins/preview", tag = "admin",
    summary = "Dry run of a login, optionally with draft JIT settings",
    description = "Admin token of the org. Validates and decides; writes nothing.",
    security(("bearer" = [])),
    params(OrgPath),
    request_body(content(
        (PreviewPayload = "application/json"),
        (LoginForm = "application/x-www-form-urlencoded"),
    )),
    responses(
        (status = 200, description = "The events it would write and the user's diff",
            body = PreviewView),
        (status = 400, description = "Malformed body or base64"),
        (status = 401), (status = 403), (status = 404, description = "Unknown organisation"),
        (status = 413),
        (status = 422, description = "Refused: the code names the SAML or provisioning rule"),
    ))]
pub async fn preview(
    State(state): State<AppState>,
    Extension(request_id): Extension<RequestId>,
    Path(org): Path<String>,
    headers: HeaderMap,
    payload: Result<Bytes, BytesRejection>,
) -> Answer {
    let service = state.service.clone();
    service
        .authorize(bearer(&headers), Some(&org), true)
        .map_err(fail(&request_id))?;
    let bytes = body(payload).map_err(fail(&request_id))?;
    let (response, draft) = if headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/json"))
    {
        let payload: PreviewPayload = json_body(&bytes).map_err(fail(&request_id))?;
        let draft = payload
            .jit
            .map(JitPayload::into_settings)
            .transpose()
            .map_err(fail(&request_id))?;
        (payload.saml_response.into_bytes(), draft)
    } else {
        (
            saml_response(&headers, &bytes).map_err(fail(&request_id))?,
            None,
        )
    };
    let view = blocking(&request_id.0, move || {
        service.preview(&org, &response, draft)
    })
    .await?;
    Ok(Json(view).into_response())
}

#[utoipa::path(get, path = "/v1/orgs/{org}/logins/rejected", tag = "query",
    summary = "Recently refused logins, newest first",
    description = "Read or admin token of the org.",
    security(("bearer" = [])),
    params(OrgPath, ("limit" = Option<u64>, Query, description = "Default 100", maximum = 1000)),
    responses(
        (status = 200, description = "Refused logins with their codes", body = RejectedPage),
        (status = 400, description = "limit is not a number in range"),
        (status = 401), (status = 403), (status = 404, description = "Unknown organisation"),
    ))]
pub async fn rejected(
    State(state): State<AppState>,
    Extension(request_id): Extension<RequestId>,
    Path(org): Path<String>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Answer {
    state
        .service
        .authorize(bearer(&headers), Some(&org), false)
        .map_err(fail(&request_id))?;
    let limit = number(&query, "limit", 100, 1000).map_err(fail(&request_id))?;
    let view = state
        .service
        .rejected(&org, limit as usize)
        .map_err(fail(&request_id))?;
    Ok(Json(view).into_response())
}

// ---- Queries.

fn as_of(query: &HashMap<String, String>) -> Result<AsOf, ApiError> {
    match (query.get("as_of"), query.get("as_of_seq")) {
        (Some(_), Some(_)) => Err(ApiError::malformed("give as_of or as_of_seq, not both")),
        (Some(text), None) => time::OffsetDateTime::parse(text, &Rfc3339)
            .map(|t| AsOf::Time(t.unix_timestamp_nanos()))
            .map_err(|_| ApiError::malformed("as_of must be an RFC 3339 instant")),
        (None, Some(text)) => text
            .parse()
            .map(AsOf::Seq)
            .map_err(|_| ApiError::malformed("as_of_seq must be a number")),
        (None, None) => Ok(AsOf::Now),
    }
}

fn org_exists(state: &AppState, org: &str) -> Result<(), ApiError> {
    state
        .service
        .store()
        .org(org)?
        .map(|_| ())
        .ok_or_else(ApiError::unknown_org)
}

#[utoipa::path(get, path = "/v1/orgs/{org}/users/{user}", tag = "query",
    summary = "A user now, or as of an instant or sequence number",
    description = "Read or admin token of the org.",
    security(("bearer" = [])),
    params(OrgPath,
        ("user" = String, Path, description = "User ID (the NameID), percent-encoded"),
        ("as_of" = Option<String>, Query, description = "RFC 3339 instant", format = DateTime),
        ("as_of_seq" = Option<u64>, Query, description = "Global sequence number"),
    ),
    responses(
        (status = 200, description = "USER", body = UserView),
        (status = 400, description = "Bad as_of or as_of_seq, or both given"),
        (status = 401), (status = 403),
        (status = 404, description = "Unknown organisation or user (then)"),
    ))]
pub async fn user(
    State(state): State<AppState>,
    Extension(request_id): Extension<RequestId>,
    Path((org, user)): Path<(String, String)>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Answer {
    state
        .service
        .authorize(bearer(&headers), Some(&org), false)
        .map_err(fail(&request_id))?;
    let point = as_of(&query).map_err(fail(&request_id))?;
    org_exists(&state, &org).map_err(fail(&request_id))?;
    let found = read_store(&state, &request_id.0, move |store| {
        Ok(match point {
            AsOf::Now => store.user(&org, &user),
            point => store.user_as_of(&org, &user, point),
        }?)
    })
    .await?;
    let found = found.ok_or_else(|| fail(&request_id)(ApiError::not_found("user")))?;
    Ok(Json(view::user(&found)).into_response())
}

/// A page of users.
#[derive(Serialize, ToSchema)]
pub struct UsersPage {
    pub users: Vec<UserView>,
    /// The `cursor` of the next page; null on the last.
    pub next_cursor: Option<String>,
}

#[utoipa::path(get, path = "/v1/orgs/{org}/users", tag = "query",
    summary = "Users, by role, paged",
    description = "Read or admin token of the org.",
    security(("bearer" = [])),
    params(OrgPath,
        ("role" = Option<String>, Query, description = "Only users with this role"),
        ("limit" = Option<u64>, Query, description = "Default 100", maximum = 1000),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page"),
    ),
    responses(
        (status = 200, description = "A page of USER", body = UsersPage),
        (status = 400, description = "Bad limit or cursor"),
        (status = 401), (status = 403), (status = 404, description = "Unknown organisation"),
    ))]
pub async fn users(
    State(state): State<AppState>,
    Extension(request_id): Extension<RequestId>,
    Path(org): Path<String>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Answer {
    state
        .service
        .authorize(bearer(&headers), Some(&org), false)
        .map_err(fail(&request_id))?;
    org_exists(&state, &org).map_err(fail(&request_id))?;
    let limit = number(&query, "limit", 100, 1000).map_err(fail(&request_id))? as usize;
    let cursor = match query.get("cursor") {
        Some(hex) => Some(
            decode_cursor(hex)
                .ok_or_else(|| fail(&request_id)(ApiError::malformed("bad cursor")))?,
        ),
        None => None,
    };
    let role = query.get("role").cloned();
    let page = read_store(&state, &request_id.0, move |store| {
        let Some(role) = role else {
            return Ok(store.users(&org, cursor.as_deref(), limit)?);
        };
        let ids = store.users_with_role(&org, &role)?;
        let mut page = Vec::new();
        for id in ids
            .iter()
            .filter(|id| cursor.as_ref().is_none_or(|c| id.as_str() > c.as_str()))
            .take(limit)
        {
            if let Some(user) = store.user(&org, id)? {
                page.push(user);
            }
        }
        Ok(page)
    })
    .await?;
    let next_cursor = (page.len() == limit)
        .then(|| page.last().map(|u| view::hex(u.user_id.as_bytes())))
        .flatten();
    Ok(Json(UsersPage {
        users: page.iter().map(view::user).collect(),
        next_cursor,
    })
    .into_response())
}

fn decode_cursor(hex: &str) -> Option<String> {
    if !hex.len().is_multiple_of(2) || hex.len() > 1024 {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect();
    String::from_utf8(bytes?).ok()
}

/// A user's envelopes, oldest first.
#[derive(Serialize, ToSchema)]
pub struct HistoryPage {
    pub events: Vec<EnvelopeView>,
}

#[utoipa::path(get, path = "/v1/orgs/{org}/users/{user}/history", tag = "query",
    summary = "A user's events",
    description = "Read or admin token of the org.",
    security(("bearer" = [])),
    params(OrgPath, ("user" = String, Path, description = "User ID, percent-encoded")),
    responses(
        (status = 200, description = "The user's envelopes, oldest first", body = HistoryPage),
        (status = 401), (status = 403),
        (status = 404, description = "Unknown organisation or user"),
    ))]
pub async fn history(
    State(state): State<AppState>,
    Extension(request_id): Extension<RequestId>,
    Path((org, user)): Path<(String, String)>,
    headers: HeaderMap,
) -> Answer {
    state
        .service
        .authorize(bearer(&headers), Some(&org), false)
        .map_err(fail(&request_id))?;
    org_exists(&state, &org).map_err(fail(&request_id))?;
    let envelopes = read_store(&state, &request_id.0, move |store| {
        Ok(store.stream(&org, &user_stream(&user), None)?)
    })
    .await?;
    if envelopes.is_empty() {
        return Err(fail(&request_id)(ApiError::not_found("user")));
    }
    Ok(Json(HistoryPage {
        events: envelopes.iter().map(view::envelope).collect(),
    })
    .into_response())
}

/// One grant on a resource.
#[derive(Serialize, ToSchema)]
pub struct GrantView {
    pub user_id: String,
    pub role_id: String,
}

/// Who has an entry on a resource.
#[derive(Serialize, ToSchema)]
pub struct AclAnswer {
    pub on: String,
    /// `ACCOUNT`, `FOLDER` or `LOCATION`.
    pub on_type: &'static str,
    pub grants: Vec<GrantView>,
    /// Each user with a grant, once.
    pub users: Vec<UserView>,
}

/// What `on_type` names.
#[derive(ToSchema)]
#[allow(dead_code, clippy::upper_case_acronyms)]
pub enum OnTypeName {
    ACCOUNT,
    FOLDER,
    LOCATION,
}

#[utoipa::path(get, path = "/v1/orgs/{org}/acl", tag = "query",
    summary = "Users with an ACL entry on a resource",
    description = "Read or admin token of the org.",
    security(("bearer" = [])),
    params(OrgPath,
        ("on" = String, Query, description = "Resource ID"),
        ("on_type" = inline(OnTypeName), Query,
            description = "Resource type (case-insensitive)"),
    ),
    responses(
        (status = 200, description = "The grants and their users", body = AclAnswer),
        (status = 400, description = "on or on_type missing or invalid"),
        (status = 401), (status = 403), (status = 404, description = "Unknown organisation"),
    ))]
pub async fn acl(
    State(state): State<AppState>,
    Extension(request_id): Extension<RequestId>,
    Path(org): Path<String>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Answer {
    state
        .service
        .authorize(bearer(&headers), Some(&org), false)
        .map_err(fail(&request_id))?;
    org_exists(&state, &org).map_err(fail(&request_id))?;
    let on = query
        .get("on")
        .ok_or_else(|| fail(&request_id)(ApiError::malformed("on is required")))?;
    let on_type = query
        .get("on_type")
        .and_then(|t| crate::events::OnType::parse(t))
        .ok_or_else(|| {
            fail(&request_id)(ApiError::malformed(
                "on_type is ACCOUNT, FOLDER or LOCATION",
            ))
        })?;
    let on_key = on.clone();
    let (grants, users) = read_store(&state, &request_id.0, move |store| {
        let grants = store.grants_on(&org, on_type.as_str(), &on_key)?;
        let mut users: Vec<UserView> = Vec::new();
        for (user_id, _) in &grants {
            if users.iter().any(|u| u.user_id == *user_id) {
                continue;
            }
            if let Some(user) = store.user(&org, user_id)? {
                users.push(view::user(&user));
            }
        }
        Ok((grants, users))
    })
    .await?;
    Ok(Json(AclAnswer {
        on: on.clone(),
        on_type: on_type.as_str(),
        grants: grants
            .iter()
            .map(|(user_id, role_id)| GrantView {
                user_id: user_id.clone(),
                role_id: role_id.clone(),
            })
            .collect(),
        users,
    })
    .into_response())
}
