//! Checks every provider's configuration shares, and typed parsing of provider configs.
//!
//! Refusals name the field and say what is wrong; they never repeat the value, which may be
//! (or contain) a credential pasted into the wrong place.

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::url_check::{self, UrlError};

/// Largest accepted configuration, serialised as JSON.
pub const MAX_CONFIG_BYTES: usize = 64 * 1024;

/// What [`check_http_url`] accepts, as a JSON Schema `pattern` for a configuration's URL
/// fields (`#[schemars(regex(pattern = HTTP_URL_PATTERN))]`): `http` or `https`, a host (a
/// name, an IPv4 address or a bracketed IPv6 one) without userinfo, an optional port, then a
/// path or query without whitespace or fragment. The check also refuses query parameters
/// named like credentials, which no pattern states.
pub const HTTP_URL_PATTERN: &str = r"^https?://([A-Za-z0-9._~!$&'()*+,;=-]+|\[[0-9A-Fa-f:.]+\])(:([0-9]{1,4}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]))?([/?][^\s#]*)?$";

/// What [`check_basic_user`] accepts: a basic-authentication user name (1 to 255
/// characters, with the length stated by `length(min = 1, max = 255)`) without `:`.
pub const BASIC_USER_PATTERN: &str = "^[^:]*$";

/// Key names (compared case-insensitively, ignoring `_` and `-`) whose string values are
/// credentials. A configuration must reference credentials through an AuthRef URI instead.
const SECRET_KEY_SUFFIXES: [&str; 9] = [
    "token",
    "password",
    "passwd",
    "secret",
    "privatekey",
    "apikey",
    "credential",
    "credentials",
    "passphrase",
];

/// Why a configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A field is missing, of the wrong type, unknown or out of range.
    #[error("{field}: {message}")]
    Invalid {
        /// JSON path of the field, such as `config.baseUrl`.
        field: String,
        message: String,
    },
    /// A field holds what looks like a raw credential.
    #[error(
        "{field}: raw secrets are not accepted in config; store the secret in a vault and pass an authRef"
    )]
    RawSecret { field: String },
    /// The configuration is larger than [`MAX_CONFIG_BYTES`].
    #[error("config: larger than {MAX_CONFIG_BYTES} bytes")]
    TooLarge,
    /// A URL carries userinfo, a fragment or a credential-like query parameter.
    #[error(transparent)]
    SecretInUrl(#[from] UrlError),
}

impl ConfigError {
    /// The JSON path of the offending field.
    pub fn field(&self) -> &str {
        match self {
            ConfigError::Invalid { field, .. } | ConfigError::RawSecret { field } => field,
            ConfigError::TooLarge => "config",
            ConfigError::SecretInUrl(e) => &e.field,
        }
    }

    /// What is wrong, without the field name.
    pub fn message(&self) -> String {
        match self {
            ConfigError::Invalid { message, .. } => message.clone(),
            ConfigError::RawSecret { .. } => {
                "raw secrets are not accepted in config; store the secret in a vault and pass an authRef".into()
            }
            ConfigError::TooLarge => format!("larger than {MAX_CONFIG_BYTES} bytes"),
            ConfigError::SecretInUrl(e) => e.message(),
        }
    }

    pub(crate) fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Checks what every provider's configuration must satisfy: size, no raw secrets, and no
/// credentials in any URL it holds (see [`url_check`]).
///
/// # Errors
/// [`ConfigError::TooLarge`], [`ConfigError::RawSecret`] or [`ConfigError::SecretInUrl`].
pub fn check_common(config: &Map<String, Value>) -> Result<(), ConfigError> {
    let size = serde_json::to_vec(config)
        .map(|v| v.len())
        .unwrap_or(usize::MAX);
    if size > MAX_CONFIG_BYTES {
        return Err(ConfigError::TooLarge);
    }
    if let Some(field) = find_raw_secret(config, "config") {
        return Err(ConfigError::RawSecret { field });
    }
    url_check::check_json(config, "config")?;
    Ok(())
}

fn is_secret_key(key: &str) -> bool {
    let normalised: String = key
        .chars()
        .filter(|c| *c != '_' && *c != '-')
        .flat_map(char::to_lowercase)
        .collect();
    SECRET_KEY_SUFFIXES.iter().any(|s| normalised.ends_with(s))
}

fn is_raw_secret_value(value: &Value) -> bool {
    match value {
        Value::String(s) => !s.is_empty() && !s.starts_with(crate::authref::SCHEME),
        _ => false,
    }
}

/// The JSON path of the first field that holds a raw secret, if any.
pub fn find_raw_secret(config: &Map<String, Value>, path: &str) -> Option<String> {
    for (key, value) in config {
        let here = format!("{path}.{key}");
        if is_secret_key(key) && is_raw_secret_value(value) {
            return Some(here);
        }
        if let Some(found) = find_in_value(value, &here) {
            return Some(found);
        }
    }
    None
}

fn find_in_value(value: &Value, path: &str) -> Option<String> {
    match value {
        Value::Object(map) => find_raw_secret(map, path),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, item)| find_in_value(item, &format!("{path}[{i}]"))),
        _ => None,
    }
}

/// A copy of `value` with every secret-looking string replaced by `"[REDACTED]"`, for audit
/// records and logs.
pub fn redact(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let v = if is_secret_key(k) && is_raw_secret_value(v) {
                        Value::String("[REDACTED]".into())
                    } else {
                        redact(v)
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(redact).collect()),
        other => other.clone(),
    }
}

/// Parses a provider's typed configuration, turning serde's message into a [`ConfigError`].
///
/// # Errors
/// [`ConfigError::Invalid`] with serde's explanation, less any value it quotes (see
/// [`describe_serde_error`]).
pub fn parse<T: DeserializeOwned>(config: &Map<String, Value>) -> Result<T, ConfigError> {
    serde_json::from_value(Value::Object(config.clone()))
        .map_err(|e| ConfigError::invalid("config", describe_serde_error(&e)))
}

/// serde's explanation of a failed parse, without the offending value: serde quotes it
/// (``invalid type: string "glpat-…", expected u32``, ``unknown variant `…` ``), and the
/// value may be a credential pasted into the wrong field. Field names stay, since they say
/// where to look; the type expected stays, since it says what to write. A message of another
/// shape (from a type's own parser) is replaced by "invalid value", as it may quote anything.
pub fn describe_serde_error(error: &serde_json::Error) -> String {
    let message = error.to_string();
    // `from_slice` adds a position; `from_value` does not.
    let message = match message.rfind(" at line ") {
        Some(at) if message[at..].contains(" column ") => &message[..at],
        _ => message.as_str(),
    };
    let expected = |kind: &str| match message.rfind(", expected ") {
        Some(at) => format!("{kind}; expected {}", &message[at + ", expected ".len()..]),
        None => kind.to_owned(),
    };
    if ["unknown field `", "missing field `", "duplicate field `"]
        .iter()
        .any(|p| message.starts_with(p))
    {
        // These quote a key of the object, not a value.
        message.to_owned()
    } else if message.starts_with("invalid type: ") {
        expected("invalid type")
    } else if message.starts_with("invalid value: ") {
        expected("invalid value")
    } else if message.starts_with("unknown variant ") {
        expected("unknown variant")
    } else if message.starts_with("invalid length ") {
        expected("invalid length")
    } else {
        "invalid value".to_owned()
    }
}

/// Checks that `value` is an absolute `http` or `https` URL without credentials (see
/// [`url_check`]).
///
/// # Errors
/// [`ConfigError::Invalid`] or [`ConfigError::SecretInUrl`] naming `config.{field}`.
/// Checks a user name sent with HTTP basic authentication: 1 to 255 characters, no `:` (which
/// would end the user part of the credentials).
///
/// # Errors
/// [`ConfigError::Invalid`] naming `config.<field>`.
pub fn check_basic_user(field: &str, value: Option<&str>) -> Result<(), ConfigError> {
    match value {
        Some(user) if user.is_empty() || user.len() > 255 || user.contains(':') => {
            Err(ConfigError::invalid(
                format!("config.{field}"),
                "must be 1 to 255 characters, without ':'",
            ))
        }
        _ => Ok(()),
    }
}

pub fn check_http_url(field: &str, value: &str) -> Result<url::Url, ConfigError> {
    let field = format!("config.{field}");
    // url's parse errors are fixed phrases ("relative URL without a base"), never the input.
    let url = url::Url::parse(value)
        .map_err(|e| ConfigError::invalid(field.clone(), format!("not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(ConfigError::invalid(
            field,
            "must be an http or https URL with a host",
        ));
    }
    url_check::check_field(&field, &url)?;
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::url_check::{CredentialName, UrlProblem};
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn what_the_url_pattern_admits_check_http_url_accepts() {
        let pattern = regex::Regex::new(HTTP_URL_PATTERN).unwrap();
        for admitted in [
            "https://gitlab.example.com",
            "http://10.0.0.1:8080/api/v4",
            "https://[::1]:65535/",
            "https://h?page=2",
            "https://a~b_c.example/x/y%20z",
        ] {
            assert!(pattern.is_match(admitted), "{admitted}");
            assert!(check_http_url("u", admitted).is_ok(), "{admitted}");
        }
        for refused in [
            "ftp://example.com",
            "https://user:pass@example.com",
            "https://example.com/#frag",
            "https://example.com:65536",
            "https://exa mple.com",
            "https://",
            "example.com",
        ] {
            assert!(!pattern.is_match(refused), "{refused}");
            assert!(check_http_url("u", refused).is_err(), "{refused}");
        }
    }

    #[test]
    fn what_the_user_pattern_admits_check_basic_user_accepts() {
        let pattern = regex::Regex::new(BASIC_USER_PATTERN).unwrap();
        for (user, ok) in [("robot$ci", true), ("a:b", false), ("token", true)] {
            assert_eq!(pattern.is_match(user), ok, "{user}");
            assert_eq!(check_basic_user("u", Some(user)).is_ok(), ok, "{user}");
        }
    }

    #[test]
    fn raw_secrets_are_found_by_key_anywhere() {
        for (config, field) in [
            (json!({"token": "abc"}), "config.token"),
            (json!({"Password": "abc"}), "config.Password"),
            (json!({"private_key": "-----BEGIN"}), "config.private_key"),
            (json!({"clientSecret": "x"}), "config.clientSecret"),
            (json!({"webhook": {"secret": "x"}}), "config.webhook.secret"),
            (
                json!({"hooks": [{}, {"apiKey": "x"}]}),
                "config.hooks[1].apiKey",
            ),
        ] {
            assert_eq!(
                find_raw_secret(&obj(config), "config").as_deref(),
                Some(field)
            );
        }
    }

    #[test]
    fn references_and_non_strings_are_not_secrets() {
        for config in [
            json!({"token": "authref://vault/ci/gitlab#token"}),
            json!({"token": ""}),
            json!({"tokenTtlSeconds": 30}),
            json!({"secretRef": {"path": "x"}}),
            json!({"baseUrl": "https://x"}),
        ] {
            assert_eq!(
                find_raw_secret(&obj(config.clone()), "config"),
                None,
                "{config}"
            );
        }
    }

    #[test]
    fn redact_hides_secret_values_only() {
        let v = json!({"password": "hunter2", "baseUrl": "https://x", "n": {"token": "t"}});
        assert_eq!(
            redact(&v),
            json!({"password": "[REDACTED]", "baseUrl": "https://x", "n": {"token": "[REDACTED]"}})
        );
    }

    #[test]
    fn oversized_config_is_refused() {
        let big = "x".repeat(MAX_CONFIG_BYTES);
        assert_eq!(
            check_common(&obj(json!({"blob": big}))),
            Err(ConfigError::TooLarge)
        );
    }

    #[test]
    fn urls_must_be_http_with_host_and_no_userinfo() {
        assert!(check_http_url("baseUrl", "https://gitlab.example.com").is_ok());
        assert!(check_http_url("baseUrl", "ftp://x").is_err());
        assert!(check_http_url("baseUrl", "not a url").is_err());
        for (url, problem) in [
            ("https://user:pw@x", UrlProblem::Userinfo),
            ("https://user@x", UrlProblem::Userinfo),
            ("https://x/#f", UrlProblem::Fragment),
            (
                "https://x/?private_token=glpat-1",
                UrlProblem::CredentialParameter(CredentialName::Named("private_token")),
            ),
        ] {
            assert_eq!(
                check_http_url("baseUrl", url),
                Err(ConfigError::SecretInUrl(UrlError {
                    field: "config.baseUrl".into(),
                    problem
                })),
                "{url}"
            );
        }
        assert!(check_http_url("baseUrl", "https://x/api?per_page=100").is_ok());
    }

    #[test]
    fn urls_anywhere_in_config_must_not_carry_credentials() {
        for (config, field) in [
            (
                json!({"baseUrl": "https://gitlab.example.com/?private_token=SECRETVALUE"}),
                "config.baseUrl",
            ),
            (
                json!({"apiUrl": "https://SECRETVALUE@x.example.com"}),
                "config.apiUrl",
            ),
            (
                json!({"mirror": {"url": "https://x.example.com/#SECRETVALUE"}}),
                "config.mirror.url",
            ),
            (
                json!({"urls": ["https://a", "https://b/?X-Amz-Signature=SECRETVALUE"]}),
                "config.urls[1]",
            ),
        ] {
            let err = check_common(&obj(config.clone())).unwrap_err();
            assert!(matches!(err, ConfigError::SecretInUrl(_)), "{config}");
            assert_eq!(err.field(), field);
            assert!(!err.to_string().contains("SECRETVALUE"), "{err}");
            assert!(!err.message().contains("SECRETVALUE"), "{err}");
        }
        assert_eq!(
            check_common(&obj(
                json!({"baseUrl": "https://x.example.com/?per_page=100"})
            )),
            Ok(())
        );
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    #[allow(dead_code)]
    struct Typed {
        base_url: String,
        #[serde(default)]
        page_size: u32,
        #[serde(default)]
        mode: Option<Mode>,
        #[serde(default)]
        at: Option<chrono::DateTime<chrono::Utc>>,
        #[serde(default)]
        pair: Option<(u8, u8)>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(rename_all = "snake_case")]
    enum Mode {
        Fast,
        Slow,
    }

    #[test]
    fn parse_errors_never_repeat_the_value() {
        for (config, expected) in [
            (
                json!({"baseUrl": "https://x", "pageSize": "SECRETVALUE"}),
                "invalid type; expected u32",
            ),
            (
                json!({"baseUrl": "https://x", "pageSize": -7}),
                "invalid value; expected u32",
            ),
            (
                json!({"baseUrl": "https://x", "mode": "SECRETVALUE, expected x"}),
                "unknown variant; expected `fast` or `slow`",
            ),
            (
                json!({"baseUrl": "https://x", "at": "SECRETVALUE"}),
                "invalid value",
            ),
            (
                json!({"baseUrl": "https://x", "pair": [1, 2, 3]}),
                "invalid length; expected fewer elements in array",
            ),
            (
                json!({"baseUrl": ["SECRETVALUE"]}),
                "invalid type; expected a string",
            ),
            (json!({}), "missing field `baseUrl`"),
        ] {
            let err = parse::<Typed>(&obj(config.clone())).unwrap_err();
            assert_eq!(err.message(), expected, "{config}");
            assert_eq!(err.field(), "config");
            assert!(!err.to_string().contains("SECRETVALUE"), "{err}");
        }
        // An unknown key is named: it is where to look, not a value.
        let unknown = parse::<Typed>(&obj(json!({"baseUrl": "https://x", "extra": 1})))
            .unwrap_err()
            .message();
        assert!(unknown.starts_with("unknown field `extra`"), "{unknown}");
    }
}
