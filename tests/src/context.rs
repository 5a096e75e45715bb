//! The test context: a running daemon, an HTTP client, and the keys it accepts.

use std::net::SocketAddr;

use daemon::config::{ApiKeyConfig, Config};
use reqwest::{Method, StatusCode, header::HeaderMap};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Tenant A's administrator (every scope).
pub const ADMIN_A: &str = "test-key-admin-a";
/// Tenant A's writer.
pub const WRITER_A: &str = "test-key-writer-a";
/// Tenant A's read-only key.
pub const READER_A: &str = "test-key-reader-a";
/// Tenant B's writer.
pub const WRITER_B: &str = "test-key-writer-b";

pub const TENANT_A: &str = "tenant-a";
pub const TENANT_B: &str = "tenant-b";

pub fn api_key(id: &str, key: &str, tenant: &str, scopes: &[&str]) -> ApiKeyConfig {
    ApiKeyConfig {
        id: id.into(),
        tenant: tenant.into(),
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
        sha256: hex::encode(Sha256::digest(key.as_bytes())),
    }
}

/// The keys every context accepts.
pub fn standard_keys() -> Vec<ApiKeyConfig> {
    let all = [
        "integrations:read",
        "integrations:write",
        "integrations:admin",
    ];
    vec![
        api_key("admin-a", ADMIN_A, TENANT_A, &all),
        api_key("writer-a", WRITER_A, TENANT_A, &["integrations:write"]),
        api_key("reader-a", READER_A, TENANT_A, &["integrations:read"]),
        api_key("writer-b", WRITER_B, TENANT_B, &["integrations:write"]),
    ]
}

/// An HTTP answer, body parsed as JSON when it is JSON.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts a problem+json answer with this status, and returns its body.
    #[track_caller]
    pub fn problem(&self, status: u16) -> &Value {
        assert_eq!(self.status.as_u16(), status, "unexpected answer: {self:?}");
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json"),
            "not a problem document: {self:?}"
        );
        assert_eq!(self.body["status"], status, "{self:?}");
        assert!(self.body["type"].as_str().is_some_and(|t| !t.is_empty()));
        assert!(self.body["title"].as_str().is_some());
        &self.body
    }

    #[track_caller]
    pub fn ok(&self, status: u16) -> &Value {
        assert_eq!(self.status.as_u16(), status, "unexpected answer: {self:?}");
        &self.body
    }
}

pub struct TestContext {
    pub daemon: Option<daemon::Running>,
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    pub database_url: String,
    /// Holds the SQLite file (when SQLite is the backend) for the context's lifetime.
    pub _dir: Option<tempfile::TempDir>,
}

impl TestContext {
    /// A daemon with the standard keys and no rate limit.
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// A daemon whose configuration `customize` may change.
    pub async fn start_with(customize: impl FnOnce(&mut Config)) -> Self {
        daemon::install_crypto_provider();
        let dir = tempfile::tempdir().expect("tempdir");
        let database_url = actors::db::testing::fresh_url(dir.path()).await;
        let mut config = Config::default();
        config.http.listen = "127.0.0.1:0".parse().unwrap();
        config.database.url = database_url.clone();
        config.database.max_connections = 4;
        config.auth.api_keys = standard_keys();
        config.auth.rate_limit.per_second = 0;
        customize(&mut config);
        Self::start_config(config, dir, database_url).await
    }

    pub async fn start_config(
        config: Config,
        dir: tempfile::TempDir,
        database_url: String,
    ) -> Self {
        let daemon = daemon::start(config).await.expect("the daemon starts");
        Self {
            addr: daemon.local_addr(),
            daemon: Some(daemon),
            client: reqwest::Client::new(),
            database_url,
            _dir: Some(dir),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// The URL of `/metrics`: on its own listener when the daemon has one, else the main one.
    pub fn metrics_url(&self) -> String {
        let addr = self
            .daemon
            .as_ref()
            .and_then(daemon::Running::metrics_addr)
            .unwrap_or(self.addr);
        format!("http://{addr}/metrics")
    }

    /// Sends a request; `key` becomes the bearer token, `body` the JSON body.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        key: Option<&str>,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Answer {
        let mut request = self.client.request(method, self.url(path));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        answer(request.send().await.expect("request sent")).await
    }

    pub async fn get(&self, path: &str, key: &str) -> Answer {
        self.call(Method::GET, path, Some(key), None, &[]).await
    }

    pub async fn post(&self, path: &str, key: &str, body: &Value) -> Answer {
        self.call(Method::POST, path, Some(key), Some(body), &[])
            .await
    }

    pub async fn put(
        &self,
        path: &str,
        key: &str,
        body: &Value,
        headers: &[(&str, &str)],
    ) -> Answer {
        self.call(Method::PUT, path, Some(key), Some(body), headers)
            .await
    }

    pub async fn delete(&self, path: &str, key: &str, headers: &[(&str, &str)]) -> Answer {
        self.call(Method::DELETE, path, Some(key), None, headers)
            .await
    }

    /// Registers an in-memory integration and returns its body.
    pub async fn create(&self, key: &str, name: &str, provider_type: &str) -> Value {
        let config = match provider_type {
            "inmemory" => serde_json::json!({}),
            _ => serde_json::json!({"baseUrl": "https://provider.example.com"}),
        };
        let body = serde_json::json!({"type": provider_type, "name": name, "config": config});
        self.post("/api/v1/integrations", key, &body)
            .await
            .ok(201)
            .clone()
    }

    pub async fn cleanup(mut self) {
        if let Some(daemon) = self.daemon.take() {
            daemon.shutdown().await.expect("clean shutdown");
        }
    }
}

pub async fn answer(response: reqwest::Response) -> Answer {
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.bytes().await.expect("body read");
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    Answer {
        status,
        headers,
        body,
    }
}
