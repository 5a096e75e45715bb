//! A provider's answer read as "slow down": a 429, or a 403 that GitHub's primary or secondary
//! limit explains, with the wait its `Retry-After` or `X-RateLimit-Reset` header asks for,
//! turned into one signal, [`rate_limit_signal`]; and its quota headers, whichever provider's
//! dialect, read as one [`Quota`] ([`quota_from_headers`]) before the quota runs out.
//!
//! The dialects:
//! - GitHub: `X-RateLimit-Limit`, `X-RateLimit-Remaining`, `X-RateLimit-Reset` (epoch
//!   seconds);
//! - GitLab: `RateLimit-Limit`, `RateLimit-Remaining`, `RateLimit-Reset` (epoch seconds),
//!   `RateLimit-ResetTime` (an HTTP date);
//! - Harbor sends none of its own (its API description defines none); a reverse proxy in
//!   front of it that adds either dialect is read the same way.

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::HeaderMap;

use crate::error::DEFAULT_RETRY_AFTER;
use crate::health::{HealthReport, Quota, Reason};

/// Longest pause honoured from a provider's `Retry-After` or reset header.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// How long the provider asks us to wait, when a response says "rate limited": a 429, or a
/// 403 with `X-RateLimit-Remaining: 0` (GitHub's primary limit) or with `Retry-After`
/// (GitHub's secondary limit).
pub fn rate_limit_signal(status: StatusCode, headers: &HeaderMap) -> Option<Duration> {
    let exhausted =
        first_u64(headers, &["x-ratelimit-remaining", "ratelimit-remaining"]) == Some(0);
    let limited = status == StatusCode::TOO_MANY_REQUESTS
        || (status == StatusCode::FORBIDDEN
            && (exhausted || headers.contains_key(reqwest::header::RETRY_AFTER)));
    limited.then(|| retry_after(headers).unwrap_or(DEFAULT_RETRY_AFTER))
}

fn header_u64(headers: &HeaderMap, name: &str) -> Option<u64> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

/// The first of `names` present as a whole number.
fn first_u64(headers: &HeaderMap, names: &[&str]) -> Option<u64> {
    names.iter().find_map(|n| header_u64(headers, n))
}

/// The provider's quota as a response's headers tell it, in any dialect above; `None` when
/// the response says nothing of the remaining count.
pub fn quota_from_headers(headers: &HeaderMap) -> Option<Quota> {
    let remaining = first_u64(headers, &["x-ratelimit-remaining", "ratelimit-remaining"])?;
    let limit = first_u64(headers, &["x-ratelimit-limit", "ratelimit-limit"]);
    let reset_at = first_u64(headers, &["x-ratelimit-reset", "ratelimit-reset"])
        .and_then(|epoch| i64::try_from(epoch).ok())
        .and_then(|epoch| chrono::DateTime::from_timestamp(epoch, 0))
        .or_else(|| {
            let v = headers.get("ratelimit-resettime")?.to_str().ok()?;
            let at = httpdate::parse_http_date(v.trim()).ok()?;
            Some(chrono::DateTime::<chrono::Utc>::from(at))
        });
    Some(Quota {
        remaining,
        limit,
        reset_at,
    })
}

/// `report` with `quota`, warned `quota_low` (if it was healthy) when less than `percent` %
/// of the limit is left; the message tells what is left and when it resets.
pub fn judge_quota(report: HealthReport, quota: Option<Quota>, percent: u8) -> HealthReport {
    let report = report.with_quota(quota);
    match quota {
        Some(q) if q.is_low(percent) => {
            let limit = q.limit.unwrap_or_default();
            let reset = q.reset_at.map_or_else(String::new, |at| {
                format!(
                    ", reset at {}",
                    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                )
            });
            report.warn(
                Reason::QuotaLow,
                format!(
                    "API quota low: {} of {limit} requests left{reset}",
                    q.remaining
                ),
            )
        }
        _ => report,
    }
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
        if first_u64(headers, &["x-ratelimit-remaining", "ratelimit-remaining"]) != Some(0) {
            return None;
        }
        let reset = first_u64(headers, &["x-ratelimit-reset", "ratelimit-reset"])?;
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

    #[test]
    fn a_low_quota_warns_with_what_is_left_and_the_reset() {
        let h = headers(&[
            ("ratelimit-limit", "2000"),
            ("ratelimit-remaining", "150"),
            ("ratelimit-reset", "1900000000"),
        ]);
        let r = judge_quota(HealthReport::healthy(), quota_from_headers(&h), 10);
        assert_eq!(r.reason, Some(Reason::QuotaLow));
        assert_eq!(
            r.message.as_deref(),
            Some("API quota low: 150 of 2000 requests left, reset at 2030-03-17T17:46:40Z")
        );
        assert_eq!(r.quota.unwrap().remaining, 150);
        // the horizon, and not before: 200 of 2000 is exactly 10 %
        let at = headers(&[("ratelimit-limit", "2000"), ("ratelimit-remaining", "200")]);
        let r = judge_quota(HealthReport::healthy(), quota_from_headers(&at), 10);
        assert_eq!(r.health, crate::Health::Healthy);
        assert_eq!(
            r.quota.unwrap().remaining,
            200,
            "the fields are there all the same"
        );
        let r = judge_quota(HealthReport::healthy(), quota_from_headers(&h), 0);
        assert_eq!(
            r.health,
            crate::Health::Healthy,
            "0 % turns the warning off"
        );
    }

    #[test]
    fn every_dialect_reads_as_one_quota() {
        let github = headers(&[
            ("x-ratelimit-limit", "5000"),
            ("x-ratelimit-remaining", "120"),
            ("x-ratelimit-reset", "1900000000"),
        ]);
        let q = quota_from_headers(&github).unwrap();
        assert_eq!((q.remaining, q.limit), (120, Some(5000)));
        assert_eq!(q.reset_at.unwrap().timestamp(), 1_900_000_000);
        assert!(q.is_low(10));

        let gitlab = headers(&[
            ("ratelimit-limit", "2000"),
            ("ratelimit-remaining", "1999"),
            ("ratelimit-resettime", "Tue, 15 Nov 1994 08:12:31 GMT"),
        ]);
        let q = quota_from_headers(&gitlab).unwrap();
        assert_eq!((q.remaining, q.limit), (1999, Some(2000)));
        assert_eq!(q.reset_at.unwrap().timestamp(), 784_887_151);
        assert!(!q.is_low(10));
        let gitlab_epoch = headers(&[
            ("ratelimit-remaining", "3"),
            ("ratelimit-reset", "1900000000"),
        ]);
        let q = quota_from_headers(&gitlab_epoch).unwrap();
        assert_eq!((q.remaining, q.limit), (3, None));
        assert_eq!(q.reset_at.unwrap().timestamp(), 1_900_000_000);

        assert_eq!(quota_from_headers(&HeaderMap::new()), None);
        let garbage = headers(&[("ratelimit-remaining", "lots"), ("ratelimit-limit", "-1")]);
        assert_eq!(quota_from_headers(&garbage), None);
        // an exhausted GitLab quota on a 429 waits for its reset
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let reset = (now + 90).to_string();
        let gl = headers(&[
            ("ratelimit-remaining", "0"),
            ("ratelimit-reset", reset.as_str()),
        ]);
        let wait = rate_limit_signal(StatusCode::TOO_MANY_REQUESTS, &gl).unwrap();
        assert!(wait > Duration::from_secs(80) && wait <= Duration::from_secs(90));
    }
}
