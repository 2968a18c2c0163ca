//! History: a user or a whole organisation as of a sequence number or an instant, folded
//! from the log — the same fold that builds the projections, cut at a point.

use std::collections::BTreeMap;

use crate::provisioning::config::OrgConfig;
use crate::provisioning::user::UserState;

use super::envelope::{CONFIG_STREAM, Envelope, user_of_stream};
use super::{Store, StoreError};

/// A point in the log's history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AsOf {
    /// Every event with `seq <= n`.
    Seq(u64),
    /// Every event recorded at or before this instant (Unix nanoseconds).
    Time(i128),
    /// Everything.
    Now,
}

impl AsOf {
    pub fn includes(self, envelope: &Envelope) -> bool {
        match self {
            AsOf::Seq(last) => envelope.seq <= last,
            AsOf::Time(instant) => envelope.recorded_at <= instant,
            AsOf::Now => true,
        }
    }
}

/// Users and configurations folded from envelopes in log order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Replay {
    /// (org, user ID) → user.
    pub users: BTreeMap<(String, String), UserState>,
    pub orgs: BTreeMap<String, OrgConfig>,
    /// The last seq folded.
    pub last_seq: u64,
}

impl Replay {
    /// Folds one envelope. Envelopes must come in log order.
    pub fn fold(&mut self, envelope: &Envelope) {
        self.last_seq = envelope.seq;
        if envelope.stream == CONFIG_STREAM {
            let config = self.orgs.entry(envelope.org_id.clone()).or_insert_with(|| {
                OrgConfig::created(
                    &envelope.org_id,
                    &crate::events::OrgCreated {
                        sp_entity_id: String::new(),
                        acs_url: String::new(),
                        clock_skew_seconds: 0,
                        allow_idp_initiated: false,
                    },
                )
            });
            config.apply(&envelope.event);
            return;
        }
        let Some(user_id) = user_of_stream(&envelope.stream) else {
            return;
        };
        let key = (envelope.org_id.clone(), user_id.to_string());
        let before = self.users.remove(&key);
        if let Some(after) = envelope.apply_to(before) {
            self.users.insert(key, after);
        }
    }
}

/// Folds a user's envelopes up to a point.
pub fn user_as_of(envelopes: &[Envelope], as_of: AsOf) -> Option<UserState> {
    envelopes
        .iter()
        .take_while(|e| as_of.includes(e))
        .fold(None, |state, envelope| envelope.apply_to(state))
}

/// Events read per batch while replaying the whole log.
const REPLAY_BATCH_EVENTS: usize = 4096;

impl Store {
    /// One user as of a point: a fold of their stream.
    pub fn user_as_of(
        &self,
        org_id: &str,
        user_id: &str,
        as_of: AsOf,
    ) -> Result<Option<UserState>, StoreError> {
        let envelopes = self.stream(org_id, &super::user_stream(user_id), None)?;
        Ok(user_as_of(&envelopes, as_of))
    }

    /// Every user (of one org, or all) as of a point: a fold of the log from the start.
    /// `progress` gets (events folded, events in the log).
    pub fn replay(
        &self,
        org_id: Option<&str>,
        as_of: AsOf,
        mut progress: impl FnMut(u64, u64),
    ) -> Result<Replay, StoreError> {
        let (total, _) = self.head()?;
        let mut replay = Replay::default();
        let mut after = 0;
        loop {
            let batch = self.events_after(after, REPLAY_BATCH_EVENTS)?;
            let Some(last) = batch.last() else { break };
            after = last.seq;
            for envelope in &batch {
                // Time bounds are on recorded_at, which only grows with seq.
                if !as_of.includes(envelope) {
                    progress(after, total);
                    return Ok(replay);
                }
                if org_id.is_none_or(|org| org == envelope.org_id) {
                    replay.fold(envelope);
                }
            }
            progress(after, total);
        }
        Ok(replay)
    }
}
