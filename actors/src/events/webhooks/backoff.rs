//! Retry delays of failed deliveries: exponential with full jitter.
//!
//! After the `n`th failure (counting from 0) the ceiling is `min * 2^(n+1)`, capped at `max`,
//! and the delay is drawn uniformly from `[min, ceiling]`. Spreading the whole range (rather
//! than ±10 %) keeps many deliveries that failed together (a consumer that went down) from
//! coming back together; the floor keeps a retry from following its failure at once.

use std::time::Duration;

/// A validated full-jitter backoff.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FullJitter {
    min: Duration,
    max: Duration,
}

/// Why a backoff cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidBackoff {
    #[error("backoff_min_ms must be positive")]
    ZeroMin,
    #[error("backoff_max_ms must not be below backoff_min_ms")]
    MaxBelowMin,
}

impl FullJitter {
    /// # Errors
    /// [`InvalidBackoff`] for a zero minimum or a maximum below it.
    pub fn try_new(min: Duration, max: Duration) -> Result<Self, InvalidBackoff> {
        if min.is_zero() {
            return Err(InvalidBackoff::ZeroMin);
        }
        if max < min {
            return Err(InvalidBackoff::MaxBelowMin);
        }
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
