//! RSA PKCS#1 v1.5 signing with SHA-1, for the legacy IdP that still signs `rsa-sha1`.
//!
//! ring verifies SHA-1 RSA signatures but deliberately cannot make them, so this module does
//! the private-key operation itself with num-bigint: EMSA-PKCS1-v1_5 encoding (RFC 8017
//! §9.2) and textbook `m^d mod n` (§5.2.1). It is a test tool: no blinding, no constant-time
//! arithmetic — acceptable for committed test keys, never for a real IdP.
//!
//! Not for: anything but tests. The module is checked against ring by signing the same
//! message with SHA-256 both ways (PKCS#1 v1.5 is deterministic, so the bytes must match).

use num_bigint::BigUint;

/// DER DigestInfo prefixes of RFC 8017 §9.2 note 1.
pub(super) const SHA1_DIGEST_INFO: &[u8] = &[
    0x30, 0x21, 0x30, 0x09, 0x06, 0x05, 0x2b, 0x0e, 0x03, 0x02, 0x1a, 0x05, 0x00, 0x04, 0x14,
];
#[cfg(test)]
pub(super) const SHA256_DIGEST_INFO: &[u8] = &[
    0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05,
    0x00, 0x04, 0x20,
];

/// The two numbers of an RSA private key that signing needs.
#[derive(Clone)]
pub(super) struct RawRsaKey {
    modulus: BigUint,
    private_exponent: BigUint,
    modulus_bytes: usize,
}

// The private exponent stays out of debug output.
impl std::fmt::Debug for RawRsaKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawRsaKey")
            .field("modulus_bits", &self.modulus.bits())
            .finish_non_exhaustive()
    }
}

impl RawRsaKey {
    /// Reads an unencrypted PKCS#8 `PrivateKeyInfo` (RFC 5208 §5) holding an RSAPrivateKey
    /// (RFC 8017 Appendix A.1.2). Only the modulus and private exponent are kept.
    pub(super) fn from_pkcs8(der: &[u8]) -> Result<RawRsaKey, &'static str> {
        let mut outer = Der::new(der).sequence()?;
        let _version = outer.integer()?;
        let _algorithm = outer.element(TAG_SEQUENCE)?;
        let private_key = outer.element(TAG_OCTET_STRING)?;
        let mut rsa = Der::new(private_key).sequence()?;
        let _version = rsa.integer()?;
        let modulus = BigUint::from_bytes_be(rsa.integer()?);
        let _public_exponent = rsa.integer()?;
        let private_exponent = BigUint::from_bytes_be(rsa.integer()?);
        let modulus_bytes =
            usize::try_from(modulus.bits().div_ceil(8)).map_err(|_| "RSA modulus too large")?;
        if modulus_bytes < 128 {
            return Err("RSA modulus shorter than 1024 bits");
        }
        Ok(RawRsaKey {
            modulus,
            private_exponent,
            modulus_bytes,
        })
    }

    /// Signs a message digest: EMSA-PKCS1-v1_5 with `digest_info_prefix`, then RSASP1.
    pub(super) fn sign_digest(
        &self,
        digest_info_prefix: &[u8],
        digest: &[u8],
    ) -> Result<Vec<u8>, &'static str> {
        let info_len = digest_info_prefix.len() + digest.len();
        // RFC 8017 §9.2 step 3: at least eight bytes of 0xFF padding.
        if self.modulus_bytes < info_len + 11 {
            return Err("RSA modulus too short for the digest");
        }
        let mut encoded = vec![0xff; self.modulus_bytes];
        encoded[0] = 0x00;
        encoded[1] = 0x01;
        let separator = self.modulus_bytes - info_len - 1;
        encoded[separator] = 0x00;
        encoded[separator + 1..separator + 1 + digest_info_prefix.len()]
            .copy_from_slice(digest_info_prefix);
        encoded[self.modulus_bytes - digest.len()..].copy_from_slice(digest);
        let message = BigUint::from_bytes_be(&encoded);
        let signature = message.modpow(&self.private_exponent, &self.modulus);
        // I2OSP: left-pad to the modulus length.
        let bytes = signature.to_bytes_be();
        let mut output = vec![0; self.modulus_bytes - bytes.len()];
        output.extend_from_slice(&bytes);
        Ok(output)
    }
}

const TAG_INTEGER: u8 = 0x02;
const TAG_OCTET_STRING: u8 = 0x04;
const TAG_SEQUENCE: u8 = 0x30;

/// A cursor over DER bytes: just enough of X.690 for the two structures above.
struct Der<'a> {
    rest: &'a [u8],
}

impl<'a> Der<'a> {
    fn new(bytes: &'a [u8]) -> Der<'a> {
        Der { rest: bytes }
    }

    /// The contents of the next element, which must carry `tag`.
    fn element(&mut self, tag: u8) -> Result<&'a [u8], &'static str> {
        let (&found, after_tag) = self.rest.split_first().ok_or("DER ends early")?;
        if found != tag {
            return Err("unexpected DER tag");
        }
        let (&first, mut after_length) = after_tag.split_first().ok_or("DER ends early")?;
        let length = if first < 0x80 {
            usize::from(first)
        } else {
            let count = usize::from(first & 0x7f);
            if count == 0 || count > 4 || after_length.len() < count {
                return Err("unsupported DER length");
            }
            let (length_bytes, rest) = after_length.split_at(count);
            after_length = rest;
            length_bytes
                .iter()
                .fold(0usize, |length, byte| (length << 8) | usize::from(*byte))
        };
        if after_length.len() < length {
            return Err("DER ends early");
        }
        let (contents, rest) = after_length.split_at(length);
        self.rest = rest;
        Ok(contents)
    }

    fn sequence(&mut self) -> Result<Der<'a>, &'static str> {
        self.element(TAG_SEQUENCE).map(Der::new)
    }

    /// A non-negative INTEGER's big-endian bytes (a leading sign byte is harmless to
    /// `BigUint::from_bytes_be`).
    fn integer(&mut self) -> Result<&'a [u8], &'static str> {
        self.element(TAG_INTEGER)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{RSA_PKCS1_SHA256, RsaKeyPair};

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!(
            "{}/../tests/fixtures/keys/{name}.key.pk8",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read(path).unwrap()
    }

    /// PKCS#1 v1.5 is deterministic: with SHA-256, this code and ring must agree byte for
    /// byte, which shows that the encoding and the exponentiation are right.
    #[test]
    fn matches_ring_for_sha256() {
        for name in ["rsa2048", "rsa4096", "legacy-sha1", "v1"] {
            let pkcs8 = fixture(name);
            let message = b"jitledger test message";
            let ring_key = RsaKeyPair::from_pkcs8(&pkcs8).unwrap();
            let mut expected = vec![0; ring_key.public().modulus_len()];
            let rng = ring::rand::SystemRandom::new();
            ring_key
                .sign(&RSA_PKCS1_SHA256, &rng, message, &mut expected)
                .unwrap();
            let digest = ring::digest::digest(&ring::digest::SHA256, message);
            let ours = RawRsaKey::from_pkcs8(&pkcs8)
                .unwrap()
                .sign_digest(SHA256_DIGEST_INFO, digest.as_ref())
                .unwrap();
            assert_eq!(ours, expected, "{name}");
        }
    }

    #[test]
    fn refuses_non_rsa_keys() {
        assert!(RawRsaKey::from_pkcs8(&fixture("p256")).is_err());
        assert!(RawRsaKey::from_pkcs8(b"").is_err());
    }
}
