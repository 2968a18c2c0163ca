//! A small read-only XML tree for signed SAML documents: namespaces resolved, byte spans
//! kept, and everything that makes XML dangerous refused at the door.
//!
//! Not a general XML library: no DTDs, no entities beyond the five predefined ones and
//! character references, UTF-8 only, one root. What it parses is exactly what
//! canonicalisation hashes and what the validator reads, so the two can never disagree.
//!
//! Storage: the document keeps its input, and names, attribute values and text that needed
//! no rewriting (no reference resolved, no line end or white space normalised) are byte
//! ranges into it; only rewritten values are owned. Children are linked (first child, next
//! sibling), attributes and namespace declarations of all elements share one array each.
//! The borrowed accessors ([`Document::attributes`], [`Document::content`],
//! [`Document::local_name`], ...) read that storage directly; [`Document::node`] and
//! [`Document::element`] hand out an owned view of the whole tree, built on first use.

use std::borrow::Cow;
use std::collections::HashSet;
use std::ops::Range;
use std::sync::{Arc, OnceLock};

use super::limits::XmlLimits;

mod tag;
mod token;

use token::{Token, Tokens};

/// The namespace the `xml` prefix is bound to by definition (Namespaces in XML 1.0 §3).
pub const XML_NAMESPACE: &str = "http://www.w3.org/XML/1998/namespace";
const XMLNS_NAMESPACE: &str = "http://www.w3.org/2000/xmlns/";
const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// Index of a node in its [`Document`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(u32);

impl NodeId {
    fn index(self) -> usize {
        self.0 as usize
    }
}

/// Why a document was refused by the parser.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum XmlError {
    /// A `<!DOCTYPE`: DTDs bring entity expansion and external fetches; SAML needs neither.
    #[error("document type declarations are forbidden")]
    DtdForbidden,
    /// An entity reference other than the predefined five.
    #[error("entity reference &{name}; is not allowed (only the five predefined entities)")]
    EntityForbidden { name: String },
    /// A bound of [`XmlLimits`] was exceeded.
    #[error("{limit} exceeded (at most {max})")]
    LimitExceeded { limit: &'static str, max: usize },
    /// Two elements carry the same ID: a reference to it would be ambiguous.
    #[error("duplicate ID attribute value {value:?}")]
    DuplicateId { value: String },
    /// Not well-formed, or not namespace-well-formed.
    #[error("malformed XML at byte {offset}: {reason}")]
    Malformed { offset: usize, reason: String },
}

fn malformed(offset: usize, reason: impl Into<String>) -> XmlError {
    XmlError::Malformed {
        offset,
        reason: reason.into(),
    }
}

/// A namespace-qualified attribute, value already unescaped and normalised (XML 1.0 §3.3.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute {
    pub prefix: String,
    pub local_name: String,
    /// `None` for unprefixed attributes: they are in no namespace (Namespaces in XML §6.2).
    pub namespace: Option<Arc<str>>,
    pub value: String,
}

/// A namespace declaration as written on an element. `prefix` is empty for `xmlns="…"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceDeclaration {
    pub prefix: String,
    pub uri: String,
}

/// An element of the owned view ([`Document::element`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element {
    pub prefix: String,
    pub local_name: String,
    /// Resolved namespace URI; `None` when the element is in no namespace.
    pub namespace: Option<Arc<str>>,
    pub attributes: Vec<Attribute>,
    pub namespace_declarations: Vec<NamespaceDeclaration>,
    pub children: Vec<NodeId>,
    /// Bytes of the source from `<` of the start tag to `>` of the end tag.
    pub span: Range<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeKind {
    Element(Element),
    /// Character data (text, CDATA and character references merged), line ends normalised.
    Text(String),
    Comment(String),
    ProcessingInstruction {
        target: String,
        data: String,
    },
}

/// A node of the owned view ([`Document::node`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub kind: NodeKind,
    pub parent: Option<NodeId>,
}

/// An attribute as the document stores it, borrowed: value unescaped and normalised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttributeRef<'d> {
    /// The name as written (`prefix:local` or `local`).
    pub qualified_name: &'d str,
    pub prefix: &'d str,
    pub local_name: &'d str,
    /// `None` for unprefixed attributes: they are in no namespace (Namespaces in XML §6.2).
    pub namespace: Option<&'d str>,
    pub value: &'d str,
}

impl AttributeRef<'_> {
    /// Whether this is an ID attribute, as [`is_id_attribute`] decides.
    pub fn is_id(&self) -> bool {
        self.namespace.is_none() && matches!(self.local_name, "ID" | "Id" | "id")
    }
}

/// What a node holds, borrowed; an element's parts have their own accessors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Content<'d> {
    Element,
    /// Character data (text, CDATA and character references merged), line ends normalised.
    Text(&'d str),
    Comment(&'d str),
    ProcessingInstruction {
        target: &'d str,
        data: &'d str,
    },
}

/// "No node" in the links of the stored tree.
const NONE: u32 = u32::MAX;

/// A string of the document: a byte range of the input, or a value the parser rewrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Str {
    Input { start: u32, end: u32 },
    Owned(u32),
    XmlNamespace,
}

impl Str {
    const EMPTY: Str = Str::Input { start: 0, end: 0 };

    /// Whether the text behind this string could be `len` bytes long: a cheap test that
    /// spares most comparisons a lookup of the text.
    fn may_have_len(self, len: usize) -> bool {
        match self {
            Str::Input { start, end } => (end - start) as usize == len,
            Str::Owned(_) | Str::XmlNamespace => true,
        }
    }
}

/// A qualified name; `prefix_len` is 0 when there is no prefix (a prefix is never empty).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct QualifiedName {
    name: Str,
    prefix_len: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct StoredElement {
    name: QualifiedName,
    namespace: Option<Str>,
    /// Ranges into [`Document::attributes`] and [`Document::declarations`].
    attributes: (u32, u32),
    declarations: (u32, u32),
    span: (u32, u32),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum StoredKind {
    Element(StoredElement),
    Text(Str),
    Comment(Str),
    ProcessingInstruction { target: Str, data: Str },
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct StoredNode {
    kind: StoredKind,
    parent: u32,
    first_child: u32,
    next_sibling: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct StoredAttribute {
    name: QualifiedName,
    namespace: Option<Str>,
    value: Str,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct StoredDeclaration {
    /// Empty for the default namespace.
    prefix: Str,
    /// Empty for `xmlns=""`.
    uri: Str,
}

/// The text behind `s`, given the input and the owned strings it may index.
fn text_of<'a>(input: &'a str, owned: &'a [String], s: Str) -> &'a str {
    match s {
        Str::Input { start, end } => input.get(start as usize..end as usize).unwrap_or(""),
        Str::Owned(index) => owned.get(index as usize).map_or("", String::as_str),
        Str::XmlNamespace => XML_NAMESPACE,
    }
}

/// Splits a stored qualified name into (prefix, local name).
fn name_parts(qualified_name: &str, prefix_len: u32) -> (&str, &str) {
    if prefix_len == 0 {
        return ("", qualified_name);
    }
    let split = prefix_len as usize;
    (
        qualified_name.get(..split).unwrap_or(""),
        qualified_name.get(split + 1..).unwrap_or(""),
    )
}

fn link(index: u32) -> Option<NodeId> {
    (index != NONE).then_some(NodeId(index))
}

/// A parsed, immutable document.
#[derive(Debug, Clone)]
pub struct Document {
    /// The input as the caller passed it; [`Str::Input`] ranges index it.
    input: String,
    owned: Vec<String>,
    nodes: Vec<StoredNode>,
    attributes: Vec<StoredAttribute>,
    declarations: Vec<StoredDeclaration>,
    root: NodeId,
    /// Comments and processing instructions before and after the root, in order, with the
    /// root itself among them.
    top_level: Vec<NodeId>,
    /// The owned view, built by the first call of [`Document::node`] or [`Document::element`].
    view: OnceLock<Vec<Node>>,
}

impl PartialEq for Document {
    /// Equal parses; whether the owned view was built yet does not matter.
    fn eq(&self, other: &Self) -> bool {
        self.input == other.input
            && self.owned == other.owned
            && self.nodes == other.nodes
            && self.attributes == other.attributes
            && self.declarations == other.declarations
            && self.root == other.root
            && self.top_level == other.top_level
    }
}

impl Eq for Document {}

/// The child nodes of one node, in document order.
#[derive(Debug, Clone)]
pub struct Children<'d> {
    document: &'d Document,
    next: u32,
}

impl Iterator for Children<'_> {
    type Item = NodeId;

    fn next(&mut self) -> Option<NodeId> {
        let current = link(self.next)?;
        self.next = self
            .document
            .nodes
            .get(current.index())
            .map_or(NONE, |node| node.next_sibling);
        Some(current)
    }
}

impl Document {
    /// Parses `input` under `limits`.
    pub fn parse(input: &[u8], limits: &XmlLimits) -> Result<Document, XmlError> {
        if input.len() > limits.document_bytes_max {
            return Err(XmlError::LimitExceeded {
                limit: "document_bytes_max",
                max: limits.document_bytes_max,
            });
        }
        // A byte order mark is valid UTF-8, so offsets into the whole input are offsets
        // into the text after it plus its length, as the reader's positions are.
        let text =
            std::str::from_utf8(input).map_err(|e| malformed(e.valid_up_to(), "not UTF-8"))?;
        let parts = Builder::new(limits, text).run()?;
        Ok(parts.into_document(String::from(text)))
    }

    /// [`Document::parse`] of an input the document may keep: no copy of it is made.
    pub fn parse_owned(input: Vec<u8>, limits: &XmlLimits) -> Result<Document, XmlError> {
        if input.len() > limits.document_bytes_max {
            return Err(XmlError::LimitExceeded {
                limit: "document_bytes_max",
                max: limits.document_bytes_max,
            });
        }
        let text = String::from_utf8(input)
            .map_err(|e| malformed(e.utf8_error().valid_up_to(), "not UTF-8"))?;
        let parts = Builder::new(limits, &text).run()?;
        Ok(parts.into_document(text))
    }

    fn str(&self, s: Str) -> &str {
        text_of(&self.input, &self.owned, s)
    }

    fn stored_element(&self, id: NodeId) -> Option<&StoredElement> {
        match &self.nodes.get(id.index())?.kind {
            StoredKind::Element(element) => Some(element),
            _ => None,
        }
    }

    fn stored_attributes(&self, element: &StoredElement) -> &[StoredAttribute] {
        let (start, end) = element.attributes;
        self.attributes
            .get(start as usize..end as usize)
            .unwrap_or_default()
    }

    fn stored_declarations(&self, element: &StoredElement) -> &[StoredDeclaration] {
        let (start, end) = element.declarations;
        self.declarations
            .get(start as usize..end as usize)
            .unwrap_or_default()
    }

    fn attribute_ref<'d>(&'d self, attribute: &StoredAttribute) -> AttributeRef<'d> {
        let qualified_name = self.str(attribute.name.name);
        let (prefix, local_name) = name_parts(qualified_name, attribute.name.prefix_len);
        AttributeRef {
            qualified_name,
            prefix,
            local_name,
            namespace: attribute.namespace.map(|namespace| self.str(namespace)),
            value: self.str(attribute.value),
        }
    }

    pub fn root(&self) -> NodeId {
        self.root
    }

    /// The node behind `id`, from the owned view (built on first use).
    pub fn node(&self, id: NodeId) -> &Node {
        &self.view()[id.index()]
    }

    fn view(&self) -> &[Node] {
        self.view.get_or_init(|| self.build_view())
    }

    fn build_view(&self) -> Vec<Node> {
        (0..self.nodes.len())
            .map(|index| {
                let id = NodeId(index as u32);
                let kind = match self.content(id) {
                    Content::Element => NodeKind::Element(self.owned_element(id)),
                    Content::Text(text) => NodeKind::Text(text.to_string()),
                    Content::Comment(text) => NodeKind::Comment(text.to_string()),
                    Content::ProcessingInstruction { target, data } => {
                        NodeKind::ProcessingInstruction {
                            target: target.to_string(),
                            data: data.to_string(),
                        }
                    }
                };
                Node {
                    kind,
                    parent: self.parent(id),
                }
            })
            .collect()
    }

    fn owned_element(&self, id: NodeId) -> Element {
        Element {
            prefix: self.prefix(id).to_string(),
            local_name: self.local_name(id).to_string(),
            namespace: self.namespace(id).map(Arc::from),
            attributes: self
                .attributes(id)
                .map(|attribute| Attribute {
                    prefix: attribute.prefix.to_string(),
                    local_name: attribute.local_name.to_string(),
                    namespace: attribute.namespace.map(Arc::from),
                    value: attribute.value.to_string(),
                })
                .collect(),
            namespace_declarations: self
                .namespace_declarations(id)
                .map(|(prefix, uri)| NamespaceDeclaration {
                    prefix: prefix.to_string(),
                    uri: uri.to_string(),
                })
                .collect(),
            children: self.children(id).collect(),
            span: self.span(id).unwrap_or_default(),
        }
    }

    /// Top-level nodes (the root and any comments or PIs around it), in document order.
    pub fn top_level(&self) -> &[NodeId] {
        &self.top_level
    }

    /// The element behind `id` from the owned view (built on first use), or `None` for
    /// other node kinds. The borrowed accessors do not build the view.
    pub fn element(&self, id: NodeId) -> Option<&Element> {
        match &self.node(id).kind {
            NodeKind::Element(element) => Some(element),
            _ => None,
        }
    }

    /// Whether `id` is an element.
    pub fn is_element(&self, id: NodeId) -> bool {
        self.stored_element(id).is_some()
    }

    /// What node `id` holds.
    pub fn content(&self, id: NodeId) -> Content<'_> {
        match self.nodes.get(id.index()).map(|node| &node.kind) {
            Some(StoredKind::Element(_)) | None => Content::Element,
            Some(StoredKind::Text(text)) => Content::Text(self.str(*text)),
            Some(StoredKind::Comment(text)) => Content::Comment(self.str(*text)),
            Some(StoredKind::ProcessingInstruction { target, data }) => {
                Content::ProcessingInstruction {
                    target: self.str(*target),
                    data: self.str(*data),
                }
            }
        }
    }

    /// The element's name as written (`prefix:local` or `local`); "" for other nodes.
    pub fn qualified_name(&self, id: NodeId) -> &str {
        self.stored_element(id)
            .map_or("", |element| self.str(element.name.name))
    }

    /// The element's prefix ("" when unprefixed or not an element).
    pub fn prefix(&self, id: NodeId) -> &str {
        self.stored_element(id).map_or("", |element| {
            name_parts(self.str(element.name.name), element.name.prefix_len).0
        })
    }

    /// The element's local name ("" for other nodes).
    pub fn local_name(&self, id: NodeId) -> &str {
        self.stored_element(id).map_or("", |element| {
            name_parts(self.str(element.name.name), element.name.prefix_len).1
        })
    }

    /// The element's resolved namespace URI; `None` when it is in no namespace.
    pub fn namespace(&self, id: NodeId) -> Option<&str> {
        self.stored_element(id)?
            .namespace
            .map(|namespace| self.str(namespace))
    }

    /// Bytes of the source from `<` of the start tag to `>` of the end tag.
    pub fn span(&self, id: NodeId) -> Option<Range<usize>> {
        self.stored_element(id)
            .map(|element| element.span.0 as usize..element.span.1 as usize)
    }

    /// The attributes of element `id` (namespace declarations not included), in order.
    pub fn attributes(&self, id: NodeId) -> impl ExactSizeIterator<Item = AttributeRef<'_>> {
        let attributes = self
            .stored_element(id)
            .map_or(&[][..], |element| self.stored_attributes(element));
        attributes
            .iter()
            .map(|attribute| self.attribute_ref(attribute))
    }

    /// The namespace declarations written on element `id`, as (prefix, uri): the prefix is
    /// empty for `xmlns="…"`, the uri empty for `xmlns=""`.
    pub fn namespace_declarations(
        &self,
        id: NodeId,
    ) -> impl ExactSizeIterator<Item = (&str, &str)> {
        let declarations = self
            .stored_element(id)
            .map_or(&[][..], |element| self.stored_declarations(element));
        declarations
            .iter()
            .map(|declaration| (self.str(declaration.prefix), self.str(declaration.uri)))
    }

    /// The value of element `id`'s ID attribute ([`is_id_attribute`]), if any.
    pub fn id_attribute(&self, id: NodeId) -> Option<&str> {
        self.attributes(id)
            .find(|attribute| attribute.is_id())
            .map(|attribute| attribute.value)
    }

    pub fn parent(&self, id: NodeId) -> Option<NodeId> {
        link(self.nodes.get(id.index())?.parent)
    }

    /// Child nodes of `id` (of every kind), in order.
    pub fn children(&self, id: NodeId) -> Children<'_> {
        Children {
            document: self,
            next: self
                .nodes
                .get(id.index())
                .map_or(NONE, |node| node.first_child),
        }
    }

    /// Child elements of `id`, in order.
    pub fn child_elements(&self, id: NodeId) -> impl Iterator<Item = NodeId> + '_ {
        self.children(id).filter(|child| self.is_element(*child))
    }

    /// Child elements of `id` with the given namespace and local name.
    pub fn children_named<'a>(
        &'a self,
        id: NodeId,
        namespace: &'a str,
        local_name: &'a str,
    ) -> impl Iterator<Item = NodeId> + 'a {
        self.children(id)
            .filter(move |child| self.is_named(*child, namespace, local_name))
    }

    pub fn is_named(&self, id: NodeId, namespace: &str, local_name: &str) -> bool {
        self.stored_element(id).is_some_and(|element| {
            let prefix_bytes = match element.name.prefix_len {
                0 => 0,
                prefix_len => prefix_len as usize + 1,
            };
            element
                .name
                .name
                .may_have_len(prefix_bytes + local_name.len())
                && name_parts(self.str(element.name.name), element.name.prefix_len).1 == local_name
                && element
                    .namespace
                    .is_some_and(|uri| self.str(uri) == namespace)
        })
    }

    /// The value of the unprefixed attribute `name` on element `id`.
    pub fn attribute(&self, id: NodeId, name: &str) -> Option<&str> {
        let element = self.stored_element(id)?;
        self.stored_attributes(element)
            .iter()
            .find(|attribute| {
                attribute.namespace.is_none()
                    && attribute.name.name.may_have_len(name.len())
                    && self.str(attribute.name.name) == name
            })
            .map(|attribute| self.str(attribute.value))
    }

    /// The value of the attribute `{namespace}local_name` on element `id`.
    pub fn attribute_ns(&self, id: NodeId, namespace: &str, local_name: &str) -> Option<&str> {
        self.attributes(id)
            .find(|a| a.namespace == Some(namespace) && a.local_name == local_name)
            .map(|a| a.value)
    }

    /// The text content of `id`: every text and CDATA child joined. Comments and processing
    /// instructions contribute nothing, and never cut a value short (the flaw behind
    /// CVE-2017-11428 and its siblings).
    pub fn text(&self, id: NodeId) -> String {
        self.text_ref(id).into_owned()
    }

    /// [`Document::text`], borrowed when `id` has at most one text child.
    pub fn text_ref(&self, id: NodeId) -> Cow<'_, str> {
        let mut text = Cow::Borrowed("");
        for child in self.children(id) {
            if let Content::Text(value) = self.content(child) {
                if text.is_empty() {
                    text = Cow::Borrowed(value);
                } else {
                    text.to_mut().push_str(value);
                }
            }
        }
        text
    }

    /// Whether `id` has element children.
    pub fn has_child_elements(&self, id: NodeId) -> bool {
        self.child_elements(id).next().is_some()
    }

    /// The depth of `id` below the root (the root is 0).
    pub fn depth(&self, id: NodeId) -> usize {
        let mut depth = 0;
        let mut current = id;
        while let Some(parent) = self.parent(current) {
            depth += 1;
            current = parent;
        }
        depth
    }

    /// Every element of the document in document order.
    pub fn elements(&self) -> impl Iterator<Item = NodeId> + '_ {
        (0..self.nodes.len())
            .map(|index| NodeId(index as u32))
            .filter(|id| self.is_element(*id))
    }

    /// Namespace bindings in scope at `id` (nearest declaration wins), as (prefix, uri),
    /// including the default namespace under the empty prefix when it is not empty. The
    /// `xml` prefix is not listed.
    pub fn in_scope_namespaces(&self, id: NodeId) -> Vec<(String, String)> {
        let mut chain = Vec::new();
        let mut current = Some(id);
        while let Some(node) = current {
            chain.push(node);
            current = self.parent(node);
        }
        let mut bindings: Vec<(String, String)> = Vec::new();
        for node in chain.iter().rev() {
            for (declared, uri) in self.namespace_declarations(*node) {
                bindings.retain(|(prefix, _)| prefix != declared);
                if !uri.is_empty() {
                    bindings.push((declared.to_string(), uri.to_string()));
                }
            }
        }
        bindings
    }
}

/// Attribute names treated as XML IDs, as xmlsec and the SAML toolkits do. Unprefixed only.
pub fn is_id_attribute(attribute: &Attribute) -> bool {
    attribute.namespace.is_none() && matches!(attribute.local_name.as_str(), "ID" | "Id" | "id")
}

/// A parsed document without its input.
struct Parts {
    owned: Vec<String>,
    nodes: Vec<StoredNode>,
    attributes: Vec<StoredAttribute>,
    declarations: Vec<StoredDeclaration>,
    root: NodeId,
    top_level: Vec<NodeId>,
}

impl Parts {
    /// The document over `input`, the text the parts were parsed from.
    fn into_document(self, input: String) -> Document {
        Document {
            input,
            owned: self.owned,
            nodes: self.nodes,
            attributes: self.attributes,
            declarations: self.declarations,
            root: self.root,
            top_level: self.top_level,
            view: OnceLock::new(),
        }
    }
}

struct OpenElement {
    id: NodeId,
    /// Length of the namespace binding stack before this element's declarations.
    bindings_mark: usize,
    /// The last child linked so far, or [`NONE`].
    last_child: u32,
}

/// Character data not yet made a node: adjacent text, CDATA and references merge into one.
enum PendingText {
    Empty,
    /// One piece that needed no rewriting, still a range of the input.
    Input {
        start: u32,
        end: u32,
    },
    Owned(String),
}

struct Builder<'i, 'l> {
    limits: &'l XmlLimits,
    /// The whole input, byte order mark included: [`Str`] ranges index it.
    input: &'i str,
    owned: Vec<String>,
    nodes: Vec<StoredNode>,
    attributes: Vec<StoredAttribute>,
    declarations: Vec<StoredDeclaration>,
    top_level: Vec<NodeId>,
    root: Option<NodeId>,
    open: Vec<OpenElement>,
    /// (prefix, uri) in declaration order; `None` (`xmlns=""`) undeclares the default
    /// namespace.
    bindings: Vec<(&'i str, Option<Str>)>,
    pending_text: PendingText,
    element_count: usize,
    ids: HashSet<Cow<'i, str>>,
    /// The current start tag's attributes other than declarations.
    scratch: Vec<PendingAttribute<'i>>,
    /// The current start tag's raw attribute names, as byte ranges of the tag.
    names: Vec<(usize, usize)>,
}

impl<'i, 'l> Builder<'i, 'l> {
    fn new(limits: &'l XmlLimits, input: &'i str) -> Self {
        // Sized for SAML messages: a node per 24 bytes or so, an attribute per 64.
        Builder {
            limits,
            input,
            owned: Vec::new(),
            nodes: Vec::with_capacity(input.len() / 24 + 4),
            attributes: Vec::with_capacity(input.len() / 64 + 4),
            declarations: Vec::with_capacity(8),
            top_level: Vec::with_capacity(1),
            root: None,
            open: Vec::with_capacity(16),
            bindings: Vec::with_capacity(8),
            pending_text: PendingText::Empty,
            element_count: 0,
            ids: HashSet::new(),
            scratch: Vec::with_capacity(16),
            names: Vec::with_capacity(16),
        }
    }

    fn run(mut self) -> Result<Parts, XmlError> {
        // The reader never sees the byte order mark, but offsets (spans, errors) count
        // from the first byte the caller holds, so that a span indexes its input.
        let bom_bytes = if self.input.as_bytes().starts_with(UTF8_BOM) {
            UTF8_BOM.len()
        } else {
            0
        };
        let input = self.input.get(bom_bytes..).unwrap_or_default();
        // XML 1.0 §2.2: every literal character is a Char (no C0 controls but tab, CR and
        // LF; no surrogates, U+FFFE or U+FFFF). References are checked where resolved.
        if let Some(position) = first_non_char(input.as_bytes()) {
            return Err(malformed(
                bom_bytes + position,
                "character not allowed in XML",
            ));
        }
        let mut tokens = Tokens::new(input);
        let mut seen_declaration = false;
        loop {
            let offset = bom_bytes + tokens.position();
            let token = tokens
                .next_token()
                .map_err(|error| malformed(bom_bytes + error.offset, error.reason))?;
            let Some(token) = token else { break };
            match token {
                Token::Declaration(pseudo_attributes) => {
                    if seen_declaration || offset != bom_bytes {
                        return Err(malformed(offset, "XML declaration not at the start"));
                    }
                    seen_declaration = true;
                    check_xml_declaration(pseudo_attributes)
                        .map_err(|reason| malformed(offset, reason))?;
                }
                Token::Doctype => return Err(XmlError::DtdForbidden),
                Token::Start { tag, empty: false } => {
                    self.flush_text()?;
                    let (id, bindings_mark) = self.open_element(tag, offset)?;
                    self.open.push(OpenElement {
                        id,
                        bindings_mark,
                        last_child: NONE,
                    });
                    if self.open.len() > self.limits.depth_max {
                        return Err(XmlError::LimitExceeded {
                            limit: "depth_max",
                            max: self.limits.depth_max,
                        });
                    }
                }
                Token::Start { tag, empty: true } => {
                    self.flush_text()?;
                    let (id, mark) = self.open_element(tag, offset)?;
                    if self.open.len() + 1 > self.limits.depth_max {
                        return Err(XmlError::LimitExceeded {
                            limit: "depth_max",
                            max: self.limits.depth_max,
                        });
                    }
                    self.set_span_end(id, bom_bytes + tokens.position());
                    self.bindings.truncate(mark);
                }
                Token::End(name) => {
                    self.flush_text()?;
                    let open = self
                        .open
                        .pop()
                        .ok_or_else(|| malformed(offset, "stray end tag"))?;
                    if !self.is_named_as(open.id, name) {
                        return Err(malformed(offset, "end tag does not match start tag"));
                    }
                    self.set_span_end(open.id, bom_bytes + tokens.position());
                    self.bindings.truncate(open.bindings_mark);
                }
                Token::Text(raw) => {
                    // One scan answers both questions for almost every text: no `>` (so no
                    // `]]>`) and no CR (nothing to normalise).
                    let plain = memchr::memchr2(b'>', b'\r', raw.as_bytes()).is_none();
                    if !plain && contains_cdata_end(raw) {
                        return Err(malformed(offset, "']]>' in text"));
                    }
                    if self.open.is_empty() {
                        if raw.trim_matches(is_xml_whitespace).is_empty() {
                            continue;
                        }
                        return Err(malformed(offset, "text outside the root element"));
                    }
                    if plain {
                        self.push_text(Cow::Borrowed(raw))?;
                    } else {
                        self.push_text(normalize_line_ends(raw))?;
                    }
                }
                Token::CData(raw) => {
                    if self.open.is_empty() {
                        return Err(malformed(offset, "CDATA outside the root element"));
                    }
                    self.push_text(normalize_line_ends(raw))?;
                }
                Token::Reference(name) => {
                    if self.open.is_empty() {
                        return Err(malformed(offset, "reference outside the root element"));
                    }
                    let character = resolve_reference(name, offset)?;
                    self.push_text(Cow::Owned(character.to_string()))?;
                }
                Token::Comment(comment) => {
                    self.flush_text()?;
                    let text = normalize_line_ends(comment);
                    self.check_text_length(&text)?;
                    let text = self.store_cow(text);
                    self.push_node(StoredKind::Comment(text));
                }
                Token::ProcessingInstruction { target, data } => {
                    self.flush_text()?;
                    if target.eq_ignore_ascii_case("xml") {
                        return Err(malformed(offset, "misplaced XML declaration"));
                    }
                    self.check_qualified_name(target, offset)?;
                    let target = self.store(target);
                    // Only XML white space separates target and data (XML 1.0 §2.6);
                    // `str::trim_start` would also eat U+00A0, U+3000 and the like, which
                    // are data and hashed by every other canonicaliser.
                    let data = normalize_line_ends(data.trim_start_matches(is_xml_whitespace));
                    self.check_text_length(&data)?;
                    let data = self.store_cow(data);
                    self.push_node(StoredKind::ProcessingInstruction { target, data });
                }
            }
        }
        if !self.open.is_empty() {
            return Err(malformed(
                bom_bytes + input.len(),
                "unclosed element at end of input",
            ));
        }
        let root = self.root.ok_or_else(|| malformed(0, "no root element"))?;
        Ok(Parts {
            owned: self.owned,
            nodes: self.nodes,
            attributes: self.attributes,
            declarations: self.declarations,
            root,
            top_level: self.top_level,
        })
    }

    fn text(&self, s: Str) -> &str {
        text_of(self.input, &self.owned, s)
    }

    /// The range `part` occupies in the input, when it is a slice of it (names and values
    /// the reader hands out unchanged are).
    fn locate(&self, part: &str) -> Option<(u32, u32)> {
        let start = (part.as_ptr() as usize).checked_sub(self.input.as_ptr() as usize)?;
        let end = start.checked_add(part.len())?;
        if end > self.input.len() {
            return None;
        }
        Some((u32::try_from(start).ok()?, u32::try_from(end).ok()?))
    }

    /// `part` as a range of the input if it is one, else as an owned copy.
    fn store(&mut self, part: &str) -> Str {
        match self.locate(part) {
            Some((start, end)) => Str::Input { start, end },
            None => self.own(part.to_string()),
        }
    }

    fn store_cow(&mut self, value: Cow<'_, str>) -> Str {
        match value {
            Cow::Borrowed(part) => self.store(part),
            Cow::Owned(value) => self.own(value),
        }
    }

    fn own(&mut self, value: String) -> Str {
        let index = self.owned.len() as u32;
        self.owned.push(value);
        Str::Owned(index)
    }

    /// Whether element `id` was opened with exactly this qualified name (XML 1.0 §3: the end
    /// tag repeats the start tag's name literally).
    fn is_named_as(&self, id: NodeId, qualified_name: &str) -> bool {
        match self.nodes.get(id.index()).map(|node| &node.kind) {
            Some(StoredKind::Element(element)) => self.text(element.name.name) == qualified_name,
            _ => false,
        }
    }

    fn set_span_end(&mut self, id: NodeId, end: usize) {
        if let Some(StoredNode {
            kind: StoredKind::Element(element),
            ..
        }) = self.nodes.get_mut(id.index())
        {
            element.span.1 = end as u32;
        }
    }

    fn check_text_length(&self, text: &str) -> Result<(), XmlError> {
        if text.len() > self.limits.text_bytes_max {
            return Err(XmlError::LimitExceeded {
                limit: "text_bytes_max",
                max: self.limits.text_bytes_max,
            });
        }
        Ok(())
    }

    fn push_text(&mut self, piece: Cow<'_, str>) -> Result<(), XmlError> {
        let located = match &piece {
            Cow::Borrowed(part) => self.locate(part),
            Cow::Owned(_) => None,
        };
        let length = match (&mut self.pending_text, located) {
            (PendingText::Empty, Some((start, end))) => {
                self.pending_text = PendingText::Input { start, end };
                piece.len()
            }
            (PendingText::Empty, None) => {
                let length = piece.len();
                self.pending_text = PendingText::Owned(piece.into_owned());
                length
            }
            (PendingText::Input { start, end }, _) => {
                let first = self.input.get(*start as usize..*end as usize).unwrap_or("");
                let mut joined = String::with_capacity(first.len() + piece.len());
                joined.push_str(first);
                joined.push_str(&piece);
                let length = joined.len();
                self.pending_text = PendingText::Owned(joined);
                length
            }
            (PendingText::Owned(text), _) => {
                text.push_str(&piece);
                text.len()
            }
        };
        if length > self.limits.text_bytes_max {
            return Err(XmlError::LimitExceeded {
                limit: "text_bytes_max",
                max: self.limits.text_bytes_max,
            });
        }
        Ok(())
    }

    fn flush_text(&mut self) -> Result<(), XmlError> {
        let text = match std::mem::replace(&mut self.pending_text, PendingText::Empty) {
            PendingText::Empty => return Ok(()),
            PendingText::Input { start, end } if start == end => return Ok(()),
            PendingText::Input { start, end } => Str::Input { start, end },
            PendingText::Owned(text) if text.is_empty() => return Ok(()),
            PendingText::Owned(text) => self.own(text),
        };
        self.push_node(StoredKind::Text(text));
        Ok(())
    }

    /// Appends a node as the last child of the open element, or at the top level.
    fn push_node(&mut self, kind: StoredKind) -> NodeId {
        let index = self.nodes.len() as u32;
        let parent = self.open.last().map_or(NONE, |open| open.id.0);
        self.nodes.push(StoredNode {
            kind,
            parent,
            first_child: NONE,
            next_sibling: NONE,
        });
        match self.open.last_mut() {
            Some(open) => {
                let previous = if open.last_child == NONE {
                    parent
                } else {
                    open.last_child
                };
                if let Some(previous_node) = self.nodes.get_mut(previous as usize) {
                    if open.last_child == NONE {
                        previous_node.first_child = index;
                    } else {
                        previous_node.next_sibling = index;
                    }
                }
                open.last_child = index;
            }
            None => self.top_level.push(NodeId(index)),
        }
        NodeId(index)
    }

    /// Stores the element of a start tag; returns it and the length of the binding stack
    /// before its declarations.
    fn open_element(&mut self, tag: &'i str, offset: usize) -> Result<(NodeId, usize), XmlError> {
        if self.open.is_empty() && self.root.is_some() {
            return Err(malformed(offset, "more than one root element"));
        }
        self.element_count += 1;
        if self.element_count > self.limits.elements_count_max {
            return Err(XmlError::LimitExceeded {
                limit: "elements_count_max",
                max: self.limits.elements_count_max,
            });
        }
        // The name runs to the first white space; the attribute reader checks what follows.
        let name_len = tag
            .bytes()
            .position(|byte| matches!(byte, b' ' | b'\t' | b'\n' | b'\r'))
            .unwrap_or(tag.len());
        let qualified_name = tag.get(..name_len).unwrap_or_default();
        let prefix_len = self.check_qualified_name(qualified_name, offset)?;

        // Attributes first: declarations must be in scope before any name is resolved.
        let bindings_mark = self.bindings.len();
        let declarations_start = self.declarations.len();
        let mut pending = std::mem::take(&mut self.scratch);
        pending.clear();
        let mut names = std::mem::take(&mut self.names);
        names.clear();
        // Past a few attributes, a set answers "seen before?" (the check stays linear).
        let mut seen: Option<HashSet<&str>> = None;
        for attribute in tag::Attributes::after_name(tag, qualified_name.len()) {
            let tag::RawAttribute {
                name,
                value: raw_value,
                position,
            } = attribute.map_err(|reason| malformed(offset, reason))?;
            // XML 1.0 §3.1 (Unique Att Spec): by raw name over every attribute and
            // declaration, before any prefix is resolved.
            let maybe_seen = seen.as_ref().is_none_or(|set| set.contains(name));
            let previous = names.iter().filter(|_| maybe_seen).find(|(start, end)| {
                end - start == name.len() && tag.get(*start..*end) == Some(name)
            });
            if let Some((previous, _)) = previous {
                return Err(malformed(
                    offset,
                    format!(
                        "position {position}: duplicated attribute, previous declaration at \
                         position {previous}"
                    ),
                ));
            }
            names.push((position, position + name.len()));
            match &mut seen {
                Some(set) => {
                    set.insert(name);
                }
                None if names.len() > 16 => {
                    seen = Some(
                        names
                            .iter()
                            .filter_map(|(start, end)| tag.get(*start..*end))
                            .collect(),
                    );
                }
                None => {}
            }
            let name_prefix_len = self.check_qualified_name(name, offset)?;
            let value = attribute_value(raw_value, offset)?;
            self.check_text_length(&value)?;
            let declared = match (name, name_parts(name, name_prefix_len)) {
                ("xmlns", _) => Some(""),
                (_, ("xmlns", prefix)) => Some(prefix),
                _ => None,
            };
            match declared {
                Some(prefix) => {
                    if !prefix.is_empty() {
                        check_declaration(prefix, &value, offset)?;
                    }
                    let uri = self.store_cow(value);
                    let uri_text = self.text(uri);
                    if uri_text == XML_NAMESPACE && prefix != "xml" || uri_text == XMLNS_NAMESPACE {
                        return Err(malformed(
                            offset,
                            "reserved namespace bound to another prefix",
                        ));
                    }
                    if self.declarations.len() - declarations_start
                        >= self.limits.namespace_declarations_per_element_max
                    {
                        return Err(XmlError::LimitExceeded {
                            limit: "namespace_declarations_per_element_max",
                            max: self.limits.namespace_declarations_per_element_max,
                        });
                    }
                    // In scope from now on; nothing of this tag is resolved before the
                    // loop ends.
                    let bound = (!uri_text.is_empty()).then_some(uri);
                    self.bindings.push((prefix, bound));
                    let prefix = if prefix.is_empty() {
                        Str::EMPTY
                    } else {
                        self.store(prefix)
                    };
                    self.declarations.push(StoredDeclaration { prefix, uri });
                }
                None => {
                    if pending.len() >= self.limits.attributes_per_element_max {
                        return Err(XmlError::LimitExceeded {
                            limit: "attributes_per_element_max",
                            max: self.limits.attributes_per_element_max,
                        });
                    }
                    let value = self.store_cow(value);
                    pending.push(PendingAttribute {
                        name,
                        prefix_len: name_prefix_len,
                        value,
                    });
                }
            }
        }
        let declarations_end = self.declarations.len();

        let namespace = self.resolve(name_parts(qualified_name, prefix_len).0, true, offset)?;
        let name = QualifiedName {
            name: self.store(qualified_name),
            prefix_len,
        };
        let attributes_start = self.attributes.len();
        for (index, attribute) in pending.iter().enumerate() {
            let (prefix, local) = name_parts(attribute.name, attribute.prefix_len);
            let namespace = self.resolve(prefix, false, offset)?;
            let namespace_text = namespace.map(|uri| self.text(uri));
            // The attributes stored so far are this tag's earlier ones, in the same order.
            let earlier = pending.get(..index).unwrap_or_default();
            let duplicate = earlier
                .iter()
                .zip(self.attributes.get(attributes_start..).unwrap_or_default())
                .any(|(other, stored)| {
                    name_parts(other.name, other.prefix_len).1 == local
                        && stored.namespace.map(|uri| self.text(uri)) == namespace_text
                });
            if duplicate {
                return Err(malformed(
                    offset,
                    format!("duplicate attribute {}", attribute.name),
                ));
            }
            if prefix.is_empty() && matches!(local, "ID" | "Id" | "id") {
                let id: Cow<'i, str> = match attribute.value {
                    Str::Input { start, end } => {
                        Cow::Borrowed(self.input.get(start as usize..end as usize).unwrap_or(""))
                    }
                    value => Cow::Owned(self.text(value).to_string()),
                };
                if !self.ids.insert(id) {
                    return Err(XmlError::DuplicateId {
                        value: self.text(attribute.value).to_string(),
                    });
                }
            }
            let name = self.store(attribute.name);
            self.attributes.push(StoredAttribute {
                name: QualifiedName {
                    name,
                    prefix_len: attribute.prefix_len,
                },
                namespace,
                value: attribute.value,
            });
        }
        self.scratch = pending;
        self.names = names;

        let element = StoredElement {
            name,
            namespace,
            attributes: (attributes_start as u32, self.attributes.len() as u32),
            declarations: (declarations_start as u32, declarations_end as u32),
            span: (offset as u32, offset as u32),
        };
        let id = self.push_node(StoredKind::Element(element));
        if self.open.is_empty() {
            self.root = Some(id);
        }
        Ok((id, bindings_mark))
    }

    /// Checks a qualified name (Namespaces in XML 1.0 §4: `NCName` or `NCName:NCName`, of
    /// the characters XML 1.0 §2.3 allows in names) and returns the length of its prefix, 0
    /// when it has none. A name libxml2 would refuse is refused here too, so that nothing
    /// an IdP's canonicaliser rejects is read as markup.
    fn check_qualified_name(&self, name: &str, offset: usize) -> Result<u32, XmlError> {
        if name.len() > self.limits.name_bytes_max {
            return Err(XmlError::LimitExceeded {
                limit: "name_bytes_max",
                max: self.limits.name_bytes_max,
            });
        }
        // Every byte classified below is ASCII, so a byte test is a character test, and the
        // colon's position is a character boundary.
        let bytes = name.as_bytes();
        let mut classes = 0;
        let mut colon = None;
        for (index, byte) in bytes.iter().enumerate() {
            let class = NAME_CLASSES[usize::from(*byte)];
            classes |= class;
            if class == NAME_COLON && colon.replace(index).is_some() {
                return Err(malformed(offset, format!("invalid name {name:?}")));
            }
        }
        // A part may not be empty, nor start with a digit, '-' or '.'.
        let starts_badly = |at: usize| {
            bytes.get(at).is_none_or(|byte| {
                NAME_CLASSES[usize::from(*byte)] & (NAME_NOT_FIRST | NAME_COLON) != 0
            })
        };
        if classes & NAME_FORBIDDEN != 0
            || starts_badly(0)
            || colon.is_some_and(|colon| starts_badly(colon + 1))
            || classes & NAME_NON_ASCII != 0 && !non_ascii_name_chars_allowed(name)
        {
            return Err(malformed(offset, format!("invalid name {name:?}")));
        }
        // The name is at most `name_bytes_max` bytes long: its colon's position fits.
        Ok(colon.unwrap_or(0) as u32)
    }

    /// Resolves `prefix`. Unprefixed attributes are in no namespace; unprefixed elements take
    /// the default namespace.
    fn resolve(
        &self,
        prefix: &str,
        is_element: bool,
        offset: usize,
    ) -> Result<Option<Str>, XmlError> {
        if prefix.is_empty() && !is_element {
            return Ok(None);
        }
        if prefix == "xml" {
            return Ok(Some(Str::XmlNamespace));
        }
        match self
            .bindings
            .iter()
            .rev()
            .find(|(bound, _)| same_bytes(bound, prefix))
        {
            Some((_, uri)) => Ok(*uri),
            None if prefix.is_empty() => Ok(None),
            None => Err(malformed(
                offset,
                format!("undeclared namespace prefix {prefix:?}"),
            )),
        }
    }
}

/// An ASCII byte that XML 1.0 §2.3 never allows in a name.
const NAME_FORBIDDEN: u8 = 1;
const NAME_COLON: u8 = 2;
/// Digits, `-` and `.`: not at the start of a name or of its local part.
const NAME_NOT_FIRST: u8 = 4;
/// A byte of a non-ASCII character, checked by [`is_name_char`].
const NAME_NON_ASCII: u8 = 8;

/// The class of each byte in a name; 0 for ASCII letters and `_`, allowed anywhere. ASCII
/// names, almost all of them, are checked by this table alone.
const NAME_CLASSES: [u8; 256] = {
    let mut classes = [NAME_FORBIDDEN; 256];
    let mut byte = 0;
    while byte < 256 {
        classes[byte] = match byte as u8 {
            b'A'..=b'Z' | b'a'..=b'z' | b'_' => 0,
            b'0'..=b'9' | b'-' | b'.' => NAME_NOT_FIRST,
            b':' => NAME_COLON,
            0x80.. => NAME_NON_ASCII,
            _ => NAME_FORBIDDEN,
        };
        byte += 1;
    }
    classes
};

/// Whether every non-ASCII character of `name` may stand where it stands: a NameStartChar
/// first in the name or after its colon, a NameChar elsewhere.
fn non_ascii_name_chars_allowed(name: &str) -> bool {
    let mut first = true;
    name.chars().all(|c| {
        let allowed = c.is_ascii() || is_name_char(c, first);
        first = c == ':';
        allowed
    })
}

/// XML 1.0 (fifth edition) §2.3 NameStartChar (`first`) or NameChar, for characters
/// outside ASCII.
fn is_name_char(c: char, first: bool) -> bool {
    let start = matches!(c,
        '\u{C0}'..='\u{D6}' | '\u{D8}'..='\u{F6}' | '\u{F8}'..='\u{2FF}'
        | '\u{370}'..='\u{37D}' | '\u{37F}'..='\u{1FFF}' | '\u{200C}'..='\u{200D}'
        | '\u{2070}'..='\u{218F}' | '\u{2C00}'..='\u{2FEF}' | '\u{3001}'..='\u{D7FF}'
        | '\u{F900}'..='\u{FDCF}' | '\u{FDF0}'..='\u{FFFD}' | '\u{10000}'..='\u{EFFFF}');
    start || !first && matches!(c, '\u{B7}' | '\u{300}'..='\u{36F}' | '\u{203F}'..='\u{2040}')
}

/// A start tag's attribute other than a declaration, held until the tag's declarations are
/// in scope.
#[derive(Clone, Copy)]
struct PendingAttribute<'i> {
    /// The qualified name, a slice of the input.
    name: &'i str,
    prefix_len: u32,
    value: Str,
}

/// String equality without a call into the C library: prefixes are a few bytes long.
pub(crate) fn same_bytes(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).all(|(x, y)| x == y)
}

fn check_declaration(prefix: &str, uri: &str, offset: usize) -> Result<(), XmlError> {
    if prefix == "xmlns" {
        return Err(malformed(offset, "the xmlns prefix cannot be declared"));
    }
    if prefix == "xml" && uri != XML_NAMESPACE {
        return Err(malformed(offset, "the xml prefix cannot be rebound"));
    }
    if uri.is_empty() {
        // Namespaces in XML 1.0 §5: a prefixed declaration cannot be empty.
        return Err(malformed(
            offset,
            format!("empty namespace for prefix {prefix:?}"),
        ));
    }
    Ok(())
}

pub(crate) fn is_xml_whitespace(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r')
}

/// XML 1.0 §2.11: CR LF and lone CR become LF before anything else sees the text.
fn normalize_line_ends(raw: &str) -> Cow<'_, str> {
    if !raw.contains('\r') {
        return Cow::Borrowed(raw);
    }
    Cow::Owned(raw.replace("\r\n", "\n").replace('\r', "\n"))
}

/// Resolves the body of `&name;`: the five predefined entities and character references.
fn resolve_reference(name: &str, offset: usize) -> Result<char, XmlError> {
    match name {
        "lt" => Ok('<'),
        "gt" => Ok('>'),
        "amp" => Ok('&'),
        "apos" => Ok('\''),
        "quot" => Ok('"'),
        _ => match name.strip_prefix('#') {
            Some(number) => {
                let code = match number.strip_prefix('x') {
                    Some(hex) => u32::from_str_radix(hex, 16),
                    None => number.parse::<u32>(),
                };
                code.ok()
                    .filter(|_| !number.starts_with('+') && !number.starts_with("x+"))
                    .and_then(char::from_u32)
                    .filter(|c| is_xml_char(*c))
                    .ok_or_else(|| {
                        malformed(offset, format!("invalid character reference &{name};"))
                    })
            }
            None => Err(XmlError::EntityForbidden {
                name: name.to_string(),
            }),
        },
    }
}

/// The offset of the first character of valid UTF-8 that is not an XML Char: a C0 control
/// other than tab, LF and CR, or U+FFFE/U+FFFF (EF BF BE/BF). Surrogates cannot occur in
/// valid UTF-8. Byte-wise, because a char-by-char decode costs more than the parse; blocks
/// of 32 bytes without a control byte or 0xEF (almost all of them) are passed over whole.
fn first_non_char(bytes: &[u8]) -> Option<usize> {
    const BLOCK: usize = 32;
    // Bitwise operators, not short-circuiting ones, so that the test vectorises.
    let suspicious = |byte: &u8| {
        (*byte < 0x20) & (*byte != b'\t') & (*byte != b'\n') & (*byte != b'\r') | (*byte == 0xEF)
    };
    let mut start = 0;
    while start < bytes.len() {
        let end = (start + BLOCK).min(bytes.len());
        let block = bytes.get(start..end).unwrap_or_default();
        // A fold without an early exit, so that the compiler can test the block at once.
        if block.iter().fold(false, |any, byte| any | suspicious(byte)) {
            for index in start..end {
                let is_non_char = match bytes.get(index) {
                    Some(0x00..=0x08 | 0x0B | 0x0C | 0x0E..=0x1F) => true,
                    Some(0xEF) => {
                        bytes.get(index + 1) == Some(&0xBF)
                            && matches!(bytes.get(index + 2), Some(0xBE | 0xBF))
                    }
                    _ => false,
                };
                if is_non_char {
                    return Some(index);
                }
            }
        }
        start = end;
    }
    None
}

/// Whether `text` holds `]]>`, which XML 1.0 §2.4 forbids in character data.
fn contains_cdata_end(text: &str) -> bool {
    let mut rest = text;
    // `>` is rare in text, and `str::find` with a character looks for it with memchr.
    while let Some(position) = rest.find('>') {
        if rest
            .as_bytes()
            .get(..position)
            .is_some_and(|before| before.ends_with(b"]]"))
        {
            return true;
        }
        rest = rest.get(position + 1..).unwrap_or("");
    }
    false
}

/// XML 1.0 §2.2 Char.
fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// XML 1.0 §2.8 XMLDecl, after `<?xml`: `version`, then optionally `encoding` and
/// `standalone`, in that order and nothing else. Only UTF-8 documents are accepted.
fn check_xml_declaration(pseudo_attributes: &str) -> Result<(), &'static str> {
    let mut expected = ["version", "encoding", "standalone"].into_iter();
    let mut seen_version = false;
    for attribute in tag::Attributes::after_name(pseudo_attributes, 0) {
        let tag::RawAttribute { name, value, .. } = attribute?;
        if !expected.by_ref().any(|allowed| allowed == name) {
            return Err("invalid XML declaration");
        }
        let valid = match name {
            "version" => value.strip_prefix("1.").is_some_and(|minor| {
                !minor.is_empty() && minor.bytes().all(|b| b.is_ascii_digit())
            }),
            "encoding" => {
                if !value.eq_ignore_ascii_case("utf-8") {
                    return Err("only UTF-8 documents are accepted");
                }
                true
            }
            _ => matches!(value, "yes" | "no"),
        };
        if !valid {
            return Err("invalid XML declaration");
        }
        seen_version |= name == "version";
    }
    if !seen_version {
        return Err("XML declaration without a version");
    }
    Ok(())
}

/// Unescapes and normalises an attribute value (XML 1.0 §3.3.3): literal white space
/// characters become spaces, references are resolved afterwards and kept as they are.
/// Borrowed when there was nothing to rewrite.
fn attribute_value(raw: &str, offset: usize) -> Result<Cow<'_, str>, XmlError> {
    let special = |byte: &u8| matches!(byte, b'&' | b'<' | b'\r' | b'\n' | b'\t');
    // Every special byte is ASCII, so its position is a character boundary.
    let Some(first) = raw.as_bytes().iter().position(special) else {
        return Ok(Cow::Borrowed(raw));
    };
    let mut value = String::with_capacity(raw.len());
    value.push_str(&raw[..first]);
    let mut rest = &raw[first..];
    while let Some(position) = rest.find(['&', '<', '\r', '\n', '\t']) {
        value.push_str(&rest[..position]);
        let tail = &rest[position..];
        match tail.as_bytes()[0] {
            b'<' => return Err(malformed(offset, "'<' in attribute value")),
            b'\r' => {
                value.push(' ');
                rest = tail.strip_prefix("\r\n").unwrap_or(&tail[1..]);
            }
            b'\n' | b'\t' => {
                value.push(' ');
                rest = &tail[1..];
            }
            _ => {
                let end = tail
                    .find(';')
                    .ok_or_else(|| malformed(offset, "unterminated reference in attribute"))?;
                value.push(resolve_reference(&tail[1..end], offset)?);
                rest = &tail[end + 1..];
            }
        }
    }
    value.push_str(rest);
    Ok(Cow::Owned(value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::saml::limits::RESPONSE_XML;

    fn parse(input: &str) -> Result<Document, XmlError> {
        Document::parse(input.as_bytes(), &RESPONSE_XML)
    }

    #[test]
    fn text_joins_across_comments_and_cdata() {
        let document = parse("<a>user@<!-- x -->example.com<![CDATA[.evil]]>&amp;</a>").unwrap();
        assert_eq!(document.text(document.root()), "user@example.com.evil&");
    }

    #[test]
    fn doctype_is_refused() {
        let input = "<!DOCTYPE a [<!ENTITY x \"y\">]><a>&x;</a>";
        assert_eq!(parse(input), Err(XmlError::DtdForbidden));
    }

    #[test]
    fn unknown_entity_is_refused() {
        assert_eq!(
            parse("<a>&x;</a>"),
            Err(XmlError::EntityForbidden {
                name: "x".to_string()
            })
        );
    }

    #[test]
    fn character_references_resolve() {
        let document = parse("<a b=\"&#x41;&#10;\">&#13;&#65;</a>").unwrap();
        assert_eq!(document.text(document.root()), "\rA");
        assert_eq!(document.attribute(document.root(), "b"), Some("A\n"));
    }

    #[test]
    fn invalid_character_reference_is_refused() {
        assert!(matches!(
            parse("<a>&#0;</a>"),
            Err(XmlError::Malformed { .. })
        ));
        assert!(matches!(
            parse("<a>&#xD800;</a>"),
            Err(XmlError::Malformed { .. })
        ));
    }

    #[test]
    fn two_roots_are_refused() {
        assert!(matches!(parse("<a/><b/>"), Err(XmlError::Malformed { .. })));
    }

    #[test]
    fn duplicate_ids_are_refused() {
        let input = "<a ID=\"x\"><b ID=\"x\"/></a>";
        assert_eq!(
            parse(input),
            Err(XmlError::DuplicateId {
                value: "x".to_string()
            })
        );
    }

    #[test]
    fn namespaces_resolve_and_scope() {
        let document =
            parse("<p:a xmlns:p=\"urn:p\"><b xmlns=\"urn:d\"><c/></b><d/></p:a>").unwrap();
        let root = document.root();
        assert!(document.is_named(root, "urn:p", "a"));
        let children: Vec<_> = document.child_elements(root).collect();
        assert!(document.is_named(children[0], "urn:d", "b"));
        let c = document.child_elements(children[0]).next().unwrap();
        assert!(document.is_named(c, "urn:d", "c"));
        assert_eq!(document.element(children[1]).unwrap().namespace, None);
    }

    #[test]
    fn undeclared_prefix_is_refused() {
        assert!(matches!(parse("<p:a/>"), Err(XmlError::Malformed { .. })));
    }

    #[test]
    fn line_ends_are_normalised_and_attribute_whitespace_folded() {
        let document = parse("<a b=\"x\r\ny\tz\">1\r\n2\r3</a>").unwrap();
        assert_eq!(document.text(document.root()), "1\n2\n3");
        assert_eq!(document.attribute(document.root(), "b"), Some("x y z"));
    }

    #[test]
    fn depth_limit_is_enforced() {
        let deep =
            "<a>".repeat(RESPONSE_XML.depth_max + 1) + &"</a>".repeat(RESPONSE_XML.depth_max + 1);
        assert_eq!(
            parse(&deep),
            Err(XmlError::LimitExceeded {
                limit: "depth_max",
                max: RESPONSE_XML.depth_max
            })
        );
        let ok = "<a>".repeat(RESPONSE_XML.depth_max) + &"</a>".repeat(RESPONSE_XML.depth_max);
        assert!(parse(&ok).is_ok());
    }

    #[test]
    fn mismatched_end_tag_is_refused() {
        assert!(matches!(parse("<a></b>"), Err(XmlError::Malformed { .. })));
        assert!(matches!(parse("<a>"), Err(XmlError::Malformed { .. })));
    }

    #[test]
    fn non_utf8_declaration_is_refused() {
        let input = "<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><a/>";
        assert!(matches!(parse(input), Err(XmlError::Malformed { .. })));
    }

    #[test]
    fn spans_cover_the_element() {
        let input = "<r><a x=\"1\">t</a><b/></r>";
        let document = parse(input).unwrap();
        let spans: Vec<_> = document
            .child_elements(document.root())
            .map(|id| &input[document.element(id).unwrap().span.clone()])
            .collect();
        assert_eq!(spans, ["<a x=\"1\">t</a>", "<b/>"]);
    }

    #[test]
    fn spans_index_the_input_with_its_byte_order_mark() {
        let input = "\u{feff}<r><a/></r>";
        let document = parse(input).unwrap();
        let a = document.child_elements(document.root()).next().unwrap();
        assert_eq!(&input[document.element(a).unwrap().span.clone()], "<a/>");
    }

    #[test]
    fn processing_instruction_data_keeps_non_xml_white_space() {
        // Only space, tab, CR and LF separate the target from the data (XML 1.0 §2.6).
        let document = parse("<r><?pi \u{a0}x ?></r>").unwrap();
        let child = document.element(document.root()).unwrap().children[0];
        assert_eq!(
            document.node(child).kind,
            NodeKind::ProcessingInstruction {
                target: "pi".to_string(),
                data: "\u{a0}x ".to_string()
            }
        );
    }

    fn assert_all_malformed(inputs: &[&str]) {
        for input in inputs {
            assert!(
                matches!(parse(input), Err(XmlError::Malformed { .. })),
                "{input:?}"
            );
        }
    }

    #[test]
    fn characters_outside_xml_char_are_refused() {
        assert_all_malformed(&[
            "<a>\u{1}</a>",
            "<a b=\"\u{8}\"/>",
            "<a>\u{FFFE}</a>",
            "<a><!--\u{0}--></a>",
        ]);
        assert!(parse("<a>\t\r\n\u{10FFFF}</a>").is_ok());
    }

    #[test]
    fn duplicate_attributes_are_refused_by_raw_name() {
        let duplicated = |input: &str, at: usize, previous: usize| {
            let reason = format!(
                "position {at}: duplicated attribute, previous declaration at position {previous}"
            );
            assert_eq!(
                parse(input),
                Err(XmlError::Malformed { offset: 0, reason }),
                "{input}"
            );
        };
        let many: String = (0..40).map(|i| format!(" a{i}=\"{i}\"")).collect();
        // Positions count from the tag's first byte after `<`.
        duplicated("<a x=\"1\" x=\"2\"/>", 8, 2);
        duplicated("<a xmlns:p=\"urn:p\" y=\"1\" xmlns:p=\"urn:q\"/>", 24, 2);
        duplicated("<a xmlns=\"urn:p\" xmlns=\"urn:p\"/>", 16, 2);
        // Past 16 attributes the check goes through a set; the answer is the same.
        let at = 1 + many.len() + 1;
        duplicated(&format!("<a{many} a7=\"again\"/>"), at, 2 + 7 * 7);
        duplicated(
            &format!("<a{many} a39=\"again\"/>"),
            at,
            many.find(" a39=").unwrap() + 2,
        );
        // Same local name and namespace through two prefixes: refused after resolution.
        assert!(matches!(
            parse("<a xmlns:p=\"urn:x\" xmlns:q=\"urn:x\" p:b=\"1\" q:b=\"2\"/>"),
            Err(XmlError::Malformed { .. })
        ));
        assert!(parse(&format!("<a{many}/>")).is_ok());
    }

    #[test]
    fn parse_owned_equals_parse_and_values_borrow_only_when_unchanged() {
        for input in [
            "<r a=\"plain\" b=\"x&amp;y\" c=\"t\tu\">one<!--c-->two</r>",
            "\u{feff}<r><a/>text &#65;<![CDATA[c]]></r>",
        ] {
            let borrowed = parse(input).unwrap();
            let owned = Document::parse_owned(input.as_bytes().to_vec(), &RESPONSE_XML).unwrap();
            assert_eq!(borrowed, owned);
        }
        let document = parse("<r a=\"plain\" b=\"x&amp;y\" c=\"t\tu\">one<!--c-->two</r>").unwrap();
        let root = document.root();
        assert_eq!(document.attribute(root, "a"), Some("plain"));
        assert_eq!(document.attribute(root, "b"), Some("x&y"));
        assert_eq!(document.attribute(root, "c"), Some("t u"));
        assert!(matches!(document.text_ref(root), Cow::Owned(text) if text == "onetwo"));
        let single = parse("<r>only</r>").unwrap();
        assert!(matches!(
            single.text_ref(single.root()),
            Cow::Borrowed("only")
        ));
        // The owned view agrees with the borrowed accessors.
        let element = document.element(root).unwrap();
        let borrowed: Vec<_> = document.attributes(root).map(|a| a.value).collect();
        let viewed: Vec<_> = element
            .attributes
            .iter()
            .map(|a| a.value.as_str())
            .collect();
        assert_eq!(borrowed, viewed);
        assert_eq!(
            element.children,
            document.children(root).collect::<Vec<_>>()
        );
    }

    #[test]
    fn start_tags_follow_the_attribute_grammar() {
        assert_all_malformed(&[
            // XML 1.0 §3.1: white space between attributes.
            "<a x=\"1\"y=\"2\"/>",
            "<a x/>",
            "<a x=1/>",
            "<a x=\"1'/>",
        ]);
        // Namespaces in XML §4: a prefix and a local part are NCNames, without colons. A
        // second colon would also fail the prefix's lookup; the name check refuses it first.
        for input in [
            "<a xmlns:p:q=\"urn:x\"/>",
            "<p:q:r xmlns:p=\"urn:x\"/>",
            "<a p:q:r=\"1\" xmlns:p=\"urn:x\"/>",
            "<a :x=\"1\"/>",
            "<a x:=\"1\"/>",
            "<a x:1=\"1\" xmlns:x=\"urn:x\"/>",
        ] {
            assert!(
                matches!(parse(input), Err(XmlError::Malformed { reason, .. })
                    if reason.starts_with("invalid name")),
                "{input:?}"
            );
        }
        let document = parse("<a\n x = '1'\ty=\"'\" \r\n/>").unwrap();
        assert_eq!(document.attribute(document.root(), "x"), Some("1"));
        assert_eq!(document.attribute(document.root(), "y"), Some("'"));
    }

    #[test]
    fn the_xml_declaration_follows_its_grammar() {
        // XML 1.0 §2.8: version first, then encoding and standalone, each at most once.
        assert_all_malformed(&[
            "<?xml?><a/>",
            "<?xml encoding=\"UTF-8\"?><a/>",
            "<?xml version=\"2.0\"?><a/>",
            "<?xml version=\"1.\"?><a/>",
            "<?xml version=\"1.0\" foo=\"x\"?><a/>",
            "<?xml version=\"1.0\" standalone=\"yes\" encoding=\"UTF-8\"?><a/>",
            "<?xml version=\"1.0\" version=\"1.0\"?><a/>",
            "<?xml version=\"1.0\" standalone=\"maybe\"?><a/>",
            "<?xml version=\"1.0\"encoding=\"UTF-8\"?><a/>",
            "<a/><?xml version=\"1.0\"?>",
        ]);
        for input in [
            "<?xml version=\"1.0\"?><a/>",
            "<?xml version='1.1' encoding='utf-8' standalone='no' ?><a/>",
            "\u{feff}<?xml version=\"1.0\" encoding=\"UTF-8\"?><a/>",
        ] {
            assert!(parse(input).is_ok(), "{input:?}");
        }
    }

    #[test]
    fn names_hold_only_xml_name_characters() {
        // XML 1.0 §2.3, as libxml2 reads it: `;`, `,`, `(` and the like are not name
        // characters, nor are U+00D7 and U+00F7; U+00B7 is, but not first.
        for input in [
            "<a b;c=\"1\"/>",
            "<a;/>",
            "<a,b/>",
            "<a(/>",
            "<a\u{d7}/>",
            "<a b\u{f7}=\"1\"/>",
            "<\u{b7}a/>",
            "<p:\u{b7}a xmlns:p=\"urn:p\"/>",
            "<r><?a;b x?></r>",
        ] {
            assert!(
                matches!(parse(input), Err(XmlError::Malformed { reason, .. })
                    if reason.starts_with("invalid name")),
                "{input:?}"
            );
        }
        for input in [
            "<\u{e9}t\u{e9}/>",
            "<a\u{b7}b/>",
            "<a_b-c.d e\u{3001}=\"1\"/>",
        ] {
            assert!(parse(input).is_ok(), "{input:?}");
        }
    }

    #[test]
    fn cdata_end_in_text_and_bad_name_starts_are_refused() {
        assert!(matches!(
            parse("<a>x]]>y</a>"),
            Err(XmlError::Malformed { .. })
        ));
        assert!(matches!(parse("<1a/>"), Err(XmlError::Malformed { .. })));
        assert!(matches!(
            parse("<a -b=\"1\"/>"),
            Err(XmlError::Malformed { .. })
        ));
        assert!(parse("<a><![CDATA[x]]></a>").is_ok());
    }
}
