//! `/metrics`: the Prometheus text exposition of the daemon's metrics.
//!
//! Its labels name every tenant (`integration_health_status{tenant}`), so whoever can reach it
//! learns who the customers are and how their integrations fare. It is served on the main
//! listener without authentication by default, like the probes, for a scraper inside the trust
//! boundary; `[telemetry]` can move it to a listener of its own (`metrics_listen`, which then
//! is the only place it is served) and require a bearer token (`metrics_bearer_token_file`).
//! The token is not an API key: a scraper gets no access to the API, and an API key none to
//! the metrics.

use std::path::Path;

use poem::http::StatusCode;
use poem::{Endpoint, EndpointExt, Request, Response, Route, RouteMethod};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::error::{self, ApiError, ERROR_CODE_UNAUTHORIZED, Problem};

/// The bearer token `/metrics` asks for. Only its SHA-256 is kept, so that comparisons take
/// the same time whatever the length or content of the token presented.
#[derive(Clone)]
pub struct MetricsToken([u8; 32]);

impl std::fmt::Debug for MetricsToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MetricsToken(<redacted>)")
    }
}

impl MetricsToken {
    /// The token held by the file at `path` (surrounding whitespace, such as a final newline,
    /// is not part of it).
    ///
    /// # Errors
    /// When the file cannot be read, or does not hold exactly one token.
    pub fn from_file(path: &Path) -> Result<Self, std::io::Error> {
        let text = std::fs::read_to_string(path)?;
        Self::new(text.trim())
    }

    /// # Errors
    /// When `token` is empty or holds whitespace or control characters (it could never be
    /// sent in an `Authorization` header).
    pub fn new(token: &str) -> Result<Self, std::io::Error> {
        if token.is_empty() || token.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "the file must hold one bearer token, without spaces",
            ));
        }
        Ok(Self(Sha256::digest(token.as_bytes()).into()))
    }

    /// Whether `authorization` (an `Authorization` header value) carries this token.
    fn admits(&self, authorization: Option<&[u8]>) -> bool {
        let Some((scheme, token)) = authorization
            .and_then(|value| std::str::from_utf8(value).ok())
            .and_then(|value| value.trim().split_once(' '))
        else {
            return false;
        };
        let presented: [u8; 32] = Sha256::digest(token.trim().as_bytes()).into();
        scheme.eq_ignore_ascii_case("bearer") && bool::from(presented.ct_eq(&self.0))
    }
}

/// The `/metrics` endpoint (GET), behind `token` when there is one.
pub fn endpoint(
    exposition: &'static crate::telemetry::Exposition,
    token: Option<MetricsToken>,
) -> RouteMethod {
    RouteMethod::new().get(Metrics { exposition, token })
}

/// Everything served by the listener of its own (`metrics_listen`): `/metrics` and nothing
/// else, with errors as problem documents like the main listener's.
pub fn routes(endpoint: RouteMethod) -> impl Endpoint {
    Route::new()
        .at("/metrics", endpoint)
        .around(super::observe::request)
        .catch_all_error(error::catch_all)
}

struct Metrics {
    exposition: &'static crate::telemetry::Exposition,
    token: Option<MetricsToken>,
}

impl Endpoint for Metrics {
    type Output = Response;

    async fn call(&self, req: Request) -> poem::Result<Response> {
        if let Some(token) = &self.token {
            let authorization = req.headers().get("authorization").map(|v| v.as_bytes());
            if !token.admits(authorization) {
                return Err(ApiError::from_problem(Problem::new(
                    StatusCode::UNAUTHORIZED,
                    ERROR_CODE_UNAUTHORIZED,
                    "/metrics needs its bearer token".to_owned(),
                ))
                .into_poem());
            }
        }
        Ok(Response::builder()
            .content_type("text/plain; version=0.0.4; charset=utf-8")
            .body(self.exposition.render()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_token_is_admitted() {
        let token = MetricsToken::new("s3cret").unwrap();
        assert!(token.admits(Some(b"Bearer s3cret")));
        assert!(token.admits(Some(b"bearer s3cret")));
        assert!(token.admits(Some(b"BEARER  s3cret ")));
        for wrong in [
            &b"Bearer s3cre"[..],
            b"Bearer s3cret2",
            b"Bearer S3CRET",
            b"Bearer ",
            b"Basic s3cret",
            b"s3cret",
            b"Bearers3cret",
            b"Bearer \xff",
            b"",
        ] {
            assert!(!token.admits(Some(wrong)), "{}", wrong.escape_ascii());
        }
        assert!(!token.admits(None));
    }

    #[test]
    fn a_token_file_holds_one_token() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "s3cret\n").unwrap();
        let token = MetricsToken::from_file(&path).unwrap();
        assert!(token.admits(Some(b"Bearer s3cret")));
        assert!(!format!("{token:?}").contains("s3cret"));
        for bad in ["", " \n", "two tokens\n", "a\0b"] {
            std::fs::write(&path, bad).unwrap();
            assert!(MetricsToken::from_file(&path).is_err(), "{bad:?}");
        }
        assert!(MetricsToken::from_file(&dir.path().join("missing")).is_err());
    }
}
