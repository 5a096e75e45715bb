//! Subjects: `<prefix>.<tenant>.<type>`, the tenant in exactly one token.

use std::borrow::Cow;
use std::fmt::Write as _;

/// One subject token that stands for `s` alone: `[A-Za-z0-9_-]` stay as they are and every
/// other byte becomes `%XX` (so `.` is `%2E` and `%` is `%25`). Distinct strings give distinct
/// tokens, and a token never holds a separator, a wildcard or white space. The empty string,
/// which no tenant id is, becomes `%` (which no other string gives).
pub fn encode_token(s: &str) -> Cow<'_, str> {
    if s.is_empty() {
        return Cow::Borrowed("%");
    }
    if is_plain_token(s) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    Cow::Owned(out)
}

/// `<prefix>.<tenant>.<type>`: the tenant as one token ([`encode_token`]); the type keeps its
/// dots, so consumers filter on it with the usual wildcards, each of its tokens encoded the same
/// way.
pub fn subject(prefix: &str, tenant: &str, event_type: &str) -> String {
    let mut out = String::with_capacity(prefix.len() + tenant.len() + event_type.len() + 8);
    out.push_str(prefix);
    out.push('.');
    out.push_str(&encode_token(tenant));
    for token in event_type.split('.') {
        out.push('.');
        out.push_str(&encode_token(token));
    }
    out
}

/// The wildcard that matches every event of one tenant: `<prefix>.<tenant>.>`.
pub fn tenant_wildcard(prefix: &str, tenant: &str) -> String {
    format!("{prefix}.{}.>", encode_token(tenant))
}

/// A token of `[A-Za-z0-9_-]` only, which needs no encoding.
pub(super) fn is_plain_token(token: &str) -> bool {
    !token.is_empty()
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// NATS subject matching: `*` matches one token, a final `>` one or more.
    fn matches(pattern: &str, subject: &str) -> bool {
        let mut subject = subject.split('.');
        for p in pattern.split('.') {
            match (p, subject.next()) {
                (">", Some(_)) => return true,
                (_, None) => return false,
                ("*", Some(_)) => {}
                (p, Some(s)) if p == s => {}
                _ => return false,
            }
        }
        subject.next().is_none()
    }

    fn decode_token(token: &str) -> Option<String> {
        if token == "%" {
            return Some(String::new());
        }
        let mut bytes = Vec::new();
        let mut rest = token.as_bytes();
        while let Some((&b, tail)) = rest.split_first() {
            if b == b'%' {
                let hex = std::str::from_utf8(tail.get(..2)?).ok()?;
                bytes.push(u8::from_str_radix(hex, 16).ok()?);
                rest = &tail[2..];
            } else {
                bytes.push(b);
                rest = tail;
            }
        }
        String::from_utf8(bytes).ok()
    }

    fn is_valid_token(token: &str) -> bool {
        !token.is_empty()
            && !token
                .chars()
                .any(|c| c.is_whitespace() || matches!(c, '.' | '*' | '>'))
    }

    const CHANGED: &str = "dev.stellaops.integration.health.changed";

    #[test]
    fn subjects_put_the_tenant_in_one_token() {
        assert_eq!(
            subject("stellaops.events", "acme", CHANGED),
            "stellaops.events.acme.dev.stellaops.integration.health.changed"
        );
        assert_eq!(
            subject("stellaops.events", "acme.eu", CHANGED),
            "stellaops.events.acme%2Eeu.dev.stellaops.integration.health.changed"
        );
        assert_eq!(encode_token("a_b-C9"), "a_b-C9");
        assert_eq!(encode_token("a%2Eb"), "a%252Eb");
        assert_eq!(encode_token("*>"), "%2A%3E");
        assert_eq!(encode_token(""), "%");
        let acme = tenant_wildcard("stellaops.events", "acme");
        assert_eq!(acme, "stellaops.events.acme.>");
        assert!(matches(
            &acme,
            &subject("stellaops.events", "acme", CHANGED)
        ));
        assert!(!matches(
            &acme,
            &subject("stellaops.events", "acme.eu", CHANGED)
        ));
        assert!(matches(
            "stellaops.events.*.dev.stellaops.integration.health.>",
            &subject("stellaops.events", "acme.eu", CHANGED)
        ));
    }

    #[test]
    fn the_matcher_follows_nats_wildcards() {
        assert!(matches("a.>", "a.b.c"));
        assert!(!matches("a.>", "a"));
        assert!(matches("a.*.c", "a.b.c"));
        assert!(!matches("a.*", "a.b.c"));
        assert!(!matches("a.b", "a.b.c"));
    }

    proptest! {
        #[test]
        fn encoding_is_injective_and_reversible(a in "\\PC{0,12}", b in "\\PC{0,12}") {
            let (ea, eb) = (encode_token(&a), encode_token(&b));
            prop_assert!(is_valid_token(&ea));
            prop_assert_eq!(decode_token(&ea), Some(a.clone()));
            prop_assert_eq!(a == b, ea == eb);
        }

        #[test]
        fn a_tenant_wildcard_matches_only_that_tenant(
            a in "[A-Za-z0-9._-]{1,12}",
            b in "[A-Za-z0-9._-]{1,12}",
            kind in 0usize..crate::events::EventKind::ALL.len(),
        ) {
            let prefix = "stellaops.events";
            let event_type = crate::events::EventKind::ALL[kind].type_name();
            let wildcard = tenant_wildcard(prefix, &a);
            prop_assert_eq!(matches(&wildcard, &subject(prefix, &b, event_type)), a == b);
            prop_assert!(subject(prefix, &b, event_type).split('.').all(is_valid_token));
        }
    }
}
