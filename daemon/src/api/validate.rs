//! Checks of request bodies, each failure naming the field (422).

use connectors::authref::AuthRef;
use connectors::config::check_common;
use connectors::secrets::{SecretError, TenantRef};
use poem::http::StatusCode;
use serde_json::{Map, Value};

use super::error::{ApiError, ERROR_CODE_BAD_REQUEST, Problem};
use super::precondition::{IfMatch, Precondition};
use crate::AppState;

/// Shortest per-integration check interval.
pub const MIN_INTERVAL_SECONDS: i32 = 10;
/// Longest per-integration check interval (a day).
pub const MAX_INTERVAL_SECONDS: i32 = 86_400;

/// Longest integration name.
pub const MAX_NAME_CHARS: usize = 100;

/// What [`name`] accepts, as the document's `pattern`: something other than white space,
/// and no control characters (C0, DEL, C1). The length bound is `maxLength`.
pub const NAME_PATTERN: &str = r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$";

pub fn name(name: &str) -> Result<String, ApiError> {
    let trimmed = name.trim();
    if trimmed.is_empty() {
        return Err(ApiError::invalid("name", "must not be empty"));
    }
    if trimmed.chars().count() > MAX_NAME_CHARS {
        return Err(ApiError::invalid(
            "name",
            format!("must be at most {MAX_NAME_CHARS} characters"),
        ));
    }
    if trimmed.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            "name",
            "must not contain control characters",
        ));
    }
    Ok(trimmed.to_owned())
}

/// An integration's `authRef` (or its former name `authRefUri`), checked as [`auth_ref`]
/// does, in its stored form.
pub fn integration_auth_ref(
    state: &AppState,
    tenant: &actors::TenantId,
    auth_ref_value: Option<String>,
    former: Option<String>,
) -> Result<Option<String>, ApiError> {
    let uri = super::types::renamed_field("authRef", "authRefUri", auth_ref_value, former)?;
    Ok(auth_ref(state, tenant, "authRef", uri)?.map(|r| r.to_string()))
}

/// Parses the AuthRef in `field` and checks that it lies in `tenant`'s secret namespace: a
/// reference a tenant could not resolve is refused when it is written, not only when it is
/// used. Neither message repeats the reference.
pub fn auth_ref(
    state: &AppState,
    tenant: &actors::TenantId,
    field: &str,
    uri: Option<String>,
) -> Result<Option<AuthRef>, ApiError> {
    let Some(uri) = uri else {
        return Ok(None);
    };
    let reference = uri.parse::<AuthRef>().map_err(|e| {
        ApiError::invalid(
            field,
            format!("{e}; pass a reference to the secret, never the secret itself"),
        )
    })?;
    let scoped = TenantRef::new(tenant.as_str(), reference);
    match state.env.secrets.check(&scoped) {
        Ok(()) => Ok(Some(scoped.reference().clone())),
        Err(SecretError::OutsideNamespace { detail, .. }) => Err(ApiError::invalid(field, detail)),
        Err(other) => Err(ApiError::invalid(field, other.to_string())),
    }
}

/// Checks a configuration for `provider_type`: an object, within size, without raw secrets,
/// and valid for the provider's connector (an external plugin is asked too).
pub async fn config(
    state: &AppState,
    provider_type: &str,
    config: Option<Value>,
) -> Result<Map<String, Value>, ApiError> {
    let config = match config {
        None => Map::new(),
        Some(Value::Object(map)) => map,
        Some(_) => return Err(ApiError::invalid("config", "must be a JSON object")),
    };
    let connector = state.factory(provider_type).ok_or_else(|| {
        let known = state
            .registry
            .read()
            .expect("registry lock")
            .provider_types()
            .join(", ");
        ApiError::invalid(
            "type",
            format!("unknown provider type; known types: {known}"),
        )
    })?;
    let invalid = |e: connectors::ConfigError| ApiError::invalid(e.field().to_owned(), e.message());
    check_common(&config).map_err(invalid)?;
    connector
        .validate_config_async(&config)
        .await
        .map_err(invalid)?;
    Ok(config)
}

/// What an `If-Match` header asks for (see [`super::precondition`]).
///
/// # Errors
/// 400 naming the header when it is neither `*` nor a list of entity tags: a garbled
/// precondition is refused, never ignored.
pub fn if_match(header: &IfMatch) -> Result<Precondition, ApiError> {
    header.precondition().map_err(|malformed| {
        ApiError::from_problem(
            Problem::new(
                StatusCode::BAD_REQUEST,
                ERROR_CODE_BAD_REQUEST,
                format!("If-Match: {malformed}"),
            )
            .with_field("If-Match", malformed.to_string()),
        )
    })
}

/// The `ETag` of a version.
pub fn etag(version: i64) -> String {
    format!("\"{version}\"")
}

#[cfg(test)]
mod tests {
    use poem::http::HeaderValue;

    use super::*;

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(name("  a  ").unwrap(), "a");
        assert!(name("   ").is_err());
        assert!(name(&"x".repeat(101)).is_err());
        assert!(name(&"é".repeat(100)).is_ok());
        assert!(name("a\u{0}b").is_err());
    }

    #[test]
    fn the_name_pattern_admits_what_name_accepts() {
        let pattern = regex::Regex::new(NAME_PATTERN).unwrap();
        for candidate in [
            "gitlab-main",
            " a ",
            "é",
            "   ",
            "",
            "a\u{0}b",
            "J\u{8e}",
            "a\tb",
            "x\u{7f}",
            "\u{a0}",
        ] {
            assert_eq!(
                pattern.is_match(candidate),
                name(candidate).is_ok(),
                "{candidate:?}"
            );
        }
    }

    #[test]
    fn if_match_forms() {
        let header = |v: &'static str| IfMatch::from_lines([HeaderValue::from_static(v)]);
        assert_eq!(if_match(&IfMatch::default()).unwrap(), Precondition::Any);
        assert_eq!(if_match(&header("*")).unwrap(), Precondition::Any);
        assert_eq!(
            if_match(&header("\"3\"")).unwrap(),
            Precondition::OneOf(vec![3])
        );
        // Strong comparison: a weak tag is well-formed but names no version.
        assert_eq!(
            if_match(&header("W/\"3\"")).unwrap(),
            Precondition::OneOf(vec![])
        );
        assert_eq!(
            if_match(&header("\"abc\"")).unwrap(),
            Precondition::OneOf(vec![])
        );
        let Err(ApiError::BadRequest(problem)) = if_match(&header("3; drop")) else {
            panic!("a malformed If-Match was accepted");
        };
        assert_eq!(problem.0.errors.unwrap()[0].field, "If-Match");
        assert_eq!(etag(7), "\"7\"");
    }
}
