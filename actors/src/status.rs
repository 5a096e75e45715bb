//! The health status vocabulary, shared by the engine that decides it, the events that report
//! it and the store that keeps it: below all three, so none of them imports another for it.

/// The status of a monitored integration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Status {
    /// Not checked yet.
    Unknown,
    Healthy,
    Degraded,
    Unhealthy,
    /// Monitoring is paused.
    Paused,
    /// The monitor keeps crashing; retried after a long backoff.
    Error,
}

impl Status {
    pub const fn as_str(self) -> &'static str {
        match self {
            Status::Unknown => "unknown",
            Status::Healthy => "healthy",
            Status::Degraded => "degraded",
            Status::Unhealthy => "unhealthy",
            Status::Paused => "paused",
            Status::Error => "error",
        }
    }

    pub fn parse(s: &str) -> Self {
        match s {
            "healthy" => Status::Healthy,
            "degraded" => Status::Degraded,
            "unhealthy" => Status::Unhealthy,
            "paused" => Status::Paused,
            "error" => Status::Error,
            _ => Status::Unknown,
        }
    }
}
