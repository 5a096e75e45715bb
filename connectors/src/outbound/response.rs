//! Reading a provider's answer: a non-success status as a domain error, and a JSON body read
//! no further than a size limit.

use reqwest::{Response, StatusCode};

use crate::error::Error;

/// The error of a non-success status, in domain terms.
pub fn status_error(status: StatusCode, what: &str) -> Error {
    match status {
        StatusCode::UNAUTHORIZED => Error::Unauthorized,
        StatusCode::FORBIDDEN => Error::Forbidden,
        StatusCode::NOT_FOUND => Error::NotFound(what.to_owned()),
        StatusCode::REQUEST_TIMEOUT | StatusCode::GATEWAY_TIMEOUT => Error::Timeout,
        s if s.is_server_error() => Error::Provider { status: s.as_u16() },
        s => Error::BadResponse(format!("{what}: unexpected HTTP {}", s.as_u16())),
    }
}

/// Reads a JSON body, refusing bodies larger than `max` bytes.
///
/// # Errors
/// [`Error::BadResponse`] for an oversized or malformed body; a transport error while reading.
pub async fn read_json<T: serde::de::DeserializeOwned>(
    mut response: Response,
    max: u64,
    what: &str,
) -> Result<T, Error> {
    if response.content_length().is_some_and(|n| n > max) {
        return Err(Error::BadResponse(format!("{what}: response too large")));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(Error::from)? {
        if body.len() as u64 + chunk.len() as u64 > max {
            return Err(Error::BadResponse(format!("{what}: response too large")));
        }
        body.extend_from_slice(&chunk);
    }
    serde_json::from_slice(&body)
        .map_err(|e| Error::BadResponse(format!("{what}: not the expected JSON ({e})")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbound::tests::loopback;

    #[tokio::test]
    async fn oversized_bodies_are_bad_responses() {
        use wiremock::{Mock, MockServer, ResponseTemplate};
        let server = MockServer::start().await;
        Mock::given(wiremock::matchers::any())
            .respond_with(
                ResponseTemplate::new(200).set_body_string(format!("\"{}\"", "x".repeat(2048))),
            )
            .mount(&server)
            .await;
        let outbound = loopback(|_| {});
        let req = outbound
            .request(reqwest::Method::GET, &server.uri())
            .unwrap();
        let response = outbound.send(req).await.unwrap();
        let read: Result<String, _> = read_json(response, 1024, "big").await;
        assert!(matches!(read, Err(Error::BadResponse(_))), "{read:?}");
    }
}
