//! Key layouts of the sled trees. Parts are joined with a 0 byte, which no org ID, stream
//! or user ID may contain (IDs with control characters are refused before they get here);
//! numbers are big-endian so that keys sort in numeric order.

pub const SEPARATOR: u8 = 0;

pub fn seq(seq: u64) -> [u8; 8] {
    seq.to_be_bytes()
}

pub fn join(parts: &[&[u8]]) -> Vec<u8> {
    let mut key = Vec::with_capacity(parts.iter().map(|p| p.len() + 1).sum());
    for (index, part) in parts.iter().enumerate() {
        if index > 0 {
            key.push(SEPARATOR);
        }
        key.extend_from_slice(part);
    }
    key
}

/// `heads`: org ‖ stream → version ‖ seq of the stream's last event.
pub fn head(org_id: &str, stream: &str) -> Vec<u8> {
    join(&[org_id.as_bytes(), stream.as_bytes()])
}

/// `assertions`: org ‖ assertion ID → NotOnOrAfter.
pub fn assertion(org_id: &str, assertion_id: &str) -> Vec<u8> {
    join(&[org_id.as_bytes(), assertion_id.as_bytes()])
}

/// `users`: org ‖ user ID → user state.
pub fn user(org_id: &str, user_id: &str) -> Vec<u8> {
    join(&[org_id.as_bytes(), user_id.as_bytes()])
}

/// The prefix of every key of one org in a tree keyed org ‖ ….
pub fn org_prefix(org_id: &str) -> Vec<u8> {
    let mut prefix = org_id.as_bytes().to_vec();
    prefix.push(SEPARATOR);
    prefix
}

/// `users_by_role`: org ‖ role ‖ user ID → ().
pub fn role_member(org_id: &str, role: &str, user_id: &str) -> Vec<u8> {
    join(&[org_id.as_bytes(), role.as_bytes(), user_id.as_bytes()])
}

pub fn role_prefix(org_id: &str, role: &str) -> Vec<u8> {
    let mut prefix = join(&[org_id.as_bytes(), role.as_bytes()]);
    prefix.push(SEPARATOR);
    prefix
}

/// `acl`: org ‖ on type ‖ on ‖ user ID ‖ role → ().
pub fn acl_grant(org_id: &str, on_type: &str, on: &str, user_id: &str, role: &str) -> Vec<u8> {
    join(&[
        org_id.as_bytes(),
        on_type.as_bytes(),
        on.as_bytes(),
        user_id.as_bytes(),
        role.as_bytes(),
    ])
}

pub fn acl_prefix(org_id: &str, on_type: &str, on: &str) -> Vec<u8> {
    let mut prefix = join(&[org_id.as_bytes(), on_type.as_bytes(), on.as_bytes()]);
    prefix.push(SEPARATOR);
    prefix
}

/// A key as text for messages: its parts joined by `/`.
pub fn display(key: &[u8]) -> String {
    String::from_utf8_lossy(key).replace(char::from(SEPARATOR), "/")
}

/// Splits a key into its parts.
pub fn split(key: &[u8]) -> Vec<&[u8]> {
    key.split(|byte| *byte == SEPARATOR).collect()
}
