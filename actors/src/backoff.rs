//! Retry delays, both kinds in one place, validated by one constructor rule.
//!
//! - [`Backoff`]: exponential, spread by up to `±jitter` of itself. Integrations that keep
//!   failing and the NATS relay's reconnects: the delay stays near its step, so a schedule
//!   keeps its shape.
//! - [`FullJitter`]: exponential ceiling, the delay drawn uniformly from `[min, ceiling]`.
//!   Webhook deliveries: after the `n`th failure (from 0) the ceiling is `min * 2^(n+1)`,
//!   capped at `max`. Spreading the whole range keeps many deliveries that failed together (a
//!   consumer that went down) from coming back together; the floor keeps a retry from
//!   following its failure at once.

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

/// The rule both kinds share: a positive minimum, and a maximum not below it.
fn check_bounds(min: Duration, max: Duration) -> Result<(), InvalidBackoff> {
    if min.is_zero() {
        return Err(InvalidBackoff::ZeroMin);
    }
    if max < min {
        return Err(InvalidBackoff::MaxBelowMin);
    }
    Ok(())
}

impl Backoff {
    /// # Errors
    /// [`InvalidBackoff`] for a zero minimum, a maximum below it, or jitter outside `0..=1`.
    pub fn try_new(min: Duration, max: Duration, jitter: f64) -> Result<Self, InvalidBackoff> {
        check_bounds(min, max)?;
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

/// A validated full-jitter backoff.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FullJitter {
    min: Duration,
    max: Duration,
}

impl FullJitter {
    /// # Errors
    /// [`InvalidBackoff`] for a zero minimum or a maximum below it.
    pub fn try_new(min: Duration, max: Duration) -> Result<Self, InvalidBackoff> {
        check_bounds(min, max)?;
        Ok(Self { min, max })
    }

    /// The largest delay after failure number `failure` (0 for the first).
    pub fn ceiling(&self, failure: u32) -> Duration {
        let factor = 1u32
            .checked_shl(failure.saturating_add(1))
            .unwrap_or(u32::MAX);
        self.min
            .checked_mul(factor)
            .unwrap_or(self.max)
            .min(self.max)
    }

    /// The delay after failure number `failure`; `unit` in `[0, 1)` picks the point in
    /// `[min, ceiling]`.
    pub fn delay(&self, failure: u32, unit: f64) -> Duration {
        let span = self.ceiling(failure) - self.min;
        (self.min + span.mul_f64(unit.clamp(0.0, 1.0))).min(self.max)
    }

    pub fn max(&self) -> Duration {
        self.max
    }
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

    #[test]
    fn full_jitter_rejects_bad_parameters() {
        let ms = Duration::from_millis;
        assert_eq!(
            FullJitter::try_new(ms(0), ms(1)),
            Err(InvalidBackoff::ZeroMin)
        );
        assert_eq!(
            FullJitter::try_new(ms(2), ms(1)),
            Err(InvalidBackoff::MaxBelowMin)
        );
    }

    #[test]
    fn ceilings_double_until_the_cap() {
        let b = FullJitter::try_new(Duration::from_secs(1), Duration::from_secs(20)).unwrap();
        let ceilings: Vec<u64> = (0..7).map(|n| b.ceiling(n).as_secs()).collect();
        assert_eq!(ceilings, [2, 4, 8, 16, 20, 20, 20]);
        assert_eq!(b.delay(3, 0.0), Duration::from_secs(1));
        assert_eq!(b.delay(3, 0.5), Duration::from_millis(8500));
        assert_eq!(b.ceiling(u32::MAX), Duration::from_secs(20));
    }

    proptest! {
        #[test]
        fn delays_stay_within_min_and_ceiling(
            min_ms in 1u64..60_000,
            extra_ms in 0u64..3_600_000,
            failure in 0u32..200,
            unit in 0.0f64..1.0,
        ) {
            let min = Duration::from_millis(min_ms);
            let max = min + Duration::from_millis(extra_ms);
            let b = FullJitter::try_new(min, max).unwrap();
            let d = b.delay(failure, unit);
            prop_assert!(d >= min && d <= max);
            prop_assert!(d <= b.ceiling(failure));
            prop_assert!(b.ceiling(failure + 1) >= b.ceiling(failure));
        }
    }
}
