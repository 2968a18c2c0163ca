//! The SAML 2.0 Web Browser SSO Response: from the bytes an IdP posted to a
//! [`ValidatedLogin`], or a [`SamlError`] saying which rule refused it.
//!
//! The order is fixed: structure and signature placement, then every present signature,
//! and only then the business rules — so any business refusal speaks of a message whose
//! signature verified. Every field of a [`ValidatedLogin`] is read from the one Assertion
//! that a verified signature covers; the document is never searched a second time.
//!
//! Spec references: SAML Core 2.0 (§2 assertions, §3.2 responses), Profiles 2.0 §4.1.4
//! (Web SSO response rules), Bindings 2.0 §3.5.5.2 (POST binding security).

use std::collections::HashSet;

use time::OffsetDateTime;

use super::dsig::{self, DSIG_NAMESPACE, DsigPolicy, Verified};
use super::error::SamlError;
use super::instant;
use super::keys::{SignatureAlgorithm, SigningKey};
use super::limits::{
    ATTRIBUTE_VALUES_COUNT_MAX, ATTRIBUTES_COUNT_MAX, RESPONSE_BASE64_BYTES_MAX, RESPONSE_XML,
};
use super::xml::{Document, NodeId};

pub const ASSERTION_NAMESPACE: &str = "urn:oasis:names:tc:SAML:2.0:assertion";
pub const PROTOCOL_NAMESPACE: &str = "urn:oasis:names:tc:SAML:2.0:protocol";
const XSI_NAMESPACE: &str = "http://www.w3.org/2001/XMLSchema-instance";
const STATUS_SUCCESS: &str = "urn:oasis:names:tc:SAML:2.0:status:Success";
const BEARER: &str = "urn:oasis:names:tc:SAML:2.0:cm:bearer";

/// What the SP trusts about one IdP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdpTrust {
    pub entity_id: String,
    pub signing_keys: Vec<SigningKey>,
    pub allow_sha1: bool,
}

/// The SP side of the exchange, per organisation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpSettings {
    pub entity_id: String,
    pub acs_url: String,
    pub clock_skew_seconds: i64,
    pub allow_idp_initiated: bool,
}

/// AuthnRequest IDs the SP sent and has not seen answered. The caller consumes the ID the
/// login names (see [`ValidatedLogin::in_response_to`]) so that it is accepted once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExpectedRequests {
    ids: HashSet<String>,
}

impl ExpectedRequests {
    pub fn none() -> Self {
        Self::default()
    }

    pub fn contains(&self, id: &str) -> bool {
        self.ids.contains(id)
    }
}

impl<S: Into<String>> FromIterator<S> for ExpectedRequests {
    fn from_iter<T: IntoIterator<Item = S>>(iter: T) -> Self {
        ExpectedRequests {
            ids: iter.into_iter().map(Into::into).collect(),
        }
    }
}

/// The Subject's NameID (SAML Core §2.2.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameId {
    /// All text children joined, surrounding white space trimmed.
    pub value: String,
    pub format: Option<String>,
    pub name_qualifier: Option<String>,
    pub sp_name_qualifier: Option<String>,
}

/// One `saml:Attribute` (SAML Core §2.7.3.1) with its non-empty values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SamlAttribute {
    pub name: String,
    pub name_format: Option<String>,
    pub friendly_name: Option<String>,
    /// Values trimmed of surrounding white space. An empty element is the empty string (Core
    /// §2.7.3.1.1); an `xsi:nil` value is a null and left out.
    pub values: Vec<String>,
}

/// Which parts of the message were signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignedParts {
    Response,
    Assertion,
    Both,
}

/// A login whose every field was read from a signature-covered Assertion that passed every
/// rule. Only [`validate`] and [`ParsedResponse::validate`] make one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidatedLogin {
    response_id: String,
    assertion_id: String,
    issuer: String,
    name_id: NameId,
    attributes: Vec<SamlAttribute>,
    authn_instant: OffsetDateTime,
    session_index: Option<String>,
    session_not_on_or_after: Option<OffsetDateTime>,
    in_response_to: Option<String>,
    not_on_or_after: OffsetDateTime,
    signed_parts: SignedParts,
    signature_algorithm: SignatureAlgorithm,
    key_fingerprint: String,
}

impl ValidatedLogin {
    pub fn response_id(&self) -> &str {
        &self.response_id
    }
    /// The Assertion ID: the key of replay protection.
    pub fn assertion_id(&self) -> &str {
        &self.assertion_id
    }
    /// The IdP entity ID (equal to the configured one).
    pub fn issuer(&self) -> &str {
        &self.issuer
    }
    pub fn name_id(&self) -> &NameId {
        &self.name_id
    }
    pub fn attributes(&self) -> &[SamlAttribute] {
        &self.attributes
    }
    /// The attribute whose Name or FriendlyName is `name`.
    pub fn attribute(&self, name: &str) -> Option<&SamlAttribute> {
        self.attributes.iter().find(|a| a.name == name).or_else(|| {
            self.attributes
                .iter()
                .find(|a| a.friendly_name.as_deref() == Some(name))
        })
    }
    pub fn authn_instant(&self) -> OffsetDateTime {
        self.authn_instant
    }
    pub fn session_index(&self) -> Option<&str> {
        self.session_index.as_deref()
    }
    pub fn session_not_on_or_after(&self) -> Option<OffsetDateTime> {
        self.session_not_on_or_after
    }
    /// The AuthnRequest this answers; the caller must now forget that request ID.
    pub fn in_response_to(&self) -> Option<&str> {
        self.in_response_to.as_deref()
    }
    /// The earliest bound after which this assertion is no longer acceptable: how long its ID
    /// must be remembered to refuse a replay.
    pub fn not_on_or_after(&self) -> OffsetDateTime {
        self.not_on_or_after
    }
    pub fn signed_parts(&self) -> SignedParts {
        self.signed_parts
    }
    pub fn signature_algorithm(&self) -> SignatureAlgorithm {
        self.signature_algorithm
    }
    /// SHA-256 fingerprint of the certificate whose key verified the message.
    pub fn key_fingerprint(&self) -> &str {
        &self.key_fingerprint
    }
}

#[cfg(test)]
impl ValidatedLogin {
    /// A login as the validator would hand it over, for tests of the layers above it that
    /// need no signature. Only unit tests of this crate can call it.
    pub(crate) fn for_tests(
        assertion_id: &str,
        name_id: &str,
        name_id_format: Option<&str>,
        attributes: &[(&str, &[&str])],
    ) -> ValidatedLogin {
        let at = |text| instant::parse(text).unwrap_or(OffsetDateTime::UNIX_EPOCH);
        ValidatedLogin {
            response_id: format!("{assertion_id}-response"),
            assertion_id: assertion_id.to_string(),
            issuer: "https://idp.example.com".to_string(),
            name_id: NameId {
                value: name_id.to_string(),
                format: name_id_format.map(str::to_string),
                name_qualifier: None,
                sp_name_qualifier: None,
            },
            attributes: attributes
                .iter()
                .map(|(name, values)| SamlAttribute {
                    name: name.to_string(),
                    name_format: None,
                    friendly_name: None,
                    values: values.iter().map(|v| v.to_string()).collect(),
                })
                .collect(),
            authn_instant: at("2026-06-01T12:00:00Z"),
            session_index: Some(format!("{assertion_id}-session")),
            session_not_on_or_after: Some(at("2026-06-01T20:00:00Z")),
            in_response_to: None,
            not_on_or_after: at("2026-06-01T12:05:00Z"),
            signed_parts: SignedParts::Assertion,
            signature_algorithm: SignatureAlgorithm::RsaSha256,
            key_fingerprint: String::new(),
        }
    }
}

/// Decodes the `SAMLResponse` form value of the HTTP-POST binding (Bindings §3.5.4):
/// base64, line breaks allowed, never deflated.
pub fn decode_post_binding(base64: &[u8]) -> Result<Vec<u8>, SamlError> {
    if base64.len() > RESPONSE_BASE64_BYTES_MAX {
        return Err(SamlError::TooLarge {
            limit: "response_base64_bytes_max",
            max: RESPONSE_BASE64_BYTES_MAX,
        });
    }
    // Bytes outside ASCII are outside the base64 alphabet too: no UTF-8 check is needed.
    dsig::decode_base64_bytes(base64).ok_or_else(|| SamlError::MalformedRequest {
        reason: "SAMLResponse is not base64".into(),
    })
}

/// Validates a base64 `SAMLResponse` against one IdP: [`decode_post_binding`], then
/// [`ParsedResponse::parse`] and [`ParsedResponse::validate`].
pub fn validate(
    base64: &[u8],
    idp: &IdpTrust,
    sp: &SpSettings,
    expected: &ExpectedRequests,
    now: OffsetDateTime,
) -> Result<ValidatedLogin, SamlError> {
    let xml = decode_post_binding(base64)?;
    let document = Document::parse_owned(xml, &RESPONSE_XML)?;
    ParsedResponse::from_document(document)?.validate(idp, sp, expected, now)
}

/// A well-formed document whose root is a `samlp:Response`, not yet trusted in any way.
#[derive(Debug)]
pub struct ParsedResponse {
    document: Document,
}

impl ParsedResponse {
    pub fn parse(xml: &[u8]) -> Result<ParsedResponse, SamlError> {
        Self::from_document(Document::parse(xml, &RESPONSE_XML)?)
    }

    fn from_document(document: Document) -> Result<ParsedResponse, SamlError> {
        if !document.is_named(document.root(), PROTOCOL_NAMESPACE, "Response") {
            return Err(SamlError::malformed(
                "the root element is not samlp:Response",
            ));
        }
        Ok(ParsedResponse { document })
    }

    /// The issuer the message claims, unverified: only for choosing which IdP's keys to
    /// verify it with. The Assertion's Issuer is preferred, as the Response's is optional.
    pub fn claimed_issuer(&self) -> Option<String> {
        let document = &self.document;
        let root = document.root();
        let assertion = document
            .children_named(root, ASSERTION_NAMESPACE, "Assertion")
            .next();
        assertion
            .and_then(|assertion| issuer_of(document, assertion))
            .or_else(|| issuer_of(document, root))
    }

    /// Every `InResponseTo` value anywhere in the document, unverified. The caller narrows
    /// its outstanding request IDs to these before it validates (instead of handing over all
    /// of them): the values the validator checks are among them, so the outcome is the same.
    pub fn claimed_in_response_to(&self) -> impl Iterator<Item = &str> + '_ {
        let document = &self.document;
        document
            .elements()
            .filter_map(|element| document.attribute(element, "InResponseTo"))
    }

    pub fn validate(
        &self,
        idp: &IdpTrust,
        sp: &SpSettings,
        expected: &ExpectedRequests,
        now: OffsetDateTime,
    ) -> Result<ValidatedLogin, SamlError> {
        let document = &self.document;
        let structure = Structure::read(document)?;
        let policy = DsigPolicy {
            allow_sha1: idp.allow_sha1,
        };
        let verify = |signed, signature| {
            dsig::verify_enveloped(document, signed, signature, &idp.signing_keys, policy)
        };
        let response_proof = structure
            .response_signature
            .map(|s| verify(document.root(), s))
            .transpose()?;
        let assertion = match structure.assertion {
            TopLevelAssertion::Plain(assertion) => assertion,
            TopLevelAssertion::Encrypted => return Err(SamlError::EncryptedAssertionUnsupported),
            TopLevelAssertion::Absent => {
                // IdPs answer errors with a signed Response and no Assertion: say why.
                Rules {
                    document,
                    idp,
                    sp,
                    expected,
                    now,
                }
                .status(document.root())?;
                return Err(SamlError::malformed("the Response holds no Assertion"));
            }
        };
        let assertion_signature = document
            .children_named(assertion, DSIG_NAMESPACE, "Signature")
            .next();
        let assertion_proof = assertion_signature
            .map(|s| verify(assertion, s))
            .transpose()?;
        let covered = CoveredAssertion::new(document, assertion, response_proof, assertion_proof)?;
        Rules {
            document,
            idp,
            sp,
            expected,
            now,
        }
        .check(&covered)
    }
}

/// The one top-level assertion of a response.
enum TopLevelAssertion {
    Plain(NodeId),
    Encrypted,
    /// None at all: only an error response, whose status is then reported.
    Absent,
}

/// Where the signatures sit, checked before any of them is verified.
struct Structure {
    response_signature: Option<NodeId>,
    assertion: TopLevelAssertion,
}

impl Structure {
    fn read(document: &Document) -> Result<Structure, SamlError> {
        let root = document.root();
        let assertions: Vec<NodeId> = document
            .child_elements(root)
            .filter(|child| {
                document.is_named(*child, ASSERTION_NAMESPACE, "Assertion")
                    || document.is_named(*child, ASSERTION_NAMESPACE, "EncryptedAssertion")
            })
            .collect();
        // Signatures count only at /Response/Signature and /Response/Assertion/Signature;
        // one anywhere else (Extensions, StatusDetail, an Object, a nested Assertion) is the
        // material of a wrapping attack. Inside saml:Advice, signed assertions are covered
        // data and are never read.
        for signature in document
            .elements()
            .filter(|id| document.is_named(*id, DSIG_NAMESPACE, "Signature"))
        {
            let parent = document.parent(signature);
            let allowed = parent == Some(root) || parent.is_some_and(|p| assertions.contains(&p));
            if !allowed && !inside_advice(document, signature) {
                return Err(SamlError::wrapping(
                    "ds:Signature outside the Response and Assertion",
                ));
            }
        }
        let response_signature = single_signature(document, root)?;
        let assertion = match assertions.as_slice() {
            [] => TopLevelAssertion::Absent,
            [assertion] if document.is_named(*assertion, ASSERTION_NAMESPACE, "Assertion") => {
                single_signature(document, *assertion)?;
                TopLevelAssertion::Plain(*assertion)
            }
            [_] => TopLevelAssertion::Encrypted,
            // SAML allows several assertions; an SP that reads one of them is the setting of
            // CVE-2022-41912. Profiles §4.1.4.2 needs only one.
            _ => {
                return Err(SamlError::wrapping(
                    "the Response holds more than one Assertion",
                ));
            }
        };
        if response_signature.is_none() {
            let assertion_signed = match assertion {
                TopLevelAssertion::Plain(assertion) => {
                    single_signature(document, assertion)?.is_some()
                }
                TopLevelAssertion::Encrypted => true,
                TopLevelAssertion::Absent => false,
            };
            if !assertion_signed {
                return Err(SamlError::SignatureMissing);
            }
        }
        Ok(Structure {
            response_signature,
            assertion,
        })
    }
}

fn single_signature(document: &Document, parent: NodeId) -> Result<Option<NodeId>, SamlError> {
    let mut signatures = document.children_named(parent, DSIG_NAMESPACE, "Signature");
    match (signatures.next(), signatures.next()) {
        (first, None) => Ok(first),
        _ => Err(SamlError::wrapping(
            "more than one ds:Signature on one element",
        )),
    }
}

fn inside_advice(document: &Document, node: NodeId) -> bool {
    let mut current = document.parent(node);
    while let Some(id) = current {
        if document.is_named(id, ASSERTION_NAMESPACE, "Advice") {
            return true;
        }
        current = document.parent(id);
    }
    false
}

/// The assertion and the proofs that cover it. The only way to it is through a [`Verified`]
/// naming the Response that contains it or the Assertion itself.
struct CoveredAssertion {
    assertion: NodeId,
    signed_parts: SignedParts,
    proof: Verified,
}

impl CoveredAssertion {
    fn new(
        document: &Document,
        assertion: NodeId,
        response: Option<Verified>,
        assertion_proof: Option<Verified>,
    ) -> Result<CoveredAssertion, SamlError> {
        let response = response.filter(|proof| {
            proof.element() == document.root()
                && document.parent(assertion) == Some(proof.element())
        });
        let assertion_proof = assertion_proof.filter(|proof| proof.element() == assertion);
        let (signed_parts, proof) = match (response, assertion_proof) {
            (Some(proof), Some(_)) => (SignedParts::Both, proof),
            (Some(proof), None) => (SignedParts::Response, proof),
            (None, Some(proof)) => (SignedParts::Assertion, proof),
            (None, None) => return Err(SamlError::SignatureMissing),
        };
        Ok(CoveredAssertion {
            assertion,
            signed_parts,
            proof,
        })
    }
}

/// The business rules, applied to a covered assertion.
struct Rules<'a> {
    document: &'a Document,
    idp: &'a IdpTrust,
    sp: &'a SpSettings,
    expected: &'a ExpectedRequests,
    now: OffsetDateTime,
}

impl Rules<'_> {
    fn check(&self, covered: &CoveredAssertion) -> Result<ValidatedLogin, SamlError> {
        let document = self.document;
        let response = document.root();
        let assertion = covered.assertion;
        let response_signed = covered.signed_parts != SignedParts::Assertion;

        // Core §3.2.2 and §2.3.3: Version 2.0 and the required ID/IssueInstant.
        let response_id = self.required_attribute(response, "ID")?;
        let assertion_id = self.required_attribute(assertion, "ID")?;
        for element in [response, assertion] {
            if document.attribute(element, "Version") != Some("2.0") {
                return Err(SamlError::malformed("Version is not 2.0"));
            }
        }
        self.status(response)?;
        self.issuers(response, assertion)?;
        self.destination(response, response_signed)?;
        for element in [response, assertion] {
            self.issue_instant(element)?;
        }
        let subject = self.single_child(assertion, ASSERTION_NAMESPACE, "Subject")?;
        let name_id = self.name_id(subject)?;
        let response_in_response_to = document.attribute(response, "InResponseTo");
        let (confirmation_not_on_or_after, confirmation_in_response_to) =
            self.bearer_confirmation(subject)?;
        let in_response_to =
            self.in_response_to(response_in_response_to, confirmation_in_response_to)?;
        let conditions_not_on_or_after = self.conditions(assertion)?;
        let authn = self.authn_statement(assertion)?;
        let attributes = self.attributes(assertion)?;
        let not_on_or_after = conditions_not_on_or_after
            .map_or(confirmation_not_on_or_after, |c| {
                c.min(confirmation_not_on_or_after)
            });
        let key_fingerprint = self
            .idp
            .signing_keys
            .get(covered.proof.key_index())
            .map(SigningKey::fingerprint_hex)
            .unwrap_or_default();
        Ok(ValidatedLogin {
            response_id,
            assertion_id,
            issuer: self.idp.entity_id.clone(),
            name_id,
            attributes,
            authn_instant: authn.instant,
            session_index: authn.session_index,
            session_not_on_or_after: authn.session_not_on_or_after,
            in_response_to,
            not_on_or_after,
            signed_parts: covered.signed_parts,
            signature_algorithm: covered.proof.signature_algorithm(),
            key_fingerprint,
        })
    }

    fn required_attribute(&self, element: NodeId, name: &str) -> Result<String, SamlError> {
        self.document
            .attribute(element, name)
            .filter(|value| !value.is_empty())
            .map(str::to_string)
            .ok_or_else(|| SamlError::malformed(format!("{} has no {name}", self.name_of(element))))
    }

    fn name_of(&self, element: NodeId) -> String {
        self.document.local_name(element).to_string()
    }

    fn single_child(
        &self,
        parent: NodeId,
        namespace: &str,
        local_name: &str,
    ) -> Result<NodeId, SamlError> {
        let mut children = self.document.children_named(parent, namespace, local_name);
        match (children.next(), children.next()) {
            (Some(child), None) => Ok(child),
            (None, _) => Err(SamlError::malformed(format!("no {local_name} element"))),
            _ => Err(SamlError::malformed(format!(
                "more than one {local_name} element"
            ))),
        }
    }

    fn time_attribute(
        &self,
        element: NodeId,
        name: &str,
    ) -> Result<Option<OffsetDateTime>, SamlError> {
        match self.document.attribute(element, name) {
            None => Ok(None),
            Some(text) => instant::parse(text).map(Some).ok_or_else(|| {
                SamlError::malformed(format!("{name} {text:?} is not an xs:dateTime"))
            }),
        }
    }

    fn skew(&self) -> time::Duration {
        time::Duration::seconds(self.sp.clock_skew_seconds)
    }

    /// Refuses when `now` is at or past `bound` (minus skew).
    fn not_after(&self, bound_name: &'static str, bound: OffsetDateTime) -> Result<(), SamlError> {
        if self.now - self.skew() >= bound {
            return Err(SamlError::AssertionExpired {
                bound: bound_name,
                not_on_or_after: bound,
                now: self.now,
                skew_seconds: self.sp.clock_skew_seconds,
            });
        }
        Ok(())
    }

    /// Refuses when `now` (plus skew) is before `bound`.
    fn not_before(&self, bound_name: &'static str, bound: OffsetDateTime) -> Result<(), SamlError> {
        if self.now + self.skew() < bound {
            return Err(SamlError::AssertionNotYetValid {
                bound: bound_name,
                not_before: bound,
                now: self.now,
                skew_seconds: self.sp.clock_skew_seconds,
            });
        }
        Ok(())
    }

    /// Core §3.2.2.2: the top-level StatusCode is Success.
    fn status(&self, response: NodeId) -> Result<(), SamlError> {
        let document = self.document;
        let status = self.single_child(response, PROTOCOL_NAMESPACE, "Status")?;
        let mut codes = Vec::new();
        let mut code = document
            .children_named(status, PROTOCOL_NAMESPACE, "StatusCode")
            .next();
        while let Some(node) = code {
            codes.push(document.attribute(node, "Value").unwrap_or("").to_string());
            code = document
                .children_named(node, PROTOCOL_NAMESPACE, "StatusCode")
                .next();
        }
        if codes.first().map(String::as_str) != Some(STATUS_SUCCESS) {
            let message = document
                .children_named(status, PROTOCOL_NAMESPACE, "StatusMessage")
                .next()
                .map(|node| document.text_ref(node).trim().to_string());
            return Err(SamlError::StatusNotSuccess {
                status_codes: codes,
                message,
            });
        }
        Ok(())
    }

    /// Profiles §4.1.4.2: the Assertion Issuer is the IdP; a Response Issuer, optional,
    /// must name it too.
    fn issuers(&self, response: NodeId, assertion: NodeId) -> Result<(), SamlError> {
        let expected = &self.idp.entity_id;
        let assertion_issuer = issuer_of(self.document, assertion);
        if assertion_issuer.as_ref() != Some(expected) {
            return Err(SamlError::IssuerMismatch {
                element: "Assertion",
                expected: expected.clone(),
                found: assertion_issuer,
            });
        }
        let mut response_issuers =
            self.document
                .children_named(response, ASSERTION_NAMESPACE, "Issuer");
        if let Some(issuer) = response_issuers.next() {
            let found = self.document.text_ref(issuer).trim().to_string();
            if &found != expected || response_issuers.next().is_some() {
                return Err(SamlError::IssuerMismatch {
                    element: "Response",
                    expected: expected.clone(),
                    found: Some(found),
                });
            }
        }
        Ok(())
    }

    /// Bindings §3.5.5.2: a signed Response names its Destination, and a Destination that is
    /// present must be this ACS URL.
    fn destination(&self, response: NodeId, response_signed: bool) -> Result<(), SamlError> {
        let destination = self.document.attribute(response, "Destination");
        let required = response_signed;
        match destination {
            Some(found) if found == self.sp.acs_url => Ok(()),
            None if !required => Ok(()),
            found => Err(SamlError::DestinationMismatch {
                expected: self.sp.acs_url.clone(),
                found: found.map(str::to_string),
            }),
        }
    }

    /// Core §1.3.3 / §3.2.2: an IssueInstant from the future (beyond skew) is refused.
    fn issue_instant(&self, element: NodeId) -> Result<(), SamlError> {
        let issued = self
            .time_attribute(element, "IssueInstant")?
            .ok_or_else(|| {
                SamlError::malformed(format!("{} has no IssueInstant", self.name_of(element)))
            })?;
        self.not_before("IssueInstant", issued)
    }

    /// Core §2.2.3: the Subject names the user with a NameID. EncryptedID would need an SP
    /// decryption key, which jitledger does not hold.
    fn name_id(&self, subject: NodeId) -> Result<NameId, SamlError> {
        let document = self.document;
        if document
            .children_named(subject, ASSERTION_NAMESPACE, "EncryptedID")
            .next()
            .is_some()
        {
            return Err(SamlError::EncryptedAssertionUnsupported);
        }
        let node = self.single_child(subject, ASSERTION_NAMESPACE, "NameID")?;
        let value = document.text_ref(node).trim().to_string();
        if value.is_empty() {
            return Err(SamlError::malformed("NameID is empty"));
        }
        let optional = |name| document.attribute(node, name).map(str::to_string);
        Ok(NameId {
            value,
            format: optional("Format"),
            name_qualifier: optional("NameQualifier"),
            sp_name_qualifier: optional("SPNameQualifier"),
        })
    }

    /// Profiles §4.1.4.2: a bearer SubjectConfirmation whose data names this ACS URL as
    /// Recipient and carries a NotOnOrAfter that holds. Returns that bound and any
    /// InResponseTo. With several bearer confirmations, the first one that holds wins; if
    /// none does, the first one's refusal is reported.
    fn bearer_confirmation(
        &self,
        subject: NodeId,
    ) -> Result<(OffsetDateTime, Option<String>), SamlError> {
        let document = self.document;
        let mut first_error = None;
        let bearers = document
            .children_named(subject, ASSERTION_NAMESPACE, "SubjectConfirmation")
            .filter(|c| document.attribute(*c, "Method") == Some(BEARER));
        for confirmation in bearers {
            match self.check_confirmation(confirmation) {
                Ok(found) => return Ok(found),
                Err(error) => {
                    first_error.get_or_insert(error);
                }
            }
        }
        Err(first_error.unwrap_or_else(|| SamlError::malformed("no bearer SubjectConfirmation")))
    }

    fn check_confirmation(
        &self,
        confirmation: NodeId,
    ) -> Result<(OffsetDateTime, Option<String>), SamlError> {
        let document = self.document;
        let data =
            self.single_child(confirmation, ASSERTION_NAMESPACE, "SubjectConfirmationData")?;
        let recipient = document.attribute(data, "Recipient");
        if recipient != Some(self.sp.acs_url.as_str()) {
            return Err(SamlError::RecipientMismatch {
                expected: self.sp.acs_url.clone(),
                found: recipient.map(str::to_string),
            });
        }
        let not_on_or_after = self
            .time_attribute(data, "NotOnOrAfter")?
            .ok_or_else(|| SamlError::malformed("SubjectConfirmationData has no NotOnOrAfter"))?;
        self.not_after("SubjectConfirmationData NotOnOrAfter", not_on_or_after)?;
        if let Some(not_before) = self.time_attribute(data, "NotBefore")? {
            self.not_before("SubjectConfirmationData NotBefore", not_before)?;
        }
        let in_response_to = document.attribute(data, "InResponseTo").map(str::to_string);
        Ok((not_on_or_after, in_response_to))
    }

    /// Profiles §4.1.4.2 and §4.1.5: InResponseTo, wherever present, names an outstanding
    /// request; with none, the response is unsolicited and allowed only if the org allows
    /// IdP-initiated login.
    fn in_response_to(
        &self,
        on_response: Option<&str>,
        on_confirmation: Option<String>,
    ) -> Result<Option<String>, SamlError> {
        let mut named: Vec<String> = on_response.map(str::to_string).into_iter().collect();
        named.extend(on_confirmation);
        named.dedup();
        match named.as_slice() {
            [] if self.sp.allow_idp_initiated => Ok(None),
            [] => Err(SamlError::UnsolicitedResponse),
            [id] if self.expected.contains(id) => Ok(Some(id.clone())),
            [id] => Err(SamlError::InResponseToMismatch { found: id.clone() }),
            [first, ..] => Err(SamlError::InResponseToMismatch {
                found: first.clone(),
            }),
        }
    }

    /// Core §2.5.1: Conditions' time bounds hold, and every AudienceRestriction names this
    /// SP (Profiles §4.1.4.2 requires at least one). Returns NotOnOrAfter.
    fn conditions(&self, assertion: NodeId) -> Result<Option<OffsetDateTime>, SamlError> {
        let document = self.document;
        let expected = &self.sp.entity_id;
        let mut conditions = document.children_named(assertion, ASSERTION_NAMESPACE, "Conditions");
        let (Some(conditions), None) = (conditions.next(), conditions.next()) else {
            return Err(SamlError::AudienceMismatch {
                expected: expected.clone(),
                found: Vec::new(),
            });
        };
        if let Some(not_before) = self.time_attribute(conditions, "NotBefore")? {
            self.not_before("Conditions NotBefore", not_before)?;
        }
        let not_on_or_after = self.time_attribute(conditions, "NotOnOrAfter")?;
        if let Some(bound) = not_on_or_after {
            self.not_after("Conditions NotOnOrAfter", bound)?;
        }
        let restrictions: Vec<NodeId> = document
            .children_named(conditions, ASSERTION_NAMESPACE, "AudienceRestriction")
            .collect();
        let mut all_found = Vec::new();
        let mut every_restriction_names_us = !restrictions.is_empty();
        for restriction in restrictions {
            let audiences: Vec<String> = document
                .children_named(restriction, ASSERTION_NAMESPACE, "Audience")
                .map(|audience| document.text_ref(audience).trim().to_string())
                .collect();
            every_restriction_names_us &= audiences.contains(expected);
            all_found.extend(audiences);
        }
        if !every_restriction_names_us {
            return Err(SamlError::AudienceMismatch {
                expected: expected.clone(),
                found: all_found,
            });
        }
        Ok(not_on_or_after)
    }

    /// Profiles §4.1.4.2: exactly one AuthnStatement (jitledger records one login per
    /// response); its SessionNotOnOrAfter, if any, still holds.
    fn authn_statement(&self, assertion: NodeId) -> Result<Authn, SamlError> {
        let statement = self.single_child(assertion, ASSERTION_NAMESPACE, "AuthnStatement")?;
        let instant = self
            .time_attribute(statement, "AuthnInstant")?
            .ok_or_else(|| SamlError::malformed("AuthnStatement has no AuthnInstant"))?;
        let session_not_on_or_after = self.time_attribute(statement, "SessionNotOnOrAfter")?;
        if let Some(bound) = session_not_on_or_after {
            self.not_after("SessionNotOnOrAfter", bound)?;
        }
        let session_index = self
            .document
            .attribute(statement, "SessionIndex")
            .map(str::to_string);
        Ok(Authn {
            instant,
            session_index,
            session_not_on_or_after,
        })
    }

    /// Core §2.7.3: attributes of every AttributeStatement. A Name given twice makes the
    /// value ambiguous, so it is refused rather than merged or picked.
    fn attributes(&self, assertion: NodeId) -> Result<Vec<SamlAttribute>, SamlError> {
        let document = self.document;
        let mut attributes: Vec<SamlAttribute> = Vec::new();
        let statements =
            document.children_named(assertion, ASSERTION_NAMESPACE, "AttributeStatement");
        for statement in statements {
            for node in document.children_named(statement, ASSERTION_NAMESPACE, "Attribute") {
                if attributes.len() == ATTRIBUTES_COUNT_MAX {
                    return Err(SamlError::TooLarge {
                        limit: "attributes_count_max",
                        max: ATTRIBUTES_COUNT_MAX,
                    });
                }
                let name = document
                    .attribute(node, "Name")
                    .map(str::trim)
                    .filter(|name| !name.is_empty())
                    .ok_or_else(|| SamlError::malformed("Attribute has no Name"))?;
                if attributes.iter().any(|a| a.name == name) {
                    return Err(SamlError::AmbiguousAttribute {
                        name: name.to_string(),
                    });
                }
                let values = self.attribute_values(node)?;
                attributes.push(SamlAttribute {
                    name: name.to_string(),
                    name_format: document.attribute(node, "NameFormat").map(str::to_string),
                    friendly_name: document.attribute(node, "FriendlyName").map(str::to_string),
                    values,
                });
            }
        }
        Ok(attributes)
    }

    fn attribute_values(&self, attribute: NodeId) -> Result<Vec<String>, SamlError> {
        let document = self.document;
        let mut values = Vec::new();
        for node in document.children_named(attribute, ASSERTION_NAMESPACE, "AttributeValue") {
            if values.len() == ATTRIBUTE_VALUES_COUNT_MAX {
                return Err(SamlError::TooLarge {
                    limit: "attribute_values_count_max",
                    max: ATTRIBUTE_VALUES_COUNT_MAX,
                });
            }
            let nil = document
                .attribute_ns(node, XSI_NAMESPACE, "nil")
                .is_some_and(|nil| matches!(nil.trim(), "true" | "1"));
            let value = document.text_ref(node).trim().to_string();
            if !nil {
                values.push(value);
            }
        }
        Ok(values)
    }
}

struct Authn {
    instant: OffsetDateTime,
    session_index: Option<String>,
    session_not_on_or_after: Option<OffsetDateTime>,
}

fn issuer_of(document: &Document, element: NodeId) -> Option<String> {
    document
        .children_named(element, ASSERTION_NAMESPACE, "Issuer")
        .next()
        .map(|issuer| document.text_ref(issuer).trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn corpus(path: &str) -> Vec<u8> {
        let full = format!("{}/../shared/interop/{path}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(full).unwrap()
    }

    /// The document at `path`, its top-level Assertion, and the proof of its one signature.
    fn proven(path: &str, certificate: &str) -> (Document, NodeId, Verified) {
        let document = Document::parse(&corpus(path), &RESPONSE_XML).unwrap();
        let certificate = String::from_utf8(corpus(certificate)).unwrap();
        let keys = [SigningKey::from_certificate_text(&certificate).unwrap()];
        let signature = document
            .elements()
            .find(|id| document.is_named(*id, DSIG_NAMESPACE, "Signature"))
            .unwrap();
        let signed = document.parent(signature).unwrap();
        let policy = DsigPolicy { allow_sha1: true };
        let proof = dsig::verify_enveloped(&document, signed, signature, &keys, policy).unwrap();
        let assertion = document
            .children_named(document.root(), ASSERTION_NAMESPACE, "Assertion")
            .next()
            .unwrap();
        (document, assertion, proof)
    }

    #[test]
    fn a_proof_of_the_assertion_never_stands_for_the_response() {
        let (document, assertion, proof) = proven(
            "ruby-saml/adfs_response_sha256.xml",
            "ruby-saml/adfs_response_sha256.keyinfo.pem",
        );
        assert_eq!(proof.element(), assertion);
        let covered = CoveredAssertion::new(&document, assertion, None, Some(proof.clone()));
        assert!(covered.is_ok_and(|c| c.signed_parts == SignedParts::Assertion));
        let covered = CoveredAssertion::new(&document, assertion, Some(proof), None);
        assert_eq!(covered.err(), Some(SamlError::SignatureMissing));
    }

    #[test]
    fn a_proof_of_the_response_never_stands_for_the_assertion() {
        let (document, assertion, proof) = proven(
            "samael/response_signed.xml",
            "samael/response_signed.keyinfo.pem",
        );
        assert_eq!(proof.element(), document.root());
        let covered = CoveredAssertion::new(&document, assertion, Some(proof.clone()), None);
        assert!(covered.is_ok_and(|c| c.signed_parts == SignedParts::Response));
        let covered = CoveredAssertion::new(&document, assertion, None, Some(proof));
        assert_eq!(covered.err(), Some(SamlError::SignatureMissing));
    }
}
