use serde_json::json;
use wiremock::matchers::{header, header_exists, method, path};
use wiremock::{Mock, Request, ResponseTemplate};

use super::*;
use crate::Reason;
use crate::testing::assert_conformance;
use crate::testing::fixture::Fixture;

const KEY_ID: &str = "AKIAEXAMPLEKEYID0001";
const SECRET_KEY: &str = "ecr-secret-access-key-xyz";
const REGISTRY_PASSWORD: &str = "ecr-registry-password-abc";

fn access_key_json(id: &str, secret: &str) -> String {
    json!({"access_key_id": id, "secret_access_key": secret}).to_string()
}

async fn fixture() -> Fixture {
    let config = |url: &str| json!({"region": "eu-west-1", "endpointUrl": url});
    Fixture::new(
        &Factory,
        ("aws", &access_key_json(KEY_ID, SECRET_KEY)),
        config,
    )
    .await
}

fn target(action: &str) -> String {
    format!("{TARGET_PREFIX}.{action}")
}

fn token_answer(expires_in: i64) -> serde_json::Value {
    let token =
        base64::engine::general_purpose::STANDARD.encode(format!("AWS:{REGISTRY_PASSWORD}"));
    json!({"authorizationData": [{
        "authorizationToken": token,
        "expiresAt": (Utc::now().timestamp() + expires_in) as f64,
        "proxyEndpoint": "https://123456789012.dkr.ecr.eu-west-1.amazonaws.com"
    }]})
}

/// An ECR API mock that accepts only requests signed with our key for eu-west-1/ecr.
async fn mount(f: &Fixture, action: &str, answer: ResponseTemplate) {
    let credential = format!("Credential={KEY_ID}/");
    Mock::given(method("POST"))
        .and(path("/"))
        .and(header("x-amz-target", target(action).as_str()))
        .and(header("content-type", CONTENT_TYPE))
        .and(header_exists("x-amz-date"))
        .and(move |r: &Request| {
            r.headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|a| {
                    a.starts_with("AWS4-HMAC-SHA256 ")
                        && a.contains(&credential)
                        && a.contains("/eu-west-1/ecr/aws4_request")
                        && a.contains("x-amz-target")
                })
        })
        .respond_with(answer)
        .mount(&f.server)
        .await;
}

async fn mount_healthy(f: &Fixture) {
    mount(
        f,
        "GetAuthorizationToken",
        ResponseTemplate::new(200).set_body_json(token_answer(12 * 3600)),
    )
    .await;
    mount(
        f,
        "DescribeRepositories",
        ResponseTemplate::new(200).set_body_json(json!({"repositories": [
            {"repositoryName": "app/api", "repositoryArn": "arn:aws:ecr:eu-west-1:123456789012:repository/app/api"}
        ]})),
    )
    .await;
}

#[tokio::test]
async fn conformance_against_a_signed_ecr_api() {
    let f = fixture().await;
    mount_healthy(&f).await;
    assert_conformance(f.healthy_conformance(vec![SECRET_KEY.into(), REGISTRY_PASSWORD.into()]))
        .await;
}

#[tokio::test]
async fn a_cached_authorization_token_makes_a_check_one_request() {
    let f = fixture().await;
    mount_healthy(&f).await;
    let c = f.build();
    assert_eq!(c.check_health().await, HealthReport::healthy());
    assert_eq!(f.server.received_requests().await.unwrap().len(), 2);
    // A connector built anew (as the API does) finds the same token in the shared cache.
    let again = f.build();
    assert_eq!(again.check_health().await, HealthReport::healthy());
    let requests = f.server.received_requests().await.unwrap();
    assert_eq!(requests.len(), 3, "the second check mints no token");
    assert_eq!(
        requests[2].headers["x-amz-target"],
        target("DescribeRepositories").as_str()
    );
}

#[tokio::test]
async fn a_token_minted_already_expired_is_minted_again() {
    let f = fixture().await;
    // As moto answers: an expiresAt in the past.
    mount(
        &f,
        "GetAuthorizationToken",
        ResponseTemplate::new(200).set_body_json(token_answer(-3600)),
    )
    .await;
    mount(
        &f,
        "DescribeRepositories",
        ResponseTemplate::new(200).set_body_json(json!({"repositories": []})),
    )
    .await;
    let c = f.build();
    c.check_health().await;
    c.check_health().await;
    let mints = f
        .server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.headers["x-amz-target"] == target("GetAuthorizationToken").as_str())
        .count();
    assert_eq!(mints, 2);
}

#[tokio::test]
async fn the_minted_token_is_the_registry_password() {
    let f = fixture().await;
    mount_healthy(&f).await;
    let spec = f.spec(f.credential());
    let ecr = EcrConnector {
        endpoint: format!("{}/", f.server.uri()),
        config: crate::config::parse(&spec.config).unwrap(),
        credential: spec.credential(),
        token_key: TokenKey::new(&spec, "authorization"),
        env: f.env.clone(),
    };
    let token = ecr.authorization_token().await.unwrap();
    assert_eq!(token.expose(), format!("AWS:{REGISTRY_PASSWORD}"));
}

#[tokio::test]
async fn repositories_are_listed_page_by_page() {
    let f = fixture().await;
    Mock::given(method("POST"))
        .and(header(
            "x-amz-target",
            target("DescribeRepositories").as_str(),
        ))
        .and(|r: &Request| {
            let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
            body["maxResults"] == 100 && body.get("nextToken").is_none()
        })
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "repositories": [{"repositoryName": "a"}], "nextToken": "page+2/token=="
        })))
        .mount(&f.server)
        .await;
    Mock::given(method("POST"))
        .and(header(
            "x-amz-target",
            target("DescribeRepositories").as_str(),
        ))
        .and(|r: &Request| {
            let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
            body["nextToken"] == "page+2/token=="
        })
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"repositories": [{"repositoryName": "b"}]})),
        )
        .mount(&f.server)
        .await;
    let c = f.build();
    let first = c.list_resources(None).await.unwrap();
    assert_eq!(first.resources[0].name, "a");
    assert_eq!(first.resources[0].id, "a");
    assert_eq!(first.resources[0].kind, "image_repository");
    let cursor = first.next_cursor.unwrap();
    let second = c.list_resources(Some(&cursor)).await.unwrap();
    assert_eq!(second.resources[0].name, "b");
    assert_eq!(second.next_cursor, None);
    for bad in ["", "with space", &"x".repeat(MAX_CURSOR_LEN + 1), "tab\t"] {
        assert!(
            matches!(c.list_resources(Some(bad)).await, Err(Error::InvalidCursor)),
            "{bad:?}"
        );
    }
}

#[tokio::test]
async fn aws_errors_become_health_reasons() {
    for (status, body, reason) in [
        (
            400,
            json!({"__type": "UnrecognizedClientException", "message": "bad key"}).to_string(),
            Reason::AuthFailed,
        ),
        (
            403,
            "<ErrorResponse><Errors><Error><Code>SignatureDoesNotMatch</Code></Error></Errors></ErrorResponse>".to_owned(),
            Reason::AuthFailed,
        ),
        (
            400,
            json!({"__type": "com.amazonaws.ecr#AccessDeniedException"}).to_string(),
            Reason::Forbidden,
        ),
        (
            400,
            json!({"__type": "ThrottlingException"}).to_string(),
            Reason::RateLimited,
        ),
        (500, json!({"__type": "ServerException"}).to_string(), Reason::ProviderDegraded),
        (200, "not json".to_owned(), Reason::BadResponse),
    ] {
        let f = fixture().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(status).set_body_string(body.clone()))
            .mount(&f.server)
            .await;
        let report = f.build().check_health().await;
        assert_eq!(report.reason, Some(reason), "{status} {body}: {report:?}");
        assert!(!format!("{report:?}").contains(SECRET_KEY));
    }
}

#[tokio::test]
async fn a_rotated_secret_is_read_again_after_a_refusal() {
    let f = fixture().await;
    // The old key is refused; the new one (written after the connector first read the old)
    // is accepted.
    Mock::given(method("POST"))
        .and(|r: &Request| {
            r.headers["authorization"]
                .to_str()
                .unwrap()
                .contains("Credential=AKIAOLDKEY/")
        })
        .respond_with(
            ResponseTemplate::new(400)
                .set_body_json(json!({"__type": "UnrecognizedClientException"})),
        )
        .with_priority(1)
        .mount(&f.server)
        .await;
    mount_healthy(&f).await;
    f.write_secret("aws", &access_key_json("AKIAOLDKEY", "old"));
    let c = f.build();
    // Prime the secret cache with the old key.
    assert_eq!(c.check_health().await.reason, Some(Reason::AuthFailed));
    f.write_secret("aws", &access_key_json(KEY_ID, SECRET_KEY));
    assert_eq!(c.check_health().await, HealthReport::healthy());
}

#[tokio::test]
async fn credentials_that_cannot_be_used_are_credential_unavailable() {
    let f = fixture().await;
    mount_healthy(&f).await;
    // No AuthRef.
    let report = f.build_with(None).check_health().await;
    assert_eq!(
        report.reason,
        Some(Reason::CredentialUnavailable),
        "{report:?}"
    );
    // A #key on the reference: the connector needs the whole secret.
    let keyed = Some(
        format!(
            "authref://file/tenants/{}/aws#access_key_id",
            crate::testing::TENANT
        )
        .parse()
        .unwrap(),
    );
    let report = f.build_with(keyed).check_health().await;
    assert_eq!(
        report.reason,
        Some(Reason::CredentialUnavailable),
        "{report:?}"
    );
    // A secret without the secret access key.
    f.write_secret("aws", &json!({"access_key_id": KEY_ID}).to_string());
    let report = f.build().check_health().await;
    assert_eq!(
        report.reason,
        Some(Reason::CredentialUnavailable),
        "{report:?}"
    );
    assert_eq!(f.server.received_requests().await.unwrap().len(), 0);
}

#[tokio::test]
async fn temporary_credentials_send_their_session_token() {
    let f = fixture().await;
    f.write_secret(
        "aws",
        &json!({"access_key_id": KEY_ID, "secret_access_key": SECRET_KEY, "session_token": "sts-session"})
            .to_string(),
    );
    Mock::given(method("POST"))
        .and(header("x-amz-security-token", "sts-session"))
        .respond_with(ResponseTemplate::new(200).set_body_json(token_answer(3600)))
        .mount(&f.server)
        .await;
    let c = f.build();
    // The answer serves both calls' shapes well enough for the health check to pass only
    // when the token is sent.
    let report = c.check_health().await;
    assert_eq!(report, HealthReport::healthy(), "{report:?}");
}

/// The attacker's side: an endpoint override cannot aim the key at a host its secret is not
/// bound to, and the SSRF guard still refuses internal targets.
#[tokio::test]
async fn the_endpoint_override_stays_behind_the_ssrf_guard() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir
        .path()
        .join("tenants")
        .join(crate::testing::TENANT)
        .join("aws");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(&file, access_key_json(KEY_ID, SECRET_KEY)).unwrap();
    crate::testing::install_crypto();
    // Default settings: loopback is not allowed.
    let env = crate::testing::loopback_env_with(dir.path(), |s| {
        s.outbound.allow_private_networks.clear();
    });
    let spec = crate::testing::fixture::spec(
        &Factory,
        json!({"region": "eu-west-1", "endpointUrl": "http://127.0.0.1:9/"}),
        crate::testing::fixture::secret_ref("aws"),
    );
    let report = crate::provider::ConnectorFactory::build(&Factory, &spec, &env)
        .unwrap()
        .check_health()
        .await;
    assert_eq!(report.reason, Some(Reason::Network), "{report:?}");
}

#[test]
fn configurations_are_checked() {
    use crate::provider::ConnectorFactory;
    let ok = |v: serde_json::Value| Factory.validate_config(v.as_object().unwrap());
    assert!(ok(json!({"region": "eu-west-1"})).is_ok());
    assert!(ok(json!({"region": "us-gov-west-1", "registryId": "123456789012"})).is_ok());
    for (bad, field) in [
        (json!({"region": "evil.com/x"}), "config.region"),
        (json!({"region": "EU-WEST-1"}), "config.region"),
        (json!({"region": ""}), "config.region"),
        (
            json!({"region": "eu-west-1", "registryId": "12"}),
            "config.registryId",
        ),
        (
            json!({"region": "eu-west-1", "endpointUrl": "ftp://x"}),
            "config.endpointUrl",
        ),
        (
            json!({"region": "eu-west-1", "endpointUrl": "https://u:p@x.test"}),
            "config.endpointUrl",
        ),
        (
            json!({"region": "eu-west-1", "pageSize": 0}),
            "config.pageSize",
        ),
    ] {
        let e = ok(bad.clone()).unwrap_err();
        assert_eq!(e.field(), field, "{bad}");
    }
}

#[test]
fn error_codes_are_read_from_json_and_xml() {
    assert_eq!(
        aws_error_code(br#"{"__type":"com.amazon.coral.service#UnrecognizedClientException"}"#)
            .as_deref(),
        Some("UnrecognizedClientException")
    );
    assert_eq!(
        aws_error_code(b"<Error><Code>InvalidClientTokenId</Code></Error>").as_deref(),
        Some("InvalidClientTokenId")
    );
    assert_eq!(aws_error_code(b"nothing"), None);
}

/// The attacker's side: a tenant who may change the integration's `endpointUrl` cannot make
/// the connector sign for (or send the session token to) a host the access key's owner did
/// not allow: the secret's binding covers every field, and nothing is sent.
#[tokio::test]
async fn the_secrets_host_binding_holds_for_every_field() {
    let f = fixture().await;
    mount_healthy(&f).await;
    f.write_secret(
        "aws",
        &json!({"access_key_id": KEY_ID, "secret_access_key": SECRET_KEY, "session_token": "sts-x"})
            .to_string(),
    );
    f.write_secret(
        "aws.meta.json",
        &json!({"allowed_hosts": ["api.ecr.eu-west-1.amazonaws.com"]}).to_string(),
    );
    let report = f.build().check_health().await;
    assert_eq!(
        report.reason,
        Some(Reason::CredentialUnavailable),
        "{report:?}"
    );
    assert!(
        report.message.as_deref().unwrap().contains("127.0.0.1"),
        "{report:?}"
    );
    assert!(!format!("{report:?}").contains(SECRET_KEY));
    assert_eq!(f.server.received_requests().await.unwrap().len(), 0);
    // Bound to the mock's host, it is sent.
    let host = url::Url::parse(&f.server.uri()).unwrap();
    f.write_secret(
        "aws.meta.json",
        &json!({"allowed_hosts": [format!("{}:{}", host.host_str().unwrap(), host.port().unwrap())]})
            .to_string(),
    );
    // The secret cache still holds the old binding: drop it, as a rotation would.
    for field in [
        ACCESS_KEY_ID_FIELD,
        SECRET_ACCESS_KEY_FIELD,
        SESSION_TOKEN_FIELD,
    ] {
        let reference = format!(
            "authref://file/tenants/{}/aws#{field}",
            crate::testing::TENANT
        );
        f.env
            .secrets
            .invalidate(&TenantRef::new(
                crate::testing::TENANT,
                reference.parse().unwrap(),
            ))
            .await;
    }
    assert_eq!(f.build().check_health().await, HealthReport::healthy());
}

#[test]
fn the_schema_pattern_of_regions_admits_what_valid_region_admits() {
    let pattern = regex::Regex::new(REGION_PATTERN).unwrap();
    for region in [
        "eu-west-1",
        "us-gov-east-1",
        "a",
        "-eu",
        "eu-",
        "EU-west-1",
        "eu_west",
        &"a".repeat(32),
        &"a".repeat(33),
    ] {
        assert_eq!(pattern.is_match(region), valid_region(region), "{region}");
    }
}
