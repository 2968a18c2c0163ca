//! API tokens: `jlt.<org>.<token id>.<secret>`, stored as SHA-256 hashes only and compared
//! in constant time. The org in the token lets a token of another org be told apart from a
//! bad token (403, not 401) without any global index.

use ring::digest;
use ring::rand::{SecureRandom, SystemRandom};

const PREFIX: &str = "jlt";
/// The bootstrap admin token's org part: it belongs to no org and may act on all.
pub const BOOTSTRAP_ORG: &str = "_";

/// A token split into its parts (not yet checked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedToken<'t> {
    pub org_id: &'t str,
    pub token_id: &'t str,
    pub secret: &'t str,
}

pub fn parse(token: &str) -> Option<ParsedToken<'_>> {
    let mut parts = token.splitn(4, '.');
    if parts.next()? != PREFIX {
        return None;
    }
    let org_id = parts.next()?;
    let token_id = parts.next()?;
    let secret = parts.next()?;
    (!org_id.is_empty() && !token_id.is_empty() && secret.len() >= 32).then_some(ParsedToken {
        org_id,
        token_id,
        secret,
    })
}

pub fn hash(token: &str) -> [u8; 32] {
    let mut out = [0; 32];
    out.copy_from_slice(digest::digest(&digest::SHA256, token.as_bytes()).as_ref());
    out
}

/// Compares without an early exit.
pub fn hashes_equal(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter()
        .zip(b)
        .fold(0u8, |difference, (x, y)| difference | (x ^ y))
        == 0
}

/// Random lower-case hex of `bytes` random bytes.
pub fn random_hex(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    // The system RNG failing is not an operating condition we can continue through.
    SystemRandom::new()
        .fill(&mut buffer)
        .unwrap_or_else(|_| panic!("system random number generator failed"));
    buffer.iter().map(|b| format!("{b:02x}")).collect()
}

/// A new token for `org_id`: (token id, the token shown once).
pub fn issue(org_id: &str) -> (String, String) {
    let token_id = random_hex(8);
    let token = format!("{PREFIX}.{org_id}.{token_id}.{}", random_hex(24));
    (token_id, token)
}

/// The bootstrap admin token: from `JITLEDGER_ADMIN_TOKEN` when set; else the hash kept in
/// the data directory; else a new token whose hash is kept there and which is returned so
/// that it can be shown, once.
pub fn bootstrap(
    data_dir: &std::path::Path,
    from_env: Option<String>,
) -> std::io::Result<([u8; 32], Option<String>)> {
    if let Some(token) = from_env.filter(|t| !t.trim().is_empty()) {
        return Ok((hash(token.trim()), None));
    }
    let path = data_dir.join("bootstrap-token.sha256");
    if let Ok(text) = std::fs::read_to_string(&path) {
        let bytes: Option<Vec<u8>> = (0..text.trim().len())
            .step_by(2)
            .map(|i| u8::from_str_radix(text.trim().get(i..i + 2)?, 16).ok())
            .collect();
        if let Some(stored) = bytes.and_then(|b| <[u8; 32]>::try_from(b).ok()) {
            return Ok((stored, None));
        }
    }
    let token = format!("{PREFIX}.{BOOTSTRAP_ORG}.bootstrap.{}", random_hex(24));
    let digest = hash(&token);
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    let temporary = data_dir.join("bootstrap-token.sha256.tmp");
    std::fs::write(&temporary, format!("{hex}\n"))?;
    std::fs::File::open(&temporary)?.sync_all()?;
    std::fs::rename(&temporary, &path)?;
    std::fs::File::open(data_dir)?.sync_all()?;
    Ok((digest, Some(token)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_tokens_parse_back() {
        let (token_id, token) = issue("acme");
        let parsed = parse(&token).unwrap();
        assert_eq!(parsed.org_id, "acme");
        assert_eq!(parsed.token_id, token_id);
        assert!(parse("Bearer x").is_none());
        assert!(parse("jlt.acme.id.short").is_none());
    }

    #[test]
    fn hashes_compare() {
        assert!(hashes_equal(&hash("a"), &hash("a")));
        assert!(!hashes_equal(&hash("a"), &hash("b")));
    }
}
