//! A provider's answer read as "slow down": a 429, or a 403 that GitHub's primary or secondary
//! limit explains, with the wait its `Retry-After` or `X-RateLimit-Reset` header asks for,
//! turned into one signal, [`rate_limit_signal`].

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::HeaderMap;

use crate::error::DEFAULT_RETRY_AFTER;

/// Longest pause honoured from a provider's `Retry-After` or reset header.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// How long the provider asks us to wait, when a response says "rate limited": a 429, or a
/// 403 with `X-RateLimit-Remaining: 0` (GitHub's primary limit) or with `Retry-After`
/// (GitHub's secondary limit).
pub fn rate_limit_signal(status: StatusCode, headers: &HeaderMap) -> Option<Duration> {
    let exhausted = header_u64(headers, "x-ratelimit-remaining") == Some(0);
    let limited = status == StatusCode::TOO_MANY_REQUESTS
        || (status == StatusCode::FORBIDDEN
            && (exhausted || headers.contains_key(reqwest::header::RETRY_AFTER)));
    limited.then(|| retry_after(headers).unwrap_or(DEFAULT_RETRY_AFTER))
}

fn header_u64(headers: &HeaderMap, name: &str) -> Option<u64> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

/// The wait a response asks for: `Retry-After` (seconds or an HTTP date), else
/// `X-RateLimit-Reset` (epoch seconds) when the remaining quota is zero. Capped at
/// [`MAX_RETRY_AFTER`].
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let from_retry_after = headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let v = v.trim();
            v.parse::<u64>().map(Duration::from_secs).ok().or_else(|| {
                httpdate::parse_http_date(v).ok().map(|at| {
                    at.duration_since(std::time::SystemTime::now())
                        .unwrap_or_default()
                })
            })
        });
    let from_reset = || {
        if header_u64(headers, "x-ratelimit-remaining") != Some(0) {
            return None;
        }
        let reset = header_u64(headers, "x-ratelimit-reset")?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .ok()?
            .as_secs();
        Some(Duration::from_secs(reset.saturating_sub(now)))
    };
    from_retry_after
        .or_else(from_reset)
        .map(|d| d.clamp(Duration::from_secs(1), MAX_RETRY_AFTER))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbound::tests::headers;

    #[test]
    fn rate_limit_signals_and_waits() {
        let h = headers(&[("retry-after", "7")]);
        assert_eq!(
            rate_limit_signal(StatusCode::TOO_MANY_REQUESTS, &h),
            Some(Duration::from_secs(7))
        );
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let reset = (now + 120).to_string();
        let gh = headers(&[
            ("x-ratelimit-remaining", "0"),
            ("x-ratelimit-reset", reset.as_str()),
        ]);
        let wait = rate_limit_signal(StatusCode::FORBIDDEN, &gh).unwrap();
        assert!(wait > Duration::from_secs(100) && wait <= Duration::from_secs(120));
        // a plain 403 is a permission problem, not a rate limit
        let plain = headers(&[("x-ratelimit-remaining", "4999")]);
        assert_eq!(rate_limit_signal(StatusCode::FORBIDDEN, &plain), None);
        assert_eq!(
            rate_limit_signal(StatusCode::TOO_MANY_REQUESTS, &HeaderMap::new()),
            Some(DEFAULT_RETRY_AFTER)
        );
        let huge = headers(&[("retry-after", "999999")]);
        assert_eq!(retry_after(&huge), Some(MAX_RETRY_AFTER));
        let date = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(30));
        let dated = headers(&[("retry-after", date.as_str())]);
        let d = retry_after(&dated).unwrap();
        assert!(
            d >= Duration::from_secs(28) && d <= Duration::from_secs(30),
            "{d:?}"
        );
    }
}
