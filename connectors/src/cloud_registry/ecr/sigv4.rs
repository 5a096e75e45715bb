//! AWS Signature Version 4 for the ECR API calls, with the `aws-sigv4` crate (the signer of
//! the AWS SDK for Rust): the canonical request, the string to sign and the HMAC chain are
//! its, the request as sent is ours.

use std::time::SystemTime;

use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;

use crate::connector::Error;
use crate::secrets::Secret;

/// An AWS access key as resolved from the integration's AuthRef.
pub(crate) struct AccessKey {
    pub(crate) id: Secret,
    pub(crate) secret: Secret,
    /// For temporary credentials (STS).
    pub(crate) session_token: Option<Secret>,
}

/// What is signed of a request.
pub(crate) struct Parts<'a> {
    pub(crate) method: &'a str,
    pub(crate) url: &'a str,
    /// The request's own headers that must be signed (`content-type`, `x-amz-target`);
    /// `host` is taken from `url`.
    pub(crate) headers: &'a [(&'a str, &'a str)],
    pub(crate) body: &'a [u8],
}

/// The headers that sign a request: `authorization`, `x-amz-date` and, with temporary
/// credentials, `x-amz-security-token`.
///
/// # Errors
/// [`Error::BadCredential`] when the request cannot be signed (a malformed URL or header).
pub(crate) fn sign_headers(
    key: &AccessKey,
    region: &str,
    service: &str,
    parts: Parts<'_>,
    time: SystemTime,
) -> Result<Vec<(String, String)>, Error> {
    let Parts {
        method,
        url,
        headers,
        body,
    } = parts;
    let identity = aws_credential_types::Credentials::new(
        key.id.expose(),
        key.secret.expose(),
        key.session_token.as_ref().map(|t| t.expose().to_owned()),
        None,
        "authref",
    )
    .into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(service)
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .map_err(|_| Error::BadCredential("cannot build the SigV4 signing parameters".into()))?
        .into();
    let request = SignableRequest::new(
        method,
        url,
        headers.iter().copied(),
        SignableBody::Bytes(body),
    )
    .map_err(|_| Error::BadCredential("the request cannot be signed".into()))?;
    let (instructions, _signature) = sign(request, &params)
        .map_err(|_| Error::BadCredential("the request cannot be signed".into()))?
        .into_parts();
    Ok(instructions
        .headers()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The access key of AWS's published SigV4 test suite.
    fn example_key(session_token: Option<&str>) -> AccessKey {
        AccessKey {
            id: Secret::new("AKIDEXAMPLE"),
            secret: Secret::new("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"),
            session_token: session_token.map(Secret::new),
        }
    }

    /// 2015-08-30T12:36:00Z, the test suite's date.
    fn suite_time() -> SystemTime {
        SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_440_938_160)
    }

    fn header<'a>(signed: &'a [(String, String)], name: &str) -> Option<&'a str> {
        signed
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// AWS SigV4 test suite, `get-vanilla`: GET / on example.amazonaws.com.
    #[test]
    fn signs_the_get_vanilla_test_vector() {
        let signed = sign_headers(
            &example_key(None),
            "us-east-1",
            "service",
            Parts {
                method: "GET",
                url: "https://example.amazonaws.com/",
                headers: &[],
                body: b"",
            },
            suite_time(),
        )
        .unwrap();
        assert_eq!(header(&signed, "x-amz-date"), Some("20150830T123600Z"));
        assert_eq!(
            header(&signed, "authorization"),
            Some(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
                 SignedHeaders=host;x-amz-date, \
                 Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
            )
        );
        assert_eq!(header(&signed, "x-amz-security-token"), None);
    }

    /// AWS SigV4 test suite, `post-vanilla`: POST / with an empty body.
    #[test]
    fn signs_the_post_vanilla_test_vector() {
        let signed = sign_headers(
            &example_key(None),
            "us-east-1",
            "service",
            Parts {
                method: "POST",
                url: "https://example.amazonaws.com/",
                headers: &[],
                body: b"",
            },
            suite_time(),
        )
        .unwrap();
        assert_eq!(
            header(&signed, "authorization"),
            Some(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
                 SignedHeaders=host;x-amz-date, \
                 Signature=5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"
            )
        );
    }

    #[test]
    fn temporary_credentials_carry_their_session_token_signed() {
        let signed = sign_headers(
            &example_key(Some("session-token-value")),
            "eu-west-1",
            "ecr",
            Parts {
                method: "POST",
                url: "http://127.0.0.1:4566/",
                headers: &[
                    ("content-type", "application/x-amz-json-1.1"),
                    (
                        "x-amz-target",
                        "AmazonEC2ContainerRegistry_V20150921.DescribeRepositories",
                    ),
                ],
                body: b"{}",
            },
            suite_time(),
        )
        .unwrap();
        assert_eq!(
            header(&signed, "x-amz-security-token"),
            Some("session-token-value")
        );
        let auth = header(&signed, "authorization").unwrap();
        assert!(
            auth.contains("/20150830/eu-west-1/ecr/aws4_request"),
            "{auth}"
        );
        assert!(
            auth.contains(
                "SignedHeaders=content-type;host;x-amz-date;x-amz-security-token;x-amz-target"
            ),
            "{auth}"
        );
        assert!(!auth.contains("wJalrXUtnFEMI"), "{auth}");
    }
}
