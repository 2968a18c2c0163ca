//! The signed-message builder shared by the attack and rule tests: a valid login response
//! whose parts a test varies, signed by xmlsec1 (the reference implementation, never our
//! own code), and helpers to cut elements out of the signed text.
// Each test crate that includes this module uses a different part of it.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;

use jitledger::saml::limits;

pub const IDP: &str = "https://idp.example.com/metadata";
pub const SP: &str = "https://sp.example.com/metadata";
pub const ACS: &str = "https://sp.example.com/acs";
pub const NOW: &str = "2026-06-01T12:00:00Z";
pub const REQUEST_ID: &str = "_request-1";

pub const RSA_SHA256: &str = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256";
pub const RSA_SHA1: &str = "http://www.w3.org/2000/09/xmldsig#rsa-sha1";
pub const ECDSA_SHA256: &str = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256";
pub const SHA256: &str = "http://www.w3.org/2001/04/xmlenc#sha256";
pub const SHA1: &str = "http://www.w3.org/2000/09/xmldsig#sha1";

pub fn keys_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/keys")
}

/// Where signatures go.
#[derive(Clone, Copy, PartialEq)]
pub enum Sign {
    Response,
    Assertion,
    Both,
}

/// The parts of a login response an attack varies; `login()` is a valid one.
#[derive(Clone)]
pub struct Login {
    pub response_issuer: String,
    pub assertion_issuer: String,
    pub destination: Option<String>,
    pub recipient: String,
    pub audience: String,
    pub in_response_to: Option<String>,
    pub status: String,
    pub name_id: String,
    pub attributes: String,
    pub not_before: String,
    pub not_on_or_after: String,
    pub extra_response_children: String,
    pub signature_method: &'static str,
    pub digest_method: &'static str,
    /// The Assertion signature's Reference URI (normally `#_assertion-1`).
    pub assertion_reference: String,
}

pub fn login() -> Login {
    Login {
        response_issuer: IDP.to_string(),
        assertion_issuer: IDP.to_string(),
        destination: Some(ACS.to_string()),
        recipient: ACS.to_string(),
        audience: SP.to_string(),
        in_response_to: Some(REQUEST_ID.to_string()),
        status: "urn:oasis:names:tc:SAML:2.0:status:Success".to_string(),
        name_id: "alice@example.com".to_string(),
        attributes: attribute("role", "Developer"),
        not_before: "2026-06-01T11:55:00Z".to_string(),
        not_on_or_after: "2026-06-01T12:05:00Z".to_string(),
        extra_response_children: String::new(),
        signature_method: RSA_SHA256,
        digest_method: SHA256,
        assertion_reference: "#_assertion-1".to_string(),
    }
}

pub fn attribute(name: &str, value: &str) -> String {
    format!(
        "<saml:Attribute Name=\"{name}\"><saml:AttributeValue>{value}</saml:AttributeValue></saml:Attribute>"
    )
}

pub fn signature_template(reference: &str, login: &Login) -> String {
    format!(
        concat!(
            "<ds:Signature xmlns:ds=\"http://www.w3.org/2000/09/xmldsig#\"><ds:SignedInfo>",
            "<ds:CanonicalizationMethod Algorithm=\"http://www.w3.org/2001/10/xml-exc-c14n#\"/>",
            "<ds:SignatureMethod Algorithm=\"{method}\"/><ds:Reference URI=\"{reference}\">",
            "<ds:Transforms>",
            "<ds:Transform Algorithm=\"http://www.w3.org/2000/09/xmldsig#enveloped-signature\"/>",
            "<ds:Transform Algorithm=\"http://www.w3.org/2001/10/xml-exc-c14n#\"/>",
            "</ds:Transforms><ds:DigestMethod Algorithm=\"{digest}\"/><ds:DigestValue/>",
            "</ds:Reference></ds:SignedInfo><ds:SignatureValue/>",
            "<ds:KeyInfo><ds:X509Data/></ds:KeyInfo></ds:Signature>"
        ),
        method = login.signature_method,
        digest = login.digest_method,
        reference = reference,
    )
}

impl Login {
    pub fn assertion_xml(&self, signed: bool) -> String {
        let in_response_to = self
            .in_response_to
            .as_ref()
            .map(|id| format!(" InResponseTo=\"{id}\""))
            .unwrap_or_default();
        let signature = if signed {
            signature_template(&self.assertion_reference, self)
        } else {
            String::new()
        };
        format!(
            concat!(
                "<saml:Assertion ID=\"_assertion-1\" Version=\"2.0\" IssueInstant=\"2026-06-01T11:59:00Z\">",
                "<saml:Issuer>{issuer}</saml:Issuer>{signature}",
                "<saml:Subject><saml:NameID Format=\"urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress\">",
                "{name_id}</saml:NameID>",
                "<saml:SubjectConfirmation Method=\"urn:oasis:names:tc:SAML:2.0:cm:bearer\">",
                "<saml:SubjectConfirmationData Recipient=\"{recipient}\" NotOnOrAfter=\"{not_on_or_after}\"{irt}/>",
                "</saml:SubjectConfirmation></saml:Subject>",
                "<saml:Conditions NotBefore=\"{not_before}\" NotOnOrAfter=\"{not_on_or_after}\">",
                "<saml:AudienceRestriction><saml:Audience>{audience}</saml:Audience></saml:AudienceRestriction>",
                "</saml:Conditions>",
                "<saml:AuthnStatement AuthnInstant=\"2026-06-01T11:59:00Z\" SessionIndex=\"_session-1\">",
                "<saml:AuthnContext><saml:AuthnContextClassRef>urn:oasis:names:tc:SAML:2.0:ac:classes:Password",
                "</saml:AuthnContextClassRef></saml:AuthnContext></saml:AuthnStatement>",
                "<saml:AttributeStatement>{attributes}</saml:AttributeStatement></saml:Assertion>"
            ),
            issuer = self.assertion_issuer,
            signature = signature,
            name_id = self.name_id,
            recipient = self.recipient,
            not_on_or_after = self.not_on_or_after,
            irt = in_response_to,
            not_before = self.not_before,
            audience = self.audience,
            attributes = self.attributes,
        )
    }

    /// The unsigned template: signature elements in place, values empty.
    pub fn template(&self, sign: Sign) -> String {
        let destination = self
            .destination
            .as_ref()
            .map(|d| format!(" Destination=\"{d}\""))
            .unwrap_or_default();
        let in_response_to = self
            .in_response_to
            .as_ref()
            .map(|id| format!(" InResponseTo=\"{id}\""))
            .unwrap_or_default();
        let response_signature = if sign != Sign::Assertion {
            signature_template("#_response-1", self)
        } else {
            String::new()
        };
        format!(
            concat!(
                "<samlp:Response xmlns:samlp=\"urn:oasis:names:tc:SAML:2.0:protocol\" ",
                "xmlns:saml=\"urn:oasis:names:tc:SAML:2.0:assertion\" ID=\"_response-1\" Version=\"2.0\" ",
                "IssueInstant=\"2026-06-01T11:59:00Z\"{destination}{irt}>",
                "<saml:Issuer>{issuer}</saml:Issuer>{signature}{extra}",
                "<samlp:Status><samlp:StatusCode Value=\"{status}\"/></samlp:Status>",
                "{assertion}</samlp:Response>"
            ),
            destination = destination,
            irt = in_response_to,
            issuer = self.response_issuer,
            signature = response_signature,
            extra = self.extra_response_children,
            status = self.status,
            assertion = self.assertion_xml(sign != Sign::Response),
        )
    }

    pub fn signed(&self, sign: Sign) -> String {
        self.signed_with(sign, "rsa2048")
    }

    /// The template with `edit` applied before xmlsec1 signs it, so the signature is genuine.
    pub fn signed_after(&self, sign: Sign, edit: impl FnOnce(String) -> String) -> String {
        let template = self.template(sign);
        let edited = edit(template.clone());
        assert_ne!(edited, template, "the edit changed nothing");
        sign_template(&edited, sign, "rsa2048")
    }

    /// Signs with xmlsec1 (see [`sign_template`]).
    pub fn signed_with(&self, sign: Sign, key: &str) -> String {
        sign_template(&self.template(sign), sign, key)
    }
}

pub fn xmlsec1_sign(xml: &str, key: &str, node_xpath: &str) -> String {
    let directory = tempfile::tempdir().unwrap();
    let input = directory.path().join("in.xml");
    let output = directory.path().join("out.xml");
    std::fs::write(&input, xml).unwrap();
    let keys = keys_dir();
    let key_pair = format!(
        "{},{}",
        keys.join(format!("{key}.key.pem")).display(),
        keys.join(format!("{key}.cert.pem")).display()
    );
    let status = Command::new("xmlsec1")
        .args(["--sign", "--privkey-pem", &key_pair])
        .args([
            "--id-attr:ID",
            "urn:oasis:names:tc:SAML:2.0:protocol:Response",
        ])
        .args([
            "--id-attr:ID",
            "urn:oasis:names:tc:SAML:2.0:assertion:Assertion",
        ])
        .args(["--node-xpath", node_xpath, "--output"])
        .args([&output, &input])
        .status()
        .expect("xmlsec1 is needed by the tests: run tools/test, which installs it");
    assert!(status.success(), "xmlsec1 could not sign");
    let signed = std::fs::read_to_string(&output).unwrap();
    // Drop the XML declaration xmlsec1 adds, so attacks can splice documents together.
    signed
        .strip_prefix("<?xml version=\"1.0\"?>\n")
        .unwrap_or(&signed)
        .to_string()
}

/// The byte range of the first element whose start tag begins with `start` ("<saml:Assertion").
/// Fragments are parsed inside a wrapper that declares the prefixes they use.
pub fn element_range(xml: &str, start: &str) -> std::ops::Range<usize> {
    let open = concat!(
        "<wrapper xmlns:samlp=\"urn:oasis:names:tc:SAML:2.0:protocol\" ",
        "xmlns:saml=\"urn:oasis:names:tc:SAML:2.0:assertion\" ",
        "xmlns:ds=\"http://www.w3.org/2000/09/xmldsig#\">"
    );
    let wrapped = format!("{open}{xml}</wrapper>");
    let document =
        jitledger::saml::xml::Document::parse(wrapped.as_bytes(), &limits::METADATA_XML).unwrap();
    document
        .elements()
        .map(|id| document.element(id).unwrap().span.clone())
        .find(|span| wrapped[span.clone()].starts_with(start))
        .map(|span| span.start - open.len()..span.end - open.len())
        .unwrap_or_else(|| panic!("no element {start}"))
}

pub fn element<'x>(xml: &'x str, start: &str) -> &'x str {
    &xml[element_range(xml, start)]
}

pub fn without(xml: &str, start: &str) -> String {
    let range = element_range(xml, start);
    format!("{}{}", &xml[..range.start], &xml[range.end..])
}

/// The Response and Assertion signature positions, as xmlsec1 `--node-xpath` selects them.
pub const RESPONSE_SIGNATURE: &str = "/*[local-name()='Response']/*[local-name()='Signature']";
pub const ASSERTION_SIGNATURE: &str =
    "/*[local-name()='Response']/*[local-name()='Assertion']/*[local-name()='Signature']";

/// Signs a template with xmlsec1: the Assertion first, so that a Response signature covers it.
pub fn sign_template(template: &str, sign: Sign, key: &str) -> String {
    let positions: &[&str] = match sign {
        Sign::Response => &[RESPONSE_SIGNATURE],
        Sign::Assertion => &[ASSERTION_SIGNATURE],
        Sign::Both => &[ASSERTION_SIGNATURE, RESPONSE_SIGNATURE],
    };
    let mut xml = template.to_string();
    for position in positions {
        xml = xmlsec1_sign(&xml, key, position);
    }
    xml
}
