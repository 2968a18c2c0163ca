//! How long jitledger takes to validate a ~6 KB assertion-signed RSA-2048 SAML Response,
//! against a floor measured in the same run: the work no validator of this message can skip.
//!
//! * `validate`: `jitledger::saml::response::validate` on the base64 form value — decode,
//!   parse, signature placement, digest and signature verification, business rules: the whole
//!   path an HTTP handler runs.
//! * `floor`: base64 decode of the same bytes, one quick-xml pass over every event of the
//!   XML (no tree), SHA-256 over the whole XML and one RSA-2048 PKCS#1 SHA-256 verification.
//! * `floor/*`: those four parts alone, so the breakdown is visible.
//! * `parts/*`: two of validate's own parts alone: the tree parse, and the exclusive
//!   canonicalisation of the Assertion without its Signature (into a reused `Vec`).
//!
//! The input is tools/benches/data/response-6k.b64, written by tools/benches/make-data (signed
//! by xmlsec1). BENCHMARKS.md at the repository root records results and the goals:
//! validate ≤ 1.5 × floor, and ≥ 5 × the throughput of libxmlsec1 (tools/bench-peer).

use std::hint::black_box;

use base64::Engine as _;
use criterion::{Criterion, criterion_group, criterion_main};
use jitledger::saml::keys::SigningKey;
use jitledger::saml::limits::RESPONSE_XML;
use jitledger::saml::response::{self, ExpectedRequests, IdpTrust, SpSettings};
use jitledger::saml::xml::Document;
use jitledger::saml::{c14n, instant};
use quick_xml::Reader;
use quick_xml::events::Event;
use ring::rand::SystemRandom;
use ring::signature::{self, KeyPair as _, RsaKeyPair, UnparsedPublicKey};

/// The service's allocator (`src/main.rs` says why), so that what is measured matches it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The `SAMLResponse` form value: base64 of response-6k.xml, no line breaks.
const RESPONSE_BASE64: &[u8] = include_bytes!("data/response-6k.b64");
const CERTIFICATE_PEM: &str = include_str!("../../tests/fixtures/keys/rsa2048.cert.pem");
const PRIVATE_KEY_PKCS8: &[u8] = include_bytes!("../../tests/fixtures/keys/rsa2048.key.pk8");

const IDP: &str = "https://idp.example.com/metadata";
const SP: &str = "https://sp.example.com/metadata";
const ACS: &str = "https://sp.example.com/acs";
const REQUEST_ID: &str = "_request-1";
/// Between the response's IssueInstant (2026-01-01) and its NotOnOrAfter (2126-01-01).
const NOW: &str = "2026-06-01T00:00:00Z";

fn base64_decode(encoded: &[u8]) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .expect("response-6k.b64 is base64")
}

/// Reads every event of the document; returns the event count so nothing is optimised away.
fn quick_xml_parse(xml: &[u8]) -> usize {
    let text = std::str::from_utf8(xml).expect("response-6k.xml is UTF-8");
    let mut reader = Reader::from_str(text);
    let mut events = 0;
    loop {
        match reader.read_event().expect("response-6k.xml is well-formed") {
            Event::Eof => return events,
            event => {
                black_box(&event);
                events += 1;
            }
        }
    }
}

fn sha256(xml: &[u8]) -> ring::digest::Digest {
    ring::digest::digest(&ring::digest::SHA256, xml)
}

/// One RSA-2048 PKCS#1 v1.5 SHA-256 verification, the public key parsed as jitledger does
/// (`UnparsedPublicKey` over the SubjectPublicKeyInfo bit string).
struct RsaVerification {
    public_key: Vec<u8>,
    message: Vec<u8>,
    signature: Vec<u8>,
}

impl RsaVerification {
    /// Signs `message` once, outside any timing loop.
    fn new(message: &[u8]) -> RsaVerification {
        let key_pair =
            RsaKeyPair::from_pkcs8(PRIVATE_KEY_PKCS8).expect("rsa2048.key.pk8 is an RSA key");
        let mut signature = vec![0; key_pair.public().modulus_len()];
        key_pair
            .sign(
                &signature::RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                message,
                &mut signature,
            )
            .expect("RSA signing works");
        let verification = RsaVerification {
            public_key: key_pair.public_key().as_ref().to_vec(),
            message: message.to_vec(),
            signature,
        };
        assert!(verification.verify(), "the precomputed signature verifies");
        verification
    }

    fn verify(&self) -> bool {
        UnparsedPublicKey::new(&signature::RSA_PKCS1_2048_8192_SHA256, &self.public_key)
            .verify(black_box(&self.message), black_box(&self.signature))
            .is_ok()
    }
}

/// The bytes an XML-DSig RSA signature covers here: the (already canonical) SignedInfo.
fn signed_info(xml: &[u8]) -> &[u8] {
    let text = std::str::from_utf8(xml).expect("response-6k.xml is UTF-8");
    let start = text.find("<ds:SignedInfo").expect("a SignedInfo");
    let end = text.find("</ds:SignedInfo>").expect("a SignedInfo end") + "</ds:SignedInfo>".len();
    &xml[start..end]
}

fn validate_6k(c: &mut Criterion) {
    let idp = IdpTrust {
        entity_id: IDP.to_string(),
        signing_keys: vec![
            SigningKey::from_certificate_text(CERTIFICATE_PEM).expect("rsa2048.cert.pem reads"),
        ],
        allow_sha1: false,
    };
    let sp = SpSettings {
        entity_id: SP.to_string(),
        acs_url: ACS.to_string(),
        clock_skew_seconds: 120,
        allow_idp_initiated: false,
    };
    let expected: ExpectedRequests = [REQUEST_ID].into_iter().collect();
    let now = instant::parse(NOW).expect("NOW is an xs:dateTime");

    // A benchmark of a refusal would measure the wrong path: check acceptance first.
    let login = response::validate(RESPONSE_BASE64, &idp, &sp, &expected, now)
        .expect("response-6k validates");
    assert_eq!(login.attributes().len(), 15);

    let xml = base64_decode(RESPONSE_BASE64);
    let rsa = RsaVerification::new(signed_info(&xml));

    let mut group = c.benchmark_group("validate_6k");
    group.bench_function("validate", |b| {
        b.iter(|| response::validate(black_box(RESPONSE_BASE64), &idp, &sp, &expected, now))
    });
    group.bench_function("floor", |b| {
        b.iter(|| {
            let xml = base64_decode(black_box(RESPONSE_BASE64));
            let events = quick_xml_parse(&xml);
            let digest = sha256(&xml);
            let verified = rsa.verify();
            (events, digest, verified)
        })
    });
    group.bench_function("floor/base64", |b| {
        b.iter(|| base64_decode(black_box(RESPONSE_BASE64)))
    });
    group.bench_function("floor/quick_xml", |b| {
        b.iter(|| quick_xml_parse(black_box(&xml)))
    });
    group.bench_function("floor/sha256", |b| b.iter(|| sha256(black_box(&xml))));
    group.bench_function("floor/rsa_verify", |b| b.iter(|| rsa.verify()));
    group.bench_function("parts/parse", |b| {
        b.iter(|| Document::parse(black_box(&xml), &RESPONSE_XML).map(|d| d.root()))
    });
    let document = Document::parse(&xml, &RESPONSE_XML).expect("response-6k.xml parses");
    let assertion = document
        .elements()
        .find(|id| document.local_name(*id) == "Assertion")
        .expect("an Assertion");
    let signature = document
        .child_elements(assertion)
        .find(|id| document.local_name(*id) == "Signature");
    group.bench_function("parts/c14n_assertion", |b| {
        let mut canonical = Vec::with_capacity(xml.len());
        b.iter(|| {
            canonical.clear();
            c14n::canonicalize(
                &document,
                black_box(assertion),
                &c14n::Method::exclusive(),
                signature,
                &mut canonical,
            );
            canonical.len()
        })
    });
    group.finish();
}

criterion_group!(benches, validate_6k);
criterion_main!(benches);
