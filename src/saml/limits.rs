//! Every bound the SAML layer enforces, in one place, each with the reason for its value.
//!
//! Names carry the unit last (`_bytes_max`, `_count_max`) so that a reader never has to guess
//! whether a number counts bytes, characters or elements.

/// Bounds applied while parsing one XML document.
///
/// Two presets exist because a SAML Response and a metadata document differ in size by orders
/// of magnitude; both are far above what real IdPs send and far below what would let one
/// request cost the service more than a few milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct XmlLimits {
    /// Input size after base64 decoding.
    pub document_bytes_max: usize,
    /// Element nesting. Real responses nest about 8 deep; deep nesting only serves attacks
    /// on recursive code (canonicalisation recurses over the tree).
    pub depth_max: usize,
    /// Elements in the whole document.
    pub elements_count_max: usize,
    /// Attributes on one element (namespace declarations not included).
    pub attributes_per_element_max: usize,
    /// Namespace declarations on one element.
    pub namespace_declarations_per_element_max: usize,
    /// One text node, attribute value or comment, after entity expansion.
    pub text_bytes_max: usize,
    /// One qualified name (element or attribute).
    pub name_bytes_max: usize,
}

/// A SAML Response: 1 MiB is what CONTRACT.md allows on the wire for SAML routes. Big
/// responses carry group lists of a few thousand entries; 10,000 elements covers them.
pub const RESPONSE_XML: XmlLimits = XmlLimits {
    document_bytes_max: 1024 * 1024,
    depth_max: 64,
    elements_count_max: 10_000,
    attributes_per_element_max: 64,
    namespace_declarations_per_element_max: 32,
    text_bytes_max: 256 * 1024,
    name_bytes_max: 256,
};

/// IdP metadata: 4 MiB as CONTRACT.md allows for the metadata route. A single
/// EntityDescriptor is a few KB; an EntitiesDescriptor holding a small federation may be
/// larger, and key rollover adds certificates.
pub const METADATA_XML: XmlLimits = XmlLimits {
    document_bytes_max: 4 * 1024 * 1024,
    depth_max: 64,
    elements_count_max: 100_000,
    attributes_per_element_max: 64,
    namespace_declarations_per_element_max: 64,
    text_bytes_max: 1024 * 1024,
    name_bytes_max: 256,
};

/// The base64 form of a response: 4/3 of the XML bound plus line breaks.
pub const RESPONSE_BASE64_BYTES_MAX: usize = RESPONSE_XML.document_bytes_max / 3 * 4 + 64 * 1024;

/// Attribute elements in one assertion. Group-heavy IdPs send a few hundred.
pub const ATTRIBUTES_COUNT_MAX: usize = 1_000;

/// Values of one attribute. Group memberships can run to a few thousand.
pub const ATTRIBUTE_VALUES_COUNT_MAX: usize = 5_000;

/// Signing keys kept for one IdP: rollover needs two or three; a metadata file listing more
/// is either a federation aggregate or a mistake, and every key costs a verification on a
/// bad signature.
pub const IDP_SIGNING_KEYS_COUNT_MAX: usize = 8;

/// Transforms in one Reference: enveloped-signature and one canonicalisation method.
pub const REFERENCE_TRANSFORMS_COUNT_MAX: usize = 2;

/// RSA modulus size accepted by verification. ring's lower bound for legacy keys is 1024;
/// the ADFS and SimpleSAMLphp captures in the interoperability corpus still use 1024-bit keys.
pub const RSA_MODULUS_BITS_MIN: usize = 1024;
