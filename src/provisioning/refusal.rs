//! Why a validated login is not turned into events.

/// A refusal of the provisioning rules. Variants carry the facts; [`Refusal::code`] is the
/// code of CONTRACT.md.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    #[error("IdP {idp_id:?} is not registered for this organisation")]
    UnknownIdp { idp_id: String },
    #[error("no user {user_id:?} and JIT provisioning is off for IdP {idp_id:?}")]
    UserNotFound { user_id: String, idp_id: String },
    #[error("cannot create user {user_id:?}: missing {missing:?}")]
    InsufficientAttributes {
        user_id: String,
        missing: Vec<String>,
    },
    #[error("ACL entry {index} lacks {missing}")]
    IncompleteAclEntry { index: u32, missing: &'static str },
    #[error("ACL entry {index}: {reason}")]
    InvalidAclEntry { index: u32, reason: String },
    #[error("role {value:?} is not a role of this organisation{}", acl_index.map(|i| format!(" (ACL entry {i})")).unwrap_or_default())]
    UnknownRole {
        value: String,
        acl_index: Option<u32>,
    },
    #[error("attribute {attribute:?} has several different values: {values:?}")]
    AmbiguousAttribute {
        attribute: String,
        values: Vec<String>,
    },
    #[error("user {user_id:?} belongs to IdP {owner_idp_id:?}, not {idp_id:?}")]
    IdpMismatch {
        user_id: String,
        owner_idp_id: String,
        idp_id: String,
    },
    #[error("{field}: {reason}")]
    InvalidAttributeValue { field: String, reason: String },
    #[error("transient NameID cannot identify a user; set user_id_attribute")]
    TransientNameId,
    #[error("the user ID attribute {attribute:?} is missing")]
    MissingUserIdAttribute { attribute: String },
    #[error("too many ACL entries: {count} (at most {max})")]
    TooManyAclEntries { count: usize, max: usize },
}

impl Refusal {
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::UnknownIdp { .. } => "unknown_idp",
            Refusal::UserNotFound { .. } => "user_not_found",
            Refusal::InsufficientAttributes { .. }
            | Refusal::TransientNameId
            | Refusal::MissingUserIdAttribute { .. } => "insufficient_attributes",
            Refusal::IncompleteAclEntry { .. } => "incomplete_acl_entry",
            Refusal::InvalidAclEntry { .. } | Refusal::TooManyAclEntries { .. } => {
                "invalid_acl_entry"
            }
            Refusal::UnknownRole { .. } => "unknown_role",
            Refusal::AmbiguousAttribute { .. } => "ambiguous_attribute",
            Refusal::IdpMismatch { .. } => "idp_mismatch",
            Refusal::InvalidAttributeValue { .. } => "invalid_attribute_value",
        }
    }
}
