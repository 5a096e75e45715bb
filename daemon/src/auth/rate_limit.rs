//! Per-principal rate limits (governor's keyed GCRA limiter).

use std::num::NonZeroU32;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use super::AuthError;
use crate::config::RateLimitConfig;

pub struct Limiter {
    limiter: DefaultKeyedRateLimiter<String>,
    clock: DefaultClock,
}

impl Limiter {
    /// `None` when rate limiting is disabled (`per_second = 0`).
    pub fn new(config: &RateLimitConfig) -> Option<Self> {
        let per_second = NonZeroU32::new(config.per_second)?;
        let burst = NonZeroU32::new(config.burst.max(config.per_second)).unwrap_or(per_second);
        Some(Self {
            limiter: RateLimiter::keyed(Quota::per_second(per_second).allow_burst(burst)),
            clock: DefaultClock::default(),
        })
    }

    /// Charges one request to `key`.
    ///
    /// # Errors
    /// [`AuthError::RateLimited`] with the time until the next request would pass.
    pub fn check(&self, key: &String) -> Result<(), AuthError> {
        self.limiter
            .check_key(key)
            .map_err(|not_until| AuthError::RateLimited {
                retry_after: not_until.wait_time_from(self.clock.now()),
            })
    }

    pub fn retain_recent(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_then_limits_per_key() {
        let limiter = Limiter::new(&RateLimitConfig {
            per_second: 1,
            burst: 3,
        })
        .unwrap();
        let (a, b) = ("a".to_string(), "b".to_string());
        for _ in 0..3 {
            limiter.check(&a).unwrap();
        }
        match limiter.check(&a) {
            Err(AuthError::RateLimited { retry_after }) => {
                assert!(retry_after.as_secs_f64() <= 1.0)
            }
            other => panic!("expected a rate limit, got {other:?}"),
        }
        limiter.check(&b).expect("another key has its own budget");
        assert!(
            Limiter::new(&RateLimitConfig {
                per_second: 0,
                burst: 0
            })
            .is_none()
        );
    }
}
