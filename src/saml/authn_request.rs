//! What the SP sends: an AuthnRequest for the HTTP-Redirect binding (SAML Core §3.4.1,
//! Bindings §3.4.4.1) and the SP's own metadata (Metadata §2.4.4).
//!
//! Not for: signing requests. jitledger's requests carry nothing secret and grant nothing;
//! the response's signature is what is checked, and InResponseTo ties it to this request.

use std::io::Write as _;

use base64::Engine as _;
use flate2::Compression;
use flate2::write::DeflateEncoder;
use time::OffsetDateTime;

use super::instant;
use super::metadata::HTTP_POST_BINDING;

/// One AuthnRequest. `id` must be unpredictable and is remembered by the caller until the
/// response that names it arrives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthnRequest {
    pub id: String,
    pub issue_instant: OffsetDateTime,
    /// The IdP's SSO endpoint (HTTP-Redirect binding).
    pub destination: String,
    pub assertion_consumer_service_url: String,
    /// The SP entity ID.
    pub issuer: String,
}

impl AuthnRequest {
    pub fn to_xml(&self) -> String {
        format!(
            concat!(
                r#"<samlp:AuthnRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" "#,
                r#"xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="{id}" Version="2.0" "#,
                r#"IssueInstant="{instant}" Destination="{destination}" "#,
                r#"ProtocolBinding="{binding}" AssertionConsumerServiceURL="{acs}">"#,
                r#"<saml:Issuer>{issuer}</saml:Issuer>"#,
                r#"<samlp:NameIDPolicy AllowCreate="true"/>"#,
                r#"</samlp:AuthnRequest>"#
            ),
            id = escape(&self.id),
            instant = instant::format(self.issue_instant),
            destination = escape(&self.destination),
            binding = HTTP_POST_BINDING,
            acs = escape(&self.assertion_consumer_service_url),
            issuer = escape(&self.issuer),
        )
    }

    /// The URL to redirect the browser to: the request raw-DEFLATEd, base64-encoded and
    /// URL-encoded into `SAMLRequest`, with `RelayState` when given (Bindings §3.4.4.1).
    pub fn redirect_url(&self, relay_state: Option<&str>) -> String {
        let mut encoder = DeflateEncoder::new(Vec::new(), Compression::default());
        // Writing into a Vec cannot fail.
        let deflated = encoder
            .write_all(self.to_xml().as_bytes())
            .and_then(|()| encoder.finish())
            .unwrap_or_default();
        let encoded = base64::engine::general_purpose::STANDARD.encode(deflated);
        let separator = if self.destination.contains('?') {
            '&'
        } else {
            '?'
        };
        let mut url = format!(
            "{}{separator}SAMLRequest={}",
            self.destination,
            url_encode(&encoded)
        );
        if let Some(relay_state) = relay_state {
            url.push_str("&RelayState=");
            url.push_str(&url_encode(relay_state));
        }
        url
    }
}

/// The SP's metadata: its entity ID and ACS endpoint, asking for signed assertions.
pub fn sp_metadata_xml(entity_id: &str, acs_url: &str) -> String {
    format!(
        concat!(
            r#"<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" "#,
            r#"entityID="{entity_id}">"#,
            r#"<md:SPSSODescriptor AuthnRequestsSigned="false" WantAssertionsSigned="true" "#,
            r#"protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">"#,
            r#"<md:NameIDFormat>urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress</md:NameIDFormat>"#,
            r#"<md:NameIDFormat>urn:oasis:names:tc:SAML:2.0:nameid-format:persistent</md:NameIDFormat>"#,
            r#"<md:NameIDFormat>urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified</md:NameIDFormat>"#,
            r#"<md:AssertionConsumerService Binding="{binding}" Location="{acs}" index="0" "#,
            r#"isDefault="true"/>"#,
            r#"</md:SPSSODescriptor></md:EntityDescriptor>"#
        ),
        entity_id = escape(entity_id),
        binding = HTTP_POST_BINDING,
        acs = escape(acs_url),
    )
}

/// Escapes text for an XML attribute value or element content.
fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&apos;"),
            _ => escaped.push(c),
        }
    }
    escaped
}

/// Percent-encodes everything but RFC 3986 unreserved characters: query and form values,
/// path segments.
pub fn url_encode(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len() * 3);
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;

    use super::*;
    use crate::saml::limits::RESPONSE_XML;
    use crate::saml::xml::Document;

    fn request() -> AuthnRequest {
        AuthnRequest {
            id: "_a1b2".to_string(),
            issue_instant: instant::parse("2026-11-27T10:00:00Z").unwrap(),
            destination: "https://idp.example.com/sso?tenant=1".to_string(),
            assertion_consumer_service_url: "https://sp.example.com/acs?a=1&b=2".to_string(),
            issuer: "https://sp.example.com".to_string(),
        }
    }

    fn query_value<'u>(url: &'u str, name: &str) -> Option<&'u str> {
        let query = url.split_once('?')?.1;
        query
            .split('&')
            .find_map(|pair| pair.strip_prefix(&format!("{name}=")))
    }

    fn url_decode(text: &str) -> String {
        let bytes = text.as_bytes();
        let mut decoded = Vec::new();
        let mut index = 0;
        while index < bytes.len() {
            if bytes[index] == b'%' {
                decoded.push(u8::from_str_radix(&text[index + 1..index + 3], 16).unwrap());
                index += 3;
            } else {
                decoded.push(bytes[index]);
                index += 1;
            }
        }
        String::from_utf8(decoded).unwrap()
    }

    #[test]
    fn redirect_url_round_trips() {
        let request = request();
        let url = request.redirect_url(Some("back to /home?x=1"));
        assert!(url.starts_with("https://idp.example.com/sso?tenant=1&SAMLRequest="));
        assert_eq!(
            url_decode(query_value(&url, "RelayState").unwrap()),
            "back to /home?x=1"
        );
        let encoded = url_decode(query_value(&url, "SAMLRequest").unwrap());
        let deflated = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .unwrap();
        let mut xml = String::new();
        flate2::read::DeflateDecoder::new(&deflated[..])
            .read_to_string(&mut xml)
            .unwrap();
        assert_eq!(xml, request.to_xml());
        let document = Document::parse(xml.as_bytes(), &RESPONSE_XML).unwrap();
        let root = document.root();
        assert_eq!(document.attribute(root, "ID"), Some("_a1b2"));
        assert_eq!(
            document.attribute(root, "IssueInstant"),
            Some("2026-11-27T10:00:00Z")
        );
        assert_eq!(
            document.attribute(root, "AssertionConsumerServiceURL"),
            Some("https://sp.example.com/acs?a=1&b=2")
        );
    }

    #[test]
    fn sp_metadata_names_entity_and_acs() {
        let xml = sp_metadata_xml("https://sp.example.com", "https://sp.example.com/acs");
        let document = Document::parse(xml.as_bytes(), &RESPONSE_XML).unwrap();
        let root = document.root();
        assert_eq!(
            document.attribute(root, "entityID"),
            Some("https://sp.example.com")
        );
        let descriptor = document.child_elements(root).next().unwrap();
        assert_eq!(
            document.attribute(descriptor, "WantAssertionsSigned"),
            Some("true")
        );
        assert!(xml.contains(r#"Location="https://sp.example.com/acs""#));
    }
}
