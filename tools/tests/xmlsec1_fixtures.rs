//! The xmlsec1-signed responses in `tests/fixtures/responses` (made by tools/gen-responses):
//! jitledger accepts each at the instant its README names and refuses it outside its
//! validity window, and xmlsec1 still verifies every signature in it.
//!
//! xmlsec1 is required: a missing binary fails the test (run tools/test to install it).

use std::path::{Path, PathBuf};
use std::process::Command;

use jitledger::saml::SamlError;
use jitledger::saml::instant;
use jitledger::saml::keys::{SignatureAlgorithm, SigningKey};
use jitledger::saml::response::{
    ExpectedRequests, IdpTrust, ParsedResponse, SignedParts, SpSettings, ValidatedLogin,
};
use time::OffsetDateTime;

const IDP: &str = "https://idp.example.com/saml2/idp";
const SP: &str = "https://jitledger.example.com/v1/orgs/acme/saml/metadata";
const ACS: &str = "https://jitledger.example.com/v1/orgs/acme/saml/acs";
/// The README's `now`, and the bounds of the window every fixture is valid in.
const VALIDATE_AT: &str = "2026-06-01T12:00:00Z";
const ISSUED: &str = "2026-01-01T00:00:00Z";
const EXPIRES: &str = "2126-01-01T00:00:00Z";
const SKEW_SECONDS: i64 = 120;

const RESPONSE_SIGNATURE: &str = "/*[local-name()='Response']/*[local-name()='Signature']";
const ASSERTION_SIGNATURE: &str =
    "/*[local-name()='Response']/*[local-name()='Assertion']/*[local-name()='Signature']";

/// One row of tests/fixtures/responses/README.md.
struct Fixture {
    file: &'static str,
    key: &'static str,
    signed: SignedParts,
    algorithm: SignatureAlgorithm,
    name_id: &'static str,
    in_response_to: Option<&'static str>,
    attributes_count: usize,
}

const FIXTURES: &[Fixture] = &[
    Fixture {
        file: "assertion-signed-rsa2048.xml",
        key: "rsa2048",
        signed: SignedParts::Assertion,
        algorithm: SignatureAlgorithm::RsaSha256,
        name_id: "alice@example.com",
        in_response_to: Some("_request-bench-0001"),
        attributes_count: 15,
    },
    Fixture {
        file: "response-signed-rsa4096.xml",
        key: "rsa4096",
        signed: SignedParts::Response,
        algorithm: SignatureAlgorithm::RsaSha256,
        name_id: "bob@example.com",
        in_response_to: Some("_request-4096"),
        attributes_count: 4,
    },
    Fixture {
        file: "both-signed-p256.xml",
        key: "p256",
        signed: SignedParts::Both,
        algorithm: SignatureAlgorithm::EcdsaSha256,
        name_id: "carol@example.com",
        in_response_to: Some("_request-p256"),
        attributes_count: 3,
    },
    Fixture {
        file: "assertion-signed-legacy-sha1.xml",
        key: "legacy-sha1",
        signed: SignedParts::Assertion,
        algorithm: SignatureAlgorithm::RsaSha1,
        name_id: "dave@example.com",
        in_response_to: None,
        attributes_count: 3,
    },
    Fixture {
        file: "response-signed-v1.xml",
        key: "v1",
        signed: SignedParts::Response,
        algorithm: SignatureAlgorithm::RsaSha256,
        name_id: "erin@example.com",
        in_response_to: None,
        attributes_count: 3,
    },
];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn responses_dir() -> PathBuf {
    root().join("tests/fixtures/responses")
}

fn cert_path(key: &str) -> PathBuf {
    root().join(format!("tests/fixtures/keys/{key}.cert.pem"))
}

fn at(text: &str) -> OffsetDateTime {
    instant::parse(text).unwrap()
}

impl Fixture {
    fn xml(&self) -> Vec<u8> {
        std::fs::read(responses_dir().join(self.file)).unwrap()
    }

    fn stem(&self) -> &str {
        self.file.trim_end_matches(".xml")
    }

    fn validate(&self, now: OffsetDateTime, allow_sha1: bool) -> Result<ValidatedLogin, SamlError> {
        let certificate = std::fs::read_to_string(cert_path(self.key)).unwrap();
        let trust = IdpTrust {
            entity_id: IDP.to_string(),
            signing_keys: vec![SigningKey::from_certificate_text(&certificate).unwrap()],
            allow_sha1,
        };
        let sp = SpSettings {
            entity_id: SP.to_string(),
            acs_url: ACS.to_string(),
            clock_skew_seconds: SKEW_SECONDS,
            // Unsolicited only where the README says so.
            allow_idp_initiated: self.in_response_to.is_none(),
        };
        let expected: ExpectedRequests = self.in_response_to.into_iter().collect();
        ParsedResponse::parse(&self.xml())?.validate(&trust, &sp, &expected, now)
    }

    fn legacy(&self) -> bool {
        self.algorithm.uses_sha1()
    }

    fn signature_positions(&self) -> &'static [&'static str] {
        match self.signed {
            SignedParts::Response => &[RESPONSE_SIGNATURE],
            SignedParts::Assertion => &[ASSERTION_SIGNATURE],
            SignedParts::Both => &[ASSERTION_SIGNATURE, RESPONSE_SIGNATURE],
        }
    }
}

#[test]
fn jitledger_accepts_every_fixture_at_its_now() {
    for fixture in FIXTURES {
        let file = fixture.file;
        let login = fixture
            .validate(at(VALIDATE_AT), fixture.legacy())
            .unwrap_or_else(|error| panic!("{file}: jitledger refused: {error:?}"));
        assert_eq!(login.name_id().value, fixture.name_id, "{file}");
        assert_eq!(login.signed_parts(), fixture.signed, "{file}");
        assert_eq!(login.signature_algorithm(), fixture.algorithm, "{file}");
        assert_eq!(login.in_response_to(), fixture.in_response_to, "{file}");
        assert_eq!(login.issuer(), IDP, "{file}");
        assert_eq!(
            login.response_id(),
            format!("_{}-response", fixture.stem()),
            "{file}"
        );
        assert_eq!(
            login.assertion_id(),
            format!("_{}-assertion", fixture.stem()),
            "{file}"
        );
        assert_eq!(
            login.session_index(),
            Some(format!("_{}-session", fixture.stem()).as_str()),
            "{file}"
        );
        assert_eq!(login.authn_instant(), at(ISSUED), "{file}");
        assert_eq!(login.not_on_or_after(), at(EXPIRES), "{file}");
        assert_eq!(login.attributes().len(), fixture.attributes_count, "{file}");
        assert_eq!(
            login.attribute("emailAddress").map(|a| a.values.clone()),
            Some(vec![fixture.name_id.to_string()]),
            "{file}"
        );
    }
}

#[test]
fn jitledger_refuses_every_fixture_outside_its_window() {
    let skew = time::Duration::seconds(SKEW_SECONDS);
    for fixture in FIXTURES {
        let file = fixture.file;
        let early = fixture.validate(at(ISSUED) - skew - time::Duration::seconds(1), true);
        assert!(
            matches!(early, Err(SamlError::AssertionNotYetValid { .. })),
            "{file}: {early:?}"
        );
        let late = fixture.validate(at(EXPIRES) + skew, true);
        assert!(
            matches!(late, Err(SamlError::AssertionExpired { .. })),
            "{file}: {late:?}"
        );
    }
}

#[test]
fn legacy_sha1_fixture_needs_allow_sha1() {
    for fixture in FIXTURES.iter().filter(|f| f.legacy()) {
        let refused = fixture.validate(at(VALIDATE_AT), false);
        assert!(
            matches!(refused, Err(SamlError::UnsupportedAlgorithm { .. })),
            "{}: {refused:?}",
            fixture.file
        );
    }
}

#[test]
fn xmlsec1_verifies_every_fixture_signature() {
    for fixture in FIXTURES {
        for position in fixture.signature_positions() {
            let output = Command::new("xmlsec1")
                .args([
                    "--verify",
                    "--enabled-key-data",
                    "key-name",
                    "--pubkey-cert-pem",
                ])
                .arg(cert_path(fixture.key))
                .args([
                    "--id-attr:ID",
                    "urn:oasis:names:tc:SAML:2.0:protocol:Response",
                    "--id-attr:ID",
                    "urn:oasis:names:tc:SAML:2.0:assertion:Assertion",
                    "--node-xpath",
                    position,
                ])
                .arg(responses_dir().join(fixture.file))
                .output()
                .expect("xmlsec1 is needed by this test: run tools/test, which installs it");
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(
                output.status.success() && stderr.lines().next() == Some("OK"),
                "{} at {position}: xmlsec1 refused:\n{stderr}",
                fixture.file
            );
        }
    }
}

/// Every committed response is tested here and described in the README, and the
/// benchmark input stays near the size of a typical real response.
#[test]
fn fixtures_directory_matches_this_table_and_the_readme() {
    let readme = std::fs::read_to_string(responses_dir().join("README.md")).unwrap();
    let mut on_disk: Vec<String> = std::fs::read_dir(responses_dir())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".xml"))
        .collect();
    on_disk.sort();
    let mut listed: Vec<String> = FIXTURES.iter().map(|f| f.file.to_string()).collect();
    listed.sort();
    assert_eq!(on_disk, listed);
    for fixture in FIXTURES {
        assert!(
            readme.contains(&format!("`{}`", fixture.file)),
            "{}",
            fixture.file
        );
    }
    assert!(readme.contains(VALIDATE_AT));
    let benchmark = FIXTURES[0].xml().len();
    assert!((5_000..8_000).contains(&benchmark), "{benchmark} bytes");
}
