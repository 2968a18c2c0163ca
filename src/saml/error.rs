//! The one error type of the SAML layer. Each variant carries the facts behind the refusal;
//! [`SamlError::code`] is the only place that decides what the outside world is told.

use time::OffsetDateTime;

use super::xml::XmlError;

/// Why a SAML message or metadata document was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SamlError {
    /// Input over a named bound.
    #[error("{limit} exceeded (at most {max})")]
    TooLarge { limit: &'static str, max: usize },
    /// Not base64, or not the kind of message expected at all.
    #[error("malformed request: {reason}")]
    MalformedRequest { reason: String },
    /// Not well-formed XML, or a SAML element missing or malformed.
    #[error("malformed XML: {reason}")]
    MalformedXml { reason: String },
    #[error("document type declarations and entities are forbidden")]
    DtdForbidden,
    #[error("invalid metadata: {reason}")]
    InvalidMetadata { reason: String },
    /// Neither the Response nor its Assertion carries a signature.
    #[error("the response is not signed")]
    SignatureMissing,
    /// A present signature does not verify with any configured key, or is malformed.
    #[error("signature invalid: {reason}")]
    SignatureInvalid { reason: String },
    /// The signature verified but the signed element's digest does not match.
    #[error("digest of {element} does not match its signature")]
    DigestMismatch { element: String },
    #[error("unsupported algorithm {uri}")]
    UnsupportedAlgorithm { uri: String },
    /// A signature in the wrong place, referencing something other than its parent, or a
    /// document shaped so that what was signed is not what would be read.
    #[error("signature wrapping: {reason}")]
    SignatureWrapping { reason: String },
    #[error("{element} Issuer {found:?} is not the IdP entity ID {expected:?}")]
    IssuerMismatch {
        element: &'static str,
        expected: String,
        found: Option<String>,
    },
    #[error("status is not Success: {status_codes:?}")]
    StatusNotSuccess {
        status_codes: Vec<String>,
        message: Option<String>,
    },
    #[error("{bound} {not_on_or_after} has passed (now {now}, skew {skew_seconds} s)")]
    AssertionExpired {
        bound: &'static str,
        not_on_or_after: OffsetDateTime,
        now: OffsetDateTime,
        skew_seconds: i64,
    },
    #[error("{bound} {not_before} is in the future (now {now}, skew {skew_seconds} s)")]
    AssertionNotYetValid {
        bound: &'static str,
        not_before: OffsetDateTime,
        now: OffsetDateTime,
        skew_seconds: i64,
    },
    #[error("audience {expected:?} not in {found:?}")]
    AudienceMismatch {
        expected: String,
        found: Vec<String>,
    },
    #[error("Recipient {found:?} is not the ACS URL {expected:?}")]
    RecipientMismatch {
        expected: String,
        found: Option<String>,
    },
    #[error("Destination {found:?} is not the ACS URL {expected:?}")]
    DestinationMismatch {
        expected: String,
        found: Option<String>,
    },
    #[error("InResponseTo {found:?} answers no outstanding request")]
    InResponseToMismatch { found: String },
    #[error("unsolicited responses are not allowed")]
    UnsolicitedResponse,
    #[error("encrypted assertions are not supported")]
    EncryptedAssertionUnsupported,
    #[error("attribute {name:?} appears more than once")]
    AmbiguousAttribute { name: String },
}

impl SamlError {
    /// The refusal code of CONTRACT.md.
    pub fn code(&self) -> &'static str {
        match self {
            Self::TooLarge { .. } => "too_large",
            Self::MalformedRequest { .. } => "malformed_request",
            Self::MalformedXml { .. } => "malformed_xml",
            Self::DtdForbidden => "dtd_forbidden",
            Self::InvalidMetadata { .. } => "invalid_metadata",
            Self::SignatureMissing => "signature_missing",
            Self::SignatureInvalid { .. } => "signature_invalid",
            Self::DigestMismatch { .. } => "digest_mismatch",
            Self::UnsupportedAlgorithm { .. } => "unsupported_algorithm",
            Self::SignatureWrapping { .. } => "signature_wrapping",
            Self::IssuerMismatch { .. } => "issuer_mismatch",
            Self::StatusNotSuccess { .. } => "status_not_success",
            Self::AssertionExpired { .. } => "assertion_expired",
            Self::AssertionNotYetValid { .. } => "assertion_not_yet_valid",
            Self::AudienceMismatch { .. } => "audience_mismatch",
            Self::RecipientMismatch { .. } => "recipient_mismatch",
            Self::DestinationMismatch { .. } => "destination_mismatch",
            Self::InResponseToMismatch { .. } => "in_response_to_mismatch",
            Self::UnsolicitedResponse => "unsolicited_response",
            Self::EncryptedAssertionUnsupported => "encrypted_assertion_unsupported",
            Self::AmbiguousAttribute { .. } => "ambiguous_attribute",
        }
    }

    pub(crate) fn malformed(reason: impl Into<String>) -> SamlError {
        SamlError::MalformedXml {
            reason: reason.into(),
        }
    }

    pub(crate) fn wrapping(reason: impl Into<String>) -> SamlError {
        SamlError::SignatureWrapping {
            reason: reason.into(),
        }
    }

    pub(crate) fn invalid_signature(reason: impl Into<String>) -> SamlError {
        SamlError::SignatureInvalid {
            reason: reason.into(),
        }
    }
}

impl From<XmlError> for SamlError {
    fn from(error: XmlError) -> Self {
        match error {
            XmlError::DtdForbidden | XmlError::EntityForbidden { .. } => SamlError::DtdForbidden,
            XmlError::LimitExceeded { limit, max } => SamlError::TooLarge { limit, max },
            // Two elements with one ID are how wrapping attacks make a reference ambiguous.
            XmlError::DuplicateId { value } => {
                SamlError::wrapping(format!("duplicate ID {value:?}"))
            }
            other => SamlError::malformed(other.to_string()),
        }
    }
}
