//! Stream heads: for every stream, its version and the seq of its last event. The head is
//! where a stream's read starts: each record in the segment files links to the previous
//! record of its stream, so the head and the links together are the stream index.
//!
//! A user stream's head is kept in its user's projection (the version and seq of the last
//! event applied): every append to a user stream writes the user anyway, so the head costs
//! no key of its own, no read and no write. Any other stream's head (an org's
//! configuration) is a key of the `heads` tree.

use crate::provisioning::user::UserState;

use super::envelope::user_of_stream;
use super::{StoreError, corrupt, keys};

/// A stream's version (its event count) and the seq of its last event; both 0 for a
/// stream without events.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Head {
    pub version: u64,
    pub last_seq: u64,
}

impl Head {
    /// The head after `seq` was appended to the stream as its next event.
    pub fn after(self, seq: u64) -> Head {
        Head {
            version: self.version + 1,
            last_seq: seq,
        }
    }

    /// The head after an event read from the log (`seq`, holding `stream_version`), which
    /// must be the stream's next version; otherwise why it is not.
    pub fn follow(self, seq: u64, stream_version: u64) -> Result<Head, String> {
        if stream_version == self.version + 1 {
            Ok(self.after(seq))
        } else {
            Err(format!(
                "it holds stream version {stream_version}, the stream's next is {}",
                self.version + 1
            ))
        }
    }

    pub fn encode(self) -> [u8; 16] {
        let mut bytes = [0; 16];
        bytes[..8].copy_from_slice(&self.version.to_be_bytes());
        bytes[8..].copy_from_slice(&self.last_seq.to_be_bytes());
        bytes
    }

    pub fn decode(bytes: &[u8]) -> Result<Head, StoreError> {
        let bytes: [u8; 16] = bytes.try_into().map_err(|_| corrupt("stream head"))?;
        let number = |at: usize| {
            let mut part = [0; 8];
            part.copy_from_slice(&bytes[at..at + 8]);
            u64::from_be_bytes(part)
        };
        Ok(Head {
            version: number(0),
            last_seq: number(8),
        })
    }
}

/// Where a stream's head is kept (see the module's text).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum HeadKey {
    /// The key of the user in the `users` projection.
    User(Vec<u8>),
    /// The key in the `heads` tree.
    Stream(Vec<u8>),
}

impl HeadKey {
    pub fn of(org_id: &str, stream: &str) -> HeadKey {
        match user_of_stream(stream) {
            Some(user_id) => HeadKey::User(keys::user(org_id, user_id)),
            None => HeadKey::Stream(keys::head(org_id, stream)),
        }
    }

    /// The head from the value stored at this key (`None`: a stream without events).
    pub fn decode(&self, stored: Option<&[u8]>) -> Result<Head, StoreError> {
        match (self, stored) {
            (_, None) => Ok(Head::default()),
            (HeadKey::User(_), Some(bytes)) => {
                let user: UserState =
                    bincode::deserialize(bytes).map_err(|_| corrupt("user projection"))?;
                Ok(of_user(&user))
            }
            (HeadKey::Stream(_), Some(bytes)) => Head::decode(bytes),
        }
    }
}

/// The head of a user's stream, as their projection holds it.
pub(crate) fn of_user(user: &UserState) -> Head {
    Head {
        version: user.version,
        last_seq: user.last_seq,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_head_round_trips_and_a_short_value_is_corrupt() {
        let head = Head::default().after(41).after(97);
        assert_eq!(
            head,
            Head {
                version: 2,
                last_seq: 97
            }
        );
        assert_eq!(Head::decode(&head.encode()).unwrap(), head);
        assert!(Head::decode(&2u64.to_be_bytes()).is_err());
    }
}
