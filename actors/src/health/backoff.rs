//! Exponential backoff with jitter, for integrations that keep failing.

use std::time::Duration;

/// A validated exponential backoff: the `n`th delay is `min * 2^n` capped at `max`, then
/// spread by up to `±jitter` of itself.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    jitter: f64,
}

/// Why a backoff cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidBackoff {
    #[error("the minimum delay must be positive")]
    ZeroMin,
    #[error("the maximum delay must not be below the minimum")]
    MaxBelowMin,
    #[error("jitter must be a fraction from 0 to 1")]
    Jitter,
}

impl Backoff {
    /// # Errors
    /// [`InvalidBackoff`] for a zero minimum, a maximum below it, or jitter outside `0..=1`.
    pub fn try_new(min: Duration, max: Duration, jitter: f64) -> Result<Self, InvalidBackoff> {
        if min.is_zero() {
            return Err(InvalidBackoff::ZeroMin);
        }
        if max < min {
            return Err(InvalidBackoff::MaxBelowMin);
        }
        if !(0.0..=1.0).contains(&jitter) {
            return Err(InvalidBackoff::Jitter);
        }
        Ok(Self { min, max, jitter })
    }

    /// The delay before retry number `attempt` (0 for the first retry); `unit` is a random
    /// number in `[0, 1)` that picks the point in the jitter range.
    pub fn delay(&self, attempt: u32, unit: f64) -> Duration {
        let base = self
            .min
            .checked_mul(1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX))
            .unwrap_or(self.max)
            .min(self.max);
        spread(base, self.jitter, unit).min(self.max)
    }

    pub fn max(&self) -> Duration {
        self.max
    }
}

/// `base` moved by up to `±jitter` of itself, at the point `unit` in `[0, 1)` picks.
pub fn spread(base: Duration, jitter: f64, unit: f64) -> Duration {
    let factor = 1.0 + jitter * (2.0 * unit.clamp(0.0, 1.0) - 1.0);
    base.mul_f64(factor.max(0.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rejects_bad_parameters() {
        let s = Duration::from_secs;
        assert_eq!(
            Backoff::try_new(s(0), s(1), 0.1),
            Err(InvalidBackoff::ZeroMin)
        );
        assert_eq!(
            Backoff::try_new(s(2), s(1), 0.1),
            Err(InvalidBackoff::MaxBelowMin)
        );
        assert_eq!(
            Backoff::try_new(s(1), s(2), 1.5),
            Err(InvalidBackoff::Jitter)
        );
    }

    #[test]
    fn doubles_until_the_cap() {
        let b = Backoff::try_new(Duration::from_secs(30), Duration::from_secs(600), 0.0).unwrap();
        let delays: Vec<u64> = (0..7).map(|n| b.delay(n, 0.5).as_secs()).collect();
        assert_eq!(delays, [30, 60, 120, 240, 480, 600, 600]);
    }

    proptest! {
        #[test]
        fn delays_stay_within_bounds(
            min_ms in 1u64..60_000,
            extra_ms in 0u64..3_600_000,
            jitter in 0.0f64..=1.0,
            attempt in 0u32..100,
            unit in 0.0f64..1.0,
        ) {
            let min = Duration::from_millis(min_ms);
            let max = min + Duration::from_millis(extra_ms);
            let b = Backoff::try_new(min, max, jitter).unwrap();
            let d = b.delay(attempt, unit);
            prop_assert!(d <= max);
            let base = b.delay(attempt, 0.5);
            prop_assert!(d.as_secs_f64() >= base.as_secs_f64() * (1.0 - jitter) - 1e-6);
        }

        #[test]
        fn grows_monotonically_without_jitter(min_ms in 1u64..10_000, attempt in 0u32..40) {
            let b = Backoff::try_new(Duration::from_millis(min_ms), Duration::from_secs(86_400), 0.0).unwrap();
            prop_assert!(b.delay(attempt + 1, 0.0) >= b.delay(attempt, 0.0));
        }
    }
}
