//! XML-DSig verification of one enveloped signature, the way the 2024–25 fixes of
//! ruby-saml, xml-crypto, node-saml and goxmldsig converge:
//!
//! 1. the signature is a direct child of the element it signs (the caller places it);
//! 2. SignatureValue is verified over the canonicalised SignedInfo with the configured keys,
//!    one after another — KeyInfo is never read, and no key means no trust;
//! 3. only then is the Reference read, from that verified SignedInfo: exactly one, pointing at
//!    the parent's ID, with allow-listed transforms and digest;
//! 4. the parent is canonicalised and digested, and compared in constant time;
//! 5. the result is a [`Verified`] value naming exactly the element that was covered.
//!
//! Not for: detached or enveloping signatures, XPath/XSLT transforms, KeyInfo resolution,
//! or any reference other than a same-document `#id`.

use base64::Engine as _;
use ring::digest;

use super::c14n::{self, Kind, Method};
use super::error::SamlError;
use super::keys::{SignatureAlgorithm, SigningKey};
use super::limits::REFERENCE_TRANSFORMS_COUNT_MAX;
use super::xml::{Document, NodeId};

pub const DSIG_NAMESPACE: &str = "http://www.w3.org/2000/09/xmldsig#";
const ENVELOPED_SIGNATURE: &str = "http://www.w3.org/2000/09/xmldsig#enveloped-signature";
const EXCLUSIVE_C14N_NAMESPACE: &str = "http://www.w3.org/2001/10/xml-exc-c14n#";

/// What the verifier allows beyond its fixed allowlist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DsigPolicy {
    /// SHA-1 in SignatureMethod or DigestMethod. Off by default: SHA-1 collisions are
    /// practical, and only legacy IdPs still sign with it.
    pub allow_sha1: bool,
}

/// Proof that a signature verified with a configured key covers `element` entirely (minus
/// the signature itself). Only [`verify_enveloped`] makes one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    element: NodeId,
    signature_algorithm: SignatureAlgorithm,
    key_index: usize,
}

impl Verified {
    /// The element the signature covers.
    pub fn element(&self) -> NodeId {
        self.element
    }

    pub fn signature_algorithm(&self) -> SignatureAlgorithm {
        self.signature_algorithm
    }

    /// Which of the configured keys verified it.
    pub fn key_index(&self) -> usize {
        self.key_index
    }
}

/// A digest algorithm of XML-DSig.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigestAlgorithm {
    Sha1,
    Sha256,
    Sha384,
    Sha512,
}

impl DigestAlgorithm {
    pub fn from_uri(uri: &str) -> Option<DigestAlgorithm> {
        Some(match uri {
            "http://www.w3.org/2000/09/xmldsig#sha1" => Self::Sha1,
            "http://www.w3.org/2001/04/xmlenc#sha256" => Self::Sha256,
            "http://www.w3.org/2001/04/xmldsig-more#sha384" => Self::Sha384,
            "http://www.w3.org/2001/04/xmlenc#sha512" => Self::Sha512,
            _ => return None,
        })
    }

    pub fn uri(self) -> &'static str {
        match self {
            Self::Sha1 => "http://www.w3.org/2000/09/xmldsig#sha1",
            Self::Sha256 => "http://www.w3.org/2001/04/xmlenc#sha256",
            Self::Sha384 => "http://www.w3.org/2001/04/xmldsig-more#sha384",
            Self::Sha512 => "http://www.w3.org/2001/04/xmlenc#sha512",
        }
    }

    pub fn digest(self, data: &[u8]) -> Vec<u8> {
        digest::digest(self.algorithm(), data).as_ref().to_vec()
    }

    fn algorithm(self) -> &'static digest::Algorithm {
        match self {
            Self::Sha1 => &digest::SHA1_FOR_LEGACY_USE_ONLY,
            Self::Sha256 => &digest::SHA256,
            Self::Sha384 => &digest::SHA384,
            Self::Sha512 => &digest::SHA512,
        }
    }
}

/// Canonical bytes fed to a digest through a small buffer, so that the canonical form of
/// the signed element is never held whole.
struct DigestOutput {
    context: digest::Context,
    /// Canonical bytes not yet hashed: ring's `update` costs more per call than a copy.
    buffer: Vec<u8>,
}

impl DigestOutput {
    const BUFFER_BYTES: usize = 2048;

    fn new(algorithm: DigestAlgorithm) -> Self {
        DigestOutput {
            context: digest::Context::new(algorithm.algorithm()),
            buffer: Vec::with_capacity(Self::BUFFER_BYTES),
        }
    }

    fn flush(&mut self) {
        self.context.update(&self.buffer);
        self.buffer.clear();
    }

    fn finish(mut self) -> digest::Digest {
        self.flush();
        self.context.finish()
    }
}

impl c14n::Output for DigestOutput {
    fn write(&mut self, bytes: &[u8]) {
        if self.buffer.len() + bytes.len() > Self::BUFFER_BYTES {
            self.flush();
            if bytes.len() > Self::BUFFER_BYTES {
                self.context.update(bytes);
                return;
            }
        }
        self.buffer.extend_from_slice(bytes);
    }
}

/// Verifies the enveloped `signature`, a `ds:Signature` child of `signed`.
pub fn verify_enveloped(
    document: &Document,
    signed: NodeId,
    signature: NodeId,
    keys: &[SigningKey],
    policy: DsigPolicy,
) -> Result<Verified, SamlError> {
    if document.parent(signature) != Some(signed) || !is_ds(document, signature, "Signature") {
        return Err(SamlError::wrapping(
            "signature is not a child of the element it signs",
        ));
    }
    let parts = SignatureParts::read(document, signature)?;
    let signed_info_method = canonicalization_method(document, parts.canonicalization_method)?;
    let algorithm_uri = required_attribute(document, parts.signature_method, "Algorithm")?;
    let algorithm =
        SignatureAlgorithm::from_uri(algorithm_uri).ok_or_else(|| unsupported(algorithm_uri))?;
    if algorithm.uses_sha1() && !policy.allow_sha1 {
        return Err(unsupported(algorithm_uri));
    }

    // Step 2: SignedInfo, with the configured keys only.
    // The canonical form is about as long as the source: one allocation, no regrowth.
    let source_bytes = document
        .span(parts.signed_info)
        .map_or(0, |span| span.len());
    let mut signed_info = Vec::with_capacity(source_bytes + source_bytes / 4);
    c14n::canonicalize(
        document,
        parts.signed_info,
        &signed_info_method,
        None,
        &mut signed_info,
    );
    let signature_value = decode_base64(&document.text_ref(parts.signature_value));
    let key_index = signature_value.and_then(|value| {
        keys.iter()
            .position(|key| key.verify(algorithm, &signed_info, &value))
    });
    let Some(key_index) = key_index else {
        // The message is refused whatever follows. The Reference of this unverified
        // SignedInfo is consulted only to name the refusal better: content changed after
        // signing usually breaks the digest too, and "digest mismatch" says so.
        let diagnosis = check_reference(document, signed, signature, parts.signed_info, policy);
        return Err(diagnosis.err().unwrap_or_else(|| {
            SamlError::invalid_signature("SignatureValue does not verify with any IdP key")
        }));
    };

    // Steps 3 and 4, on the SignedInfo that just verified.
    check_reference(document, signed, signature, parts.signed_info, policy)?;
    Ok(Verified {
        element: signed,
        signature_algorithm: algorithm,
        key_index,
    })
}

/// Step 3: the single Reference points at the parent's ID with allow-listed transforms and
/// digest; step 4: the parent, minus the signature, digests to the DigestValue.
fn check_reference(
    document: &Document,
    signed: NodeId,
    signature: NodeId,
    signed_info: NodeId,
    policy: DsigPolicy,
) -> Result<(), SamlError> {
    let reference = single_reference(document, signed_info)?;
    let id = document
        .id_attribute(signed)
        .filter(|id| !id.is_empty())
        .ok_or_else(|| SamlError::wrapping("signed element has no ID"))?;
    let uri = document.attribute(reference, "URI").unwrap_or("");
    if uri.strip_prefix('#') != Some(id) {
        return Err(SamlError::wrapping(format!(
            "Reference URI {uri:?} does not point at its parent's ID {id:?}"
        )));
    }
    let reference_method = reference_transforms(document, reference)?;
    let digest_method = child_ds(document, reference, "DigestMethod")?;
    let digest_uri = required_attribute(document, digest_method, "Algorithm")?;
    let digest_algorithm = DigestAlgorithm::from_uri(digest_uri)
        .filter(|algorithm| *algorithm != DigestAlgorithm::Sha1 || policy.allow_sha1)
        .ok_or_else(|| unsupported(digest_uri))?;
    let digest_value_node = child_ds(document, reference, "DigestValue")?;
    let expected_digest = decode_base64(&document.text_ref(digest_value_node))
        .ok_or_else(|| SamlError::invalid_signature("DigestValue is not base64"))?;

    // A bare-name reference never includes comments (XML-DSig §4.3.3.3), whatever the
    // canonicalisation method says.
    let mut canonical = DigestOutput::new(digest_algorithm);
    c14n::canonicalize_to(
        document,
        signed,
        &reference_method,
        Some(signature),
        &mut canonical,
    );
    let actual_digest = canonical.finish();
    if !constant_time_equal(actual_digest.as_ref(), &expected_digest) {
        return Err(SamlError::DigestMismatch {
            element: document.local_name(signed).to_string(),
        });
    }
    Ok(())
}

/// The element children of a `ds:Signature`, in the order XML-DSig §4.1 fixes.
struct SignatureParts {
    signed_info: NodeId,
    canonicalization_method: NodeId,
    signature_method: NodeId,
    signature_value: NodeId,
}

impl SignatureParts {
    fn read(document: &Document, signature: NodeId) -> Result<SignatureParts, SamlError> {
        let children: Vec<NodeId> = document.child_elements(signature).collect();
        let known = ["SignedInfo", "SignatureValue", "KeyInfo"];
        for child in &children {
            if !known.iter().any(|name| is_ds(document, *child, name)) {
                // A ds:Object, or anything else, carried inside a SAML signature only ever
                // hides content from the SP: the place of an Assertion in XSW6 and XSW8.
                let name = document.local_name(*child);
                return Err(SamlError::wrapping(format!("{name} inside a ds:Signature")));
            }
        }
        let (signed_info, signature_value) = match children.as_slice() {
            [signed_info, value, rest @ ..]
                if is_ds(document, *signed_info, "SignedInfo")
                    && is_ds(document, *value, "SignatureValue")
                    && rest.iter().all(|c| is_ds(document, *c, "KeyInfo"))
                    && rest.len() <= 1 =>
            {
                (*signed_info, *value)
            }
            _ => {
                return Err(SamlError::invalid_signature(
                    "Signature must hold SignedInfo, SignatureValue and an optional KeyInfo",
                ));
            }
        };
        let info: Vec<NodeId> = document.child_elements(signed_info).collect();
        let (canonicalization_method, signature_method) = match info.as_slice() {
            [c14n, method, ..]
                if is_ds(document, *c14n, "CanonicalizationMethod")
                    && is_ds(document, *method, "SignatureMethod") =>
            {
                (*c14n, *method)
            }
            _ => {
                return Err(SamlError::invalid_signature(
                    "SignedInfo must start with CanonicalizationMethod and SignatureMethod",
                ));
            }
        };
        Ok(SignatureParts {
            signed_info,
            canonicalization_method,
            signature_method,
            signature_value,
        })
    }
}

fn single_reference(document: &Document, signed_info: NodeId) -> Result<NodeId, SamlError> {
    let mut references = Vec::new();
    for (position, child) in document.child_elements(signed_info).enumerate() {
        match position {
            0 | 1 => continue,
            _ if is_ds(document, child, "Reference") => references.push(child),
            _ => {
                return Err(SamlError::invalid_signature(
                    "unexpected element in SignedInfo",
                ));
            }
        }
    }
    match references.as_slice() {
        [reference] => Ok(*reference),
        [] => Err(SamlError::invalid_signature("SignedInfo has no Reference")),
        _ => Err(SamlError::wrapping(
            "SignedInfo has more than one Reference",
        )),
    }
}

/// The canonicalisation a Reference's transforms describe: enveloped-signature, optionally
/// followed by one C14N 1.0 method. With no C14N transform the node set is serialised by
/// inclusive C14N (XML-DSig §4.3.3.2).
fn reference_transforms(document: &Document, reference: NodeId) -> Result<Method, SamlError> {
    let transforms: Vec<NodeId> = match document
        .children_named(reference, DSIG_NAMESPACE, "Transforms")
        .collect::<Vec<_>>()
        .as_slice()
    {
        [] => Vec::new(),
        [transforms] => document.child_elements(*transforms).collect(),
        _ => return Err(SamlError::invalid_signature("more than one Transforms")),
    };
    if transforms.len() > REFERENCE_TRANSFORMS_COUNT_MAX {
        return Err(SamlError::UnsupportedAlgorithm {
            uri: format!(
                "{} transforms (at most {REFERENCE_TRANSFORMS_COUNT_MAX})",
                transforms.len()
            ),
        });
    }
    let mut method = Method {
        kind: Kind::Inclusive,
        with_comments: false,
    };
    let mut saw_enveloped = false;
    for (position, transform) in transforms.iter().enumerate() {
        if !is_ds(document, *transform, "Transform") {
            return Err(SamlError::invalid_signature(
                "unexpected element in Transforms",
            ));
        }
        let uri = required_attribute(document, *transform, "Algorithm")?;
        if uri == ENVELOPED_SIGNATURE && position == 0 {
            if document.has_child_elements(*transform) {
                return Err(unsupported(uri));
            }
            saw_enveloped = true;
        } else if position == 1 {
            method = canonicalization_method(document, *transform)?;
        } else {
            return Err(unsupported(uri));
        }
    }
    if !saw_enveloped {
        return Err(SamlError::invalid_signature(
            "Reference lacks the enveloped-signature transform",
        ));
    }
    method.with_comments = false;
    Ok(method)
}

/// Reads a CanonicalizationMethod or a C14N Transform, with its InclusiveNamespaces.
fn canonicalization_method(document: &Document, node: NodeId) -> Result<Method, SamlError> {
    let uri = required_attribute(document, node, "Algorithm")?;
    let mut method = Method::from_uri(uri).ok_or_else(|| unsupported(uri))?;
    for child in document.child_elements(node) {
        let is_prefix_list =
            document.is_named(child, EXCLUSIVE_C14N_NAMESPACE, "InclusiveNamespaces");
        match &mut method.kind {
            Kind::Exclusive { inclusive_prefixes } if is_prefix_list => {
                let list = document.attribute(child, "PrefixList").unwrap_or("");
                inclusive_prefixes.extend(list.split_ascii_whitespace().map(str::to_string));
            }
            // Any other parameter (an XPath, say) changes what is covered: refuse it.
            _ => return Err(unsupported(&format!("{uri} with parameters"))),
        }
    }
    Ok(method)
}

fn is_ds(document: &Document, node: NodeId, local_name: &str) -> bool {
    document.is_named(node, DSIG_NAMESPACE, local_name)
}

fn child_ds(document: &Document, parent: NodeId, local_name: &str) -> Result<NodeId, SamlError> {
    let mut children = document.children_named(parent, DSIG_NAMESPACE, local_name);
    match (children.next(), children.next()) {
        (Some(child), None) => Ok(child),
        _ => Err(SamlError::invalid_signature(format!(
            "expected exactly one ds:{local_name}"
        ))),
    }
}

fn required_attribute<'d>(
    document: &'d Document,
    node: NodeId,
    name: &str,
) -> Result<&'d str, SamlError> {
    document
        .attribute(node, name)
        .ok_or_else(|| SamlError::invalid_signature(format!("missing {name} attribute")))
}

fn unsupported(uri: &str) -> SamlError {
    SamlError::UnsupportedAlgorithm {
        uri: uri.to_string(),
    }
}

/// Base64 with any XML white space inside (signatures are often wrapped at 64 or 76
/// columns, sometimes with `&#13;`).
pub(crate) fn decode_base64(text: &str) -> Option<Vec<u8>> {
    decode_base64_bytes(text.as_bytes())
}

/// [`decode_base64`] over bytes. White space is not in the base64 alphabet, so text that
/// decodes as it is had none: the white space is looked for only when that fails.
pub(crate) fn decode_base64_bytes(text: &[u8]) -> Option<Vec<u8>> {
    let engine = &base64::engine::general_purpose::STANDARD;
    if let Ok(decoded) = engine.decode(text) {
        return Some(decoded);
    }
    if !text.iter().any(|b| b.is_ascii_whitespace()) {
        return None;
    }
    let mut compact = Vec::with_capacity(text.len());
    compact.extend(text.iter().filter(|b| !b.is_ascii_whitespace()));
    engine.decode(compact).ok()
}

/// Compares without an early exit, so the time taken says nothing about where two digests
/// first differ.
fn constant_time_equal(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter()
        .zip(b)
        .fold(0u8, |difference, (x, y)| difference | (x ^ y))
        == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_equal_compares_whole_slices() {
        assert!(constant_time_equal(b"abc", b"abc"));
        assert!(!constant_time_equal(b"abc", b"abd"));
        assert!(!constant_time_equal(b"abc", b"ab"));
    }

    #[test]
    fn digest_output_equals_one_digest_of_the_whole() {
        use c14n::Output as _;
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
        // Pieces of 1 byte to more than the buffer, crossing its end at every offset.
        let mut output = DigestOutput::new(DigestAlgorithm::Sha256);
        let mut start = 0;
        let mut size = 1;
        while start < data.len() {
            let end = (start + size).min(data.len());
            output.write(&data[start..end]);
            start = end;
            size = size * 3 % (DigestOutput::BUFFER_BYTES + 700) + 1;
        }
        assert_eq!(
            output.finish().as_ref(),
            DigestAlgorithm::Sha256.digest(&data).as_slice()
        );
    }

    #[test]
    fn base64_tolerates_wrapping() {
        assert_eq!(decode_base64("YW\r\nJj\n"), Some(b"abc".to_vec()));
        assert_eq!(decode_base64("Y%"), None);
    }
}
