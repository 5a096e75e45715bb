//! Bodies of `/api/v1/incidents`: shared outages and the integrations they cover.

use actors::store::incidents::{Incident as StoredIncident, IncidentMember as StoredMember};
use chrono::{DateTime, Utc};
use poem_openapi::{Enum, Object};
use uuid::Uuid;

/// Where an incident stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "snake_case")]
pub enum IncidentState {
    Open,
    Resolved,
}

impl From<IncidentState> for actors::events::incidents::IncidentState {
    fn from(s: IncidentState) -> Self {
        match s {
            IncidentState::Open => Self::Open,
            IncidentState::Resolved => Self::Resolved,
        }
    }
}

/// What failed: a provider endpoint, the secret backend, or the hub's own egress.
#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase")]
pub struct FailureDomain {
    /// `provider`, `vault` or `egress`.
    pub kind: String,
    /// `scheme://host:port` of the provider endpoint, the vault address, or `hub`.
    pub value: String,
}

/// A shared outage: many of the tenant's integrations failing behind one failure domain.
#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase")]
pub struct Incident {
    pub id: Uuid,
    pub domain: FailureDomain,
    /// The failure reason the members share (`network`, `timeout`, `tls`,
    /// `provider_degraded`, `credential_unavailable`).
    pub reason: String,
    /// `open` or `resolved`.
    pub state: String,
    pub title: String,
    /// Integrations that took part.
    pub member_count: i64,
    /// Members failing at the last update.
    pub failing_count: i64,
    pub opened_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    #[oai(nullable)]
    pub resolved_at: Option<DateTime<Utc>>,
}

impl From<StoredIncident> for Incident {
    fn from(m: StoredIncident) -> Self {
        Self {
            id: m.id,
            domain: FailureDomain {
                kind: m.domain_kind,
                value: m.domain_value,
            },
            reason: m.reason,
            state: m.state,
            title: m.title,
            member_count: m.member_count,
            failing_count: m.failing_count,
            opened_at: m.opened_at,
            updated_at: m.updated_at,
            resolved_at: m.resolved_at,
        }
    }
}

/// An integration an incident covers.
#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase")]
pub struct IncidentMember {
    pub integration_id: Uuid,
    /// Why it failed when it joined.
    #[oai(nullable)]
    pub reason: Option<String>,
    pub joined_at: DateTime<Utc>,
    /// When it was healthy again while the incident was open.
    #[oai(nullable)]
    pub recovered_at: Option<DateTime<Utc>>,
}

impl From<StoredMember> for IncidentMember {
    fn from(m: StoredMember) -> Self {
        Self {
            integration_id: m.integration_id,
            reason: m.reason,
            joined_at: m.joined_at,
            recovered_at: m.recovered_at,
        }
    }
}

/// An incident with its members.
#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase")]
pub struct IncidentDetail {
    pub incident: Incident,
    /// Ordered by integration id. For an `egress` incident, the first members only
    /// (`[incidents] listed_members`); `memberCount` is exact.
    pub members: Vec<IncidentMember>,
}

/// A page of incidents, newest first.
#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase")]
pub struct IncidentPage {
    pub items: Vec<Incident>,
    /// Pass as `cursor` to get the next page; null on the last page.
    #[oai(nullable)]
    pub next_cursor: Option<String>,
}
