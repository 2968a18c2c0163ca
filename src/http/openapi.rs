//! `/openapi.json`: the route table as an OpenAPI 3.1 document. The table here is the one
//! the router is checked against in tests, so a route cannot be added without it.

use axum::Json;
use serde_json::{Map, Value, json};

/// (method, path, summary, statuses, token).
pub const ROUTES: &[(&str, &str, &str, &[u16], &str)] = &[
    ("get", "/healthz", "Liveness", &[200], "none"),
    ("get", "/metrics", "Prometheus metrics", &[200], "none"),
    ("get", "/openapi.json", "This document", &[200], "none"),
    (
        "post",
        "/v1/orgs",
        "Create an organisation",
        &[201, 400, 401, 403, 409, 413],
        "bootstrap admin",
    ),
    (
        "put",
        "/v1/orgs/{org}/idps/{idp}",
        "Register or replace an IdP from its metadata XML",
        &[200, 201, 400, 401, 403, 404, 413, 422],
        "admin",
    ),
    (
        "put",
        "/v1/orgs/{org}/idps/{idp}/jit",
        "Set an IdP's JIT settings",
        &[200, 400, 401, 403, 404, 413, 422],
        "admin",
    ),
    (
        "put",
        "/v1/orgs/{org}/roles/{role}",
        "Define a custom role",
        &[200, 400, 401, 403, 404, 409, 413],
        "admin",
    ),
    (
        "post",
        "/v1/orgs/{org}/tokens",
        "Issue an API token (shown once)",
        &[201, 400, 401, 403, 404, 413],
        "admin",
    ),
    (
        "get",
        "/v1/events",
        "The global log, in order",
        &[200, 400, 401, 403],
        "bootstrap admin",
    ),
    (
        "get",
        "/v1/orgs/{org}/saml/metadata",
        "The SP's metadata",
        &[200, 404],
        "none",
    ),
    (
        "get",
        "/v1/orgs/{org}/idps/{idp}/login",
        "Start an SP-initiated login (302 to the IdP)",
        &[302, 400, 404, 422],
        "none",
    ),
    (
        "post",
        "/v1/orgs/{org}/saml/acs",
        "Assertion Consumer Service (HTTP-POST binding)",
        &[200, 400, 404, 409, 413, 422, 503],
        "none",
    ),
    (
        "post",
        "/v1/orgs/{org}/logins",
        "Login webhook (form or JSON)",
        &[200, 400, 404, 409, 413, 422, 503],
        "none",
    ),
    (
        "post",
        "/v1/orgs/{org}/logins/preview",
        "Dry run of a login, optionally with draft JIT settings",
        &[200, 400, 401, 403, 404, 413, 422],
        "admin",
    ),
    (
        "get",
        "/v1/orgs/{org}/logins/rejected",
        "Recently refused logins",
        &[200, 400, 401, 403, 404],
        "read",
    ),
    (
        "get",
        "/v1/orgs/{org}/users",
        "Users, by role, paged",
        &[200, 400, 401, 403, 404],
        "read",
    ),
    (
        "get",
        "/v1/orgs/{org}/users/{user}",
        "A user now, or as of an instant or seq",
        &[200, 400, 401, 403, 404],
        "read",
    ),
    (
        "get",
        "/v1/orgs/{org}/users/{user}/history",
        "A user's events",
        &[200, 401, 403, 404],
        "read",
    ),
    (
        "get",
        "/v1/orgs/{org}/acl",
        "Users with an ACL entry on a resource",
        &[200, 400, 401, 403, 404],
        "read",
    ),
];

pub async fn document() -> Json<Value> {
    Json(build())
}

pub fn build() -> Value {
    let mut paths = Map::new();
    for (method, path, summary, statuses, token) in ROUTES {
        let responses: Map<String, Value> = statuses
            .iter()
            .map(|status| {
                (
                    status.to_string(),
                    json!({ "description": describe(*status) }),
                )
            })
            .chain(std::iter::once((
                "503".to_string(),
                json!({ "description": "Overloaded; retry" }),
            )))
            .collect();
        let mut operation = json!({ "summary": summary, "responses": responses });
        if *token != "none" {
            operation["security"] = json!([{ "bearer": [] }]);
            operation["description"] = Value::String(format!("Token: {token}."));
        }
        let parameters: Vec<Value> = path
            .split('/')
            .filter_map(|part| part.strip_prefix('{')?.strip_suffix('}'))
            .map(|name| json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string" } }))
            .collect();
        if !parameters.is_empty() {
            operation["parameters"] = Value::Array(parameters);
        }
        let entry = paths.entry(path.to_string()).or_insert_with(|| json!({}));
        entry[*method] = operation;
    }
    json!({
        "openapi": "3.1.0",
        "info": { "title": "jitledger", "version": env!("CARGO_PKG_VERSION") },
        "paths": paths,
        "components": { "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } } },
    })
}

fn describe(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        302 => "Redirect to the IdP",
        400 => "Malformed request",
        401 => "Missing or bad token",
        403 => "Token not allowed here",
        404 => "Unknown organisation or resource",
        409 => "Conflict or replayed assertion",
        413 => "Body too large",
        422 => "Refused: see the error code",
        _ => "See the error code",
    }
}
