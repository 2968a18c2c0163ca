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
