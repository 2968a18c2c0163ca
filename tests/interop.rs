//! The SAML interoperability corpus (`../shared/interop`): real responses from real IdPs
//! and other SAML libraries, each evaluated at its pinned instant and compared with what
//! its manifest says a strict SP must do.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::PathBuf;

use base64::Engine as _;
use jitledger::saml::keys::SigningKey;
use jitledger::saml::metadata::parse_idp_metadata;
use jitledger::saml::response::{ExpectedRequests, IdpTrust, ParsedResponse, SpSettings};
use jitledger::saml::{SamlError, instant};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
struct Manifest {
    case: Vec<Case>,
}

#[derive(Debug, Deserialize)]
struct Case {
    file: String,
    encoding: String,
    idp_metadata: Option<String>,
    idp_cert: Option<String>,
    idp_entity_id: String,
    now: String,
    sp_entity_id: String,
    acs_url: String,
    request_id: Option<String>,
    legacy_sha1: bool,
    expect: String,
    name_id: Option<String>,
    #[serde(default)]
    attributes: BTreeMap<String, Vec<String>>,
    code: Option<String>,
    codes: Option<Vec<String>>,
    expired_now: Option<String>,
    early_now: Option<String>,
}

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/interop")
}

fn manifest() -> Manifest {
    let text = std::fs::read_to_string(corpus_dir().join("manifest.toml")).unwrap();
    toml::from_str(&text).unwrap()
}

fn xml_of(case: &Case) -> Vec<u8> {
    let raw = std::fs::read(corpus_dir().join(&case.file)).unwrap();
    let base64 = || {
        let compact: Vec<u8> = raw
            .iter()
            .copied()
            .filter(|b| !b.is_ascii_whitespace())
            .collect();
        base64::engine::general_purpose::STANDARD
            .decode(compact)
            .unwrap()
    };
    match case.encoding.as_str() {
        "xml" => raw,
        "base64" => base64(),
        "deflate-base64" => {
            let mut xml = Vec::new();
            flate2::read::DeflateDecoder::new(&base64()[..])
                .read_to_end(&mut xml)
                .unwrap();
            xml
        }
        other => panic!("unknown encoding {other}"),
    }
}

fn trust_of(case: &Case, allow_sha1: bool) -> IdpTrust {
    let signing_keys = match (&case.idp_metadata, &case.idp_cert) {
        (Some(metadata), _) => {
            let bytes = std::fs::read(corpus_dir().join(metadata)).unwrap();
            parse_idp_metadata(&bytes, None).unwrap().signing_keys
        }
        (None, Some(cert)) => {
            let text = std::fs::read_to_string(corpus_dir().join(cert)).unwrap();
            vec![SigningKey::from_certificate_text(&text).unwrap()]
        }
        (None, None) => panic!("{}: no trust anchor", case.file),
    };
    IdpTrust {
        entity_id: case.idp_entity_id.clone(),
        signing_keys,
        allow_sha1,
    }
}

fn evaluate(
    case: &Case,
    at: &str,
    allow_sha1: bool,
) -> Result<jitledger::saml::response::ValidatedLogin, SamlError> {
    let sp = SpSettings {
        entity_id: case.sp_entity_id.clone(),
        acs_url: case.acs_url.clone(),
        clock_skew_seconds: 120,
        allow_idp_initiated: true,
    };
    let expected: ExpectedRequests = case.request_id.iter().cloned().collect();
    let now = instant::parse(at).unwrap();
    ParsedResponse::parse(&xml_of(case))?.validate(&trust_of(case, allow_sha1), &sp, &expected, now)
}

/// Checks one case; returns what went wrong, if anything.
fn check(case: &Case) -> Vec<String> {
    let mut problems = Vec::new();
    let result = evaluate(case, &case.now, case.legacy_sha1);
    match case.expect.as_str() {
        "valid" => match result {
            Ok(login) => {
                let expected_name_id = case.name_id.as_deref().unwrap_or("").trim();
                if login.name_id().value != expected_name_id {
                    problems.push(format!(
                        "NameID {:?} != {expected_name_id:?}",
                        login.name_id().value
                    ));
                }
                for (name, values) in &case.attributes {
                    let found = login.attribute(name).map(|a| a.values.clone());
                    let wanted: Vec<String> = values.iter().map(|v| v.trim().to_string()).collect();
                    if found.as_ref() != Some(&wanted) {
                        problems.push(format!("attribute {name}: {found:?} != {wanted:?}"));
                    }
                }
                for (at, code) in [
                    (&case.expired_now, "assertion_expired"),
                    (&case.early_now, "assertion_not_yet_valid"),
                ] {
                    if let Some(at) = at {
                        let outcome = evaluate(case, at, case.legacy_sha1).map_err(|e| e.code());
                        if outcome.as_ref().err() != Some(&code) {
                            problems.push(format!(
                                "at {at}: {:?}, wanted {code}",
                                outcome.map(|_| "valid")
                            ));
                        }
                    }
                }
                if case.legacy_sha1 && evaluate(case, &case.now, false).is_ok() {
                    problems.push("valid with SHA-1 disallowed".to_string());
                }
            }
            Err(error) => problems.push(format!("refused with {} ({error})", error.code())),
        },
        "refuse" => {
            let acceptable: Vec<String> = case
                .code
                .iter()
                .cloned()
                .chain(case.codes.iter().flatten().cloned())
                .collect();
            match result {
                Ok(login) => problems.push(format!(
                    "accepted (NameID {:?}), wanted {acceptable:?}",
                    login.name_id().value
                )),
                Err(error) if acceptable.iter().any(|c| c == error.code()) => {}
                Err(error) => problems.push(format!(
                    "refused with {} ({error}), wanted {acceptable:?}",
                    error.code()
                )),
            }
        }
        other => panic!("unknown expectation {other}"),
    }
    problems
}

#[test]
fn every_corpus_case_gives_what_the_manifest_says() {
    let manifest = manifest();
    assert!(
        manifest.case.len() >= 70,
        "corpus shrank: {}",
        manifest.case.len()
    );
    let mut failures = Vec::new();
    for case in &manifest.case {
        let problems = check(case);
        let verdict = if problems.is_empty() { "ok" } else { "FAIL" };
        println!("{verdict:4} {:6} {}", case.expect, case.file);
        for problem in &problems {
            println!("       {problem}");
        }
        if !problems.is_empty() {
            failures.push(case.file.clone());
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed: {failures:#?}",
        failures.len(),
        manifest.case.len()
    );
}
