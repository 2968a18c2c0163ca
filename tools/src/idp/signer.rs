//! The test IdP's signing key: a ring key pair (or, for `rsa-sha1`, the key's raw numbers),
//! its certificate, and the XML-DSig algorithms it signs with.
//!
//! Not for: key management. Keys are the committed test keys or files a developer names.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use jitledger::saml::dsig::DigestAlgorithm;
use jitledger::saml::keys::{SignatureAlgorithm, SigningKey};
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, RsaKeyPair};

use super::IdpError;
use super::rsa_sha1::{RawRsaKey, SHA1_DIGEST_INFO};

/// The test keys committed in `tests/fixtures/keys`, made by `tools/gen-keys`.
pub const FIXTURE_KEYS: &[&str] = &[
    "rsa2048",
    "rsa4096",
    "p256",
    "legacy-sha1",
    "v1",
    "attacker",
];

/// Where the committed test keys are.
pub fn fixture_keys_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/keys")
}

/// The algorithm each committed key signs with, as its IdP would: the legacy key with
/// `rsa-sha1`, the P-256 key with `ecdsa-sha256`, every other with `rsa-sha256`.
pub fn fixture_algorithm(name: &str) -> SignatureAlgorithm {
    match name {
        "p256" => SignatureAlgorithm::EcdsaSha256,
        "legacy-sha1" => SignatureAlgorithm::RsaSha1,
        _ => SignatureAlgorithm::RsaSha256,
    }
}

/// Loads a committed test key (`rsa2048`, `rsa4096`, `p256`, `legacy-sha1`, `v1`,
/// `attacker`) with its certificate and [`fixture_algorithm`].
pub fn fixture_key(name: &str) -> Result<Signer, IdpError> {
    if !FIXTURE_KEYS.contains(&name) {
        return Err(IdpError::Key {
            reason: format!(
                "no fixture key {name:?} (known: {})",
                FIXTURE_KEYS.join(", ")
            ),
        });
    }
    let directory = fixture_keys_dir();
    let read = |file: String| {
        let path = directory.join(file);
        std::fs::read(&path).map_err(|source| IdpError::Io { path, source })
    };
    let pkcs8 = read(format!("{name}.key.pk8"))?;
    let certificate = read(format!("{name}.cert.pem"))?;
    let certificate = String::from_utf8(certificate).map_err(|_| IdpError::Key {
        reason: format!("{name}.cert.pem is not UTF-8"),
    })?;
    Signer::from_pkcs8(&pkcs8, &certificate, fixture_algorithm(name))
}

enum PrivateKey {
    Rsa(RsaKeyPair),
    /// ring has no SHA-1 signing, so `rsa-sha1` goes through [`RawRsaKey`].
    RsaSha1(RawRsaKey),
    EcdsaP256(EcdsaKeyPair),
}

/// A key that signs XML-DSig `SignedInfo`s, with the certificate that goes into `KeyInfo`.
pub struct Signer {
    key: PrivateKey,
    algorithm: SignatureAlgorithm,
    digest: DigestAlgorithm,
    certificate_pem: String,
    /// The certificate's base64 body on one line, as `ds:X509Certificate` holds it.
    certificate_base64: String,
    /// The certificate read by jitledger: what an SP configured with this IdP would trust.
    verifying_key: SigningKey,
    rng: SystemRandom,
}

// Private keys stay out of debug output.
impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("algorithm", &self.algorithm)
            .field("digest", &self.digest)
            .field("certificate", &self.verifying_key)
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// A signer from an unencrypted PKCS#8 DER key and its PEM certificate. The digest is
    /// SHA-1 for `rsa-sha1` (legacy IdPs use SHA-1 throughout) and SHA-256 otherwise.
    ///
    /// Supported: `rsa-sha1`, `rsa-sha256`, `rsa-sha384`, `rsa-sha512` with an RSA key, and
    /// `ecdsa-sha256` with a P-256 key. The certificate must hold the key's public half:
    /// a test message is signed and verified with it, so a mismatched pair fails here
    /// rather than as a puzzling refusal in the SP under test.
    pub fn from_pkcs8(
        pkcs8: &[u8],
        certificate_pem: &str,
        algorithm: SignatureAlgorithm,
    ) -> Result<Signer, IdpError> {
        let rng = SystemRandom::new();
        let rejected = |error: ring::error::KeyRejected| IdpError::Key {
            reason: format!("{algorithm:?} key rejected by ring: {error}"),
        };
        let key = match algorithm {
            SignatureAlgorithm::RsaSha1 => {
                PrivateKey::RsaSha1(RawRsaKey::from_pkcs8(pkcs8).map_err(|reason| {
                    IdpError::Key {
                        reason: reason.to_string(),
                    }
                })?)
            }
            SignatureAlgorithm::RsaSha256
            | SignatureAlgorithm::RsaSha384
            | SignatureAlgorithm::RsaSha512 => {
                PrivateKey::Rsa(RsaKeyPair::from_pkcs8(pkcs8).map_err(rejected)?)
            }
            SignatureAlgorithm::EcdsaSha256 => PrivateKey::EcdsaP256(
                EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8, &rng)
                    .map_err(rejected)?,
            ),
            other => {
                return Err(IdpError::Key {
                    reason: format!("signing with {other:?} is not supported"),
                });
            }
        };
        let verifying_key =
            SigningKey::from_certificate_text(certificate_pem).map_err(|error| IdpError::Key {
                reason: format!("certificate: {error}"),
            })?;
        let certificate_base64 =
            base64::engine::general_purpose::STANDARD.encode(verifying_key.certificate_der());
        let digest = if algorithm == SignatureAlgorithm::RsaSha1 {
            DigestAlgorithm::Sha1
        } else {
            DigestAlgorithm::Sha256
        };
        let signer = Signer {
            key,
            algorithm,
            digest,
            certificate_pem: certificate_pem.to_string(),
            certificate_base64,
            verifying_key,
            rng,
        };
        let probe = b"jitledger idp-sim key check";
        let signature = signer.sign(probe)?;
        if !signer.verifying_key.verify(algorithm, probe, &signature) {
            return Err(IdpError::Key {
                reason: "the certificate does not hold this private key's public key".into(),
            });
        }
        Ok(signer)
    }

    /// Uses another DigestMethod for References (say SHA-256 with `rsa-sha1`, as some IdPs
    /// mix them).
    pub fn with_digest(mut self, digest: DigestAlgorithm) -> Signer {
        self.digest = digest;
        self
    }

    pub fn algorithm(&self) -> SignatureAlgorithm {
        self.algorithm
    }

    pub fn digest(&self) -> DigestAlgorithm {
        self.digest
    }

    pub fn certificate_pem(&self) -> &str {
        &self.certificate_pem
    }

    /// The DER certificate in base64, without line breaks.
    pub fn certificate_base64(&self) -> &str {
        &self.certificate_base64
    }

    /// The key as jitledger reads it from this certificate: what goes into an `IdpTrust`.
    pub fn verifying_key(&self) -> &SigningKey {
        &self.verifying_key
    }

    /// Signs `message` (a canonical SignedInfo) into an XML-DSig SignatureValue: PKCS#1 v1.5
    /// for RSA, raw `r‖s` for ECDSA (XML-DSig 1.1 §6.4.3), not DER.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, IdpError> {
        let failed = |_| IdpError::Sign;
        match &self.key {
            PrivateKey::Rsa(key) => {
                let encoding: &'static dyn signature::RsaEncoding = match self.algorithm {
                    SignatureAlgorithm::RsaSha384 => &signature::RSA_PKCS1_SHA384,
                    SignatureAlgorithm::RsaSha512 => &signature::RSA_PKCS1_SHA512,
                    _ => &signature::RSA_PKCS1_SHA256,
                };
                let mut output = vec![0; key.public().modulus_len()];
                key.sign(encoding, &self.rng, message, &mut output)
                    .map_err(failed)?;
                Ok(output)
            }
            PrivateKey::RsaSha1(key) => {
                let digest = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, message);
                key.sign_digest(SHA1_DIGEST_INFO, digest.as_ref())
                    .map_err(|_| IdpError::Sign)
            }
            PrivateKey::EcdsaP256(key) => key
                .sign(&self.rng, message)
                .map(|signature| signature.as_ref().to_vec())
                .map_err(failed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_fixture_key_loads_and_matches_its_certificate() {
        for name in FIXTURE_KEYS {
            let signer = fixture_key(name).unwrap_or_else(|error| panic!("{name}: {error}"));
            assert_eq!(signer.algorithm(), fixture_algorithm(name));
        }
    }

    #[test]
    fn mismatched_certificate_is_refused() {
        let pkcs8 = std::fs::read(fixture_keys_dir().join("rsa2048.key.pk8")).unwrap();
        let other = std::fs::read_to_string(fixture_keys_dir().join("attacker.cert.pem")).unwrap();
        let error = Signer::from_pkcs8(&pkcs8, &other, SignatureAlgorithm::RsaSha256).unwrap_err();
        assert!(matches!(error, IdpError::Key { .. }), "{error}");
    }

    #[test]
    fn unknown_fixture_is_named() {
        let error = fixture_key("rsa1024").unwrap_err();
        assert!(error.to_string().contains("rsa1024"));
    }

    #[test]
    fn ecdsa_signatures_are_raw_r_and_s() {
        let signer = fixture_key("p256").unwrap();
        assert_eq!(signer.sign(b"x").unwrap().len(), 64);
    }
}
