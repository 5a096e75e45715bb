//! Operations still served under an earlier name.
//!
//! The webhook subscriptions were first published as `/api/v1/alert-subscriptions`, with their
//! signing secret's reference in `secretRef`. Both were renamed so that one concept has one
//! name (`/api/v1/webhook-subscriptions`, `secretAuthRef`, like every other AuthRef). The old
//! path keeps working for clients written against it: a request is rewritten to the new path
//! with `secretRef` renamed in its JSON body, and the answer is given back in the old names
//! (the body's `secretRef`, a `Location` under the old path). Every successful answer says the
//! path is deprecated (RFC 9745 `Deprecation`) and where its successor is (`Link`,
//! `rel="successor-version"`). The OpenAPI document describes only the new names.

use std::sync::Arc;

use poem::http::header::{CONTENT_TYPE, LOCATION};
use poem::http::{HeaderValue, Uri};
use poem::{Endpoint, IntoResponse, Request, Response};
use serde_json::Value;

/// The path the webhook subscriptions were first published under.
pub const OLD_PREFIX: &str = "/api/v1/alert-subscriptions";
/// Their path now.
pub const NEW_PREFIX: &str = "/api/v1/webhook-subscriptions";
/// The signing secret's field under the old path, and now.
const OLD_FIELD: &str = "secretRef";
const NEW_FIELD: &str = "secretAuthRef";
/// When the old path was deprecated: 2026-12-06T00:00:00Z, as an RFC 9745 date.
const DEPRECATED_SINCE: &str = "@1796515200";

/// Serves the old path through the new operations; any other request passes untouched.
///
/// # Errors
/// The operation's own errors, unchanged.
pub async fn alias<E: Endpoint>(ep: Arc<E>, mut req: Request) -> poem::Result<Response> {
    let Some(rest) = old_path_rest(req.uri().path()) else {
        return ep.call(req).await.map(IntoResponse::into_response);
    };
    let query = req
        .uri()
        .query()
        .map(|q| format!("?{q}"))
        .unwrap_or_default();
    let uri: Uri = format!("{NEW_PREFIX}{rest}{query}")
        .parse()
        .map_err(|_| poem::Error::from_status(poem::http::StatusCode::NOT_FOUND))?;
    *req.uri_mut() = uri;
    if is_json(req.headers().get(CONTENT_TYPE)) {
        let body = req.take_body().into_bytes().await?;
        req.set_body(rename_field(&body, OLD_FIELD, NEW_FIELD, false));
    }
    let mut resp = ep.call(req).await?.into_response();
    if let Some(location) = resp.headers().get(LOCATION).and_then(|v| v.to_str().ok()) {
        let old = location.replacen(NEW_PREFIX, OLD_PREFIX, 1);
        if let Ok(value) = HeaderValue::from_str(&old) {
            resp.headers_mut().insert(LOCATION, value);
        }
    }
    if is_json(resp.headers().get(CONTENT_TYPE)) {
        let body = resp.take_body().into_bytes().await?;
        resp.set_body(rename_field(&body, NEW_FIELD, OLD_FIELD, true));
    }
    let headers = resp.headers_mut();
    headers.insert("deprecation", HeaderValue::from_static(DEPRECATED_SINCE));
    headers.append(
        "link",
        HeaderValue::from_static("</api/v1/webhook-subscriptions>; rel=\"successor-version\""),
    );
    Ok(resp)
}

/// What follows the old prefix, when `path` is under it (`""`, `/…`).
fn old_path_rest(path: &str) -> Option<&str> {
    let rest = path.strip_prefix(OLD_PREFIX)?;
    (rest.is_empty() || rest.starts_with('/')).then_some(rest)
}

fn is_json(content_type: Option<&HeaderValue>) -> bool {
    content_type
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or_default().trim())
        .is_some_and(|essence| {
            essence.eq_ignore_ascii_case("application/json")
                || (essence.starts_with("application/") && essence.ends_with("+json"))
        })
}

/// Renames `from` to `to` among the keys of a JSON object body (and, for answers, of the objects
/// in its `items`). A key is never renamed over one that exists. A body that is not JSON is
/// passed on as it is, for the operation to refuse.
fn rename_field(body: &[u8], from: &str, to: &str, items: bool) -> Vec<u8> {
    let Ok(mut value) = serde_json::from_slice::<Value>(body) else {
        return body.to_vec();
    };
    rename_in(&mut value, from, to);
    if items && let Some(list) = value.get_mut("items").and_then(Value::as_array_mut) {
        for item in list {
            rename_in(item, from, to);
        }
    }
    serde_json::to_vec(&value).unwrap_or_else(|_| body.to_vec())
}

fn rename_in(value: &mut Value, from: &str, to: &str) {
    if let Some(object) = value.as_object_mut()
        && !object.contains_key(to)
        && let Some(v) = object.remove(from)
    {
        object.insert(to.to_owned(), v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_old_prefix_and_what_is_below_it_are_aliased() {
        assert_eq!(old_path_rest(OLD_PREFIX), Some(""));
        assert_eq!(
            old_path_rest(&format!("{OLD_PREFIX}/x/test")),
            Some("/x/test")
        );
        assert_eq!(old_path_rest(&format!("{OLD_PREFIX}-other")), None);
        assert_eq!(old_path_rest(NEW_PREFIX), None);
    }

    #[test]
    fn fields_are_renamed_in_objects_and_pages_never_over_an_existing_key() {
        let renamed = |body: Value, items| {
            let out = rename_field(body.to_string().as_bytes(), NEW_FIELD, OLD_FIELD, items);
            serde_json::from_slice::<Value>(&out).unwrap()
        };
        let one = renamed(serde_json::json!({"secretAuthRef": "a", "name": "n"}), true);
        assert_eq!(one, serde_json::json!({"secretRef": "a", "name": "n"}));
        let page = renamed(
            serde_json::json!({"items": [{"secretAuthRef": "a"}], "nextCursor": null}),
            true,
        );
        assert_eq!(page["items"][0], serde_json::json!({"secretRef": "a"}));
        let both = renamed(
            serde_json::json!({"secretAuthRef": "a", "secretRef": "b"}),
            true,
        );
        assert_eq!(
            both,
            serde_json::json!({"secretAuthRef": "a", "secretRef": "b"})
        );
        assert_eq!(
            rename_field(b"not json", NEW_FIELD, OLD_FIELD, true),
            b"not json"
        );
    }
}
