//! HashiCorp Vault / OpenBao, KV version 2: `GET /v1/<mount>/data/<path>`.
//!
//! The first segment of an AuthRef's path is the mount (`authref://vault/secret/ci/gitlab#token`
//! reads `secret/data/ci/gitlab` and picks `token`). The daemon's own token comes from
//! `VAULT_TOKEN` or the configured token file, and is read at every cache miss so it can be
//! rotated under us; a tenant with Vault credentials of its own is read with those instead
//! (the resolver picks the token, [`VaultClient::login_approle`] logs in).
//!
//! The secret's `custom_metadata.allowed_hosts`, part of the same KV v2 answer, is its
//! [`Binding`]: no second request. So is its expiry: `custom_metadata.expires_at` (RFC 3339,
//! or a date meaning its start in UTC), else a lease (`lease_duration` seconds from now).
//!
//! The Vault address is the operator's, so these requests bypass the providers' SSRF guard;
//! they keep their own timeout.

use std::sync::OnceLock;
use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::StatusCode;

use super::binding::{ALLOWED_HOSTS_KEY, Binding};
use super::{Secret, SecretError};
use crate::authref::AuthRef;
use crate::settings::{ENV_VAULT_ADDR, ENV_VAULT_NAMESPACE, ENV_VAULT_TOKEN, SecretsSettings};

/// The `custom_metadata` key of a secret's expiry.
pub(crate) const EXPIRES_AT_KEY: &str = "expires_at";
/// The namespace header of Vault Enterprise and OpenBao.
const NAMESPACE_HEADER: &str = "X-Vault-Namespace";
/// The token header.
const TOKEN_HEADER: &str = "X-Vault-Token";

/// A KV v2 reader.
pub(crate) struct VaultClient {
    settings: SecretsSettings,
    http: OnceLock<Result<reqwest::Client, String>>,
}

impl VaultClient {
    pub(crate) fn new(settings: &SecretsSettings) -> Self {
        Self {
            settings: settings.clone(),
            http: OnceLock::new(),
        }
    }

    fn http(&self) -> Result<&reqwest::Client, SecretError> {
        self.http
            .get_or_init(|| {
                crate::outbound::ensure_crypto_provider();
                reqwest::Client::builder()
                    .timeout(Duration::from_millis(self.settings.vault_timeout_ms))
                    .connect_timeout(Duration::from_millis(self.settings.vault_timeout_ms))
                    .redirect(reqwest::redirect::Policy::none())
                    .user_agent(crate::outbound::USER_AGENT)
                    .build()
                    .map_err(|e| e.without_url().to_string())
            })
            .as_ref()
            .map_err(|e| SecretError::Unavailable {
                reference: "vault".into(),
                detail: e.clone(),
            })
    }

    fn addr(&self) -> Option<String> {
        self.settings
            .vault_addr
            .clone()
            .or_else(|| std::env::var(ENV_VAULT_ADDR).ok())
            .filter(|a| !a.is_empty())
    }

    fn namespace(&self) -> Option<String> {
        self.settings
            .vault_namespace
            .clone()
            .or_else(|| std::env::var(ENV_VAULT_NAMESPACE).ok())
            .filter(|n| !n.is_empty())
    }

    /// The daemon's own token.
    pub(crate) async fn daemon_token(&self) -> Result<Secret, SecretError> {
        if let Ok(token) = std::env::var(ENV_VAULT_TOKEN)
            && !token.is_empty()
        {
            return Ok(Secret::new(token));
        }
        let Some(file) = &self.settings.vault_token_file else {
            return Err(SecretError::NotConfigured {
                backend: "vault",
                what: "no VAULT_TOKEN and no vault_token_file",
            });
        };
        let text = tokio::fs::read_to_string(file)
            .await
            .map_err(|e| SecretError::Unavailable {
                reference: "vault".into(),
                detail: format!("cannot read the token file: {}", e.kind()),
            })?;
        let token = text.trim();
        if token.is_empty() {
            return Err(SecretError::NotConfigured {
                backend: "vault",
                what: "the token file is empty",
            });
        }
        Ok(Secret::new(token))
    }

    fn address(&self) -> Result<String, SecretError> {
        self.addr()
            .map(|a| a.trim_end_matches('/').to_owned())
            .ok_or(SecretError::NotConfigured {
                backend: "vault",
                what: "no vault_addr and no VAULT_ADDR",
            })
    }

    fn unreachable(reference: &str, e: &reqwest::Error) -> SecretError {
        SecretError::Unavailable {
            reference: reference.to_owned(),
            detail: if e.is_timeout() {
                "timed out".into()
            } else {
                "cannot connect".into()
            },
        }
    }

    /// Maps a non-200 answer to its error.
    async fn refusal(name: String, response: reqwest::Response) -> SecretError {
        match response.status() {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                SecretError::Denied { reference: name }
            }
            StatusCode::NOT_FOUND => SecretError::NotFound { reference: name },
            StatusCode::TOO_MANY_REQUESTS => SecretError::RateLimited {
                retry_after: crate::outbound::retry_after(response.headers()),
                reference: name,
            },
            StatusCode::SERVICE_UNAVAILABLE => {
                let body = response.text().await.unwrap_or_default();
                if body.contains("sealed") {
                    SecretError::Sealed { reference: name }
                } else {
                    SecretError::Unavailable {
                        reference: name,
                        detail: "HTTP 503".into(),
                    }
                }
            }
            other => SecretError::Unavailable {
                reference: name,
                detail: format!("HTTP {}", other.as_u16()),
            },
        }
    }

    /// Logs in with AppRole: the client token and how long it lives.
    ///
    /// # Errors
    /// A [`SecretError`] naming `label` (the tenant's login, never the secret id).
    pub(crate) async fn login_approle(
        &self,
        label: &str,
        mount: &str,
        role_id: &str,
        secret_id: &Secret,
    ) -> Result<(Secret, Duration), SecretError> {
        let addr = self.address()?;
        let url = format!("{addr}/v1/auth/{mount}/login");
        let mut request = self
            .http()?
            .post(&url)
            .json(&serde_json::json!({"role_id": role_id, "secret_id": secret_id.expose()}));
        if let Some(ns) = self.namespace() {
            request = request.header(NAMESPACE_HEADER, ns);
        }
        let response = request
            .headers(crate::trace::headers())
            .send()
            .await
            .map_err(|e| Self::unreachable(label, &e))?;
        if response.status() != StatusCode::OK {
            return Err(Self::refusal(label.to_owned(), response).await);
        }
        #[derive(serde::Deserialize)]
        struct Login {
            auth: Option<Auth>,
        }
        #[derive(serde::Deserialize)]
        struct Auth {
            client_token: String,
            #[serde(default)]
            lease_duration: u64,
        }
        let login: Login = response.json().await.map_err(|_| SecretError::Malformed {
            reference: label.to_owned(),
            detail: "not an AppRole login answer".into(),
        })?;
        let auth = login.auth.ok_or_else(|| SecretError::Malformed {
            reference: label.to_owned(),
            detail: "the login answer has no token".into(),
        })?;
        Ok((
            Secret::new(auth.client_token),
            Duration::from_secs(auth.lease_duration),
        ))
    }

    /// Reads one secret with `token`, its binding and its expiry.
    pub(crate) async fn read(
        &self,
        reference: &AuthRef,
        token: &Secret,
    ) -> Result<(Secret, Binding, Option<DateTime<Utc>>), SecretError> {
        let name = reference.to_string();
        let Some((mount, path)) = reference.path.split_once('/') else {
            return Err(SecretError::Malformed {
                reference: name,
                detail: "a vault reference is <mount>/<path>".into(),
            });
        };
        let addr = self.address()?;
        let url = format!("{addr}/v1/{mount}/data/{path}");
        let mut request = self.http()?.get(&url).header(TOKEN_HEADER, token.expose());
        if let Some(ns) = self.namespace() {
            request = request.header(NAMESPACE_HEADER, ns);
        }
        let response = request
            .headers(crate::trace::headers())
            .send()
            .await
            .map_err(|e| Self::unreachable(&name, &e))?;
        if response.status() != StatusCode::OK {
            return Err(Self::refusal(name, response).await);
        }
        #[derive(serde::Deserialize)]
        struct Envelope {
            data: Option<Data>,
            #[serde(default)]
            lease_duration: u64,
        }
        #[derive(serde::Deserialize)]
        struct Data {
            data: Option<serde_json::Map<String, serde_json::Value>>,
            metadata: Option<Metadata>,
        }
        #[derive(serde::Deserialize)]
        struct Metadata {
            custom_metadata: Option<serde_json::Map<String, serde_json::Value>>,
        }
        let envelope: Envelope = response.json().await.map_err(|_| SecretError::Malformed {
            reference: name.clone(),
            detail: "not a KV version 2 answer".into(),
        })?;
        let data = envelope.data.ok_or(SecretError::NotFound {
            reference: name.clone(),
        })?;
        let mut custom = data
            .metadata
            .and_then(|m| m.custom_metadata)
            .unwrap_or_default();
        let expires_at = match custom.remove(EXPIRES_AT_KEY) {
            None => None,
            Some(serde_json::Value::String(at)) => {
                Some(parse_expiry(&at).ok_or_else(|| SecretError::Malformed {
                    reference: name.clone(),
                    detail: "custom_metadata.expires_at is not an RFC 3339 date".into(),
                })?)
            }
            Some(_) => {
                return Err(SecretError::Malformed {
                    reference: name,
                    detail: "custom_metadata.expires_at is not text".into(),
                });
            }
        }
        .or_else(|| {
            (envelope.lease_duration > 0).then(|| {
                Utc::now()
                    + chrono::Duration::seconds(
                        i64::try_from(envelope.lease_duration).unwrap_or(i64::MAX / 2_000),
                    )
            })
        });
        let binding = match custom.remove(ALLOWED_HOSTS_KEY) {
            None => Binding::unbound(),
            Some(serde_json::Value::String(list)) => {
                Binding::parse(&list).ok_or_else(|| SecretError::Malformed {
                    reference: name.clone(),
                    detail: "custom_metadata.allowed_hosts does not parse".into(),
                })?
            }
            Some(_) => {
                return Err(SecretError::Malformed {
                    reference: name,
                    detail: "custom_metadata.allowed_hosts is not text".into(),
                });
            }
        };
        // A deleted (soft-deleted) version answers 404 with metadata; a destroyed one has
        // `data: null`: both are "not found".
        let fields = data.data.ok_or(SecretError::NotFound { reference: name })?;
        Ok((super::pick_field(reference, &fields)?, binding, expires_at))
    }
}

/// An RFC 3339 date-time, or a date (`2027-01-31`) meaning its start in UTC.
fn parse_expiry(value: &str) -> Option<DateTime<Utc>> {
    let value = value.trim();
    DateTime::parse_from_rfc3339(value)
        .map(|at| at.with_timezone(&Utc))
        .ok()
        .or_else(|| {
            chrono::NaiveDate::parse_from_str(value, "%Y-%m-%d")
                .ok()
                .map(|d| d.and_time(chrono::NaiveTime::MIN).and_utc())
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use wiremock::matchers::{header, method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    fn settings(server: &MockServer, token_file: &std::path::Path) -> SecretsSettings {
        SecretsSettings {
            vault_addr: Some(format!("{}/", server.uri())),
            vault_token_file: Some(token_file.to_owned()),
            vault_namespace: Some("team-a".into()),
            ..SecretsSettings::default()
        }
    }

    #[tokio::test]
    async fn sends_token_and_namespace_and_maps_every_status() {
        crate::outbound::ensure_crypto_provider();
        let server = MockServer::start().await;
        let dir = tempfile::tempdir().unwrap();
        let token_file = dir.path().join("token");
        std::fs::write(&token_file, "s.vault-token\n").unwrap();
        Mock::given(method("GET"))
            .and(path("/v1/kv/data/ci/app"))
            .and(header(TOKEN_HEADER, "s.vault-token"))
            .and(header(NAMESPACE_HEADER, "team-a"))
            .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
                "data": {"data": {"token": "t-1"}, "metadata": {"version": 3}}
            })))
            .mount(&server)
            .await;
        let vault = VaultClient::new(&settings(&server, &token_file));
        let reference: AuthRef = "authref://vault/kv/ci/app#token".parse().unwrap();
        let token = vault.daemon_token().await.unwrap();
        let (secret, binding, expires_at) = vault.read(&reference, &token).await.unwrap();
        assert_eq!(secret.expose(), "t-1");
        assert!(!binding.is_bound());
        assert_eq!(expires_at, None);

        for (response, check) in [
            (
                ResponseTemplate::new(503).set_body_string(r#"{"errors":["Vault is sealed"]}"#),
                "sealed",
            ),
            (ResponseTemplate::new(503), "unavailable"),
            (ResponseTemplate::new(500), "unavailable"),
            (ResponseTemplate::new(401), "denied"),
            (
                ResponseTemplate::new(429).insert_header("retry-after", "4"),
                "limited",
            ),
            (
                ResponseTemplate::new(200).set_body_string("not json"),
                "malformed",
            ),
            (
                ResponseTemplate::new(200)
                    .set_body_json(serde_json::json!({"data": {"data": null}})),
                "not found",
            ),
        ] {
            let server = MockServer::start().await;
            Mock::given(method("GET"))
                .respond_with(response)
                .mount(&server)
                .await;
            let vault = VaultClient::new(&settings(&server, &token_file));
            let e = vault.read(&reference, &token).await.unwrap_err();
            let ok = match check {
                "sealed" => matches!(e, SecretError::Sealed { .. }),
                "unavailable" => matches!(e, SecretError::Unavailable { .. }),
                "denied" => matches!(e, SecretError::Denied { .. }),
                "limited" => e.retry_after() == Some(std::time::Duration::from_secs(4)),
                "malformed" => matches!(e, SecretError::Malformed { .. }),
                _ => matches!(e, SecretError::NotFound { .. }),
            };
            assert!(ok, "{check}: {e:?}");
            assert!(!e.to_string().contains("s.vault-token"));
        }
    }

    #[tokio::test]
    async fn custom_metadata_allowed_hosts_is_the_binding() {
        crate::outbound::ensure_crypto_provider();
        let dir = tempfile::tempdir().unwrap();
        let token_file = dir.path().join("token");
        std::fs::write(&token_file, "s.vault-token").unwrap();
        let reference: AuthRef = "authref://vault/kv/ci/app#token".parse().unwrap();
        let gitlab = url::Url::parse("https://gitlab.example.com/").unwrap();
        let evil = url::Url::parse("https://evil.test/").unwrap();
        for (custom, outcome) in [
            (
                serde_json::json!({"allowed_hosts": "gitlab.example.com"}),
                Some(true),
            ),
            (serde_json::json!({"owner": "ci"}), Some(false)),
            (serde_json::json!({"allowed_hosts": "bad/host"}), None),
        ] {
            let server = MockServer::start().await;
            Mock::given(method("GET"))
                .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
                    "data": {"data": {"token": "t-1"},
                             "metadata": {"version": 1, "custom_metadata": custom}}
                })))
                .mount(&server)
                .await;
            let vault = VaultClient::new(&settings(&server, &token_file));
            let result = vault.read(&reference, &Secret::new("s.vault-token")).await;
            match outcome {
                Some(bound) => {
                    let (_, binding, _) = result.unwrap();
                    assert_eq!(binding.is_bound(), bound);
                    assert!(binding.permits(&gitlab));
                    assert_eq!(binding.permits(&evil), !bound);
                }
                None => assert!(matches!(result, Err(SecretError::Malformed { .. }))),
            }
        }
    }

    #[tokio::test]
    async fn custom_metadata_expires_at_or_a_lease_is_the_expiry() {
        crate::outbound::ensure_crypto_provider();
        let dir = tempfile::tempdir().unwrap();
        let token_file = dir.path().join("token");
        std::fs::write(&token_file, "s.vault-token").unwrap();
        let reference: AuthRef = "authref://vault/kv/ci/app#token".parse().unwrap();
        for (custom, lease, expected) in [
            (
                serde_json::json!({"expires_at": "2027-01-31T12:00:00Z"}),
                0,
                Some(Some("2027-01-31T12:00:00+00:00".to_owned())),
            ),
            (
                serde_json::json!({"expires_at": "2027-01-31"}),
                0,
                Some(Some("2027-01-31T00:00:00+00:00".to_owned())),
            ),
            (serde_json::json!({}), 0, Some(None)),
            (serde_json::json!({"expires_at": "soon"}), 0, None),
            (serde_json::json!({"expires_at": 5}), 0, None),
        ] {
            let server = MockServer::start().await;
            Mock::given(method("GET"))
                .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
                    "lease_duration": lease,
                    "data": {"data": {"token": "t-1"},
                             "metadata": {"version": 1, "custom_metadata": custom}}
                })))
                .mount(&server)
                .await;
            let vault = VaultClient::new(&settings(&server, &token_file));
            let result = vault.read(&reference, &Secret::new("s.vault-token")).await;
            match expected {
                Some(at) => {
                    let (_, _, expires_at) = result.unwrap();
                    assert_eq!(expires_at.map(|t| t.to_rfc3339()), at, "{custom}");
                }
                None => assert!(
                    matches!(result, Err(SecretError::Malformed { .. })),
                    "{custom}"
                ),
            }
        }
        // a leased secret expires when its lease ends
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
                "lease_duration": 3600, "data": {"data": {"token": "t-1"}}
            })))
            .mount(&server)
            .await;
        let vault = VaultClient::new(&settings(&server, &token_file));
        let (_, _, at) = vault
            .read(&reference, &Secret::new("s.vault-token"))
            .await
            .unwrap();
        let left = at.unwrap() - Utc::now();
        assert!(left > chrono::Duration::minutes(59) && left <= chrono::Duration::hours(1));
    }

    #[tokio::test]
    async fn a_reference_needs_a_mount_and_a_path() {
        let vault = VaultClient::new(&SecretsSettings {
            vault_addr: Some("http://127.0.0.1:9".into()),
            ..SecretsSettings::default()
        });
        let e = vault
            .read(
                &"authref://vault/onlymount".parse().unwrap(),
                &Secret::new("t"),
            )
            .await
            .unwrap_err();
        assert!(matches!(e, SecretError::Malformed { .. }), "{e}");
    }
}
