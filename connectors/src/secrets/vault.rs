//! HashiCorp Vault / OpenBao, KV version 2: `GET /v1/<mount>/data/<path>`.
//!
//! The first segment of an AuthRef's path is the mount (`authref://vault/secret/ci/gitlab#token`
//! reads `secret/data/ci/gitlab` and picks `token`). The token comes from `VAULT_TOKEN` or the
//! configured token file, and is read at every cache miss so it can be rotated under us.
//!
//! The Vault address is the operator's, so these requests bypass the providers' SSRF guard;
//! they keep their own timeout.

use std::sync::OnceLock;
use std::time::Duration;

use reqwest::StatusCode;

use super::{Secret, SecretError};
use crate::authref::AuthRef;
use crate::settings::{ENV_VAULT_ADDR, ENV_VAULT_NAMESPACE, ENV_VAULT_TOKEN, SecretsSettings};

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

    async fn token(&self) -> Result<Secret, SecretError> {
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

    /// Reads one secret.
    pub(crate) async fn read(&self, reference: &AuthRef) -> Result<Secret, SecretError> {
        let name = reference.to_string();
        let Some((mount, path)) = reference.path.split_once('/') else {
            return Err(SecretError::Malformed {
                reference: name,
                detail: "a vault reference is <mount>/<path>".into(),
            });
        };
        let addr = self.addr().ok_or(SecretError::NotConfigured {
            backend: "vault",
            what: "no vault_addr and no VAULT_ADDR",
        })?;
        let token = self.token().await?;
        let url = format!("{}/v1/{mount}/data/{path}", addr.trim_end_matches('/'));
        let mut request = self.http()?.get(&url).header(TOKEN_HEADER, token.expose());
        if let Some(ns) = self.namespace() {
            request = request.header(NAMESPACE_HEADER, ns);
        }
        let response = request.send().await.map_err(|e| SecretError::Unavailable {
            reference: name.clone(),
            detail: if e.is_timeout() {
                "timed out".into()
            } else {
                "cannot connect".into()
            },
        })?;
        let status = response.status();
        match status {
            StatusCode::OK => {}
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                return Err(SecretError::Denied { reference: name });
            }
            StatusCode::NOT_FOUND => return Err(SecretError::NotFound { reference: name }),
            StatusCode::TOO_MANY_REQUESTS => {
                return Err(SecretError::RateLimited {
                    retry_after: crate::outbound::retry_after(response.headers()),
                    reference: name,
                });
            }
            StatusCode::SERVICE_UNAVAILABLE => {
                let body = response.text().await.unwrap_or_default();
                return Err(if body.contains("sealed") {
                    SecretError::Sealed { reference: name }
                } else {
                    SecretError::Unavailable {
                        reference: name,
                        detail: "HTTP 503".into(),
                    }
                });
            }
            other => {
                return Err(SecretError::Unavailable {
                    reference: name,
                    detail: format!("HTTP {}", other.as_u16()),
                });
            }
        }
        #[derive(serde::Deserialize)]
        struct Envelope {
            data: Option<Data>,
        }
        #[derive(serde::Deserialize)]
        struct Data {
            data: Option<serde_json::Map<String, serde_json::Value>>,
        }
        let envelope: Envelope = response.json().await.map_err(|_| SecretError::Malformed {
            reference: name.clone(),
            detail: "not a KV version 2 answer".into(),
        })?;
        // A deleted (soft-deleted) version answers 404 with metadata; a destroyed one has
        // `data: null`: both are "not found".
        let fields = envelope
            .data
            .and_then(|d| d.data)
            .ok_or(SecretError::NotFound { reference: name })?;
        super::pick_field(reference, &fields)
    }
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
        assert_eq!(vault.read(&reference).await.unwrap().expose(), "t-1");

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
            let e = vault.read(&reference).await.unwrap_err();
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
    async fn a_reference_needs_a_mount_and_a_path() {
        let vault = VaultClient::new(&SecretsSettings {
            vault_addr: Some("http://127.0.0.1:9".into()),
            ..SecretsSettings::default()
        });
        let e = vault
            .read(&"authref://vault/onlymount".parse().unwrap())
            .await
            .unwrap_err();
        assert!(matches!(e, SecretError::Malformed { .. }), "{e}");
    }
}
