//! xs:dateTime values as SAML uses them (SAML Core §1.3.3: UTC, `Z` suffix, optional
//! fractional seconds).

use std::borrow::Cow;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Parses an xs:dateTime. A missing zone is read as UTC, as the SAML toolkits do; more than
/// nine fractional digits are cut to nine (nanoseconds), which no bound can depend on.
pub fn parse(text: &str) -> Option<OffsetDateTime> {
    let text = text.trim();
    // `zone_in_text`: the zone is the end of `text`, so `date_time` and `zone` joined are
    // `text` itself and need no copy.
    let (date_time, zone, zone_in_text) = match text.find(['Z', 'z']) {
        Some(position) => (&text[..position], &text[position..], true),
        None => match text.rfind(['+', '-']).filter(|position| *position > 10) {
            Some(position) => (&text[..position], &text[position..], true),
            None => (text, "Z", false),
        },
    };
    let normalised = match date_time.split_once('.') {
        // Only digits may follow the point (XML Schema 3.2.7). Checked before the cut, which
        // must not fall inside a multi-byte character: this value can come from outside the
        // signature (the Response's IssueInstant when only the Assertion is signed).
        Some((_, fraction)) if !fraction.bytes().all(|b| b.is_ascii_digit()) => return None,
        Some((whole, fraction)) if fraction.len() > 9 => {
            Cow::Owned(format!("{whole}.{}{zone}", &fraction[..9]))
        }
        _ if zone_in_text => Cow::Borrowed(text),
        _ => Cow::Owned(format!("{date_time}{zone}")),
    };
    OffsetDateTime::parse(&normalised, &Rfc3339).ok()
}

/// Formats an instant as SAML writes them: UTC, seconds, `Z`.
pub fn format(instant: OffsetDateTime) -> String {
    let utc = instant.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        utc.year(),
        u8::from(utc.month()),
        utc.day(),
        utc.hour(),
        utc.minute(),
        utc.second()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_a_fraction_that_is_not_digits_without_panicking() {
        assert_eq!(parse("2026-01-01T00:00:00.12345678\u{e9}Z"), None);
        assert_eq!(parse("2026-01-01T00:00:00.1234567890\u{e9}Z"), None);
        assert_eq!(parse("2026-01-01T00:00:00.1\u{e9}Z"), None);
        assert_eq!(parse("2026-01-01T00:00:00.Z"), None);
        assert_eq!(parse("2026-01-01T00:00:00.-5Z"), None);
    }

    #[test]
    fn parses_saml_forms() {
        let base = parse("2014-07-17T01:01:48Z").unwrap();
        assert_eq!(base.unix_timestamp(), 1405558908);
        assert_eq!(
            parse("2014-07-17T01:01:48.123Z").unwrap().millisecond(),
            123
        );
        assert_eq!(
            parse("2014-07-17T01:01:48.1234567891234Z")
                .unwrap()
                .unix_timestamp(),
            1405558908
        );
        assert_eq!(parse("2014-07-17T01:01:48").unwrap(), base);
        assert_eq!(parse("2014-07-17T03:01:48+02:00").unwrap(), base);
        assert_eq!(parse(" 2014-07-17T01:01:48Z\n").unwrap(), base);
        assert!(parse("yesterday").is_none());
    }

    #[test]
    fn formats_utc_seconds() {
        assert_eq!(
            format(parse("2014-07-17T01:01:48.5Z").unwrap()),
            "2014-07-17T01:01:48Z"
        );
    }
}
