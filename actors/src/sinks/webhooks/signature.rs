//! Signing deliveries: HMAC-SHA256 over `"{timestamp}.{body}"`, sent as
//! `X-Stella-Signature-256: sha256=<hex>` next to `X-Stella-Timestamp`, in the manner of
//! GitHub's `X-Hub-Signature-256` with the timestamp bound in (so a captured delivery cannot
//! be replayed later with a fresh timestamp).

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The CloudEvents `id`, also sent as [`IDEMPOTENCY_KEY_HEADER`].
pub const EVENT_ID_HEADER: &str = "X-Stella-Event-Id";
/// The same event id: a consumer that stores it can drop redeliveries.
pub const IDEMPOTENCY_KEY_HEADER: &str = "Idempotency-Key";
/// Unix seconds when the attempt was signed.
pub const TIMESTAMP_HEADER: &str = "X-Stella-Timestamp";
/// `sha256=<lower-case hex HMAC-SHA256(secret, "{timestamp}.{body}")>`.
pub const SIGNATURE_HEADER: &str = "X-Stella-Signature-256";
/// The media type of a structured-mode CloudEvent.
pub const CONTENT_TYPE: &str = "application/cloudevents+json";
/// The media type of a CloudEvents JSON batch: a JSON array of structured-mode events.
pub const BATCH_CONTENT_TYPE: &str = "application/cloudevents-batch+json";
/// How many events a batch carries.
pub const BATCH_SIZE_HEADER: &str = "X-Stella-Batch-Size";

type HmacSha256 = Hmac<Sha256>;

fn mac(secret: &[u8], timestamp: i64, body: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length.
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC accepts any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The signature header value of `body` sent at `timestamp`.
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    format!(
        "sha256={}",
        hex::encode(mac(secret, timestamp, body).finalize().into_bytes())
    )
}

/// Whether `header` is the signature of `body` sent at `timestamp`, compared in constant
/// time. What a consumer does (see `docs/events.md`), also used by the tests.
pub fn verify(secret: &[u8], timestamp: i64, body: &[u8], header: &str) -> bool {
    let Some(hex_sig) = header.strip_prefix("sha256=") else {
        return false;
    };
    let Ok(bytes) = hex::decode(hex_sig) else {
        return false;
    };
    mac(secret, timestamp, body).verify_slice(&bytes).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_an_independent_hmac() {
        // printf '%s' '1700000000.{"id":"x"}' | openssl dgst -sha256 -hmac whsec_test
        assert_eq!(
            sign(b"whsec_test", 1_700_000_000, br#"{"id":"x"}"#),
            "sha256=80e8d098018f757aa814ab1abb924f35d304affa1d93d29611a54696207eb7c3"
        );
    }

    #[test]
    fn verification_binds_secret_timestamp_and_body() {
        let header = sign(b"k", 10, b"body");
        assert!(verify(b"k", 10, b"body", &header));
        assert!(!verify(b"other", 10, b"body", &header));
        assert!(!verify(b"k", 11, b"body", &header));
        assert!(!verify(b"k", 10, b"body!", &header));
        assert!(!verify(
            b"k",
            10,
            b"body",
            header.trim_start_matches("sha256=")
        ));
        assert!(!verify(b"k", 10, b"body", "sha256=zz"));
    }
}
