//! The application layer between the adapters (HTTP, CLI) and the cores: reads the clock,
//! loads state, calls `saml::validate` and `provisioning::decide`, appends, and keeps the
//! bounded in-memory records (outstanding AuthnRequests, refused logins, metrics).

pub mod error;
pub mod metrics;
pub mod tokens;
pub mod view;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use serde_json::{Value, json};
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::events::{
    Event, IdpMetadata, JitSettings, JitSettingsChanged, OrgCreated, RoleDefined, TokenIssued,
    TokenRevoked, TokenScope,
};
use crate::provisioning::config::{OrgConfig, check_jit_settings};
use crate::provisioning::{self, Outcome, UserState};
use crate::saml::SamlError;
use crate::saml::authn_request::{AuthnRequest, sp_metadata_xml};
use crate::saml::metadata::parse_idp_metadata;
use crate::saml::response::{
    ExpectedRequests, IdpTrust, ParsedResponse, SpSettings, ValidatedLogin, decode_post_binding,
};
use crate::store::{
    AppendError, AppendRequest, AssertionGuard, CONFIG_STREAM, Cause, PrunedGuards, Store,
    user_stream,
};

pub use error::ApiError;

/// Reads the current instant. Injected so that tests can pin it.
pub type Clock = Arc<dyn Fn() -> OffsetDateTime + Send + Sync>;

pub fn system_clock() -> Clock {
    Arc::new(OffsetDateTime::now_utc)
}

/// Refused logins kept per org for `GET …/logins/rejected`.
pub const REJECTED_PER_ORG_MAX: usize = 1_000;
/// AuthnRequests awaiting their response, per org. A flood of login starts evicts the
/// oldest rather than growing memory.
pub const OUTSTANDING_REQUESTS_PER_ORG_MAX: usize = 10_000;
/// How long an AuthnRequest ID is accepted as InResponseTo.
pub const OUTSTANDING_REQUEST_SECONDS: i64 = 600;
/// Decide-and-append attempts before a login under heavy contention gives up.
pub const APPEND_ATTEMPTS_MAX: usize = 16;
/// Expired replay guards forgotten per step of a pruning run: a few milliseconds of sled
/// removals, after which the pruner pauses.
pub const PRUNE_CHUNK_GUARDS: usize = 1024;
/// Length bound of org, IdP, role and token IDs in paths.
pub const ID_CHARS_MAX: usize = 64;

/// Who is calling, from their bearer token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// `None` for the bootstrap admin token, which may act on every org.
    pub org_id: Option<String>,
    pub scope: TokenScope,
    pub token_id: String,
}

/// A refused login as an admin sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct RejectedLogin {
    pub code: &'static str,
    pub message: String,
    pub idp_id: Option<String>,
    /// Only when the signature verified (the NameID is then the IdP's word).
    pub name_id: Option<String>,
    pub at: OffsetDateTime,
    pub request_id: String,
}

/// What a successful login answers (CONTRACT.md): the events are durable.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct LoginAnswer {
    pub login_id: String,
    pub user_id: String,
    #[schema(value_type = String, example = "provisioned")]
    #[serde(serialize_with = "outcome_name")]
    /// `provisioned`, `updated` or `unchanged`.
    pub outcome: Outcome,
    pub events: Vec<EventRef>,
    pub user: view::UserView,
}

fn outcome_name<S: serde::Serializer>(outcome: &Outcome, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(outcome.as_str())
}

/// An appended event: its sequence number and type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct EventRef {
    pub seq: u64,
    #[serde(rename = "type")]
    pub event_type: &'static str,
}

/// An organisation as created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct OrgView {
    pub org_id: String,
    pub sp_entity_id: String,
    pub acs_url: String,
    pub clock_skew_seconds: i64,
    pub allow_idp_initiated: bool,
}

/// An SSO endpoint of an IdP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct SsoServiceView {
    pub binding: String,
    pub location: String,
}

/// An IdP as registered from its metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct IdpView {
    pub idp_id: String,
    pub entity_id: String,
    pub sso_services: Vec<SsoServiceView>,
    pub signing_certificates: Vec<view::CertificateView>,
}

/// JIT settings as CONTRACT.md shows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct JitView {
    pub enabled: bool,
    pub default_role: String,
    pub idp_managed_roles: bool,
    /// Mapping key (`USER_ROLE`, `USER_EMAIL`, …) → SAML attribute Name or FriendlyName.
    pub attribute_mapping: std::collections::BTreeMap<String, String>,
    pub acl_attributes: bool,
    /// Mapping keys (`USER_EMAIL`, …) a login must carry to create a user.
    pub required_for_creation: Vec<&'static str>,
    /// When set, the user ID comes from this attribute instead of the NameID.
    pub user_id_attribute: Option<String>,
    pub allow_sha1: bool,
}

/// A custom role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct RoleView {
    pub role_id: String,
    pub name: String,
}

/// A newly issued API token: `token` is shown once, only its hash is kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct TokenView {
    pub token: String,
    /// The ID to revoke the token by.
    pub token_id: String,
    /// `read` or `admin`.
    pub scope: &'static str,
}

/// An event a preview would write.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct PreviewEvent {
    #[serde(rename = "type")]
    pub event_type: &'static str,
    /// The event's fields, snake_case.
    pub data: Value,
}

/// One field a preview would change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct DiffView {
    pub field: &'static str,
    pub before: Option<String>,
    pub after: Option<String>,
}

/// What a login would do, written nowhere.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct PreviewView {
    pub user_id: String,
    /// `provisioned`, `updated` or `unchanged`.
    pub outcome: &'static str,
    pub events: Vec<PreviewEvent>,
    pub diff: Vec<DiffView>,
}

/// A refused login as an admin sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct RejectedView {
    pub code: &'static str,
    pub message: String,
    pub idp_id: Option<String>,
    /// Only when the signature verified (the NameID is then the IdP's word).
    pub name_id: Option<String>,
    /// RFC 3339.
    pub at: Option<String>,
    pub request_id: String,
}

/// Recent refused logins, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct RejectedPage {
    pub rejected: Vec<RejectedView>,
}

/// The AuthnRequests an org's logins started, oldest first.
#[derive(Default)]
struct Outstanding {
    by_id: HashMap<String, SentRequest>,
    order: VecDeque<String>,
}

/// Until when a request's answer is accepted, and whether it came: an answered request is
/// kept to its expiry so that a second answer is named a replay, not an unknown request.
struct SentRequest {
    expiry: OffsetDateTime,
    answered: bool,
}

/// An IdP's parsed keys, with the metadata they were parsed from.
type CachedTrust = (String, Arc<IdpTrust>);

/// The service.
pub struct Service {
    store: Arc<Store>,
    clock: Clock,
    bootstrap_token_hash: [u8; 32],
    outstanding: Mutex<HashMap<String, Outstanding>>,
    rejected: Mutex<HashMap<String, VecDeque<RejectedLogin>>>,
    trust: Mutex<HashMap<(String, String), CachedTrust>>,
    pub metrics: metrics::Metrics,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("store", &self.store.path())
            .finish()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding one of these maps leaves them consistent enough to go on.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// IDs in paths: letters, digits, `.`, `_`, `-`; not empty; bounded.
pub fn check_id(kind: &str, id: &str) -> Result<(), ApiError> {
    let valid = !id.is_empty()
        && id.len() <= ID_CHARS_MAX
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        && !id.starts_with('.');
    if valid {
        Ok(())
    } else {
        Err(ApiError::malformed(format!("invalid {kind} ID {id:?}")))
    }
}

impl Service {
    pub fn new(store: Arc<Store>, clock: Clock, bootstrap_token_hash: [u8; 32]) -> Service {
        Service {
            store,
            clock,
            bootstrap_token_hash,
            outstanding: Mutex::new(HashMap::new()),
            rejected: Mutex::new(HashMap::new()),
            trust: Mutex::new(HashMap::new()),
            metrics: metrics::Metrics::default(),
        }
    }

    /// The Prometheus text of `/metrics`: the service's counters and the writer's.
    pub fn metrics_text(&self) -> String {
        use std::fmt::Write as _;
        use std::sync::atomic::Ordering::Relaxed;
        let stats = self.store.stats();
        let mut out = self.metrics.render();
        let lines = [
            (
                "jitledger_append_batches_total",
                "counter",
                "Batches committed by the writer.",
                stats.batches.load(Relaxed) as f64,
            ),
            (
                "jitledger_append_requests_total",
                "counter",
                "Append requests taken by the writer.",
                stats.requests.load(Relaxed) as f64,
            ),
            (
                "jitledger_append_batch_requests_max",
                "gauge",
                "Largest batch so far.",
                stats.batch_requests_max.load(Relaxed) as f64,
            ),
            (
                "jitledger_durable_seconds_total",
                "counter",
                "Time in flush and fdatasync.",
                stats.durable_nanos.load(Relaxed) as f64 / 1e9,
            ),
            (
                "jitledger_append_queue_depth",
                "gauge",
                "Append requests waiting for the writer.",
                stats.queued.load(Relaxed) as f64,
            ),
        ];
        for (name, kind, help, value) in lines {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        }
        out
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Forgets up to [`PRUNE_CHUNK_GUARDS`] replay guards of assertions that have expired
    /// (NotOnOrAfter plus the org's skew, as the guard records it), after the key `after`:
    /// the validator refuses those assertions anyway (see [`Store::prune_assertions`]).
    pub fn prune_expired_assertions(
        &self,
        after: Option<&[u8]>,
    ) -> Result<PrunedGuards, crate::store::StoreError> {
        self.store
            .prune_assertions(self.now_nanos(), after, PRUNE_CHUNK_GUARDS)
    }

    pub fn now(&self) -> OffsetDateTime {
        (self.clock)()
    }

    fn now_nanos(&self) -> i128 {
        self.now().unix_timestamp_nanos()
    }

    // ---- Auth.

    /// Checks a bearer token for an action on `org_id` (`None`: a service-wide action, which
    /// only the bootstrap token may take). 401 for no or a bad token; 403 for a good token
    /// of another org or of too small a scope — the same whether `org_id` exists or not.
    pub fn authorize(
        &self,
        token: Option<&str>,
        org_id: Option<&str>,
        admin: bool,
    ) -> Result<Caller, ApiError> {
        let token = token.ok_or_else(ApiError::unauthorized)?;
        if tokens::hashes_equal(&tokens::hash(token), &self.bootstrap_token_hash) {
            return Ok(Caller {
                org_id: None,
                scope: TokenScope::Admin,
                token_id: "bootstrap".into(),
            });
        }
        let parsed = tokens::parse(token).ok_or_else(ApiError::unauthorized)?;
        let config = self
            .store
            .org(parsed.org_id)?
            .ok_or_else(ApiError::unauthorized)?;
        let (scope, hash) = config
            .tokens
            .get(parsed.token_id)
            .ok_or_else(ApiError::unauthorized)?;
        if !tokens::hashes_equal(&tokens::hash(token), hash) {
            return Err(ApiError::unauthorized());
        }
        let caller = Caller {
            org_id: Some(parsed.org_id.to_string()),
            scope: *scope,
            token_id: parsed.token_id.to_string(),
        };
        let right_org = org_id.is_some_and(|org| org == parsed.org_id);
        if !right_org || (admin && *scope != TokenScope::Admin) {
            return Err(ApiError::forbidden());
        }
        Ok(caller)
    }

    fn org(&self, org_id: &str) -> Result<Arc<OrgConfig>, ApiError> {
        self.store.org(org_id)?.ok_or_else(ApiError::unknown_org)
    }

    /// Appends configuration events, re-reading the stream version on a conflict.
    fn append_config(
        &self,
        org_id: &str,
        caller: &Caller,
        events: Vec<Event>,
    ) -> Result<Vec<(u64, &'static str)>, ApiError> {
        for _ in 0..APPEND_ATTEMPTS_MAX {
            let expected_version = self.store.stream_version(org_id, CONFIG_STREAM)?;
            let request = AppendRequest {
                org_id: org_id.to_string(),
                stream: CONFIG_STREAM.to_string(),
                expected_version,
                events: events.clone(),
                cause: Cause::Admin {
                    token_id: caller.token_id.clone(),
                },
                assertion: None,
                recorded_at: self.now_nanos(),
            };
            match self.store.append_blocking(request) {
                Ok(envelopes) => {
                    return Ok(envelopes
                        .iter()
                        .map(|e| (e.seq, e.event.type_name()))
                        .collect());
                }
                Err(AppendError::Conflict { .. }) => continue,
                Err(other) => return Err(other.into()),
            }
        }
        Err(ApiError::unavailable(
            "configuration is changing too fast; retry",
        ))
    }

    // ---- Admin.

    pub fn create_org(
        &self,
        caller: &Caller,
        org_id: &str,
        created: OrgCreated,
    ) -> Result<OrgView, ApiError> {
        if caller.org_id.is_some() {
            return Err(ApiError::forbidden());
        }
        check_id("org", org_id)?;
        if created.sp_entity_id.trim().is_empty() || created.acs_url.trim().is_empty() {
            return Err(ApiError::malformed("sp_entity_id and acs_url are required"));
        }
        if !(0..=3600).contains(&created.clock_skew_seconds) {
            return Err(ApiError::malformed("clock_skew_seconds must be 0 to 3600"));
        }
        if self.store.org(org_id)?.is_some() {
            return Err(ApiError::conflict(format!(
                "organisation {org_id:?} exists"
            )));
        }
        let view = OrgView {
            org_id: org_id.to_string(),
            sp_entity_id: created.sp_entity_id.clone(),
            acs_url: created.acs_url.clone(),
            clock_skew_seconds: created.clock_skew_seconds,
            allow_idp_initiated: created.allow_idp_initiated,
        };
        let request = AppendRequest {
            org_id: org_id.to_string(),
            stream: CONFIG_STREAM.to_string(),
            expected_version: 0,
            events: vec![Event::OrgCreated(created)],
            cause: Cause::Admin {
                token_id: caller.token_id.clone(),
            },
            assertion: None,
            recorded_at: self.now_nanos(),
        };
        match self.store.append_blocking(request) {
            Ok(_) => Ok(view),
            Err(AppendError::Conflict { .. }) => Err(ApiError::conflict(format!(
                "organisation {org_id:?} exists"
            ))),
            Err(other) => Err(other.into()),
        }
    }

    /// Registers or replaces an IdP from its metadata. Returns (created, summary).
    pub fn put_idp(
        &self,
        caller: &Caller,
        org_id: &str,
        idp_id: &str,
        metadata: &[u8],
    ) -> Result<(bool, IdpView), ApiError> {
        check_id("IdP", idp_id)?;
        let org = self.org(org_id)?;
        let parsed = parse_idp_metadata(metadata, None)?;
        let xml = String::from_utf8_lossy(metadata).into_owned();
        let created = !org.idps.contains_key(idp_id);
        if let Some(other) = org
            .idps
            .values()
            .find(|i| i.entity_id == parsed.entity_id && i.idp_id != idp_id)
        {
            return Err(ApiError::new(
                422,
                "invalid_metadata",
                format!(
                    "entityID {:?} is already registered as IdP {:?}",
                    parsed.entity_id, other.idp_id
                ),
            ));
        }
        let record = IdpMetadata {
            idp_id: idp_id.to_string(),
            entity_id: parsed.entity_id.clone(),
            metadata_xml: xml,
        };
        let event = if created {
            Event::IdpRegistered(record)
        } else {
            Event::IdpMetadataReplaced(record)
        };
        self.append_config(org_id, caller, vec![event])?;
        lock(&self.trust).remove(&(org_id.to_string(), idp_id.to_string()));
        let summary = IdpView {
            idp_id: idp_id.to_string(),
            entity_id: parsed.entity_id.clone(),
            sso_services: parsed
                .sso_services
                .iter()
                .map(|s| SsoServiceView {
                    binding: s.binding.clone(),
                    location: s.location.clone(),
                })
                .collect(),
            signing_certificates: parsed.signing_keys.iter().map(view::signing_key).collect(),
        };
        Ok((created, summary))
    }

    pub fn put_jit(
        &self,
        caller: &Caller,
        org_id: &str,
        idp_id: &str,
        settings: JitSettings,
    ) -> Result<JitView, ApiError> {
        let org = self.org(org_id)?;
        if !org.idps.contains_key(idp_id) {
            return Err(ApiError::not_found("IdP"));
        }
        check_jit_settings(&org, &settings).map_err(|e| {
            ApiError::new(422, "invalid_settings", e.to_string())
                .with_detail(json!({"field": e.field}))
        })?;
        let view = jit_view(&settings);
        self.append_config(
            org_id,
            caller,
            vec![Event::JitSettingsChanged(JitSettingsChanged {
                idp_id: idp_id.to_string(),
                settings,
            })],
        )?;
        lock(&self.trust).remove(&(org_id.to_string(), idp_id.to_string()));
        Ok(view)
    }

    pub fn put_role(
        &self,
        caller: &Caller,
        org_id: &str,
        role_id: &str,
        name: &str,
    ) -> Result<RoleView, ApiError> {
        check_id("role", role_id)?;
        let org = self.org(org_id)?;
        if crate::events::BUILT_IN_ROLES
            .iter()
            .any(|r| r.eq_ignore_ascii_case(role_id) || r.eq_ignore_ascii_case(name))
        {
            return Err(ApiError::conflict("built-in roles cannot be redefined"));
        }
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 128 || name.chars().any(char::is_control) {
            return Err(ApiError::malformed(
                "name must be 1 to 128 printable characters",
            ));
        }
        if org
            .custom_roles
            .iter()
            .any(|(id, n)| id != role_id && n.eq_ignore_ascii_case(name))
        {
            return Err(ApiError::conflict("another role has this name"));
        }
        self.append_config(
            org_id,
            caller,
            vec![Event::RoleDefined(RoleDefined {
                role_id: role_id.to_string(),
                name: name.to_string(),
            })],
        )?;
        Ok(RoleView {
            role_id: role_id.to_string(),
            name: name.to_string(),
        })
    }

    pub fn issue_token(
        &self,
        caller: &Caller,
        org_id: &str,
        scope: TokenScope,
    ) -> Result<TokenView, ApiError> {
        self.org(org_id)?;
        let (token_id, token) = tokens::issue(org_id);
        self.append_config(
            org_id,
            caller,
            vec![Event::TokenIssued(TokenIssued {
                token_id: token_id.clone(),
                scope,
                token_sha256: tokens::hash(&token),
            })],
        )?;
        Ok(TokenView {
            token,
            token_id,
            scope: scope_name(scope),
        })
    }

    /// Revokes a token of the org: from then on it is refused (401) like an unknown one.
    pub fn revoke_token(
        &self,
        caller: &Caller,
        org_id: &str,
        token_id: &str,
    ) -> Result<(), ApiError> {
        let org = self.org(org_id)?;
        if !org.tokens.contains_key(token_id) {
            return Err(ApiError::not_found("token"));
        }
        self.append_config(
            org_id,
            caller,
            vec![Event::TokenRevoked(TokenRevoked {
                token_id: token_id.to_string(),
            })],
        )?;
        Ok(())
    }

    // ---- SAML.

    pub fn sp_metadata(&self, org_id: &str) -> Result<String, ApiError> {
        let org = self.org(org_id)?;
        Ok(sp_metadata_xml(&org.sp_entity_id, &org.acs_url))
    }

    /// Starts an SP-initiated login: the redirect URL, with the request ID remembered.
    pub fn start_login(
        &self,
        org_id: &str,
        idp_id: &str,
        relay_state: Option<&str>,
    ) -> Result<String, ApiError> {
        let org = self.org(org_id)?;
        let idp = org
            .idps
            .get(idp_id)
            .ok_or_else(|| ApiError::not_found("IdP"))?;
        let metadata = parse_idp_metadata(idp.metadata_xml.as_bytes(), Some(&idp.entity_id))?;
        let destination = metadata.redirect_sso_location().ok_or_else(|| {
            ApiError::new(
                422,
                "invalid_metadata",
                "the IdP has no HTTP-Redirect SSO endpoint",
            )
        })?;
        if relay_state.is_some_and(|r| r.len() > 80 * 4) {
            return Err(ApiError::malformed("relay_state is longer than 320 bytes"));
        }
        let now = self.now();
        let request = AuthnRequest {
            id: format!("_{}", tokens::random_hex(20)),
            issue_instant: now,
            destination: destination.to_string(),
            assertion_consumer_service_url: org.acs_url.clone(),
            issuer: org.sp_entity_id.clone(),
        };
        let mut outstanding = lock(&self.outstanding);
        let pending = outstanding.entry(org_id.to_string()).or_default();
        while pending.order.len() >= OUTSTANDING_REQUESTS_PER_ORG_MAX {
            if let Some(oldest) = pending.order.pop_front() {
                pending.by_id.remove(&oldest);
            }
        }
        let expiry = now + time::Duration::seconds(OUTSTANDING_REQUEST_SECONDS);
        pending.by_id.insert(
            request.id.clone(),
            SentRequest {
                expiry,
                answered: false,
            },
        );
        pending.order.push_back(request.id.clone());
        Ok(request.redirect_url(relay_state))
    }

    /// The outstanding, unexpired request IDs among those the response names: a lookup per
    /// named ID, not a copy of every outstanding one (up to 10,000 per org) per login.
    fn expected_requests(&self, org_id: &str, parsed: &ParsedResponse) -> ExpectedRequests {
        let now = self.now();
        let outstanding = lock(&self.outstanding);
        let Some(pending) = outstanding.get(org_id) else {
            return ExpectedRequests::none();
        };
        parsed
            .claimed_in_response_to()
            .filter(|id| {
                pending
                    .by_id
                    .get(*id)
                    .is_some_and(|sent| !sent.answered && sent.expiry > now)
            })
            .collect()
    }

    /// Marks a request answered once its response was accepted: it answers once.
    fn consume_request(&self, org_id: &str, id: &str) {
        let mut outstanding = lock(&self.outstanding);
        if let Some(sent) = outstanding
            .get_mut(org_id)
            .and_then(|pending| pending.by_id.get_mut(id))
        {
            sent.answered = true;
        }
    }

    /// Whether a response to request `id` was already accepted (and the request has not
    /// expired since).
    fn was_answered(&self, org_id: &str, id: &str) -> bool {
        let now = self.now();
        let outstanding = lock(&self.outstanding);
        outstanding
            .get(org_id)
            .and_then(|pending| pending.by_id.get(id))
            .is_some_and(|sent| sent.answered && sent.expiry > now)
    }

    fn trust(
        &self,
        org_id: &str,
        idp: &provisioning::IdpConfig,
    ) -> Result<Arc<IdpTrust>, ApiError> {
        let key = (org_id.to_string(), idp.idp_id.clone());
        let mut cache = lock(&self.trust);
        if let Some((metadata, trust)) = cache.get(&key)
            && *metadata == idp.metadata_xml
            && trust.allow_sha1 == idp.jit.allow_sha1
        {
            return Ok(Arc::clone(trust));
        }
        let metadata = parse_idp_metadata(idp.metadata_xml.as_bytes(), Some(&idp.entity_id))?;
        let trust = Arc::new(IdpTrust {
            entity_id: idp.entity_id.clone(),
            signing_keys: metadata.signing_keys,
            allow_sha1: idp.jit.allow_sha1,
        });
        cache.insert(key, (idp.metadata_xml.clone(), Arc::clone(&trust)));
        Ok(trust)
    }

    /// Validates a base64 `SAMLResponse` for an org: the IdP is chosen by the (unverified)
    /// Issuer, then everything is checked with that IdP's keys.
    fn validate(
        &self,
        org: &OrgConfig,
        response: &[u8],
    ) -> Result<(String, ValidatedLogin), (Option<String>, ApiError)> {
        let xml = decode_post_binding(response).map_err(|e| (None, e.into()))?;
        let parsed = ParsedResponse::parse(&xml).map_err(|e| (None, e.into()))?;
        let issuer = parsed.claimed_issuer().unwrap_or_default();
        let idp = org.idp_by_entity_id(&issuer).ok_or_else(|| {
            (
                None,
                ApiError::new(
                    422,
                    "unknown_idp",
                    format!("no IdP of this organisation has entityID {issuer:?}"),
                ),
            )
        })?;
        let trust = self
            .trust(&org.org_id, idp)
            .map_err(|e| (Some(idp.idp_id.clone()), e))?;
        let sp = SpSettings {
            entity_id: org.sp_entity_id.clone(),
            acs_url: org.acs_url.clone(),
            clock_skew_seconds: org.clock_skew_seconds,
            allow_idp_initiated: org.allow_idp_initiated,
        };
        let expected = self.expected_requests(&org.org_id, &parsed);
        let started = std::time::Instant::now();
        let result = parsed.validate(&trust, &sp, &expected, self.now());
        self.metrics.observe_validation(started.elapsed());
        let login = result.map_err(|error| {
            // Rules run only on a verified signature: a valid response to a request that
            // was already answered is a second use, and is named so.
            let replayed = matches!(&error, SamlError::InResponseToMismatch { found }
                if self.was_answered(&org.org_id, found));
            let error = if replayed {
                ApiError::replayed_request()
            } else {
                ApiError::from(error)
            };
            (Some(idp.idp_id.clone()), error)
        })?;
        Ok((idp.idp_id.clone(), login))
    }

    /// The login pipeline: validate, decide, append (deciding again on a conflict), answer
    /// once durable. A refusal writes nothing and is recorded.
    ///
    /// The validation and the first read of the user run on the blocking pool (CPU work, and
    /// a read that may reach sled's file); the wait for the disk is an `await`, so a login
    /// holds no thread while its batch is made durable.
    pub async fn login(
        self: Arc<Self>,
        org_id: String,
        response: Vec<u8>,
        request_id: String,
    ) -> Result<LoginAnswer, ApiError> {
        // An unknown org is answered before anything is recorded: refusals are kept per org,
        // and anyone can post to any org's ACS.
        let org = self.org(&org_id)?;
        let service = Arc::clone(&self);
        let validated = tokio::task::spawn_blocking(move || {
            let (idp_id, login) = service.validate(&org, &response)?;
            let identified = service.identify(&org, &idp_id, &login);
            Ok((org, idp_id, login, identified))
        })
        .await
        .unwrap_or_else(|_| Err((None, ApiError::internal())));
        let mut name_id = None;
        let result = match validated {
            Ok((org, idp_id, login, identified)) => {
                name_id = Some(login.name_id().value.clone());
                let recorded = match identified {
                    Ok((user_id, user)) => {
                        self.record_login(&org, &idp_id, &login, user_id, user)
                            .await
                    }
                    Err(error) => Err(error),
                };
                recorded.map_err(|error| (Some(idp_id), error))
            }
            Err(refusal) => Err(refusal),
        };
        match result {
            Ok(answer) => {
                self.metrics.count_login(answer.outcome.as_str());
                Ok(answer)
            }
            Err((idp_id, error)) => {
                self.metrics.count_refusal(error.code);
                self.reject(&org_id, &error, idp_id, name_id, &request_id);
                Err(error)
            }
        }
    }

    /// The login's user ID and that user as the store holds them now. Blocking: the read
    /// may reach sled's file.
    fn identify(
        &self,
        org: &OrgConfig,
        idp_id: &str,
        login: &ValidatedLogin,
    ) -> Result<(String, Option<UserState>), ApiError> {
        let idp = org.idps.get(idp_id).ok_or_else(ApiError::internal)?;
        let user_id = provisioning::identify(idp, login)?;
        let user = self.store.user(&org.org_id, &user_id)?;
        Ok((user_id, user))
    }

    /// Decides and appends, from `user` as read with the login's validation; after a
    /// conflict, from the user read again (on the blocking pool).
    async fn record_login(
        &self,
        org: &OrgConfig,
        idp_id: &str,
        login: &ValidatedLogin,
        user_id: String,
        mut user: Option<UserState>,
    ) -> Result<LoginAnswer, ApiError> {
        let login_id = format!("login_{}", tokens::random_hex(12));
        for attempt in 0..APPEND_ATTEMPTS_MAX {
            if attempt > 0 {
                let store = Arc::clone(&self.store);
                let (org_id, user_id) = (org.org_id.clone(), user_id.clone());
                user = tokio::task::spawn_blocking(move || store.user(&org_id, &user_id))
                    .await
                    .map_err(|_| ApiError::internal())??;
            }
            let decision = provisioning::decide(org, idp_id, user.as_ref(), login)?;
            let request = AppendRequest {
                org_id: org.org_id.clone(),
                stream: user_stream(&decision.user_id),
                expected_version: user.as_ref().map_or(0, |u| u.version),
                events: decision.events,
                cause: Cause::Login {
                    login_id: login_id.clone(),
                    assertion_id: login.assertion_id().to_string(),
                    idp_id: idp_id.to_string(),
                },
                assertion: Some(AssertionGuard {
                    assertion_id: login.assertion_id().to_string(),
                    not_on_or_after: login.not_on_or_after().unix_timestamp_nanos()
                        + i128::from(org.clock_skew_seconds) * 1_000_000_000,
                }),
                recorded_at: self.now_nanos(),
            };
            let started = std::time::Instant::now();
            let appended = self.store.append(request).await;
            self.metrics.observe_append(started.elapsed());
            match appended {
                Ok(envelopes) => {
                    if let Some(id) = login.in_response_to() {
                        self.consume_request(&org.org_id, id);
                    }
                    // The append went in at the version read, so the projection now holds
                    // exactly this fold: the answer needs no second read.
                    let user = envelopes
                        .iter()
                        .fold(user, |state, envelope| envelope.apply_to(state))
                        .ok_or_else(ApiError::internal)?;
                    return Ok(LoginAnswer {
                        login_id,
                        user_id: decision.user_id,
                        outcome: decision.outcome,
                        events: envelopes
                            .iter()
                            .map(|e| EventRef {
                                seq: e.seq,
                                event_type: e.event.type_name(),
                            })
                            .collect(),
                        user: view::user(&user),
                    });
                }
                Err(AppendError::Conflict { .. }) => continue,
                Err(other) => return Err(other.into()),
            }
        }
        Err(ApiError::unavailable(
            "too much contention on this user; retry",
        ))
    }

    fn reject(
        &self,
        org_id: &str,
        error: &ApiError,
        idp_id: Option<String>,
        name_id: Option<String>,
        request_id: &str,
    ) {
        tracing::info!(org_id, code = error.code, message = %error.message, request_id, "login refused");
        let mut rejected = lock(&self.rejected);
        let records = rejected.entry(org_id.to_string()).or_default();
        if records.len() >= REJECTED_PER_ORG_MAX {
            records.pop_front();
        }
        records.push_back(RejectedLogin {
            code: error.code,
            message: error.message.clone(),
            idp_id,
            name_id,
            at: self.now(),
            request_id: request_id.to_string(),
        });
    }

    /// Dry run: validates and decides against the stored or a draft configuration, writes
    /// nothing (not even the request ID's consumption).
    pub fn preview(
        &self,
        org_id: &str,
        response: &[u8],
        draft: Option<JitSettings>,
    ) -> Result<PreviewView, ApiError> {
        let org = self.org(org_id)?;
        let (idp_id, login) = self.validate(&org, response).map_err(|(_, error)| error)?;
        let idp = org.idps.get(&idp_id).ok_or_else(ApiError::internal)?;
        if let Some(draft) = &draft {
            check_jit_settings(&org, draft)
                .map_err(|e| ApiError::new(422, "invalid_settings", e.to_string()))?;
        }
        let user_id = provisioning::identify(draft.as_ref().map_or(idp, |_| idp), &login)?;
        let user = self.store.user(org_id, &user_id)?;
        let preview = provisioning::preview(&org, &idp_id, draft.as_ref(), user.as_ref(), &login)?;
        Ok(PreviewView {
            user_id: preview.decision.user_id,
            outcome: preview.decision.outcome.as_str(),
            events: preview
                .decision
                .events
                .iter()
                .map(|e| PreviewEvent {
                    event_type: e.type_name(),
                    data: view::event_data(e),
                })
                .collect(),
            diff: preview
                .diff
                .iter()
                .map(|d| DiffView {
                    field: d.field,
                    before: d.before.clone(),
                    after: d.after.clone(),
                })
                .collect(),
        })
    }

    pub fn rejected(&self, org_id: &str, limit: usize) -> Result<RejectedPage, ApiError> {
        self.org(org_id)?;
        let rejected = lock(&self.rejected);
        let records = rejected
            .get(org_id)
            .map(|records| {
                records
                    .iter()
                    .rev()
                    .take(limit)
                    .map(|r| RejectedView {
                        code: r.code,
                        message: r.message.clone(),
                        idp_id: r.idp_id.clone(),
                        name_id: r.name_id.clone(),
                        at: view::instant_text(r.at.unix_timestamp_nanos()),
                        request_id: r.request_id.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(RejectedPage { rejected: records })
    }
}

pub fn scope_name(scope: TokenScope) -> &'static str {
    match scope {
        TokenScope::Read => "read",
        TokenScope::Admin => "admin",
    }
}

/// JIT settings as CONTRACT.md shows them.
pub fn jit_view(settings: &JitSettings) -> JitView {
    JitView {
        enabled: settings.enabled,
        default_role: settings.default_role.clone(),
        idp_managed_roles: settings.idp_managed_roles,
        attribute_mapping: settings.attribute_mapping.iter().cloned().collect(),
        acl_attributes: settings.acl_attributes,
        required_for_creation: settings
            .required_for_creation
            .iter()
            .map(|f| f.mapping_key())
            .collect(),
        user_id_attribute: settings.user_id_attribute.clone(),
        allow_sha1: settings.allow_sha1,
    }
}
