//! XML Canonicalization: Exclusive C14N 1.0 (with the InclusiveNamespaces PrefixList) and
//! Inclusive C14N 1.0, with and without comments, over a subtree of a parsed [`Document`],
//! optionally leaving out one descendant (the enveloped-signature transform).
//!
//! Not for: document subsets other than "an element and its descendants minus one
//! subtree" — XPath-selected node sets are exactly what XML-DSig attacks are made of, and
//! SAML never needs them.
//!
//! Specs: <https://www.w3.org/TR/xml-exc-c14n/> and <https://www.w3.org/TR/xml-c14n/>.

use super::xml::{Attribute, Document, Element, NodeId, NodeKind, XML_NAMESPACE};

/// Algorithm URIs.
pub const EXCLUSIVE: &str = "http://www.w3.org/2001/10/xml-exc-c14n#";
pub const EXCLUSIVE_WITH_COMMENTS: &str = "http://www.w3.org/2001/10/xml-exc-c14n#WithComments";
pub const INCLUSIVE: &str = "http://www.w3.org/TR/2001/REC-xml-c14n-20010315";
pub const INCLUSIVE_WITH_COMMENTS: &str =
    "http://www.w3.org/TR/2001/REC-xml-c14n-20010315#WithComments";

/// A canonicalisation method and its parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Method {
    pub kind: Kind,
    pub with_comments: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// Exclusive C14N; the prefixes (`#default` for the default namespace) are treated as
    /// by inclusive C14N (exc-c14n §3, InclusiveNamespaces PrefixList).
    Exclusive {
        inclusive_prefixes: Vec<String>,
    },
    Inclusive,
}

impl Method {
    /// The method named by an algorithm URI, without parameters; `None` if unknown.
    pub fn from_uri(uri: &str) -> Option<Method> {
        let (kind, with_comments) = match uri {
            EXCLUSIVE => (
                Kind::Exclusive {
                    inclusive_prefixes: Vec::new(),
                },
                false,
            ),
            EXCLUSIVE_WITH_COMMENTS => (
                Kind::Exclusive {
                    inclusive_prefixes: Vec::new(),
                },
                true,
            ),
            INCLUSIVE => (Kind::Inclusive, false),
            INCLUSIVE_WITH_COMMENTS => (Kind::Inclusive, true),
            _ => return None,
        };
        Some(Method {
            kind,
            with_comments,
        })
    }

    pub fn exclusive() -> Method {
        Method {
            kind: Kind::Exclusive {
                inclusive_prefixes: Vec::new(),
            },
            with_comments: false,
        }
    }
}

/// Canonicalises `apex` and its descendants, leaving out `excluded` and its descendants.
pub fn canonicalize(
    document: &Document,
    apex: NodeId,
    method: &Method,
    excluded: Option<NodeId>,
    output: &mut Vec<u8>,
) {
    let mut writer = Writer {
        document,
        method,
        excluded,
        output,
        rendered: Vec::new(),
    };
    // Namespaces rendered by output ancestors: none yet, the default namespace empty.
    let in_scope = document.in_scope_namespaces(apex);
    writer.element(apex, &in_scope, true);
}

/// Canonicalises a whole document, comments and processing instructions around the root
/// included (C14N §2.1 document order with the line breaks of §2.4 of the spec's examples).
pub fn canonicalize_document(document: &Document, method: &Method, output: &mut Vec<u8>) {
    let root = document.root();
    let mut after_root = false;
    for node in document.top_level() {
        if *node == root {
            canonicalize(document, root, method, None, output);
            after_root = true;
            continue;
        }
        let mut rendered = Vec::new();
        match &document.node(*node).kind {
            NodeKind::Comment(text) if method.with_comments => write_comment(text, &mut rendered),
            NodeKind::ProcessingInstruction { target, data } => {
                write_pi(target, data, &mut rendered)
            }
            _ => continue,
        }
        if after_root {
            output.push(b'\n');
            output.extend_from_slice(&rendered);
        } else {
            output.extend_from_slice(&rendered);
            output.push(b'\n');
        }
    }
}

struct Writer<'a> {
    document: &'a Document,
    method: &'a Method,
    excluded: Option<NodeId>,
    output: &'a mut Vec<u8>,
    /// Namespace declarations rendered by output ancestors, innermost last: (prefix, uri).
    rendered: Vec<(String, String)>,
}

impl Writer<'_> {
    /// The namespace URI that output ancestors have rendered for `prefix` ("" when none).
    fn rendered_uri(&self, prefix: &str) -> &str {
        self.rendered
            .iter()
            .rev()
            .find(|(rendered, _)| rendered == prefix)
            .map_or("", |(_, uri)| uri.as_str())
    }

    fn element(&mut self, id: NodeId, in_scope: &[(String, String)], is_apex: bool) {
        let document = self.document;
        let Some(element) = document.element(id) else {
            return;
        };
        let declarations = self.namespaces_to_render(element, in_scope);
        let mark = self.rendered.len();

        self.output.push(b'<');
        write_qualified_name(&element.prefix, &element.local_name, self.output);
        for (prefix, uri) in &declarations {
            if prefix.is_empty() {
                self.output.extend_from_slice(b" xmlns=\"");
            } else {
                self.output.extend_from_slice(b" xmlns:");
                self.output.extend_from_slice(prefix.as_bytes());
                self.output.extend_from_slice(b"=\"");
            }
            escape_attribute(uri, self.output);
            self.output.push(b'"');
        }
        self.rendered.extend(declarations);

        let mut attributes: Vec<&Attribute> = element.attributes.iter().collect();
        if is_apex && self.method.kind == Kind::Inclusive {
            inherit_xml_attributes(document, id, &mut attributes);
        }
        // C14N §2.2: attributes sorted by namespace URI, then local name; no namespace first.
        attributes.sort_by(|a, b| {
            (a.namespace.as_deref().unwrap_or(""), a.local_name.as_str())
                .cmp(&(b.namespace.as_deref().unwrap_or(""), b.local_name.as_str()))
        });
        for attribute in attributes {
            self.output.push(b' ');
            write_qualified_name(&attribute.prefix, &attribute.local_name, self.output);
            self.output.extend_from_slice(b"=\"");
            escape_attribute(&attribute.value, self.output);
            self.output.push(b'"');
        }
        self.output.push(b'>');

        let child_scope = scope_with(in_scope, element);
        for child in &element.children {
            if Some(*child) == self.excluded {
                continue;
            }
            match &self.document.node(*child).kind {
                NodeKind::Element(_) => self.element(*child, &child_scope, false),
                NodeKind::Text(text) => escape_text(text, self.output),
                NodeKind::Comment(text) => {
                    if self.method.with_comments {
                        write_comment(text, self.output);
                    }
                }
                NodeKind::ProcessingInstruction { target, data } => {
                    write_pi(target, data, self.output)
                }
            }
        }

        self.output.extend_from_slice(b"</");
        write_qualified_name(&element.prefix, &element.local_name, self.output);
        self.output.push(b'>');
        self.rendered.truncate(mark);
    }

    /// The namespace declarations this element renders, sorted by prefix (the default
    /// namespace, with the empty prefix, first).
    fn namespaces_to_render(
        &self,
        element: &Element,
        in_scope: &[(String, String)],
    ) -> Vec<(String, String)> {
        let scope = scope_with(in_scope, element);
        let uri_of = |prefix: &str| {
            scope
                .iter()
                .find(|(bound, _)| bound == prefix)
                .map_or("", |(_, uri)| uri.as_str())
        };
        let mut candidates: Vec<&str> = match &self.method.kind {
            Kind::Inclusive => {
                let mut all: Vec<&str> = scope.iter().map(|(prefix, _)| prefix.as_str()).collect();
                // The empty default namespace is a candidate too, for xmlns="".
                all.push("");
                all
            }
            Kind::Exclusive { inclusive_prefixes } => {
                // Visibly utilised prefixes (exc-c14n §3): the element's own, and those of
                // its prefixed attributes.
                let mut used = vec![element.prefix.as_str()];
                for attribute in &element.attributes {
                    if !attribute.prefix.is_empty() {
                        used.push(attribute.prefix.as_str());
                    }
                }
                for prefix in inclusive_prefixes {
                    let prefix = if prefix == "#default" {
                        ""
                    } else {
                        prefix.as_str()
                    };
                    if prefix.is_empty() || scope.iter().any(|(bound, _)| bound == prefix) {
                        used.push(prefix);
                    }
                }
                used
            }
        };
        candidates.sort_unstable();
        candidates.dedup();
        candidates
            .into_iter()
            .filter(|prefix| *prefix != "xml")
            .filter_map(|prefix| {
                let uri = uri_of(prefix);
                (uri != self.rendered_uri(prefix)).then(|| (prefix.to_string(), uri.to_string()))
            })
            .collect()
    }
}

/// Inclusive C14N §2.4: the apex of a document subset inherits the `xml:*` attributes of
/// its ancestors that it does not carry itself (nearest ancestor wins).
fn inherit_xml_attributes<'d>(
    document: &'d Document,
    apex: NodeId,
    attributes: &mut Vec<&'d Attribute>,
) {
    let mut ancestor = document.parent(apex);
    while let Some(id) = ancestor {
        if let Some(element) = document.element(id) {
            for attribute in &element.attributes {
                let is_xml = attribute.namespace.as_deref() == Some(XML_NAMESPACE);
                let present = attributes.iter().any(|a| {
                    a.namespace == attribute.namespace && a.local_name == attribute.local_name
                });
                if is_xml && !present {
                    attributes.push(attribute);
                }
            }
        }
        ancestor = document.parent(id);
    }
}

/// The bindings in scope inside `element`, given those in scope at its parent.
fn scope_with(parent_scope: &[(String, String)], element: &Element) -> Vec<(String, String)> {
    if element.namespace_declarations.is_empty() {
        return parent_scope.to_vec();
    }
    let mut scope: Vec<(String, String)> = parent_scope
        .iter()
        .filter(|(prefix, _)| {
            !element
                .namespace_declarations
                .iter()
                .any(|d| d.prefix == *prefix)
        })
        .cloned()
        .collect();
    for declaration in &element.namespace_declarations {
        if !declaration.uri.is_empty() {
            scope.push((declaration.prefix.clone(), declaration.uri.clone()));
        }
    }
    scope
}

fn write_qualified_name(prefix: &str, local_name: &str, output: &mut Vec<u8>) {
    if !prefix.is_empty() {
        output.extend_from_slice(prefix.as_bytes());
        output.push(b':');
    }
    output.extend_from_slice(local_name.as_bytes());
}

fn write_comment(text: &str, output: &mut Vec<u8>) {
    output.extend_from_slice(b"<!--");
    output.extend_from_slice(text.as_bytes());
    output.extend_from_slice(b"-->");
}

fn write_pi(target: &str, data: &str, output: &mut Vec<u8>) {
    output.extend_from_slice(b"<?");
    output.extend_from_slice(target.as_bytes());
    if !data.is_empty() {
        output.push(b' ');
        output.extend_from_slice(data.as_bytes());
    }
    output.extend_from_slice(b"?>");
}

/// C14N §2.3 text nodes: `&`, `<`, `>` and CR escaped.
fn escape_text(text: &str, output: &mut Vec<u8>) {
    for byte in text.bytes() {
        match byte {
            b'&' => output.extend_from_slice(b"&amp;"),
            b'<' => output.extend_from_slice(b"&lt;"),
            b'>' => output.extend_from_slice(b"&gt;"),
            b'\r' => output.extend_from_slice(b"&#xD;"),
            _ => output.push(byte),
        }
    }
}

/// C14N §2.3 attribute values: `&`, `<`, `"`, TAB, LF and CR escaped.
fn escape_attribute(value: &str, output: &mut Vec<u8>) {
    for byte in value.bytes() {
        match byte {
            b'&' => output.extend_from_slice(b"&amp;"),
            b'<' => output.extend_from_slice(b"&lt;"),
            b'"' => output.extend_from_slice(b"&quot;"),
            b'\t' => output.extend_from_slice(b"&#x9;"),
            b'\n' => output.extend_from_slice(b"&#xA;"),
            b'\r' => output.extend_from_slice(b"&#xD;"),
            _ => output.push(byte),
        }
    }
}

#[cfg(test)]
mod tests {
    //! Expectations derived by hand from the specs; the differential tests against libxml2
    //! live in `tests/c14n_xmllint.rs`.

    use super::*;
    use crate::saml::limits::RESPONSE_XML;

    fn element_named(document: &Document, local_name: &str) -> NodeId {
        document
            .elements()
            .find(|id| {
                document
                    .element(*id)
                    .is_some_and(|e| e.local_name == local_name)
            })
            .unwrap()
    }

    fn exclusive_with(prefixes: &[&str]) -> Method {
        Method {
            kind: Kind::Exclusive {
                inclusive_prefixes: prefixes.iter().map(|p| p.to_string()).collect(),
            },
            with_comments: false,
        }
    }

    /// Canonicalises the element called `apex` in `xml`, leaving out the one called
    /// `excluded`.
    fn check(xml: &str, apex: &str, method: &Method, excluded: Option<&str>) -> String {
        let document = Document::parse(xml.as_bytes(), &RESPONSE_XML).unwrap();
        let apex = element_named(&document, apex);
        let excluded = excluded.map(|name| element_named(&document, name));
        let mut output = Vec::new();
        canonicalize(&document, apex, method, excluded, &mut output);
        String::from_utf8(output).unwrap()
    }

    const QNAME_IN_CONTENT: &str = "<r:Root xmlns:r=\"urn:r\" xmlns:xs=\"urn:xs\" \
        xmlns:unused=\"urn:unused\"><r:Apex><r:Value type=\"xs:string\">x</r:Value>\
        </r:Apex></r:Root>";

    #[test]
    fn exclusive_renders_only_visibly_utilised_prefixes() {
        // exc-c14n §3: `xs` appears only inside an attribute value, so it is not visibly
        // utilised and its declaration is dropped with the unused one.
        assert_eq!(
            check(QNAME_IN_CONTENT, "Apex", &Method::exclusive(), None),
            "<r:Apex xmlns:r=\"urn:r\"><r:Value type=\"xs:string\">x</r:Value></r:Apex>"
        );
    }

    #[test]
    fn prefix_list_renders_a_named_prefix_as_inclusive_c14n_would() {
        // exc-c14n §3: a prefix of the InclusiveNamespaces PrefixList is rendered where it is
        // in scope and no output ancestor rendered it: once, at the apex. A listed prefix
        // that is bound nowhere renders nothing.
        assert_eq!(
            check(
                QNAME_IN_CONTENT,
                "Apex",
                &exclusive_with(&["xs", "nope"]),
                None
            ),
            "<r:Apex xmlns:r=\"urn:r\" xmlns:xs=\"urn:xs\">\
             <r:Value type=\"xs:string\">x</r:Value></r:Apex>"
        );
    }

    const DEFAULT_NAMESPACE: &str = "<Root xmlns=\"urn:d\" xmlns:p=\"urn:p\"><p:Apex>\
        <Child/><p:Other xmlns=\"\"><Inner/></p:Other></p:Apex></Root>";

    #[test]
    fn exclusive_renders_the_default_namespace_where_it_is_used() {
        // The apex does not use the default namespace; Child does, and no output ancestor
        // rendered it. p:Other does not use the default namespace, so its xmlns="" is
        // dropped; Inner uses the (empty) default namespace, and the nearest output ancestor
        // rendering a default namespace is none, so nothing is rendered there either.
        assert_eq!(
            check(DEFAULT_NAMESPACE, "Apex", &Method::exclusive(), None),
            "<p:Apex xmlns:p=\"urn:p\"><Child xmlns=\"urn:d\"></Child>\
             <p:Other><Inner></Inner></p:Other></p:Apex>"
        );
    }

    #[test]
    fn prefix_list_default_renders_the_default_namespace_inclusively() {
        // "#default" in the PrefixList: the default namespace follows inclusive C14N. It is
        // rendered at the apex although the apex does not use it, not again on Child, and
        // undeclared with xmlns="" on p:Other because an output ancestor rendered urn:d
        // (C14N §2.3). Inner, in no namespace under p:Other, needs nothing more.
        assert_eq!(
            check(
                DEFAULT_NAMESPACE,
                "Apex",
                &exclusive_with(&["#default"]),
                None
            ),
            "<p:Apex xmlns=\"urn:d\" xmlns:p=\"urn:p\"><Child></Child>\
             <p:Other xmlns=\"\"><Inner></Inner></p:Other></p:Apex>"
        );
    }

    const ENVELOPED: &str = "<Response xmlns=\"urn:p\" ID=\"r1\"><Issuer>idp</Issuer>\n  \
        <ds:Signature xmlns:ds=\"urn:ds\"><ds:SignedInfo/></ds:Signature>\n  <Status/>\
        <!-- kept only with comments --></Response>";

    #[test]
    fn enveloped_signature_is_left_out_with_its_subtree_only() {
        // XML-DSig §6.6.4: the Signature element and its descendants go; the white space
        // around it is text of the Response and stays; without comments the comment goes.
        assert_eq!(
            check(
                ENVELOPED,
                "Response",
                &Method::exclusive(),
                Some("Signature")
            ),
            "<Response xmlns=\"urn:p\" ID=\"r1\"><Issuer>idp</Issuer>\n  \n  \
             <Status></Status></Response>"
        );
        let inclusive_with_comments = Method::from_uri(INCLUSIVE_WITH_COMMENTS).unwrap();
        assert_eq!(
            check(
                ENVELOPED,
                "Response",
                &inclusive_with_comments,
                Some("Signature")
            ),
            "<Response xmlns=\"urn:p\" ID=\"r1\"><Issuer>idp</Issuer>\n  \n  \
             <Status></Status><!-- kept only with comments --></Response>"
        );
    }

    #[test]
    fn excluding_an_element_outside_the_apex_changes_nothing() {
        assert_eq!(
            check(ENVELOPED, "Issuer", &Method::exclusive(), Some("Signature")),
            "<Issuer xmlns=\"urn:p\">idp</Issuer>"
        );
    }

    #[test]
    fn namespace_values_are_escaped_like_attribute_values() {
        // C14N §2.3: a namespace node is processed like an attribute node, so `&` becomes
        // `&amp;`. libxml2 (hence xmllint and xmlsec1) writes namespace URIs unescaped;
        // the Java (Santuario) and .NET canonicalisers follow the spec, as we do.
        let xml = "<a xmlns:p=\"urn:a&amp;b\" p:x=\"&quot;&#9;\"/>";
        assert_eq!(
            check(xml, "a", &Method::exclusive(), None),
            "<a xmlns:p=\"urn:a&amp;b\" p:x=\"&quot;&#x9;\"></a>"
        );
    }
}
