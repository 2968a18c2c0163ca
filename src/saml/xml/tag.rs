//! The attributes of a start tag, read from the tag's text as `token` hands it over
//! (between `<` and `>` or `/>`, starting with the element's name).
//!
//! A general reader's attribute iterator (quick-xml's) cost several hundred instructions
//! per attribute, more than the rest of the tree build for it, and accepted attributes that
//! touch (`a="1"b="2"`). This reader follows XML 1.0 §3.1 and nothing else:
//! `(S Name S? '=' S? AttValue)* S?`, where AttValue is quoted with `"` or `'`. Names and
//! values are returned as written; the caller checks names and unescapes values.

/// One attribute as written in a start tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct RawAttribute<'t> {
    pub name: &'t str,
    /// Between the quotes, references and white space not yet processed.
    pub value: &'t str,
    /// Where the name starts in the tag's text.
    pub position: usize,
}

/// The attributes of `tag`, in order; the first error ends the iteration.
pub(super) struct Attributes<'t> {
    tag: &'t str,
    /// Where reading resumes: after the element's name or the last value's closing quote.
    at: usize,
}

impl<'t> Attributes<'t> {
    /// `tag` is the start tag's text; its first `name_len` bytes are the element's name.
    pub(super) fn after_name(tag: &'t str, name_len: usize) -> Self {
        Attributes { tag, at: name_len }
    }

    fn fail(&mut self, reason: &'static str) -> Option<Result<RawAttribute<'t>, &'static str>> {
        self.at = self.tag.len();
        Some(Err(reason))
    }
}

/// XML 1.0 §2.3 S.
fn is_space(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\n' | b'\r')
}

/// The first position at or after `at` that is not white space.
fn skip_space(bytes: &[u8], mut at: usize) -> usize {
    while bytes.get(at).copied().is_some_and(is_space) {
        at += 1;
    }
    at
}

impl<'t> Iterator for Attributes<'t> {
    type Item = Result<RawAttribute<'t>, &'static str>;

    fn next(&mut self) -> Option<Self::Item> {
        let bytes = self.tag.as_bytes();
        let start = skip_space(bytes, self.at);
        if start >= bytes.len() {
            self.at = bytes.len();
            return None;
        }
        if start == self.at {
            // Right after the name (which ends at white space, so only when the tag has
            // nothing else) or right after a closing quote.
            return self.fail("attributes not separated by white space");
        }
        let mut at = start;
        while bytes
            .get(at)
            .is_some_and(|byte| *byte != b'=' && !is_space(*byte))
        {
            at += 1;
        }
        let name_end = at;
        at = skip_space(bytes, at);
        if bytes.get(at) != Some(&b'=') {
            return self.fail("attribute without '=' and a value");
        }
        at = skip_space(bytes, at + 1);
        let quote = match bytes.get(at) {
            Some(quote @ (b'"' | b'\'')) => *quote,
            _ => return self.fail("attribute value not in quotes"),
        };
        let value_start = at + 1;
        let Some(length) = bytes
            .get(value_start..)
            .and_then(|rest| memchr::memchr(quote, rest))
        else {
            return self.fail("attribute value without its closing quote");
        };
        let value_end = value_start + length;
        self.at = value_end + 1;
        // Every position above is at an ASCII byte, so at a character boundary.
        match (
            self.tag.get(start..name_end),
            self.tag.get(value_start..value_end),
        ) {
            (Some(name), Some(value)) => Some(Ok(RawAttribute {
                name,
                value,
                position: start,
            })),
            _ => self.fail("attribute not at character boundaries"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(tag: &str) -> Result<Vec<(&str, &str)>, &'static str> {
        let name_len = tag.find(is_space_char).unwrap_or(tag.len());
        Attributes::after_name(tag, name_len)
            .map(|attribute| attribute.map(|a| (a.name, a.value)))
            .collect()
    }

    fn is_space_char(c: char) -> bool {
        c.is_ascii() && is_space(c as u8)
    }

    #[test]
    fn attributes_are_read_as_written() {
        assert_eq!(read("a"), Ok(vec![]));
        assert_eq!(read("a  \n"), Ok(vec![]));
        assert_eq!(
            read("a x=\"1\" y='2'\tz\r\n=\n\"t&amp;u\" "),
            Ok(vec![("x", "1"), ("y", "2"), ("z", "t&amp;u")])
        );
        assert_eq!(read("a x='\"' y=\"'\""), Ok(vec![("x", "\""), ("y", "'")]));
        assert_eq!(read("a x=\"\""), Ok(vec![("x", "")]));
        // Names are the caller's to check: anything up to '=' or white space is one.
        assert_eq!(read("a 1\"=\"v\""), Ok(vec![("1\"", "v")]));
        assert_eq!(read("a =\"v\""), Ok(vec![("", "v")]));
        assert_eq!(read("é ñ=\"ü\""), Ok(vec![("ñ", "ü")]));
    }

    #[test]
    fn malformed_attributes_are_refused() {
        for tag in [
            "a x=\"1\"y=\"2\"",
            "a x",
            "a x y=\"1\"",
            "a x=",
            "a x=1",
            "a x=\"1",
            "a x='1\"",
            "a x=\"1\" /",
        ] {
            assert!(read(tag).is_err(), "{tag:?}");
        }
        // "a x=\"1\" /" reads `/` as a name without a value; a lone `/` after the last
        // attribute of an empty element never reaches here (`token` strips `/>`).
    }

    #[test]
    fn positions_index_the_tag() {
        let tag = "elem  x=\"1\" yy='2'";
        let positions: Vec<_> = Attributes::after_name(tag, 4)
            .map(|a| a.unwrap().position)
            .collect();
        assert_eq!(positions, vec![6, 12]);
    }
}
