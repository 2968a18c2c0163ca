//! XML through `Document::parse` and `canonicalize_document`, exclusive and inclusive, with
//! and without comments. Canonical XML is a fixed point: the output of canonicalising must
//! parse and canonicalise to the same bytes.
#![no_main]

use jitledger::saml::c14n::{Kind, Method, canonicalize_document};
use jitledger::saml::limits::{RESPONSE_XML, XmlLimits};
use jitledger::saml::xml::Document;
use libfuzzer_sys::fuzz_target;

/// Canonical output may legitimately be larger than its input (`<a/>` becomes `<a></a>`,
/// exclusive C14N repeats namespace declarations on each element that uses them), so it is
/// re-parsed under limits that only bound what C14N cannot grow.
const REPARSE: XmlLimits = XmlLimits {
    document_bytes_max: usize::MAX,
    namespace_declarations_per_element_max: usize::MAX,
    text_bytes_max: usize::MAX,
    ..RESPONSE_XML
};

fn methods() -> [Method; 5] {
    let exclusive = |inclusive_prefixes: &[&str], with_comments| Method {
        kind: Kind::Exclusive {
            inclusive_prefixes: inclusive_prefixes.iter().map(|p| p.to_string()).collect(),
        },
        with_comments,
    };
    [
        exclusive(&[], false),
        exclusive(&[], true),
        exclusive(&["#default", "saml", "ds"], false),
        Method {
            kind: Kind::Inclusive,
            with_comments: false,
        },
        Method {
            kind: Kind::Inclusive,
            with_comments: true,
        },
    ]
}

fuzz_target!(|data: &[u8]| {
    let Ok(document) = Document::parse(data, &RESPONSE_XML) else {
        return;
    };
    for method in methods() {
        let mut first = Vec::new();
        canonicalize_document(&document, &method, &mut first);
        let reparsed = match Document::parse(&first, &REPARSE) {
            Ok(reparsed) => reparsed,
            Err(error) => panic!(
                "{method:?}: canonical output does not parse: {error}\noutput: {}",
                String::from_utf8_lossy(&first)
            ),
        };
        let mut second = Vec::new();
        canonicalize_document(&reparsed, &method, &mut second);
        assert!(
            first == second,
            "{method:?}: not idempotent\nfirst:  {}\nsecond: {}",
            String::from_utf8_lossy(&first),
            String::from_utf8_lossy(&second)
        );
    }
});
