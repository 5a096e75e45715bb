//! Result batches on PostgreSQL: one statement of fixed text per table, the rows bound as
//! arrays and unnested by the server.
//!
//! The portable path (sea-orm's multi-row `INSERT`, a `VALUES` list for the status `UPDATE`)
//! binds every value of every row, so a statement's text changes with the number of rows:
//! PostgreSQL parses and plans each batch anew, and every distinct row count is another
//! prepared statement in the connection's cache. Here the text never changes, so each
//! statement is prepared once per connection, binds a handful of arrays whatever the batch
//! size, and needs no chunking under the bind-parameter limit.

use sea_orm::sqlx::{self, Connection, postgres::PgPool};
use sea_orm::{DbErr, FromQueryResult, QueryResult, RuntimeErr};

use super::{CheckRow, StatusRow};
use crate::events::{NewEvent, StoredEvent};
use crate::store::cluster::{Fence, HELD_SHARDS};

const INSERT_CHECKS: &str = "INSERT INTO health_checks \
     (integration_id, tenant_id, checked_at, status, reason, latency_ms, error_message, folded) \
     SELECT i, t, c, s, r, l, e, f::json FROM UNNEST($1::uuid[], $2::text[], \
     $3::timestamptz[], $4::text[], $5::text[], $6::int8[], $7::text[], $8::text[]) \
     AS v (i, t, c, s, r, l, e, f)";

const UPDATE_STATUSES: &str = "UPDATE integrations AS i \
     SET status = v.status, status_reason = v.reason, last_checked_at = v.checked_at \
     FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::timestamptz[]) \
     AS v (id, status, reason, checked_at) WHERE i.id = v.id";

/// Events keep their order: `seq` is drawn row by row in the order `UNNEST` yields them.
const INSERT_EVENTS: &str = "INSERT INTO events \
     (id, tenant_id, integration_id, event_type, time, payload) \
     SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::uuid[], $4::text[], $5::timestamptz[], \
     $6::jsonb[]) \
     ON CONFLICT (id) DO NOTHING \
     RETURNING seq, id, tenant_id, integration_id, event_type, time, payload, incident_id";

/// The transaction-level advisory lock that serialises appends to the outbox in a cluster.
pub(crate) const LOCK_OUTBOX: &str = "SELECT pg_advisory_xact_lock($1)";
/// Its key: "STELLAOB" in ASCII.
pub(crate) const OUTBOX_LOCK: i64 = 0x5354_454C_4C41_4F42;
/// Tells every replica the outbox grew (the payload is the last sequence number).
pub(crate) const NOTIFY_OUTBOX: &str = "SELECT pg_notify('stella_outbox', $1)";

fn db_err(e: sqlx::Error) -> DbErr {
    DbErr::Query(RuntimeErr::SqlxError(e.into()))
}

/// Writes one batch in one transaction, with every tenant in scope; see
/// [`SystemStore::write_results`](crate::store::SystemStore::write_results). `statuses` holds one row per integration.
pub(super) async fn write_results(
    pool: &PgPool,
    checks: &[CheckRow],
    statuses: &[&StatusRow],
    events: &[NewEvent],
    fence: Option<&Fence>,
) -> Result<Vec<StoredEvent>, DbErr> {
    let mut conn = pool.acquire().await.map_err(db_err)?;
    let begin = format!(
        "BEGIN; SET LOCAL {} = 'on'",
        migration::rls::ALL_TENANTS_SETTING
    );
    let mut txn = conn
        .begin_with(sqlx::AssertSqlSafe(begin))
        .await
        .map_err(db_err)?;
    // In a cluster, only rows whose shard lease is still this replica's, under the epoch the
    // row was produced under.
    let (checks, statuses, events): (Vec<&CheckRow>, Vec<&StatusRow>, Vec<&NewEvent>) = match fence
    {
        None => (
            checks.iter().collect(),
            statuses.to_vec(),
            events.iter().collect(),
        ),
        Some(fence) => {
            let held = Fence::held(
                sqlx::query_as::<_, (String, i64)>(HELD_SHARDS)
                    .bind(&*fence.replica)
                    .fetch_all(&mut *txn)
                    .await
                    .map_err(db_err)?,
            );
            let allowed = |id: uuid::Uuid| fence.allows(id, &held);
            (
                checks
                    .iter()
                    .filter(|c| allowed(c.integration_id))
                    .collect(),
                statuses
                    .iter()
                    .filter(|s| allowed(s.integration_id))
                    .copied()
                    .collect(),
                events
                    .iter()
                    .filter(|e| e.integration_id.is_none_or(allowed))
                    .collect(),
            )
        }
    };
    if !checks.is_empty() {
        sqlx::query(INSERT_CHECKS)
            .bind(checks.iter().map(|c| c.integration_id).collect::<Vec<_>>())
            .bind(checks.iter().map(|c| &*c.tenant_id).collect::<Vec<_>>())
            .bind(checks.iter().map(|c| c.checked_at).collect::<Vec<_>>())
            .bind(checks.iter().map(|c| c.status).collect::<Vec<_>>())
            .bind(checks.iter().map(|c| c.reason).collect::<Vec<_>>())
            .bind(checks.iter().map(|c| c.latency_ms).collect::<Vec<_>>())
            .bind(
                checks
                    .iter()
                    .map(|c| c.error_message.as_deref())
                    .collect::<Vec<_>>(),
            )
            .bind(
                checks
                    .iter()
                    .map(|c| c.folded.as_ref().map(|f| f.to_json().to_string()))
                    .collect::<Vec<_>>(),
            )
            .execute(&mut *txn)
            .await
            .map_err(db_err)?;
    }
    if !statuses.is_empty() {
        sqlx::query(UPDATE_STATUSES)
            .bind(
                statuses
                    .iter()
                    .map(|s| s.integration_id)
                    .collect::<Vec<_>>(),
            )
            .bind(statuses.iter().map(|s| s.status).collect::<Vec<_>>())
            .bind(statuses.iter().map(|s| s.reason).collect::<Vec<_>>())
            .bind(statuses.iter().map(|s| s.checked_at).collect::<Vec<_>>())
            .execute(&mut *txn)
            .await
            .map_err(db_err)?;
    }
    let mut stored = Vec::with_capacity(events.len());
    if !events.is_empty() {
        {
            // Several appenders (replicas, the incident correlator): one at a time, so that
            // sequence order is commit order and a reader that has seen `seq` has seen
            // everything before it.
            sqlx::query(LOCK_OUTBOX)
                .bind(OUTBOX_LOCK)
                .execute(&mut *txn)
                .await
                .map_err(db_err)?;
        }
        let rows = sqlx::query(INSERT_EVENTS)
            .bind(events.iter().map(|e| e.id).collect::<Vec<_>>())
            .bind(events.iter().map(|e| &*e.tenant).collect::<Vec<_>>())
            .bind(events.iter().map(|e| e.integration_id).collect::<Vec<_>>())
            .bind(
                events
                    .iter()
                    .map(|e| e.kind.type_name())
                    .collect::<Vec<_>>(),
            )
            .bind(events.iter().map(|e| e.time).collect::<Vec<_>>())
            .bind(
                events
                    .iter()
                    .map(|e| e.to_cloud_event())
                    .collect::<Vec<_>>(),
            )
            .fetch_all(&mut *txn)
            .await
            .map_err(db_err)?;
        for row in rows {
            stored.push(StoredEvent::from_query_result(&QueryResult::from(row), "")?);
        }
        stored.sort_by_key(|e| e.seq);
        if let (Some(_), Some(last)) = (fence, stored.last()) {
            // Delivered at commit: every replica's outbox follower wakes.
            sqlx::query(NOTIFY_OUTBOX)
                .bind(last.seq.to_string())
                .execute(&mut *txn)
                .await
                .map_err(db_err)?;
        }
    }
    txn.commit().await.map_err(db_err)?;
    Ok(stored)
}
