//! Checks every request passes before it is routed, so that each holds for every operation
//! (and every operation added later) without the handlers repeating them.
//!
//! - The body is read up to `http.body_limit_bytes`, whatever `Content-Length` says: an
//!   oversized or chunked body is refused with 413 before anything parses it.
//! - No string input may contain NUL (U+0000): PostgreSQL refuses it in `text`, so a NUL that
//!   reached a query would fail the request with a 500, and the NUL is never meaningful in a
//!   name, a URL or a configuration. The path and the query are checked after
//!   percent-decoding, a JSON body after JSON decoding (every string and every object key).
//!   Header values cannot carry a NUL: the HTTP parser refuses the request first.
//!
//! The refusals are problem documents naming where the NUL was (`path`, `query`, `body`),
//! never the value.

use std::sync::Arc;

use poem::http::StatusCode;
use poem::{Endpoint, Request};
use serde_json::Value;

use super::error::{ApiError, ERROR_CODE_PAYLOAD_TOO_LARGE, Problem};

/// The message of a NUL refusal.
const NUL_REFUSED: &str = "must not contain NUL (U+0000) characters";

/// Applies the checks above, then hands the request (its body read and kept) to `ep`.
///
/// # Errors
/// 413 for a body over `body_limit`; 422 `validation_failed` for a NUL.
pub async fn guard<E: Endpoint>(
    ep: Arc<E>,
    mut req: Request,
    body_limit: usize,
) -> poem::Result<E::Output> {
    if has_encoded_nul(req.uri().path()) {
        return Err(nul_refused("path"));
    }
    if req.uri().query().is_some_and(has_encoded_nul) {
        return Err(nul_refused("query"));
    }
    let body = req.take_body();
    if !body.is_empty() {
        let bytes = body.into_bytes_limit(body_limit).await.map_err(|_| {
            ApiError::from_problem(Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                ERROR_CODE_PAYLOAD_TOO_LARGE,
                format!("the request body is larger than {body_limit} bytes"),
            ))
            .into_poem()
        })?;
        if req.content_type().is_some_and(is_json) && json_has_nul(&bytes) {
            return Err(nul_refused("body"));
        }
        req.set_body(bytes);
    }
    ep.call(req).await
}

fn nul_refused(location: &str) -> poem::Error {
    ApiError::invalid(location, NUL_REFUSED).into_poem()
}

/// Whether percent-decoding `raw` (a path or a query as received) yields a NUL byte. A URI
/// cannot hold a raw NUL, and decoding is a single pass in which only `%00` becomes one
/// (`%2500` decodes to the three characters `%00`), so looking for `%00` is exact.
fn has_encoded_nul(raw: &str) -> bool {
    raw.as_bytes().windows(3).any(|w| w == b"%00")
}

/// The media types the API's JSON bodies are read from (as poem-openapi's `Json` accepts
/// them): `application/json` and `application/*+json`, with any parameters.
fn is_json(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Whether a JSON body holds a NUL in any string or object key once decoded. A raw NUL byte
/// is not valid JSON (the operation refuses the body with 400), so a decoded NUL can only come
/// from the escape `\u0000`: bodies without that sequence, nearly all, are not parsed here.
/// One that has it is decoded and walked, because `"\\u0000"` (an escaped backslash, then
/// `u0000`) holds no NUL. A body that does not parse is left to the operation to refuse.
fn json_has_nul(body: &[u8]) -> bool {
    if !body.windows(6).any(|w| w == b"\\u0000") {
        return false;
    }
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        return false;
    };
    // Iterative, so that the depth of the document does not matter here.
    let mut pending = vec![&value];
    while let Some(value) = pending.pop() {
        match value {
            Value::String(s) if s.contains('\0') => return true,
            Value::Array(items) => pending.extend(items),
            Value::Object(map) => {
                if map.keys().any(|k| k.contains('\0')) {
                    return true;
                }
                pending.extend(map.values());
            }
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoded_nul_is_found_only_where_it_decodes_to_nul() {
        assert!(has_encoded_nul("/api/v1/integrations/%00"));
        assert!(has_encoded_nul("type=a%00b"));
        assert!(has_encoded_nul("%00"));
        assert!(!has_encoded_nul("type=a%2500b"));
        assert!(!has_encoded_nul("type=a%20b&cursor=00"));
        assert!(!has_encoded_nul("%0"));
        assert!(!has_encoded_nul(""));
    }

    #[test]
    fn json_nul_is_found_in_strings_and_keys_at_any_depth() {
        assert!(json_has_nul(br#"{"name": "a\u0000b"}"#));
        assert!(json_has_nul(br#"{"config": {"k\u0000": 1}}"#));
        assert!(json_has_nul(br#"{"a": [1, {"b": ["x", "\u0000"]}]}"#));
        assert!(json_has_nul(br#""\u0000""#));
        // An escaped backslash followed by `u0000` is not a NUL.
        assert!(!json_has_nul(br#"{"name": "a\\u0000b"}"#));
        assert!(!json_has_nul(br#"{"name": "plain"}"#));
        // Not JSON: left to the operation, which answers 400.
        assert!(!json_has_nul(b"{\"name\": \"a\\u0000"));
        assert!(!json_has_nul(b"{\"name\": \"a\x00b\"}"));
    }

    #[test]
    fn json_media_types() {
        assert!(is_json("application/json"));
        assert!(is_json("Application/JSON; charset=utf-8"));
        assert!(is_json("application/merge-patch+json"));
        assert!(!is_json("text/plain"));
        assert!(!is_json("text/json+xml"));
        assert!(!is_json("application/jsonl"));
    }
}
