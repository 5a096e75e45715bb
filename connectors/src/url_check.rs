//! Credentials never travel in a URL.
//!
//! A URL is stored in the catalog, shown in API answers and audit records, written to logs,
//! and sent to proxies and providers in the clear of their own logs; a credential inside one
//! leaks through all of them. So every URL the daemon is given (a provider's `baseUrl` and
//! every other URL in an integration's config, an alert subscription's target, a provider
//! webhook's target) is refused when it carries:
//! - userinfo (`https://user:pass@host/` or `https://user@host/`);
//! - a fragment (`#…`), which some tools use to smuggle tokens past servers;
//! - a query parameter whose name looks like a credential ([`CREDENTIAL_PARAMS`], or a name
//!   ending in one of [`CREDENTIAL_SUFFIXES`]), compared case-insensitively and ignoring `_`
//!   and `-`.
//!
//! Credentials go through an AuthRef (`authref://…`) instead. This is the one rule; the
//! config checks ([`crate::config`]) and the webhook target checks use it. Errors name the
//! field and the problem, never the URL, a parameter's value or the userinfo.

use serde_json::{Map, Value};
use url::Url;

/// Query parameter names that carry credentials, compared folded (lower case, without `_` and
/// `-`), so `api_key` also stands for `apikey`, `API-Key` and `ApiKey`. Covers provider tokens
/// (`private_token` is GitLab's), OAuth (`access_token`, `client_secret`, `code`), pre-signed
/// object-store URLs (`X-Amz-Signature`, `X-Amz-Credential`, `X-Goog-Signature`) and session
/// identifiers.
pub const CREDENTIAL_PARAMS: [&str; 21] = [
    "token",
    "private_token",
    "access_token",
    "auth",
    "key",
    "api_key",
    "secret",
    "client_secret",
    "password",
    "passwd",
    "pwd",
    "sig",
    "signature",
    "x-amz-signature",
    "x-amz-credential",
    "x-goog-signature",
    "code",
    "session",
    "sessionid",
    "jwt",
    "bearer",
];

/// Endings of query parameter names that carry credentials (`refresh_token`,
/// `webhook_secret`, `subscription-key`, `db_password`, `url_signature`…).
pub const CREDENTIAL_SUFFIXES: [&str; 5] = ["token", "secret", "key", "password", "signature"];

/// Which rule a query parameter's name broke; shown instead of the name itself, so a refusal
/// never repeats text from the URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialName {
    /// The name is one of [`CREDENTIAL_PARAMS`] (given here as listed).
    Named(&'static str),
    /// The name ends in one of [`CREDENTIAL_SUFFIXES`].
    EndsWith(&'static str),
}

impl std::fmt::Display for CredentialName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CredentialName::Named(name) => write!(f, "the query parameter `{name}`"),
            CredentialName::EndsWith(end) => {
                write!(f, "a query parameter whose name ends in `{end}`")
            }
        }
    }
}

/// What is wrong with a URL. Messages describe the problem and never include the URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UrlProblem {
    #[error("must not carry a user name or password (`user:pass@` or `user@`)")]
    Userinfo,
    #[error("must not have a fragment (`#…`)")]
    Fragment,
    #[error("{0} looks like a credential")]
    CredentialParameter(CredentialName),
}

/// A URL in a request that carries (or may carry) a credential.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {}", self.message())]
pub struct UrlError {
    /// JSON path of the field, such as `config.baseUrl`.
    pub field: String,
    pub problem: UrlProblem,
}

impl UrlError {
    /// What is wrong and what to do instead, without the field name.
    pub fn message(&self) -> String {
        format!(
            "{}; credentials never go in URLs: reference them with an authref:// URI",
            self.problem
        )
    }
}

/// `name` lower-cased, without `_` and `-`.
fn fold(name: &str) -> String {
    name.chars()
        .filter(|c| !matches!(c, '_' | '-'))
        .flat_map(char::to_lowercase)
        .collect()
}

/// Which credential rule a query parameter's name matches, if any.
pub fn credential_name(name: &str) -> Option<CredentialName> {
    let folded = fold(name);
    if let Some(listed) = CREDENTIAL_PARAMS.iter().find(|p| fold(p) == folded) {
        return Some(CredentialName::Named(listed));
    }
    CREDENTIAL_SUFFIXES
        .iter()
        .find(|s| folded.ends_with(*s))
        .map(|s| CredentialName::EndsWith(s))
}

/// Checks a parsed URL.
///
/// # Errors
/// The first [`UrlProblem`]: userinfo, then a fragment, then a credential-like parameter.
pub fn check(url: &Url) -> Result<(), UrlProblem> {
    if !url.username().is_empty() || url.password().is_some() {
        return Err(UrlProblem::Userinfo);
    }
    if url.fragment().is_some() {
        return Err(UrlProblem::Fragment);
    }
    for (name, _) in url.query_pairs() {
        if let Some(rule) = credential_name(&name) {
            return Err(UrlProblem::CredentialParameter(rule));
        }
    }
    Ok(())
}

/// Checks a parsed URL held by `field`.
///
/// # Errors
/// [`UrlError`] naming `field`.
pub fn check_field(field: &str, url: &Url) -> Result<(), UrlError> {
    check(url).map_err(|problem| UrlError {
        field: field.to_owned(),
        problem,
    })
}

/// The URL a string holds, if it is one: an absolute, hierarchical URL (`scheme://host/…` or
/// `scheme:/path`), other than an AuthRef. Free text that merely starts with a word and a
/// colon (`note: see #12`, `nginx:1.25`) is not one.
pub fn as_url(value: &str) -> Option<Url> {
    if value.starts_with(crate::authref::SCHEME) {
        return None;
    }
    let url = Url::parse(value).ok()?;
    (!url.cannot_be_a_base()).then_some(url)
}

/// Checks every string in a JSON object (recursively, through objects and arrays) that holds a
/// URL, as [`as_url`] finds them; `path` names the object, such as `config`.
///
/// # Errors
/// [`UrlError`] for the first URL that carries a credential, naming its JSON path.
pub fn check_json(object: &Map<String, Value>, path: &str) -> Result<(), UrlError> {
    for (key, value) in object {
        check_value(value, &format!("{path}.{key}"))?;
    }
    Ok(())
}

fn check_value(value: &Value, path: &str) -> Result<(), UrlError> {
    match value {
        Value::String(s) => match as_url(s) {
            Some(url) => check_field(path, &url),
            None => Ok(()),
        },
        Value::Object(map) => check_json(map, path),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .try_for_each(|(i, item)| check_value(item, &format!("{path}[{i}]"))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn problem(raw: &str) -> Option<UrlProblem> {
        check(&Url::parse(raw).unwrap()).err()
    }

    #[test]
    fn userinfo_and_fragments_are_refused() {
        for raw in [
            "https://user:SECRETVALUE@gitlab.example.com/",
            "https://SECRETVALUE@gitlab.example.com/",
            "https://:SECRETVALUE@gitlab.example.com/",
            "ssh://git@gitlab.example.com/group/project.git",
        ] {
            assert_eq!(problem(raw), Some(UrlProblem::Userinfo), "{raw}");
        }
        for raw in [
            "https://gitlab.example.com/#frag-SECRETVALUE",
            "https://gitlab.example.com/#",
            "https://gitlab.example.com/x?per_page=1#access_token=x",
        ] {
            assert_eq!(problem(raw), Some(UrlProblem::Fragment), "{raw}");
        }
    }

    #[test]
    fn every_listed_credential_parameter_is_refused_in_any_spelling() {
        for listed in CREDENTIAL_PARAMS {
            let upper = listed.to_uppercase();
            let camel = listed.replace(['_', '-'], "");
            let dashed = listed.replace('_', "-");
            for name in [listed.to_owned(), upper, camel, dashed] {
                let raw = format!("https://h.example.com/p?a=1&{name}=SECRETVALUE");
                assert_eq!(
                    problem(&raw),
                    Some(UrlProblem::CredentialParameter(CredentialName::Named(
                        listed
                    ))),
                    "{raw}"
                );
            }
        }
        for (name, listed) in [
            ("private_token", "private_token"),
            ("X-Amz-Signature", "x-amz-signature"),
            ("X-Amz-Credential", "x-amz-credential"),
            ("X-Goog-Signature", "x-goog-signature"),
            ("API-Key", "api_key"),
            ("SessionId", "sessionid"),
        ] {
            assert_eq!(
                credential_name(name),
                Some(CredentialName::Named(listed)),
                "{name}"
            );
        }
    }

    #[test]
    fn names_ending_like_credentials_are_refused() {
        for (name, end) in [
            ("refresh_token", "token"),
            ("GITLAB-TOKEN", "token"),
            ("webhook_secret", "secret"),
            ("Subscription-Key", "key"),
            ("db_password", "password"),
            ("url_signature", "signature"),
        ] {
            assert_eq!(
                credential_name(name),
                Some(CredentialName::EndsWith(end)),
                "{name}"
            );
            let raw = format!("https://h.example.com/?{name}=v");
            assert!(problem(&raw).is_some(), "{raw}");
        }
    }

    #[test]
    fn harmless_urls_pass() {
        for raw in [
            "https://gitlab.example.com",
            "https://gitlab.example.com/api/v4/projects?per_page=100&page=2",
            "https://h.example.com/?team=ops&tokens_used=3&keys_total=1",
            "http://[::1]:8080/x?order_by=id",
            "https://h.example.com/?token_type=bearer_hint&signed=1",
        ] {
            assert_eq!(problem(raw), None, "{raw}");
        }
    }

    #[test]
    fn messages_never_repeat_the_url() {
        for raw in [
            "https://user:SECRETVALUE@h.example.com/",
            "https://SECRETVALUE@h.example.com/",
            "https://h.example.com/#SECRETVALUE",
            "https://h.example.com/?private_token=SECRETVALUE",
            "https://h.example.com/?SECRETVALUE_token=x",
            "https://h.example.com/?X-Amz-Signature=SECRETVALUE",
        ] {
            let err = check_field("config.baseUrl", &Url::parse(raw).unwrap()).unwrap_err();
            let text = err.to_string();
            assert!(text.starts_with("config.baseUrl: "), "{text}");
            assert!(!text.contains("SECRETVALUE"), "{text}");
            assert!(!text.contains("h.example.com"), "{text}");
        }
    }

    #[test]
    fn only_hierarchical_urls_other_than_authrefs_are_urls() {
        assert!(as_url("https://x.example.com/#f").is_some());
        assert!(as_url("s3://bucket/key?X-Amz-Signature=x").is_some());
        for text in [
            "authref://vault/ci/gitlab#token",
            "note: see #12",
            "nginx:1.25",
            "mailto:ops@example.com",
            "plain words",
            "/relative/path?token=x",
            "",
        ] {
            assert!(as_url(text).is_none(), "{text}");
        }
    }

    #[test]
    fn json_is_walked_recursively_and_the_path_named() {
        let config = json!({
            "baseUrl": "https://ok.example.com",
            "mirrors": [
                {"url": "https://ok.example.com/a"},
                {"url": "https://m.example.com/?access_token=SECRETVALUE"},
            ],
        });
        let err = check_json(config.as_object().unwrap(), "config").unwrap_err();
        assert_eq!(err.field, "config.mirrors[1].url");
        assert_eq!(
            err.problem,
            UrlProblem::CredentialParameter(CredentialName::Named("access_token"))
        );
        let nested = json!({"a": {"b": {"apiUrl": "https://u:p@x.example.com"}}});
        let err = check_json(nested.as_object().unwrap(), "config").unwrap_err();
        assert_eq!(
            (err.field.as_str(), err.problem),
            ("config.a.b.apiUrl", UrlProblem::Userinfo)
        );
        let fine = json!({"baseUrl": "https://x.example.com/?per_page=100",
            "token": "authref://vault/x#token", "n": 3, "note": "see #12"});
        assert_eq!(check_json(fine.as_object().unwrap(), "config"), Ok(()));
    }
}
