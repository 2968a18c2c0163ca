//! XML Canonicalization: Exclusive C14N 1.0 (with the InclusiveNamespaces PrefixList) and
//! Inclusive C14N 1.0, with and without comments, over a subtree of a parsed [`Document`],
//! optionally leaving out one descendant (the enveloped-signature transform).
//!
//! Not for: document subsets other than "an element and its descendants minus one
//! subtree" — XPath-selected node sets are exactly what XML-DSig attacks are made of, and
//! SAML never needs them.
//!
//! Specs: <https://www.w3.org/TR/xml-exc-c14n/> and <https://www.w3.org/TR/xml-c14n/>.

use super::xml::{AttributeRef, Content, Document, NodeId, XML_NAMESPACE, same_bytes};

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

/// Where canonical bytes go: a `Vec`, or anything that consumes them in pieces (a digest).
pub trait Output {
    fn write(&mut self, bytes: &[u8]);
}

impl Output for Vec<u8> {
    fn write(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
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
    canonicalize_to(document, apex, method, excluded, output);
}

/// [`canonicalize`] into any [`Output`].
pub fn canonicalize_to<O: Output>(
    document: &Document,
    apex: NodeId,
    method: &Method,
    excluded: Option<NodeId>,
    output: &mut O,
) {
    let mut writer = Writer::new(document, method, excluded, output);
    // Namespaces rendered by output ancestors: none yet, the default namespace empty.
    writer.enter_ancestors_of(apex);
    writer.element(apex, true);
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
        match document.content(*node) {
            Content::Comment(text) if method.with_comments => write_comment(text, &mut rendered),
            Content::ProcessingInstruction { target, data } => {
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

struct Writer<'a, O> {
    document: &'a Document,
    method: &'a Method,
    excluded: Option<NodeId>,
    output: &'a mut O,
    /// Namespace bindings in scope, outermost first: (prefix, uri), an empty uri undeclaring
    /// the default namespace. Pushed per element and truncated after it, so nothing is
    /// copied per element.
    scope: Vec<(&'a str, &'a str)>,
    /// Namespace declarations rendered by output ancestors, innermost last.
    rendered: Vec<(&'a str, &'a str)>,
    /// Scratch space reused by every element: candidate prefixes, and attributes to sort.
    prefixes: Vec<&'a str>,
    attributes: Vec<AttributeRef<'a>>,
}

impl<'a, O: Output> Writer<'a, O> {
    fn new(
        document: &'a Document,
        method: &'a Method,
        excluded: Option<NodeId>,
        output: &'a mut O,
    ) -> Self {
        Writer {
            document,
            method,
            excluded,
            output,
            scope: Vec::with_capacity(16),
            rendered: Vec::with_capacity(16),
            prefixes: Vec::with_capacity(8),
            attributes: Vec::with_capacity(8),
        }
    }

    /// Pushes the declarations of the apex's ancestors, outermost first.
    fn enter_ancestors_of(&mut self, apex: NodeId) {
        let mut chain = Vec::new();
        let mut current = self.document.parent(apex);
        while let Some(id) = current {
            chain.push(id);
            current = self.document.parent(id);
        }
        for id in chain.into_iter().rev() {
            self.declare(id);
        }
    }

    fn declare(&mut self, id: NodeId) {
        self.scope.extend(self.document.namespace_declarations(id));
    }

    /// The namespace URI bound to `prefix` now ("" when none).
    fn uri_of(&self, prefix: &str) -> &'a str {
        self.scope
            .iter()
            .rev()
            .find(|(bound, _)| same_bytes(bound, prefix))
            .map_or("", |(_, uri)| *uri)
    }

    /// The namespace URI that output ancestors have rendered for `prefix` ("" when none).
    fn rendered_uri(&self, prefix: &str) -> &'a str {
        self.rendered
            .iter()
            .rev()
            .find(|(rendered, _)| same_bytes(rendered, prefix))
            .map_or("", |(_, uri)| *uri)
    }

    fn element(&mut self, id: NodeId, is_apex: bool) {
        let document = self.document;
        if !document.is_element(id) {
            return;
        }
        let scope_mark = self.scope.len();
        self.declare(id);
        let mut attributes = std::mem::take(&mut self.attributes);
        attributes.clear();
        attributes.extend(document.attributes(id));
        let rendered_mark = self.rendered.len();
        self.push_namespaces_to_render(id, &attributes);

        let qualified_name = document.qualified_name(id);
        self.output.write(b"<");
        self.output.write(qualified_name.as_bytes());
        for index in rendered_mark..self.rendered.len() {
            let (prefix, uri) = self.rendered[index];
            if prefix.is_empty() {
                self.output.write(b" xmlns=\"");
            } else {
                self.output.write(b" xmlns:");
                self.output.write(prefix.as_bytes());
                self.output.write(b"=\"");
            }
            escape_attribute(uri, self.output);
            self.output.write(b"\"");
        }

        if is_apex && self.method.kind == Kind::Inclusive {
            inherit_xml_attributes(document, id, &mut attributes);
        }
        if attributes.len() > 1 {
            // C14N §2.2: attributes sorted by namespace URI, then local name; no namespace
            // first.
            attributes.sort_by(|a, b| {
                compare_bytes(a.namespace.unwrap_or(""), b.namespace.unwrap_or(""))
                    .then_with(|| compare_bytes(a.local_name, b.local_name))
            });
        }
        for attribute in &attributes {
            write_attribute(attribute, self.output);
        }
        self.attributes = attributes;
        self.output.write(b">");

        for child in document.children(id) {
            if Some(child) == self.excluded {
                continue;
            }
            match document.content(child) {
                Content::Element => self.element(child, false),
                Content::Text(text) => escape_text(text, self.output),
                Content::Comment(text) => {
                    if self.method.with_comments {
                        write_comment(text, self.output);
                    }
                }
                Content::ProcessingInstruction { target, data } => {
                    write_pi(target, data, self.output)
                }
            }
        }

        self.output.write(b"</");
        self.output.write(qualified_name.as_bytes());
        self.output.write(b">");
        self.rendered.truncate(rendered_mark);
        self.scope.truncate(scope_mark);
    }

    /// Pushes onto `rendered` the namespace declarations this element renders, sorted by
    /// prefix (the default namespace, with the empty prefix, first). The element's own
    /// declarations are already in scope.
    fn push_namespaces_to_render(&mut self, id: NodeId, attributes: &[AttributeRef<'a>]) {
        let document = self.document;
        let mut candidates = std::mem::take(&mut self.prefixes);
        candidates.clear();
        match &self.method.kind {
            Kind::Inclusive => {
                // Every prefix in scope, and the empty default namespace (for xmlns="").
                candidates.extend(self.scope.iter().map(|(prefix, _)| *prefix));
                candidates.push("");
            }
            Kind::Exclusive { inclusive_prefixes } => {
                // Visibly utilised prefixes (exc-c14n §3): the element's own, and those of
                // its prefixed attributes.
                candidates.push(document.prefix(id));
                for attribute in attributes {
                    if !attribute.prefix.is_empty() {
                        candidates.push(attribute.prefix);
                    }
                }
                for prefix in inclusive_prefixes {
                    let prefix = if prefix == "#default" {
                        ""
                    } else {
                        prefix.as_str()
                    };
                    if prefix.is_empty() || !self.uri_of(prefix).is_empty() {
                        // The list's strings live as long as the method, which outlives
                        // this writer; look the prefix up in scope to borrow it from there.
                        if let Some((bound, _)) =
                            self.scope.iter().rev().find(|(bound, _)| *bound == prefix)
                        {
                            candidates.push(bound);
                        } else {
                            candidates.push("");
                        }
                    }
                }
            }
        }
        if candidates.len() > 1 {
            // Usually there is one candidate: the element's own prefix.
            candidates.sort_unstable();
            candidates.dedup();
        }
        for prefix in &candidates {
            if *prefix == "xml" {
                continue;
            }
            // Each prefix appears once, so this element's own entries never shadow the
            // ancestors' for a later prefix.
            let uri = self.uri_of(prefix);
            if !same_str(uri, self.rendered_uri(prefix)) {
                self.rendered.push((prefix, uri));
            }
        }
        self.prefixes = candidates;
    }
}

fn write_attribute(attribute: &AttributeRef<'_>, output: &mut impl Output) {
    output.write(b" ");
    output.write(attribute.qualified_name.as_bytes());
    output.write(b"=\"");
    escape_attribute(attribute.value, output);
    output.write(b"\"");
}

/// Inclusive C14N §2.4: the apex of a document subset inherits the `xml:*` attributes of
/// its ancestors that it does not carry itself (nearest ancestor wins).
fn inherit_xml_attributes<'d>(
    document: &'d Document,
    apex: NodeId,
    attributes: &mut Vec<AttributeRef<'d>>,
) {
    let mut ancestor = document.parent(apex);
    while let Some(id) = ancestor {
        for attribute in document.attributes(id) {
            let is_xml = attribute.namespace == Some(XML_NAMESPACE);
            let present = attributes.iter().any(|a| {
                a.namespace == attribute.namespace && a.local_name == attribute.local_name
            });
            if is_xml && !present {
                attributes.push(attribute);
            }
        }
        ancestor = document.parent(id);
    }
}

fn write_comment(text: &str, output: &mut impl Output) {
    output.write(b"<!--");
    output.write(text.as_bytes());
    output.write(b"-->");
}

fn write_pi(target: &str, data: &str, output: &mut impl Output) {
    output.write(b"<?");
    output.write(target.as_bytes());
    if !data.is_empty() {
        output.write(b" ");
        output.write(data.as_bytes());
    }
    output.write(b"?>");
}

/// C14N §2.3 text nodes: `&`, `<`, `>` and CR escaped.
fn escape_text(text: &str, output: &mut impl Output) {
    escape(text, output, &TEXT_ESCAPES);
}

/// C14N §2.3 attribute values: `&`, `<`, `"`, TAB, LF and CR escaped.
fn escape_attribute(value: &str, output: &mut impl Output) {
    escape(value, output, &ATTRIBUTE_ESCAPES);
}

/// Which bytes are replaced, and by what: `index[byte]` is 0 for a byte copied as it is, else
/// one more than the position of its replacement. A byte table stays in four cache lines.
struct Escapes {
    index: [u8; 256],
    replacements: &'static [&'static [u8]],
}

const TEXT_ESCAPES: Escapes = escapes(b"&<>\r", &[b"&amp;", b"&lt;", b"&gt;", b"&#xD;"]);

const ATTRIBUTE_ESCAPES: Escapes = escapes(
    b"&<\"\t\n\r",
    &[b"&amp;", b"&lt;", b"&quot;", b"&#x9;", b"&#xA;", b"&#xD;"],
);

const fn escapes(bytes: &[u8], replacements: &'static [&'static [u8]]) -> Escapes {
    let mut index = [0; 256];
    let mut position = 0;
    while position < bytes.len() {
        index[bytes[position] as usize] = position as u8 + 1;
        position += 1;
    }
    Escapes {
        index,
        replacements,
    }
}

/// Copies `text`, replacing the bytes `escapes` names; the runs between them are copied
/// whole. Every replaced byte is ASCII, so runs never split a UTF-8 sequence.
fn escape(text: &str, output: &mut impl Output, escapes: &Escapes) {
    let bytes = text.as_bytes();
    let mut start = 0;
    for (index, byte) in bytes.iter().enumerate() {
        let replacement = escapes.index[usize::from(*byte)];
        if replacement != 0 {
            output.write(bytes.get(start..index).unwrap_or_default());
            let position = usize::from(replacement) - 1;
            output.write(
                escapes
                    .replacements
                    .get(position)
                    .copied()
                    .unwrap_or_default(),
            );
            start = index + 1;
        }
    }
    output.write(bytes.get(start..).unwrap_or_default());
}

/// Whether two strings are equal; the same slice (a URI from one declaration) is answered
/// without reading it.
fn same_str(a: &str, b: &str) -> bool {
    (a.as_ptr() == b.as_ptr() && a.len() == b.len()) || same_bytes(a, b)
}

/// Byte order, as `str::cmp`, without a call into the C library for short names.
fn compare_bytes(a: &str, b: &str) -> std::cmp::Ordering {
    for (x, y) in a.bytes().zip(b.bytes()) {
        if x != y {
            return x.cmp(&y);
        }
    }
    a.len().cmp(&b.len())
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
            .find(|id| document.local_name(*id) == local_name)
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
