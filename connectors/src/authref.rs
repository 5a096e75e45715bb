//! AuthRef URIs: `authref://<backend>/<path>[#key]`.
//!
//! The catalog stores only these references; the secret behind one is resolved from its
//! backend at the moment a connector needs it and is never persisted.

use std::fmt;
use std::str::FromStr;

/// The URI scheme, with its separator.
pub const SCHEME: &str = "authref://";

/// Longest accepted reference.
pub const MAX_LEN: usize = 2048;

/// Where a secret lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Backend {
    /// HashiCorp Vault or OpenBao, KV version 2: `<mount>/<path>`.
    Vault,
    /// An environment variable of the daemon, named by the path.
    Env,
    /// A file readable by the daemon; the path is relative to the configured secrets folder.
    File,
}

impl Backend {
    pub const fn as_str(self) -> &'static str {
        match self {
            Backend::Vault => "vault",
            Backend::Env => "env",
            Backend::File => "file",
        }
    }
}

/// A parsed, syntactically valid AuthRef URI.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct AuthRef {
    pub backend: Backend,
    /// Slash-separated path inside the backend, without leading or trailing slash.
    pub path: String,
    /// The field to pick from a secret with several fields.
    pub key: Option<String>,
}

/// Why a string is not an AuthRef URI. Messages describe the problem and never repeat the
/// input: a malformed reference may hold the very secret it should point at
/// (`authref://user:password@vault/…`), and these messages reach API answers and logs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthRefError {
    #[error("must start with {SCHEME}")]
    Scheme,
    #[error("longer than {MAX_LEN} characters")]
    TooLong,
    #[error(
        "must not carry a user name or password before the backend; credentials are resolved from the backend"
    )]
    Userinfo,
    #[error("unknown backend; expected vault, env or file")]
    Backend,
    #[error("the path after the backend is empty")]
    EmptyPath,
    #[error("the path has an empty, '.' or '..' segment, or a character outside [A-Za-z0-9._-]")]
    BadPath,
    #[error("the #key is empty or has a character outside [A-Za-z0-9._-]")]
    BadKey,
}

/// A path segment (or `#key`) an AuthRef may hold: `[A-Za-z0-9._-]`, not empty, `.` or `..`.
/// What parses as an AuthRef, as a JSON Schema `pattern`: a backend, a path of safe segments
/// (letters, digits, `.`, `_`, `-`, neither `.` nor `..`) and an optional `#key`. The length
/// bound is [`MAX_LEN`]; whether the path lies in the caller's tenant namespace depends on
/// the tenant, which no pattern states.
pub const PATTERN: &str = r"^authref://(?:vault|env|file)/(?:[A-Za-z0-9_-][A-Za-z0-9._-]*|\.[A-Za-z0-9_-][A-Za-z0-9._-]*|\.\.[A-Za-z0-9._-]+)(?:/(?:[A-Za-z0-9_-][A-Za-z0-9._-]*|\.[A-Za-z0-9_-][A-Za-z0-9._-]*|\.\.[A-Za-z0-9._-]+))*(?:#(?:[A-Za-z0-9_-][A-Za-z0-9._-]*|\.[A-Za-z0-9_-][A-Za-z0-9._-]*|\.\.[A-Za-z0-9._-]+))?$";

pub(crate) fn is_safe(segment: &str) -> bool {
    !segment.is_empty()
        && segment != "."
        && segment != ".."
        && segment
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

impl FromStr for AuthRef {
    type Err = AuthRefError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() > MAX_LEN {
            return Err(AuthRefError::TooLong);
        }
        let rest = s.strip_prefix(SCHEME).ok_or(AuthRefError::Scheme)?;
        let (rest, key) = match rest.split_once('#') {
            Some((rest, key)) if is_safe(key) => (rest, Some(key.to_owned())),
            Some(_) => return Err(AuthRefError::BadKey),
            None => (rest, None),
        };
        let (backend, path) = rest.split_once('/').unwrap_or((rest, ""));
        let backend = match backend {
            "vault" => Backend::Vault,
            "env" => Backend::Env,
            "file" => Backend::File,
            other if other.contains('@') => return Err(AuthRefError::Userinfo),
            _ => return Err(AuthRefError::Backend),
        };
        if path.is_empty() {
            return Err(AuthRefError::EmptyPath);
        }
        if !path.split('/').all(is_safe) {
            return Err(AuthRefError::BadPath);
        }
        Ok(AuthRef {
            backend,
            path: path.to_owned(),
            key,
        })
    }
}

impl fmt::Display for AuthRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SCHEME}{}/{}", self.backend.as_str(), self.path)?;
        if let Some(key) = &self.key {
            write!(f, "#{key}")?;
        }
        Ok(())
    }
}

impl serde::Serialize for AuthRef {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for AuthRef {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pattern_admits_what_parses() {
        let pattern = regex::Regex::new(PATTERN).unwrap();
        for candidate in [
            "authref://vault/secret/tenants/acme/gitlab#token",
            "authref://env/GITLAB_TOKEN",
            "authref://file/a/.hidden/...#k.e-y_",
            "authref://file/a/./b",
            "authref://file/a/../b",
            "authref://vault/",
            "authref://vault/a#",
            "authref://vault/a#b#c",
            "authref://s3/a",
            "authref://vault/a//b",
            "authref://vault/a b",
            "https://vault/a",
        ] {
            assert_eq!(
                pattern.is_match(candidate),
                candidate.parse::<AuthRef>().is_ok(),
                "{candidate}"
            );
        }
    }

    #[test]
    fn parses_backend_path_and_key() {
        let r: AuthRef = "authref://vault/secret/ci/gitlab#token".parse().unwrap();
        assert_eq!(r.backend, Backend::Vault);
        assert_eq!(r.path, "secret/ci/gitlab");
        assert_eq!(r.key.as_deref(), Some("token"));
        assert_eq!(r.to_string(), "authref://vault/secret/ci/gitlab#token");
        let r: AuthRef = "authref://env/GITLAB_TOKEN".parse().unwrap();
        assert_eq!((r.backend, r.key), (Backend::Env, None));
    }

    #[test]
    fn rejects_malformed_references() {
        for (s, e) in [
            ("vault/x", AuthRefError::Scheme),
            ("https://vault/x", AuthRefError::Scheme),
            ("authref://s3/x", AuthRefError::Backend),
            ("authref://user:pw@vault/x", AuthRefError::Userinfo),
            ("authref://token@vault/x#k", AuthRefError::Userinfo),
            ("authref://vault", AuthRefError::EmptyPath),
            ("authref://vault/", AuthRefError::EmptyPath),
            ("authref://vault/a//b", AuthRefError::BadPath),
            ("authref://file/../etc/shadow", AuthRefError::BadPath),
            ("authref://vault/a b", AuthRefError::BadPath),
            ("authref://vault/a#", AuthRefError::BadKey),
            ("authref://vault/a#b#c", AuthRefError::BadKey),
        ] {
            assert_eq!(s.parse::<AuthRef>(), Err(e), "{s}");
        }
        assert_eq!(
            format!("authref://vault/{}", "a".repeat(MAX_LEN)).parse::<AuthRef>(),
            Err(AuthRefError::TooLong)
        );
    }

    #[test]
    fn refusals_never_repeat_the_input() {
        for s in [
            "SECRETVALUE",
            "https://SECRETVALUE/x",
            "authref://user:SECRETVALUE@vault/x#k",
            "authref://SECRETVALUE@vault/x",
            "authref://SECRETVALUE/x",
            "authref://SECRETVALUE",
            "authref://vault/SECRETVALUE/../x",
            "authref://vault/x#SECRET VALUE",
            "authref://vault/x#SECRETVALUE#",
        ] {
            let err = s.parse::<AuthRef>().unwrap_err();
            let text = err.to_string();
            assert!(!text.contains("SECRET"), "{s}: {text}");
        }
        // Through serde too, as a typed config would parse it.
        let err = serde_json::from_str::<AuthRef>("\"authref://u:SECRETVALUE@vault/x\"")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("SECRETVALUE"), "{err}");
    }
}
