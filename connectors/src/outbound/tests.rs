//! The tests of [`Outbound`]'s construction and client, and the helpers every outbound test
//! shares.

use reqwest::header::{HeaderMap, HeaderValue};

use super::*;

pub(super) fn loopback(tweak: impl FnOnce(&mut OutboundSettings)) -> Outbound {
    let mut settings = crate::testing::loopback_settings().outbound;
    tweak(&mut settings);
    Outbound::new(&settings).unwrap()
}

pub(super) fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(*k, HeaderValue::from_str(v).unwrap());
    }
    h
}

#[test]
fn bad_settings_are_refused() {
    let bad = OutboundSettings {
        allow_private_networks: vec!["ten".into()],
        ..OutboundSettings::default()
    };
    assert!(matches!(
        Outbound::lazy(&bad),
        Err(OutboundError::BadNetwork(_))
    ));
    let zero = OutboundSettings {
        per_host_requests_per_second: 0,
        ..OutboundSettings::default()
    };
    assert!(matches!(
        Outbound::lazy(&zero),
        Err(OutboundError::ZeroRate)
    ));
    let single = OutboundSettings {
        allow_private_networks: vec!["127.0.0.1".into()],
        ..OutboundSettings::default()
    };
    assert!(Outbound::lazy(&single).is_ok());
}

#[tokio::test]
async fn redirects_are_not_followed_and_tls_failures_are_typed() {
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let server = MockServer::start().await;
    Mock::given(wiremock::matchers::any())
        .respond_with(
            ResponseTemplate::new(302).insert_header("location", "http://169.254.169.254/"),
        )
        .mount(&server)
        .await;
    let outbound = loopback(|_| {});
    let req = outbound
        .request(reqwest::Method::GET, &server.uri())
        .unwrap();
    assert_eq!(outbound.send(req).await.unwrap().status(), 302);
    // TLS to a plain-HTTP server fails in the handshake.
    let https = server.uri().replace("http://", "https://");
    let req = outbound.request(reqwest::Method::GET, &https).unwrap();
    let err = outbound.send(req).await.unwrap_err();
    assert_eq!(err.reason(), crate::Reason::Tls, "{err:?}");
}
