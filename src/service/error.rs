//! The one error type the outside world sees: a stable code, an HTTP status, a message
//! without internals, and optional facts. Every layer's error maps here in one place.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

use crate::provisioning::Refusal;
use crate::saml::SamlError;
use crate::store::{AppendError, StoreError};

#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
    pub detail: Option<Value>,
}

impl ApiError {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            detail: None,
        }
    }

    pub fn with_detail(mut self, detail: Value) -> ApiError {
        self.detail = Some(detail);
        self
    }

    pub fn malformed(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "malformed_request", message)
    }

    pub fn unauthorized() -> ApiError {
        ApiError::new(401, "unauthorized", "a valid bearer token is required")
    }

    pub fn forbidden() -> ApiError {
        ApiError::new(403, "forbidden", "this token may not act on this resource")
    }

    pub fn unknown_org() -> ApiError {
        ApiError::new(404, "unknown_org", "no such organisation")
    }

    pub fn not_found(what: &str) -> ApiError {
        ApiError::new(404, "not_found", format!("no such {what}"))
    }

    /// A validly signed response to an AuthnRequest that an earlier response answered.
    pub fn replayed_request() -> Self {
        ApiError::new(
            409,
            "replayed_assertion",
            "this AuthnRequest was already answered",
        )
    }

    pub fn conflict(message: impl Into<String>) -> ApiError {
        ApiError::new(409, "conflict", message)
    }

    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError::new(503, "unavailable", message)
    }

    /// An internal failure: the message says nothing of the internals.
    pub fn internal() -> ApiError {
        ApiError::new(500, "internal", "internal error; see the service log")
    }

    /// The JSON body of CONTRACT.md, with the request ID.
    pub fn body(&self, request_id: &str) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                code: self.code.to_string(),
                message: self.message.clone(),
                request_id: request_id.to_string(),
                detail: self.detail.clone(),
            },
        }
    }
}

/// Every error answer: `{"error": {"code", "message", "request_id", "detail"?}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable snake_case code (CONTRACT.md lists them with their statuses).
    #[schema(example = "malformed_request")]
    pub code: String,
    /// For people; not to be parsed.
    pub message: String,
    /// The request's ID, also in the `x-request-id` header and the service log.
    pub request_id: String,
    /// Facts behind the refusal, when there are any (e.g. the ACL index and field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<Value>,
}

impl From<SamlError> for ApiError {
    fn from(error: SamlError) -> Self {
        let status = match error.code() {
            "too_large" => 413,
            "malformed_request" => 400,
            _ => 422,
        };
        let detail = match &error {
            SamlError::StatusNotSuccess {
                status_codes,
                message,
            } => Some(json!({ "status_codes": status_codes, "status_message": message })),
            SamlError::TooLarge { limit, max } => Some(json!({ "limit": limit, "max": max })),
            _ => None,
        };
        ApiError {
            status,
            code: error.code(),
            message: error.to_string(),
            detail,
        }
    }
}

impl From<Refusal> for ApiError {
    fn from(refusal: Refusal) -> Self {
        let detail = match &refusal {
            Refusal::InsufficientAttributes { missing, .. } => Some(json!({ "missing": missing })),
            Refusal::IncompleteAclEntry { index, missing } => {
                Some(json!({ "index": index, "missing": missing }))
            }
            Refusal::InvalidAclEntry { index, .. } => Some(json!({ "index": index })),
            Refusal::UnknownRole { value, acl_index } => {
                Some(json!({ "value": value, "acl_index": acl_index }))
            }
            Refusal::InvalidAttributeValue { field, .. } => Some(json!({ "field": field })),
            _ => None,
        };
        ApiError {
            status: 422,
            code: refusal.code(),
            message: refusal.to_string(),
            detail,
        }
    }
}

impl From<AppendError> for ApiError {
    fn from(error: AppendError) -> Self {
        match error {
            AppendError::ReplayedAssertion { .. } => {
                ApiError::new(409, "replayed_assertion", "this assertion was already used")
            }
            AppendError::Conflict { .. } => ApiError::conflict("concurrent change; retry"),
            AppendError::Busy => ApiError::unavailable("the write queue is full; retry"),
            AppendError::Invalid(reason) => ApiError::malformed(reason),
            AppendError::Storage(reason) => {
                tracing::error!(%reason, "append failed");
                ApiError::new(
                    503,
                    "storage_unavailable",
                    "the event log cannot write; the login was not acknowledged",
                )
            }
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        tracing::error!(%error, "store read failed");
        match error {
            // The disk, not the data: after a failed write sled answers every later call
            // with that error. Like the append refusal, a 503 the client may retry after
            // the restart that recovers the log.
            StoreError::Io(_) | StoreError::Sled(sled::Error::Io(_)) => ApiError::new(
                503,
                "storage_unavailable",
                "the event log cannot be read; nothing was done",
            ),
            _ => ApiError::internal(),
        }
    }
}
