//! How check results move an integration's status: thresholds with hysteresis, so one bad
//! probe does not flap the status. Pure: no clock, no I/O.

use std::time::Duration;

use chrono::{DateTime, Utc};
use connectors::{Health, HealthReport, Reason};

pub use crate::status::Status;

/// Consecutive-result thresholds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Thresholds {
    /// Consecutive failures that make a healthy integration degraded.
    pub degraded_after: u32,
    /// Consecutive failures that make it unhealthy.
    pub unhealthy_after: u32,
    /// Consecutive successes that make a failing integration healthy again.
    pub healthy_after: u32,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            degraded_after: 1,
            unhealthy_after: 3,
            healthy_after: 2,
        }
    }
}

/// What one result means for the schedule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Counted as a success.
    Success,
    /// The provider reports a degraded state: not a failure of the check.
    Degraded,
    /// Counted as a failure: back off.
    Failure,
    /// The provider asked to pause; not counted.
    Pause,
}

/// The counting part of a monitor's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tracker {
    pub status: Status,
    pub reason: Option<Reason>,
    pub consecutive_failures: u32,
    pub consecutive_successes: u32,
    /// The status comes from failed checks, so recovery needs a streak of successes.
    failing: bool,
}

impl Tracker {
    pub fn new(status: Status) -> Self {
        Self {
            status,
            reason: None,
            consecutive_failures: 0,
            consecutive_successes: 0,
            failing: matches!(status, Status::Degraded | Status::Unhealthy | Status::Error),
        }
    }

    /// Applies one result; returns its verdict. The caller sees a transition by comparing
    /// `status` and `reason` before and after.
    pub fn apply(&mut self, report: &HealthReport, t: &Thresholds) -> Verdict {
        if report.retry_after.is_some() {
            return Verdict::Pause;
        }
        match report.health {
            Health::Healthy => {
                self.consecutive_failures = 0;
                self.consecutive_successes = self.consecutive_successes.saturating_add(1);
                if !self.failing || self.consecutive_successes >= t.healthy_after {
                    self.status = Status::Healthy;
                    self.reason = None;
                    self.failing = false;
                }
                Verdict::Success
            }
            Health::Degraded => {
                self.consecutive_failures = 0;
                self.consecutive_successes = 0;
                self.status = Status::Degraded;
                self.reason = report.reason;
                self.failing = false;
                Verdict::Degraded
            }
            Health::Unhealthy => {
                self.consecutive_successes = 0;
                self.consecutive_failures = self.consecutive_failures.saturating_add(1);
                if self.consecutive_failures >= t.unhealthy_after {
                    self.status = Status::Unhealthy;
                    self.reason = report.reason;
                    self.failing = true;
                } else if self.consecutive_failures >= t.degraded_after
                    && self.status != Status::Unhealthy
                {
                    self.status = Status::Degraded;
                    self.reason = report.reason;
                    self.failing = true;
                }
                Verdict::Failure
            }
        }
    }
}

/// How many times its interval apart an integration is checked while its provider's quota is
/// low (`quota_low`), so the checks do not hasten the quota's end.
pub const QUOTA_SLOWDOWN: u32 = 4;

/// The delay before the next check after `report`, whose ordinary delay is `delay`: while the
/// quota is low it is stretched [`QUOTA_SLOWDOWN`] times, though never past the quota's reset
/// (then a check costs little again) nor below `delay`.
pub fn quota_delay(delay: Duration, report: &HealthReport, now: DateTime<Utc>) -> Duration {
    if report.reason != Some(Reason::QuotaLow) {
        return delay;
    }
    let slowed = delay.saturating_mul(QUOTA_SLOWDOWN);
    match report.quota.and_then(|q| q.reset_at) {
        // A reset already past leaves the quota full again.
        Some(at) => slowed
            .min((at - now).to_std().unwrap_or_default())
            .max(delay),
        None => slowed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fail() -> HealthReport {
        HealthReport::unhealthy(Reason::Timeout, "timed out")
    }

    #[test]
    fn failures_degrade_then_make_unhealthy() {
        let t = Thresholds::default();
        let mut s = Tracker::new(Status::Healthy);
        assert_eq!(s.apply(&fail(), &t), Verdict::Failure);
        assert_eq!(
            (s.status, s.reason),
            (Status::Degraded, Some(Reason::Timeout))
        );
        s.apply(&fail(), &t);
        assert_eq!(s.status, Status::Degraded);
        s.apply(&fail(), &t);
        assert_eq!(s.status, Status::Unhealthy);
        assert_eq!(s.consecutive_failures, 3);
    }

    #[test]
    fn recovery_needs_consecutive_successes() {
        let t = Thresholds::default();
        let mut s = Tracker::new(Status::Healthy);
        for _ in 0..3 {
            s.apply(&fail(), &t);
        }
        s.apply(&HealthReport::healthy(), &t);
        assert_eq!(s.status, Status::Unhealthy, "one success is not enough");
        s.apply(&fail(), &t);
        s.apply(&HealthReport::healthy(), &t);
        assert_eq!(s.status, Status::Unhealthy, "the streak was broken");
        s.apply(&HealthReport::healthy(), &t);
        assert_eq!((s.status, s.reason), (Status::Healthy, None));
    }

    #[test]
    fn the_first_result_decides_from_unknown() {
        let t = Thresholds::default();
        let mut s = Tracker::new(Status::Unknown);
        s.apply(&HealthReport::healthy(), &t);
        assert_eq!(s.status, Status::Healthy);
        let mut s = Tracker::new(Status::Unknown);
        s.apply(&fail(), &t);
        assert_eq!(s.status, Status::Degraded);
    }

    #[test]
    fn rate_limits_pause_without_counting() {
        let t = Thresholds::default();
        let mut s = Tracker::new(Status::Healthy);
        let before = s;
        assert_eq!(
            s.apply(&HealthReport::rate_limited(Duration::from_secs(60)), &t),
            Verdict::Pause
        );
        assert_eq!(s, before);
    }

    #[test]
    fn a_flapping_provider_does_not_flap_the_status() {
        let t = Thresholds::default();
        let mut s = Tracker::new(Status::Healthy);
        let mut seen = Vec::new();
        for i in 0..8 {
            let r = if i % 2 == 0 {
                fail()
            } else {
                HealthReport::healthy()
            };
            s.apply(&r, &t);
            seen.push(s.status);
        }
        assert!(seen.iter().all(|s| *s == Status::Degraded), "{seen:?}");
    }

    #[test]
    fn degraded_reports_are_not_failures() {
        let t = Thresholds::default();
        let mut s = Tracker::new(Status::Healthy);
        let expiring = HealthReport::degraded(Reason::CredentialExpiring, "expires in 3 days");
        assert_eq!(s.apply(&expiring, &t), Verdict::Degraded);
        assert_eq!((s.status, s.consecutive_failures), (Status::Degraded, 0));
        // A provider that said it was degraded and now says it is fine is believed at once.
        s.apply(&HealthReport::healthy(), &t);
        assert_eq!(s.status, Status::Healthy);
    }

    #[test]
    fn a_low_quota_slows_the_schedule_until_its_reset() {
        let now = Utc::now();
        let minute = Duration::from_secs(60);
        let low = |reset_in: Option<i64>| HealthReport {
            quota: Some(connectors::Quota {
                remaining: 3,
                limit: Some(100),
                reset_at: reset_in.map(|s| now + chrono::Duration::seconds(s)),
            }),
            ..HealthReport::degraded(Reason::QuotaLow, "3 of 100 left")
        };
        assert_eq!(quota_delay(minute, &low(Some(3600)), now), minute * 4);
        assert_eq!(quota_delay(minute, &low(None), now), minute * 4);
        assert_eq!(
            quota_delay(minute, &low(Some(100)), now),
            Duration::from_secs(100),
            "no later than the reset"
        );
        assert_eq!(
            quota_delay(minute, &low(Some(10)), now),
            minute,
            "never sooner than the interval"
        );
        assert_eq!(quota_delay(minute, &low(Some(-10)), now), minute);
        // a quota that is not low, or another warning, keeps the schedule
        let fine = HealthReport {
            quota: low(Some(3600)).quota,
            ..HealthReport::healthy()
        };
        assert_eq!(quota_delay(minute, &fine, now), minute);
        let expiring = HealthReport::degraded(Reason::CredentialExpiring, "soon");
        assert_eq!(quota_delay(minute, &expiring, now), minute);
    }
}
