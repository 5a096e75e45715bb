//! [`MonitorSpec`]: what a monitor knows of its integration, shared with the supervisor so a
//! restarted monitor starts from the same spec and the last status.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use connectors::SharedConnector;
use uuid::Uuid;

use crate::health::policy::Status;

/// What a monitor needs to know of its integration. Shared with the supervisor, which restarts
/// the monitor from it.
pub struct MonitorSpec {
    pub id: Uuid,
    pub tenant: Arc<str>,
    pub provider_type: Arc<str>,
    /// The catalog version this spec was built from; older specs never replace newer ones.
    pub version: i64,
    pub interval: Duration,
    pub paused: bool,
    /// The built connector, or why it could not be built.
    pub connector: Result<SharedConnector, Arc<str>>,
    /// The latest status, kept here so a restarted monitor continues from it.
    status: AtomicU8,
}

const STATUSES: [Status; 6] = [
    Status::Unknown,
    Status::Healthy,
    Status::Degraded,
    Status::Unhealthy,
    Status::Paused,
    Status::Error,
];

impl MonitorSpec {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: Uuid,
        tenant: Arc<str>,
        provider_type: Arc<str>,
        version: i64,
        interval: Duration,
        paused: bool,
        connector: Result<SharedConnector, Arc<str>>,
        status: Status,
    ) -> Self {
        let spec = Self {
            id,
            tenant,
            provider_type,
            version,
            interval,
            paused,
            connector,
            status: AtomicU8::new(0),
        };
        spec.set_status(status);
        spec
    }

    pub fn status(&self) -> Status {
        STATUSES[usize::from(self.status.load(Ordering::Relaxed)).min(STATUSES.len() - 1)]
    }

    pub fn set_status(&self, status: Status) {
        let i = STATUSES.iter().position(|s| *s == status).unwrap_or(0);
        self.status.store(i as u8, Ordering::Relaxed);
    }
}
