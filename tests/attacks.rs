//! One named test per attack on the SAML validator. Every message is signed by xmlsec1 (the
//! reference XML-DSig implementation), never by our own code, and then tampered with the way
//! the attack does it; each test asserts the refusal code, or for comment injection, that
//! the whole value is read.

use jitledger::saml::keys::SigningKey;
use jitledger::saml::response::{
    ExpectedRequests, IdpTrust, ParsedResponse, SpSettings, ValidatedLogin,
};
use jitledger::saml::{SamlError, instant, limits};

mod support;

use support::*;

fn trust(key: &str, allow_sha1: bool) -> IdpTrust {
    let pem = std::fs::read_to_string(keys_dir().join(format!("{key}.cert.pem"))).unwrap();
    IdpTrust {
        entity_id: IDP.to_string(),
        signing_keys: vec![SigningKey::from_certificate_text(&pem).unwrap()],
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

fn validate_with(
    xml: &str,
    trust: &IdpTrust,
    sp: &SpSettings,
    at: &str,
) -> Result<ValidatedLogin, SamlError> {
    let expected: ExpectedRequests = [REQUEST_ID].into_iter().collect();
    let now = instant::parse(at).unwrap();
    ParsedResponse::parse(xml.as_bytes())?.validate(trust, sp, &expected, now)
}

fn validate(xml: &str) -> Result<ValidatedLogin, SamlError> {
    validate_with(xml, &trust("rsa2048", false), &sp(), NOW)
}

/// The refusal code for `xml`, or "accepted".
fn code(xml: &str) -> &'static str {
    match validate(xml) {
        Ok(_) => "accepted",
        Err(error) => error.code(),
    }
}

/// The signed Assertion rewritten as an attacker would: another subject, another ID.
fn evil(assertion: &str) -> String {
    assertion
        .replace("alice@example.com", "mallory@example.com")
        .replace("_assertion-1", "_evil")
}

fn assertion_signature_stripped(assertion: &str) -> String {
    without(assertion, "<ds:Signature")
}

// ---- baseline: the untampered messages are accepted, so every refusal below is the attack's.

#[test]
fn untampered_responses_are_accepted_in_every_signing_position() {
    for sign in [Sign::Response, Sign::Assertion, Sign::Both] {
        let login = validate(&login().signed(sign)).unwrap();
        assert_eq!(login.name_id().value, "alice@example.com");
        assert_eq!(login.attribute("role").unwrap().values, ["Developer"]);
        assert_eq!(login.in_response_to(), Some(REQUEST_ID));
    }
}

// ---- XML Signature Wrapping: SAML Raider's permutations.

#[test]
fn xsw1_unsigned_response_copy_with_signed_original_inside_its_signature() {
    let signed = login().signed(Sign::Response);
    let signature = element(&signed, "<ds:Signature");
    let original = without(&signed, "<ds:Signature");
    let evil_response = original
        .replace("alice@example.com", "mallory@example.com")
        .replace("_response-1", "_evil");
    let wrapped_signature =
        signature.replace("</ds:Signature>", &format!("{original}</ds:Signature>"));
    let issuer_end = evil_response.find("</saml:Issuer>").unwrap() + "</saml:Issuer>".len();
    let attack = format!(
        "{}{}{}",
        &evil_response[..issuer_end],
        wrapped_signature,
        &evil_response[issuer_end..]
    );
    assert_eq!(code(&attack), "signature_wrapping");
}

#[test]
fn xsw2_signed_original_response_detached_before_the_signature() {
    let signed = login().signed(Sign::Response);
    let signature = element(&signed, "<ds:Signature");
    let original = without(&signed, "<ds:Signature");
    let evil_response = original
        .replace("alice@example.com", "mallory@example.com")
        .replace("_response-1", "_evil");
    let issuer_end = evil_response.find("</saml:Issuer>").unwrap() + "</saml:Issuer>".len();
    let attack = format!(
        "{}{original}{signature}{}",
        &evil_response[..issuer_end],
        &evil_response[issuer_end..]
    );
    assert_eq!(code(&attack), "signature_wrapping");
}

#[test]
fn xsw3_evil_assertion_before_the_signed_one() {
    let signed = login().signed(Sign::Assertion);
    let assertion = element(&signed, "<saml:Assertion");
    let attack = signed.replacen(
        assertion,
        &format!(
            "{}{assertion}",
            assertion_signature_stripped(&evil(assertion))
        ),
        1,
    );
    assert_eq!(code(&attack), "signature_wrapping");
}

#[test]
fn xsw4_signed_assertion_inside_the_evil_one() {
    let signed = login().signed(Sign::Assertion);
    let assertion = element(&signed, "<saml:Assertion");
    let outer = assertion_signature_stripped(&evil(assertion));
    let outer = outer.replace(
        "</saml:Assertion>",
        &format!("{assertion}</saml:Assertion>"),
    );
    let attack = signed.replacen(assertion, &outer, 1);
    assert_eq!(code(&attack), "signature_wrapping");
}

#[test]
fn xsw5_signature_moved_to_evil_assertion_original_appended() {
    let signed = login().signed(Sign::Assertion);
    let assertion = element(&signed, "<saml:Assertion");
    let signature = element(assertion, "<ds:Signature");
    let evil_assertion = assertion_signature_stripped(&evil(assertion));
    let issuer_end = evil_assertion.find("</saml:Issuer>").unwrap() + "</saml:Issuer>".len();
    let evil_signed = format!(
        "{}{signature}{}",
        &evil_assertion[..issuer_end],
        &evil_assertion[issuer_end..]
    );
    let original_unsigned = assertion_signature_stripped(assertion);
    let attack = signed.replacen(assertion, &format!("{evil_signed}{original_unsigned}"), 1);
    assert_eq!(code(&attack), "signature_wrapping");
}

#[test]
fn xsw6_original_assertion_inside_the_moved_signature() {
    let signed = login().signed(Sign::Assertion);
    let assertion = element(&signed, "<saml:Assertion");
    let signature = element(assertion, "<ds:Signature");
    let original_unsigned = assertion_signature_stripped(assertion);
    let carrying = signature.replace(
        "</ds:Signature>",
        &format!("{original_unsigned}</ds:Signature>"),
    );
    let evil_assertion = assertion_signature_stripped(&evil(assertion));
    let issuer_end = evil_assertion.find("</saml:Issuer>").unwrap() + "</saml:Issuer>".len();
    let attack_assertion = format!(
        "{}{carrying}{}",
        &evil_assertion[..issuer_end],
        &evil_assertion[issuer_end..]
    );
    let attack = signed.replacen(assertion, &attack_assertion, 1);
    assert_eq!(code(&attack), "signature_wrapping");
}

#[test]
fn xsw7_signed_assertion_hidden_in_extensions() {
    let signed = login().signed(Sign::Assertion);
    let assertion = element(&signed, "<saml:Assertion");
    let evil_assertion = assertion_signature_stripped(&evil(assertion));
    let extensions = format!("<samlp:Extensions>{assertion}</samlp:Extensions>");
    let attack = signed.replacen(assertion, &evil_assertion, 1).replacen(
        "</saml:Issuer>",
        &format!("</saml:Issuer>{extensions}"),
        1,
    );
    assert_eq!(code(&attack), "signature_wrapping");
}

#[test]
fn xsw8_original_assertion_in_an_object_of_the_evil_signature() {
    let signed = login().signed(Sign::Assertion);
    let assertion = element(&signed, "<saml:Assertion");
    let signature = element(assertion, "<ds:Signature");
    let original_unsigned = assertion_signature_stripped(assertion);
    let carrying = signature.replace(
        "</ds:Signature>",
        &format!("<ds:Object>{original_unsigned}</ds:Object></ds:Signature>"),
    );
    let evil_assertion = assertion_signature_stripped(&evil(assertion));
    let issuer_end = evil_assertion.find("</saml:Issuer>").unwrap() + "</saml:Issuer>".len();
    let attack_assertion = format!(
        "{}{carrying}{}",
        &evil_assertion[..issuer_end],
        &evil_assertion[issuer_end..]
    );
    let attack = signed.replacen(assertion, &attack_assertion, 1);
    assert_eq!(code(&attack), "signature_wrapping");
}

// ---- Comment injection: the signature excludes comments, so a value must not end at one.

#[test]
fn comment_injected_in_name_id_does_not_truncate_it() {
    let mut spec = login();
    spec.name_id = "alice@example.com.evil.test".to_string();
    let signed = spec.signed(Sign::Assertion);
    let attack = signed.replacen(
        "alice@example.com.evil.test",
        "alice@example.com<!---->.evil.test",
        1,
    );
    let login = validate(&attack).unwrap();
    assert_eq!(login.name_id().value, "alice@example.com.evil.test");
}

#[test]
fn comment_injected_in_attribute_value_does_not_truncate_it() {
    let mut spec = login();
    spec.attributes = attribute("role", "AdminNot");
    let attack = spec
        .signed(Sign::Response)
        .replacen(">AdminNot<", ">Admin<!-- -->Not<", 1);
    let login = validate(&attack).unwrap();
    assert_eq!(login.attribute("role").unwrap().values, ["AdminNot"]);
}

// ---- Signatures missing, moved or forged.

#[test]
fn stripped_signature_is_refused() {
    let signed = login().signed(Sign::Response);
    assert_eq!(
        code(&without(&signed, "<ds:Signature")),
        "signature_missing"
    );
}

#[test]
fn signed_assertion_copied_into_advice_of_an_unsigned_one_is_refused() {
    let signed = login().signed(Sign::Assertion);
    let assertion = element(&signed, "<saml:Assertion");
    let advice = format!("<saml:Advice>{assertion}</saml:Advice>");
    let evil_assertion = assertion_signature_stripped(&evil(assertion)).replacen(
        "<saml:Subject>",
        &format!("{advice}<saml:Subject>"),
        1,
    );
    let attack = signed.replacen(assertion, &evil_assertion, 1);
    assert_eq!(code(&attack), "signature_missing");
}

#[test]
fn signature_in_status_detail_is_refused() {
    let signed = login().signed(Sign::Assertion);
    let signature = element(&signed, "<ds:Signature").to_string();
    let attack = signed.replacen(
        "</samlp:Status>",
        &format!("<samlp:StatusDetail>{signature}</samlp:StatusDetail></samlp:Status>"),
        1,
    );
    assert_eq!(code(&attack), "signature_wrapping");
}

#[test]
fn two_signed_info_elements_are_refused() {
    let signed = login().signed(Sign::Response);
    let signed_info = element(&signed, "<ds:SignedInfo").to_string();
    let attack = signed.replacen(
        "</ds:SignedInfo>",
        &format!("</ds:SignedInfo>{signed_info}"),
        1,
    );
    assert_eq!(code(&attack), "signature_invalid");
}

#[test]
fn two_references_are_refused() {
    let signed = login().signed(Sign::Response);
    let reference = element(&signed, "<ds:Reference").to_string();
    let attack = signed.replacen("</ds:Reference>", &format!("</ds:Reference>{reference}"), 1);
    assert_eq!(code(&attack), "signature_wrapping");
}

#[test]
fn reference_to_another_id_is_refused() {
    // A genuine signature in the Assertion that covers the whole Response (an ancestor).
    let mut spec = login();
    spec.assertion_reference = "#_response-1".to_string();
    let template = spec.template(Sign::Assertion);
    let xpath =
        "/*[local-name()='Response']/*[local-name()='Assertion']/*[local-name()='Signature']";
    let signed = xmlsec1_sign(&template, "rsa2048", xpath);
    assert_eq!(code(&signed), "signature_wrapping");
}

#[test]
fn duplicate_ids_are_refused() {
    let signed = login().signed(Sign::Assertion);
    let assertion = element(&signed, "<saml:Assertion");
    let copy = assertion_signature_stripped(assertion);
    let attack = signed.replacen(
        "</samlp:Status>",
        &format!("</samlp:Status><samlp:Extensions>{copy}</samlp:Extensions>"),
        1,
    );
    assert_eq!(code(&attack), "signature_wrapping");
}

#[test]
fn attacker_key_in_key_info_is_not_trusted() {
    let forged = login().signed_with(Sign::Response, "attacker");
    assert!(forged.contains("<X509Certificate>") || forged.contains("X509Certificate"));
    assert_eq!(code(&forged), "signature_invalid");
}

#[test]
fn tampered_digest_value_is_refused() {
    let signed = login().signed(Sign::Response);
    let digest = element(&signed, "<ds:DigestValue");
    let tampered = format!("<ds:DigestValue>{}</ds:DigestValue>", "A".repeat(43) + "=");
    assert_eq!(
        code(&signed.replacen(digest, &tampered, 1)),
        "digest_mismatch"
    );
}

#[test]
fn tampered_content_is_a_digest_mismatch() {
    let signed = login().signed(Sign::Response);
    let attack = signed.replacen("alice@example.com", "mallory@example.com", 1);
    assert_eq!(code(&attack), "digest_mismatch");
}

#[test]
fn tampered_signature_value_is_refused() {
    let signed = login().signed(Sign::Response);
    let value_start = signed.find("<ds:SignatureValue>").unwrap() + "<ds:SignatureValue>".len();
    let mut bytes = signed.into_bytes();
    bytes[value_start] = if bytes[value_start] == b'A' {
        b'B'
    } else {
        b'A'
    };
    assert_eq!(
        code(&String::from_utf8(bytes).unwrap()),
        "signature_invalid"
    );
}

// ---- Algorithms.

#[test]
fn rsa_sha1_is_refused_unless_allowed() {
    let mut spec = login();
    spec.signature_method = RSA_SHA1;
    spec.digest_method = SHA1;
    let signed = spec.signed_with(Sign::Response, "legacy-sha1");
    let refused = validate_with(&signed, &trust("legacy-sha1", false), &sp(), NOW);
    assert_eq!(refused.unwrap_err().code(), "unsupported_algorithm");
    assert!(validate_with(&signed, &trust("legacy-sha1", true), &sp(), NOW).is_ok());
}

#[test]
fn sha1_digest_under_sha256_signature_is_refused_unless_allowed() {
    let mut spec = login();
    spec.digest_method = SHA1;
    let signed = spec.signed(Sign::Response);
    assert_eq!(code(&signed), "unsupported_algorithm");
    assert!(validate_with(&signed, &trust("rsa2048", true), &sp(), NOW).is_ok());
}

#[test]
fn unknown_signature_method_is_refused() {
    let signed = login().signed(Sign::Response);
    let attack = signed.replacen(RSA_SHA256, "http://example.com/rot13", 1);
    assert_eq!(code(&attack), "unsupported_algorithm");
}

#[test]
fn unknown_digest_method_is_refused() {
    let signed = login().signed(Sign::Response);
    let attack = signed.replacen(SHA256, "http://www.w3.org/2001/04/xmldsig-more#md5", 1);
    assert_eq!(code(&attack), "unsupported_algorithm");
}

#[test]
fn unknown_canonicalization_method_is_refused() {
    let signed = login().signed(Sign::Response);
    let attack = signed.replacen(
        "<ds:CanonicalizationMethod Algorithm=\"http://www.w3.org/2001/10/xml-exc-c14n#\"/>",
        "<ds:CanonicalizationMethod Algorithm=\"http://www.w3.org/2006/12/xml-c14n11\"/>",
        1,
    );
    assert_eq!(code(&attack), "unsupported_algorithm");
}

#[test]
fn xpath_transform_is_refused() {
    let signed = login().signed(Sign::Response);
    let xpath = concat!(
        "<ds:Transform Algorithm=\"http://www.w3.org/TR/1999/REC-xpath-19991116\">",
        "<ds:XPath>not(ancestor-or-self::saml:Assertion)</ds:XPath></ds:Transform></ds:Transforms>"
    );
    let attack = signed.replacen("</ds:Transforms>", xpath, 1);
    assert_eq!(code(&attack), "unsupported_algorithm");
}

#[test]
fn xslt_transform_is_refused() {
    let signed = login().signed(Sign::Response);
    let xslt =
        "<ds:Transform Algorithm=\"http://www.w3.org/TR/1999/REC-xslt-19991116\"/></ds:Transforms>";
    let attack = signed.replacen(
        "<ds:Transform Algorithm=\"http://www.w3.org/2001/10/xml-exc-c14n#\"/></ds:Transforms>",
        xslt,
        1,
    );
    assert_eq!(code(&attack), "unsupported_algorithm");
}

// ---- XML-level attacks.

#[test]
fn doctype_is_refused() {
    let signed = login().signed(Sign::Response);
    assert_eq!(
        code(&format!("<!DOCTYPE samlp:Response>{signed}")),
        "dtd_forbidden"
    );
}

#[test]
fn internal_entity_is_refused() {
    let signed = login().signed(Sign::Response);
    let attack = format!(
        "<!DOCTYPE r [<!ENTITY who \"mallory\">]>{}",
        signed.replacen("alice", "&who;", 1)
    );
    assert_eq!(code(&attack), "dtd_forbidden");
}

#[test]
fn external_entity_is_refused() {
    let signed = login().signed(Sign::Response);
    let attack = format!(
        "<!DOCTYPE r [<!ENTITY x SYSTEM \"file:///etc/passwd\">]>{}",
        signed.replacen("alice", "&x;", 1)
    );
    assert_eq!(code(&attack), "dtd_forbidden");
}

#[test]
fn billion_laughs_is_refused() {
    let mut entities = String::from("<!ENTITY l0 \"lol\">");
    for level in 1..10 {
        let previous = format!("&l{};", level - 1);
        entities.push_str(&format!("<!ENTITY l{level} \"{}\">", previous.repeat(10)));
    }
    let attack = format!("<!DOCTYPE r [{entities}]><r>&l9;</r>");
    assert_eq!(code(&attack), "dtd_forbidden");
}

#[test]
fn undeclared_entity_is_refused() {
    let signed = login().signed(Sign::Response);
    assert_eq!(code(&signed.replacen("alice", "&who;", 1)), "dtd_forbidden");
}

#[test]
fn two_roots_are_refused() {
    let signed = login().signed(Sign::Response);
    assert_eq!(code(&format!("{signed}{signed}")), "malformed_xml");
}

#[test]
fn two_assertions_are_refused() {
    let signed = login().signed(Sign::Response);
    let assertion = element(&signed, "<saml:Assertion");
    let second = assertion.replace("_assertion-1", "_assertion-2");
    let attack = signed.replacen(assertion, &format!("{assertion}{second}"), 1);
    assert_eq!(code(&attack), "signature_wrapping");
}

#[test]
fn encrypted_assertion_is_refused() {
    let template = login().template(Sign::Response);
    let assertion = element(&template, "<saml:Assertion");
    let encrypted = concat!(
        "<saml:EncryptedAssertion><xenc:EncryptedData ",
        "xmlns:xenc=\"http://www.w3.org/2001/04/xmlenc#\"/></saml:EncryptedAssertion>"
    );
    let template = template.replacen(assertion, encrypted, 1);
    let signed = xmlsec1_sign(
        &template,
        "rsa2048",
        "/*[local-name()='Response']/*[local-name()='Signature']",
    );
    assert_eq!(code(&signed), "encrypted_assertion_unsupported");
}

#[test]
fn encrypted_name_id_is_refused() {
    let mut spec = login();
    spec.name_id = String::new();
    let signed = spec.signed(Sign::Response);
    let assertion = element(&signed, "<saml:Assertion");
    // Rebuild with an EncryptedID and sign again so the signature is genuine.
    let template = spec.template(Sign::Response).replacen(
        "<saml:NameID Format=\"urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress\"></saml:NameID>",
        "<saml:EncryptedID><xenc:EncryptedData xmlns:xenc=\"http://www.w3.org/2001/04/xmlenc#\"/></saml:EncryptedID>",
        1,
    );
    assert!(!assertion.is_empty());
    let resigned = xmlsec1_sign(
        &template,
        "rsa2048",
        "/*[local-name()='Response']/*[local-name()='Signature']",
    );
    assert_eq!(code(&resigned), "encrypted_assertion_unsupported");
}

// ---- Limits: each bound refuses with too_large.

fn assert_too_large(xml: &str, limit: &str) {
    match validate(xml) {
        Err(SamlError::TooLarge { limit: found, .. }) => assert_eq!(found, limit),
        other => panic!("expected too_large for {limit}, got {other:?}"),
    }
}

#[test]
fn document_size_limit() {
    let padding = " ".repeat(limits::RESPONSE_XML.document_bytes_max);
    assert_too_large(
        &format!("{}{padding}", login().signed(Sign::Response)),
        "document_bytes_max",
    );
}

#[test]
fn base64_size_limit() {
    let oversized = vec![b'A'; limits::RESPONSE_BASE64_BYTES_MAX + 4];
    let error = jitledger::saml::response::decode_post_binding(&oversized).unwrap_err();
    assert_eq!(error.code(), "too_large");
}

#[test]
fn depth_limit() {
    let depth = limits::RESPONSE_XML.depth_max;
    let deep = format!("{}{}", "<x>".repeat(depth), "</x>".repeat(depth));
    let attack = login().signed(Sign::Response).replacen(
        "</samlp:Status>",
        &format!("</samlp:Status>{deep}"),
        1,
    );
    assert_too_large(&attack, "depth_max");
}

#[test]
fn element_count_limit() {
    let many = "<x/>".repeat(limits::RESPONSE_XML.elements_count_max);
    let attack = login().signed(Sign::Response).replacen(
        "</samlp:Status>",
        &format!("</samlp:Status>{many}"),
        1,
    );
    assert_too_large(&attack, "elements_count_max");
}

#[test]
fn attributes_per_element_limit() {
    let attributes: String = (0..=limits::RESPONSE_XML.attributes_per_element_max)
        .map(|i| format!(" a{i}=\"1\""))
        .collect();
    let attack = login().signed(Sign::Response).replacen(
        "<samlp:Status>",
        &format!("<samlp:Status{attributes}>"),
        1,
    );
    assert_too_large(&attack, "attributes_per_element_max");
}

#[test]
fn namespace_declarations_limit() {
    let declarations: String = (0..=limits::RESPONSE_XML.namespace_declarations_per_element_max)
        .map(|i| format!(" xmlns:n{i}=\"urn:n{i}\""))
        .collect();
    let attack = login().signed(Sign::Response).replacen(
        "<samlp:Status>",
        &format!("<samlp:Status{declarations}>"),
        1,
    );
    assert_too_large(&attack, "namespace_declarations_per_element_max");
}

#[test]
fn text_length_limit() {
    let mut spec = login();
    spec.name_id = "a".repeat(limits::RESPONSE_XML.text_bytes_max + 1);
    assert_too_large(&spec.template(Sign::Response), "text_bytes_max");
}

#[test]
fn name_length_limit() {
    let name = format!("x{}", "y".repeat(limits::RESPONSE_XML.name_bytes_max));
    let attack = login().signed(Sign::Response).replacen(
        "</samlp:Status>",
        &format!("</samlp:Status><{name}/>"),
        1,
    );
    assert_too_large(&attack, "name_bytes_max");
}

#[test]
fn attribute_count_limit() {
    let mut spec = login();
    spec.attributes = (0..=limits::ATTRIBUTES_COUNT_MAX)
        .map(|i| attribute(&format!("a{i}"), "v"))
        .collect();
    assert_too_large(&spec.signed(Sign::Response), "attributes_count_max");
}

#[test]
fn attribute_value_count_limit() {
    let mut spec = login();
    let values: String = (0..=limits::ATTRIBUTE_VALUES_COUNT_MAX)
        .map(|i| format!("<saml:AttributeValue>g{i}</saml:AttributeValue>"))
        .collect();
    spec.attributes = format!("<saml:Attribute Name=\"groups\">{values}</saml:Attribute>");
    assert_too_large(&spec.signed(Sign::Response), "attribute_values_count_max");
}

// ---- Signed, but not for us or not now: business rules after a verified signature.

fn refused_when(change: impl FnOnce(&mut Login)) -> &'static str {
    let mut spec = login();
    change(&mut spec);
    code(&spec.signed(Sign::Response))
}

#[test]
fn wrong_response_issuer_is_refused() {
    assert_eq!(
        refused_when(|l| l.response_issuer = "https://evil.example".into()),
        "issuer_mismatch"
    );
}

#[test]
fn wrong_assertion_issuer_is_refused() {
    assert_eq!(
        refused_when(|l| l.assertion_issuer = "https://evil.example".into()),
        "issuer_mismatch"
    );
}

#[test]
fn wrong_destination_is_refused() {
    assert_eq!(
        refused_when(|l| l.destination = Some("https://evil.example/acs".into())),
        "destination_mismatch"
    );
}

#[test]
fn missing_destination_on_signed_response_is_refused() {
    assert_eq!(
        refused_when(|l| l.destination = None),
        "destination_mismatch"
    );
}

#[test]
fn missing_destination_on_unsigned_response_is_allowed() {
    let mut spec = login();
    spec.destination = None;
    assert!(validate(&spec.signed(Sign::Assertion)).is_ok());
}

#[test]
fn wrong_recipient_is_refused() {
    assert_eq!(
        refused_when(|l| l.recipient = "https://evil.example/acs".into()),
        "recipient_mismatch"
    );
}

#[test]
fn wrong_audience_is_refused() {
    assert_eq!(
        refused_when(|l| l.audience = "https://other-sp.example".into()),
        "audience_mismatch"
    );
}

#[test]
fn unknown_in_response_to_is_refused() {
    assert_eq!(
        refused_when(|l| l.in_response_to = Some("_forged".into())),
        "in_response_to_mismatch"
    );
}

#[test]
fn unsolicited_response_is_refused_when_idp_initiated_login_is_off() {
    let mut spec = login();
    spec.in_response_to = None;
    let signed = spec.signed(Sign::Response);
    assert!(validate(&signed).is_ok());
    let strict = SpSettings {
        allow_idp_initiated: false,
        ..sp()
    };
    let refused = validate_with(&signed, &trust("rsa2048", false), &strict, NOW);
    assert_eq!(refused.unwrap_err().code(), "unsolicited_response");
}

#[test]
fn expired_assertion_is_refused() {
    let signed = login().signed(Sign::Response);
    // 12:05 is NotOnOrAfter; with 120 s of skew, 12:07 is the first refused instant.
    assert!(
        validate_with(
            &signed,
            &trust("rsa2048", false),
            &sp(),
            "2026-06-01T12:06:59Z"
        )
        .is_ok()
    );
    let late = validate_with(
        &signed,
        &trust("rsa2048", false),
        &sp(),
        "2026-06-01T12:07:00Z",
    );
    assert_eq!(late.unwrap_err().code(), "assertion_expired");
}

#[test]
fn not_yet_valid_assertion_is_refused() {
    let signed = login().signed(Sign::Response);
    // NotBefore 11:55 minus 120 s of skew: 11:53 is still accepted, a second earlier is not.
    assert!(
        validate_with(
            &signed,
            &trust("rsa2048", false),
            &sp(),
            "2026-06-01T11:59:00Z"
        )
        .is_ok()
    );
    let early = validate_with(
        &signed,
        &trust("rsa2048", false),
        &sp(),
        "2026-06-01T11:52:59Z",
    );
    assert_eq!(early.unwrap_err().code(), "assertion_not_yet_valid");
}

#[test]
fn status_not_success_is_refused() {
    let code = refused_when(|l| l.status = "urn:oasis:names:tc:SAML:2.0:status:Responder".into());
    assert_eq!(code, "status_not_success");
}

#[test]
fn other_keys_signatures_are_refused_for_every_key_kind() {
    for key in ["rsa4096", "p256", "v1"] {
        let mut spec = login();
        if key == "p256" {
            spec.signature_method = ECDSA_SHA256;
        }
        let signed = spec.signed_with(Sign::Response, key);
        assert_eq!(code(&signed), "signature_invalid", "{key}");
        assert!(
            validate_with(&signed, &trust(key, false), &sp(), NOW).is_ok(),
            "{key}"
        );
    }
}

#[test]
fn a_multi_byte_fraction_in_the_unsigned_response_issue_instant_is_refused_not_a_panic() {
    // Only the Assertion is signed, so anyone holding one signed assertion controls the
    // Response's IssueInstant. Cutting its fraction to nine bytes once fell inside `é`.
    let signed = login().signed(Sign::Assertion);
    let tampered = signed.replacen(
        "Version=\"2.0\" IssueInstant=\"2026-06-01T11:59:00Z\" Destination",
        "Version=\"2.0\" IssueInstant=\"2026-06-01T11:59:00.12345678\u{e9}Z\" Destination",
        1,
    );
    assert_ne!(tampered, signed);
    assert_eq!(code(&tampered), "malformed_xml");
}
