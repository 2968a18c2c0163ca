//! The envelope every stored event sits in, its byte form, and the hash chain through it.
//!
//! Stored bytes: the format byte, bincode of [`Body`], then the 32-byte hash, where
//! `hash = SHA-256(prev_hash ‖ bytes before the hash)` — or HMAC-SHA-256 under a chain key,
//! so that someone able to edit the files cannot recompute the chain.

use ring::{digest, hmac};
use serde::{Deserialize, Serialize};

use crate::events::Event;
use crate::events::codec::{self, CodecError, FORMAT_VERSION, StoredEvent};
use crate::provisioning::user::{Applied, UserState, apply};

/// The genesis `prev_hash`.
pub const GENESIS_HASH: [u8; 32] = [0; 32];

/// Why an event was written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Cause {
    /// A validated login: its ID, the assertion and the IdP.
    Login {
        login_id: String,
        assertion_id: String,
        idp_id: String,
    },
    /// An admin request, by the token that made it.
    Admin { token_id: String },
    /// The service itself (bootstrap).
    System,
}

impl Cause {
    /// The identifier shown in provenance: the login ID or the token ID.
    pub fn id(&self) -> &str {
        match self {
            Cause::Login { login_id, .. } => login_id,
            Cause::Admin { token_id } => token_id,
            Cause::System => "system",
        }
    }
}

/// One event in its envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// Gap-free global sequence number, from 1.
    pub seq: u64,
    pub org_id: String,
    /// `user:<user_id>` or `config`.
    pub stream: String,
    /// Position in the stream, from 1.
    pub stream_version: u64,
    /// Unix nanoseconds, from the adapter's clock.
    pub recorded_at: i128,
    pub cause: Cause,
    pub event: Event,
    pub prev_hash: [u8; 32],
    pub hash: [u8; 32],
}

impl Envelope {
    /// Applies this envelope's event to a user's state, recording where it came from: the
    /// one way projections, history and the login's answer fold a user's events.
    pub fn apply_to(&self, state: Option<UserState>) -> Option<UserState> {
        let applied = Applied {
            seq: self.seq,
            stream_version: self.stream_version,
            recorded_at: self.recorded_at,
            cause: self.cause.id().to_string(),
        };
        apply(state, &self.event, &applied)
    }
}

/// The stream of a user, and of an org's configuration.
pub fn user_stream(user_id: &str) -> String {
    format!("{USER_STREAM_PREFIX}{user_id}")
}

/// The user whose stream `stream` is; `None` for any other stream.
pub fn user_of_stream(stream: &str) -> Option<&str> {
    stream.strip_prefix(USER_STREAM_PREFIX)
}

const USER_STREAM_PREFIX: &str = "user:";

pub const CONFIG_STREAM: &str = "config";

#[derive(Serialize, Deserialize)]
struct Body {
    seq: u64,
    org_id: String,
    stream: String,
    stream_version: u64,
    recorded_at: i128,
    cause: Cause,
    event: StoredEvent,
    prev_hash: [u8; 32],
}

/// How the chain is hashed.
#[derive(Clone)]
pub enum ChainHasher {
    Sha256,
    Hmac(hmac::Key),
}

impl std::fmt::Debug for ChainHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ChainHasher::Sha256 => "ChainHasher::Sha256",
            ChainHasher::Hmac(_) => "ChainHasher::Hmac",
        })
    }
}

impl ChainHasher {
    pub fn keyed(key: &[u8]) -> ChainHasher {
        ChainHasher::Hmac(hmac::Key::new(hmac::HMAC_SHA256, key))
    }

    fn hash(&self, prev_hash: &[u8; 32], bytes: &[u8]) -> [u8; 32] {
        let mut out = [0; 32];
        match self {
            ChainHasher::Sha256 => {
                let mut context = digest::Context::new(&digest::SHA256);
                context.update(prev_hash);
                context.update(bytes);
                out.copy_from_slice(context.finish().as_ref());
            }
            ChainHasher::Hmac(key) => {
                let mut context = hmac::Context::with_key(key);
                context.update(prev_hash);
                context.update(bytes);
                out.copy_from_slice(context.sign().as_ref());
            }
        }
        out
    }
}

/// An envelope before it is sealed into the chain.
#[derive(Debug, Clone)]
pub struct Unsealed {
    pub seq: u64,
    pub org_id: String,
    pub stream: String,
    pub stream_version: u64,
    pub recorded_at: i128,
    pub cause: Cause,
    pub event: Event,
}

impl Unsealed {
    /// Encodes the envelope after `prev_hash`, returning the stored bytes and the hash.
    pub fn seal(self, prev_hash: [u8; 32], hasher: &ChainHasher) -> (Vec<u8>, Envelope) {
        let body = Body {
            seq: self.seq,
            org_id: self.org_id.clone(),
            stream: self.stream.clone(),
            stream_version: self.stream_version,
            recorded_at: self.recorded_at,
            cause: self.cause.clone(),
            event: StoredEvent::from_event(&self.event),
            prev_hash,
        };
        let mut bytes = vec![FORMAT_VERSION];
        // Serialising plain data into a Vec cannot fail.
        bytes.extend(bincode::serialize(&body).unwrap_or_default());
        let hash = hasher.hash(&prev_hash, &bytes);
        bytes.extend_from_slice(&hash);
        let envelope = Envelope {
            seq: self.seq,
            org_id: self.org_id,
            stream: self.stream,
            stream_version: self.stream_version,
            recorded_at: self.recorded_at,
            cause: self.cause,
            event: self.event,
            prev_hash,
            hash,
        };
        (bytes, envelope)
    }
}

/// Decodes stored bytes without checking the hash (see [`check_hash`]).
pub fn decode(bytes: &[u8]) -> Result<Envelope, CodecError> {
    if bytes.len() < 33 {
        return Err(CodecError::Bincode("record shorter than its hash".into()));
    }
    let (content, hash) = bytes.split_at(bytes.len() - 32);
    let body: Body = bincode::deserialize(codec::check_format(content)?)
        .map_err(|error| CodecError::Bincode(error.to_string()))?;
    let mut stored_hash = [0; 32];
    stored_hash.copy_from_slice(hash);
    Ok(Envelope {
        seq: body.seq,
        org_id: body.org_id,
        stream: body.stream,
        stream_version: body.stream_version,
        recorded_at: body.recorded_at,
        cause: body.cause,
        event: body.event.to_event()?,
        prev_hash: body.prev_hash,
        hash: stored_hash,
    })
}

/// Whether stored bytes hash to their own hash after `expected_prev`.
pub fn check_hash(bytes: &[u8], expected_prev: &[u8; 32], hasher: &ChainHasher) -> bool {
    if bytes.len() < 33 {
        return false;
    }
    let (content, hash) = bytes.split_at(bytes.len() - 32);
    hasher.hash(expected_prev, content).as_slice() == hash
}
