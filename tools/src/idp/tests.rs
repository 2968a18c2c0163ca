//! Unit tests of the test IdP against jitledger's validator. That the signatures are
//! correct XML-DSig, independently of jitledger, is `tests/xmlsec1_verifies_idp_sim.rs`.

use jitledger::saml::SamlError;
use jitledger::saml::metadata::parse_idp_metadata;
use jitledger::saml::response::{
    ExpectedRequests, IdpTrust, ParsedResponse, SignedParts, SpSettings, ValidatedLogin,
};
use time::macros::datetime;

use super::*;

const IDP: &str = "https://idp.example.com/saml2/idp";
const SP: &str = "https://jitledger.example.com/v1/orgs/acme/saml/metadata";
const ACS: &str = "https://jitledger.example.com/v1/orgs/acme/saml/acs";
const NOW: OffsetDateTime = datetime!(2026-06-01 12:00:00 UTC);

fn spec() -> ResponseSpec {
    ResponseSpec::new(IDP, SP, ACS, "alice@example.com", NOW)
        .attribute(Attribute::new("firstName", ["Alice"]))
        .attribute(Attribute::new("groups", ["admins", "developers"]))
}

fn validate(xml: &str, signer: &Signer, at: OffsetDateTime) -> Result<ValidatedLogin, SamlError> {
    let trust = IdpTrust {
        entity_id: IDP.to_string(),
        signing_keys: vec![signer.verifying_key().clone()],
        allow_sha1: true,
    };
    let sp = SpSettings {
        entity_id: SP.to_string(),
        acs_url: ACS.to_string(),
        clock_skew_seconds: 60,
        allow_idp_initiated: true,
    };
    let expected: ExpectedRequests = ["_request-1"].into_iter().collect();
    ParsedResponse::parse(xml.as_bytes())?.validate(&trust, &sp, &expected, at)
}

#[test]
fn every_placement_validates() {
    let signer = fixture_key("rsa2048").unwrap();
    for (sign, parts) in [
        (Sign::Response, SignedParts::Response),
        (Sign::Assertion, SignedParts::Assertion),
        (Sign::Both, SignedParts::Both),
    ] {
        let xml = spec().sign(sign).signed_xml(&signer).unwrap();
        let login = validate(&xml, &signer, NOW).unwrap_or_else(|e| panic!("{sign:?}: {e}"));
        assert_eq!(login.signed_parts(), parts);
        assert_eq!(login.name_id().value, "alice@example.com");
        assert_eq!(
            login.attribute("groups").unwrap().values,
            ["admins", "developers"]
        );
    }
}

#[test]
fn every_fixture_key_validates() {
    for name in FIXTURE_KEYS {
        let signer = fixture_key(name).unwrap();
        let xml = spec().sign(Sign::Both).signed_xml(&signer).unwrap();
        let login = validate(&xml, &signer, NOW).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(login.signature_algorithm(), fixture_algorithm(name));
    }
}

#[test]
fn unsigned_response_is_refused() {
    let signer = fixture_key("rsa2048").unwrap();
    let xml = spec().sign(Sign::None).signed_xml(&signer).unwrap();
    assert_eq!(xml, spec().to_xml());
    assert_eq!(
        validate(&xml, &signer, NOW),
        Err(SamlError::SignatureMissing)
    );
}

#[test]
fn response_signature_covers_the_assertion_signature() {
    let signer = fixture_key("rsa2048").unwrap();
    let xml = spec().sign(Sign::Both).signed_xml(&signer).unwrap();
    let document = Document::parse(xml.as_bytes(), &IDP_XML).unwrap();
    let root = document.root();
    let assertion = document
        .children_named(root, ASSERTION_NAMESPACE, "Assertion")
        .next()
        .unwrap();
    let signature = document
        .children_named(assertion, DSIG_NAMESPACE, "Signature")
        .next()
        .unwrap();
    let mut canonical = Vec::new();
    c14n::canonicalize(
        &document,
        root,
        &Method::exclusive(),
        Some(signature),
        &mut canonical,
    );
    // Without the assertion's signature the Response digest no longer matches: it was
    // taken over the finished assertion signature.
    let digest = base64::engine::general_purpose::STANDARD
        .encode(DigestAlgorithm::Sha256.digest(&canonical));
    assert!(!xml.contains(&digest));
}

/// Exclusive C14N renders only visibly used namespaces, so SignedInfo canonicalises the
/// same standing alone as in the response: what a signer may rely on instead of
/// re-parsing (the module re-parses anyway).
#[test]
fn signed_info_canonicalises_the_same_alone_and_in_place() {
    let signer = fixture_key("p256").unwrap();
    let xml = spec().sign(Sign::Both).signed_xml(&signer).unwrap();
    let document = Document::parse(xml.as_bytes(), &IDP_XML).unwrap();
    let signed_infos: Vec<NodeId> = document
        .elements()
        .filter(|id| document.is_named(*id, DSIG_NAMESPACE, "SignedInfo"))
        .collect();
    assert_eq!(signed_infos.len(), 2);
    for signed_info in signed_infos {
        let mut in_place = Vec::new();
        c14n::canonicalize(
            &document,
            signed_info,
            &Method::exclusive(),
            None,
            &mut in_place,
        );
        let text = &xml[document.element(signed_info).unwrap().span.clone()];
        let standalone = text.replacen(
            "<ds:SignedInfo>",
            &format!("<ds:SignedInfo xmlns:ds=\"{DSIG_NAMESPACE}\">"),
            1,
        );
        let alone = Document::parse(standalone.as_bytes(), &IDP_XML).unwrap();
        let mut alone_canonical = Vec::new();
        c14n::canonicalize(
            &alone,
            alone.root(),
            &Method::exclusive(),
            None,
            &mut alone_canonical,
        );
        assert_eq!(
            String::from_utf8(in_place).unwrap(),
            String::from_utf8(alone_canonical).unwrap()
        );
    }
}

#[test]
fn markup_in_values_round_trips() {
    let signer = fixture_key("rsa2048").unwrap();
    let tricky = "a&b <c> \"d\" 'e'";
    let mut spec = spec()
        .sign(Sign::Response)
        .attribute(Attribute::new("note", [tricky]).friendly_name("Note \"1\" & <2>"));
    spec.name_id = "o'neil&co@example.com".to_string();
    let login = validate(&spec.signed_xml(&signer).unwrap(), &signer, NOW).unwrap();
    assert_eq!(login.name_id().value, "o'neil&co@example.com");
    let note = login.attribute("note").unwrap();
    assert_eq!(note.values, [tricky]);
    assert_eq!(note.friendly_name.as_deref(), Some("Note \"1\" & <2>"));
}

#[test]
fn fields_reach_the_validated_login() {
    let signer = fixture_key("rsa2048").unwrap();
    let mut spec = spec()
        .in_response_to("_request-1")
        .valid_for(Duration::minutes(10))
        .attribute(Attribute::new("role", ["Agent"]).name_format(ATTRIBUTE_NAME_FORMAT_BASIC));
    spec.session_not_on_or_after = Some(NOW + Duration::hours(8));
    spec.authn_instant = NOW - Duration::seconds(5);
    let login = validate(&spec.signed_xml(&signer).unwrap(), &signer, NOW).unwrap();
    assert_eq!(login.in_response_to(), Some("_request-1"));
    assert_eq!(login.response_id(), spec.response_id);
    assert_eq!(login.assertion_id(), spec.assertion_id);
    assert_eq!(login.session_index(), spec.session_index.as_deref());
    assert_eq!(
        login.session_not_on_or_after(),
        spec.session_not_on_or_after
    );
    assert_eq!(login.authn_instant(), NOW - Duration::seconds(5));
    assert_eq!(login.not_on_or_after(), NOW + Duration::minutes(10));
    assert_eq!(
        login.attribute("role").unwrap().name_format.as_deref(),
        Some(ATTRIBUTE_NAME_FORMAT_BASIC)
    );
    assert_eq!(
        login.key_fingerprint(),
        signer.verifying_key().fingerprint_hex()
    );
}

#[test]
fn validity_window_is_enforced_by_the_validator() {
    let signer = fixture_key("rsa2048").unwrap();
    let xml = spec().signed_xml(&signer).unwrap();
    let late = NOW + Duration::seconds(VALIDITY_DEFAULT_SECONDS + 61);
    assert!(matches!(
        validate(&xml, &signer, late),
        Err(SamlError::AssertionExpired { .. })
    ));
}

#[test]
fn ids_are_stable_for_the_same_inputs_and_differ_otherwise() {
    let first = spec();
    assert_eq!(first.response_id, spec().response_id);
    assert_ne!(first.response_id, first.assertion_id);
    let later = ResponseSpec::new(
        IDP,
        SP,
        ACS,
        "alice@example.com",
        NOW + Duration::seconds(1),
    );
    assert_ne!(first.assertion_id, later.assertion_id);
    let random = random_id().unwrap();
    assert_eq!(random.len(), 33);
    assert_ne!(random, random_id().unwrap());
}

#[test]
fn oversized_responses_can_be_built() {
    // The IdP re-parses with generous bounds, so it can make what jitledger must refuse.
    let signer = fixture_key("rsa2048").unwrap();
    let big = "x".repeat(300 * 1024);
    let xml = spec()
        .attribute(Attribute::new("blob", [big]))
        .signed_xml(&signer)
        .unwrap();
    assert!(matches!(
        validate(&xml, &signer, NOW),
        Err(SamlError::TooLarge { .. })
    ));
}

#[test]
fn template_has_empty_signatures_where_asked() {
    let xml = spec()
        .sign(Sign::Both)
        .xmlsec1_template(SignatureAlgorithm::RsaSha256, DigestAlgorithm::Sha256)
        .unwrap();
    assert_eq!(xml.matches("<ds:DigestValue></ds:DigestValue>").count(), 2);
    assert_eq!(xml.matches("<ds:X509Data/>").count(), 2);
    let assertion_issuer = format!("<saml:Issuer>{IDP}</saml:Issuer><ds:Signature");
    assert_eq!(xml.matches(&assertion_issuer).count(), 2);
}

#[test]
fn metadata_is_read_by_jitledger() {
    let signer = fixture_key("rsa4096").unwrap();
    let xml = metadata_xml(IDP, "https://idp.example.com/sso", signer.certificate_pem());
    let metadata = parse_idp_metadata(xml.as_bytes(), None).unwrap();
    assert_eq!(metadata.entity_id, IDP);
    assert_eq!(metadata.signing_keys, [signer.verifying_key().clone()]);
    assert_eq!(
        metadata.redirect_sso_location(),
        Some("https://idp.example.com/sso")
    );
    assert_eq!(metadata.sso_services.len(), 2);
}
