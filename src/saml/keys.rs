//! IdP signing keys: X.509 certificates from metadata turned into keys that ring can verify
//! with, and the one function that checks a signature with them.
//!
//! Not for: trust decisions about certificates. SAML trust comes from configuration (the
//! metadata an admin uploaded), not from a PKI: chains are not built, and expiry is reported
//! to the admin rather than enforced, as every major SP does.

use base64::Engine as _;
use ring::signature;
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::public_key::PublicKey;

use super::limits::RSA_MODULUS_BITS_MIN;

/// The algorithm of a public key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Rsa { modulus_bits: usize },
    EcdsaP256,
    EcdsaP384,
}

impl std::fmt::Display for KeyKind {
    /// The names admins read in the IdP view: `RSA-2048`, `EC-P256`, `EC-P384`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyKind::Rsa { modulus_bits } => write!(f, "RSA-{modulus_bits}"),
            KeyKind::EcdsaP256 => f.write_str("EC-P256"),
            KeyKind::EcdsaP384 => f.write_str("EC-P384"),
        }
    }
}

/// A signature algorithm of XML-DSig, as named by its SignatureMethod URI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureAlgorithm {
    RsaSha1,
    RsaSha256,
    RsaSha384,
    RsaSha512,
    EcdsaSha256,
    EcdsaSha384,
}

impl SignatureAlgorithm {
    /// XML-DSig 1.1 §6.4 and RFC 6931 §2.3 URIs.
    pub fn from_uri(uri: &str) -> Option<SignatureAlgorithm> {
        Some(match uri {
            "http://www.w3.org/2000/09/xmldsig#rsa-sha1" => Self::RsaSha1,
            "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256" => Self::RsaSha256,
            "http://www.w3.org/2001/04/xmldsig-more#rsa-sha384" => Self::RsaSha384,
            "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512" => Self::RsaSha512,
            "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256" => Self::EcdsaSha256,
            "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384" => Self::EcdsaSha384,
            _ => return None,
        })
    }

    pub fn uri(self) -> &'static str {
        match self {
            Self::RsaSha1 => "http://www.w3.org/2000/09/xmldsig#rsa-sha1",
            Self::RsaSha256 => "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
            Self::RsaSha384 => "http://www.w3.org/2001/04/xmldsig-more#rsa-sha384",
            Self::RsaSha512 => "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512",
            Self::EcdsaSha256 => "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256",
            Self::EcdsaSha384 => "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384",
        }
    }

    pub fn uses_sha1(self) -> bool {
        self == Self::RsaSha1
    }
}

/// Why a certificate could not become a signing key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    #[error("certificate is not valid base64")]
    Base64,
    #[error("certificate is not a DER X.509 certificate: {reason}")]
    Certificate { reason: String },
    #[error("unsupported public key algorithm {oid}")]
    UnsupportedKey { oid: String },
    #[error("RSA key of {modulus_bits} bits is too small (at least {RSA_MODULUS_BITS_MIN})")]
    RsaKeyTooSmall { modulus_bits: usize },
}

/// An IdP signing key taken from a certificate, with the facts an admin wants to see.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningKey {
    kind: KeyKind,
    /// What ring verifies with: PKCS#1 RSAPublicKey, or the uncompressed EC point.
    public_key: Vec<u8>,
    certificate_der: Vec<u8>,
    sha256_fingerprint: [u8; 32],
    /// Unix seconds.
    not_before: i64,
    not_after: i64,
    subject: String,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kind", &self.kind)
            .field("subject", &self.subject)
            .field("sha256_fingerprint", &self.fingerprint_hex())
            .finish()
    }
}

impl SigningKey {
    /// Reads a certificate written as base64 (white space anywhere, as metadata and settings
    /// files wrap it) with or without PEM armour.
    pub fn from_certificate_text(text: &str) -> Result<SigningKey, KeyError> {
        let body: String = text
            .lines()
            .filter(|line| !line.trim_start().starts_with("-----"))
            .flat_map(|line| line.chars())
            .filter(|c| !c.is_ascii_whitespace())
            .collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(body.as_bytes())
            .map_err(|_| KeyError::Base64)?;
        Self::from_certificate_der(&der)
    }

    /// Reads a DER certificate (X.509 v1 or v3).
    pub fn from_certificate_der(der: &[u8]) -> Result<SigningKey, KeyError> {
        let (rest, certificate) =
            X509Certificate::from_der(der).map_err(|error| KeyError::Certificate {
                reason: error.to_string(),
            })?;
        if !rest.is_empty() {
            return Err(KeyError::Certificate {
                reason: "trailing bytes".to_string(),
            });
        }
        let spki = certificate.public_key();
        let parsed = spki.parsed().map_err(|error| KeyError::Certificate {
            reason: error.to_string(),
        })?;
        let unsupported = || KeyError::UnsupportedKey {
            oid: spki.algorithm.algorithm.to_id_string(),
        };
        let kind = match parsed {
            PublicKey::RSA(rsa) => {
                let modulus_bits = rsa_modulus_bits(rsa.modulus);
                if modulus_bits < RSA_MODULUS_BITS_MIN {
                    return Err(KeyError::RsaKeyTooSmall { modulus_bits });
                }
                KeyKind::Rsa { modulus_bits }
            }
            PublicKey::EC(_) => {
                let curve = spki
                    .algorithm
                    .parameters
                    .as_ref()
                    .and_then(|parameters| parameters.as_oid().ok())
                    .map(|oid| oid.to_id_string());
                match curve.as_deref() {
                    Some("1.2.840.10045.3.1.7") => KeyKind::EcdsaP256,
                    Some("1.3.132.0.34") => KeyKind::EcdsaP384,
                    _ => return Err(unsupported()),
                }
            }
            _ => return Err(unsupported()),
        };
        let digest = ring::digest::digest(&ring::digest::SHA256, der);
        let mut sha256_fingerprint = [0; 32];
        sha256_fingerprint.copy_from_slice(digest.as_ref());
        let validity = certificate.validity();
        Ok(SigningKey {
            kind,
            public_key: spki.subject_public_key.data.to_vec(),
            certificate_der: der.to_vec(),
            sha256_fingerprint,
            not_before: validity.not_before.timestamp(),
            not_after: validity.not_after.timestamp(),
            subject: certificate.subject().to_string(),
        })
    }

    pub fn kind(&self) -> KeyKind {
        self.kind
    }

    pub fn certificate_der(&self) -> &[u8] {
        &self.certificate_der
    }

    /// Upper-case hex pairs joined by colons, as `openssl x509 -fingerprint -sha256` prints.
    pub fn fingerprint_hex(&self) -> String {
        const HEX: &[u8; 16] = b"0123456789ABCDEF";
        let mut hex = String::with_capacity(self.sha256_fingerprint.len() * 3);
        for (index, byte) in self.sha256_fingerprint.iter().enumerate() {
            if index > 0 {
                hex.push(':');
            }
            hex.push(char::from(HEX[usize::from(byte >> 4)]));
            hex.push(char::from(HEX[usize::from(byte & 0x0F)]));
        }
        hex
    }

    pub fn not_before_unix(&self) -> i64 {
        self.not_before
    }

    pub fn not_after_unix(&self) -> i64 {
        self.not_after
    }

    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// Checks `signature` over `message`. XML-DSig ECDSA signatures are raw r‖s (RFC 4050,
    /// XML-DSig 1.1 §6.4.3), hence ring's `FIXED` algorithms. A key/algorithm mismatch is a
    /// failed verification, never a fallback.
    pub fn verify(
        &self,
        algorithm: SignatureAlgorithm,
        message: &[u8],
        signature_value: &[u8],
    ) -> bool {
        use SignatureAlgorithm as A;
        let legacy_size = matches!(self.kind, KeyKind::Rsa { modulus_bits } if modulus_bits < 2048);
        let ring_algorithm: &dyn signature::VerificationAlgorithm = match (self.kind, algorithm) {
            (KeyKind::Rsa { .. }, A::RsaSha1) => {
                &signature::RSA_PKCS1_1024_8192_SHA1_FOR_LEGACY_USE_ONLY
            }
            (KeyKind::Rsa { .. }, A::RsaSha256) if legacy_size => {
                &signature::RSA_PKCS1_1024_8192_SHA256_FOR_LEGACY_USE_ONLY
            }
            (KeyKind::Rsa { .. }, A::RsaSha256) => &signature::RSA_PKCS1_2048_8192_SHA256,
            (KeyKind::Rsa { .. }, A::RsaSha384) => &signature::RSA_PKCS1_2048_8192_SHA384,
            (KeyKind::Rsa { .. }, A::RsaSha512) if legacy_size => {
                &signature::RSA_PKCS1_1024_8192_SHA512_FOR_LEGACY_USE_ONLY
            }
            (KeyKind::Rsa { .. }, A::RsaSha512) => &signature::RSA_PKCS1_2048_8192_SHA512,
            (KeyKind::EcdsaP256, A::EcdsaSha256) => &signature::ECDSA_P256_SHA256_FIXED,
            (KeyKind::EcdsaP384, A::EcdsaSha384) => &signature::ECDSA_P384_SHA384_FIXED,
            _ => return false,
        };
        signature::UnparsedPublicKey::new(ring_algorithm, &self.public_key)
            .verify(message, signature_value)
            .is_ok()
    }
}

/// Bits of a big-endian modulus, leading zero bytes (DER sign padding) ignored.
fn rsa_modulus_bits(modulus: &[u8]) -> usize {
    let significant: &[u8] = match modulus.iter().position(|byte| *byte != 0) {
        Some(start) => &modulus[start..],
        None => &[],
    };
    match significant.first() {
        Some(first) => significant.len() * 8 - first.leading_zeros() as usize,
        None => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn corpus(path: &str) -> String {
        let full = format!("{}/../shared/interop/{path}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(full).unwrap()
    }

    #[test]
    fn reads_pem_v3_certificate() {
        let key = SigningKey::from_certificate_text(&corpus("node-saml/cert.pem")).unwrap();
        assert_eq!(key.kind(), KeyKind::Rsa { modulus_bits: 2048 });
    }

    #[test]
    fn reads_v1_certificate_and_reports_fingerprint() {
        let text = corpus("python3-saml/settings1.idp.x509cert.pem");
        let key = SigningKey::from_certificate_text(&text).unwrap();
        assert_eq!(key.kind(), KeyKind::Rsa { modulus_bits: 1024 });
        assert_eq!(
            key.fingerprint_hex(),
            "C5:1C:FA:06:C7:A4:97:67:F6:EA:B1:82:38:EA:E1:C5:67:08:E2:92:64:DA:3D:11:F5:38:A1:2C:D2:C3:57:BA"
        );
    }

    #[test]
    fn key_kinds_have_stable_names() {
        let names: Vec<String> = [
            KeyKind::Rsa { modulus_bits: 3072 },
            KeyKind::EcdsaP256,
            KeyKind::EcdsaP384,
        ]
        .iter()
        .map(KeyKind::to_string)
        .collect();
        assert_eq!(names, ["RSA-3072", "EC-P256", "EC-P384"]);
    }

    #[test]
    fn reads_certificate_without_armour() {
        let text = corpus("ruby-saml/certificate_without_head_foot.pem");
        assert!(SigningKey::from_certificate_text(&text).is_ok());
    }

    #[test]
    fn garbage_is_refused() {
        assert_eq!(
            SigningKey::from_certificate_text("%%%"),
            Err(KeyError::Base64)
        );
        assert!(matches!(
            SigningKey::from_certificate_text("AAAA"),
            Err(KeyError::Certificate { .. })
        ));
    }

    #[test]
    fn modulus_bits_ignore_sign_padding() {
        assert_eq!(rsa_modulus_bits(&[0x00, 0x80, 0x00]), 16);
        assert_eq!(rsa_modulus_bits(&[0x01, 0x00]), 9);
    }
}
