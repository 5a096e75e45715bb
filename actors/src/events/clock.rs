//! Wall time for event decisions (reminders, flap windows, maintenance windows).
//!
//! In production it is the system clock. Tests use [`Clock::tokio`], wall time that advances
//! with tokio's clock, so a paused-clock test moves maintenance windows and reminders forward
//! exactly as it moves timers.

use chrono::{DateTime, Utc};
use tokio::time::Instant;

#[derive(Clone, Copy, Debug, Default)]
pub enum Clock {
    #[default]
    System,
    /// `base` at tokio instant `at`, advancing with tokio's clock.
    Tokio { base: DateTime<Utc>, at: Instant },
}

impl Clock {
    /// A clock that reads `base` now and advances with tokio's (possibly paused) clock.
    pub fn tokio(base: DateTime<Utc>) -> Self {
        Clock::Tokio {
            base,
            at: Instant::now(),
        }
    }

    pub fn now(&self) -> DateTime<Utc> {
        match self {
            Clock::System => Utc::now(),
            Clock::Tokio { base, at } => {
                *base + chrono::Duration::from_std(at.elapsed()).unwrap_or_default()
            }
        }
    }
}
