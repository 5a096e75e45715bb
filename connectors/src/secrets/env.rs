//! The `env` backend: a variable of the daemon's environment. Which variables a tenant may
//! name is decided by its namespace before this runs.

use super::{Secret, SecretError, from_text};
use crate::authref::AuthRef;

/// Reads the variable named by `reference`; `lookup` is `std::env::var` outside tests.
pub(super) fn resolve(
    reference: &AuthRef,
    lookup: impl Fn(&str) -> Result<String, std::env::VarError>,
) -> Result<Secret, SecretError> {
    match lookup(&reference.path) {
        Ok(value) => from_text(reference, value),
        Err(std::env::VarError::NotPresent) => Err(SecretError::NotFound {
            reference: reference.to_string(),
        }),
        Err(std::env::VarError::NotUnicode(_)) => Err(SecretError::Malformed {
            reference: reference.to_string(),
            detail: "not valid UTF-8".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> AuthRef {
        s.parse().unwrap()
    }

    #[test]
    fn reads_the_named_variable_and_its_key() {
        let lookup = |name: &str| match name {
            "GITLAB_TOKEN" => Ok("s3cret\n".to_owned()),
            "CI_JSON" => Ok(r#"{"token":"t1","user":"u"}"#.to_owned()),
            _ => Err(std::env::VarError::NotPresent),
        };
        let s = resolve(&r("authref://env/GITLAB_TOKEN"), lookup).unwrap();
        assert_eq!(s.expose(), "s3cret");
        let t = resolve(&r("authref://env/CI_JSON#token"), lookup).unwrap();
        assert_eq!(t.expose(), "t1");
        // without #key the whole value is the secret
        let whole = resolve(&r("authref://env/CI_JSON"), lookup).unwrap();
        assert!(whole.expose().starts_with('{'));
        for (reference, missing) in [
            ("authref://env/NOPE", true),
            ("authref://env/CI_JSON#nokey", true),
            ("authref://env/GITLAB_TOKEN#token", false),
        ] {
            let e = resolve(&r(reference), lookup).unwrap_err();
            assert_eq!(
                matches!(e, SecretError::NotFound { .. }),
                missing,
                "{reference}: {e}"
            );
            assert!(!e.to_string().contains("s3cret") && !e.to_string().contains("t1"));
        }
    }
}
