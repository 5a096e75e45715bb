//! The OCI connector against a real registry: Debian's `docker-registry` (distribution) with
//! htpasswd basic auth, its password read through the `env` AuthRef backend.

mod common;

use connectors::{ConnectorFactory, Health, HealthReport, IntegrationSpec, Reason};
use serde_json::json;
use sha2::{Digest, Sha256};

struct Registry {
    url: String,
    user: String,
    password: String,
    http: reqwest::Client,
}

impl Registry {
    /// Uploads one blob and returns its digest.
    async fn blob(&self, name: &str, content: &[u8]) -> String {
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(content)));
        let start = self
            .http
            .post(format!("{}/v2/{name}/blobs/uploads/", self.url))
            .basic_auth(&self.user, Some(&self.password))
            .send()
            .await
            .unwrap();
        assert_eq!(start.status(), 202, "starting an upload");
        let location = start.headers()["location"].to_str().unwrap().to_owned();
        let location = if location.starts_with('/') {
            format!("{}{location}", self.url)
        } else {
            location
        };
        let sep = if location.contains('?') { '&' } else { '?' };
        let put = self
            .http
            .put(format!("{location}{sep}digest={digest}"))
            .basic_auth(&self.user, Some(&self.password))
            .header("content-type", "application/octet-stream")
            .body(content.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(put.status(), 201, "finishing an upload");
        digest
    }

    /// Pushes a minimal OCI image, so the repository shows in the catalog.
    async fn push(&self, name: &str) {
        let config =
            br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
        let digest = self.blob(name, config).await;
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest, "size": config.len()},
            "layers": []
        });
        let put = self
            .http
            .put(format!("{}/v2/{name}/manifests/latest", self.url))
            .basic_auth(&self.user, Some(&self.password))
            .header("content-type", "application/vnd.oci.image.manifest.v1+json")
            .body(manifest.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(put.status(), 201, "pushing the manifest of {name}");
    }
}

fn spec(url: &str, user: &str, page_size: u32, auth_ref: Option<&str>) -> IntegrationSpec {
    IntegrationSpec {
        id: "oci".into(),
        tenant: "t".into(),
        provider_type: "oci_registry".into(),
        config: json!({"baseUrl": url, "username": user, "catalogPageSize": page_size})
            .as_object()
            .unwrap()
            .clone(),
        auth_ref: auth_ref.map(|r| r.parse().unwrap()),
    }
}

#[tokio::test]
async fn oci_connector_against_distribution_with_htpasswd() {
    let Some(url) = common::peer(
        common::REGISTRY_URL,
        "the OCI connector against docker-registry",
    ) else {
        return;
    };
    let user = common::peer(common::REGISTRY_USER, "the registry user").unwrap();
    let password = common::peer(common::REGISTRY_PASSWORD, "the registry password").unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("tenants/t")).unwrap();
    let env = common::env(dir.path());
    let registry = Registry {
        url: url.clone(),
        user: user.clone(),
        password: password.clone(),
        http: reqwest::Client::new(),
    };
    for name in ["team/alpha", "team/beta", "gamma"] {
        registry.push(name).await;
    }
    let factory = connectors::oci_registry::Factory;
    let password_ref = format!("authref://env/{}", common::REGISTRY_PASSWORD);
    let c = factory
        .build(&spec(&url, &user, 2, Some(&password_ref)), &env)
        .unwrap();
    assert_eq!(c.check_health().await, HealthReport::healthy());

    // the catalog in pages of two, following the registry's Link header
    let mut names = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let page = c.list_resources(cursor.as_deref()).await.unwrap();
        pages += 1;
        names.extend(page.resources.into_iter().map(|r| r.name));
        cursor = page.next_cursor;
        if cursor.is_none() || pages > 10 {
            break;
        }
    }
    assert!(pages >= 2, "three repositories in pages of two");
    for name in ["team/alpha", "team/beta", "gamma"] {
        assert!(names.iter().any(|n| n == name), "{name} in {names:?}");
    }

    // no credentials, and a wrong password
    let anonymous = factory.build(&spec(&url, &user, 100, None), &env).unwrap();
    assert_eq!(
        anonymous.check_health().await.reason,
        Some(Reason::AuthFailed)
    );
    std::fs::write(dir.path().join("tenants/t/wrong"), "wrong-password").unwrap();
    let wrong = factory
        .build(
            &spec(&url, &user, 100, Some("authref://file/tenants/t/wrong")),
            &env,
        )
        .unwrap();
    let report = wrong.check_health().await;
    assert_eq!(
        (report.health, report.reason),
        (Health::Unhealthy, Some(Reason::AuthFailed))
    );
    assert!(!format!("{report:?}").contains(&password));
}
