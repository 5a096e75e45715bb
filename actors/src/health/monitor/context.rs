//! [`EngineContext`]: what every monitor shares, handed to each by its supervisor.

use super::MonitorMsg;
use crate::events::clock::Clock;
use crate::health::settings::Schedule;
use crate::health::timers::Timers;
use crate::health::writer::ResultWriter;

/// What every monitor shares.
pub struct EngineContext {
    pub schedule: Schedule,
    pub writer: ResultWriter,
    /// Stamps check results and status changes (tokio's clock in paused-clock tests).
    pub clock: Clock,
    /// Sends the monitors their scheduled ticks.
    pub timers: Timers<MonitorMsg>,
    /// Down while the hub cannot reach the network (`[incidents.egress]`).
    pub egress: crate::events::incidents::EgressFlag,
}
