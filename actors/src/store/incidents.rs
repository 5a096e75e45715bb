//! Incidents: the correlator's writes (incidents, members, the events it tags and appends, in
//! one transaction) and a tenant's reads for the API.

use std::collections::BTreeMap;
use std::sync::Arc;

use entity::{event, incident, incident_member};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseBackend, DbErr, EntityTrait,
    QueryFilter, QueryOrder, QuerySelect, Statement,
};
use uuid::Uuid;

use super::{MAX_PAGE_SIZE, Page, SystemStore, TenantStore};
use crate::error::CatalogError;
use crate::events::StoredEvent;
use crate::events::incidents::{
    Domain, DomainKind, Effects, IncidentRow, IncidentState, MemberRow,
};

/// A stored incident.
pub type Incident = incident::Model;
/// A stored member of an incident.
pub type IncidentMember = incident_member::Model;

const KIND: &str = "incident";

/// Rows per statement (members have six columns, well under SQLite's bind limit).
const CHUNK: usize = 1000;

/// Which of a tenant's incidents to list (newest first).
#[derive(Clone, Debug, Default)]
pub struct IncidentQuery {
    pub state: Option<IncidentState>,
    /// Start below this id (the previous page's cursor).
    pub before: Option<Uuid>,
    pub limit: u64,
}

fn incident_model(r: &IncidentRow) -> incident::ActiveModel {
    incident::ActiveModel {
        id: Set(r.id),
        tenant_id: Set(r.tenant.to_string()),
        domain_kind: Set(r.domain.kind.as_str().to_owned()),
        domain_value: Set(r.domain.value.to_string()),
        reason: Set(r.reason.to_string()),
        state: Set(r.state.as_str().to_owned()),
        title: Set(r.title.chars().take(600).collect()),
        member_count: Set(r.member_count),
        failing_count: Set(r.failing_count),
        opened_at: Set(r.opened_at),
        updated_at: Set(r.updated_at),
        resolved_at: Set(r.resolved_at),
    }
}

fn member_model(m: &MemberRow) -> incident_member::ActiveModel {
    incident_member::ActiveModel {
        incident_id: Set(m.incident_id),
        integration_id: Set(m.integration_id),
        tenant_id: Set(m.tenant.to_string()),
        reason: Set(m.reason.as_deref().map(str::to_owned)),
        joined_at: Set(m.joined_at),
        recovered_at: Set(m.recovered_at),
    }
}

/// An incident row as the correlator holds it.
pub fn incident_row(m: &Incident) -> Option<IncidentRow> {
    Some(IncidentRow {
        id: m.id,
        tenant: Arc::from(m.tenant_id.as_str()),
        domain: Domain::new(DomainKind::parse(&m.domain_kind)?, m.domain_value.as_str()),
        reason: Arc::from(m.reason.as_str()),
        state: IncidentState::parse(&m.state)?,
        title: m.title.clone(),
        member_count: m.member_count,
        failing_count: m.failing_count,
        opened_at: m.opened_at,
        updated_at: m.updated_at,
        resolved_at: m.resolved_at,
    })
}

/// A member row as the correlator holds it.
pub fn member_row(m: &IncidentMember) -> MemberRow {
    MemberRow {
        incident_id: m.incident_id,
        tenant: Arc::from(m.tenant_id.as_str()),
        integration_id: m.integration_id,
        reason: m.reason.as_deref().map(Arc::from),
        joined_at: m.joined_at,
        recovered_at: m.recovered_at,
    }
}

// === impl SystemStore ===

impl SystemStore {
    /// Writes what the correlator decided in one transaction: incidents and members (inserted
    /// or replaced), the outbox events it tagged, its own events appended to the outbox, and
    /// its cursor; returns the appended events as stored.
    ///
    /// On PostgreSQL the append takes the outbox's advisory lock, as the result writer does,
    /// so that sequence order stays commit order with two appenders.
    ///
    /// # Errors
    /// [`DbErr`]; nothing is written then.
    pub async fn incidents_apply(
        &self,
        fx: &Effects,
        cursor: Option<(&str, i64)>,
    ) -> Result<Vec<StoredEvent>, DbErr> {
        let txn = super::begin_all_tenants(&self.db, true).await?;
        if let Some((consumer, seq)) = cursor {
            super::events::save_cursor(&txn, consumer, seq).await?;
        }
        for r in &fx.incidents {
            incident::Entity::insert(incident_model(r))
                .on_conflict(
                    OnConflict::column(incident::Column::Id)
                        .update_columns([
                            incident::Column::Reason,
                            incident::Column::State,
                            incident::Column::Title,
                            incident::Column::MemberCount,
                            incident::Column::FailingCount,
                            incident::Column::UpdatedAt,
                            incident::Column::ResolvedAt,
                        ])
                        .to_owned(),
                )
                .exec_without_returning(&txn)
                .await?;
        }
        // The last row of a member wins (it may join and recover in one batch).
        let members: BTreeMap<(Uuid, Uuid), &MemberRow> = fx
            .members
            .iter()
            .map(|m| ((m.incident_id, m.integration_id), m))
            .collect();
        let members: Vec<_> = members.into_values().collect();
        for chunk in members.chunks(CHUNK) {
            incident_member::Entity::insert_many(chunk.iter().map(|m| member_model(m)))
                .on_conflict(
                    OnConflict::columns([
                        incident_member::Column::IncidentId,
                        incident_member::Column::IntegrationId,
                    ])
                    .update_columns([
                        incident_member::Column::Reason,
                        incident_member::Column::RecoveredAt,
                    ])
                    .to_owned(),
                )
                .exec_without_returning(&txn)
                .await?;
        }
        let mut tags: BTreeMap<Uuid, Vec<i64>> = BTreeMap::new();
        for (seq, incident) in &fx.tags {
            tags.entry(*incident).or_default().push(*seq);
        }
        for (incident, seqs) in tags {
            for chunk in seqs.chunks(CHUNK) {
                event::Entity::update_many()
                    .col_expr(event::Column::IncidentId, Expr::value(incident))
                    .filter(event::Column::Seq.is_in(chunk.iter().copied()))
                    .exec(&txn)
                    .await?;
            }
        }
        let backend = txn.get_database_backend();
        if backend == DatabaseBackend::Postgres && !fx.events.is_empty() {
            txn.execute_raw(Statement::from_sql_and_values(
                backend,
                super::health::LOCK_OUTBOX,
                [super::health::OUTBOX_LOCK.into()],
            ))
            .await?;
        }
        let stored = super::events::append(&txn, &fx.events).await?;
        if backend == DatabaseBackend::Postgres
            && let Some(last) = stored.last()
        {
            txn.execute_raw(Statement::from_sql_and_values(
                backend,
                super::health::NOTIFY_OUTBOX,
                [last.seq.to_string().into()],
            ))
            .await?;
        }
        txn.commit().await?;
        Ok(stored)
    }

    /// The incidents still open, with their members: a new correlator takes them over.
    ///
    /// # Errors
    /// [`DbErr`].
    pub async fn open_incidents(&self) -> Result<Vec<(Incident, Vec<IncidentMember>)>, DbErr> {
        let txn = self.begin().await?;
        let open = incident::Entity::find()
            .filter(incident::Column::State.eq(IncidentState::Open.as_str()))
            .order_by_asc(incident::Column::Id)
            .all(&txn)
            .await?;
        let mut out = Vec::with_capacity(open.len());
        for i in open {
            let members = incident_member::Entity::find()
                .filter(incident_member::Column::IncidentId.eq(i.id))
                .all(&txn)
                .await?;
            out.push((i, members));
        }
        txn.commit().await?;
        Ok(out)
    }
}

// === impl TenantStore ===

impl TenantStore {
    /// A page of the tenant's incidents, newest first.
    ///
    /// # Errors
    /// [`CatalogError::Db`].
    pub async fn incident_list(
        &self,
        query: &IncidentQuery,
    ) -> Result<Page<Incident, Uuid>, CatalogError> {
        let limit = query.limit.clamp(1, MAX_PAGE_SIZE);
        let mut select =
            incident::Entity::find().filter(incident::Column::TenantId.eq(self.tenant.as_str()));
        if let Some(state) = query.state {
            select = select.filter(incident::Column::State.eq(state.as_str()));
        }
        if let Some(before) = query.before {
            select = select.filter(incident::Column::Id.lt(before));
        }
        let rows = self
            .read_all(select.order_by_desc(incident::Column::Id).limit(limit + 1))
            .await?;
        Ok(Page::from_rows(rows, limit, |i| i.id))
    }

    /// One of the tenant's incidents with its members (ordered by integration id).
    ///
    /// # Errors
    /// [`CatalogError::NotFound`] when it does not exist or is another tenant's.
    pub async fn incident_get(
        &self,
        id: Uuid,
    ) -> Result<(Incident, Vec<IncidentMember>), CatalogError> {
        let found = self
            .read_one(
                incident::Entity::find()
                    .filter(incident::Column::TenantId.eq(self.tenant.as_str()))
                    .filter(incident::Column::Id.eq(id)),
            )
            .await?
            .ok_or(CatalogError::NotFound { kind: KIND, id })?;
        let members = self
            .read_all(
                incident_member::Entity::find()
                    .filter(incident_member::Column::TenantId.eq(self.tenant.as_str()))
                    .filter(incident_member::Column::IncidentId.eq(id))
                    .order_by_asc(incident_member::Column::IntegrationId),
            )
            .await?;
        Ok((found, members))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use chrono::Utc;
    use serde_json::json;

    use super::*;
    use crate::events::incidents::{Correlator, IncidentMembers, IncidentSettings, Observed};
    use crate::events::{EventKind, NewEvent};
    use crate::store::testing;
    use crate::store::webhooks::{DeliveryQuery, SubscriptionFields};

    const EVERY: std::time::Duration = std::time::Duration::from_secs(300);
    use crate::tenant::TenantId;

    fn failure(tenant: &str, id: Uuid) -> NewEvent {
        NewEvent::new(
            EventKind::HealthChanged,
            Arc::from(tenant),
            Some(id),
            Utc::now(),
            json!({"integrationId": id.to_string(), "status": "degraded", "reason": "network"}),
        )
    }

    fn subscription(name: &str, members: IncidentMembers) -> SubscriptionFields {
        SubscriptionFields {
            name: name.into(),
            target_url: "https://hooks.example.com/in".into(),
            event_types: vec![],
            integration_ids: vec![],
            secret_auth_ref_uri: "authref://env/HOOK_SECRET".into(),
            enabled: true,
            incident_members: members,
            batch: None,
        }
    }

    /// Six failures of tenant `ta` behind one host: the correlator opens an incident at the
    /// fifth and tags all six; one failure of `tb` at the same host stays its own.
    #[tokio::test]
    async fn tagged_members_are_suppressed_per_subscription_and_incidents_stay_per_tenant() {
        let store = testing::store().await;
        let (ta, tb) = (
            store.tenant(TenantId::new("ta").unwrap()),
            store.tenant(TenantId::new("tb").unwrap()),
        );
        let suppress = ta
            .subscription_create("u", subscription("quiet", IncidentMembers::Suppress))
            .await
            .unwrap();
        let deliver = ta
            .subscription_create("u", subscription("all", IncidentMembers::Deliver))
            .await
            .unwrap();
        let theirs = tb
            .subscription_create("u", subscription("b", IncidentMembers::Suppress))
            .await
            .unwrap();
        let host = Domain::new(DomainKind::Provider, "https://git.example.com:443");
        let mut correlator = Correlator::new(IncidentSettings::default());
        let fleet: Vec<Uuid> = (0..6).map(|_| Uuid::now_v7()).collect();
        for id in &fleet {
            correlator.upsert(*id, Arc::from("ta"), vec![host.clone()], EVERY);
        }
        // Tenant b has five there too (enough to be held), one of which fails.
        let theirs_fleet: Vec<Uuid> = (0..5).map(|_| Uuid::now_v7()).collect();
        for id in &theirs_fleet {
            correlator.upsert(*id, Arc::from("tb"), vec![host.clone()], EVERY);
        }
        let stranger = theirs_fleet[0];
        let mut events: Vec<NewEvent> = fleet.iter().map(|id| failure("ta", *id)).collect();
        events.push(failure("tb", stranger));
        let stored = store
            .system()
            .write_results(&[], &[], &events)
            .await
            .unwrap();
        let now = Utc::now();
        let mut fx = Effects::default();
        for e in &stored {
            correlator.observe(&Observed::from_event(e).unwrap(), now, &mut fx);
        }
        let last = stored.last().unwrap().seq;
        // The tenant-b failure is held: the gate stops before it.
        assert_eq!(correlator.gate(now, last), last - 1);
        let appended = store
            .system()
            .incidents_apply(&fx, Some(("incidents", last)))
            .await
            .unwrap();
        assert_eq!(appended.len(), 1);
        assert_eq!(
            appended[0].event_type,
            EventKind::IncidentOpened.type_name()
        );
        assert_eq!(store.system().cursor("incidents").await.unwrap(), last);

        // The relay, gated before the held failure, then past everything.
        let webhooks = store.webhooks();
        let first = webhooks
            .fan_out_until("webhooks", 100, last - 1)
            .await
            .unwrap();
        assert_eq!(first.events, 6);
        let rest = webhooks.fan_out("webhooks", 100).await.unwrap();
        assert_eq!(rest.events, 2, "tenant b's failure and the incident");
        let count = |s: Uuid, t: &TenantStore| {
            let t = t.clone();
            async move {
                t.delivery_list(
                    s,
                    &DeliveryQuery {
                        limit: 100,
                        ..DeliveryQuery::default()
                    },
                )
                .await
                .unwrap()
                .items
                .iter()
                .map(|d| d.event_type.clone())
                .collect::<Vec<_>>()
            }
        };
        assert_eq!(
            count(suppress.id, &ta).await,
            vec![EventKind::IncidentOpened.type_name().to_owned()],
            "only the incident"
        );
        assert_eq!(
            count(deliver.id, &ta).await.len(),
            7,
            "six members and the incident"
        );
        assert_eq!(
            count(theirs.id, &tb).await,
            vec![EventKind::HealthChanged.type_name().to_owned()],
            "tenant b's own failure is its own"
        );

        // Each tenant sees its incidents only.
        let listed = ta
            .incident_list(&IncidentQuery {
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(listed.items.len(), 1);
        let (incident, members) = ta.incident_get(listed.items[0].id).await.unwrap();
        assert_eq!(incident.state, "open");
        assert_eq!(members.len(), 6);
        assert!(
            members
                .iter()
                .all(|m| m.tenant_id == "ta" && fleet.contains(&m.integration_id))
        );
        assert!(matches!(
            tb.incident_get(incident.id).await,
            Err(CatalogError::NotFound { .. })
        ));
        assert!(
            tb.incident_list(&IncidentQuery {
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap()
            .items
            .is_empty()
        );
        let resolved = ta
            .incident_list(&IncidentQuery {
                state: Some(IncidentState::Resolved),
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(resolved.items.is_empty());
        // A new correlator takes the open incident over.
        let open = store.system().open_incidents().await.unwrap();
        assert_eq!(open.len(), 1);
        assert_eq!(open[0].1.len(), 6);
    }
}
