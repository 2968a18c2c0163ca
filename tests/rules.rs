//! One test per validation rule that no focused test pinned down: found by removing each rule
//! from the code in turn (mutation testing) and seeing every other test still pass, or only
//! the interoperability corpus as a whole fail. Each test changes exactly one thing in an
//! otherwise valid, genuinely signed message, so that only the rule under test can refuse it.
//!
//! As in tests/attacks.rs, messages are signed by xmlsec1 (the reference XML-DSig
//! implementation), never by our own code, with the builder in tests/support.

use std::path::PathBuf;

mod support;

use support::*;

use jitledger::saml::dsig::{self, DsigPolicy};
use jitledger::saml::keys::{KeyError, SignatureAlgorithm, SigningKey};
use jitledger::saml::metadata::parse_idp_metadata;
use jitledger::saml::response::{
    ExpectedRequests, IdpTrust, ParsedResponse, SpSettings, ValidatedLogin,
};
use jitledger::saml::xml::Document;
use jitledger::saml::{SamlError, instant, limits};

const EXC_C14N: &str = "http://www.w3.org/2001/10/xml-exc-c14n#";
const C14N: &str = "http://www.w3.org/TR/2001/REC-xml-c14n-20010315";
const ENVELOPED: &str = "http://www.w3.org/2000/09/xmldsig#enveloped-signature";

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/interop")
}

fn certificate(key: &str) -> SigningKey {
    let pem = std::fs::read_to_string(keys_dir().join(format!("{key}.cert.pem"))).unwrap();
    SigningKey::from_certificate_text(&pem).unwrap()
}

fn trust(key: &str, allow_sha1: bool) -> IdpTrust {
    IdpTrust {
        entity_id: IDP.to_string(),
        signing_keys: vec![certificate(key)],
        allow_sha1,
    }
}

fn sp() -> SpSettings {
    SpSettings {
        entity_id: SP.to_string(),
        acs_url: ACS.to_string(),
        clock_skew_seconds: 120,
        allow_idp_initiated: true,
    }
}

fn validate_with(xml: &str, trust: &IdpTrust) -> Result<ValidatedLogin, SamlError> {
    let expected: ExpectedRequests = [REQUEST_ID].into_iter().collect();
    let now = instant::parse(NOW).unwrap();
    ParsedResponse::parse(xml.as_bytes())?.validate(trust, &sp(), &expected, now)
}

fn validate(xml: &str) -> Result<ValidatedLogin, SamlError> {
    validate_with(xml, &trust("rsa2048", false))
}

/// The refusal code for `xml`, or "accepted".
fn code(xml: &str) -> &'static str {
    match validate(xml) {
        Ok(_) => "accepted",
        Err(error) => error.code(),
    }
}

/// The code for the valid login with `edit` applied to its template before signing, signed
/// at the Response (which covers everything, so every edit is inside a verified signature).
fn code_after(edit: impl FnOnce(String) -> String) -> &'static str {
    code(&login().signed_after(Sign::Response, edit))
}

/// `text` with the one occurrence of `from` replaced; fails if there is not exactly one.
fn replace_once(text: &str, from: &str, to: &str) -> String {
    assert_eq!(text.matches(from).count(), 1, "{from:?} is not unique");
    text.replacen(from, to, 1)
}

// ---- baseline: every edit below is refused only because of the rule it names.

#[test]
fn untampered_responses_are_accepted() {
    for sign in [Sign::Response, Sign::Assertion] {
        let login = validate(&login().signed(sign)).unwrap();
        assert_eq!(login.name_id().value, "alice@example.com");
    }
}

// ---------------------------------------------------------------------------------------
// Response structure
// ---------------------------------------------------------------------------------------

#[test]
fn unsigned_error_response_without_assertion_is_signature_missing() {
    // Nothing is signed: the refusal must say so, not report the unverified status.
    let mut spec = login();
    spec.status = "urn:oasis:names:tc:SAML:2.0:status:Responder".to_string();
    let unsigned = without(&spec.template(Sign::Assertion), "<saml:Assertion");
    assert_eq!(code(&unsigned), "signature_missing");
    // Signed, the same error response reports its status.
    let signed = sign_template(
        &without(&spec.template(Sign::Response), "<saml:Assertion"),
        Sign::Response,
        "rsa2048",
    );
    assert_eq!(code(&signed), "status_not_success");
}

#[test]
fn two_signatures_on_the_response_are_refused() {
    let signed = login().signed(Sign::Response);
    let signature = element(&signed, "<ds:Signature").to_string();
    let attack = signed.replacen(&signature, &format!("{signature}{signature}"), 1);
    assert_eq!(code(&attack), "signature_wrapping");
}

#[test]
fn two_signatures_on_the_assertion_are_refused() {
    let signed = login().signed(Sign::Assertion);
    let signature = element(&signed, "<ds:Signature").to_string();
    let attack = signed.replacen(&signature, &format!("{signature}{signature}"), 1);
    assert_eq!(code(&attack), "signature_wrapping");
}

// ---------------------------------------------------------------------------------------
// XML-DSig
// ---------------------------------------------------------------------------------------

#[test]
fn signature_that_is_not_a_child_of_the_signed_element_does_not_verify() {
    // A genuine signature inside the Assertion whose Reference covers the whole Response
    // (its grandparent), checked directly against the Response: what it references and
    // what it was computed over agree, only its place is wrong.
    let mut spec = login();
    spec.assertion_reference = "#_response-1".to_string();
    let signed = sign_template(&spec.template(Sign::Assertion), Sign::Assertion, "rsa2048");
    let document = Document::parse(signed.as_bytes(), &limits::RESPONSE_XML).unwrap();
    let signature = document
        .elements()
        .find(|id| document.is_named(*id, dsig::DSIG_NAMESPACE, "Signature"))
        .unwrap();
    assert_ne!(document.parent(signature), Some(document.root()));
    let keys = [certificate("rsa2048")];
    let result = dsig::verify_enveloped(
        &document,
        document.root(),
        signature,
        &keys,
        DsigPolicy::default(),
    );
    assert_eq!(result.map_err(|e| e.code()), Err("signature_wrapping"));

    // The same call on a signature that is the Response's child verifies.
    let signed = login().signed(Sign::Response);
    let document = Document::parse(signed.as_bytes(), &limits::RESPONSE_XML).unwrap();
    let signature = document
        .child_elements(document.root())
        .find(|id| document.is_named(*id, dsig::DSIG_NAMESPACE, "Signature"))
        .unwrap();
    let verified = dsig::verify_enveloped(
        &document,
        document.root(),
        signature,
        &keys,
        DsigPolicy::default(),
    )
    .unwrap();
    assert_eq!(verified.element(), document.root());
}

#[test]
fn rsa_sha1_signature_method_is_refused_unless_allowed_even_with_a_sha256_digest() {
    let mut spec = login();
    spec.signature_method = RSA_SHA1;
    let signed = spec.signed(Sign::Response);
    assert!(signed.contains(SHA256) && signed.contains(RSA_SHA1));
    assert_eq!(code(&signed), "unsupported_algorithm");
    assert!(validate_with(&signed, &trust("rsa2048", true)).is_ok());
}

#[test]
fn parameters_of_a_canonicalization_method_are_refused() {
    // xmlsec1 signs with the parameter present (inclusive C14N has none, so it ignores
    // it): the signature is genuine, and only the parameter is wrong.
    let with_parameter = concat!(
        "<ds:CanonicalizationMethod Algorithm=\"http://www.w3.org/TR/2001/REC-xml-c14n-20010315\">",
        "<ec:InclusiveNamespaces xmlns:ec=\"http://www.w3.org/2001/10/xml-exc-c14n#\" PrefixList=\"saml\"/>",
        "</ds:CanonicalizationMethod>"
    );
    let signed = login().signed_after(Sign::Response, |template| {
        replace_once(
            &template,
            &format!("<ds:CanonicalizationMethod Algorithm=\"{EXC_C14N}\"/>"),
            with_parameter,
        )
    });
    assert_eq!(code(&signed), "unsupported_algorithm");
    // Without the parameter, the same method is accepted.
    let plain = login().signed_after(Sign::Response, |template| {
        replace_once(
            &template,
            &format!("<ds:CanonicalizationMethod Algorithm=\"{EXC_C14N}\"/>"),
            &format!("<ds:CanonicalizationMethod Algorithm=\"{C14N}\"/>"),
        )
    });
    assert_eq!(code(&plain), "accepted");
}

#[test]
fn parameters_of_a_canonicalization_transform_are_refused() {
    let signed = login().signed_after(Sign::Response, |template| {
        replace_once(
            &template,
            &format!("<ds:Transform Algorithm=\"{EXC_C14N}\"/>"),
            &format!("<ds:Transform Algorithm=\"{C14N}\"><ds:XPath>1</ds:XPath></ds:Transform>"),
        )
    });
    assert_eq!(code(&signed), "unsupported_algorithm");
}

#[test]
fn reference_without_the_enveloped_signature_transform_is_refused() {
    // Without transforms xmlsec1 would digest the signature template too, so the Response
    // is signed while the Signature is its sibling, and the Signature is then moved into it:
    // the DigestValue is then that of the Response minus the Signature, which is exactly
    // what the enveloped-signature transform would have produced. Only the transform is
    // missing.
    let response = without(&login().template(Sign::Assertion), "<ds:Signature");
    let signature = concat!(
        "<ds:Signature xmlns:ds=\"http://www.w3.org/2000/09/xmldsig#\"><ds:SignedInfo>",
        "<ds:CanonicalizationMethod Algorithm=\"http://www.w3.org/2001/10/xml-exc-c14n#\"/>",
        "<ds:SignatureMethod Algorithm=\"http://www.w3.org/2001/04/xmldsig-more#rsa-sha256\"/>",
        "<ds:Reference URI=\"#_response-1\">",
        "<ds:DigestMethod Algorithm=\"http://www.w3.org/2001/04/xmlenc#sha256\"/><ds:DigestValue/>",
        "</ds:Reference></ds:SignedInfo><ds:SignatureValue/></ds:Signature>"
    );
    let detached = xmlsec1_sign(
        &format!("<wrapper>{response}{signature}</wrapper>"),
        "rsa2048",
        "/*/*[local-name()='Signature']",
    );
    let signature = element(&detached, "<ds:Signature");
    assert!(!signature.contains(ENVELOPED));
    let attack = response.replacen("</saml:Issuer>", &format!("</saml:Issuer>{signature}"), 1);
    assert_eq!(code(&attack), "signature_invalid");
}

// ---------------------------------------------------------------------------------------
// Business rules, each on a message whose signature verifies
// ---------------------------------------------------------------------------------------

#[test]
fn response_version_other_than_2_0_is_refused() {
    let code = code_after(|t| {
        replace_once(
            &t,
            "ID=\"_response-1\" Version=\"2.0\"",
            "ID=\"_response-1\" Version=\"2.1\"",
        )
    });
    assert_eq!(code, "malformed_xml");
}

#[test]
fn assertion_version_other_than_2_0_is_refused() {
    let code = code_after(|t| {
        replace_once(
            &t,
            "ID=\"_assertion-1\" Version=\"2.0\"",
            "ID=\"_assertion-1\" Version=\"2.1\"",
        )
    });
    assert_eq!(code, "malformed_xml");
}

#[test]
fn response_issue_instant_in_the_future_is_refused() {
    // 12:03 is beyond NOW plus 120 s of skew; every other bound holds.
    let code = code_after(|t| {
        replace_once(
            &t,
            "Version=\"2.0\" IssueInstant=\"2026-06-01T11:59:00Z\" Destination",
            "Version=\"2.0\" IssueInstant=\"2026-06-01T12:03:00Z\" Destination",
        )
    });
    assert_eq!(code, "assertion_not_yet_valid");
}

#[test]
fn assertion_issue_instant_in_the_future_is_refused() {
    let code = code_after(|t| {
        replace_once(
            &t,
            "<saml:Assertion ID=\"_assertion-1\" Version=\"2.0\" IssueInstant=\"2026-06-01T11:59:00Z\">",
            "<saml:Assertion ID=\"_assertion-1\" Version=\"2.0\" IssueInstant=\"2026-06-01T12:03:00Z\">",
        )
    });
    assert_eq!(code, "assertion_not_yet_valid");
}

#[test]
fn empty_name_id_is_refused() {
    for name_id in ["", " \n "] {
        let mut spec = login();
        spec.name_id = name_id.to_string();
        assert_eq!(
            code(&spec.signed(Sign::Response)),
            "malformed_xml",
            "{name_id:?}"
        );
    }
}

#[test]
fn subject_confirmation_other_than_bearer_is_refused() {
    let code = code_after(|t| {
        replace_once(
            &t,
            "Method=\"urn:oasis:names:tc:SAML:2.0:cm:bearer\"",
            "Method=\"urn:oasis:names:tc:SAML:2.0:cm:holder-of-key\"",
        )
    });
    assert_eq!(code, "malformed_xml");
}

#[test]
fn expired_subject_confirmation_data_is_refused() {
    // Only the SubjectConfirmationData bound has passed; Conditions still hold.
    let code = code_after(|t| {
        replace_once(
            &t,
            "NotOnOrAfter=\"2026-06-01T12:05:00Z\" InResponseTo",
            "NotOnOrAfter=\"2026-06-01T11:50:00Z\" InResponseTo",
        )
    });
    assert_eq!(code, "assertion_expired");
}

#[test]
fn subject_confirmation_data_without_not_on_or_after_is_refused() {
    let code = code_after(|t| {
        replace_once(
            &t,
            " NotOnOrAfter=\"2026-06-01T12:05:00Z\" InResponseTo",
            " InResponseTo",
        )
    });
    assert_eq!(code, "malformed_xml");
}

#[test]
fn subject_confirmation_data_not_before_in_the_future_is_refused() {
    let code = code_after(|t| {
        replace_once(
            &t,
            "<saml:SubjectConfirmationData Recipient",
            "<saml:SubjectConfirmationData NotBefore=\"2026-06-01T12:03:00Z\" Recipient",
        )
    });
    assert_eq!(code, "assertion_not_yet_valid");
}

#[test]
fn conditions_not_before_in_the_future_is_refused() {
    // Only Conditions NotBefore is in the future; every IssueInstant is in the past.
    let mut spec = login();
    spec.not_before = "2026-06-01T12:03:00Z".to_string();
    assert_eq!(
        code(&spec.signed(Sign::Response)),
        "assertion_not_yet_valid"
    );
}

#[test]
fn expired_conditions_are_refused() {
    // Only Conditions NotOnOrAfter has passed; the SubjectConfirmationData bound holds.
    let code = code_after(|t| {
        replace_once(
            &t,
            "NotOnOrAfter=\"2026-06-01T12:05:00Z\">",
            "NotOnOrAfter=\"2026-06-01T11:50:00Z\">",
        )
    });
    assert_eq!(code, "assertion_expired");
}

#[test]
fn conditions_without_audience_restriction_are_refused() {
    let code = code_after(|t| {
        let restriction = element(&t, "<saml:AudienceRestriction").to_string();
        replace_once(&t, &restriction, "")
    });
    assert_eq!(code, "audience_mismatch");
}

#[test]
fn every_audience_restriction_must_name_the_sp() {
    let other = concat!(
        "<saml:AudienceRestriction><saml:Audience>https://other-sp.example</saml:Audience>",
        "</saml:AudienceRestriction>"
    );
    for other_first in [false, true] {
        let code = code_after(|t| {
            let ours = element(&t, "<saml:AudienceRestriction").to_string();
            let both = if other_first {
                format!("{other}{ours}")
            } else {
                format!("{ours}{other}")
            };
            replace_once(&t, &ours, &both)
        });
        assert_eq!(code, "audience_mismatch", "other first: {other_first}");
    }
}

#[test]
fn two_authn_statements_are_refused() {
    let code = code_after(|t| {
        let statement = element(&t, "<saml:AuthnStatement").to_string();
        replace_once(&t, &statement, &format!("{statement}{statement}"))
    });
    assert_eq!(code, "malformed_xml");
}

#[test]
fn expired_session_is_refused() {
    let code = code_after(|t| {
        replace_once(
            &t,
            "SessionIndex=\"_session-1\"",
            "SessionIndex=\"_session-1\" SessionNotOnOrAfter=\"2026-06-01T11:50:00Z\"",
        )
    });
    assert_eq!(code, "assertion_expired");
}

#[test]
fn attribute_named_twice_is_ambiguous() {
    let mut spec = login();
    spec.attributes = format!(
        "{}{}",
        attribute("role", "Developer"),
        attribute("role", "Admin")
    );
    assert_eq!(code(&spec.signed(Sign::Response)), "ambiguous_attribute");
}

#[test]
fn nil_attribute_values_are_left_out_and_empty_ones_kept() {
    let mut spec = login();
    spec.attributes = concat!(
        "<saml:Attribute Name=\"manager\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\">",
        "<saml:AttributeValue xsi:nil=\"true\"/>",
        "<saml:AttributeValue>bob</saml:AttributeValue>",
        "<saml:AttributeValue xsi:nil=\" 1 \"></saml:AttributeValue>",
        "<saml:AttributeValue/>",
        "<saml:AttributeValue xsi:nil=\"false\">carol</saml:AttributeValue>",
        "</saml:Attribute>"
    )
    .to_string();
    let login = validate(&spec.signed(Sign::Response)).unwrap();
    assert_eq!(
        login.attribute("manager").unwrap().values,
        ["bob", "", "carol"]
    );
}

// ---------------------------------------------------------------------------------------
// Keys and metadata
// ---------------------------------------------------------------------------------------

/// A self-signed certificate for a 512-bit RSA key (`openssl req -x509 -newkey rsa:512`).
const RSA_512_CERTIFICATE: &str = "-----BEGIN CERTIFICATE-----
MIIBgTCCASugAwIBAgIUUsv1smIaMtsxzu1W6y5B3C50tNQwDQYJKoZIhvcNAQEL
BQAwFDESMBAGA1UEAwwJdG9vIHNtYWxsMCAXDTI2MTEyNzA0MTAyMloYDzIxMjYx
MTAzMDQxMDIyWjAUMRIwEAYDVQQDDAl0b28gc21hbGwwXDANBgkqhkiG9w0BAQEF
AANLADBIAkEAoLm+WCIsweXrohTRDJ1NRQ91cu8ap9BLq+nXsERgKdR0q7LxP9UE
XUffb2xqK7olpJ2/yn7QgNHXtrlPtpbnAwIDAQABo1MwUTAdBgNVHQ4EFgQUXXKB
TzNP1AND6JBFsx6dgo5PwnMwHwYDVR0jBBgwFoAUXXKBTzNP1AND6JBFsx6dgo5P
wnMwDwYDVR0TAQH/BAUwAwEB/zANBgkqhkiG9w0BAQsFAANBAJdh7+wYV1fQFnrb
0zMs5fmIfy33ffyo0WvuFF9m9iWittz3+O8qymph7e7DGoayCGaHmbiGiVnJfgTC
Z/GLEjw=
-----END CERTIFICATE-----
";

#[test]
fn rsa_key_below_the_minimum_size_is_refused() {
    assert_eq!(
        SigningKey::from_certificate_text(RSA_512_CERTIFICATE),
        Err(KeyError::RsaKeyTooSmall { modulus_bits: 512 })
    );
}

#[test]
fn a_key_verifies_only_signatures_of_its_own_algorithm() {
    use SignatureAlgorithm as A;
    use ring::rand::SystemRandom;
    use ring::signature::{self as ring_signature, EcdsaKeyPair, RsaKeyPair};
    let every = [
        A::RsaSha1,
        A::RsaSha256,
        A::RsaSha384,
        A::RsaSha512,
        A::EcdsaSha256,
        A::EcdsaSha384,
    ];
    let message = b"<ds:SignedInfo>...</ds:SignedInfo>";
    let rng = SystemRandom::new();
    let pkcs8 = |key: &str| std::fs::read(keys_dir().join(format!("{key}.key.pk8"))).unwrap();

    let p256 = EcdsaKeyPair::from_pkcs8(
        &ring_signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        &pkcs8("p256"),
        &rng,
    )
    .unwrap();
    let ecdsa_signature = p256.sign(&rng, message).unwrap();
    let key = certificate("p256");
    for algorithm in every {
        assert_eq!(
            key.verify(algorithm, message, ecdsa_signature.as_ref()),
            algorithm == A::EcdsaSha256,
            "P-256 key, {algorithm:?}"
        );
    }

    let rsa = RsaKeyPair::from_pkcs8(&pkcs8("rsa2048")).unwrap();
    let mut rsa_signature = vec![0; rsa.public().modulus_len()];
    rsa.sign(
        &ring_signature::RSA_PKCS1_SHA256,
        &rng,
        message,
        &mut rsa_signature,
    )
    .unwrap();
    let key = certificate("rsa2048");
    for algorithm in every {
        assert_eq!(
            key.verify(algorithm, message, &rsa_signature),
            algorithm == A::RsaSha256,
            "RSA key, {algorithm:?}"
        );
    }
}

fn metadata_with_certificates(count: usize) -> String {
    let mut texts: Vec<String> = [
        "attacker",
        "legacy-sha1",
        "p256",
        "rsa2048",
        "rsa4096",
        "v1",
    ]
    .iter()
    .map(|key| std::fs::read_to_string(keys_dir().join(format!("{key}.cert.pem"))).unwrap())
    .collect();
    for path in [
        "node-saml/cert.pem",
        "samael/cert.pem",
        "python3-saml/settings1.idp.x509cert.pem",
        "python3-saml/settings2.idp.x509cert.pem",
    ] {
        texts.push(std::fs::read_to_string(corpus_dir().join(path)).unwrap());
    }
    assert!(count <= texts.len());
    let descriptors: String = texts[..count]
        .iter()
        .map(|pem| {
            let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
            format!(
                "<md:KeyDescriptor use=\"signing\"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>{body}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>"
            )
        })
        .collect();
    format!(
        concat!(
            "<md:EntityDescriptor xmlns:md=\"urn:oasis:names:tc:SAML:2.0:metadata\" ",
            "xmlns:ds=\"http://www.w3.org/2000/09/xmldsig#\" entityID=\"{idp}\">",
            "<md:IDPSSODescriptor protocolSupportEnumeration=\"urn:oasis:names:tc:SAML:2.0:protocol\">",
            "{descriptors}",
            "<md:SingleSignOnService Binding=\"urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect\" ",
            "Location=\"https://idp.example.com/sso\"/>",
            "</md:IDPSSODescriptor></md:EntityDescriptor>"
        ),
        idp = IDP,
        descriptors = descriptors,
    )
}

#[test]
fn too_many_signing_certificates_are_refused() {
    let max = limits::IDP_SIGNING_KEYS_COUNT_MAX;
    let at_limit = parse_idp_metadata(metadata_with_certificates(max).as_bytes(), None).unwrap();
    assert_eq!(at_limit.signing_keys.len(), max);
    match parse_idp_metadata(metadata_with_certificates(max + 1).as_bytes(), None) {
        Err(SamlError::InvalidMetadata { reason }) => {
            assert!(reason.contains("signing certificates"), "{reason}")
        }
        other => panic!("expected invalid_metadata, got {other:?}"),
    }
}
