//! The test IdP signs with jitledger's own canonicaliser, so jitledger accepting its output
//! proves little. Here xmlsec1, the reference XML-DSig implementation, verifies every
//! signature the IdP makes — each fixture key, each placement — with only the certificate
//! given on the command line (`--enabled-key-data key-name` keeps it from trusting KeyInfo).
//! jitledger must then accept the same bytes and read back what was put in.
//!
//! xmlsec1 is required: a missing binary fails the test (run tools/test to install it).

use std::path::{Path, PathBuf};
use std::process::Command;

use jitledger::saml::keys::SignatureAlgorithm;
use jitledger::saml::response::{
    ExpectedRequests, IdpTrust, ParsedResponse, SignedParts, SpSettings,
};
use jitledger_tools::idp::{self, Attribute, ResponseSpec, Sign, Signer};
use time::OffsetDateTime;
use time::macros::datetime;

const IDP: &str = "https://idp.example.com/saml2/idp";
const SP: &str = "https://jitledger.example.com/v1/orgs/acme/saml/metadata";
const ACS: &str = "https://jitledger.example.com/v1/orgs/acme/saml/acs";
const NAME_ID: &str = "alice@example.com";
const REQUEST_ID: &str = "_request-7f3a";
const NOW: OffsetDateTime = datetime!(2026-06-01 12:00:00 UTC);

const KEYS: &[&str] = &["rsa2048", "rsa4096", "p256", "legacy-sha1", "v1"];
const RESPONSE_SIGNATURE: &str = "/*[local-name()='Response']/*[local-name()='Signature']";
const ASSERTION_SIGNATURE: &str =
    "/*[local-name()='Response']/*[local-name()='Assertion']/*[local-name()='Signature']";

fn attributes() -> Vec<Attribute> {
    vec![
        Attribute::new("emailAddress", [NAME_ID]),
        Attribute::new("firstName", ["Alice"]).friendly_name("givenName"),
        Attribute::new("lastName", ["Liddell & Co <QA>"]),
        Attribute::new("groups", ["engineering", "on-call", "admins"])
            .name_format(idp::ATTRIBUTE_NAME_FORMAT_BASIC),
    ]
}

fn spec(sign: Sign) -> ResponseSpec {
    let mut spec = ResponseSpec::new(IDP, SP, ACS, NAME_ID, NOW)
        .sign(sign)
        .in_response_to(REQUEST_ID);
    spec.attributes = attributes();
    spec
}

fn cert_path(key: &str) -> PathBuf {
    idp::fixture_keys_dir().join(format!("{key}.cert.pem"))
}

/// Runs `xmlsec1 --verify` on the Signature at `node_xpath`; returns (success, stderr).
fn xmlsec1_verify(file: &Path, cert: &Path, node_xpath: &str) -> (bool, String) {
    let output = Command::new("xmlsec1")
        .args([
            "--verify",
            "--enabled-key-data",
            "key-name",
            "--pubkey-cert-pem",
        ])
        .arg(cert)
        .args([
            "--id-attr:ID",
            "urn:oasis:names:tc:SAML:2.0:protocol:Response",
            "--id-attr:ID",
            "urn:oasis:names:tc:SAML:2.0:assertion:Assertion",
            "--node-xpath",
            node_xpath,
        ])
        .arg(file)
        .output()
        .expect("xmlsec1 is needed by this test: run tools/test, which installs it");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    // xmlsec1 reports its verdict on stderr: "OK" or "FAIL" on the first line.
    let ok = output.status.success() && stderr.lines().next() == Some("OK");
    (ok, stderr)
}

fn signature_positions(sign: Sign) -> &'static [&'static str] {
    match sign {
        Sign::Response => &[RESPONSE_SIGNATURE],
        Sign::Assertion => &[ASSERTION_SIGNATURE],
        Sign::Both => &[ASSERTION_SIGNATURE, RESPONSE_SIGNATURE],
        Sign::None => &[],
    }
}

fn write(directory: &Path, name: &str, xml: &str) -> PathBuf {
    let path = directory.join(name);
    std::fs::write(&path, xml).unwrap();
    path
}

fn jitledger_trust(signer: &Signer, allow_sha1: bool) -> IdpTrust {
    IdpTrust {
        entity_id: IDP.to_string(),
        signing_keys: vec![signer.verifying_key().clone()],
        allow_sha1,
    }
}

fn sp() -> SpSettings {
    SpSettings {
        entity_id: SP.to_string(),
        acs_url: ACS.to_string(),
        clock_skew_seconds: 60,
        allow_idp_initiated: false,
    }
}

#[test]
fn xmlsec1_verifies_every_key_and_placement_and_jitledger_agrees() {
    let directory = tempfile::tempdir().unwrap();
    let expected: ExpectedRequests = [REQUEST_ID].into_iter().collect();
    for key in KEYS {
        let signer = idp::fixture_key(key).unwrap();
        let legacy = *key == "legacy-sha1";
        for (sign, parts) in [
            (Sign::Response, SignedParts::Response),
            (Sign::Assertion, SignedParts::Assertion),
            (Sign::Both, SignedParts::Both),
        ] {
            let case = format!("{key}, {sign:?}");
            let xml = spec(sign).signed_xml(&signer).unwrap();
            let file = write(directory.path(), &format!("{key}-{sign:?}.xml"), &xml);
            for position in signature_positions(sign) {
                let (ok, stderr) = xmlsec1_verify(&file, &cert_path(key), position);
                assert!(ok, "{case}: xmlsec1 refused {position}:\n{stderr}");
            }

            let login = ParsedResponse::parse(xml.as_bytes())
                .and_then(|parsed| {
                    parsed.validate(&jitledger_trust(&signer, legacy), &sp(), &expected, NOW)
                })
                .unwrap_or_else(|error| panic!("{case}: jitledger refused: {error:?}"));
            assert_eq!(login.name_id().value, NAME_ID, "{case}");
            assert_eq!(login.signed_parts(), parts, "{case}");
            assert_eq!(login.signature_algorithm(), signer.algorithm(), "{case}");
            assert_eq!(login.in_response_to(), Some(REQUEST_ID), "{case}");
            let read: Vec<(String, Vec<String>)> = login
                .attributes()
                .iter()
                .map(|a| (a.name.clone(), a.values.clone()))
                .collect();
            let given: Vec<(String, Vec<String>)> = attributes()
                .into_iter()
                .map(|a| (a.name, a.values))
                .collect();
            assert_eq!(read, given, "{case}");
            assert_eq!(
                login.attribute("givenName").map(|a| a.values.clone()),
                Some(vec!["Alice".to_string()]),
                "{case}"
            );
        }
    }
}

/// rsa-sha384 and rsa-sha512, which no fixture key uses by default.
#[test]
fn xmlsec1_verifies_longer_rsa_hashes() {
    let directory = tempfile::tempdir().unwrap();
    let pkcs8 = std::fs::read(idp::fixture_keys_dir().join("rsa2048.key.pk8")).unwrap();
    let certificate = std::fs::read_to_string(cert_path("rsa2048")).unwrap();
    let expected: ExpectedRequests = [REQUEST_ID].into_iter().collect();
    for algorithm in [SignatureAlgorithm::RsaSha384, SignatureAlgorithm::RsaSha512] {
        let signer = Signer::from_pkcs8(&pkcs8, &certificate, algorithm).unwrap();
        let xml = spec(Sign::Both).signed_xml(&signer).unwrap();
        let file = write(directory.path(), &format!("{algorithm:?}.xml"), &xml);
        for position in signature_positions(Sign::Both) {
            let (ok, stderr) = xmlsec1_verify(&file, &cert_path("rsa2048"), position);
            assert!(ok, "{algorithm:?}: xmlsec1 refused {position}:\n{stderr}");
        }
        let login = ParsedResponse::parse(xml.as_bytes())
            .and_then(|parsed| {
                parsed.validate(&jitledger_trust(&signer, false), &sp(), &expected, NOW)
            })
            .unwrap_or_else(|error| panic!("{algorithm:?}: jitledger refused: {error:?}"));
        assert_eq!(login.signature_algorithm(), algorithm);
    }
}

/// The legacy key signs rsa-sha1 with SHA-1 digests; jitledger must refuse it unless the
/// IdP is configured to allow SHA-1.
#[test]
fn legacy_sha1_needs_allow_sha1_in_jitledger() {
    let signer = idp::fixture_key("legacy-sha1").unwrap();
    let xml = spec(Sign::Assertion).signed_xml(&signer).unwrap();
    assert!(xml.contains("http://www.w3.org/2000/09/xmldsig#rsa-sha1"));
    assert!(xml.contains("http://www.w3.org/2000/09/xmldsig#sha1"));
    let expected: ExpectedRequests = [REQUEST_ID].into_iter().collect();
    let refused = ParsedResponse::parse(xml.as_bytes()).unwrap().validate(
        &jitledger_trust(&signer, false),
        &sp(),
        &expected,
        NOW,
    );
    assert!(refused.is_err());
}

/// Negative controls: the check above can fail. A NameID changed after signing, or the
/// wrong certificate, must make xmlsec1 refuse.
#[test]
fn xmlsec1_refuses_a_changed_name_id_and_a_wrong_key() {
    let directory = tempfile::tempdir().unwrap();
    let signer = idp::fixture_key("rsa2048").unwrap();
    for sign in [Sign::Response, Sign::Assertion, Sign::Both] {
        let xml = spec(sign).signed_xml(&signer).unwrap();
        let original = format!(">{NAME_ID}</saml:NameID>");
        assert_eq!(xml.matches(&original).count(), 1);
        // One character: alice → blice.
        let tampered = xml.replace(&original, &original.replacen('a', "b", 1));
        assert_ne!(tampered, xml);
        let file = write(
            directory.path(),
            &format!("tampered-{sign:?}.xml"),
            &tampered,
        );
        for position in signature_positions(sign) {
            let (ok, stderr) = xmlsec1_verify(&file, &cert_path("rsa2048"), position);
            assert!(
                !ok,
                "{sign:?}: xmlsec1 accepted a changed NameID at {position}"
            );
            assert!(stderr.contains("FAIL"), "{sign:?}: {stderr}");
        }

        let file = write(directory.path(), &format!("intact-{sign:?}.xml"), &xml);
        for position in signature_positions(sign) {
            let (ok, _) = xmlsec1_verify(&file, &cert_path("attacker"), position);
            assert!(!ok, "{sign:?}: xmlsec1 accepted the attacker's certificate");
        }
    }
}
