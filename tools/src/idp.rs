//! A test IdP: builds SAML 2.0 Responses the way real IdPs shape them and signs them with
//! ring — enveloped XML-DSig, exclusive C14N, the Signature right after the Issuer — so
//! that jitledger can be exercised with fresh, valid logins at any instant.
//!
//! Signing uses jitledger's own parser and canonicaliser; that the result is correct
//! XML-DSig is established independently by `tests/xmlsec1_verifies_idp_sim.rs`, which has
//! xmlsec1 verify what this module signs.
//!
//! Not for: a real IdP. There is no session, no AuthnRequest parsing and no key protection,
//! and the `rsa-sha1` path is textbook RSA.

mod rsa_sha1;
mod signer;

use std::fmt::Write as _;
use std::path::PathBuf;

use base64::Engine as _;
use jitledger::saml::c14n::{self, Method};
use jitledger::saml::dsig::{DSIG_NAMESPACE, DigestAlgorithm};
use jitledger::saml::instant;
use jitledger::saml::keys::SignatureAlgorithm;
use jitledger::saml::limits::XmlLimits;
use jitledger::saml::response::{ASSERTION_NAMESPACE, PROTOCOL_NAMESPACE};
use jitledger::saml::xml::{Document, NodeId, XmlError};
use ring::rand::SecureRandom as _;
use time::{Duration, OffsetDateTime};

pub use signer::{FIXTURE_KEYS, Signer, fixture_algorithm, fixture_key, fixture_keys_dir};

pub const STATUS_SUCCESS: &str = "urn:oasis:names:tc:SAML:2.0:status:Success";
pub const NAME_ID_FORMAT_EMAIL: &str = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress";
pub const ATTRIBUTE_NAME_FORMAT_BASIC: &str = "urn:oasis:names:tc:SAML:2.0:attrname-format:basic";
pub const ATTRIBUTE_NAME_FORMAT_URI: &str = "urn:oasis:names:tc:SAML:2.0:attrname-format:uri";
pub const AUTHN_CONTEXT_PASSWORD_PROTECTED_TRANSPORT: &str =
    "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport";
const BEARER: &str = "urn:oasis:names:tc:SAML:2.0:cm:bearer";
const METADATA_NAMESPACE: &str = "urn:oasis:names:tc:SAML:2.0:metadata";
const XS_NAMESPACE: &str = "http://www.w3.org/2001/XMLSchema";
const XSI_NAMESPACE: &str = "http://www.w3.org/2001/XMLSchema-instance";
const ENVELOPED_SIGNATURE: &str = "http://www.w3.org/2000/09/xmldsig#enveloped-signature";

/// How long a fresh response is valid by default: five minutes, as most IdPs do.
pub const VALIDITY_DEFAULT_SECONDS: i64 = 300;

/// Bounds for re-parsing what this module writes. Far above jitledger's response limits on
/// purpose: the test IdP must be able to build the oversized responses that test them.
const IDP_XML: XmlLimits = XmlLimits {
    document_bytes_max: 256 * 1024 * 1024,
    depth_max: 64,
    elements_count_max: 10_000_000,
    attributes_per_element_max: 64,
    namespace_declarations_per_element_max: 32,
    text_bytes_max: 64 * 1024 * 1024,
    name_bytes_max: 256,
};

/// Why the test IdP could not produce something.
#[derive(Debug)]
#[non_exhaustive]
pub enum IdpError {
    /// A key or certificate that cannot be used.
    Key { reason: String },
    /// The private-key operation failed.
    Sign,
    /// What this module wrote did not parse back; a bug here, or input it cannot express.
    Xml(XmlError),
    /// The response lacks what a signature needs (an ID, an Issuer to follow).
    Unsignable { reason: String },
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl std::fmt::Display for IdpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IdpError::Key { reason } => write!(f, "unusable key: {reason}"),
            IdpError::Sign => write!(f, "signing failed"),
            IdpError::Xml(error) => write!(f, "generated XML does not parse: {error}"),
            IdpError::Unsignable { reason } => write!(f, "cannot sign: {reason}"),
            IdpError::Io { path, source } => write!(f, "{}: {source}", path.display()),
        }
    }
}

impl std::error::Error for IdpError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            IdpError::Xml(error) => Some(error),
            IdpError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl From<XmlError> for IdpError {
    fn from(error: XmlError) -> Self {
        IdpError::Xml(error)
    }
}

/// Which elements carry an enveloped signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sign {
    Response,
    Assertion,
    /// The Assertion first, then the Response, whose signature thus covers the Assertion's.
    Both,
    None,
}

/// One `saml:Attribute` with its values, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute {
    pub name: String,
    pub name_format: Option<String>,
    pub friendly_name: Option<String>,
    pub values: Vec<String>,
}

impl Attribute {
    pub fn new<V: Into<String>>(name: &str, values: impl IntoIterator<Item = V>) -> Attribute {
        Attribute {
            name: name.to_string(),
            name_format: None,
            friendly_name: None,
            values: values.into_iter().map(Into::into).collect(),
        }
    }

    pub fn name_format(mut self, format: &str) -> Attribute {
        self.name_format = Some(format.to_string());
        self
    }

    pub fn friendly_name(mut self, name: &str) -> Attribute {
        self.friendly_name = Some(name.to_string());
        self
    }
}

/// Everything a Response says. [`ResponseSpec::new`] gives a valid IdP-initiated login;
/// change fields directly or through the builder methods to make any other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseSpec {
    pub idp_entity_id: String,
    pub sp_entity_id: String,
    pub acs_url: String,
    pub response_id: String,
    pub assertion_id: String,
    /// IssueInstant of both the Response and the Assertion.
    pub issue_instant: OffsetDateTime,
    /// On the Response and on SubjectConfirmationData.
    pub in_response_to: Option<String>,
    pub destination: Option<String>,
    /// Written on the Response Issuer; the Assertion Issuer is always written.
    pub response_issuer: bool,
    pub name_id: String,
    pub name_id_format: Option<String>,
    pub attributes: Vec<Attribute>,
    pub not_before: Option<OffsetDateTime>,
    pub not_on_or_after: OffsetDateTime,
    /// SubjectConfirmationData NotOnOrAfter.
    pub subject_not_on_or_after: OffsetDateTime,
    /// Recipient of SubjectConfirmationData; `None` writes the ACS URL.
    pub recipient: Option<String>,
    /// One AudienceRestriction holding these Audiences.
    pub audiences: Vec<String>,
    pub authn_instant: OffsetDateTime,
    pub session_index: Option<String>,
    pub session_not_on_or_after: Option<OffsetDateTime>,
    pub authn_context_class_ref: String,
    pub status_code: String,
    pub sign: Sign,
}

impl ResponseSpec {
    /// A valid, assertion-signed, IdP-initiated login issued at `now` and valid for
    /// [`VALIDITY_DEFAULT_SECONDS`]. IDs are derived from the inputs, so the same inputs
    /// give the same document; set [`ResponseSpec::ids`] (see [`random_id`]) to send several
    /// logins at one instant without tripping replay protection.
    pub fn new(
        idp_entity_id: &str,
        sp_entity_id: &str,
        acs_url: &str,
        name_id: &str,
        now: OffsetDateTime,
    ) -> ResponseSpec {
        let seed = [
            idp_entity_id,
            sp_entity_id,
            acs_url,
            name_id,
            &now.unix_timestamp_nanos().to_string(),
        ]
        .join("\n");
        let validity = Duration::seconds(VALIDITY_DEFAULT_SECONDS);
        ResponseSpec {
            idp_entity_id: idp_entity_id.to_string(),
            sp_entity_id: sp_entity_id.to_string(),
            acs_url: acs_url.to_string(),
            response_id: derived_id("response", &seed),
            assertion_id: derived_id("assertion", &seed),
            issue_instant: now,
            in_response_to: None,
            destination: Some(acs_url.to_string()),
            response_issuer: true,
            name_id: name_id.to_string(),
            name_id_format: Some(NAME_ID_FORMAT_EMAIL.to_string()),
            attributes: Vec::new(),
            not_before: Some(now),
            not_on_or_after: now + validity,
            subject_not_on_or_after: now + validity,
            recipient: None,
            audiences: vec![sp_entity_id.to_string()],
            authn_instant: now,
            session_index: Some(derived_id("session", &seed)),
            session_not_on_or_after: None,
            authn_context_class_ref: AUTHN_CONTEXT_PASSWORD_PROTECTED_TRANSPORT.to_string(),
            status_code: STATUS_SUCCESS.to_string(),
            sign: Sign::Assertion,
        }
    }

    pub fn sign(mut self, sign: Sign) -> ResponseSpec {
        self.sign = sign;
        self
    }

    pub fn ids(mut self, response_id: &str, assertion_id: &str) -> ResponseSpec {
        self.response_id = response_id.to_string();
        self.assertion_id = assertion_id.to_string();
        self
    }

    /// Answers the AuthnRequest `request_id` (SP-initiated login).
    pub fn in_response_to(mut self, request_id: &str) -> ResponseSpec {
        self.in_response_to = Some(request_id.to_string());
        self
    }

    pub fn attribute(mut self, attribute: Attribute) -> ResponseSpec {
        self.attributes.push(attribute);
        self
    }

    /// Conditions and SubjectConfirmationData NotOnOrAfter both `validity` after issue.
    pub fn valid_for(mut self, validity: Duration) -> ResponseSpec {
        self.not_on_or_after = self.issue_instant + validity;
        self.subject_not_on_or_after = self.issue_instant + validity;
        self
    }

    /// The unsigned document (what [`Sign::None`] produces).
    pub fn to_xml(&self) -> String {
        let mut xml = String::with_capacity(4096);
        self.write_response(&mut xml);
        xml
    }

    /// The document signed as [`ResponseSpec::sign`] says, with `signer`.
    pub fn signed_xml(&self, signer: &Signer) -> Result<String, IdpError> {
        let mut xml = self.to_xml();
        for target in targets(self.sign) {
            xml = sign_element(&xml, *target, signer)?;
        }
        Ok(xml)
    }

    /// The document with empty XML-DSig templates where [`ResponseSpec::sign`] puts
    /// signatures, for `xmlsec1 --sign` to fill (DigestValue, SignatureValue and
    /// X509Data are empty).
    pub fn xmlsec1_template(
        &self,
        algorithm: SignatureAlgorithm,
        digest: DigestAlgorithm,
    ) -> Result<String, IdpError> {
        let mut xml = self.to_xml();
        for target in targets(self.sign) {
            let (document, element) = parse_target(&xml, *target)?;
            let id = element_id(&document, element)?;
            let signature = SignatureText {
                reference_id: &id,
                algorithm,
                digest,
                digest_value: "",
                certificate_base64: None,
            }
            .render();
            let at = issuer_end(&document, element)?;
            xml.insert_str(at, &signature);
        }
        Ok(xml)
    }

    fn write_response(&self, xml: &mut String) {
        let mut response_attributes = vec![
            ("ID", self.response_id.clone()),
            ("Version", "2.0".to_string()),
            ("IssueInstant", instant::format(self.issue_instant)),
        ];
        if let Some(destination) = &self.destination {
            response_attributes.push(("Destination", destination.clone()));
        }
        if let Some(id) = &self.in_response_to {
            response_attributes.push(("InResponseTo", id.clone()));
        }
        xml.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        let _ = write!(
            xml,
            "<samlp:Response xmlns:samlp=\"{PROTOCOL_NAMESPACE}\" \
             xmlns:saml=\"{ASSERTION_NAMESPACE}\""
        );
        write_attributes(xml, &response_attributes);
        xml.push_str(">\n");
        if self.response_issuer {
            element_line(xml, 1, "saml:Issuer", &[], &self.idp_entity_id);
        }
        xml.push_str("  <samlp:Status>\n");
        empty_line(
            xml,
            2,
            "samlp:StatusCode",
            &[("Value", self.status_code.clone())],
        );
        xml.push_str("  </samlp:Status>\n");
        self.write_assertion(xml);
        xml.push_str("</samlp:Response>\n");
    }

    fn write_assertion(&self, xml: &mut String) {
        // The Assertion redeclares its namespaces, as IdPs do, so that it stands alone once
        // an SP extracts it.
        let _ = write!(
            xml,
            "  <saml:Assertion xmlns:saml=\"{ASSERTION_NAMESPACE}\" \
             xmlns:xs=\"{XS_NAMESPACE}\" xmlns:xsi=\"{XSI_NAMESPACE}\""
        );
        write_attributes(
            xml,
            &[
                ("ID", self.assertion_id.clone()),
                ("Version", "2.0".to_string()),
                ("IssueInstant", instant::format(self.issue_instant)),
            ],
        );
        xml.push_str(">\n");
        element_line(xml, 2, "saml:Issuer", &[], &self.idp_entity_id);
        self.write_subject(xml);
        self.write_conditions(xml);
        self.write_authn_statement(xml);
        self.write_attribute_statement(xml);
        xml.push_str("  </saml:Assertion>\n");
    }

    fn write_subject(&self, xml: &mut String) {
        xml.push_str("    <saml:Subject>\n");
        let format: Vec<_> = self
            .name_id_format
            .iter()
            .map(|format| ("Format", format.clone()))
            .collect();
        element_line(xml, 3, "saml:NameID", &format, &self.name_id);
        let _ = writeln!(xml, "      <saml:SubjectConfirmation Method=\"{BEARER}\">");
        let mut data = vec![
            (
                "NotOnOrAfter",
                instant::format(self.subject_not_on_or_after),
            ),
            (
                "Recipient",
                self.recipient
                    .clone()
                    .unwrap_or_else(|| self.acs_url.clone()),
            ),
        ];
        if let Some(id) = &self.in_response_to {
            data.push(("InResponseTo", id.clone()));
        }
        empty_line(xml, 4, "saml:SubjectConfirmationData", &data);
        xml.push_str("      </saml:SubjectConfirmation>\n");
        xml.push_str("    </saml:Subject>\n");
    }

    fn write_conditions(&self, xml: &mut String) {
        let mut bounds = Vec::new();
        if let Some(not_before) = self.not_before {
            bounds.push(("NotBefore", instant::format(not_before)));
        }
        bounds.push(("NotOnOrAfter", instant::format(self.not_on_or_after)));
        xml.push_str("    <saml:Conditions");
        write_attributes(xml, &bounds);
        xml.push_str(">\n");
        if !self.audiences.is_empty() {
            xml.push_str("      <saml:AudienceRestriction>\n");
            for audience in &self.audiences {
                element_line(xml, 4, "saml:Audience", &[], audience);
            }
            xml.push_str("      </saml:AudienceRestriction>\n");
        }
        xml.push_str("    </saml:Conditions>\n");
    }

    fn write_authn_statement(&self, xml: &mut String) {
        let mut attributes = vec![("AuthnInstant", instant::format(self.authn_instant))];
        if let Some(index) = &self.session_index {
            attributes.push(("SessionIndex", index.clone()));
        }
        if let Some(bound) = self.session_not_on_or_after {
            attributes.push(("SessionNotOnOrAfter", instant::format(bound)));
        }
        xml.push_str("    <saml:AuthnStatement");
        write_attributes(xml, &attributes);
        xml.push_str(">\n      <saml:AuthnContext>\n");
        element_line(
            xml,
            4,
            "saml:AuthnContextClassRef",
            &[],
            &self.authn_context_class_ref,
        );
        xml.push_str("      </saml:AuthnContext>\n    </saml:AuthnStatement>\n");
    }

    fn write_attribute_statement(&self, xml: &mut String) {
        // The schema wants at least one Attribute in an AttributeStatement.
        if self.attributes.is_empty() {
            return;
        }
        xml.push_str("    <saml:AttributeStatement>\n");
        for attribute in &self.attributes {
            let mut names = vec![("Name", attribute.name.clone())];
            if let Some(format) = &attribute.name_format {
                names.push(("NameFormat", format.clone()));
            }
            if let Some(friendly) = &attribute.friendly_name {
                names.push(("FriendlyName", friendly.clone()));
            }
            xml.push_str("      <saml:Attribute");
            write_attributes(xml, &names);
            xml.push_str(">\n");
            for value in &attribute.values {
                element_line(
                    xml,
                    4,
                    "saml:AttributeValue",
                    &[("xsi:type", "xs:string".to_string())],
                    value,
                );
            }
            xml.push_str("      </saml:Attribute>\n");
        }
        xml.push_str("    </saml:AttributeStatement>\n");
    }
}

/// An ID from 128 random bits: `_` and 32 hex digits (an NCName, as xs:ID requires).
pub fn random_id() -> Result<String, IdpError> {
    let mut bytes = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| IdpError::Key {
            reason: "the system random generator failed".into(),
        })?;
    Ok(format!("_{}", hex(&bytes)))
}

fn derived_id(label: &str, seed: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, format!("{label}\n{seed}").as_bytes());
    format!("_{}", hex(&digest.as_ref()[..16]))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut text, byte| {
        let _ = write!(text, "{byte:02x}");
        text
    })
}

/// IdP metadata (SAML Metadata 2.0 §2.4.3): one IDPSSODescriptor for SAML 2.0 with the
/// signing certificate and HTTP-Redirect and HTTP-POST SSO endpoints at `sso_url`.
pub fn metadata_xml(entity_id: &str, sso_url: &str, certificate_pem: &str) -> String {
    let certificate: String = certificate_pem
        .lines()
        .filter(|line| !line.trim_start().starts_with("-----"))
        .map(str::trim)
        .collect();
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        xml,
        "<md:EntityDescriptor xmlns:md=\"{METADATA_NAMESPACE}\" \
         xmlns:ds=\"{DSIG_NAMESPACE}\" entityID=\"{}\">",
        escape_attribute(entity_id)
    );
    let _ = writeln!(
        xml,
        "  <md:IDPSSODescriptor WantAuthnRequestsSigned=\"false\" \
         protocolSupportEnumeration=\"{PROTOCOL_NAMESPACE}\">"
    );
    xml.push_str("    <md:KeyDescriptor use=\"signing\">\n");
    xml.push_str("      <ds:KeyInfo>\n        <ds:X509Data>\n");
    element_line(&mut xml, 5, "ds:X509Certificate", &[], &certificate);
    xml.push_str("        </ds:X509Data>\n      </ds:KeyInfo>\n");
    xml.push_str("    </md:KeyDescriptor>\n");
    element_line(&mut xml, 2, "md:NameIDFormat", &[], NAME_ID_FORMAT_EMAIL);
    for binding in ["HTTP-Redirect", "HTTP-POST"] {
        empty_line(
            &mut xml,
            2,
            "md:SingleSignOnService",
            &[
                (
                    "Binding",
                    format!("urn:oasis:names:tc:SAML:2.0:bindings:{binding}"),
                ),
                ("Location", sso_url.to_string()),
            ],
        );
    }
    xml.push_str("  </md:IDPSSODescriptor>\n</md:EntityDescriptor>\n");
    xml
}

/// Base64 of `xml` for the `SAMLResponse` form field of the HTTP-POST binding.
pub fn post_binding_value(xml: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(xml)
}

// ---------------------------------------------------------------------------------------
// Signing

/// The element a signature envelops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Response,
    Assertion,
}

/// In signing order: the Assertion before the Response, so that the Response's digest
/// covers the Assertion's finished signature.
fn targets(sign: Sign) -> &'static [Target] {
    match sign {
        Sign::Response => &[Target::Response],
        Sign::Assertion => &[Target::Assertion],
        Sign::Both => &[Target::Assertion, Target::Response],
        Sign::None => &[],
    }
}

fn parse_target(xml: &str, target: Target) -> Result<(Document, NodeId), IdpError> {
    let document = Document::parse(xml.as_bytes(), &IDP_XML)?;
    let root = document.root();
    let element = match target {
        Target::Response => Some(root),
        Target::Assertion => document
            .children_named(root, ASSERTION_NAMESPACE, "Assertion")
            .next(),
    }
    .ok_or_else(|| IdpError::Unsignable {
        reason: format!("no {target:?} element"),
    })?;
    Ok((document, element))
}

fn element_id(document: &Document, element: NodeId) -> Result<String, IdpError> {
    document
        .attribute(element, "ID")
        .filter(|id| !id.is_empty())
        .map(str::to_string)
        .ok_or_else(|| IdpError::Unsignable {
            reason: "the element to sign has no ID".into(),
        })
}

/// Where the Signature goes: right after the element's Issuer, as the SAML schema orders
/// the children of Response and Assertion (Core §3.2.2, §2.3.3).
fn issuer_end(document: &Document, element: NodeId) -> Result<usize, IdpError> {
    document
        .children_named(element, ASSERTION_NAMESPACE, "Issuer")
        .next()
        .and_then(|issuer| document.element(issuer))
        .map(|issuer| issuer.span.end)
        .ok_or_else(|| IdpError::Unsignable {
            reason: "the element to sign has no Issuer to put the Signature after".into(),
        })
}

/// Signs `target` in `xml` with an enveloped signature.
///
/// The digest is taken before the Signature exists: the enveloped-signature transform
/// removes exactly what is inserted, and the insertion touches no text node, so the
/// verifier's canonical form equals this one. SignedInfo is canonicalised where it finally
/// sits (inserted with an empty SignatureValue, re-parsed), so no argument about which
/// namespaces are in scope is needed.
fn sign_element(xml: &str, target: Target, signer: &Signer) -> Result<String, IdpError> {
    let (document, element) = parse_target(xml, target)?;
    let id = element_id(&document, element)?;
    let mut canonical = Vec::new();
    c14n::canonicalize(
        &document,
        element,
        &Method::exclusive(),
        None,
        &mut canonical,
    );
    let digest_value =
        base64::engine::general_purpose::STANDARD.encode(signer.digest().digest(&canonical));
    let signature = SignatureText {
        reference_id: &id,
        algorithm: signer.algorithm(),
        digest: signer.digest(),
        digest_value: &digest_value,
        certificate_base64: Some(signer.certificate_base64()),
    }
    .render();
    let at = issuer_end(&document, element)?;
    let mut xml = xml.to_string();
    xml.insert_str(at, &signature);

    let (document, element) = parse_target(&xml, target)?;
    let signature_node = document
        .children_named(element, DSIG_NAMESPACE, "Signature")
        .next()
        .ok_or_else(|| IdpError::Unsignable {
            reason: "the inserted Signature is not a child of the signed element".into(),
        })?;
    let signed_info = document
        .children_named(signature_node, DSIG_NAMESPACE, "SignedInfo")
        .next()
        .ok_or_else(|| IdpError::Unsignable {
            reason: "the inserted Signature has no SignedInfo".into(),
        })?;
    let value_at = document
        .children_named(signature_node, DSIG_NAMESPACE, "SignatureValue")
        .next()
        .and_then(|value| document.element(value))
        .map(|value| value.span.start + "<ds:SignatureValue>".len())
        .ok_or_else(|| IdpError::Unsignable {
            reason: "the inserted Signature has no SignatureValue".into(),
        })?;
    let mut canonical_signed_info = Vec::new();
    c14n::canonicalize(
        &document,
        signed_info,
        &Method::exclusive(),
        None,
        &mut canonical_signed_info,
    );
    let value = signer.sign(&canonical_signed_info)?;
    xml.insert_str(
        value_at,
        &base64::engine::general_purpose::STANDARD.encode(value),
    );
    Ok(xml)
}

/// The text of one `ds:Signature`. It declares its own `ds` prefix, so it canonicalises the
/// same wherever it is put.
struct SignatureText<'a> {
    reference_id: &'a str,
    algorithm: SignatureAlgorithm,
    digest: DigestAlgorithm,
    /// Empty in an xmlsec1 template.
    digest_value: &'a str,
    /// `None` leaves an empty X509Data for xmlsec1 to fill from the key file.
    certificate_base64: Option<&'a str>,
}

impl SignatureText<'_> {
    fn render(&self) -> String {
        let exclusive = c14n::EXCLUSIVE;
        let key_info = match self.certificate_base64 {
            Some(certificate) => format!(
                "<ds:X509Data><ds:X509Certificate>{certificate}</ds:X509Certificate></ds:X509Data>"
            ),
            None => "<ds:X509Data/>".to_string(),
        };
        format!(
            "<ds:Signature xmlns:ds=\"{DSIG_NAMESPACE}\"><ds:SignedInfo>\
             <ds:CanonicalizationMethod Algorithm=\"{exclusive}\"/>\
             <ds:SignatureMethod Algorithm=\"{method}\"/>\
             <ds:Reference URI=\"#{id}\"><ds:Transforms>\
             <ds:Transform Algorithm=\"{ENVELOPED_SIGNATURE}\"/>\
             <ds:Transform Algorithm=\"{exclusive}\"/></ds:Transforms>\
             <ds:DigestMethod Algorithm=\"{digest}\"/>\
             <ds:DigestValue>{digest_value}</ds:DigestValue></ds:Reference></ds:SignedInfo>\
             <ds:SignatureValue></ds:SignatureValue>\
             <ds:KeyInfo>{key_info}</ds:KeyInfo></ds:Signature>",
            method = self.algorithm.uri(),
            id = escape_attribute(self.reference_id),
            digest = self.digest.uri(),
            digest_value = self.digest_value,
        )
    }
}

// ---------------------------------------------------------------------------------------
// Writing XML

fn write_attributes(xml: &mut String, attributes: &[(&str, String)]) {
    for (name, value) in attributes {
        let _ = write!(xml, " {name}=\"{}\"", escape_attribute(value));
    }
}

fn indent(xml: &mut String, level: usize) {
    for _ in 0..level {
        xml.push_str("  ");
    }
}

/// `<name attributes>text</name>` on its own line.
fn element_line(
    xml: &mut String,
    level: usize,
    name: &str,
    attributes: &[(&str, String)],
    text: &str,
) {
    indent(xml, level);
    let _ = write!(xml, "<{name}");
    write_attributes(xml, attributes);
    let _ = writeln!(xml, ">{}</{name}>", escape_text(text));
}

/// `<name attributes/>` on its own line.
fn empty_line(xml: &mut String, level: usize, name: &str, attributes: &[(&str, String)]) {
    indent(xml, level);
    let _ = write!(xml, "<{name}");
    write_attributes(xml, attributes);
    xml.push_str("/>\n");
}

/// Character data: markup escaped, and CR as a reference so that line-end normalisation
/// (XML 1.0 §2.11) does not change the value.
fn escape_text(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '\r' => escaped.push_str("&#13;"),
            _ => escaped.push(c),
        }
    }
    escaped
}

/// Attribute values: also quotes, and white space as references so that attribute-value
/// normalisation (XML 1.0 §3.3.3) keeps it.
fn escape_attribute(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '"' => escaped.push_str("&quot;"),
            '\t' => escaped.push_str("&#9;"),
            '\n' => escaped.push_str("&#10;"),
            '\r' => escaped.push_str("&#13;"),
            _ => escaped.push(c),
        }
    }
    escaped
}

#[cfg(test)]
mod tests;
