//! The document split into markup and character data by XML 1.0's grammar: start and end
//! tags, text and references, CDATA sections, comments, processing instructions, the XML
//! declaration, and a DOCTYPE (recognised only so that it is refused by name).
//!
//! Why a reader of our own: the tree needs nothing from a general event reader but these
//! boundaries, and one made for it costs a fraction of quick-xml's, which also re-checked
//! every event's UTF-8 (the input is a `&str` here already). Every delimiter looked for is
//! ASCII, so every slice handed out lies at character boundaries. Nothing here interprets:
//! names, attributes, references and line ends are the tree builder's to check.

use memchr::memmem;

/// One piece of the document. Slices borrow the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Token<'t> {
    /// `<?xml …?>`: what follows `xml` (the pseudo-attributes).
    Declaration(&'t str),
    /// `<!DOCTYPE`, in any case: the rest is not read.
    Doctype,
    /// A start tag between `<` and `>` (or `/>` when `empty`), the element's name first.
    Start { tag: &'t str, empty: bool },
    /// An end tag between `</` and `>`, trailing white space removed: the name.
    End(&'t str),
    /// Character data up to the next `<` or `&`, as written.
    Text(&'t str),
    /// A reference's body, between `&` and `;`.
    Reference(&'t str),
    /// Between `<![CDATA[` and `]]>`.
    CData(&'t str),
    /// Between `<!--` and `-->`.
    Comment(&'t str),
    /// `<?target data?>`: `data` is everything after the target, white space included.
    ProcessingInstruction { target: &'t str, data: &'t str },
}

/// Where and why the input is not XML.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct TokenError {
    pub offset: usize,
    pub reason: &'static str,
}

/// The tokens of `input`, front to back.
pub(super) struct Tokens<'t> {
    input: &'t str,
    at: usize,
}

/// XML 1.0 §2.3 S.
fn is_space(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\n' | b'\r')
}

impl<'t> Tokens<'t> {
    pub(super) fn new(input: &'t str) -> Self {
        Tokens { input, at: 0 }
    }

    /// Where the next token starts: the end of the last one read.
    pub(super) fn position(&self) -> usize {
        self.at
    }

    /// The next token, `None` at the end of the input.
    pub(super) fn next_token(&mut self) -> Result<Option<Token<'t>>, TokenError> {
        let bytes = self.input.as_bytes();
        let start = self.at;
        let token = match (bytes.get(start), bytes.get(start + 1)) {
            (None, _) => return Ok(None),
            (Some(b'<'), Some(b'/')) => self.end_tag(start)?,
            (Some(b'<'), Some(b'!')) => self.bang(start)?,
            (Some(b'<'), Some(b'?')) => self.processing_instruction(start)?,
            (Some(b'<'), _) => self.start_tag(start)?,
            (Some(b'&'), _) => self.reference(start)?,
            _ => {
                let end = memchr::memchr2(b'<', b'&', bytes.get(start..).unwrap_or_default())
                    .map_or(bytes.len(), |length| start + length);
                self.at = end;
                Token::Text(self.slice(start, end)?)
            }
        };
        Ok(Some(token))
    }

    fn slice(&self, start: usize, end: usize) -> Result<&'t str, TokenError> {
        self.input.get(start..end).ok_or(TokenError {
            offset: start,
            reason: "markup not at character boundaries",
        })
    }

    /// The offset of `needle` at or after `from`.
    fn find(&self, from: usize, needle: &[u8]) -> Option<usize> {
        let rest = self.input.as_bytes().get(from..)?;
        memmem::find(rest, needle).map(|length| from + length)
    }

    fn fail<T>(&self, offset: usize, reason: &'static str) -> Result<T, TokenError> {
        Err(TokenError { offset, reason })
    }

    /// `</name S?>` (XML 1.0 §3.1 ETag).
    fn end_tag(&mut self, start: usize) -> Result<Token<'t>, TokenError> {
        let Some(close) = memchr::memchr(b'>', self.input.as_bytes().get(start..).unwrap_or(&[]))
        else {
            return self.fail(start, "end tag without '>'");
        };
        let close = start + close;
        let body = self.slice(start + 2, close)?;
        let name = body.trim_end_matches(|c: char| c.is_ascii() && is_space(c as u8));
        if name.is_empty() || name.bytes().any(is_space) {
            return self.fail(start, "invalid end tag");
        }
        self.at = close + 1;
        Ok(Token::End(name))
    }

    /// A start tag: its end is the first `>` outside a quoted attribute value (values may
    /// hold `>`, XML 1.0 §3.1). A `<` outside the quotes is refused here; inside them, by
    /// the attribute value's check.
    fn start_tag(&mut self, start: usize) -> Result<Token<'t>, TokenError> {
        let bytes = self.input.as_bytes();
        let mut at = start + 1;
        let close = loop {
            let rest = bytes.get(at..).unwrap_or_default();
            let Some(length) = memchr::memchr3(b'>', b'"', b'\'', rest) else {
                return self.fail(start, "start tag without '>'");
            };
            if memchr::memchr(b'<', rest.get(..length).unwrap_or_default()).is_some() {
                return self.fail(start, "'<' in a start tag");
            }
            let found = at + length;
            match bytes.get(found) {
                Some(b'>') => break found,
                Some(quote) => {
                    let after = found + 1;
                    let Some(length) =
                        memchr::memchr(*quote, bytes.get(after..).unwrap_or_default())
                    else {
                        return self.fail(start, "attribute value without its closing quote");
                    };
                    at = after + length + 1;
                }
                None => return self.fail(start, "start tag without '>'"),
            }
        };
        let empty = close > start + 1 && bytes.get(close - 1) == Some(&b'/');
        let tag = self.slice(start + 1, if empty { close - 1 } else { close })?;
        self.at = close + 1;
        Ok(Token::Start { tag, empty })
    }

    /// `&name;`: the body must end with `;` before any white space or markup.
    fn reference(&mut self, start: usize) -> Result<Token<'t>, TokenError> {
        let bytes = self.input.as_bytes();
        let mut end = start + 1;
        while let Some(byte) = bytes.get(end) {
            match byte {
                b';' => {
                    if end == start + 1 {
                        return self.fail(start, "empty reference");
                    }
                    self.at = end + 1;
                    return Ok(Token::Reference(self.slice(start + 1, end)?));
                }
                b'<' | b'&' | b'>' | b'"' | b'\'' => break,
                byte if is_space(*byte) => break,
                _ => end += 1,
            }
        }
        self.fail(start, "unterminated reference")
    }

    /// `<!--…-->`, `<![CDATA[…]]>` or `<!DOCTYPE`; any other `<!` is not XML outside a DTD.
    fn bang(&mut self, start: usize) -> Result<Token<'t>, TokenError> {
        let rest = self.input.as_bytes().get(start..).unwrap_or_default();
        if rest.starts_with(b"<!--") {
            // XML 1.0 §2.5: `--` may only close the comment, and not after a `-`.
            let body = start + 4;
            let Some(dashes) = self.find(body, b"--") else {
                return self.fail(start, "comment without '-->'");
            };
            if self.input.as_bytes().get(dashes + 2) != Some(&b'>') {
                return self.fail(dashes, "'--' in a comment");
            }
            self.at = dashes + 3;
            return Ok(Token::Comment(self.slice(body, dashes)?));
        }
        if rest.starts_with(b"<![CDATA[") {
            let body = start + 9;
            let Some(end) = self.find(body, b"]]>") else {
                return self.fail(start, "CDATA section without ']]>'");
            };
            self.at = end + 3;
            return Ok(Token::CData(self.slice(body, end)?));
        }
        if rest
            .get(2..9)
            .is_some_and(|word| word.eq_ignore_ascii_case(b"DOCTYPE"))
        {
            // Nothing after it is read: the document is refused.
            self.at = self.input.len();
            return Ok(Token::Doctype);
        }
        self.fail(start, "markup declaration outside a DTD")
    }

    /// `<?target data?>`; the target `xml` makes it the XML declaration.
    fn processing_instruction(&mut self, start: usize) -> Result<Token<'t>, TokenError> {
        let body = start + 2;
        let Some(end) = self.find(body, b"?>") else {
            return self.fail(start, "processing instruction without '?>'");
        };
        let content = self.slice(body, end)?;
        let target_len = content.bytes().position(is_space).unwrap_or(content.len());
        let (target, data) = content.split_at(target_len);
        if target.is_empty() {
            return self.fail(start, "processing instruction without a target");
        }
        self.at = end + 2;
        if target == "xml" {
            return Ok(Token::Declaration(data));
        }
        Ok(Token::ProcessingInstruction { target, data })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(input: &str) -> Result<Vec<Token<'_>>, TokenError> {
        let mut reader = Tokens::new(input);
        let mut all = Vec::new();
        while let Some(token) = reader.next_token()? {
            all.push(token);
        }
        Ok(all)
    }

    fn reason(input: &str) -> &'static str {
        tokens(input).expect_err(input).reason
    }

    #[test]
    fn a_document_splits_into_its_parts() {
        let input = "<?xml version=\"1.0\"?><!--c--><a x=\">\" y='/'>t&amp;u<![CDATA[<&]]>\
                     <b/><?pi  d ?></a >";
        assert_eq!(
            tokens(input),
            Ok(vec![
                Token::Declaration(" version=\"1.0\""),
                Token::Comment("c"),
                Token::Start {
                    tag: "a x=\">\" y='/'",
                    empty: false
                },
                Token::Text("t"),
                Token::Reference("amp"),
                Token::Text("u"),
                Token::CData("<&"),
                Token::Start {
                    tag: "b",
                    empty: true
                },
                Token::ProcessingInstruction {
                    target: "pi",
                    data: "  d "
                },
                Token::End("a"),
            ])
        );
    }

    #[test]
    fn positions_follow_the_tokens() {
        let mut reader = Tokens::new("<a>x</a>");
        let mut positions = vec![reader.position()];
        while reader.next_token().unwrap().is_some() {
            positions.push(reader.position());
        }
        assert_eq!(positions, vec![0, 3, 4, 8]);
    }

    #[test]
    fn comments_follow_xml_rules() {
        assert_eq!(tokens("<!---->"), Ok(vec![Token::Comment("")]));
        assert_eq!(
            tokens("<!-- a - b -->"),
            Ok(vec![Token::Comment(" a - b ")])
        );
        assert_eq!(reason("<!-- a -- b -->"), "'--' in a comment");
        assert_eq!(reason("<!-- a --->"), "'--' in a comment");
        assert_eq!(reason("<!--->"), "comment without '-->'");
        assert_eq!(reason("<!-- a"), "comment without '-->'");
    }

    #[test]
    fn doctype_is_recognised_in_any_case_and_other_declarations_refused() {
        assert_eq!(tokens("<!DOCTYPE a>"), Ok(vec![Token::Doctype]));
        assert_eq!(tokens("<!doctype a>"), Ok(vec![Token::Doctype]));
        assert_eq!(
            reason("<!ENTITY x \"y\">"),
            "markup declaration outside a DTD"
        );
        assert_eq!(reason("<!DOC"), "markup declaration outside a DTD");
        assert_eq!(reason("<![CDATA[x"), "CDATA section without ']]>'");
    }

    #[test]
    fn references_end_with_a_semicolon_before_space_or_markup() {
        assert_eq!(tokens("&#x41;"), Ok(vec![Token::Reference("#x41")]));
        for input in ["&amp", "&amp <a/>;", "&a&b;", "&;", "&\"x;"] {
            assert!(tokens(input).is_err(), "{input:?}");
        }
    }

    #[test]
    fn tags_end_where_xml_says() {
        assert_eq!(
            tokens("<a b=\"1/\">"),
            Ok(vec![Token::Start {
                tag: "a b=\"1/\"",
                empty: false
            }])
        );
        assert_eq!(tokens("</a\r\n>"), Ok(vec![Token::End("a")]));
        for (input, expected) in [
            ("<a", "start tag without '>'"),
            ("<a b=\"1>", "attribute value without its closing quote"),
            ("<a <b>", "'<' in a start tag"),
            ("</a", "end tag without '>'"),
            ("</a b>", "invalid end tag"),
            ("</ a>", "invalid end tag"),
            ("</>", "invalid end tag"),
            ("<?pi", "processing instruction without '?>'"),
            ("<? x?>", "processing instruction without a target"),
        ] {
            assert_eq!(reason(input), expected, "{input:?}");
        }
        // `<?xml-stylesheet` is a processing instruction, not the declaration.
        assert_eq!(
            tokens("<?xml-stylesheet x?>"),
            Ok(vec![Token::ProcessingInstruction {
                target: "xml-stylesheet",
                data: " x"
            }])
        );
    }
}
