//! `If-Match` (RFC 9110 §13.1.1): optimistic concurrency for changes to versioned resources.
//!
//! Every `ETag` the API sends is a strong entity tag holding the resource's version, such as
//! `"3"`. A change carrying `If-Match` applies only when the header is `*` or one of its
//! entity tags matches the current version by strong comparison (§8.8.3.2): a weak tag
//! (`W/"3"`) is well-formed but never matches. A header that does not parse is refused with
//! 400 and one that matches nothing with 412; it is never ignored.
//!
//! poem-openapi's `Header<Option<String>>` reads only the first field line and silently drops
//! any value that is not visible ASCII, so a garbled `If-Match` would read as no `If-Match` at
//! all and the change would apply unconditionally. [`IfMatch`] reads every field line as bytes
//! instead, and is documented in the OpenAPI document like that header.

use std::future::Future;

use poem::http::{HeaderValue, StatusCode};
use poem::{Request, RequestBody};
use poem_openapi::registry::{MetaParamIn, MetaSchemaRef, Registry};
use poem_openapi::types::Type;
use poem_openapi::{ApiExtractor, ApiExtractorType, ExtractParamOptions};

use super::error::{ApiError, ERROR_CODE_PRECONDITION_FAILED, Problem};

/// The `If-Match` header of a request: every field line of it, as received. Parse it with
/// [`super::validate::if_match`].
#[derive(Debug, Clone, Default)]
pub struct IfMatch(Vec<HeaderValue>);

impl IfMatch {
    /// The header as these field lines (tests and callers outside a request).
    pub fn from_lines<I: IntoIterator<Item = HeaderValue>>(lines: I) -> Self {
        Self(lines.into_iter().collect())
    }

    /// What the header asks for.
    ///
    /// # Errors
    /// [`Malformed`] when it is neither `*` nor a list of entity tags.
    pub fn precondition(&self) -> Result<Precondition, Malformed> {
        if self.0.is_empty() {
            return Ok(Precondition::Any);
        }
        // Field lines of one list-valued field are one comma-separated list (§5.3).
        let value = self
            .0
            .iter()
            .map(HeaderValue::as_bytes)
            .collect::<Vec<_>>()
            .join(&b","[..]);
        Precondition::parse(&value)
    }
}

impl<'a> ApiExtractor<'a> for IfMatch {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::Parameter];
    const PARAM_IS_REQUIRED: bool = false;

    /// Documented as an optional string header, like `Header<Option<String>>`.
    type ParamType = Option<String>;
    type ParamRawType = Option<String>;

    fn register(registry: &mut Registry) {
        <Option<String> as Type>::register(registry);
    }

    fn param_in() -> Option<MetaParamIn> {
        Some(MetaParamIn::Header)
    }

    fn param_schema_ref() -> Option<MetaSchemaRef> {
        Some(<Option<String> as Type>::schema_ref())
    }

    async fn from_request(
        request: &'a Request,
        _body: &mut RequestBody,
        param_opts: ExtractParamOptions<Self::ParamType>,
    ) -> poem::Result<Self> {
        Ok(Self::from_lines(
            request.headers().get_all(param_opts.name).iter().cloned(),
        ))
    }
}

/// An `If-Match` that is neither `*` nor a list of entity tags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("must be * or a list of entity tags, such as \"3\" or \"3\", \"4\"")]
pub struct Malformed;

/// What an `If-Match` header asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Precondition {
    /// No `If-Match`, or `*`: the current version, whatever it is (a resource that does not
    /// exist is a 404 either way).
    Any,
    /// The current version must be one of these: the versions named by the header's strong
    /// entity tags, sorted, without duplicates. Other tags can match no version, so a header
    /// of only those leaves this empty, and it matches nothing.
    OneOf(Vec<i64>),
}

impl Precondition {
    /// Parses a field value by the grammar of §13.1.1: `"*" / #entity-tag`, where
    /// `entity-tag = [ "W/" ] DQUOTE *etagc DQUOTE` and `etagc` is `!` or `#`..`~` or
    /// obs-text; empty list elements are allowed (§5.6.1.2).
    ///
    /// # Errors
    /// [`Malformed`] when `value` does not follow it.
    pub fn parse(value: &[u8]) -> Result<Self, Malformed> {
        let is_ows = |b: &u8| matches!(b, b' ' | b'\t');
        let value = value.trim_ascii();
        if value == b"*" {
            return Ok(Self::Any);
        }
        let mut versions = Vec::new();
        let mut rest = value;
        loop {
            let start = rest
                .iter()
                .position(|b| !is_ows(b) && *b != b',')
                .unwrap_or(rest.len());
            rest = &rest[start..];
            if rest.is_empty() {
                break;
            }
            let (weak, tag) = match rest.strip_prefix(b"W/") {
                Some(tag) => (true, tag),
                None => (false, rest),
            };
            let tag = tag.strip_prefix(b"\"").ok_or(Malformed)?;
            let end = tag
                .iter()
                .position(|b| !is_etagc(*b))
                .filter(|&end| tag[end] == b'"')
                .ok_or(Malformed)?;
            let opaque = &tag[..end];
            rest = &tag[end + 1..];
            let after = rest.iter().position(|b| !is_ows(b)).unwrap_or(rest.len());
            rest = &rest[after..];
            if !rest.is_empty() && rest[0] != b',' {
                return Err(Malformed);
            }
            if !weak && let Some(version) = version_of(opaque) {
                versions.push(version);
            }
        }
        versions.sort_unstable();
        versions.dedup();
        Ok(Self::OneOf(versions))
    }

    /// The version to hand to the store, which refuses a change when the row is no longer at
    /// that version when it writes (412): `None` for [`Precondition::Any`], the one version
    /// named, or, when several are, the current version if it is one of them. `current`
    /// (reading the current version) is awaited only in that last case.
    ///
    /// # Errors
    /// 412 when no named version is current; the error of `current`.
    pub async fn expected_version(
        &self,
        current: impl Future<Output = Result<i64, ApiError>>,
    ) -> Result<Option<i64>, ApiError> {
        match self {
            Self::Any => Ok(None),
            Self::OneOf(versions) => match versions.as_slice() {
                [] => Err(not_matched()),
                [version] => Ok(Some(*version)),
                _ => {
                    let current = current.await?;
                    if versions.binary_search(&current).is_ok() {
                        Ok(Some(current))
                    } else {
                        Err(not_matched())
                    }
                }
            },
        }
    }
}

/// `etagc = %x21 / %x23-7E / obs-text`: anything visible but `"`, and bytes from 0x80.
fn is_etagc(b: u8) -> bool {
    b == 0x21 || (0x23..=0x7e).contains(&b) || b >= 0x80
}

/// The version an opaque tag names, when it is exactly the text of an `ETag` the API sends:
/// strong comparison is by octets, so `"03"` or `"+3"` do not name version 3.
fn version_of(opaque: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(opaque).ok()?;
    let version = text.parse::<i64>().ok()?;
    (version.to_string() == text).then_some(version)
}

fn not_matched() -> ApiError {
    ApiError::from_problem(Problem::new(
        StatusCode::PRECONDITION_FAILED,
        ERROR_CODE_PRECONDITION_FAILED,
        "If-Match names no current version; send the ETag of a read (weak W/ tags never match)"
            .to_owned(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(value: &[u8]) -> Result<Precondition, Malformed> {
        Precondition::parse(value)
    }

    fn one_of(versions: &[i64]) -> Result<Precondition, Malformed> {
        Ok(Precondition::OneOf(versions.to_vec()))
    }

    #[test]
    fn wildcard_and_lists_of_entity_tags() {
        assert_eq!(parse(b"*"), Ok(Precondition::Any));
        assert_eq!(parse(b" * "), Ok(Precondition::Any));
        assert_eq!(parse(b"\"3\""), one_of(&[3]));
        assert_eq!(parse(b"\"4\", \"3\",\"4\""), one_of(&[3, 4]));
        assert_eq!(parse(b"\t\"3\" ,, \"5\" ,"), one_of(&[3, 5]));
        // Well-formed tags that name no version: they match nothing.
        assert_eq!(parse(b"W/\"3\""), one_of(&[]));
        assert_eq!(parse(b"\"bogus\", W/\"3\", \"7\""), one_of(&[7]));
        assert_eq!(parse(b"\"03\", \"+3\", \"\""), one_of(&[]));
        assert_eq!(parse(b"\"\xc3\xa9\""), one_of(&[]));
        // An empty list (§5.6.1.2): well-formed, matches nothing.
        assert_eq!(parse(b""), one_of(&[]));
        assert_eq!(parse(b" , "), one_of(&[]));
    }

    #[test]
    fn anything_else_is_malformed() {
        for value in [
            &b"3"[..],
            b"W/3",
            b"w/\"3\"",
            b"\"3",
            b"\"3\"\"4\"",
            b"\"3\" \"4\"",
            b"\"3\"x",
            b"*, \"3\"",
            b"**",
            b"W/*",
            b"\"3\";q=1",
            b"\"a\"b\"",
            b"\"\x01\"",
            b"\"3\x7f\"",
            b"\"3 \"",
            b"\xc3\xa9",
            b"garbage",
        ] {
            assert_eq!(parse(value), Err(Malformed), "{}", value.escape_ascii());
        }
    }

    #[test]
    fn field_lines_are_one_list() {
        let header = |lines: &[&'static str]| {
            IfMatch::from_lines(lines.iter().map(|l| HeaderValue::from_static(l))).precondition()
        };
        assert_eq!(header(&[]), Ok(Precondition::Any));
        assert_eq!(header(&["\"1\"", "\"2\""]), one_of(&[1, 2]));
        assert_eq!(header(&["*", "\"2\""]), Err(Malformed));
        assert_eq!(header(&["*", "*"]), Err(Malformed));
        let obs_text = HeaderValue::from_bytes(b"\"\xe9\"").unwrap();
        assert_eq!(IfMatch::from_lines([obs_text]).precondition(), one_of(&[]));
        let bare = HeaderValue::from_bytes(b"\xe9").unwrap();
        assert_eq!(IfMatch::from_lines([bare]).precondition(), Err(Malformed));
    }

    async fn unread() -> Result<i64, ApiError> {
        panic!("the current version was read")
    }

    #[tokio::test]
    async fn the_expected_version_is_read_only_to_choose_among_several() {
        assert_eq!(
            Precondition::Any.expected_version(unread()).await.unwrap(),
            None
        );
        let single = Precondition::OneOf(vec![4]);
        assert_eq!(single.expected_version(unread()).await.unwrap(), Some(4));
        let none = Precondition::OneOf(vec![]).expected_version(unread()).await;
        assert!(matches!(none, Err(ApiError::PreconditionFailed(_))));
        let several = Precondition::OneOf(vec![3, 4]);
        assert_eq!(
            several.expected_version(async { Ok(4) }).await.unwrap(),
            Some(4)
        );
        let stale = several.expected_version(async { Ok(5) }).await;
        assert!(matches!(stale, Err(ApiError::PreconditionFailed(_))));
    }
}
