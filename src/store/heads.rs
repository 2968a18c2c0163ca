//! Stream heads: for every stream, its version and the seq of its last event. The head is
//! where a stream's read starts: each record in the segment files links to the previous
//! record of its stream, so the head and the links together are the stream index.

use std::collections::HashMap;

use super::{StoreError, corrupt};

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

/// The head of a stream as sled holds it.
pub(crate) fn read(tree: &sled::Tree, key: &[u8]) -> Result<Head, StoreError> {
    match tree.get(key)? {
        Some(bytes) => Head::decode(&bytes),
        None => Ok(Head::default()),
    }
}

/// Heads as sled holds them, with the changes of records checked so far held aside: opening
/// checks the records past sled's last seq against their streams before indexing them.
pub(crate) struct Pending<'t> {
    tree: &'t sled::Tree,
    changed: HashMap<Vec<u8>, Head>,
}

impl<'t> Pending<'t> {
    pub fn new(tree: &'t sled::Tree) -> Pending<'t> {
        Pending {
            tree,
            changed: HashMap::new(),
        }
    }

    pub fn get(&self, key: &[u8]) -> Result<Head, StoreError> {
        match self.changed.get(key) {
            Some(head) => Ok(*head),
            None => read(self.tree, key),
        }
    }

    pub fn set(&mut self, key: Vec<u8>, head: Head) {
        self.changed.insert(key, head);
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
