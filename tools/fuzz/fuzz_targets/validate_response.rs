//! A SAML Response (XML, or the base64 of the HTTP-POST binding) through
//! `ParsedResponse::parse` and `validate` against one fixed IdP, SP and instant. The
//! configuration matches tests/attacks.rs, so responses signed by tools/fuzz.sh with the
//! committed rsa2048 key are accepted and the business rules after the signature are reached.
#![no_main]

use std::sync::LazyLock;

use jitledger::saml::instant;
use jitledger::saml::keys::SigningKey;
use jitledger::saml::response::{
    ExpectedRequests, IdpTrust, ParsedResponse, SpSettings, decode_post_binding,
};
use libfuzzer_sys::fuzz_target;

const IDP: &str = "https://idp.example.com/metadata";
const SP: &str = "https://sp.example.com/metadata";
const ACS: &str = "https://sp.example.com/acs";
const NOW: &str = "2026-06-01T12:00:00Z";
const REQUEST_ID: &str = "_request-1";

struct Fixture {
    idp: IdpTrust,
    sp: SpSettings,
    expected: ExpectedRequests,
    /// `JITLEDGER_FUZZ_VERBOSE=1` prints each outcome, for triage:
    /// `JITLEDGER_FUZZ_VERBOSE=1 target/x86_64-unknown-linux-gnu/release/validate_response FILE`.
    verbose: bool,
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let certificate = include_str!("../../../tests/fixtures/keys/rsa2048.cert.pem");
    Fixture {
        idp: IdpTrust {
            entity_id: IDP.to_string(),
            signing_keys: vec![SigningKey::from_certificate_text(certificate).unwrap()],
            allow_sha1: false,
        },
        sp: SpSettings {
            entity_id: SP.to_string(),
            acs_url: ACS.to_string(),
            clock_skew_seconds: 120,
            allow_idp_initiated: true,
        },
        expected: [REQUEST_ID].into_iter().collect(),
        verbose: std::env::var_os("JITLEDGER_FUZZ_VERBOSE").is_some(),
    }
});

fuzz_target!(|data: &[u8]| {
    let fixture = &*FIXTURE;
    let now = instant::parse(NOW).unwrap();
    // XML starts with '<' (after optional white space or a BOM); anything else is taken for
    // the base64 form value.
    let looks_like_xml = data
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b == b'<' || *b == 0xEF);
    let decoded;
    let xml = if looks_like_xml {
        data
    } else {
        match decode_post_binding(data) {
            Ok(bytes) => {
                decoded = bytes;
                &decoded[..]
            }
            Err(_) => return,
        }
    };
    let parsed = match ParsedResponse::parse(xml) {
        Ok(parsed) => parsed,
        Err(error) => {
            if fixture.verbose {
                eprintln!("parse: {}: {error}", error.code());
            }
            return;
        }
    };
    let _ = parsed.claimed_issuer();
    let result = parsed.validate(&fixture.idp, &fixture.sp, &fixture.expected, now);
    if fixture.verbose {
        match &result {
            Ok(login) => eprintln!("accepted: {login:?}"),
            Err(error) => eprintln!("validate: {}: {error}", error.code()),
        }
    }
    if let Ok(login) = result {
        // What the validator promises of every login it returns.
        assert_eq!(login.issuer(), IDP);
        if let Some(id) = login.in_response_to() {
            assert!(
                fixture.expected.contains(id),
                "answers an unknown request {id:?}"
            );
        }
        let skew = std::time::Duration::from_secs(120);
        assert!(
            now < login.not_on_or_after() + skew,
            "accepted past NotOnOrAfter"
        );
    }
});
