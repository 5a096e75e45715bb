//! Per-host rate limits, shared by every integration: a governor limit on how fast we call a
//! host, and a pause whenever a provider answers 429 or a rate-limit header at zero. Until the
//! pause ends, calls to that host fail fast as rate limited instead of being sent.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::Duration;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use tokio::time::Instant;
use url::Url;

use crate::error::Error;

/// The key a host is limited by: its name and port (`host:port`).
pub(super) fn host_key(url: &Url) -> String {
    let host = url.host_str().unwrap_or_default();
    format!("{host}:{}", url.port_or_known_default().unwrap_or(0))
}

/// The rate limit and the pauses of every host.
pub(super) struct HostLimits {
    limiter: DefaultKeyedRateLimiter<String>,
    /// Host → the instant before which the provider asked not to be called.
    paused: Mutex<HashMap<String, Instant>>,
}

impl HostLimits {
    /// `rate` requests a second to each host, with bursts of up to `burst`.
    pub(super) fn new(rate: NonZeroU32, burst: NonZeroU32) -> Self {
        Self {
            limiter: RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst)),
            paused: Mutex::new(HashMap::new()),
        }
    }

    /// Waits, at most `max_wait`, until a request may go to the host of `key` (a [`host_key`],
    /// taken as the limiter's own key type).
    ///
    /// # Errors
    /// [`Error::RateLimited`] when the host is paused (with what is left of the pause), or when
    /// its limit does not free up within `max_wait`.
    pub(super) async fn admit(&self, key: &String, max_wait: Duration) -> Result<(), Error> {
        if let Some(left) = self.paused_for(key) {
            return Err(Error::RateLimited {
                retry_after: Some(left),
            });
        }
        if tokio::time::timeout(max_wait, self.limiter.until_key_ready(key))
            .await
            .is_err()
        {
            return Err(Error::RateLimited {
                retry_after: Some(Duration::from_secs(1)),
            });
        }
        Ok(())
    }

    /// Stops calls to the host of `key` for `wait`.
    pub(super) fn pause(&self, key: &str, wait: Duration) {
        let mut paused = self.paused.lock().unwrap_or_else(|e| e.into_inner());
        paused.insert(key.to_owned(), Instant::now() + wait);
    }

    fn paused_for(&self, key: &str) -> Option<Duration> {
        let mut paused = self.paused.lock().unwrap_or_else(|e| e.into_inner());
        match paused.get(key) {
            Some(until) if *until > Instant::now() => Some(*until - Instant::now()),
            Some(_) => {
                paused.remove(key);
                None
            }
            None => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbound::USER_AGENT;
    use crate::outbound::tests::loopback;

    #[tokio::test]
    async fn a_rate_limited_host_is_paused_without_sending() {
        use wiremock::matchers::path;
        use wiremock::{Mock, MockServer, ResponseTemplate};
        let server = MockServer::start().await;
        Mock::given(path("/limited"))
            .and(wiremock::matchers::header("user-agent", USER_AGENT))
            .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "30"))
            .expect(1)
            .mount(&server)
            .await;
        let outbound = loopback(|_| {});
        let url = format!("{}/limited", server.uri());
        for _ in 0..3 {
            let req = outbound.request(reqwest::Method::GET, &url).unwrap();
            match outbound.send(req).await {
                Err(Error::RateLimited {
                    retry_after: Some(wait),
                }) => assert!(wait <= Duration::from_secs(30) && wait > Duration::from_secs(25)),
                other => panic!("{other:?}"),
            }
        }
        // `expect(1)`: the later calls never reached the provider.
    }

    #[tokio::test]
    async fn the_per_host_limit_queues_then_reports_rate_limited() {
        use wiremock::{Mock, MockServer, ResponseTemplate};
        let server = MockServer::start().await;
        Mock::given(wiremock::matchers::any())
            .respond_with(ResponseTemplate::new(200))
            .mount(&server)
            .await;
        let outbound = loopback(|s| {
            s.per_host_requests_per_second = 1;
            s.per_host_burst = 2;
            s.max_rate_wait_ms = 100;
        });
        let mut outcomes = Vec::new();
        for _ in 0..3 {
            let req = outbound
                .request(reqwest::Method::GET, &server.uri())
                .unwrap();
            outcomes.push(outbound.send(req).await.map(|r| r.status().as_u16()));
        }
        assert!(matches!(outcomes[0], Ok(200)) && matches!(outcomes[1], Ok(200)));
        assert!(
            matches!(outcomes[2], Err(Error::RateLimited { .. })),
            "{:?}",
            outcomes[2]
        );
    }
}
