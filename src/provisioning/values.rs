//! Bounds and syntax of the values a login may write, each named with its reason.

use super::Refusal;
use super::config::OrgConfig;
use crate::events::{AclEntry, OnType, ProfileField};

/// Characters of a profile value. Longer names or numbers are not real; the bound keeps one
/// login from bloating every projection and export.
pub const PROFILE_VALUE_CHARS_MAX: usize = 256;
/// RFC 5321 §4.5.3.1.3: a path is at most 256 octets including angle brackets.
pub const EMAIL_CHARS_MAX: usize = 254;
/// Characters of a user ID (NameID or user ID attribute); it is a key in every index.
pub const USER_ID_CHARS_MAX: usize = 256;
/// ACL entries one login may carry. Yext accounts have a handful; a few hundred leaves
/// room for large folder trees while bounding the work per login.
pub const ACL_ENTRIES_MAX: usize = 256;
/// Characters of an ACL resource ID.
pub const ACL_ON_CHARS_MAX: usize = 256;

fn invalid(field: &str, reason: impl Into<String>) -> Refusal {
    Refusal::InvalidAttributeValue {
        field: field.to_string(),
        reason: reason.into(),
    }
}

fn check_text(field: &str, value: &str, max: usize) -> Result<(), Refusal> {
    if value.chars().count() > max {
        return Err(invalid(field, format!("longer than {max} characters")));
    }
    if value.chars().any(char::is_control) {
        return Err(invalid(field, "contains control characters"));
    }
    Ok(())
}

pub fn check_user_id(user_id: &str) -> Result<(), Refusal> {
    if user_id.is_empty() {
        return Err(invalid("user_id", "empty"));
    }
    check_text("user_id", user_id, USER_ID_CHARS_MAX)
}

/// Checks a profile value; emails are lower-cased (mailbox matching is case-insensitive in
/// practice and IdPs differ in case from login to login).
pub fn check_profile_value(field: ProfileField, value: &str) -> Result<String, Refusal> {
    let name = field.view_name();
    if field == ProfileField::Email {
        check_text(name, value, EMAIL_CHARS_MAX)?;
        if !is_email(value) {
            return Err(invalid(name, format!("{value:?} is not an email address")));
        }
        return Ok(value.to_lowercase());
    }
    check_text(name, value, PROFILE_VALUE_CHARS_MAX)?;
    Ok(value.to_string())
}

/// One `@`, a non-empty local part, a domain of dot-separated non-empty labels, no white
/// space. Deliberately loose: the IdP owns the address; this catches wrong mappings.
fn is_email(value: &str) -> bool {
    let Some((local, domain)) = value.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.is_empty()
        && !domain.contains('@')
        && domain.split('.').all(|label| !label.is_empty())
        && !value.chars().any(char::is_whitespace)
}

/// `acl[n].roleId` → (n, 0), `acl[n].on` → (n, 1), `acl[n].onType` → (n, 2).
pub fn parse_acl_name(name: &str) -> Option<(u32, usize)> {
    let rest = name.strip_prefix("acl[")?;
    let (index, field) = rest.split_once("].")?;
    if index.is_empty() || !index.bytes().all(|b| b.is_ascii_digit()) || index.len() > 9 {
        return None;
    }
    let part = match field {
        "roleId" => 0,
        "on" => 1,
        "onType" => 2,
        _ => return None,
    };
    Some((index.parse().ok()?, part))
}

/// A complete ACL entry, checked: a role of the org, a bounded resource ID, a known type.
pub fn acl_entry(
    org: &OrgConfig,
    index: u32,
    role: &str,
    on: &str,
    on_type: &str,
) -> Result<AclEntry, Refusal> {
    let role_id = org.role_id_for(role).ok_or_else(|| Refusal::UnknownRole {
        value: role.to_string(),
        acl_index: Some(index),
    })?;
    let on_type = OnType::parse(on_type).ok_or_else(|| Refusal::InvalidAclEntry {
        index,
        reason: format!("onType {on_type:?} is not ACCOUNT, FOLDER or LOCATION"),
    })?;
    if on.chars().count() > ACL_ON_CHARS_MAX || on.chars().any(char::is_control) {
        return Err(Refusal::InvalidAclEntry {
            index,
            reason: format!(
                "on is longer than {ACL_ON_CHARS_MAX} characters or has control characters"
            ),
        });
    }
    Ok(AclEntry {
        role_id,
        on: on.to_string(),
        on_type,
    })
}
