//! A small read-only XML tree for signed SAML documents: namespaces resolved, byte spans
//! kept, and everything that makes XML dangerous refused at the door.
//!
//! Not a general XML library: no DTDs, no entities beyond the five predefined ones and
//! character references, UTF-8 only, one root. What it parses is exactly what
//! canonicalisation hashes and what the validator reads, so the two can never disagree.

use std::ops::Range;
use std::sync::Arc;

use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};

use super::limits::XmlLimits;

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

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub kind: NodeKind,
    pub parent: Option<NodeId>,
}

/// A parsed, immutable document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    nodes: Vec<Node>,
    root: NodeId,
    /// Comments and processing instructions before and after the root, in order, with the
    /// root itself among them.
    top_level: Vec<NodeId>,
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
        Builder::new(limits).run(input)
    }

    pub fn root(&self) -> NodeId {
        self.root
    }

    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id.index()]
    }

    /// Top-level nodes (the root and any comments or PIs around it), in document order.
    pub fn top_level(&self) -> &[NodeId] {
        &self.top_level
    }

    /// The element behind `id`, or `None` for other node kinds.
    pub fn element(&self, id: NodeId) -> Option<&Element> {
        match &self.node(id).kind {
            NodeKind::Element(element) => Some(element),
            _ => None,
        }
    }

    pub fn parent(&self, id: NodeId) -> Option<NodeId> {
        self.node(id).parent
    }

    /// Child elements of `id`, in order.
    pub fn child_elements(&self, id: NodeId) -> impl Iterator<Item = NodeId> + '_ {
        let children = self
            .element(id)
            .map(|e| e.children.as_slice())
            .unwrap_or(&[]);
        children
            .iter()
            .copied()
            .filter(|child| self.element(*child).is_some())
    }

    /// Child elements of `id` with the given namespace and local name.
    pub fn children_named<'a>(
        &'a self,
        id: NodeId,
        namespace: &'a str,
        local_name: &'a str,
    ) -> impl Iterator<Item = NodeId> + 'a {
        self.child_elements(id)
            .filter(move |child| self.is_named(*child, namespace, local_name))
    }

    pub fn is_named(&self, id: NodeId, namespace: &str, local_name: &str) -> bool {
        self.element(id).is_some_and(|e| {
            e.local_name == local_name && e.namespace.as_deref() == Some(namespace)
        })
    }

    /// The value of the unprefixed attribute `name` on element `id`.
    pub fn attribute(&self, id: NodeId, name: &str) -> Option<&str> {
        self.element(id)?
            .attributes
            .iter()
            .find(|a| a.namespace.is_none() && a.local_name == name)
            .map(|a| a.value.as_str())
    }

    /// The value of the attribute `{namespace}local_name` on element `id`.
    pub fn attribute_ns(&self, id: NodeId, namespace: &str, local_name: &str) -> Option<&str> {
        self.element(id)?
            .attributes
            .iter()
            .find(|a| a.namespace.as_deref() == Some(namespace) && a.local_name == local_name)
            .map(|a| a.value.as_str())
    }

    /// The text content of `id`: every text and CDATA child joined. Comments and processing
    /// instructions contribute nothing, and never cut a value short (the flaw behind
    /// CVE-2017-11428 and its siblings).
    pub fn text(&self, id: NodeId) -> String {
        let mut text = String::new();
        if let Some(element) = self.element(id) {
            for child in &element.children {
                if let NodeKind::Text(value) = &self.node(*child).kind {
                    text.push_str(value);
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
            .filter(|id| self.element(*id).is_some())
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
            if let Some(element) = self.element(*node) {
                for declaration in &element.namespace_declarations {
                    bindings.retain(|(prefix, _)| *prefix != declaration.prefix);
                    if !declaration.uri.is_empty() {
                        bindings.push((declaration.prefix.clone(), declaration.uri.clone()));
                    }
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

struct OpenElement {
    id: NodeId,
    /// Length of the namespace binding stack before this element's declarations.
    bindings_mark: usize,
}

struct Builder<'l> {
    limits: &'l XmlLimits,
    nodes: Vec<Node>,
    top_level: Vec<NodeId>,
    root: Option<NodeId>,
    open: Vec<OpenElement>,
    /// (prefix, uri) in declaration order; an empty uri undeclares the default namespace.
    /// URIs are shared: every element and attribute in a namespace points at one string.
    bindings: Vec<(String, Arc<str>)>,
    pending_text: Option<String>,
    pending_text_start: usize,
    element_count: usize,
    ids: std::collections::HashSet<String>,
    xml_namespace: Arc<str>,
}

impl<'l> Builder<'l> {
    fn new(limits: &'l XmlLimits) -> Self {
        Builder {
            limits,
            nodes: Vec::new(),
            top_level: Vec::new(),
            root: None,
            open: Vec::new(),
            bindings: Vec::new(),
            pending_text: None,
            pending_text_start: 0,
            element_count: 0,
            ids: std::collections::HashSet::new(),
            xml_namespace: Arc::from(XML_NAMESPACE),
        }
    }

    fn run(mut self, input: &[u8]) -> Result<Document, XmlError> {
        // The reader never sees the byte order mark, but offsets (spans, errors) count
        // from the first byte the caller holds, so that a span indexes its input.
        let bom_bytes = if input.starts_with(UTF8_BOM) {
            UTF8_BOM.len()
        } else {
            0
        };
        let input = &input[bom_bytes..];
        let input = std::str::from_utf8(input)
            .map_err(|e| malformed(bom_bytes + e.valid_up_to(), "not UTF-8"))?;
        // XML 1.0 §2.2: every literal character is a Char (no C0 controls but tab, CR and
        // LF; no surrogates, U+FFFE or U+FFFF). References are checked where resolved.
        if let Some(position) = first_non_char(input.as_bytes()) {
            return Err(malformed(
                bom_bytes + position,
                "character not allowed in XML",
            ));
        }
        let mut reader = Reader::from_str(input);
        let config = reader.config_mut();
        config.check_end_names = true;
        config.check_comments = true;
        config.expand_empty_elements = false;
        config.trim_text(false);
        let mut seen_declaration = false;
        loop {
            let offset = bom_bytes + reader.buffer_position() as usize;
            let event = reader.read_event().map_err(|error| {
                malformed(
                    bom_bytes + reader.error_position() as usize,
                    error.to_string(),
                )
            })?;
            match event {
                Event::Decl(declaration) => {
                    if seen_declaration || offset != bom_bytes {
                        return Err(malformed(offset, "XML declaration not at the start"));
                    }
                    seen_declaration = true;
                    if let Some(Ok(encoding)) = declaration.encoding()
                        && !encoding.eq_ignore_ascii_case("utf-8")
                    {
                        return Err(malformed(offset, "only UTF-8 documents are accepted"));
                    }
                }
                Event::DocType(_) => return Err(XmlError::DtdForbidden),
                Event::Start(start) => {
                    self.flush_text()?;
                    let id = self.open_element(&start, offset)?;
                    let bindings_mark = self.bindings_mark_of(id);
                    self.open.push(OpenElement { id, bindings_mark });
                    if self.open.len() > self.limits.depth_max {
                        return Err(XmlError::LimitExceeded {
                            limit: "depth_max",
                            max: self.limits.depth_max,
                        });
                    }
                }
                Event::Empty(start) => {
                    self.flush_text()?;
                    let id = self.open_element(&start, offset)?;
                    let mark = self.bindings_mark_of(id);
                    if self.open.len() + 1 > self.limits.depth_max {
                        return Err(XmlError::LimitExceeded {
                            limit: "depth_max",
                            max: self.limits.depth_max,
                        });
                    }
                    self.set_span_end(id, bom_bytes + reader.buffer_position() as usize);
                    self.bindings.truncate(mark);
                }
                Event::End(end) => {
                    self.flush_text()?;
                    let open = self
                        .open
                        .pop()
                        .ok_or_else(|| malformed(offset, "stray end tag"))?;
                    if !self.is_named_as(open.id, end.name().0) {
                        return Err(malformed(offset, "end tag does not match start tag"));
                    }
                    self.set_span_end(open.id, bom_bytes + reader.buffer_position() as usize);
                    self.bindings.truncate(open.bindings_mark);
                }
                Event::Text(text) => {
                    let raw: &str = &text;
                    if raw.contains("]]>") {
                        return Err(malformed(offset, "']]>' in text"));
                    }
                    if self.open.is_empty() {
                        if raw.trim_matches(is_xml_whitespace).is_empty() {
                            continue;
                        }
                        return Err(malformed(offset, "text outside the root element"));
                    }
                    self.push_text(offset, &normalize_line_ends(raw))?;
                }
                Event::CData(data) => {
                    if self.open.is_empty() {
                        return Err(malformed(offset, "CDATA outside the root element"));
                    }
                    let raw: &str = &data;
                    self.push_text(offset, &normalize_line_ends(raw))?;
                }
                Event::GeneralRef(reference) => {
                    if self.open.is_empty() {
                        return Err(malformed(offset, "reference outside the root element"));
                    }
                    let name: &str = &reference;
                    let character = resolve_reference(name, offset)?;
                    self.push_text(offset, character.encode_utf8(&mut [0; 4]))?;
                }
                Event::Comment(comment) => {
                    self.flush_text()?;
                    let text = normalize_line_ends(&comment).into_owned();
                    self.check_text_length(&text)?;
                    self.push_node(NodeKind::Comment(text))?;
                }
                Event::PI(pi) => {
                    self.flush_text()?;
                    let target = pi.target().to_string();
                    if target.eq_ignore_ascii_case("xml") {
                        return Err(malformed(offset, "misplaced XML declaration"));
                    }
                    // Only XML white space separates target and data (XML 1.0 §2.6);
                    // `str::trim_start` would also eat U+00A0, U+3000 and the like, which
                    // are data and hashed by every other canonicaliser.
                    let data =
                        normalize_line_ends(pi.content().trim_start_matches(is_xml_whitespace))
                            .into_owned();
                    self.check_text_length(&data)?;
                    self.push_node(NodeKind::ProcessingInstruction { target, data })?;
                }
                Event::Eof => break,
            }
        }
        if !self.open.is_empty() {
            return Err(malformed(
                bom_bytes + input.len(),
                "unclosed element at end of input",
            ));
        }
        let root = self.root.ok_or_else(|| malformed(0, "no root element"))?;
        Ok(Document {
            nodes: self.nodes,
            root,
            top_level: self.top_level,
        })
    }

    fn bindings_mark_of(&self, id: NodeId) -> usize {
        let declared = match &self.nodes[id.index()].kind {
            NodeKind::Element(element) => element.namespace_declarations.len(),
            _ => 0,
        };
        self.bindings.len() - declared
    }

    /// Whether element `id` was opened with exactly this qualified name (XML 1.0 §3: the end
    /// tag repeats the start tag's name literally).
    fn is_named_as(&self, id: NodeId, qualified_name: &str) -> bool {
        match &self.nodes[id.index()].kind {
            NodeKind::Element(element) if element.prefix.is_empty() => {
                qualified_name == element.local_name
            }
            NodeKind::Element(element) => qualified_name
                .strip_prefix(element.prefix.as_str())
                .and_then(|rest| rest.strip_prefix(':'))
                .is_some_and(|local| local == element.local_name),
            _ => false,
        }
    }

    fn set_span_end(&mut self, id: NodeId, end: usize) {
        if let NodeKind::Element(element) = &mut self.nodes[id.index()].kind {
            element.span.end = end;
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

    fn push_text(&mut self, offset: usize, text: &str) -> Result<(), XmlError> {
        let pending = self.pending_text.get_or_insert_with(String::new);
        if pending.is_empty() {
            self.pending_text_start = offset;
        }
        pending.push_str(text);
        let length = pending.len();
        if length > self.limits.text_bytes_max {
            return Err(XmlError::LimitExceeded {
                limit: "text_bytes_max",
                max: self.limits.text_bytes_max,
            });
        }
        Ok(())
    }

    fn flush_text(&mut self) -> Result<(), XmlError> {
        if let Some(text) = self.pending_text.take()
            && !text.is_empty()
        {
            self.push_node(NodeKind::Text(text))?;
        }
        Ok(())
    }

    fn push_node(&mut self, kind: NodeKind) -> Result<NodeId, XmlError> {
        let id = NodeId(self.nodes.len() as u32);
        let parent = self.open.last().map(|open| open.id);
        self.nodes.push(Node { kind, parent });
        match parent {
            Some(parent) => {
                if let NodeKind::Element(element) = &mut self.nodes[parent.index()].kind {
                    element.children.push(id);
                }
            }
            None => self.top_level.push(id),
        }
        Ok(id)
    }

    fn open_element(&mut self, start: &BytesStart<'_>, offset: usize) -> Result<NodeId, XmlError> {
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
        let qualified_name = start.name().0;
        self.check_name(qualified_name, offset)?;

        // Raw attributes first: declarations must be in scope before any name is resolved.
        let mut declarations = Vec::new();
        let mut raw_attributes = Vec::new();
        for attribute in start.attributes().with_checks(true) {
            let attribute = attribute.map_err(|e| malformed(offset, e.to_string()))?;
            let name = attribute.key.0;
            self.check_name(name, offset)?;
            let value = attribute_value(&attribute.value, offset)?;
            self.check_text_length(&value)?;
            if name == "xmlns" {
                declarations.push(NamespaceDeclaration {
                    prefix: String::new(),
                    uri: value,
                });
            } else if let Some(prefix) = name.strip_prefix("xmlns:") {
                check_declaration(prefix, &value, offset)?;
                declarations.push(NamespaceDeclaration {
                    prefix: prefix.to_string(),
                    uri: value,
                });
            } else {
                raw_attributes.push((name, value));
            }
        }
        if declarations.len() > self.limits.namespace_declarations_per_element_max {
            return Err(XmlError::LimitExceeded {
                limit: "namespace_declarations_per_element_max",
                max: self.limits.namespace_declarations_per_element_max,
            });
        }
        if raw_attributes.len() > self.limits.attributes_per_element_max {
            return Err(XmlError::LimitExceeded {
                limit: "attributes_per_element_max",
                max: self.limits.attributes_per_element_max,
            });
        }
        for declaration in &declarations {
            if declaration.uri == XML_NAMESPACE && declaration.prefix != "xml"
                || declaration.uri == XMLNS_NAMESPACE
            {
                return Err(malformed(
                    offset,
                    "reserved namespace bound to another prefix",
                ));
            }
            self.bindings.push((
                declaration.prefix.clone(),
                Arc::from(declaration.uri.as_str()),
            ));
        }

        let (prefix, local_name) = split_name(qualified_name, offset)?;
        let namespace = self.resolve(prefix, true, offset)?;
        let mut attributes: Vec<Attribute> = Vec::with_capacity(raw_attributes.len());
        for (name, value) in raw_attributes {
            let (prefix, local) = split_name(name, offset)?;
            let namespace = self.resolve(prefix, false, offset)?;
            let duplicate = attributes
                .iter()
                .any(|other| other.local_name == local && other.namespace == namespace);
            if duplicate {
                return Err(malformed(offset, format!("duplicate attribute {name}")));
            }
            attributes.push(Attribute {
                prefix: prefix.to_string(),
                local_name: local.to_string(),
                namespace,
                value,
            });
        }
        for attribute in attributes.iter().filter(|a| is_id_attribute(a)) {
            if !self.ids.insert(attribute.value.clone()) {
                return Err(XmlError::DuplicateId {
                    value: attribute.value.clone(),
                });
            }
        }

        let element = Element {
            prefix: prefix.to_string(),
            local_name: local_name.to_string(),
            namespace,
            attributes,
            namespace_declarations: declarations,
            children: Vec::new(),
            span: offset..offset,
        };
        let id = self.push_node(NodeKind::Element(element))?;
        if self.open.is_empty() {
            self.root = Some(id);
        }
        Ok(id)
    }

    fn check_name(&self, name: &str, offset: usize) -> Result<(), XmlError> {
        if name.len() > self.limits.name_bytes_max {
            return Err(XmlError::LimitExceeded {
                limit: "name_bytes_max",
                max: self.limits.name_bytes_max,
            });
        }
        let bad_start = |part: &str| {
            part.chars()
                .next()
                .is_none_or(|c| c.is_ascii_digit() || c == '-' || c == '.')
        };
        if name.split(':').any(bad_start)
            || name.contains(|c: char| is_xml_whitespace(c) || "<>&\"'=/".contains(c))
        {
            return Err(malformed(offset, format!("invalid name {name:?}")));
        }
        Ok(())
    }

    /// Resolves `prefix`. Unprefixed attributes are in no namespace; unprefixed elements take
    /// the default namespace.
    fn resolve(
        &self,
        prefix: &str,
        is_element: bool,
        offset: usize,
    ) -> Result<Option<Arc<str>>, XmlError> {
        if prefix.is_empty() && !is_element {
            return Ok(None);
        }
        if prefix == "xml" {
            return Ok(Some(Arc::clone(&self.xml_namespace)));
        }
        match self
            .bindings
            .iter()
            .rev()
            .find(|(bound, _)| bound == prefix)
        {
            Some((_, uri)) if uri.is_empty() => Ok(None),
            Some((_, uri)) => Ok(Some(Arc::clone(uri))),
            None if prefix.is_empty() => Ok(None),
            None => Err(malformed(
                offset,
                format!("undeclared namespace prefix {prefix:?}"),
            )),
        }
    }
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

fn split_name(name: &str, offset: usize) -> Result<(&str, &str), XmlError> {
    match name.split_once(':') {
        None => Ok(("", name)),
        Some((prefix, local))
            if !prefix.is_empty() && !local.is_empty() && !local.contains(':') =>
        {
            Ok((prefix, local))
        }
        Some(_) => Err(malformed(
            offset,
            format!("invalid qualified name {name:?}"),
        )),
    }
}

pub(crate) fn is_xml_whitespace(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r')
}

/// XML 1.0 §2.11: CR LF and lone CR become LF before anything else sees the text.
fn normalize_line_ends(raw: &str) -> std::borrow::Cow<'_, str> {
    if !raw.contains('\r') {
        return std::borrow::Cow::Borrowed(raw);
    }
    std::borrow::Cow::Owned(raw.replace("\r\n", "\n").replace('\r', "\n"))
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
/// valid UTF-8. Byte-wise, because a char-by-char decode costs more than the parse.
fn first_non_char(bytes: &[u8]) -> Option<usize> {
    bytes
        .iter()
        .enumerate()
        .find_map(|(index, byte)| match byte {
            0x00..=0x08 | 0x0B | 0x0C | 0x0E..=0x1F => Some(index),
            0xEF if bytes.get(index + 1) == Some(&0xBF)
                && matches!(bytes.get(index + 2), Some(0xBE | 0xBF)) =>
            {
                Some(index)
            }
            _ => None,
        })
}

/// XML 1.0 §2.2 Char.
fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// Unescapes and normalises an attribute value (XML 1.0 §3.3.3): literal white space
/// characters become spaces, references are resolved afterwards and kept as they are.
fn attribute_value(raw: &str, offset: usize) -> Result<String, XmlError> {
    let mut value = String::with_capacity(raw.len());
    let mut rest = raw;
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
    Ok(value)
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

    #[test]
    fn characters_outside_xml_char_are_refused() {
        for input in [
            "<a>\u{1}</a>",
            "<a b=\"\u{8}\"/>",
            "<a>\u{FFFE}</a>",
            "<a><!--\u{0}--></a>",
        ] {
            assert!(
                matches!(parse(input), Err(XmlError::Malformed { .. })),
                "{input:?}"
            );
        }
        assert!(parse("<a>\t\r\n\u{10FFFF}</a>").is_ok());
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
