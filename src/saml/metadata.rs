//! IdP metadata (SAML Metadata 2.0): the entity ID, the SSO endpoints and every signing key
//! of one IdP, read from an `EntityDescriptor` or from an `EntitiesDescriptor` holding it.
//!
//! Not for: metadata signature checking or federation aggregates of many IdPs — an admin
//! uploads the metadata of the IdP they trust, and that upload is the trust decision.

use super::error::SamlError;
use super::keys::SigningKey;
use super::limits::{IDP_SIGNING_KEYS_COUNT_MAX, METADATA_XML};
use super::xml::{Document, NodeId};

pub const METADATA_NAMESPACE: &str = "urn:oasis:names:tc:SAML:2.0:metadata";
pub const PROTOCOL_NAMESPACE: &str = "urn:oasis:names:tc:SAML:2.0:protocol";
pub const HTTP_REDIRECT_BINDING: &str = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect";
pub const HTTP_POST_BINDING: &str = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST";
const DSIG_NAMESPACE: &str = "http://www.w3.org/2000/09/xmldsig#";

/// An SSO endpoint of the IdP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SsoService {
    pub binding: String,
    pub location: String,
}

/// What jitledger needs to trust one IdP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdpMetadata {
    pub entity_id: String,
    /// HTTP-Redirect and HTTP-POST endpoints only, in document order.
    pub sso_services: Vec<SsoService>,
    /// Keys of `use="signing"` (or unspecified use) KeyDescriptors, in document order.
    pub signing_keys: Vec<SigningKey>,
}

impl IdpMetadata {
    /// The endpoint for an HTTP-Redirect AuthnRequest, if the IdP offers one.
    pub fn redirect_sso_location(&self) -> Option<&str> {
        self.sso_services
            .iter()
            .find(|service| service.binding == HTTP_REDIRECT_BINDING)
            .map(|service| service.location.as_str())
    }
}

fn invalid(reason: impl Into<String>) -> SamlError {
    SamlError::InvalidMetadata {
        reason: reason.into(),
    }
}

/// Parses IdP metadata. When the document is an `EntitiesDescriptor` with several IdPs,
/// `entity_id` picks one; otherwise it may be `None`.
pub fn parse_idp_metadata(input: &[u8], entity_id: Option<&str>) -> Result<IdpMetadata, SamlError> {
    let document =
        Document::parse(input, &METADATA_XML).map_err(|error| match SamlError::from(error) {
            SamlError::MalformedXml { reason } => invalid(format!("not well-formed XML: {reason}")),
            other => other,
        })?;
    let root = document.root();
    let mut identity_providers = Vec::new();
    collect_identity_providers(&document, root, &mut identity_providers);
    if identity_providers.is_empty() {
        let is_metadata = document.is_named(root, METADATA_NAMESPACE, "EntityDescriptor")
            || document.is_named(root, METADATA_NAMESPACE, "EntitiesDescriptor");
        return Err(invalid(if is_metadata {
            "no md:IDPSSODescriptor supporting SAML 2.0 (urn:oasis:names:tc:SAML:2.0:protocol)"
        } else {
            "the root element is not md:EntityDescriptor or md:EntitiesDescriptor"
        }));
    }
    let (entity, descriptor) = match entity_id {
        Some(wanted) => identity_providers
            .into_iter()
            .find(|(entity, _)| document.attribute(*entity, "entityID") == Some(wanted))
            .ok_or_else(|| invalid(format!("no IdP with entityID {wanted:?}")))?,
        None if identity_providers.len() == 1 => identity_providers[0],
        None => {
            return Err(invalid(
                "several IdPs in the metadata; name the entityID to use",
            ));
        }
    };
    let entity_id = document
        .attribute(entity, "entityID")
        .map(str::trim)
        .filter(|id| !id.is_empty())
        .ok_or_else(|| invalid("md:EntityDescriptor has no entityID"))?
        .to_string();
    let sso_services = sso_services(&document, descriptor)?;
    let signing_keys = signing_keys(&document, descriptor)?;
    Ok(IdpMetadata {
        entity_id,
        sso_services,
        signing_keys,
    })
}

/// (EntityDescriptor, IDPSSODescriptor) pairs supporting SAML 2.0, nested
/// EntitiesDescriptors included.
fn collect_identity_providers(
    document: &Document,
    node: NodeId,
    found: &mut Vec<(NodeId, NodeId)>,
) {
    if document.is_named(node, METADATA_NAMESPACE, "EntitiesDescriptor") {
        for child in document.child_elements(node) {
            collect_identity_providers(document, child, found);
        }
    } else if document.is_named(node, METADATA_NAMESPACE, "EntityDescriptor") {
        let descriptor = document
            .children_named(node, METADATA_NAMESPACE, "IDPSSODescriptor")
            .find(|descriptor| {
                document
                    .attribute(*descriptor, "protocolSupportEnumeration")
                    .is_some_and(|protocols| {
                        protocols
                            .split_ascii_whitespace()
                            .any(|p| p == PROTOCOL_NAMESPACE)
                    })
            });
        if let Some(descriptor) = descriptor {
            found.push((node, descriptor));
        }
    }
}

fn sso_services(document: &Document, descriptor: NodeId) -> Result<Vec<SsoService>, SamlError> {
    let services: Vec<SsoService> = document
        .children_named(descriptor, METADATA_NAMESPACE, "SingleSignOnService")
        .filter_map(|service| {
            let binding = document.attribute(service, "Binding")?.trim();
            let location = document.attribute(service, "Location")?.trim();
            let usable = binding == HTTP_REDIRECT_BINDING || binding == HTTP_POST_BINDING;
            (usable && !location.is_empty()).then(|| SsoService {
                binding: binding.to_string(),
                location: location.to_string(),
            })
        })
        .collect();
    if services.is_empty() {
        return Err(invalid(
            "no md:SingleSignOnService with the HTTP-Redirect or HTTP-POST binding and a Location",
        ));
    }
    Ok(services)
}

fn signing_keys(document: &Document, descriptor: NodeId) -> Result<Vec<SigningKey>, SamlError> {
    let mut keys = Vec::new();
    let key_descriptors = document
        .children_named(descriptor, METADATA_NAMESPACE, "KeyDescriptor")
        .filter(|key| {
            matches!(
                document.attribute(*key, "use").map(str::trim),
                None | Some("signing")
            )
        });
    for key_descriptor in key_descriptors {
        for key_info in document.children_named(key_descriptor, DSIG_NAMESPACE, "KeyInfo") {
            for data in document.children_named(key_info, DSIG_NAMESPACE, "X509Data") {
                for certificate in document.children_named(data, DSIG_NAMESPACE, "X509Certificate")
                {
                    let key = SigningKey::from_certificate_text(&document.text(certificate))
                        .map_err(|error| {
                            invalid(format!("ds:X509Certificate {}: {error}", keys.len() + 1))
                        })?;
                    if !keys.contains(&key) {
                        keys.push(key);
                    }
                }
            }
        }
    }
    if keys.is_empty() {
        return Err(invalid(
            "no signing ds:X509Certificate in the IDPSSODescriptor's KeyDescriptors",
        ));
    }
    if keys.len() > IDP_SIGNING_KEYS_COUNT_MAX {
        return Err(invalid(format!(
            "{} signing certificates (at most {IDP_SIGNING_KEYS_COUNT_MAX})",
            keys.len()
        )));
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn corpus(path: &str) -> Vec<u8> {
        std::fs::read(format!(
            "{}/../shared/interop/{path}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }

    fn reason(result: Result<IdpMetadata, SamlError>) -> String {
        match result {
            Err(SamlError::InvalidMetadata { reason }) => reason,
            other => panic!("expected invalid_metadata, got {other:?}"),
        }
    }

    const MINIMAL: &str = r#"<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" xmlns:ds="http://www.w3.org/2000/09/xmldsig#" entityID="https://idp.example.com">
  <md:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">
    <md:KeyDescriptor use="signing"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>CERT</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>
    <md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="https://idp.example.com/sso"/>
  </md:IDPSSODescriptor>
</md:EntityDescriptor>"#;

    fn certificate_body() -> String {
        let pem = String::from_utf8(corpus("node-saml/cert.pem")).unwrap();
        pem.lines()
            .filter(|line| !line.starts_with("-----"))
            .collect()
    }

    fn minimal() -> String {
        MINIMAL.replace("CERT", &certificate_body())
    }

    #[test]
    fn reads_minimal_metadata() {
        let metadata = parse_idp_metadata(minimal().as_bytes(), None).unwrap();
        assert_eq!(metadata.entity_id, "https://idp.example.com");
        assert_eq!(
            metadata.redirect_sso_location(),
            Some("https://idp.example.com/sso")
        );
        assert_eq!(metadata.signing_keys.len(), 1);
    }

    #[test]
    fn reads_every_corpus_metadata() {
        for path in [
            "crewjam/TestSPCanHandlePlaintextResponse_IDPMetadata",
            "crewjam/TestSPCanHandleOneloginResponse_IDPMetadata",
            "crewjam/TestSPRealWorldKeyInfoHasRSAPublicKeyNotX509Cert_idp_metadata",
            "crewjam/TestServiceProviderCanHandleSignedAssertionsResponse_IDPMetadata",
            "crewjam/TestSPCanHandleOktaSignedResponseEncryptedAssertion_IDPMetadata",
            "samael/idp_2_metadata.xml",
            "samael/idp_ecdsa_metadata.xml",
        ] {
            let metadata = parse_idp_metadata(&corpus(path), None)
                .unwrap_or_else(|error| panic!("{path}: {error}"));
            assert!(!metadata.signing_keys.is_empty(), "{path}");
        }
    }

    #[test]
    fn missing_entity_id_is_named() {
        let input = minimal().replace(" entityID=\"https://idp.example.com\"", "");
        assert!(reason(parse_idp_metadata(input.as_bytes(), None)).contains("entityID"));
    }

    #[test]
    fn missing_idp_descriptor_is_named() {
        let input = minimal().replace("IDPSSODescriptor", "SPSSODescriptor");
        assert!(reason(parse_idp_metadata(input.as_bytes(), None)).contains("IDPSSODescriptor"));
    }

    #[test]
    fn saml1_only_descriptor_is_refused() {
        let input = minimal().replace("SAML:2.0:protocol", "SAML:1.1:protocol");
        assert!(reason(parse_idp_metadata(input.as_bytes(), None)).contains("SAML 2.0"));
    }

    #[test]
    fn missing_sso_service_is_named() {
        let input = minimal().replace("HTTP-Redirect", "SOAP");
        assert!(reason(parse_idp_metadata(input.as_bytes(), None)).contains("SingleSignOnService"));
    }

    #[test]
    fn missing_certificate_is_named() {
        let input = minimal().replace(&certificate_body(), "");
        assert!(reason(parse_idp_metadata(input.as_bytes(), None)).contains("X509Certificate"));
        let encryption_only = minimal().replace("use=\"signing\"", "use=\"encryption\"");
        assert!(
            reason(parse_idp_metadata(encryption_only.as_bytes(), None))
                .contains("X509Certificate")
        );
    }

    #[test]
    fn entities_descriptor_needs_a_choice_between_idps() {
        let entity = minimal();
        let other = entity.replace("https://idp.example.com\"", "https://other.example.com\"");
        let both = format!(
            "<md:EntitiesDescriptor xmlns:md=\"urn:oasis:names:tc:SAML:2.0:metadata\">{entity}{other}</md:EntitiesDescriptor>"
        );
        assert!(reason(parse_idp_metadata(both.as_bytes(), None)).contains("several"));
        let chosen =
            parse_idp_metadata(both.as_bytes(), Some("https://other.example.com")).unwrap();
        assert_eq!(chosen.entity_id, "https://other.example.com");
    }

    #[test]
    fn doctype_in_metadata_is_refused() {
        let input = format!("<!DOCTYPE x>{}", minimal());
        assert_eq!(
            parse_idp_metadata(input.as_bytes(), None),
            Err(SamlError::DtdForbidden)
        );
    }
}
