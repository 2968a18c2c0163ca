//! Route handlers: parse the request, authorise, call the service, shape the answer.

use std::collections::HashMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use time::format_description::well_known::Rfc3339;

use super::{AppState, Failure, RequestId, bearer, blocking, form};
use crate::events::{JitSettings, OrgCreated, ProfileField, TokenScope};
use crate::provisioning::config::{USER_ROLE, mapping_preset};
use crate::service::{ApiError, check_id, view};
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

pub async fn healthz() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        r#"{"status":"ok"}"#,
    )
}

pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.service.metrics_text(),
    )
}

pub async fn not_found(Extension(request_id): Extension<RequestId>) -> Failure {
    Failure(ApiError::not_found("route"), request_id.0)
}

// ---- Admin.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateOrg {
    org_id: String,
    sp_entity_id: String,
    acs_url: String,
    #[serde(default = "default_skew")]
    clock_skew_seconds: i64,
    #[serde(default = "default_true")]
    allow_idp_initiated: bool,
}

fn default_skew() -> i64 {
    120
}

fn default_true() -> bool {
    true
}

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
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct JitPayload {
    enabled: Option<bool>,
    default_role: Option<String>,
    idp_managed_roles: Option<bool>,
    attribute_mapping: Option<HashMap<String, String>>,
    preset: Option<String>,
    acl_attributes: Option<bool>,
    required_for_creation: Option<Vec<String>>,
    user_id_attribute: Option<String>,
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolePayload {
    name: String,
}

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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenPayload {
    scope: String,
}

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
    let scope = match payload.scope.as_str() {
        "read" => TokenScope::Read,
        "admin" => TokenScope::Admin,
        _ => {
            return Err(fail(&request_id)(ApiError::malformed(
                "scope is read or admin",
            )));
        }
    };
    let view = blocking(&request_id.0, move || {
        service.issue_token(&caller, &org, scope)
    })
    .await?;
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

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

pub async fn events(
    State(state): State<AppState>,
    Extension(request_id): Extension<RequestId>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Answer {
    let service = state.service.clone();
    service
        .authorize(bearer(&headers), None, true)
        .map_err(fail(&request_id))?;
    let after = number(&query, "after", 0, u64::MAX).map_err(fail(&request_id))?;
    let limit = number(&query, "limit", 100, 1000).map_err(fail(&request_id))?;
    let events = blocking(&request_id.0, move || {
        Ok(service.store().events_after(after, limit as usize)?)
    })
    .await?;
    let next_after = events.last().map(|e| e.seq);
    Ok(Json(json!({
        "events": events.iter().map(view::envelope).collect::<Vec<_>>(),
        "next_after": next_after,
    }))
    .into_response())
}

// ---- SAML.

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

/// The `SAMLResponse` of a form, JSON `{"saml_response"}`, or raw base64 body.
fn saml_response(headers: &HeaderMap, bytes: &[u8]) -> Result<Vec<u8>, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if content_type.starts_with("application/json") {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Payload {
            saml_response: String,
            #[serde(default)]
            #[allow(dead_code)]
            relay_state: Option<String>,
        }
        let payload: Payload = json_body(bytes)?;
        return Ok(payload.saml_response.into_bytes());
    }
    let mut fields = form(bytes)?;
    fields
        .remove("SAMLResponse")
        .map(String::into_bytes)
        .ok_or_else(|| ApiError::malformed("SAMLResponse is missing"))
}

fn login_answer(answer: crate::service::LoginAnswer) -> Value {
    json!({
        "login_id": answer.login_id,
        "user_id": answer.user_id,
        "outcome": answer.outcome.as_str(),
        "events": answer.events.iter().map(|(seq, kind)| json!({"seq": seq, "type": kind})).collect::<Vec<_>>(),
        "user": answer.user,
    })
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
    let id = request_id.0.clone();
    let answer = blocking(&request_id.0, move || service.login(&org, &response, &id)).await?;
    Ok(Json(login_answer(answer)).into_response())
}

pub async fn acs(
    State(state): State<AppState>,
    Extension(request_id): Extension<RequestId>,
    Path(org): Path<String>,
    headers: HeaderMap,
    payload: Result<Bytes, BytesRejection>,
) -> Answer {
    run_login(state, request_id, headers, payload, org).await
}

pub async fn login(
    State(state): State<AppState>,
    Extension(request_id): Extension<RequestId>,
    Path(org): Path<String>,
    headers: HeaderMap,
    payload: Result<Bytes, BytesRejection>,
) -> Answer {
    run_login(state, request_id, headers, payload, org).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreviewPayload {
    saml_response: String,
    jit: Option<JitPayload>,
}

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
    let store = state.service.store();
    let found = match point {
        AsOf::Now => store.user(&org, &user),
        point => store.user_as_of(&org, &user, point),
    }
    .map_err(|e| fail(&request_id)(e.into()))?;
    let found = found.ok_or_else(|| fail(&request_id)(ApiError::not_found("user")))?;
    Ok(Json(view::user(&found)).into_response())
}

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
    let store = state.service.store();
    let page = match query.get("role") {
        Some(role) => {
            let ids = store
                .users_with_role(&org, role)
                .map_err(|e| fail(&request_id)(e.into()))?;
            let mut page = Vec::new();
            for id in ids
                .iter()
                .filter(|id| cursor.as_ref().is_none_or(|c| id.as_str() > c.as_str()))
                .take(limit)
            {
                if let Some(user) = store
                    .user(&org, id)
                    .map_err(|e| fail(&request_id)(e.into()))?
                {
                    page.push(user);
                }
            }
            page
        }
        None => store
            .users(&org, cursor.as_deref(), limit)
            .map_err(|e| fail(&request_id)(e.into()))?,
    };
    let next_cursor = (page.len() == limit)
        .then(|| page.last().map(|u| view::hex(u.user_id.as_bytes())))
        .flatten();
    Ok(Json(json!({
        "users": page.iter().map(view::user).collect::<Vec<_>>(),
        "next_cursor": next_cursor,
    }))
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
    let envelopes = state
        .service
        .store()
        .stream(&org, &user_stream(&user), None)
        .map_err(|e| fail(&request_id)(e.into()))?;
    if envelopes.is_empty() {
        return Err(fail(&request_id)(ApiError::not_found("user")));
    }
    Ok(
        Json(json!({ "events": envelopes.iter().map(view::envelope).collect::<Vec<_>>() }))
            .into_response(),
    )
}

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
    let store = state.service.store();
    let grants = store
        .grants_on(&org, on_type.as_str(), on)
        .map_err(|e| fail(&request_id)(e.into()))?;
    let mut users = Vec::new();
    for (user_id, _) in &grants {
        if users.iter().any(|u: &Value| u["user_id"] == *user_id) {
            continue;
        }
        if let Some(user) = store
            .user(&org, user_id)
            .map_err(|e| fail(&request_id)(e.into()))?
        {
            users.push(view::user(&user));
        }
    }
    Ok(Json(json!({
        "on": on, "on_type": on_type.as_str(),
        "grants": grants.iter().map(|(user_id, role_id)| json!({"user_id": user_id, "role_id": role_id})).collect::<Vec<_>>(),
        "users": users,
    }))
    .into_response())
}
