//! One field of an `application/x-www-form-urlencoded` body, as bytes.
//!
//! The ACS body is a single 8–16 KB base64 value. A general form parser decodes every field
//! into an owned `String` through a lossy UTF-8 pass; end to end that was about 7% of the
//! CPU of a login (BENCHMARKS.md). This reads the WHATWG urlencoded grammar (fields split on
//! `&`, empty ones skipped; name and value split on the first `=`; `+` is a space; `%XX` is
//! a byte; a `%` without two hex digits after it stands for itself) and decodes only the
//! field asked for. Its consumer (base64) accepts ASCII alone, so no UTF-8 pass is needed.

/// The decoded value of the field named `name`: `None` when absent, an error when given
/// twice (two `SAMLResponse` fields are a request that two parsers could read differently).
pub(crate) fn field(body: &[u8], name: &str) -> Result<Option<Vec<u8>>, &'static str> {
    let mut found = None;
    let mut rest = body;
    while !rest.is_empty() {
        let (part, after) = split_at_first(rest, b'&');
        rest = after;
        let (raw_name, raw_value) = split_at_first(part, b'=');
        if part.is_empty() || !is_named(raw_name, name) {
            continue;
        }
        if found.is_some() {
            return Err("a form field is given twice");
        }
        found = Some(decode(raw_value));
    }
    Ok(found)
}

/// What comes before the first `separator` and what comes after it (all, and nothing,
/// without one).
fn split_at_first(bytes: &[u8], separator: u8) -> (&[u8], &[u8]) {
    match memchr::memchr(separator, bytes) {
        Some(at) => (
            bytes.get(..at).unwrap_or_default(),
            bytes.get(at + 1..).unwrap_or_default(),
        ),
        None => (bytes, &[]),
    }
}

fn is_named(raw: &[u8], name: &str) -> bool {
    if memchr::memchr2(b'%', b'+', raw).is_none() {
        raw == name.as_bytes()
    } else {
        decode(raw) == name.as_bytes()
    }
}

/// `+` to a space and `%XX` to its byte; everything else as it is.
fn decode(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(at) = memchr::memchr2(b'%', b'+', rest) {
        out.extend_from_slice(rest.get(..at).unwrap_or_default());
        let escape = rest.get(at..).unwrap_or_default();
        rest = match escape {
            [b'+', after @ ..] => {
                out.push(b' ');
                after
            }
            [b'%', high, low, after @ ..] => match (hex(*high), hex(*low)) {
                (Some(high), Some(low)) => {
                    out.push(high << 4 | low);
                    after
                }
                _ => {
                    out.push(b'%');
                    escape.get(1..).unwrap_or_default()
                }
            },
            [percent, after @ ..] => {
                out.push(*percent);
                after
            }
            [] => break,
        };
    }
    out.extend_from_slice(rest);
    out
}

fn hex(digit: u8) -> Option<u8> {
    (digit as char)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn decodes_the_field_asked_for() {
        let body = b"RelayState=%2Fhome&SAMLResponse=PD94+bWw%2B%3D%3d&x";
        assert_eq!(
            field(body, "SAMLResponse"),
            Ok(Some(b"PD94 bWw+==".to_vec()))
        );
        assert_eq!(field(body, "RelayState"), Ok(Some(b"/home".to_vec())));
        assert_eq!(field(body, "x"), Ok(Some(Vec::new())));
        assert_eq!(field(body, "missing"), Ok(None));
        assert_eq!(field(b"", "SAMLResponse"), Ok(None));
    }

    #[test]
    fn a_percent_without_two_hex_digits_stands_for_itself() {
        assert_eq!(field(b"a=%&b=%4&c=%zz1", "a"), Ok(Some(b"%".to_vec())));
        assert_eq!(field(b"a=%&b=%4&c=%zz1", "b"), Ok(Some(b"%4".to_vec())));
        assert_eq!(field(b"a=%&b=%4&c=%zz1", "c"), Ok(Some(b"%zz1".to_vec())));
    }

    #[test]
    fn names_are_decoded_before_they_are_compared() {
        assert_eq!(
            field(b"SAML%52esponse=AA", "SAMLResponse"),
            Ok(Some(b"AA".to_vec()))
        );
        assert_eq!(field(b"a+b=1", "a b"), Ok(Some(b"1".to_vec())));
    }

    #[test]
    fn a_field_given_twice_is_refused() {
        assert!(field(b"SAMLResponse=AA&SAMLResponse=BB", "SAMLResponse").is_err());
        assert!(field(b"SAMLResponse=AA&SAML%52esponse=AA", "SAMLResponse").is_err());
        assert_eq!(
            field(b"SAMLResponse=AA&&RelayState=1&", "SAMLResponse"),
            Ok(Some(b"AA".to_vec()))
        );
    }

    proptest! {
        /// The same answer as the `form_urlencoded` crate (the WHATWG parser that
        /// serde_urlencoded and the `url` crate use), up to its lossy UTF-8 step.
        #[test]
        fn agrees_with_form_urlencoded(
            body in proptest::collection::vec(
                prop_oneof![
                    Just(b'&'), Just(b'='), Just(b'+'), Just(b'%'), Just(b'a'), Just(b'b'),
                    Just(b'4'), Just(b'1'), Just(b'F'), Just(b'z'), any::<u8>(),
                ],
                0..40,
            ),
            name in prop_oneof![Just("a"), Just("b"), Just("a b"), Just("A"), Just("")],
        ) {
            let theirs: Vec<String> = form_urlencoded::parse(&body)
                .filter(|(key, _)| key == name)
                .map(|(_, value)| value.into_owned())
                .collect();
            let ours = field(&body, name);
            match theirs.as_slice() {
                [] => prop_assert_eq!(ours, Ok(None)),
                [value] => {
                    let ours = ours
                        .ok()
                        .flatten()
                        .map(|v| String::from_utf8_lossy(&v).into_owned());
                    prop_assert_eq!(ours.as_ref(), Some(value));
                }
                _ => prop_assert!(ours.is_err()),
            }
        }
    }
}
